//! Push notifications (XEP-0357) over real sockets, petrel's own pubsub service (pubsub.localhost)
//! acting as the app server: a client ("app") owns and subscribes to the nodes, alice registers
//! them, and the summaries published when alice's sessions are gone (closed, or an XEP-0198
//! resumable session whose TCP connection dropped) reach app as pubsub events. Also: disable, an
//! error from the app server disabling the registration, and the XEP's errors for bad input.

mod common;

use common::{error_condition, Client, Server};
use petrel::xml::{Element, Stanza};

const SERVICE: &str = "pubsub.localhost";
const PS: &str = "http://jabber.org/protocol/pubsub";
const EVENT: &str = "http://jabber.org/protocol/pubsub#event";
const PUSH: &str = "urn:xmpp:push:0";
const XDATA: &str = "jabber:x:data";

fn start(shards: usize) -> Server {
    Server::start_with(
        shards,
        &["alice", "bob", "app"],
        "",
        "[modules.presence]\n[modules.offline]\n[modules.pubsub]\n[modules.stream_management]\nresume_timeout = 300\n[modules.push]\ninclude_body = \"on_request\"\n",
    )
}

fn text(s: &Stanza) -> String {
    String::from_utf8_lossy(s.bytes()).into_owned()
}

fn ok(r: &Stanza) {
    assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(r));
}

fn iq(c: &mut Client, id: &str, body: &str) -> Stanza {
    c.send(&format!("<iq id='{id}' {body}</iq>"));
    c.expect(id, |s| s.id().as_deref() == Some(id))
}

/// `app` creates `node` on the service (anyone may publish) and subscribes to it.
fn node_for_app(app: &mut Client, node: &str) {
    let form = format!("<x xmlns='{XDATA}' type='submit'><field var='FORM_TYPE' type='hidden'><value>{PS}#node_config</value></field><field var='pubsub#publish_model'><value>open</value></field></x>");
    ok(&iq(
        app,
        &format!("c-{node}"),
        &format!("type='set' to='{SERVICE}'><pubsub xmlns='{PS}'><create node='{node}'/><configure>{form}</configure></pubsub>"),
    ));
    let jid = app.jid.clone();
    ok(&iq(
        app,
        &format!("s-{node}"),
        &format!("type='set' to='{SERVICE}'><pubsub xmlns='{PS}'><subscribe node='{node}' jid='{jid}'/></pubsub>"),
    ));
}

/// A publish-options form with `fields` (var, value).
fn options(fields: &[(&str, &str)]) -> String {
    let f: String = fields
        .iter()
        .map(|(v, x)| format!("<field var='{v}'><value>{x}</value></field>"))
        .collect();
    format!("<x xmlns='{XDATA}' type='submit'><field var='FORM_TYPE' type='hidden'><value>{PS}#publish-options</value></field>{f}</x>")
}

fn enable(c: &mut Client, id: &str, node: &str, form: &str) -> Stanza {
    iq(
        c,
        id,
        &format!("type='set'><enable xmlns='{PUSH}' jid='{SERVICE}' node='{node}'>{form}</enable>"),
    )
}

/// Closes the stream and waits for the server to close the connection.
fn close(mut c: Client) {
    c.send("</stream:stream>");
    let _ = c.read_to_close();
}

/// The next pubsub event `app` gets (anything else is skipped): its node and its summary's fields
/// (var, value).
fn next_event(app: &mut Client) -> (String, Vec<(String, String)>) {
    let s = app.expect("a pubsub event", |s| {
        s.name() == "message" && s.from().as_deref() == Some(SERVICE)
    });
    let t = s.tree().unwrap_or_else(|e| panic!("{e}"));
    let items = t
        .get_child("event", EVENT)
        .and_then(|e| e.get_child("items", EVENT))
        .unwrap_or_else(|| panic!("not a publish event: {}", text(&s)));
    let fields = item_fields(items.get_child("item", EVENT), &s);
    (items.attr("node").unwrap_or("").to_owned(), fields)
}

/// The summary form's fields (var, value) in `item` (a pubsub `<item/>` of `s`).
fn item_fields(item: Option<&Element>, s: &Stanza) -> Vec<(String, String)> {
    let x = item
        .and_then(|i| i.get_child("notification", PUSH))
        .and_then(|n| n.get_child("x", XDATA))
        .unwrap_or_else(|| panic!("no summary: {}", text(s)));
    x.child_elements()
        .map(|f| {
            let v = f.get_child("value", XDATA).map(|v| v.text());
            (
                f.attr("var").unwrap_or("").to_owned(),
                v.unwrap_or_default(),
            )
        })
        .collect()
}

/// The next pubsub event, which must be on `node`: its summary's fields.
fn summary(app: &mut Client, node: &str) -> Vec<(String, String)> {
    let (n, f) = next_event(app);
    assert_eq!(n, node, "{f:?}");
    f
}

