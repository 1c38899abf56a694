//! Wire tests of the message archive (XEP-0313) with what it meets on the route: account removal,
//! offline storage, the offline hold under stream management, carbons and `roster` preferences,
//! against the real binary at 1 and 2 shards.

mod common;

use common::{error_condition, Client, Server};
use petrel::xml::Stanza;

const SHARDS: [usize; 2] = [1, 2];
const MAM: &str = "urn:xmpp:mam:2";

fn text(s: &Stanza) -> String {
    String::from_utf8_lossy(s.bytes()).into_owned()
}

/// Sends `xml`, an IQ with id `id`, and returns its answer.
fn iq(c: &mut Client, id: &str, xml: &str) -> Stanza {
    c.send(xml);
    c.expect("iq answer", |s| {
        s.name() == "iq" && s.id().as_deref() == Some(id)
    })
}

/// Queries the own archive with `inner` (RSM, form) and returns the result messages and the IQ
/// result, in the order they came; anything else arriving meanwhile is skipped.
fn query(c: &mut Client, id: &str, inner: &str) -> (Vec<Stanza>, Stanza) {
    c.send(&format!(
        "<iq type='set' id='{id}'><query xmlns='{MAM}' queryid='{id}'>{inner}</query></iq>"
    ));
    let mut results = Vec::new();
    loop {
        let s = c.expect("archive", |s| {
            s.id().as_deref() == Some(id) || text(s).contains(&format!("queryid='{id}'"))
        });
        if s.name() == "iq" {
            return (results, s);
        }
        results.push(s);
    }
}

/// The bodies of the archived messages of `results`, in order.
fn archived_bodies(results: &[Stanza]) -> Vec<String> {
    results
        .iter()
        .filter_map(|r| {
            let t = text(r);
            let start = t.find("<body>")? + "<body>".len();
            let end = t[start..].find("</body>")? + start;
            Some(t[start..end].to_owned())
        })
        .collect()
}

#[test]
fn a_removed_accounts_preferences_do_not_pass_to_the_next_account_of_the_name() {
    // XEP-0077 §3.2 removes everything of the account, its archiving preferences too: the store
    // dropped them, the shards' tables kept them until a restart, and whoever registered the name
    // next archived nothing (default='never' inherited).
    use common::admin::{add_user, api, start};
    let modules = "[modules.register]\n[modules.mam]\n";
    for shards in SHARDS {
        let (server, http) = start(shards, &["bob"], true, modules);
        let mut bob = server.login("bob", "b", Some(0));
        for (round, in_band) in [(0, true), (1, false)] {
            let name = format!("reuse{round}");
            add_user(http, &name);
            let mut old = server.login(&name, "r", Some(0));
            let set = "<iq type='set' id='p'><prefs xmlns='urn:xmpp:mam:2' default='never'/></iq>";
            assert_eq!(iq(&mut old, "p", set).type_().as_deref(), Some("result"));
            if in_band {
                old.send(
                    "<iq type='set' id='rm'><query xmlns='jabber:iq:register'><remove/></query></iq>",
                );
                let r = old.expect("removal", |s| s.id().as_deref() == Some("rm"));
                assert_eq!(r.type_().as_deref(), Some("result"));
            } else {
                let path = format!("/api/users/{name}@localhost");
                let r = api(http, "DELETE", &path, None);
                assert_eq!(r.status, 200, "{}", r.body);
            }
            old.read_to_close();
            add_user(http, &name);
            let mut new = server.login(&name, "r", Some(0));
            let get = "<iq type='get' id='g'><prefs xmlns='urn:xmpp:mam:2'/></iq>";
            let prefs = text(&iq(&mut new, "g", get));
            assert!(
                prefs.contains("default='always'"),
                "{shards} shards, in-band {in_band}: {prefs}"
            );
            bob.chat(&format!("{name}@localhost"), "after");
            new.expect("bob's message", |s| {
                common::body(s).as_deref() == Some("after")
            });
            let (results, _) = query(&mut new, "q", "");
            assert_eq!(
                archived_bodies(&results),
                ["after"],
                "{shards} shards, in-band {in_band}"
            );
        }
    }
}

