//! Bookmarks in their three shapes, sans-IO: XEP-0048 `<storage xmlns='storage:bookmarks'/>` (in
//! private XML storage, XEP-0049, or in the PEP node `storage:bookmarks`, XEP-0411) and XEP-0402
//! items of the PEP node `urn:xmpp:bookmarks:1` (one `<conference/>` per room, the room's JID as
//! the item id). The server keeps them in step (XEP-0402 §5.3, XEP-0411 §3).

use crate::jid::BareJid;
use crate::xml::{Element, Node};

/// The XEP-0048 namespace (private XML fragment and the XEP-0411 PEP node).
pub const NS_STORAGE: &str = "storage:bookmarks";
/// The XEP-0402 namespace and PEP node.
pub const NS_BOOKMARKS2: &str = "urn:xmpp:bookmarks:1";

/// One room bookmark, whichever shape it came in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bookmark {
    /// The room.
    pub jid: BareJid,
    /// A name to show.
    pub name: Option<String>,
    /// Join on login.
    pub autojoin: bool,
    /// The preferred nickname.
    pub nick: Option<String>,
    /// The room password.
    pub password: Option<String>,
    /// XEP-0402 `<extensions/>`, kept as they were (XEP-0048 has no place for them).
    pub extensions: Option<Element>,
}

/// XML Schema booleans: `true` and `1` (XEP-0048 clients write both).
fn xs_bool(v: Option<&str>) -> bool {
    matches!(v.map(str::trim), Some("true" | "1"))
}

/// The text of `parent`'s child `name` in `ns`, when it has one that is not empty.
fn child_text(parent: &Element, name: &str, ns: &str) -> Option<String> {
    let t = parent.get_child(name, ns)?.text();
    (!t.is_empty()).then_some(t)
}

fn text_child(name: &str, ns: &str, text: &str) -> Element {
    Element::new(name, ns).with_text(text)
}

/// The room bookmarks of a `<storage xmlns='storage:bookmarks'/>`, in order. Conferences without a
/// valid JID are skipped; a repeated JID keeps its first entry (XEP-0402 has one item per room).
pub fn from_storage(storage: &Element) -> Vec<Bookmark> {
    let mut out: Vec<Bookmark> = Vec::new();
    for c in storage.child_elements() {
        if c.name != "conference" || c.ns != NS_STORAGE {
            continue;
        }
        let Some(jid) = c.attr("jid").and_then(|j| BareJid::parse(j).ok()) else {
            continue;
        };
        if out.iter().any(|b| b.jid == jid) {
            continue;
        }
        out.push(Bookmark {
            jid,
            name: c.attr("name").map(str::to_owned),
            autojoin: xs_bool(c.attr("autojoin")),
            nick: child_text(c, "nick", NS_STORAGE),
            password: child_text(c, "password", NS_STORAGE),
            extensions: None,
        });
    }
    out
}

/// A `<storage xmlns='storage:bookmarks'/>` holding `bookmarks`, after `keep` (the children of an
/// earlier storage that are not room bookmarks, such as `<url/>`, which XEP-0402 cannot hold).
pub fn to_storage(bookmarks: &[Bookmark], keep: &[Element]) -> Element {
    let mut s = Element::new("storage", NS_STORAGE);
    for k in keep {
        s = s.with_child(k.clone());
    }
    for b in bookmarks {
        let mut c = Element::new("conference", NS_STORAGE).with_attr("jid", b.jid.as_str());
        if let Some(n) = &b.name {
            c = c.with_attr("name", n.as_str());
        }
        c = c.with_attr("autojoin", if b.autojoin { "true" } else { "false" });
        if let Some(n) = &b.nick {
            c = c.with_child(text_child("nick", NS_STORAGE, n));
        }
        if let Some(p) = &b.password {
            c = c.with_child(text_child("password", NS_STORAGE, p));
        }
        s = s.with_child(c);
    }
    s
}

/// The children of a storage element that are not room bookmarks (kept across rewrites).
pub fn non_rooms(storage: &Element) -> Vec<Element> {
    storage
        .child_elements()
        .filter(|c| !(c.name == "conference" && c.ns == NS_STORAGE))
        .cloned()
        .collect()
}

/// The XEP-0402 item of `b`: its id (the room's JID) and its `<conference/>` payload.
pub fn to_item(b: &Bookmark) -> (String, Element) {
    let mut c = Element::new("conference", NS_BOOKMARKS2);
    if let Some(n) = &b.name {
        c = c.with_attr("name", n.as_str());
    }
    c = c.with_attr("autojoin", if b.autojoin { "true" } else { "false" });
    if let Some(n) = &b.nick {
        c = c.with_child(text_child("nick", NS_BOOKMARKS2, n));
    }
    if let Some(p) = &b.password {
        c = c.with_child(text_child("password", NS_BOOKMARKS2, p));
    }
    if let Some(e) = &b.extensions {
        c = c.with_child(e.clone());
    }
    (b.jid.as_str().to_owned(), c)
}