fn get<'a>(fields: &'a [(String, String)], var: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == var)
        .map(|(_, v)| v.as_str())
}

#[test]
fn offline_user_summaries_reach_the_app_server_and_disable_stops_them() {
    for shards in [1, 2] {
        let server = start(shards);
        let mut app = server.login("app", "srv", Some(0));
        node_for_app(&mut app, "alice-phone");
        let mut bob = server.login("bob", "b", Some(0));

        let mut alice = server.login("alice", "phone", None);
        let info = iq(
            &mut alice,
            "disco",
            "type='get' to='alice@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/>",
        );
        assert!(
            text(&info).contains(&format!("var='{PUSH}'")),
            "{}",
            text(&info)
        );
        ok(&enable(&mut alice, "e1", "alice-phone", ""));
        close(alice);

        bob.chat("alice@localhost", "the secret text");
        let f = summary(&mut app, "alice-phone");
        assert_eq!(get(&f, "FORM_TYPE"), Some("urn:xmpp:push:summary"));
        assert_eq!(get(&f, "message-count"), Some("1"));
        assert_eq!(get(&f, "last-message-sender"), Some("bob@localhost/b"));
        // Bodies only when the user asked for them.
        assert_eq!(get(&f, "last-message-body"), None);
        assert!(!String::from_utf8_lossy(&app.raw).contains("secret"));
        bob.chat("alice@localhost", "again");
        let f = summary(&mut app, "alice-phone");
        assert_eq!(get(&f, "message-count"), Some("2"));

        // Alice comes back (her count starts again) and disables the registration.
        let mut alice = server.login("alice", "phone", Some(0));
        let r = iq(
            &mut alice,
            "d1",
            &format!("type='set'><disable xmlns='{PUSH}' jid='{SERVICE}' node='alice-phone'/>"),
        );
        ok(&r);
        close(alice);
        bob.chat("alice@localhost", "not notified");
        // Registered again, asking for bodies: the next event is for the next message, counted
        // from alice's last login (the one in between was not notified).
        let mut alice = server.login("alice", "phone", Some(0));
        let ask = options(&[("petrel#include_body", "true")]);
        ok(&enable(&mut alice, "e2", "alice-phone", &ask));
        close(alice);
        bob.chat("alice@localhost", "notified with body");
        let f = summary(&mut app, "alice-phone");
        assert_eq!(get(&f, "last-message-body"), Some("notified with body"));
        assert_eq!(get(&f, "message-count"), Some("1"));
    }
}

/// Logs `user` in as `resource` with resumable stream management (available).
fn login_resumable(server: &Server, user: &str, resource: &str) -> Client {
    let mut c = server.login(user, resource, Some(0));
    c.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>");
    let en = c.expect("enabled", |s| s.name() == "enabled");
    assert_eq!(en.attr("resume").as_deref(), Some("true"), "{}", text(&en));
    c
}

#[test]
fn a_dropped_resumable_session_notifies_its_own_registration() {
    for shards in [1, 2] {
        let server = start(shards);
        let mut app = server.login("app", "srv", Some(0));
        node_for_app(&mut app, "desk");
        node_for_app(&mut app, "phone");
        let mut bob = server.login("bob", "b", Some(0));
        let ask = options(&[("petrel#include_body", "1")]);

        let mut desk = server.login("alice", "desk", None);
        ok(&enable(&mut desk, "e-desk", "desk", &ask));
        close(desk);
        let mut phone = login_resumable(&server, "alice", "phone");
        ok(&enable(&mut phone, "e-phone", "phone", &ask));
        // The phone loses its connection: the session waits for a resumption.
        let _ = phone.sock.shutdown(std::net::Shutdown::Both);
        drop(phone);

        bob.chat("alice@localhost/phone", "first");
        let f = summary(&mut app, "phone");
        assert_eq!(get(&f, "last-message-body"), Some("first"));
        assert_eq!(get(&f, "message-count"), Some("1"));

        // A new login as alice/phone replaces the hibernated session (its message is delivered
        // there, not counted again); then alice leaves for good.
        let mut again = server.login("alice", "phone", Some(0));
        again.expect("the buffered message", |s| {
            common::body(s).as_deref() == Some("first")
        });
        close(again);
        bob.chat("alice@localhost", "second");
        // Every registration now (in either order); the desk's first event is this one: it had
        // none for "first".
        let mut got: Vec<(String, Option<String>)> = (0..2)
            .map(|_| {
                let (n, f) = next_event(&mut app);
                (n, get(&f, "last-message-body").map(str::to_owned))
            })
            .collect();
        got.sort();
        let second = Some("second".to_owned());
        assert_eq!(
            got,
            vec![
                ("desk".to_owned(), second.clone()),
                ("phone".to_owned(), second)
            ]
        );
    }
}

