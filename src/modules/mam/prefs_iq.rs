//! `<prefs/>` (XEP-0313 §6.1, XEP-0441): an owner reads or sets their archiving preferences.

use super::ns;
use super::prefs::{self, Mode, Prefs, PrefsTable};
use crate::hooks::{Acc, HookCtx};
use crate::jid::Jid;
use crate::local::{result_reply, IqReply};
use crate::xml::{Element, StanzaType};
use crate::xmpp::StanzaErrorCondition;

/// Answers a `<prefs/>` get or set for `owner` (a bare JID); a set is answered once stored, with
/// the preferences as stored.
pub fn handle(owner: &str, acc: &Acc, payload: &Element, ctx: &mut HookCtx<'_>) -> IqReply {
    let Some(table) = ctx.ext.get::<PrefsTable>() else {
        return IqReply::Error(StanzaErrorCondition::InternalServerError);
    };
    if acc.ty() == StanzaType::Get {
        return IqReply::Result(Some(to_element(&table.get(owner))));
    }
    let Some(new) = parse(payload) else {
        return IqReply::Error(StanzaErrorCondition::BadRequest);
    };
    let req = acc.fork();
    let echo = to_element(&new);
    prefs::set(ctx, owner.to_owned(), new, move |shard, ok| {
        let reply = if ok {
            Some(result_reply(&req, Some(echo), shard.id))
        } else {
            req.error_reply(StanzaErrorCondition::InternalServerError, shard.id)
        };
        shard.route_all(reply.into_iter().collect());
    });
    IqReply::NoReply
}

/// `<prefs default='…'><always><jid/>…</always><never>…</never></prefs>`.
pub fn to_element(p: &Prefs) -> Element {
    let list = |name: &str, jids: &[String]| {
        jids.iter().fold(Element::new(name, ns::MAM), |el, j| {
            el.with_child(Element::new("jid", ns::MAM).with_text(j))
        })
    };
    Element::new("prefs", ns::MAM)
        .with_attr("default", p.mode.as_str())
        .with_child(list("always", &p.always))
        .with_child(list("never", &p.never))
}

/// Reads a `<prefs/>` set: `default` is required, JIDs are prepared; `None` when malformed.
pub fn parse(el: &Element) -> Option<Prefs> {
    let mode = Mode::parse(el.attr("default")?)?;
    let mut lists: [Option<Vec<String>>; 2] = [None, None];
    for child in el.child_elements().filter(|c| c.ns == ns::MAM) {
        let slot = match child.name.as_str() {
            "always" => &mut lists[0],
            "never" => &mut lists[1],
            _ => return None,
        };
        if slot.is_some() {
            return None;
        }
        let mut jids = Vec::new();
        for j in child.child_elements() {
            if j.name != "jid" || j.ns != ns::MAM {
                return None;
            }
            let jid = Jid::parse(j.text().trim()).ok()?;
            jids.push(jid.as_str().to_owned());
        }
        jids.sort();
        jids.dedup();
        *slot = Some(jids);
    }
    let [always, never] = lists;
    Some(Prefs {
        mode,
        always: always.unwrap_or_default(),
        never: never.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::xml::test_element as el;

    #[test]
    fn parse_and_write_back() {
        let p = parse(&el("<prefs xmlns='urn:xmpp:mam:2' default='roster'><always><jid>Romeo@Montague.lit</jid><jid>romeo@montague.lit</jid></always><never><jid>tybalt@capulet.lit/x</jid></never></prefs>"))
            .unwrap_or_else(|| panic!("refused"));
        assert_eq!(
            p,
            Prefs {
                mode: Mode::Roster,
                always: vec!["romeo@montague.lit".into()],
                never: vec!["tybalt@capulet.lit/x".into()],
            }
        );
        assert_eq!(parse(&to_element(&p)), Some(p));
        let bare = parse(&el("<prefs xmlns='urn:xmpp:mam:2' default='never'/>"));
        assert_eq!(
            bare.map(|p| (p.mode, p.always.len())),
            Some((Mode::Never, 0))
        );
    }

    #[test]
    fn refusals() {
        for bad in [
            "<prefs xmlns='urn:xmpp:mam:2'/>",
            "<prefs xmlns='urn:xmpp:mam:2' default='sometimes'/>",
            "<prefs xmlns='urn:xmpp:mam:2' default='always'><always><jid>a@b@c</jid></always></prefs>",
            "<prefs xmlns='urn:xmpp:mam:2' default='always'><always/><always/></prefs>",
            "<prefs xmlns='urn:xmpp:mam:2' default='always'><often/></prefs>",
            "<prefs xmlns='urn:xmpp:mam:2' default='always'><never><item>a@b</item></never></prefs>",
        ] {
            assert_eq!(parse(&el(bad)), None, "{bad}");
        }
    }
}
