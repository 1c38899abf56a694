//! Wire tests of disco, ping both ways, version, time, last activity and in-band registration against
//! the real binary, at 1 and 2 shards.

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use common::{error_condition, Client, Server};
use petrel::xml::{Element, Stanza};
use petrel::xmpp::ns;

const ALL: &str = "[modules.version]\n[modules.time]\n[modules.last]\n";

fn payload(s: &Stanza, want_ns: &str) -> Element {
    let t = s.tree().unwrap();
    assert_eq!(
        t.attr("type"),
        Some("result"),
        "{}",
        String::from_utf8_lossy(s.bytes())
    );
    let found = t.child_elements().find(|c| c.ns == want_ns).cloned();
    found.unwrap_or_else(|| panic!("no {want_ns}: {}", String::from_utf8_lossy(s.bytes())))
}

fn iq(c: &mut Client, to: &str, body: &str) -> Stanza {
    let id = format!("q{}", common::rand_u64());
    c.send(&format!("<iq type='get' id='{id}' to='{to}'>{body}</iq>"));
    c.expect("iq reply", |s| s.id().as_deref() == Some(id.as_str()))
}

fn server_features(c: &mut Client) -> Vec<String> {
    let r = iq(
        c,
        "localhost",
        &format!("<query xmlns='{}'/>", ns::DISCO_INFO),
    );
    let q = payload(&r, ns::DISCO_INFO);
    let id = q.get_child("identity", ns::DISCO_INFO).unwrap();
    assert_eq!(
        (id.attr("category"), id.attr("type")),
        (Some("server"), Some("im"))
    );
    q.child_elements()
        .filter_map(|f| f.attr("var").map(str::to_owned))
        .collect()
}

fn disco_follows_modules(shards: usize) {
    let on = Server::start_with(shards, &["alice"], "", ALL);
    let mut c = on.login("alice", "r", None);
    let f = server_features(&mut c);
    for want in [
        ns::PING,
        ns::DISCO_INFO,
        ns::DISCO_ITEMS,
        "jabber:iq:version",
        "urn:xmpp:time",
        "jabber:iq:last",
    ] {
        assert!(f.iter().any(|x| x == want), "{want} missing: {f:?}");
    }
    assert!(
        !f.iter().any(|x| x == "jabber:iq:register"),
        "register is off by default: {f:?}"
    );
    // Node queries are unknown; the account itself has its own identity.
    let r = iq(
        &mut c,
        "localhost",
        &format!("<query xmlns='{}' node='x'/>", ns::DISCO_INFO),
    );
    assert_eq!(error_condition(&r).as_deref(), Some("item-not-found"));
    let r = iq(
        &mut c,
        "alice@localhost",
        &format!("<query xmlns='{}'/>", ns::DISCO_INFO),
    );
    let q = payload(&r, ns::DISCO_INFO);
    assert_eq!(
        q.get_child("identity", ns::DISCO_INFO)
            .and_then(|i| i.attr("category")),
        Some("account")
    );
    drop(c);

    let off = Server::start_with(shards, &["alice"], "", "[modules.time]\n");
    let mut c = off.login("alice", "r", None);
    let f = server_features(&mut c);
    assert!(f.iter().any(|x| x == "urn:xmpp:time"), "{f:?}");
    assert!(
        !f.iter()
            .any(|x| x == "jabber:iq:version" || x == "jabber:iq:last"),
        "{f:?}"
    );
    let r = iq(&mut c, "localhost", "<query xmlns='jabber:iq:version'/>");
    assert_eq!(error_condition(&r).as_deref(), Some("service-unavailable"));
}

#[test]
fn disco_one_shard() {
    disco_follows_modules(1);
}

#[test]
fn disco_two_shards() {
    disco_follows_modules(2);
}

