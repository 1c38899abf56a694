use super::*;
use crate::auth::ScramSecrets;
use crate::c2s::route::{user_receive, user_send};
use crate::jid::FullJid;
use crate::shard::cluster::Cluster;
use crate::shard::ConnMsg;
use crate::xmpp::ns;

fn cond(el: &Element) -> Option<String> {
    let e = el.get_child("error", ns::CLIENT)?;
    e.child_elements().next().map(|c| c.name.clone())
}

#[test]
fn set_get_other_user_empty_and_size_limit() {
    for n in [1, 2] {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        for u in ["alice@localhost", "bob@localhost"] {
            let j = BareJid::parse(u).unwrap_or_else(|e| panic!("{e}"));
            store
                .add_user(&j, &ScramSecrets::derive("p", 16))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let mut c = Cluster::new(n, &["localhost"]);
        for s in c.shards.iter_mut() {
            start(s, &["localhost".to_string()], &Options { max_bytes: 120 });
        }
        c.store = Some(store);
        let jid = FullJid::parse("alice@localhost/a").unwrap_or_else(|e| panic!("{e}"));
        let (mut sess, mb) = c.connect(n - 1, &jid, None);
        let reqs = [
            "<iq type='get' id='own0'><vCard xmlns='vcard-temp'/></iq>",
            "<iq type='set' id='set'><vCard xmlns='vcard-temp'><FN>Alice</FN></vCard></iq>",
            "<iq type='get' id='own1'><vCard xmlns='vcard-temp'/></iq>",
            "<iq type='get' id='bob' to='bob@localhost'><vCard xmlns='vcard-temp'/></iq>",
            "<iq type='get' id='ghost' to='ghost@localhost'><vCard xmlns='vcard-temp'/></iq>",
            "<iq type='set' id='other' to='bob@localhost'><vCard xmlns='vcard-temp'><FN>X</FN></vCard></iq>",
            &format!("<iq type='set' id='big'><vCard xmlns='vcard-temp'><FN>{}</FN></vCard></iq>", "z".repeat(200)),
            "<iq type='get' id='own2'><vCard xmlns='vcard-temp'/></iq>",
        ];
        let mut got = Vec::new();
        for r in reqs {
            let st = Stanza::parse(r.as_bytes().to_vec()).unwrap_or_else(|e| panic!("{e}"));
            user_send(&mut c.shards[n - 1], &mut sess, st);
            c.pump();
            while let Some(ConnMsg::Deliver(acc)) = mb.pop() {
                if let Some(acc) = user_receive(&mut c.shards[n - 1], acc) {
                    got.push(acc.stanza.tree().unwrap_or_else(|e| panic!("{e}")));
                }
            }
        }
        let by_id = |id: &str| {
            got.iter()
                .find(|e| e.attr("id") == Some(id))
                .unwrap_or_else(|| panic!("n={n}: no answer to {id}: {got:?}"))
        };
        let fn_of = |id: &str| {
            by_id(id)
                .get_child("vCard", NS)
                .map(|v| v.get_child("FN", NS).map(|f| f.text()))
        };
        assert_eq!(fn_of("own0"), Some(None), "empty vCard expected");
        assert_eq!(by_id("set").attr("type"), Some("result"));
        assert_eq!(fn_of("own1"), Some(Some("Alice".into())));
        // §3.3: bob has none; to anyone else that looks like a missing account.
        assert_eq!(cond(by_id("bob")).as_deref(), Some("service-unavailable"));
        assert_eq!(cond(by_id("ghost")).as_deref(), Some("service-unavailable"));
        assert_eq!(cond(by_id("other")).as_deref(), Some("forbidden"));
        assert_eq!(cond(by_id("big")).as_deref(), Some("not-acceptable"));
        assert_eq!(
            fn_of("own2"),
            Some(Some("Alice".into())),
            "oversized vCard replaced the stored one"
        );
    }
}
