use super::*;
use crate::c2s::route::{user_receive, user_send};
use crate::jid::FullJid;
use crate::shard::cluster::Cluster;
use crate::shard::ConnMsg;

fn run(n: usize, max: u32, reqs: &[&str]) -> Vec<Element> {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut c = Cluster::new(n, &["localhost"]);
    for s in c.shards.iter_mut() {
        start(s, &["localhost".to_string()], &Options { max_bytes: max });
    }
    let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    // Bob exists: his storage is refused `forbidden`; nobody's, `service-unavailable`.
    let bob = crate::jid::BareJid::parse("bob@localhost").unwrap_or_else(|e| panic!("{e}"));
    store
        .add_user(&bob, &crate::auth::ScramSecrets::derive("pw", 4096))
        .unwrap_or_else(|e| panic!("{e}"));
    c.store = Some(store);
    let on = n - 1;
    let jid = FullJid::parse("alice@localhost/a").unwrap_or_else(|e| panic!("{e}"));
    let (mut sess, mb) = c.connect(on, &jid, None);
    let mut out = Vec::new();
    for r in reqs {
        let st = Stanza::parse(r.as_bytes().to_vec()).unwrap_or_else(|e| panic!("{e}"));
        user_send(&mut c.shards[on], &mut sess, st);
        c.pump();
        while let Some(ConnMsg::Deliver(acc)) = mb.pop() {
            if let Some(acc) = user_receive(&mut c.shards[on], acc) {
                out.push(acc.stanza.tree().unwrap_or_else(|e| panic!("{e}")));
            }
        }
    }
    out
}

fn cond(el: &Element) -> Option<String> {
    let e = el.get_child("error", ns::CLIENT)?;
    e.child_elements().next().map(|c| c.name.clone())
}

#[test]
fn round_trip_limits_and_refusals() {
    for n in [1, 2] {
        let got = run(
            n,
            200,
            &[
                "<iq type='get' id='g0'><query xmlns='jabber:iq:private'><prefs xmlns='x:p'/></query></iq>",
                "<iq type='set' id='s1'><query xmlns='jabber:iq:private'><prefs xmlns='x:p'><a>1</a></prefs></query></iq>",
                "<iq type='get' id='g1'><query xmlns='jabber:iq:private'><prefs xmlns='x:p'/></query></iq>",
                // Would bring the total over 200 bytes: refused, and nothing of it stored.
                // (170 bytes on their own: under the limit; with the stored 36: over it.)
                &format!("<iq type='set' id='big'><query xmlns='jabber:iq:private'><n xmlns='x:n'>{}</n><q xmlns='x:q'/></query></iq>", "y".repeat(135)),
                "<iq type='get' id='g2'><query xmlns='jabber:iq:private'><n xmlns='x:n'/></query></iq>",
                "<iq type='get' id='g3'><query xmlns='jabber:iq:private'><q xmlns='x:q'/></query></iq>",
                "<iq type='set' id='bad'><query xmlns='jabber:iq:private'><x xmlns='jabber:client'/></query></iq>",
                "<iq type='get' id='bad2'><query xmlns='jabber:iq:private'><x xmlns='jabber:iq:private'/></query></iq>",
                "<iq type='get' id='none'><query xmlns='jabber:iq:private'/></iq>",
                "<iq type='set' id='noneset'><query xmlns='jabber:iq:private'/></iq>",
                "<iq type='get' id='other' to='bob@localhost'><query xmlns='jabber:iq:private'><p xmlns='x:p'/></query></iq>",
                "<iq type='get' id='nobody' to='nobody@localhost'><query xmlns='jabber:iq:private'><p xmlns='x:p'/></query></iq>",
                &format!("<iq type='set' id='huge'><query xmlns='jabber:iq:private'><n xmlns='x:n'>{}</n></query></iq>", "y".repeat(300)),
                // XEP-0049 §2.3: several elements of one namespace are stored together.
                "<iq type='set' id='two'><query xmlns='jabber:iq:private'><a xmlns='x:y'>1</a><b xmlns='x:y'>2</b></query></iq>",
                "<iq type='get' id='g4'><query xmlns='jabber:iq:private'><a xmlns='x:y'/></query></iq>",
            ],
        );
        let by_id = |id: &str| {
            got.iter()
                .find(|e| e.attr("id") == Some(id))
                .unwrap_or_else(|| panic!("n={n}: no answer to {id}: {got:?}"))
        };
        let frag = |id: &str| {
            let mut v = Vec::new();
            by_id(id)
                .get_child("query", NS)
                .and_then(|q| q.child_elements().next())
                .unwrap_or_else(|| panic!("no fragment"))
                .write_to(&mut v);
            String::from_utf8_lossy(&v).into_owned()
        };
        assert_eq!(frag("g0"), "<prefs xmlns='x:p'/>");
        assert_eq!(by_id("s1").attr("type"), Some("result"));
        assert_eq!(frag("g1"), "<prefs xmlns='x:p'><a>1</a></prefs>");
        assert_eq!(cond(by_id("big")).as_deref(), Some("not-acceptable"));
        assert_eq!(
            frag("g2"),
            "<n xmlns='x:n'/>",
            "part of a refused set was stored"
        );
        assert_eq!(
            frag("g3"),
            "<q xmlns='x:q'/>",
            "part of a refused set was stored"
        );
        assert_eq!(cond(by_id("bad")).as_deref(), Some("not-acceptable"));
        assert_eq!(cond(by_id("bad2")).as_deref(), Some("not-acceptable"));
        assert_eq!(cond(by_id("none")).as_deref(), Some("bad-request"));
        // XEP-0049 §2.3: a set with nothing to store.
        assert_eq!(cond(by_id("noneset")).as_deref(), Some("not-acceptable"));
        assert_eq!(cond(by_id("other")).as_deref(), Some("forbidden"));
        // RFC 6121 §8.5.1: no such account.
        assert_eq!(
            cond(by_id("nobody")).as_deref(),
            Some("service-unavailable")
        );
        assert_eq!(cond(by_id("huge")).as_deref(), Some("not-acceptable"));
        assert_eq!(by_id("two").attr("type"), Some("result"));
        let mut both = Vec::new();
        by_id("g4")
            .get_child("query", NS)
            .unwrap_or_else(|| panic!("no query"))
            .write_to(&mut both);
        assert_eq!(
            String::from_utf8_lossy(&both),
            "<query xmlns='jabber:iq:private'><a xmlns='x:y'>1</a><b xmlns='x:y'>2</b></query>"
        );
    }
}