fn version_time_last(shards: usize) {
    let server = Server::start_with(shards, &["alice"], "", ALL);
    let mut c = server.login("alice", "one", Some(0));
    let v = payload(
        &iq(&mut c, "localhost", "<query xmlns='jabber:iq:version'/>"),
        "jabber:iq:version",
    );
    let text = |n: &str| v.get_child(n, "jabber:iq:version").map(|e| e.text());
    assert_eq!(text("name").as_deref(), Some("petrel"));
    assert!(text("version").is_some_and(|v| !v.is_empty()));
    assert_eq!(text("os"), None, "os is off by default");

    let t = payload(
        &iq(&mut c, "localhost", "<time xmlns='urn:xmpp:time'/>"),
        "urn:xmpp:time",
    );
    let utc = t.get_child("utc", "urn:xmpp:time").unwrap().text();
    let tzo = t.get_child("tzo", "urn:xmpp:time").unwrap().text();
    let parsed =
        time::OffsetDateTime::parse(&utc, &time::format_description::well_known::Rfc3339).unwrap();
    assert!(
        (time::OffsetDateTime::now_utc() - parsed).abs() < time::Duration::seconds(10),
        "{utc}"
    );
    assert!(utc.ends_with('Z'), "{utc}");
    // XEP-0082 offset: [+-]HH:MM.
    let b = tzo.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    assert!(
        b.len() == 6
            && (b[0] == b'+' || b[0] == b'-')
            && digits(1..3)
            && b[3] == b':'
            && digits(4..6),
        "{tzo}"
    );

    // Online (available): 0.
    let q = payload(
        &iq(&mut c, "alice@localhost", "<query xmlns='jabber:iq:last'/>"),
        "jabber:iq:last",
    );
    assert_eq!(q.attr("seconds"), Some("0"));
    let up = payload(
        &iq(&mut c, "localhost", "<query xmlns='jabber:iq:last'/>"),
        "jabber:iq:last",
    );
    assert!(up.attr("seconds").is_some_and(|s| s.parse::<u64>().is_ok()));
    c.send("<presence type='unavailable'><status>back soon</status></presence>");
    c.sync();
    c.send("</stream:stream>");
    c.read_to_close();
    std::thread::sleep(Duration::from_millis(2100));
    let mut c = server.login("alice", "two", None);
    let q = payload(
        &iq(&mut c, "alice@localhost", "<query xmlns='jabber:iq:last'/>"),
        "jabber:iq:last",
    );
    let secs: u64 = q.attr("seconds").and_then(|s| s.parse().ok()).unwrap();
    assert!((2..30).contains(&secs), "{secs}");
    assert_eq!(q.text(), "back soon");
}

#[test]
fn version_time_last_one_shard() {
    version_time_last(1);
}

#[test]
fn version_time_last_two_shards() {
    version_time_last(2);
}