#[test]
fn messages_offline_storage_refuses_stay_out_of_the_archive() {
    // XEP-0313 §7.1: a message the server bounced (offline storage full, or the message too large
    // for it: the sender got `service-unavailable`) was kept in the recipient's archive anyway,
    // and came back to him from there.
    let modules = "[modules.offline]\nmax_per_user = 2\n[modules.mam]\n";
    for shards in SHARDS {
        let server = Server::start_with(shards, &["alice", "bob"], "", modules);
        let mut alice = server.login("alice", "a", Some(0));
        for i in 0..3 {
            alice.send(&format!(
                "<message to='bob@localhost' type='chat' id='m{i}'><body>stored {i}</body></message>"
            ));
        }
        let e = alice.expect("bounce", |s| s.id().as_deref() == Some("m2"));
        assert_eq!(error_condition(&e).as_deref(), Some("service-unavailable"));
        // Under the stanza limit (64 KiB), over what offline storage keeps.
        let head = "<message to='bob@localhost' type='chat' id='big'><body>";
        let tail = "</body></message>";
        let body = "b".repeat(65_300 - head.len() - tail.len());
        alice.send(&format!("{head}{body}{tail}"));
        let e = alice.expect("bounce", |s| s.id().as_deref() == Some("big"));
        assert_eq!(error_condition(&e).as_deref(), Some("service-unavailable"));
        let mut bob = server.login("bob", "b", Some(0));
        let (results, _) = query(&mut bob, "q", "");
        assert_eq!(
            archived_bodies(&results),
            ["stored 0", "stored 1"],
            "shards={shards}"
        );
    }
}

#[test]
fn archive_results_come_before_their_fin_while_stored_messages_wait_for_their_ack() {
    // XEP-0313 §4: the IQ result comes after the last result message. While a stream-managed
    // client had not acknowledged its stored messages, the hold that keeps newer live messages
    // behind them (offline::hold) held the result messages too, and let the IQ result pass:
    // `<fin/>` came first, the results only at the client's ack.
    let modules = "[modules.offline]\n[modules.mam]\n[modules.stream_management]\n";
    for shards in SHARDS {
        let server = Server::start_with(shards, &["alice", "carl"], "", modules);
        let mut alice = server.login("alice", "a", Some(0));
        for i in 0..3 {
            alice.chat("carl@localhost", &format!("stored {i}"));
        }
        alice.sync();
        let mut carl = server.connect();
        carl.auth_plain("carl", "localhost", common::PASSWORD);
        carl.bind("r");
        carl.send("<enable xmlns='urn:xmpp:sm:3'/>");
        carl.expect("enabled", |s| s.name() == "enabled");
        carl.send("<presence/>");
        for i in 0..3 {
            let m = carl.expect("stored", |s| s.name() == "message");
            assert_eq!(common::body(&m), Some(format!("stored {i}")));
        }
        // Not acknowledged: the server's `<r/>` goes unanswered.
        let rsm = "<set xmlns='http://jabber.org/protocol/rsm'><max>2</max><before/></set>";
        carl.send(&format!(
            "<iq type='set' id='mq'><query xmlns='{MAM}' queryid='qq'>{rsm}</query></iq>"
        ));
        let mut got = Vec::new();
        loop {
            let s = carl.next_stanza();
            match s.name() {
                "r" | "a" => continue,
                "iq" => break,
                _ => got.push(s),
            }
        }
        assert_eq!(
            archived_bodies(&got),
            ["stored 1", "stored 2"],
            "shards={shards}: {:?}",
            got.iter().map(text).collect::<Vec<_>>()
        );
    }
}

