//! Roster items (RFC 6121 §2.1.2) and the roster set request, to and from XML.

use super::state::SubState;
use crate::jid::{BareJid, Jid};
use crate::xml::Element;
use crate::xmpp::{ns, StanzaErrorCondition};

/// Longest group name or item name accepted, in bytes (RFC 6121 §2.3.3 lets the server choose).
pub const MAX_NAME_BYTES: usize = 1024;
/// Most groups one item may be in.
pub const MAX_GROUPS: usize = 64;

/// One contact of a user: what the roster shows plus the hidden pending-in request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterItem {
    /// The contact's bare JID.
    pub jid: BareJid,
    /// The user's name for the contact.
    pub name: Option<String>,
    /// Groups, sorted.
    pub groups: Vec<String>,
    /// Subscription state.
    pub state: SubState,
    /// False for rows that only hold a pending inbound request (not shown in the roster).
    pub in_roster: bool,
    /// The stored `subscribe` stanza while a request is pending in, for re-delivery.
    pub request: Option<String>,
}

impl RosterItem {
    /// A new visible item with no subscription.
    pub fn new(jid: BareJid) -> RosterItem {
        RosterItem {
            jid,
            name: None,
            groups: Vec::new(),
            state: SubState::default(),
            in_roster: true,
            request: None,
        }
    }

    /// True when the user would see no difference between the two items.
    pub fn same_view(&self, other: &RosterItem) -> bool {
        let view = |i: &RosterItem| {
            (
                i.jid.clone(),
                i.name.clone(),
                i.groups.clone(),
                i.state.to,
                i.state.from,
                i.state.pending_out,
                i.state.approved,
            )
        };
        view(self) == view(other)
    }

    /// True when the row holds nothing worth keeping (not in the roster, nothing pending).
    pub fn is_empty(&self) -> bool {
        !self.in_roster && !self.state.pending_in
    }

    /// `<item/>` as in a roster result or push.
    pub fn to_element(&self) -> Element {
        let mut el = Element::new("item", ns::ROSTER)
            .with_attr("jid", self.jid.as_str())
            .with_attr("subscription", self.state.subscription());
        if let Some(name) = &self.name {
            el = el.with_attr("name", name.as_str());
        }
        if self.state.pending_out {
            el = el.with_attr("ask", "subscribe");
        }
        if self.state.approved {
            el = el.with_attr("approved", "true");
        }
        for g in &self.groups {
            el = el.with_child(Element::new("group", ns::ROSTER).with_text(g));
        }
        el
    }

    /// `<item subscription='remove'/>` for a push after removal.
    pub fn removed_element(jid: &BareJid) -> Element {
        Element::new("item", ns::ROSTER)
            .with_attr("jid", jid.as_str())
            .with_attr("subscription", "remove")
    }
}

/// A roster set (RFC 6121 §2.3, §2.5), validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetRequest {
    /// Add or update an item: name and groups replace the stored ones; the subscription is kept.
    Update {
        /// Contact.
        jid: BareJid,
        /// New name.
        name: Option<String>,
        /// New groups, sorted and unique.
        groups: Vec<String>,
    },
    /// `subscription='remove'`.
    Remove(BareJid),
}

impl SetRequest {
    /// The contact the request is about.
    pub fn jid(&self) -> &BareJid {
        match self {
            SetRequest::Update { jid, .. } | SetRequest::Remove(jid) => jid,
        }
    }

