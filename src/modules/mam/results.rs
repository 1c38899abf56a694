//! What a query sends back (XEP-0313 §4.2): one `<message/>` per archived item, the stored message
//! forwarded inside it (XEP-0297) with its archive time (XEP-0203), then `<fin/>` in the IQ result.

use super::query::Page;
use super::{id, ns, rsm};
use crate::store::ArchivedMessage;
use crate::xml::{Element, XmlError};
pub use crate::xmpp::datetime::stamp;

/// The result message for `row`, addressed from the archive `owner` to the `requester`. Fails
/// only when the stored bytes are not a message any more (a damaged row).
pub fn message(
    row: &ArchivedMessage,
    queryid: Option<&str>,
    owner: &str,
    requester: &str,
) -> Result<Element, XmlError> {
    let stored = crate::xml::Stanza::parse(row.stanza.clone())?.tree()?;
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
        assert!(message(&damaged, None, "a@b", "a@b/c").is_err());
    }
}
