//! What a query sends back (XEP-0313 §4.2): one `<message/>` per archived item, the stored message
//! forwarded inside it (XEP-0297) with its archive time (XEP-0203), then `<fin/>` in the IQ result.

use super::query::Page;
use super::{id, ns, rsm};
use crate::store::ArchivedMessage;
use crate::xml::{Element, Node, XmlError};
pub use crate::xmpp::datetime::stamp;

/// Whether result messages show the real JIDs a room's archive keeps with its messages
/// (`<x muc#user><item jid/></x>`, XEP-0313 §6.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RealJids {
    /// As stored (a user's archive, or a requester who may see them).
    Keep,
    /// Removed: the requester may not see them at the time of the query.
    Strip,
}

/// The result message for `row`, addressed from the archive `owner` to the `requester`. Fails
/// only when the stored bytes are not a message any more (a damaged row).
pub fn message(
    row: &ArchivedMessage,
    queryid: Option<&str>,
    owner: &str,
    requester: &str,
    real_jids: RealJids,
) -> Result<Element, XmlError> {
    let mut stored = crate::xml::Stanza::parse(row.stanza.clone())?.tree()?;
    if real_jids == RealJids::Strip {
        stored.children.retain(|n| !names_real_jid(n));
    }
    // The stored message is in `jabber:client` (its tree says so); nested under `<forwarded/>`,
    // serializing writes the `xmlns='jabber:client'` XEP-0297 asks for.
    let forwarded = Element::new("forwarded", ns::FORWARD)
        .with_child(Element::new("delay", ns::DELAY).with_attr("stamp", stamp(row.ts)))
        .with_child(stored);
    let mut result = Element::new("result", ns::MAM);
    if let Some(q) = queryid {
        result = result.with_attr("queryid", q);
    }
    let result = result
        .with_attr("id", id::encode(row.id))
        .with_child(forwarded);
    Ok(Element::new("message", crate::xmpp::ns::CLIENT)
        .with_attr("to", requester)
        .with_attr("from", owner)
        .with_child(result))
}

/// `n` is an `<x muc#user/>` giving an occupant's real JID (`<item jid/>`).
fn names_real_jid(n: &Node) -> bool {
    matches!(n, Node::Element(x) if x.name == "x"
        && x.ns == crate::xmpp::ns::MUC_USER
        && x.child_elements().any(|i| i.name == "item" && i.attr("jid").is_some()))
}

/// The `<fin/>` payload of the IQ result that ends the page.
pub fn fin(page: &Page) -> Element {
    let first = page.first.map(id::encode);
    let last = page.last.map(id::encode);
    let set = rsm::answer(
        first.as_deref().map(|f| (f, page.index)),
        last.as_deref(),
        page.count,
    );
    let mut fin = Element::new("fin", ns::MAM);
    if page.complete {
        fin = fin.with_attr("complete", "true");
    }
    fin.with_child(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::Stanza;

    #[test]
    fn result_message_forwards_the_stored_stanza() {
        let row = crate::modules::mam::query::test_row(
            "juliet@capulet.lit",
            77,
            "romeo@montague.lit/orchard",
            1_278_803_305_000_000,
            "<message from='romeo@montague.lit/orchard' type='chat'><body>a &amp; b</body></message>",
        );
        let el = message(
            &row,
            Some("f27"),
            "juliet@capulet.lit",
            "juliet@capulet.lit/chamber",
            RealJids::Keep,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let st = Stanza::from_element(&el);
        let text = String::from_utf8_lossy(st.bytes()).into_owned();
        assert!(
            text.starts_with("<message to='juliet@capulet.lit/chamber' from='juliet@capulet.lit'><result xmlns='urn:xmpp:mam:2' queryid='f27' id='77'><forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay' stamp='2010-07-10T23:08:25Z'/><message xmlns='jabber:client' from='romeo@montague.lit/orchard' type='chat'><body>a &amp; b</body></message>"),
            "{text}"
        );
        let damaged = ArchivedMessage {
            stanza: b"<message>".to_vec(),
            ..row
        };
        assert!(message(&damaged, None, "a@b", "a@b/c", RealJids::Keep).is_err());
    }

    #[test]
    fn real_jids_are_stripped_for_who_may_not_see_them() {
        let row = crate::modules::mam::query::test_row(
            "room@muc.lit",
            78,
            "room@muc.lit/nick",
            1_278_803_305_000_000,
            "<message from='room@muc.lit/nick' type='groupchat'><body>hi</body><x xmlns='http://jabber.org/protocol/muc#user'><item jid='a@b.lit/r'/></x></message>",
        );
        let text = |r| {
            let el = message(&row, None, "room@muc.lit", "c@d.lit/r", r)
                .unwrap_or_else(|e| panic!("{e}"));
            String::from_utf8_lossy(Stanza::from_element(&el).bytes()).into_owned()
        };
        assert!(text(RealJids::Keep).contains("jid='a@b.lit/r'"));
        let stripped = text(RealJids::Strip);
        assert!(
            !stripped.contains("a@b.lit") && stripped.contains("<body>hi</body>"),
            "{stripped}"
        );
    }
}