/// The `id` of the `<stanza-id by='by'/>` in `xml` (serialized), if it has one.
fn stanza_id_by(xml: &str, by: &str) -> Option<String> {
    let at = xml.find(&format!("<stanza-id xmlns='urn:xmpp:sid:0' by='{by}' id='"))?;
    let rest = &xml[at..];
    let start = rest.find("id='")? + "id='".len();
    let end = rest[start..].find('\'')? + start;
    Some(rest[start..end].to_owned())
}

#[test]
fn a_sent_carbon_carries_the_senders_stanza_id() {
    // XEP-0313 §3.3 (SHOULD): the sender's other devices learn where the archive keeps a message
    // it sent from the `<stanza-id/>` in the `<sent/>` carbon, as a received carbon has the
    // recipient's; a sent carbon had none.
    let modules = "[modules.carbons]\n[modules.mam]\n";
    for shards in SHARDS {
        let server = Server::start_with(shards, &["alice", "bob"], "", modules);
        let mut bob = server.login("bob", "b", Some(0));
        let mut phones = Vec::new();
        for res in ["one", "two"] {
            let mut c = server.login("alice", res, Some(0));
            let enable = "<iq type='set' id='cb'><enable xmlns='urn:xmpp:carbons:2'/></iq>";
            assert_eq!(iq(&mut c, "cb", enable).type_().as_deref(), Some("result"));
            phones.push(c);
        }
        phones[0]
            .send("<message to='bob@localhost' type='chat' id='s1'><body>sent</body></message>");
        bob.expect("message", |s| s.id().as_deref() == Some("s1"));
        let carbon = phones[1].expect("sent carbon", |s| text(s).contains("<sent"));
        let carbon = text(&carbon);
        let sid = stanza_id_by(&carbon, "alice@localhost");
        let (results, _) = query(&mut phones[1], "q", "");
        let archived: Vec<_> = results
            .iter()
            .filter_map(|r| {
                r.tree()
                    .ok()?
                    .get_child("result", MAM)?
                    .attr("id")
                    .map(str::to_owned)
            })
            .collect();
        assert_eq!(archived.len(), 1, "shards={shards}");
        assert_eq!(
            sid.as_deref(),
            Some(archived[0].as_str()),
            "shards={shards}: {carbon}"
        );
    }
}

#[test]
fn a_message_bounced_for_a_block_stays_out_of_the_archive_whenever_the_block_ends() {
    // XEP-0313 §7.1, XEP-0191: the blocked sender was told `service-unavailable`; the archive
    // kept the message until its rows were written, and kept it for good when the user unblocked
    // the sender before then (about a second).
    let modules = "[modules.blocking]\n[modules.mam]\n";
    for shards in SHARDS {
        let server = Server::start_with(shards, &["erin", "frank"], "", modules);
        let mut erin = server.login("erin", "e", Some(0));
        let mut frank = server.login("frank", "f", Some(0));
        let block = "<iq type='set' id='b'><block xmlns='urn:xmpp:blocking'>\
                     <item jid='frank@localhost'/></block></iq>";
        assert_eq!(iq(&mut erin, "b", block).type_().as_deref(), Some("result"));
        for (id, to) in [("x1", "erin@localhost"), ("x2", "erin@localhost/e")] {
            frank.send(&format!(
                "<message to='{to}' type='chat' id='{id}'><body>blocked {id}</body></message>"
            ));
            let e = frank.expect("bounce", |s| s.id().as_deref() == Some(id));
            assert_eq!(error_condition(&e).as_deref(), Some("service-unavailable"));
        }
        let unblock = "<iq type='set' id='u'><unblock xmlns='urn:xmpp:blocking'>\
                       <item jid='frank@localhost'/></unblock></iq>";
        assert_eq!(
            iq(&mut erin, "u", unblock).type_().as_deref(),
            Some("result")
        );
        frank.send(
            "<message to='erin@localhost' type='chat' id='ok'><body>welcome</body></message>",
        );
        erin.expect("the message after the block", |s| {
            s.id().as_deref() == Some("ok")
        });
        let (results, _) = query(&mut erin, "q", "");
        assert_eq!(archived_bodies(&results), ["welcome"], "shards={shards}");
    }
}