    /// Validates the `<query/>` of a roster set with the errors of RFC 6121 §2.3.3 / §2.5.3.
    pub fn parse(query: &Element) -> Result<SetRequest, StanzaErrorCondition> {
        let mut items = query.child_elements();
        let item = match (items.next(), items.next()) {
            (Some(i), None) if i.name == "item" && i.ns == ns::ROSTER => i,
            // §2.3.3: exactly one <item/>.
            _ => return Err(StanzaErrorCondition::BadRequest),
        };
        let raw = item.attr("jid").ok_or(StanzaErrorCondition::BadRequest)?;
        let jid = Jid::parse(raw).map_err(|_| StanzaErrorCondition::JidMalformed)?;
        // Roster items are bare JIDs (§2.1.1); a full JID is a well-formed address but a bad request.
        let jid = jid
            .try_into_bare()
            .map_err(|_| StanzaErrorCondition::BadRequest)?;
        // Any other subscription value (and 'ask') from a client is ignored (§2.1.2.5, §2.3.3).
        if item.attr("subscription") == Some("remove") {
            return Ok(SetRequest::Remove(jid));
        }
        let name = item.attr("name").map(str::to_owned);
        if name.as_ref().is_some_and(|n| n.len() > MAX_NAME_BYTES) {
            return Err(StanzaErrorCondition::NotAcceptable);
        }
        let mut groups = Vec::new();
        for g in item.child_elements() {
            if g.name != "group" || g.ns != ns::ROSTER {
                continue;
            }
            let text = g.text();
            // §2.3.3: an empty group name or one over the server's limit is not acceptable (a
            // name of spaces alone shows as empty in every client).
            if text.trim().is_empty() || text.len() > MAX_NAME_BYTES {
                return Err(StanzaErrorCondition::NotAcceptable);
            }
            groups.push(text);
        }
        if groups.len() > MAX_GROUPS {
            return Err(StanzaErrorCondition::NotAcceptable);
        }
        groups.sort();
        let n = groups.len();
        groups.dedup();
        if groups.len() != n {
            // §2.3.3: duplicate <group/> elements.
            return Err(StanzaErrorCondition::BadRequest);
        }
        Ok(SetRequest::Update { jid, name, groups })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::Stanza;

    fn query(xml: &str) -> Element {
        let s = Stanza::parse(
            format!("<iq type='set'><query xmlns='jabber:iq:roster'>{xml}</query></iq>")
                .into_bytes(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let iq = s.tree().unwrap_or_else(|e| panic!("{e}"));
        let q = iq.child_elements().next().cloned();
        q.unwrap_or_else(|| panic!("no query"))
    }

    #[test]
    fn parses_updates_and_removes() {
        let r = SetRequest::parse(&query(
            "<item jid='Bob@Example.com' name='B' subscription='both' ask='subscribe'>\
             <group>w</group><group>a</group></item>",
        ));
        let jid = BareJid::parse("bob@example.com").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            r,
            Ok(SetRequest::Update {
                jid: jid.clone(),
                name: Some("B".into()),
                groups: vec!["a".into(), "w".into()]
            })
        );
        let r = SetRequest::parse(&query(
            "<item jid='bob@example.com' subscription='remove'/>",
        ));
        assert_eq!(r, Ok(SetRequest::Remove(jid)));
    }

    #[test]
    fn rejects_bad_items_with_rfc_errors() {
        use StanzaErrorCondition::*;
        let cases = [
            ("", BadRequest),
            ("<item jid='a@b'/><item jid='c@d'/>", BadRequest),
            ("<item/>", BadRequest),
            ("<item jid='a@b@c'/>", JidMalformed),
            ("<item jid=''/>", JidMalformed),
            ("<item jid='a@b/res'/>", BadRequest),
            (
                "<item jid='a@b'><group>x</group><group>x</group></item>",
                BadRequest,
            ),
            ("<item jid='a@b'><group></group></item>", NotAcceptable),
            ("<item jid='a@b'><group>  </group></item>", NotAcceptable),
        ];
        for (xml, want) in cases {
            assert_eq!(SetRequest::parse(&query(xml)), Err(want), "{xml}");
        }
        let long = "x".repeat(MAX_NAME_BYTES + 1);
        let xml = format!("<item jid='a@b'><group>{long}</group></item>");
        assert_eq!(SetRequest::parse(&query(&xml)), Err(NotAcceptable));
    }

    #[test]
    fn item_element_shows_state() {
        let mut it = RosterItem::new(BareJid::parse("a@b").unwrap_or_else(|e| panic!("{e}")));
        it.state.from = true;
        it.state.pending_out = true;
        it.groups = vec!["g".into()];
        let el = it.to_element();
        assert_eq!(el.attr("subscription"), Some("from"));
        assert_eq!(el.attr("ask"), Some("subscribe"));
        assert_eq!(el.attr("approved"), None);
        assert_eq!(
            el.get_child("group", ns::ROSTER).map(|g| g.text()),
            Some("g".into())
        );
    }
}