#[test]
fn last_activity_and_disco_are_told_to_those_who_see_the_presence() {
    // XEP-0012 §4: a contact the account shares its presence with (`from`) learns when it left;
    // a stranger, and a contact only the other way round, get `forbidden`.
    let modules = format!("{ALL}[modules.roster]\n[modules.presence]\n");
    let server = Server::start_with(2, &["alice", "bob", "carol"], "", &modules);
    let mut alice = server.login("alice", "a", Some(0));
    let mut bob = server.login("bob", "b", Some(0));
    let mut carol = server.login("carol", "c", Some(0));
    common::subscribe_one_way(&mut bob, "bob", &mut alice, "alice");
    alice.send("<presence type='unavailable'><status>gone fishing</status></presence>");
    alice.sync();
    alice.send("</stream:stream>");
    alice.read_to_close();
    let last = "<query xmlns='jabber:iq:last'/>";
    let deadline = Instant::now() + Duration::from_secs(10);
    let q = loop {
        let r = iq(&mut bob, "alice@localhost", last);
        // The logout is recorded by a store job: wait for it rather than for a fixed time.
        if r.type_().as_deref() == Some("result") {
            let q = payload(&r, "jabber:iq:last");
            if q.text() == "gone fishing" {
                break q;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{}",
            String::from_utf8_lossy(r.bytes())
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(q.attr("seconds").is_some_and(|s| s.parse::<u64>().is_ok()));
    let r = iq(&mut carol, "alice@localhost", last);
    assert_eq!(error_condition(&r).as_deref(), Some("forbidden"));
    // RFC 6121 §8.5.1: an account that does not exist answers service-unavailable.
    let r = iq(&mut carol, "nobody@localhost", last);
    assert_eq!(error_condition(&r).as_deref(), Some("service-unavailable"));
    // The account's disco#info likewise (XEP-0163 §6.2: a contact learns it supports PEP); a
    // stranger learns nothing, not even that the account exists.
    let info = format!("<query xmlns='{}'/>", ns::DISCO_INFO);
    let q = payload(&iq(&mut bob, "alice@localhost", &info), ns::DISCO_INFO);
    let identity = q.get_child("identity", ns::DISCO_INFO).unwrap();
    assert_eq!(identity.attr("category"), Some("account"));
    for stranger in ["alice@localhost", "nobody@localhost"] {
        let r = iq(&mut carol, stranger, &info);
        assert_eq!(error_condition(&r).as_deref(), Some("service-unavailable"));
    }
    // The other way round: bob's item for alice is `to` only, so bob's presence is not hers to see.
    let mut alice = server.login("alice", "a2", Some(0));
    let r = iq(&mut alice, "bob@localhost", last);
    assert_eq!(error_condition(&r).as_deref(), Some("forbidden"));
}

fn ping_server(shards: usize, users: &[&str]) -> Server {
    Server::start_config(shards, users, |port, data| {
        Server::config_text(port, data, "", "").replace(
            "[modules.ping]",
            "[modules.ping]\nping_interval = 1\nping_timeout = 2",
        )
    })
}

fn pings_both_ways(shards: usize) {
    let server = ping_server(shards, &["alice"]);
    let mut c = server.login("alice", "r", None);
    // Client to server.
    let r = iq(&mut c, "localhost", "<ping xmlns='urn:xmpp:ping'/>");
    assert_eq!(r.type_().as_deref(), Some("result"));
    // To its own account (no `to`, RFC 6120 §10.3.3) and to a bare JID: the server answers.
    c.send("<iq type='get' id='self'><ping xmlns='urn:xmpp:ping'/></iq>");
    let r = c.expect("own ping", |s| s.id().as_deref() == Some("self"));
    assert_eq!(r.type_().as_deref(), Some("result"));
    let r = iq(&mut c, "alice@localhost", "<ping xmlns='urn:xmpp:ping'/>");
    assert_eq!(r.type_().as_deref(), Some("result"));
    // An account that does not exist answers nothing itself (RFC 6121 §8.5.1).
    let r = iq(&mut c, "nosuch@localhost", "<ping xmlns='urn:xmpp:ping'/>");
    assert_eq!(error_condition(&r).as_deref(), Some("service-unavailable"));
    // A ping is an IQ get (XEP-0199 §3): a set is bad-request, to the server and to an account.
    for (id, to) in [
        ("set-server", " to='localhost'"),
        ("set-self", ""),
        ("set-bare", " to='alice@localhost'"),
    ] {
        c.send(&format!(
            "<iq type='set' id='{id}'{to}><ping xmlns='urn:xmpp:ping'/></iq>"
        ));
        let r = c.expect("ping set", |s| s.id().as_deref() == Some(id));
        assert_eq!(error_condition(&r).as_deref(), Some("bad-request"), "{id}");
    }
    // Server to client, answered.
    let started = Instant::now();
    let ping = c.expect("server ping", |s| s.child_ns().as_deref() == Some(ns::PING));
    assert_eq!(ping.type_().as_deref(), Some("get"));
    assert_eq!(ping.to().as_deref(), Some(c.jid.as_str()));
    assert!(started.elapsed() < Duration::from_secs(5));
    let id = ping.id().unwrap().into_owned();
    c.send(&format!("<iq type='result' id='{id}' to='localhost'/>"));
    // The stream stays up while the client answers; the next ping comes after another interval.
    let ping = c.expect("second ping", |s| s.child_ns().as_deref() == Some(ns::PING));
    let id2 = ping.id().unwrap().into_owned();
    assert_ne!(id, id2);
    // Dead peer: no more answers -> connection-timeout within interval + timeout.
    let t0 = Instant::now();
    let rest = c.read_to_close();
    assert!(rest.contains("connection-timeout"), "{rest}");
    assert!(t0.elapsed() < Duration::from_secs(6), "{:?}", t0.elapsed());
}

/// The ping interval counts from the client's last input: a client that keeps talking is never
/// pinged (the driver's timer, set for an older deadline, fires early and finds nothing due), and
/// one that falls silent is pinged an interval after its last input, not earlier.
#[test]
fn a_talking_client_is_not_pinged_and_a_silent_one_is() {
    let server = ping_server(1, &["alice"]);
    let mut c = server.login("alice", "r", None);
    let is_server_ping = |s: &Stanza| {
        s.name() == "iq"
            && s.type_().as_deref() == Some("get")
            && s.child_ns().as_deref() == Some(ns::PING)
    };
    // 1.6 s of traffic, one request every 200 ms: longer than the ping interval.
    let mut last_sent = Instant::now();
    for i in 0..8 {
        let id = format!("talk-{i}");
        last_sent = Instant::now();
        c.send(&format!(
            "<iq type='get' id='{id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
        ));
        let r = c.next_stanza();
        assert!(!is_server_ping(&r), "pinged while talking");
        assert_eq!(r.id().as_deref(), Some(id.as_str()));
        std::thread::sleep(Duration::from_millis(200));
    }
    let ping = c.next_stanza();
    assert!(
        is_server_ping(&ping),
        "{}",
        String::from_utf8_lossy(ping.bytes())
    );
    // The server read the last request after it was sent, so its ping is due at least an interval
    // (1 s) after `last_sent`.
    let after = last_sent.elapsed();
    assert!(
        after >= Duration::from_millis(950),
        "pinged too early: {after:?}"
    );
    assert!(after < Duration::from_secs(4), "pinged late: {after:?}");
}

#[test]
fn ping_one_shard() {
    pings_both_ways(1);
}

#[test]
fn ping_two_shards() {
    pings_both_ways(2);
}

/// Opens a stream and returns the features element.
fn features(c: &mut Client) -> Stanza {
    c.open("localhost");
    let f = c.next_stanza();
    assert_eq!(f.name(), "stream:features");
    f
}

fn register(c: &mut Client, user: &str, password: &str) -> Stanza {
    c.send(&format!(
        "<iq type='set' id='reg'><query xmlns='jabber:iq:register'><username>{user}</username><password>{password}</password></query></iq>"
    ));
    c.expect("register reply", |s| s.id().as_deref() == Some("reg"))
}

fn registration(shards: usize) {
    let server = Server::start_with(
        shards,
        &["alice"],
        "",
        "[modules.register]\nip_rate_limit = 2\n",
    );
    let mut c = server.connect();
    let f = features(&mut c);
    let text = String::from_utf8_lossy(f.bytes()).into_owned();
    assert!(
        text.contains("http://jabber.org/features/iq-register"),
        "{text}"
    );
    c.send("<iq type='get' id='form'><query xmlns='jabber:iq:register'/></iq>");
    let form = c.expect("form", |s| s.id().as_deref() == Some("form"));
    let q = payload(&form, "jabber:iq:register");
    assert!(q.get_child("username", "jabber:iq:register").is_some());
    let r = register(&mut c, "newbie", "fresh password");
    assert_eq!(
        r.type_().as_deref(),
        Some("result"),
        "{}",
        String::from_utf8_lossy(r.bytes())
    );
    // Log in on the same stream with the new account.
    let token = base64::engine::general_purpose::STANDARD.encode("\0newbie\0fresh password");
    c.send(&format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>"
    ));
    assert_eq!(c.next_stanza().name(), "success");
    c.restart();
    features(&mut c);
    c.bind("r");
    assert_eq!(c.jid, "newbie@localhost/r");
    c.sync();

    // Existing user, bad name, then the per-IP limit (2 per minute: newbie + one more).
    let mut c = server.connect();
    features(&mut c);
    assert_eq!(
        error_condition(&register(&mut c, "alice", "fresh password")).as_deref(),
        Some("conflict")
    );
    assert_eq!(
        error_condition(&register(&mut c, "a@b", "fresh password")).as_deref(),
        Some("not-acceptable")
    );
    assert_eq!(
        register(&mut c, "second", "fresh password")
            .type_()
            .as_deref(),
        Some("result")
    );
    assert_eq!(
        error_condition(&register(&mut c, "third", "fresh password")).as_deref(),
        Some("resource-constraint")
    );
    // A fresh login of the new account works from another connection (any shard).
    let mut other = server.connect();
    other.login_plain("second", "localhost", "fresh password", "x");

    // Password change and removal after authentication.
    let mut s = server.connect();
    s.login_plain("second", "localhost", "fresh password", "y");
    // Another hosted domain is not the account's server (XEP-0077 §3.2, §3.3): its registration
    // IQs never touch the account.
    for body in [
        "<query xmlns='jabber:iq:register'><remove/></query>",
        "<query xmlns='jabber:iq:register'><username>second</username><password>stolen password</password></query>",
    ] {
        s.send(&format!(
            "<iq type='set' id='other' to='example.test'>{body}</iq>"
        ));
        let r = s.expect("other domain", |st| st.id().as_deref() == Some("other"));
        assert_eq!(error_condition(&r).as_deref(), Some("forbidden"), "{body}");
    }
    let r = iq(
        &mut s,
        "example.test",
        "<query xmlns='jabber:iq:register'/>",
    );
    assert_eq!(error_condition(&r).as_deref(), Some("forbidden"));
    let mut again = server.connect();
    again.login_plain("second", "localhost", "fresh password", "z");
    let r = register(&mut s, "second", "changed password");
    assert_eq!(r.type_().as_deref(), Some("result"));
    s.send("<iq type='set' id='rm'><query xmlns='jabber:iq:register'><remove/></query></iq>");
    let r = s.expect("removal", |st| st.id().as_deref() == Some("rm"));
    assert_eq!(r.type_().as_deref(), Some("result"));
    assert!(s.read_to_close().contains("not-authorized"));
    // XEP-0077 §3.2: every session of the account ends, not only the one that asked (the others
    // went on sending as the account, and got what a new owner of the name was sent).
    for c in [&mut other, &mut again] {
        let end = c.read_to_close();
        assert!(end.contains("not-authorized"), "{end}");
    }
}

#[test]
fn registration_one_shard() {
    registration(1);
}

#[test]
fn registration_two_shards() {
    registration(2);
}

#[test]
fn registration_off_by_default() {
    let server = Server::start(1, &["alice"]);
    let mut c = server.connect();
    let f = features(&mut c);
    assert!(!String::from_utf8_lossy(f.bytes()).contains("iq-register"));
    c.send("<iq type='set' id='reg'><query xmlns='jabber:iq:register'><username>x</username><password>longpassword</password></query></iq>");
    assert!(c.read_to_close().contains("not-authorized"));
    let mut c = server.login("alice", "r", None);
    let r = iq(&mut c, "localhost", "<query xmlns='jabber:iq:register'/>");
    assert_eq!(error_condition(&r).as_deref(), Some("service-unavailable"));
}

#[test]
fn iqs_to_an_account_that_does_not_exist_are_service_unavailable() {
    // RFC 6121 §8.5.1: whatever the namespace, an IQ to a bare or full JID of an account that
    // does not exist is answered service-unavailable; the same requests about an account that
    // exists keep their own refusals (another user's roster is forbidden, and so on).
    let modules = "[modules.roster]\n[modules.presence]\n[modules.caps]\n[modules.offline]\n\
                   [modules.blocking]\n[modules.private]\n[modules.vcard]\n[modules.version]\n\
                   [modules.time]\n[modules.last]\n[modules.carbons]\n[modules.mam]\n[modules.pep]\n";
    let requests = [
        ("get", "<query xmlns='http://jabber.org/protocol/disco#info'/>", None),
        ("get", "<query xmlns='http://jabber.org/protocol/disco#items'/>", None),
        ("get", "<vCard xmlns='vcard-temp'/>", None),
        ("get", "<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:avatar:metadata'/></pubsub>", Some("item-not-found")),
        ("set", "<pubsub xmlns='http://jabber.org/protocol/pubsub'><subscribe node='urn:xmpp:avatar:metadata' jid='alice@localhost'/></pubsub>", Some("item-not-found")),
        ("get", "<ping xmlns='urn:xmpp:ping'/>", None),
        ("get", "<query xmlns='jabber:iq:last'/>", Some("forbidden")),
        ("get", "<time xmlns='urn:xmpp:time'/>", None),
        ("set", "<query xmlns='urn:xmpp:mam:2'/>", Some("forbidden")),
        ("get", "<query xmlns='jabber:iq:roster'/>", Some("forbidden")),
        ("get", "<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query>", Some("forbidden")),
        ("get", "<blocklist xmlns='urn:xmpp:blocking'/>", Some("not-allowed")),
        ("get", "<foo xmlns='urn:x:unknown'/>", None),
    ];
    for shards in [1, 2] {
        let server = Server::start_with(shards, &["alice", "bob"], "", modules);
        let mut c = server.login("alice", "r", Some(0));
        for to in ["nobody@localhost", "nobody@localhost/r", "bob@localhost"] {
            for (ty, body, existing) in &requests {
                let id = format!("q{}", common::rand_u64());
                c.send(&format!("<iq type='{ty}' id='{id}' to='{to}'>{body}</iq>"));
                let r = c.expect("iq reply", |s| s.id().as_deref() == Some(id.as_str()));
                let want = if to.starts_with("bob") {
                    match existing {
                        Some(cond) => *cond,
                        // Answered for bob, or by his server on his behalf.
                        None => continue,
                    }
                } else {
                    "service-unavailable"
                };
                assert_eq!(
                    error_condition(&r).as_deref(),
                    Some(want),
                    "{shards} shards, to {to}: {body}: {}",
                    String::from_utf8_lossy(r.bytes())
                );
            }
        }
    }
}

#[test]
fn subscription_stanzas_to_no_account_are_not_kept_for_a_later_one() {
    // RFC 6121 §8.5.1: a subscription stanza to an account that does not exist (never did, or
    // was deleted) is silently ignored. A `subscribe` was kept as a pending request, and the
    // account created later with the name got it at its first login.
    use common::admin::{add_user, api, start};
    let modules = "[modules.roster]\n[modules.presence]\n";
    for shards in [1, 2] {
        let (server, http) = start(shards, &["alice", "gone"], true, modules);
        let r = api(http, "DELETE", "/api/users/gone@localhost", None);
        assert_eq!(r.status, 200, "{}", r.body);
        let mut alice = server.login("alice", "a", Some(0));
        for to in ["ghost", "gone"] {
            // `subscribe` last: an `unsubscribe` after it would withdraw the request.
            for ty in ["subscribed", "unsubscribe", "unsubscribed", "subscribe"] {
                alice.send(&format!("<presence to='{to}@localhost' type='{ty}'/>"));
            }
        }
        alice.sync();
        // The contacts' home shards handle the stanzas after alice's own.
        std::thread::sleep(Duration::from_millis(300));
        for name in ["gone", "ghost"] {
            add_user(http, name);
            let mut c = server.login(name, "r", Some(0));
            let got = c.read_stanzas_until_quiet(Duration::from_millis(500));
            let seen = String::from_utf8_lossy(&c.raw).into_owned();
            assert!(
                got.iter()
                    .all(|s| s.name() != "presence"
                        || s.from().as_deref() != Some("alice@localhost")),
                "{shards}: {name}: {seen}"
            );
            assert!(
                !seen.contains("type='subscribe'") && !seen.contains("type=\"subscribe\""),
                "{shards}: {name}: {seen}"
            );
        }
    }
}

#[test]
fn a_removal_with_other_children_is_bad_request_and_removes_nothing() {
    // XEP-0077 §3.2 (Unregister Error Cases): `<remove/>` that is not the only child of the query
    // is bad-request. It deleted the account.
    let server = Server::start_with(1, &["yan"], "", "[modules.register]\n");
    let mut yan = server.login("yan", "y", Some(0));
    for query in [
        "<remove/><username>yan</username><password>x</password>",
        "<username>yan</username><remove/>",
    ] {
        yan.send(&format!(
            "<iq type='set' id='rm'><query xmlns='jabber:iq:register'>{query}</query></iq>"
        ));
        let r = yan.expect("answer", |s| s.id().as_deref() == Some("rm"));
        assert_eq!(
            error_condition(&r).as_deref(),
            Some("bad-request"),
            "{query}: {}",
            String::from_utf8_lossy(r.bytes())
        );
    }
    // The session goes on, and the account still logs in.
    yan.sync();
    server.login("yan", "again", None).sync();
}

#[test]
fn password_change_errors_do_not_echo_the_request() {
    // XEP-0077 §3.3: "SHOULD NOT return the original XML sent in IQ error stanzas related to
    // password changes" (the new password came back); a change without both fields is
    // bad-request (it was not-acceptable, registration's condition, §3.1).
    let server = Server::start_with(1, &["yan"], "", "[modules.register]\n");
    let mut yan = server.login("yan", "y", Some(0));
    for (query, want) in [
        ("<password>NewSecret-1</password>", "bad-request"),
        (
            "<username>yan</username><password></password>",
            "bad-request",
        ),
        ("<username>yan</username>", "bad-request"),
        (
            "<username>zed</username><password>NewSecret-2</password>",
            "not-authorized",
        ),
        (
            "<username>yan</username><password>NewSec3</password>",
            "not-acceptable",
        ),
        ("<remove/><password>NewSecret-4</password>", "bad-request"),
    ] {
        yan.send(&format!(
            "<iq type='set' id='pw'><query xmlns='jabber:iq:register'>{query}</query></iq>"
        ));
        let r = yan.expect("answer", |s| s.id().as_deref() == Some("pw"));
        let text = String::from_utf8_lossy(r.bytes()).into_owned();
        assert_eq!(
            error_condition(&r).as_deref(),
            Some(want),
            "{query}: {text}"
        );
        assert!(
            !text.contains("NewSec") && !text.contains("jabber:iq:register"),
            "{query}: {text}"
        );
    }
    // The password did not change.
    server.login("yan", "again", None).sync();
}

#[test]
fn writes_racing_a_removal_do_not_outlive_the_account() {
    // XEP-0077 §3.2: while one session removes the account (in-band, or the admin API does),
    // another sends a vCard and a private-storage set. Written after the purge, they were found
    // by the next account of the name.
    use common::admin::{add_user, api, start};
    let modules = "[modules.register]\n[modules.vcard]\n[modules.private]\n";
    for shards in [1, 2] {
        let (server, http) = start(shards, &[], true, modules);
        for i in 0..8 {
            let name = format!("race{i}");
            add_user(http, &name);
            let mut y1 = server.login(&name, "y1", None);
            let mut y2 = server.login(&name, "y2", None);
            let set = "<iq type='set' id='v'><vCard xmlns='vcard-temp'><FN>LEAK</FN></vCard></iq>\
                       <iq type='set' id='p'><query xmlns='jabber:iq:private'><x xmlns='urn:x:leak'>LEAK</x></query></iq>";
            if i % 2 == 0 {
                y1.send("<iq type='set' id='rm'><query xmlns='jabber:iq:register'><remove/></query></iq>");
                y2.send(set);
            } else {
                y2.send(set);
                let r = api(
                    http,
                    "DELETE",
                    &format!("/api/users/{name}@localhost"),
                    None,
                );
                assert_eq!(r.status, 200, "{}", r.body);
            }
            for c in [&mut y1, &mut y2] {
                c.read_to_close();
            }
            // y2's sets may still wait on the store; those of an account created again before
            // they ran would land in it (not this test's case: the name comes back later).
            std::thread::sleep(Duration::from_millis(300));
            add_user(http, &name);
            let mut z = server.login(&name, "z", None);
            for (id, get) in [
                ("vc", "<vCard xmlns='vcard-temp'/>"),
                (
                    "pr",
                    "<query xmlns='jabber:iq:private'><x xmlns='urn:x:leak'/></query>",
                ),
            ] {
                z.send(&format!("<iq type='get' id='{id}'>{get}</iq>"));
                let r = z.expect("answer", |s| s.id().as_deref() == Some(id));
                let text = String::from_utf8_lossy(r.bytes()).into_owned();
                assert!(!text.contains("LEAK"), "{shards} shards, {name}: {text}");
            }
        }
    }
}

#[test]
fn nothing_sent_after_an_in_band_removal_acts_for_the_account() {
    // XEP-0077 §3.2. Bob writes his removal and, in the same write, a message to carol, a vCard
    // and a private-storage set: none of them may be handled (the account is gone once its
    // answer comes; what they wrote would outlive it, for whoever registers the name next).
    for shards in [1, 2] {
        let server = Server::start_with(
            shards,
            &["bob", "carol"],
            "",
            "[modules.register]\n[modules.vcard]\n[modules.private]\n",
        );
        let mut carol = server.login("carol", "c", Some(0));
        let mut bob = server.login("bob", "b", Some(0));
        bob.send(
            "<iq type='set' id='rm'><query xmlns='jabber:iq:register'><remove/></query></iq>\
             <message to='carol@localhost' type='chat'><body>after</body></message>\
             <iq type='set' id='v'><vCard xmlns='vcard-temp'><FN>AFTER</FN></vCard></iq>\
             <iq type='set' id='p'><query xmlns='jabber:iq:private'><x xmlns='urn:x:after'>AFTER</x></query></iq>",
        );
        let r = bob.expect("removal", |s| s.id().as_deref() == Some("rm"));
        assert_eq!(r.type_().as_deref(), Some("result"), "{shards}");
        let more = bob.read_until_quiet(Duration::from_secs(1));
        let rest = String::from_utf8_lossy(&bob.raw).into_owned() + &String::from_utf8_lossy(&more);
        assert!(rest.contains("not-authorized"), "{shards}: {rest}");
        assert!(
            !rest.contains("id='v'") && !rest.contains("id='p'"),
            "{shards}: {rest}"
        );
        // Carol got nothing from the deleted account, and its vCard does not exist.
        carol.sync();
        let seen = String::from_utf8_lossy(&carol.raw).into_owned();
        assert!(!seen.contains(">after<"), "{shards}: {seen}");
        let r = iq(&mut carol, "bob@localhost", "<vCard xmlns='vcard-temp'/>");
        assert_eq!(
            error_condition(&r).as_deref(),
            Some("service-unavailable"),
            "{shards}: {}",
            String::from_utf8_lossy(r.bytes())
        );
    }
}
