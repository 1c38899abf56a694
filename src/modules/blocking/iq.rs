//! The XEP-0191 IQ payloads: parsing requests, building result payloads and pushes.

use crate::jid::Jid;
use crate::store::BlockChange;
use crate::xml::Element;
use crate::xml::StanzaType;
use crate::xmpp::StanzaErrorCondition;

use super::{BlockList, NS};

/// A parsed blocking IQ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `<blocklist/>` get.
    Get,
    /// `<block/>` or `<unblock/>` set.
    Change(BlockChange),
}

/// Parses the payload of a blocking IQ of type `ty` (get/set).
pub fn parse(ty: StanzaType, payload: &Element) -> Result<Request, StanzaErrorCondition> {
    if payload.ns != NS {
        return Err(StanzaErrorCondition::BadRequest);
    }
    match (ty, payload.name.as_str()) {
        (StanzaType::Get, "blocklist") => Ok(Request::Get),
        (StanzaType::Set, "block") => {
            let items = items(payload)?;
            if items.is_empty() {
                // XEP-0191 §3.3: a block without items is a bad request.
                return Err(StanzaErrorCondition::BadRequest);
            }
            Ok(Request::Change(BlockChange::Block(items)))
        }
        (StanzaType::Set, "unblock") => {
            let items = items(payload)?;
            if items.is_empty() {
                Ok(Request::Change(BlockChange::UnblockAll))
            } else {
                Ok(Request::Change(BlockChange::Unblock(items)))
            }
        }
        _ => Err(StanzaErrorCondition::BadRequest),
    }
}

/// The prepared JIDs of the `<item jid=''/>` children.
fn items(payload: &Element) -> Result<Vec<String>, StanzaErrorCondition> {
    let mut out = Vec::new();
    for c in payload.child_elements() {
        if c.name != "item" || c.ns != NS {
            return Err(StanzaErrorCondition::BadRequest);
        }
        let Some(raw) = c.attr("jid") else {
            return Err(StanzaErrorCondition::BadRequest);
        };
        let jid = Jid::parse(raw).map_err(|_| StanzaErrorCondition::JidMalformed)?;
        out.push(jid.as_str().to_owned());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// `<blocklist><item jid=''/>...</blocklist>`.
pub fn blocklist(list: &BlockList) -> Element {
    list.items().fold(Element::new("blocklist", NS), |el, j| {
        el.with_child(item(j))
    })
}

/// The `<block/>`/`<unblock/>` element of a push for `change`.
pub fn push_payload(change: &BlockChange) -> Element {
    let (name, items): (&str, &[String]) = match change {
        BlockChange::Block(i) => ("block", i),
        BlockChange::Unblock(i) => ("unblock", i),
        BlockChange::UnblockAll => ("unblock", &[]),
    };
    items
        .iter()
        .fold(Element::new(name, NS), |el, j| el.with_child(item(j)))
}

fn item(jid: &str) -> Element {
    Element::new("item", NS).with_attr("jid", jid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::Stanza;

    fn payload(xml: &str) -> Element {
        let s = Stanza::parse(format!("<iq type='set'>{xml}</iq>").into_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        let t = s.tree().unwrap_or_else(|e| panic!("{e}"));
        let first = t.child_elements().next().cloned();
        first.unwrap_or_else(|| panic!("no payload"))
    }

    #[test]
    fn requests() {
        let b = "urn:xmpp:blocking";
        assert_eq!(
            parse(
                StanzaType::Get,
                &payload(&format!("<blocklist xmlns='{b}'/>"))
            ),
            Ok(Request::Get)
        );
        assert_eq!(
            parse(
                StanzaType::Set,
                &payload(&format!(
                    "<block xmlns='{b}'><item jid='Romeo@Montague.net'/><item jid='a.org'/></block>"
                ))
            ),
            Ok(Request::Change(BlockChange::Block(vec![
                "a.org".into(),
                "romeo@montague.net".into()
            ])))
        );
        assert_eq!(
            parse(
                StanzaType::Set,
                &payload(&format!("<unblock xmlns='{b}'/>"))
            ),
            Ok(Request::Change(BlockChange::UnblockAll))
        );
        assert_eq!(
            parse(StanzaType::Set, &payload(&format!("<block xmlns='{b}'/>"))),
            Err(StanzaErrorCondition::BadRequest)
        );
        assert_eq!(
            parse(
                StanzaType::Set,
                &payload(&format!("<block xmlns='{b}'><item jid='a@b@c'/></block>"))
            ),
            Err(StanzaErrorCondition::JidMalformed)
        );
        assert_eq!(
            parse(
                StanzaType::Set,
                &payload(&format!("<block xmlns='{b}'><item/></block>"))
            ),
            Err(StanzaErrorCondition::BadRequest)
        );
        assert_eq!(
            parse(
                StanzaType::Get,
                &payload(&format!("<block xmlns='{b}'><item jid='x'/></block>"))
            ),
            Err(StanzaErrorCondition::BadRequest)
        );
    }
}
