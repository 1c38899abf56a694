//! The admin API over real sockets: every endpoint, the refusals, and its effects seen by XMPP
//! clients over TCP.

mod common;

use common::admin::{api, call, start, TOKEN};
use common::{body, Client, PASSWORD};

/// The stream error a closed client received, as `(condition, text)` found in its bytes.
fn closed_with(c: &mut Client, condition: &str, text: &str) {
    let all = c.read_to_close();
    assert!(
        all.contains(&format!(
            "<{condition} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
        )) && all.contains(text),
        "expected <{condition}/> with {text:?}, got: {all}"
    );
}

/// Asserts the API refuses `method path body` with `status` and the error code `code`.
fn refused(http: u16, method: &str, path: &str, body: Option<&str>, status: u16, code: &str) {
    let r = api(http, method, path, body);
    assert_eq!((r.status, r.code().as_str()), (status, code), "{}", r.body);
}

/// Asserts `DELETE path` closes exactly one session.
fn kicks_one(http: u16, path: &str) {
    let r = api(http, "DELETE", path, None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["kicked"].as_u64(), Some(1), "{}", r.body);
}

#[test]
fn refused_without_or_with_a_wrong_token_and_bad_requests() {
    let (_server, http) = start(1, &["alice"], true, "");
    let none = call(http, None, "GET", "/api/stats", None);
    assert_eq!(none.status, 401);
    assert_eq!(none.www_authenticate.as_deref(), Some("Bearer"));
    assert_eq!(none.code(), "unauthorized");
    let wrong = call(
        http,
        Some("test-admin-token-0123456789x"),
        "GET",
        "/api/users",
        None,
    );
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.www_authenticate.as_deref(), Some("Bearer"));
    // Refused before the body is read or the path is looked at.
    let wrong = call(http, Some("nope"), "POST", "/api/users", Some("{"));
    assert_eq!(wrong.status, 401);

    let r = api(
        http,
        "POST",
        "/api/users",
        Some(r#"{"jid":"x@localhost","password":"#),
    );
    assert_eq!((r.status, r.code().as_str()), (400, "bad-json"));
    let r = api(
        http,
        "POST",
        "/api/users",
        Some(r#"{"jid":"@localhost","password":"p"}"#),
    );
    assert_eq!((r.status, r.code().as_str()), (400, "bad-jid"));
    let r = api(
        http,
        "POST",
        "/api/users",
        Some(r#"{"jid":"x@elsewhere.test","password":"p"}"#),
    );
    assert_eq!((r.status, r.code().as_str()), (400, "domain-not-served"));
    let r = api(
        http,
        "POST",
        "/api/messages",
        Some(r#"{"from":"a@localhost","to":"b@@x","body":"hi"}"#),
    );
    assert_eq!((r.status, r.code().as_str()), (400, "bad-jid"));
    let r = api(
        http,
        "POST",
        "/api/stanzas",
        Some(
            r#"{"from":"a@localhost","stanza":"<message to='alice@localhost'><body>x</message>"}"#,
        ),
    );
    assert_eq!((r.status, r.code().as_str()), (400, "bad-stanza"));
    refused(
        http,
        "DELETE",
        "/api/sessions/alice@localhost",
        None,
        400,
        "bad-jid",
    );
    refused(http, "GET", "/api/nothing-here", None, 404, "not-found");
    let r = api(http, "POST", "/api/stats", Some("{}"));
    assert_eq!(r.status, 405);
    assert_eq!(r.allow.as_deref(), Some("GET"));
    let big = format!(
        r#"{{"jid":"x@localhost","password":"{}"}}"#,
        "p".repeat(70_000)
    );
    refused(http, "POST", "/api/users", Some(&big), 413, "too-large");
}

#[test]
fn disabled_without_an_admin_section() {
    let (_server, http) = start(1, &[], false, "");
    for token in [None, Some(TOKEN)] {
        let r = call(http, token, "GET", "/api/users", None);
        assert_eq!(r.status, 403);
        assert_eq!(r.code(), "disabled");
        assert!(
            r.json()["message"].as_str().unwrap().contains("[admin]"),
            "{}",
            r.body
        );
    }
}

#[test]
fn users_sessions_messages_rooms_and_stats() {
    let (server, http) = start(2, &["alice", "bob"], true, "[modules.muc]\n");

    // Users.
    let r = api(http, "GET", "/api/users", None);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["users"],
        serde_json::json!(["alice@localhost", "bob@localhost"])
    );
    let r = api(http, "GET", "/api/users?domain=example.test", None);
    assert_eq!(r.json()["users"], serde_json::json!([]));
    let r = api(
        http,
        "POST",
        "/api/users",
        Some(r#"{"jid":"Carol@localhost","password":"first"}"#),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["jid"], "carol@localhost");
    let r = api(
        http,
        "POST",
        "/api/users",
        Some(r#"{"jid":"carol@localhost","password":"again"}"#),
    );
    assert_eq!((r.status, r.code().as_str()), (409, "user-exists"));
    let r = api(
        http,
        "PUT",
        "/api/users/carol%40localhost/password",
        Some(r#"{"password":"second"}"#),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = api(
        http,
        "PUT",
        "/api/users/nobody@localhost/password",
        Some(r#"{"password":"x"}"#),
    );
    assert_eq!((r.status, r.code().as_str()), (404, "no-such-user"));

    // The new password logs in; the session is listed, then kicked.
    let mut carol = server.connect();
    carol.login_plain("carol", "localhost", "second", "desk");
    carol.send("<presence><priority>7</priority></presence>");
    carol.home_sync();
    let _web = common::ws::login(http, "bob", "web");
    let r = api(http, "GET", "/api/sessions", None);
    assert_eq!(r.status, 200);
    let sessions = r.json()["sessions"].as_array().cloned().unwrap();
    let web = sessions.iter().find(|s| s["jid"] == "bob@localhost/web");
    assert_eq!(
        web.map(|s| &s["transport"]),
        Some(&serde_json::json!("websocket")),
        "{}",
        r.body
    );
    let s = sessions
        .iter()
        .find(|s| s["jid"] == "carol@localhost/desk")
        .unwrap_or_else(|| panic!("carol not listed: {}", r.body));
    assert_eq!(s["transport"], "tcp");
    assert_eq!(s["priority"], 7);
    assert!(s["detached_since"].is_null(), "{s}");
    assert!(s["peer"].as_str().unwrap().starts_with("127.0.0.1:"), "{s}");
    assert!(
        s["shard"].as_u64().unwrap() < 2 && s["since"].as_u64().unwrap() > 0,
        "{s}"
    );
    kicks_one(http, "/api/sessions/carol@localhost/desk");
    closed_with(&mut carol, "policy-violation", "kicked by administrator");
    refused(
        http,
        "DELETE",
        "/api/sessions/carol@localhost/desk",
        None,
        404,
        "no-such-session",
    );

    // Deleting an account closes its sessions.
    let mut carol = server.connect();
    carol.login_plain("carol", "localhost", "second", "phone");
    kicks_one(http, "/api/users/carol@localhost");
    closed_with(&mut carol, "policy-violation", "account deleted");
    refused(
        http,
        "DELETE",
        "/api/users/carol@localhost",
        None,
        404,
        "no-such-user",
    );
    let r = api(http, "GET", "/api/users", None);
    assert_eq!(
        r.json()["users"],
        serde_json::json!(["alice@localhost", "bob@localhost"])
    );

    // A message and a stanza from the API reach a TCP client.
    let mut alice = server.login("alice", "home", Some(1));
    let r = api(
        http,
        "POST",
        "/api/messages",
        Some(r#"{"from":"localhost","to":"alice@localhost","body":"maintenance at 10"}"#),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let m = alice.expect("the API's message", |s| s.name() == "message");
    assert_eq!(body(&m).as_deref(), Some("maintenance at 10"));
    assert_eq!(m.from().as_deref(), Some("localhost"));
    assert_eq!(m.type_().as_deref(), Some("chat"));
    let r = api(
        http,
        "POST",
        "/api/stanzas",
        Some(
            r#"{"from":"bob@localhost/x","stanza":"<message to='alice@localhost/home' type='normal' id='s1'><body>raw</body></message>"}"#,
        ),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let m = alice.expect("the API's stanza", |s| s.id().as_deref() == Some("s1"));
    assert_eq!(body(&m).as_deref(), Some("raw"));
    assert_eq!(m.from().as_deref(), Some("bob@localhost/x"));

    // Rooms: bob creates one.
    let mut bob = server.login("bob", "b", Some(1));
    bob.send("<presence to='lounge@conference.localhost/bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>");
    bob.expect("self-presence", |s| {
        s.name() == "presence" && s.from().as_deref() == Some("lounge@conference.localhost/bob")
    });
    let r = api(http, "GET", "/api/rooms", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["muc"], true);
    let rooms = r.json()["rooms"].as_array().cloned().unwrap();
    assert_eq!(rooms.len(), 1, "{}", r.body);
    assert_eq!(rooms[0]["jid"], "lounge@conference.localhost");
    assert_eq!(rooms[0]["occupants"], 1);
    // A service's domain is not an account domain: adding it is refused, the service stays.
    let r = api(
        http,
        "POST",
        "/api/domains",
        Some(r#"{"domain":"conference.localhost"}"#),
    );
    assert_eq!(r.status, 409, "{}", r.body);
    let r = api(http, "DELETE", "/api/domains/conference.localhost", None);
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(
        api(http, "GET", "/api/rooms", None).json()["rooms"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    // Stats.
    let r = api(http, "GET", "/api/stats", None);
    assert_eq!(r.status, 200);
    let st = r.json();
    assert_eq!(st["shards"], 2);
    assert_eq!(st["per_shard"].as_array().map(Vec::len), Some(2));
    // alice, bob over TCP and bob over WebSocket.
    assert_eq!(st["sessions"], 3, "{}", r.body);
    assert!(st["routed"].as_u64().unwrap() > 0, "{}", r.body);
    assert!(st["store_queue"].is_u64());

    // Every session of a user.
    kicks_one(http, "/api/sessions?jid=alice@localhost");
    closed_with(&mut alice, "policy-violation", "kicked by administrator");
}

#[test]
fn a_component_domain_cannot_be_added_at_run_time() {
    let (_server, http) = start(
        1,
        &[],
        true,
        "[components.\"bot.test\"]\npassword = \"x\"\n",
    );
    let r = api(
        http,
        "POST",
        "/api/domains",
        Some(r#"{"domain":"bot.test"}"#),
    );
    assert_eq!((r.status, r.code().as_str()), (409, "component-domain"));
}

#[test]
fn domains_added_and_removed_at_run_time() {
    let (mut server, http) = start(2, &[], true, "[modules.mam]\n[modules.muc]\n");
    let r = api(
        http,
        "POST",
        "/api/domains",
        Some(r#"{"domain":"New.Test"}"#),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let r = api(
        http,
        "POST",
        "/api/domains",
        Some(r#"{"domain":"new.test"}"#),
    );
    assert_eq!((r.status, r.code().as_str()), (409, "domain-exists"));
    let r = api(
        http,
        "POST",
        "/api/domains",
        Some(r#"{"domain":"localhost"}"#),
    );
    assert_eq!((r.status, r.code().as_str()), (409, "domain-exists"));
    let r = api(
        http,
        "POST",
        "/api/domains",
        Some(r#"{"domain":"bad_domain"}"#),
    );
    assert_eq!((r.status, r.code().as_str()), (400, "bad-domain"));
    refused(
        http,
        "DELETE",
        "/api/domains/localhost",
        None,
        409,
        "configured-domain",
    );
    let r = api(http, "GET", "/api/domains", None);
    assert_eq!(
        r.json()["domains"],
        serde_json::json!([
            {"domain": "localhost", "dynamic": false},
            {"domain": "example.test", "dynamic": false},
            {"domain": "new.test", "dynamic": true},
        ])
    );
    let r = api(
        http,
        "POST",
        "/api/users",
        Some(r#"{"jid":"dave@new.test","password":"pw-dave"}"#),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    // Streams to the new domain are accepted on every shard (connections land on either).
    let mut daves: Vec<Client> = (0..4)
        .map(|i| {
            let mut c = server.connect();
            c.login_plain("dave", "new.test", "pw-dave", &format!("r{i}"));
            c
        })
        .collect();
    // A user of the domain talks to another.
    daves[1].chat("dave@new.test/r0", "same domain");
    let m = daves[0].expect("chat", |s| s.name() == "message");
    assert_eq!(body(&m).as_deref(), Some("same domain"));
    // The domain's server IQs and account IQs are served by the first configured host's handlers.
    daves[0].send("<iq type='get' to='new.test' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>");
    let r = daves[0].expect("ping result", |s| s.id().as_deref() == Some("p1"));
    assert_eq!(r.type_().as_deref(), Some("result"));
    // ... but not the first host's services: they would name another tenant's domain.
    for (to, listed) in [("localhost", true), ("new.test", false)] {
        daves[0].send(&format!(
            "<iq type='get' to='{to}' id='i1'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>"
        ));
        let r = daves[0].expect("disco#items", |s| s.id().as_deref() == Some("i1"));
        let text = String::from_utf8_lossy(r.bytes()).into_owned();
        assert_eq!(text.contains("conference.localhost"), listed, "{text}");
    }
    // Archived on receipt (the API's sender has no archive and no `user_send` hooks run).
    let r = api(
        http,
        "POST",
        "/api/messages",
        Some(r#"{"from":"localhost","to":"dave@new.test/r0","body":"archived on receipt"}"#),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    daves[0].expect("the API's message", |s| {
        body(s).as_deref() == Some("archived on receipt")
    });
    daves[0].send("<iq type='set' id='q1'><query xmlns='urn:xmpp:mam:2' queryid='a'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>urn:xmpp:mam:2</value></field><field var='with'><value>localhost</value></field></x></query></iq>");
    let m = daves[0].expect("archived message", |s| s.name() == "message");
    assert!(
        String::from_utf8_lossy(m.bytes()).contains("archived on receipt"),
        "{}",
        String::from_utf8_lossy(m.bytes())
    );
    let r = daves[0].expect("query end", |s| s.id().as_deref() == Some("q1"));
    assert_eq!(r.type_().as_deref(), Some("result"));

    let r = api(http, "DELETE", "/api/domains/new.test", None);
    assert_eq!(r.status, 200, "{}", r.body);
    for c in &mut daves {
        closed_with(c, "host-gone", "");
    }
    let mut c = server.connect();
    c.open("new.test");
    closed_with(&mut c, "host-unknown", "");
    refused(
        http,
        "DELETE",
        "/api/domains/new.test",
        None,
        404,
        "no-such-domain",
    );

    // Kept across a restart; its accounts stayed.
    let r = api(
        http,
        "POST",
        "/api/domains",
        Some(r#"{"domain":"new.test"}"#),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    server.stop();
    server.spawn(2);
    let r = api(http, "GET", "/api/domains", None);
    assert_eq!(
        r.json()["domains"][2],
        serde_json::json!({"domain": "new.test", "dynamic": true})
    );
    let mut dave = server.connect();
    dave.login_plain("dave", "new.test", "pw-dave", "back");
    dave.sync();
    // `petrel user add` accepts users of run-time domains.
    let out = common::petrel()
        .args(["user", "add", "erin@new.test", PASSWORD, "--config"])
        .arg(&server.config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut erin = server.connect();
    erin.login_plain("erin", "new.test", PASSWORD, "e");
}

/// `POST /api/route/explain` at 2 shards: a chat message to a user with two resources at
/// different priorities is really delivered, and the explanation lists the route's steps in order.
#[test]
fn route_explain_over_the_api() {
    let (server, http) = start(2, &["alice", "bob"], true, "");
    let _alice = server.login("alice", "desk", Some(0));
    let mut phone = server.login("bob", "phone", Some(5));
    let mut laptop = server.login("bob", "laptop", Some(1));
    let body = serde_json::json!({
        "from": "alice@localhost/desk",
        "stanza": "<message to='bob@localhost' type='chat' id='x1'><body>explained</body></message>",
    })
    .to_string();
    let a = api(http, "POST", "/api/route/explain", Some(&body));
    assert_eq!(a.status, 200, "{}", a.body);
    let e = a.json();
    assert_eq!(e["from"], "alice@localhost/desk");
    // The message really went to the higher-priority resource, and only there.
    phone.expect("the explained message", |s| {
        s.name() == "message" && String::from_utf8_lossy(s.bytes()).contains("explained")
    });
    laptop.send("<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>");
    let next = laptop.expect("the ping result", |s| {
        s.id().as_deref() == Some("p") || String::from_utf8_lossy(s.bytes()).contains("explained")
    });
    assert_eq!(next.name(), "iq", "the laptop (priority 1) got no copy");
    let paths = e["paths"].as_array().unwrap();
    assert_eq!(paths.len(), 1, "{e}");
    let steps: Vec<String> = paths[0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{}:{}",
                s["stage"].as_str().unwrap(),
                s["outcome"].as_str().unwrap()
            )
        })
        .collect();
    let pos = |needle: &str| {
        steps
            .iter()
            .position(|s| s.starts_with(needle))
            .unwrap_or_else(|| panic!("no {needle} step in {steps:?}"))
    };
    // The seed's order: user_send hooks, the routing chain, the session manager, the receive side.
    assert!(
        pos("user_send_packet") < pos("user_send_message"),
        "{steps:?}"
    );
    assert!(pos("user_send_message") < pos("router"), "{steps:?}");
    assert!(pos("router") < pos("user_receive_packet"), "{steps:?}");
    assert!(steps.last().unwrap().starts_with("c2s:"), "{steps:?}");
    let text = e.to_string();
    assert!(text.contains("bob@localhost/phone"), "{text}");
    // Times are µs since the start, in order.
    let times: Vec<u64> = paths[0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["at_us"].as_u64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");

    // Bad input: not a stanza, a sender of another server, malformed XML.
    for (from, stanza) in [
        ("alice@localhost", "<foo to='bob@localhost'/>"),
        // Presence would change the sender's session state behind its back.
        ("alice@localhost/desk", "<presence/>"),
        ("eve@elsewhere.example", "<message to='bob@localhost'/>"),
        ("alice@localhost", "<message to='bob@localhost'>"),
    ] {
        let body = serde_json::json!({ "from": from, "stanza": stanza }).to_string();
        let a = api(http, "POST", "/api/route/explain", Some(&body));
        assert_eq!(a.status, 400, "{from} {stanza}: {}", a.body);
        assert_eq!(a.code(), "bad-stanza");
    }
    let a = api(http, "GET", "/api/route/explain", None);
    assert_eq!(a.status, 405);
}

/// A session parked by stream management (its client gone, resumable) is listed as detached and
/// kicked too: no shard holds it as local, the session manager on its home shard still does.
#[test]
fn parked_sessions_are_listed_and_kicked_too() {
    let (server, http) = start(
        2,
        &["alice"],
        true,
        "[modules.stream_management]\nresume_timeout = 300\n",
    );
    let auth = || {
        let mut c = server.connect();
        c.auth_plain("alice", "localhost", common::PASSWORD);
        c
    };
    let mut c = auth();
    c.bind("phone");
    c.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>");
    let en = c.expect("enabled", |s| s.name() == "enabled");
    let id = en.attr("id").unwrap().into_owned();
    // The client vanishes without closing its stream: the session is parked.
    let _ = c.sock.shutdown(std::net::Shutdown::Both);
    drop(c);
    // Parked once the server saw the socket close: then it is listed as detached.
    let detached = || {
        let r = api(http, "GET", "/api/sessions", None);
        let sessions = r.json()["sessions"].as_array().cloned().unwrap_or_default();
        let s = sessions
            .iter()
            .find(|s| s["jid"] == "alice@localhost/phone")
            .cloned();
        s.map(|s| s["detached_since"].as_u64())
    };
    assert!(detached().is_some(), "the session is listed, away or not");
    for _ in 0..100 {
        if matches!(detached(), Some(Some(_))) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        matches!(detached(), Some(Some(_))),
        "the parked session is listed as detached: {:?}",
        detached()
    );
    let r = api(http, "DELETE", "/api/sessions?jid=alice@localhost", None);
    assert_eq!(r.status, 200, "{}", r.body);
    let kicked = r.json()["kicked"].as_u64().unwrap();
    assert_eq!(kicked, 1);
    for _ in 0..100 {
        if detached().is_none() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(
        detached(),
        None,
        "a kicked parked session is no longer listed"
    );
    // It cannot be resumed any more.
    let mut c = auth();
    c.send(&format!(
        "<resume xmlns='urn:xmpp:sm:3' previd='{id}' h='0'/>"
    ));
    let r = c.next_stanza();
    assert_eq!(r.name(), "failed", "{}", String::from_utf8_lossy(r.bytes()));
}

/// Registers `user@localhost` again (after its deletion) over the admin API and logs the new
/// account in.
fn heir_of(server: &common::Server, http: u16, user: &str) -> Client {
    let body = format!(r#"{{"jid": "{user}@localhost", "password": "someone-else"}}"#);
    let r = api(http, "POST", "/api/users", Some(&body));
    assert_eq!(r.status, 201, "{}", r.body);
    let mut heir = server.connect();
    heir.login_plain(user, "localhost", "someone-else", "new");
    heir
}

#[test]
fn a_deleted_account_s_subscriptions_are_cancelled() {
    // XEP-0077 §3.2: the contacts of a deleted account learn it is gone, and what they shared with
    // it does not go to whoever registers the name next.
    let modules = "[modules.roster]\n[modules.presence]\n";
    let (server, http) = start(2, &["dave", "eve", "sub"], true, modules);
    let mut dave = server.login("dave", "d", Some(0));
    let mut eve = server.login("eve", "e", Some(0));
    let mut sub = server.login("sub", "s", Some(0));
    for c in [&mut dave, &mut eve] {
        c.send("<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>");
        c.expect("roster", |s| s.id().as_deref() == Some("r"));
    }
    // sub sees dave's presence; eve sees sub's.
    common::subscribe_one_way(&mut sub, "sub", &mut dave, "dave");
    common::subscribe_one_way(&mut eve, "eve", &mut sub, "sub");
    let r = api(http, "DELETE", "/api/users/sub@localhost", None);
    assert_eq!(r.status, 200, "{}", r.body);
    // eve had sub's presence: she sees sub go (RFC 6121 §3.2.2), or her client would show the
    // deleted account online for good.
    eve.expect("sub unavailable", |s| {
        s.name() == "presence"
            && s.type_().as_deref() == Some("unavailable")
            && s.from().as_deref() == Some("sub@localhost/s")
    });
    // dave's item for sub loses `from`, eve's loses `to`: each gets a push with subscription none.
    for (c, name) in [(&mut dave, "dave"), (&mut eve, "eve")] {
        // (Earlier pushes, from the subscription, are skipped.)
        c.expect(&format!("{name}'s roster push"), |s| {
            s.name() == "iq"
                && s.type_().as_deref() == Some("set")
                && String::from_utf8_lossy(s.bytes())
                    .contains("jid='sub@localhost' subscription='none'")
        });
    }
    let mut heir = heir_of(&server, http, "sub");
    heir.send("<presence/>");
    dave.send("<presence><status>private</status></presence>");
    dave.sync();
    heir.sync();
    let seen =
        String::from_utf8_lossy(&heir.read_until_quiet(std::time::Duration::from_millis(500)))
            .into_owned();
    assert!(!seen.contains("private"), "{seen}");
    drop(eve);
}

#[test]
fn a_deleted_account_loses_its_room_affiliations() {
    // Whoever registers a deleted account's name next must not inherit its rooms: the account's
    // ownership of a room goes with it (as ejabberd's `remove_user` does for MUC).
    let modules = "[modules.muc]\n";
    let (server, http) = start(2, &["dave", "sub"], true, modules);
    let mut dave = server.login("dave", "d", Some(0));
    common::muc::create(&mut dave, "lounge@conference.localhost", "dave", "");
    let owners = |dave: &mut Client| {
        dave.send(
            "<iq type='get' id='own' to='lounge@conference.localhost'>\
             <query xmlns='http://jabber.org/protocol/muc#admin'><item affiliation='owner'/></query></iq>",
        );
        let r = dave.expect("owner list", |s| s.id().as_deref() == Some("own"));
        String::from_utf8_lossy(r.bytes()).into_owned()
    };
    dave.send(
        "<iq type='set' id='grant' to='lounge@conference.localhost'>\
         <query xmlns='http://jabber.org/protocol/muc#admin'>\
         <item affiliation='owner' jid='sub@localhost'/></query></iq>",
    );
    let r = dave.expect("granted", |s| s.id().as_deref() == Some("grant"));
    assert_eq!(r.type_().as_deref(), Some("result"));
    assert!(owners(&mut dave).contains("sub@localhost"));
    let r = api(http, "DELETE", "/api/users/sub@localhost", None);
    assert_eq!(r.status, 200, "{}", r.body);
    // The room forgets sub (on the room's shard, after the deletion: asked until it shows).
    let mut list = owners(&mut dave);
    for _ in 0..50 {
        if !list.contains("sub@localhost") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        list = owners(&mut dave);
    }
    assert!(!list.contains("sub@localhost"), "{list}");
    assert!(list.contains("dave@localhost"), "{list}");
    // The heir may not configure the room.
    let mut heir = heir_of(&server, http, "sub");
    heir.send(
        "<iq type='get' id='cfg2' to='lounge@conference.localhost'>\
         <query xmlns='http://jabber.org/protocol/muc#owner'/></iq>",
    );
    let r = heir.expect("config form", |s| s.id().as_deref() == Some("cfg2"));
    assert_eq!(r.type_().as_deref(), Some("error"));
    assert_eq!(common::error_condition(&r).as_deref(), Some("forbidden"));
}

#[test]
fn a_service_administrator_takes_over_a_room_whose_owner_was_deleted() {
    // The only owner's account is deleted: the persistent room has no owner left. A service
    // administrator (`[modules.muc] admins`) is an owner of every room and names a new one.
    let modules = "[modules.muc]\nadmins = [\"root@localhost\"]\n";
    let (server, http) = start(2, &["dave", "root", "erin"], true, modules);
    let room = "hall@conference.localhost";
    let mut dave = server.login("dave", "d", Some(0));
    common::muc::create(
        &mut dave,
        room,
        "dave",
        &common::muc::field("persistentroom", "1"),
    );
    let r = api(http, "DELETE", "/api/users/dave@localhost", None);
    assert_eq!(r.status, 200, "{}", r.body);
    dave.read_to_close();

    let config_form = |c: &mut Client, id: &str| {
        c.send(&format!(
            "<iq type='get' id='{id}' to='{room}'>\
             <query xmlns='http://jabber.org/protocol/muc#owner'/></iq>"
        ));
        c.expect("config form", |s| s.id().as_deref() == Some(id))
    };
    let mut erin = server.login("erin", "e", Some(0));
    let r = config_form(&mut erin, "e1");
    assert_eq!(common::error_condition(&r).as_deref(), Some("forbidden"));

    // The administrator is an owner: it reads the room's configuration and names erin owner
    // (the room is ownerless after the deletion: asked until the deletion reached it).
    let mut root = server.login("root", "r", Some(0));
    let r = config_form(&mut root, "r1");
    assert_eq!(
        r.type_().as_deref(),
        Some("result"),
        "{}",
        common::muc::text(&r)
    );
    root.send(&format!(
        "<iq type='set' id='r2' to='{room}'><query xmlns='http://jabber.org/protocol/muc#admin'>\
         <item affiliation='owner' jid='erin@localhost'/></query></iq>"
    ));
    let r = root.expect("owner named", |s| s.id().as_deref() == Some("r2"));
    assert_eq!(
        r.type_().as_deref(),
        Some("result"),
        "{}",
        common::muc::text(&r)
    );
    root.send(&format!(
        "<iq type='get' id='r3' to='{room}'><query xmlns='http://jabber.org/protocol/muc#admin'>\
         <item affiliation='owner'/></query></iq>"
    ));
    let owners = common::muc::text(&root.expect("owners", |s| s.id().as_deref() == Some("r3")));
    assert!(owners.contains("erin@localhost"), "{owners}");
    // The room's own list names its owners, not the service's administrators; dave is gone.
    assert!(
        !owners.contains("jid='root@") && !owners.contains("jid='dave@"),
        "{owners}"
    );
    let r = config_form(&mut erin, "e2");
    assert_eq!(
        r.type_().as_deref(),
        Some("result"),
        "{}",
        common::muc::text(&r)
    );
}

#[test]
fn a_connection_that_authenticated_before_the_account_was_deleted_binds_nothing() {
    // The deletion's kick closes sessions; a connection past SASL but not yet bound has none, and
    // its bind must not bring the deleted account back (a live session writing rows for it).
    for shards in [1, 2] {
        let (server, http) = start(shards, &["ghost"], true, "[modules.roster]\n");
        let mut ghost = server.connect();
        let features = ghost.auth_plain("ghost", "localhost", common::PASSWORD);
        assert_eq!(features.name(), "stream:features");
        let r = api(http, "DELETE", "/api/users/ghost@localhost", None);
        assert_eq!(r.status, 200, "{}", r.body);
        ghost.send(
            "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
             <resource>late</resource></bind></iq>",
        );
        let rest = ghost.read_to_close();
        assert!(
            rest.contains("<not-authorized") && !rest.contains("type='result'"),
            "shards={shards}: {rest}"
        );
        // The name registered again logs in as usual.
        heir_of(&server, http, "ghost").sync();
    }
}

#[test]
fn administrators_changes_and_failed_logins_are_logged() {
    // The operator's audit trail: what the admin API changed (never a password), and each failed
    // login with its address (what fail2ban reads).
    let (mut server, http) = start(1, &["alice"], true, "");
    server.stop();
    let log = server.data_dir().join("test-audit.log");
    server.spawn_logging_to(1, &log);
    let r = api(
        http,
        "POST",
        "/api/users",
        Some(r#"{"jid": "newbie@localhost", "password": "never-logged-pw"}"#),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let r = api(http, "GET", "/api/users", None);
    assert_eq!(r.status, 200, "{}", r.body);
    let mut c = server.connect();
    c.open("localhost");
    c.next_stanza();
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD.encode("\0alice\0wrong-password");
    c.send(&format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>"
    ));
    assert_eq!(c.next_stanza().name(), "failure");
    server.stop();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("add account newbie@localhost") && text.contains("status=201"),
        "{text}"
    );
    // The GET is a read: not audited.
    assert_eq!(text.matches("admin API").count(), 1, "{text}");
    assert!(!text.contains("never-logged-pw"), "{text}");
    assert!(
        text.contains("authentication failed")
            && text.contains("ip=127.0.0.1")
            && text.contains("alice@localhost"),
        "{text}"
    );
}