/// The bookmark of XEP-0402 item `id` with payload `conference`; `None` when the id is not a
/// JID or the payload is not a `<conference xmlns='urn:xmpp:bookmarks:1'/>`.
pub fn from_item(id: &str, conference: &Element) -> Option<Bookmark> {
    if conference.name != "conference" || conference.ns != NS_BOOKMARKS2 {
        return None;
    }
    let jid = BareJid::parse(id).ok()?;
    Some(Bookmark {
        jid,
        name: conference.attr("name").map(str::to_owned),
        autojoin: xs_bool(conference.attr("autojoin")),
        nick: child_text(conference, "nick", NS_BOOKMARKS2),
        password: child_text(conference, "password", NS_BOOKMARKS2),
        extensions: conference.get_child("extensions", NS_BOOKMARKS2).cloned(),
    })
}

/// What turns the XEP-0402 node holding `old` into one holding `new`: items to publish (new or
/// changed: XEP-0402 §5.3.2 sends no notification for unchanged ones) and ids to retract.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Bookmarks to publish.
    pub publish: Vec<Bookmark>,
    /// Rooms whose items go.
    pub retract: Vec<BareJid>,
}

/// The changes from `old` to `new`. A bookmark that came from XEP-0048 has no extensions: the
/// ones the old item had are kept, since the older format could not carry them.
pub fn changes(old: &[Bookmark], new: &[Bookmark]) -> Changes {
    let mut out = Changes::default();
    for n in new {
        match old.iter().find(|o| o.jid == n.jid) {
            Some(o) => {
                let mut n = n.clone();
                if n.extensions.is_none() {
                    n.extensions = o.extensions.clone();
                }
                if &n != o {
                    out.publish.push(n);
                }
            }
            None => out.publish.push(n.clone()),
        }
    }
    for o in old {
        if !new.iter().any(|n| n.jid == o.jid) {
            out.retract.push(o.jid.clone());
        }
    }
    out
}

/// Whether an element has any content (a `<storage/>` may come empty: no bookmarks).
pub fn is_empty(el: &Element) -> bool {
    !el.children.iter().any(|n| matches!(n, Node::Element(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::xml::test_element as parse;

    #[test]
    fn storage_round_trips_through_items() {
        let s = parse(
            "<storage xmlns='storage:bookmarks'>\
               <url name='Home' url='https://example.org'/>\
               <conference jid='council@conference.example.org' name='Council' autojoin='1'>\
                 <nick>puck</nick><password>pw</password></conference>\
               <conference jid='plain@conference.example.org'/>\
               <conference jid='council@conference.example.org' name='dup'/>\
               <conference jid='not a jid@@'/>\
             </storage>",
        );
        let b = from_storage(&s);
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].name.as_deref(), Some("Council"));
        assert!(b[0].autojoin && !b[1].autojoin);
        assert_eq!(b[0].nick.as_deref(), Some("puck"));
        assert_eq!(b[0].password.as_deref(), Some("pw"));
        let items: Vec<_> = b.iter().map(to_item).collect();
        assert_eq!(items[0].0, "council@conference.example.org");
        let back: Vec<_> = items
            .iter()
            .map(|(id, c)| from_item(id, c).expect("own item converts back"))
            .collect();
        assert_eq!(back, b);
        let again = to_storage(&back, &non_rooms(&s));
        assert_eq!(from_storage(&again), b);
        assert_eq!(non_rooms(&again).len(), 1, "the url is kept");
    }

    #[test]
    fn items_keep_extensions_and_refuse_strangers() {
        let c = parse(
            "<conference xmlns='urn:xmpp:bookmarks:1' name='R' autojoin='true'>\
               <nick>n</nick><extensions><x xmlns='urn:example'/></extensions></conference>",
        );
        let b = from_item("r@muc.example.org", &c).expect("valid item");
        assert!(b.extensions.is_some());
        assert!(from_item("bad@@", &c).is_none());
        let other = parse("<conference xmlns='storage:bookmarks'/>");
        assert!(from_item("r@muc.example.org", &other).is_none());
        // XEP-0048 cannot carry extensions: converting back and forth keeps the old ones.
        let stripped = Bookmark {
            extensions: None,
            ..b.clone()
        };
        assert_eq!(
            changes(std::slice::from_ref(&b), &[stripped]),
            Changes::default()
        );
    }

    #[test]
    fn changes_publish_only_what_differs() {
        let mk = |j: &str, name: &str| Bookmark {
            jid: BareJid::parse(j).expect("valid"),
            name: Some(name.to_owned()),
            autojoin: false,
            nick: None,
            password: None,
            extensions: None,
        };
        let old = vec![mk("a@m.example", "A"), mk("b@m.example", "B")];
        let new = vec![
            mk("a@m.example", "A"),
            mk("c@m.example", "C"),
            mk("b@m.example", "B2"),
        ];
        let c = changes(&old, &new);
        let published: Vec<_> = c.publish.iter().map(|b| b.jid.as_str()).collect();
        assert_eq!(published, ["c@m.example", "b@m.example"]);
        assert!(c.retract.is_empty());
        let c = changes(&new, &old[..1]);
        let retracted: Vec<_> = c.retract.iter().map(|j| j.as_str()).collect();
        assert_eq!(retracted, ["c@m.example", "b@m.example"]);
        assert!(is_empty(&to_storage(&[], &[])));
    }
}