#[test]
fn an_error_from_the_app_server_disables_the_registration() {
    // One shard: the two publishes of a message reach the service, and their events app, in the
    // order the registrations are kept (by node name), so the absence of one is observable.
    let server = start(1);
    let mut app = server.login("app", "srv", Some(0));
    node_for_app(&mut app, "a-bad");
    node_for_app(&mut app, "b-good");
    let mut bob = server.login("bob", "b", Some(0));
    let mut alice = server.login("alice", "phone", None);
    // A precondition the node does not meet: the service answers precondition-not-met.
    let whitelist = options(&[("pubsub#access_model", "whitelist")]);
    ok(&enable(&mut alice, "e1", "a-bad", &whitelist));
    ok(&enable(&mut alice, "e2", "b-good", ""));
    close(alice);

    bob.chat("alice@localhost", "one");
    let f = summary(&mut app, "b-good");
    assert_eq!(get(&f, "message-count"), Some("1"));
    // Now the precondition holds: a publish on a-bad would succeed and be seen first.
    let form = format!("<x xmlns='{XDATA}' type='submit'><field var='FORM_TYPE' type='hidden'><value>{PS}#node_config</value></field><field var='pubsub#access_model'><value>whitelist</value></field></x>");
    ok(&iq(
        &mut app,
        "conf",
        &format!("type='set' to='{SERVICE}'><pubsub xmlns='{PS}#owner'><configure node='a-bad'>{form}</configure></pubsub>"),
    ));
    bob.chat("alice@localhost", "two");
    let (node, f) = next_event(&mut app);
    assert_eq!(node, "b-good", "a-bad was not disabled");
    assert_eq!(get(&f, "message-count"), Some("2"));
}

#[test]
fn bad_requests_get_the_xeps_errors() {
    let server = start(1);
    let mut alice = server.login("alice", "phone", None);
    let cases = [
        // No jid.
        format!("type='set'><enable xmlns='{PUSH}' node='n'/>"),
        // No node.
        format!("type='set'><enable xmlns='{PUSH}' jid='{SERVICE}'/>"),
        // A form that is not publish-options.
        format!("type='set'><enable xmlns='{PUSH}' jid='{SERVICE}' node='n'><x xmlns='{XDATA}' type='submit'><field var='FORM_TYPE'><value>urn:junk</value></field><field var='x'><value>1</value></field></x></enable>"),
        // Junk in the form.
        format!("type='set'><enable xmlns='{PUSH}' jid='{SERVICE}' node='n'><x xmlns='{XDATA}' type='junk'/></enable>"),
        // A get.
        format!("type='get'><enable xmlns='{PUSH}' jid='{SERVICE}' node='n'/>"),
        // Disable without jid.
        format!("type='set'><disable xmlns='{PUSH}'/>"),
    ];
    for (i, body) in cases.iter().enumerate() {
        let r = iq(&mut alice, &format!("bad{i}"), body);
        assert_eq!(
            error_condition(&r).as_deref(),
            Some("bad-request"),
            "{body}: {}",
            text(&r)
        );
    }
    // Someone else's account.
    let mut bob = server.login("bob", "b", None);
    let r = iq(
        &mut bob,
        "other",
        &format!(
            "type='set' to='alice@localhost'><enable xmlns='{PUSH}' jid='{SERVICE}' node='n'/>"
        ),
    );
    assert_eq!(
        error_condition(&r).as_deref(),
        Some("forbidden"),
        "{}",
        text(&r)
    );
    // More than max_per_user (10).
    for i in 0..10 {
        ok(&enable(&mut alice, &format!("m{i}"), &format!("n{i}"), ""));
    }
    let r = enable(&mut alice, "m10", "n10", "");
    assert_eq!(
        error_condition(&r).as_deref(),
        Some("not-acceptable"),
        "{}",
        text(&r)
    );
    // The server still answers.
    alice.sync();
}

