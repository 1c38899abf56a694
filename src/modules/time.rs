//! `mod_time`: entity time (XEP-0202) of the server: UTC now (XEP-0082 format) and the offset of
//! the server's zone, which petrel keeps at UTC (`+00:00`): reading the local zone would need the
//! libc time zone database on every request, and UTC is what XEP-0202 clients convert from anyway.

use std::rc::Rc;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::local::IqReply;
use crate::shard::Shard;
use crate::xml::{Element, StanzaType};
use crate::xmpp::StanzaErrorCondition;

/// `urn:xmpp:time`.
pub const NS: &str = "urn:xmpp:time";

/// The `<time/>` answer for `now`, to millisecond precision.
pub fn answer(now: OffsetDateTime) -> Option<Element> {
    let now = now
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(now.millisecond() as u32 * 1_000_000)
        .ok()?;
    // RFC 3339 with a UTC offset is written with `Z`, as XEP-0082 asks for `utc`.
    let utc = now.format(&Rfc3339).ok()?;
    Some(
        Element::new("time", NS)
            .with_child(Element::new("tzo", NS).with_text("+00:00"))
            .with_child(Element::new("utc", NS).with_text(&utc)),
    )
}

/// Registers the entity time handler on every host.
pub fn start(shard: &mut Shard, hosts: &[String]) {
    for host in hosts {
        shard.iq.register_server(
            host,
            NS,
            Rc::new(|acc, payload, _| {
                if acc.ty() != StanzaType::Get || payload.name != "time" {
                    return IqReply::Error(StanzaErrorCondition::BadRequest);
                }
                match answer(OffsetDateTime::now_utc()) {
                    Some(el) => IqReply::Result(Some(el)),
                    None => IqReply::Error(StanzaErrorCondition::InternalServerError),
                }
            }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_is_xep_0082() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let el = answer(t).unwrap_or_else(|| Element::new("x", NS));
        let utc = el
            .get_child("utc", NS)
            .map(|e| e.text())
            .unwrap_or_default();
        assert_eq!(utc, "2023-11-14T22:13:20.123Z");
        let back = OffsetDateTime::parse(&utc, &Rfc3339).ok();
        assert_eq!(back.map(|b| b.unix_timestamp()), Some(1_700_000_000));
        assert_eq!(
            el.get_child("tzo", NS).map(|e| e.text()).as_deref(),
            Some("+00:00")
        );
    }
}