/// The app server as an external component (XEP-0114): the publishes reach its stream when alice's
/// phone (a resumable session) lost its connection; its error answer disables that registration.
#[test]
fn a_component_app_server_gets_the_publishes_of_a_dropped_phone() {
    use common::component::{self, Component};
    const APP: &str = "apppush.localhost";
    let port = common::free_port();
    let server = Server::start_with(
        2,
        &["alice", "bob"],
        "",
        &format!(
            "[modules.presence]\n[modules.offline]\n[modules.stream_management]\nresume_timeout = 300\n[modules.push]\n{}",
            component::config(port, &[APP])
        ),
    );
    let mut comp = Component::connect(port, APP);
    let mut bob = server.login("bob", "b", Some(0));
    let mut phone = login_resumable(&server, "alice", "phone");
    let secret = options(&[("secret", "s3cr3t")]);
    for node in ["dev1", "dev2"] {
        ok(&iq(
            &mut phone,
            node,
            &format!(
                "type='set'><enable xmlns='{PUSH}' jid='{APP}' node='{node}'>{secret}</enable>"
            ),
        ));
    }
    let _ = phone.sock.shutdown(std::net::Shutdown::Both);
    drop(phone);

    // Reads the next publish: (its node, message-count, the IQ).
    let publish = |comp: &mut Component| {
        let s = comp.next();
        assert_eq!(s.name(), "iq", "{}", text(&s));
        assert_eq!(s.type_().as_deref(), Some("set"));
        assert_eq!(s.from().as_deref(), Some("alice@localhost"));
        assert_eq!(s.to().as_deref(), Some(APP));
        let t = s.tree().unwrap_or_else(|e| panic!("{e}"));
        let ps = t
            .get_child("pubsub", PS)
            .unwrap_or_else(|| panic!("{}", text(&s)));
        let publish = ps
            .get_child("publish", PS)
            .unwrap_or_else(|| panic!("{}", text(&s)));
        let fields = item_fields(publish.get_child("item", PS), &s);
        let count = get(&fields, "message-count").map(str::to_owned);
        assert_eq!(get(&fields, "last-message-sender"), Some("bob@localhost/b"));
        // The enable's publish-options go along (the app server checks its secret).
        let opts = ps
            .get_child("publish-options", PS)
            .map(|o| format!("{o:?}"))
            .unwrap_or_default();
        assert!(opts.contains("s3cr3t"), "{}", text(&s));
        (publish.attr("node").unwrap_or("").to_owned(), count, s)
    };
    let answer = |comp: &mut Component, req: &Stanza, error: bool| {
        let id = req.id().unwrap_or_default().into_owned();
        let body = if error {
            "type='error'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>"
        } else {
            "type='result'>"
        };
        comp.send(&format!(
            "<iq from='{APP}' to='alice@localhost' id='{id}' {body}</iq>"
        ));
    };

    bob.chat("alice@localhost", "one");
    let mut first: Vec<_> = (0..2).map(|_| publish(&mut comp)).collect();
    first.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        first
            .iter()
            .map(|p| (p.0.as_str(), p.1.as_deref()))
            .collect::<Vec<_>>(),
        vec![("dev1", Some("1")), ("dev2", Some("1"))]
    );
    for p in &first {
        answer(&mut comp, &p.2, false);
    }
    bob.chat("alice@localhost", "two");
    let mut second: Vec<_> = (0..2).map(|_| publish(&mut comp)).collect();
    second.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(second[0].1.as_deref(), Some("2"));
    // dev1's app server refuses: the registration goes; dev2's keeps its.
    answer(&mut comp, &second[0].2, true);
    answer(&mut comp, &second[1].2, false);
    bob.chat("alice@localhost", "three");
    let (node, count, _) = publish(&mut comp);
    assert_eq!((node.as_str(), count.as_deref()), ("dev2", Some("3")));
}

#[test]
fn a_mention_in_a_room_wakes_a_dropped_phone_other_groupchat_does_not() {
    // Prosody's mod_cloud_notify does the same: a groupchat message naming the user's nick in
    // the room notifies; the rest of the room's traffic does not. Nothing notified before.
    for shards in [1, 2] {
        let server = Server::start_with(
            shards,
            &["alice", "bob", "app"],
            "",
            "[modules.presence]\n[modules.offline]\n[modules.pubsub]\n[modules.muc]\n[modules.stream_management]\nresume_timeout = 300\n[modules.push]\ninclude_body = \"on_request\"\n",
        );
        let mut app = server.login("app", "srv", Some(0));
        node_for_app(&mut app, "phone");
        let room = "lounge@conference.localhost";
        let mut bob = server.login("bob", "b", Some(0));
        common::muc::create(&mut bob, room, "bobby", "");
        let mut phone = login_resumable(&server, "alice", "phone");
        common::muc::join(&mut phone, room, "Alice", "");
        let ask = options(&[("petrel#include_body", "1")]);
        ok(&enable(&mut phone, "e-phone", "phone", &ask));
        let _ = phone.sock.shutdown(std::net::Shutdown::Both);
        drop(phone);
        // Let the server see the connection gone before the room talks.
        std::thread::sleep(std::time::Duration::from_millis(300));
        let say = |c: &mut Client, body: &str| {
            c.send(&format!(
                "<message to='{room}' type='groupchat'><body>{body}</body></message>"
            ))
        };
        say(&mut bob, "just chatting");
        say(&mut bob, "hey alice, look");
        let f = summary(&mut app, "phone");
        assert_eq!(
            get(&f, "last-message-body"),
            Some("hey alice, look"),
            "shards={shards}: {f:?}"
        );
    }
}
