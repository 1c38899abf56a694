//! Federation over real sockets: two petrel processes on loopback (petrel.test and other.test),
//! each with a static `[s2s.address]` pointing at the other's s2s port; clients on each side talk
//! across. Also bad input from a raw socket playing a remote server, and unreachable remotes.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{body, error_condition, free_port, Client, Server, PASSWORD};

/// One side of a federation pair: its domain, server, s2s and metrics ports.
struct Side {
    domain: &'static str,
    server: Server,
    s2s: u16,
    http: u16,
}

/// Ports of both sides, chosen before either starts (each config names the other's s2s port).
struct Ports {
    s2s: u16,
    http: u16,
}

/// What one side serves and whom it federates with.
struct Spec<'a> {
    domain: &'static str,
    user: &'a str,
    other: &'a str,
    other_s2s: u16,
    /// Lines for its `[s2s]` table.
    extra: &'a str,
    /// Its s2s listener's `tls`.
    tls: &'a str,
    /// The other side's s2s listener's `tls`.
    other_tls: &'a str,
}

fn config(spec: &Spec<'_>, me: &Ports, c2s: u16, data: &std::path::Path) -> String {
    format!(
        r#"[general]
hosts = ["{domain}"]
data_dir = "{data}"
loglevel = "info"

[auth]
scram_iterations = 4096

[[listen.c2s]]
port = {c2s}
ip_address = "127.0.0.1"
tls = "starttls"
allow_plaintext_on_loopback = true

[[listen.s2s]]
port = {s2s}
ip_address = "127.0.0.1"
tls = "{tls}"

[[listen.http]]
port = {http}
ip_address = "127.0.0.1"
handlers = ["metrics"]

[s2s]
{extra}

[s2s.address."{other}"]
host = "127.0.0.1"
port = {other_s2s}
tls = "{addr_tls}"

[modules.roster]
[modules.presence]
[modules.version]
[modules.ping]
[modules.disco]
[modules.muc]
[modules.offline]
[modules.caps]
[modules.pep]
"#,
        domain = spec.domain,
        tls = spec.tls,
        // The other side's listener mode: direct TLS there means direct TLS to it.
        addr_tls = if spec.other_tls == "tls" {
            "tls"
        } else {
            "starttls_required"
        },
        extra = spec.extra,
        other = spec.other,
        other_s2s = spec.other_s2s,
        s2s = me.s2s,
        http = me.http,
        data = data.display()
    )
}

fn start(spec: Spec<'_>, me: Ports) -> Side {
    let jid = format!("{}@{}", spec.user, spec.domain);
    let server = Server::start_config(2, &[&jid], |c2s, data| config(&spec, &me, c2s, data));
    Side {
        domain: spec.domain,
        server,
        s2s: me.s2s,
        http: me.http,
    }
}

/// Free ports for one side.
fn ports() -> Ports {
    Ports {
        s2s: free_port(),
        http: free_port(),
    }
}

/// The petrel.test side (alice), federating with other.test on `other_s2s`.
fn spec_a<'a>(other_s2s: u16, extra: &'a str, tls: &'a str) -> Spec<'a> {
    Spec {
        domain: "petrel.test",
        user: "alice",
        other: "other.test",
        other_s2s,
        extra,
        tls,
        other_tls: "starttls_required",
    }
}

/// The other.test side (bob), federating with petrel.test on `other_s2s`.
fn spec_b(other_s2s: u16, extra: &str) -> Spec<'_> {
    Spec {
        domain: "other.test",
        user: "bob",
        other: "petrel.test",
        other_s2s,
        extra,
        tls: "starttls_required",
        other_tls: "starttls_required",
    }
}

/// petrel.test (alice) and other.test (bob), with `extra_a`/`extra_b` in their `[s2s]` tables.
fn pair(extra_a: &str, extra_b: &str) -> (Side, Side) {
    let (pa, pb) = (ports(), ports());
    let (sa, sb) = (pa.s2s, pb.s2s);
    let a = start(spec_a(sb, extra_a, "starttls_required"), pa);
    let b = start(spec_b(sa, extra_b), pb);
    (a, b)
}

/// Read timeout of the test's sockets: generous, since federation runs two servers, each TLS
/// handshake twice, and CI runs test binaries side by side on 2 cores (a wait ends as soon as its
/// condition holds, so this only bounds failures).
const READ_TIMEOUT: Duration = Duration::from_secs(40);

fn login(side: &Side, user: &str, presence: bool) -> Client {
    let mut c = side.server.connect();
    c.sock.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    c.login_plain(user, side.domain, PASSWORD, "r");
    if presence {
        c.send("<presence/>");
    }
    c
}

/// The sum over shards of the module counter `name` on `side`'s /metrics.
fn counter(side: &Side, name: &str) -> u64 {
    let mut s = TcpStream::connect(("127.0.0.1", side.http)).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}_total{{")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn chat_across(from: &mut Client, to: &mut Client, to_jid: &str, text: &str) {
    from.send(&format!(
        "<message to='{to_jid}' type='chat' id='m-{text}'><body>{text}</body></message>"
    ));
    let got = to.expect("chat across", |s| body(s).as_deref() == Some(text));
    assert_eq!(got.name(), "message");
}

/// Connections that never authenticate (held until the auth timeout) take at most a few slots per
/// address: past them an address is refused at once, and other servers still federate.
#[test]
fn silent_connections_from_one_address_do_not_lock_other_servers_out() {
    use std::io::ErrorKind;
    let (a, b) = pair("", "");
    let silent: Vec<Client> = (0..40)
        .map(|_| Client::connect_from(b.s2s, std::net::Ipv4Addr::new(127, 0, 0, 7)))
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let refused = silent
        .iter()
        .filter(|c| {
            c.sock.set_nonblocking(true).unwrap();
            let mut buf = [0u8; 64];
            match (&c.sock).read(&mut buf) {
                Ok(0) => true,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => true,
                Err(e) if e.kind() == ErrorKind::WouldBlock => false,
                other => panic!("a silent connection was sent something: {other:?}"),
            }
        })
        .count();
    // 16 per address on each of the 2 shards.
    assert!(refused >= 40 - 32, "only {refused} of 40 refused");
    let mut alice = login(&a, "alice", true);
    let mut bob = login(&b, "bob", true);
    chat_across(
        &mut alice,
        &mut bob,
        "bob@other.test/r",
        "through-the-flood",
    );
    drop(silent);
}

#[test]
fn dialback_chat_presence_and_iq_across() {
    let (a, b) = pair("", "");
    let mut alice = login(&a, "alice", true);
    let mut bob = login(&b, "bob", true);
    chat_across(&mut alice, &mut bob, "bob@other.test/r", "hello-bob");
    chat_across(&mut bob, &mut alice, "alice@petrel.test/r", "hello-alice");
    // The sender's full JID arrives intact; a client's explicit namespace does not travel.
    alice.send(
        "<message xmlns='jabber:client' to='bob@other.test' type='chat'><body>x1</body></message>",
    );
    let m = bob.expect("x1", |s| body(s).as_deref() == Some("x1"));
    assert_eq!(m.from().as_deref(), Some("alice@petrel.test/r"));

    // Self-signed certificates on both sides: dialback both ways, no SASL EXTERNAL.
    assert!(counter(&a, "petrel_s2s_out_dialback") >= 1);
    assert!(counter(&b, "petrel_s2s_in_dialback") >= 1);
    assert_eq!(counter(&a, "petrel_s2s_out_sasl_external"), 0);
    assert_eq!(counter(&b, "petrel_s2s_in_sasl_external"), 0);

    // Presence subscription across domains (RFC 6121 §3).
    alice.send("<presence to='bob@other.test' type='subscribe'/>");
    let sub = bob.expect("subscribe", |s| {
        s.name() == "presence" && s.type_().as_deref() == Some("subscribe")
    });
    assert_eq!(sub.from().as_deref(), Some("alice@petrel.test"));
    bob.send("<presence to='alice@petrel.test' type='subscribed'/>");
    alice.expect("subscribed", |s| {
        s.name() == "presence" && s.type_().as_deref() == Some("subscribed")
    });
    // Bob's available presence follows the subscription.
    alice.expect("bob's presence", |s| {
        s.name() == "presence"
            && s.type_().is_none()
            && s.from().as_deref() == Some("bob@other.test/r")
    });
    // Both rosters hold the other.
    alice.send("<iq type='get' id='ra'><query xmlns='jabber:iq:roster'/></iq>");
    let r = alice.expect("alice roster", |s| s.id().as_deref() == Some("ra"));
    let text = String::from_utf8_lossy(r.bytes()).into_owned();
    assert!(
        text.contains("bob@other.test") && text.contains("subscription='to'")
            || text.contains("subscription=\"to\""),
        "{text}"
    );
    bob.send("<iq type='get' id='rb'><query xmlns='jabber:iq:roster'/></iq>");
    let r = bob.expect("bob roster", |s| s.id().as_deref() == Some("rb"));
    let text = String::from_utf8_lossy(r.bytes()).into_owned();
    assert!(text.contains("alice@petrel.test"), "{text}");
    assert!(text.contains("from"), "{text}");

    // An IQ to the remote server (XEP-0092) and its answer.
    alice.send("<iq type='get' id='v1' to='other.test'><query xmlns='jabber:iq:version'/></iq>");
    let v = alice.expect("version", |s| s.id().as_deref() == Some("v1"));
    assert_eq!(
        v.type_().as_deref(),
        Some("result"),
        "{:?}",
        String::from_utf8_lossy(v.bytes())
    );
    assert_eq!(v.from().as_deref(), Some("other.test"));
    assert!(String::from_utf8_lossy(v.bytes()).contains("petrel"));
}

#[test]
fn a_remote_message_to_an_offline_user_is_stored() {
    let (a, b) = pair("", "");
    let mut bob = login(&b, "bob", true);
    // alice has no session: the message goes to offline storage, which reads the body in
    // jabber:client (incoming s2s stanzas must read as client stanzas).
    bob.send(
        "<message to='alice@petrel.test' type='chat' id='off1'><body>while-away</body></message>",
    );
    // An IQ on the same stream after it: once answered, the message was handled before it.
    bob.send("<iq type='get' id='v0' to='petrel.test'><query xmlns='jabber:iq:version'/></iq>");
    let v = bob.expect("version", |s| s.id().as_deref() == Some("v0"));
    assert_eq!(v.type_().as_deref(), Some("result"));
    let mut alice = login(&a, "alice", true);
    let m = alice.expect("offline message", |s| {
        body(s).as_deref() == Some("while-away")
    });
    assert_eq!(m.from().as_deref(), Some("bob@other.test/r"));
    assert!(
        !String::from_utf8_lossy(m.bytes()).contains("jabber:server"),
        "{:?}",
        String::from_utf8_lossy(m.bytes())
    );
}

/// A remote server that restarts ends its streams with `system-shutdown` (RFC 6120 §4.9.3.20):
/// no failure. It was taken for one: for five seconds every stanza to it bounced with
/// `remote-server-not-found` and its dialback checks were refused, though it was back up.
#[test]
fn a_restarting_remote_is_reached_again_at_once() {
    let (a, mut b) = pair("", "");
    let mut alice = login(&a, "alice", true);
    let mut bob = login(&b, "bob", true);
    chat_across(&mut alice, &mut bob, "bob@other.test/r", "before");
    chat_across(&mut bob, &mut alice, "alice@petrel.test/r", "before-back");
    drop(bob);
    let stopped = std::time::Instant::now();
    b.server.stop();
    b.server.spawn(2);
    let mut bob = login(&b, "bob", true);
    bob.sock
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    alice
        .send("<message to='bob@other.test/r' type='chat' id='after'><body>after</body></message>");
    let since = stopped.elapsed();
    let got = bob.expect("a message right after the restart", |s| {
        body(s).as_deref() == Some("after")
    });
    assert_eq!(got.name(), "message");
    // Within what was the failure's memory: the test says something only then.
    assert!(since < Duration::from_secs(5), "the restart took {since:?}");
    chat_across(&mut bob, &mut alice, "alice@petrel.test/r", "back-again");
}

#[test]
fn shutdown_delivers_the_unavailable_presence_to_remote_contacts() {
    let (mut a, b) = pair("", "");
    let mut alice = login(&a, "alice", true);
    let mut bob = login(&b, "bob", true);
    // bob subscribes to alice's presence.
    bob.send("<presence to='alice@petrel.test' type='subscribe'/>");
    alice.expect("subscribe", |s| s.type_().as_deref() == Some("subscribe"));
    alice.send("<presence to='bob@other.test' type='subscribed'/>");
    bob.expect("alice's presence", |s| {
        s.name() == "presence"
            && s.type_().is_none()
            && s.from().as_deref() == Some("alice@petrel.test/r")
    });
    // petrel.test stops: alice's session closes and her unavailable presence still reaches bob
    // (the outgoing stream closes only after the queued stanzas went out).
    a.server.stop();
    bob.expect("alice's unavailable presence", |s| {
        s.name() == "presence"
            && s.type_().as_deref() == Some("unavailable")
            && s.from().as_deref() == Some("alice@petrel.test/r")
    });
    drop(alice);
}

#[test]
fn direct_tls_listeners_xep_0368() {
    let (pa, pb) = (ports(), ports());
    let (sa, sb) = (pa.s2s, pb.s2s);
    let a = start(
        Spec {
            other_tls: "tls",
            ..spec_a(sb, "", "tls")
        },
        pa,
    );
    let b = start(
        Spec {
            tls: "tls",
            other_tls: "tls",
            ..spec_b(sa, "")
        },
        pb,
    );
    let mut alice = login(&a, "alice", true);
    let mut bob = login(&b, "bob", true);
    chat_across(&mut alice, &mut bob, "bob@other.test/r", "direct-1");
    chat_across(&mut bob, &mut alice, "alice@petrel.test/r", "direct-2");
    assert!(counter(&a, "petrel_s2s_out_dialback") >= 1);
    assert!(counter(&b, "petrel_s2s_in_dialback") >= 1);
}

#[test]
fn a_service_domain_federates_too() {
    let (pa, pb) = (ports(), ports());
    let (sa, sb) = (pa.s2s, pb.s2s);
    let a = start(spec_a(sb, "", "starttls_required"), pa);
    // other.test reaches conference.petrel.test at petrel.test's s2s port.
    let b_extra =
        format!("[s2s.address.\"conference.petrel.test\"]\nhost = \"127.0.0.1\"\nport = {sa}\n");
    let b = start(spec_b(sa, &b_extra), pb);
    let _alice = login(&a, "alice", true);
    let mut bob = login(&b, "bob", true);
    bob.send(
        "<iq type='get' id='d1' to='conference.petrel.test'>\
         <query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
    );
    let r = bob.expect("disco answer", |s| s.id().as_deref() == Some("d1"));
    let text = String::from_utf8_lossy(r.bytes()).into_owned();
    assert_eq!(r.type_().as_deref(), Some("result"), "{text}");
    assert_eq!(r.from().as_deref(), Some("conference.petrel.test"));
    assert!(text.contains("http://jabber.org/protocol/muc"), "{text}");
}

/// An external component's domain federates as a hosted one does: a remote user's message
/// reaches the component, and its answer the remote user, each way over a stream authenticated by
/// dialback for the component's domain (before, the remote's stream to it got `host-unknown` and
/// the answer `not-allowed`).
#[test]
fn a_component_domain_federates_too() {
    let (pa, pb) = (ports(), ports());
    let (sa, sb) = (pa.s2s, pb.s2s);
    let cport = free_port();
    let a_extra = common::component::config(cport, &["bot.petrel.test"]);
    let a = start(spec_a(sb, &a_extra, "starttls_required"), pa);
    // other.test reaches bot.petrel.test at petrel.test's s2s port.
    let b_extra = format!("[s2s.address.\"bot.petrel.test\"]\nhost = \"127.0.0.1\"\nport = {sa}\n");
    let b = start(spec_b(sa, &b_extra), pb);
    let mut bot = common::component::Component::connect(cport, "bot.petrel.test");
    let mut bob = login(&b, "bob", true);
    bob.send("<message to='echo@bot.petrel.test' type='chat' id='c1'><body>ping</body></message>");
    let got = bot.next();
    assert_eq!(
        common::component::body(&got).as_deref(),
        Some("ping"),
        "{}",
        String::from_utf8_lossy(got.bytes())
    );
    assert_eq!(got.from().as_deref(), Some("bob@other.test/r"));
    bot.reply(&got, "pong");
    let answer = bob.expect("the component's answer", |s| s.name() == "message");
    assert_eq!(
        body(&answer).as_deref(),
        Some("pong"),
        "{}",
        String::from_utf8_lossy(answer.bytes())
    );
    assert_eq!(answer.from().as_deref(), Some("echo@bot.petrel.test"));
    assert!(counter(&a, "petrel_s2s_in_dialback") >= 1);
    assert!(counter(&a, "petrel_s2s_out_dialback") >= 1);
}

#[test]
fn a_remote_occupant_chats_in_a_room_and_is_told_when_it_stops() {
    // A user of another server joins one of our rooms and chats there (the room's stanzas to him
    // were handed to the session manager, which bounced them: he was kicked with 333 at once).
    // He outlives our stop: the room tells him it is gone (status 332) before the outgoing
    // stream closes, or his client shows him in it for good.
    let (pa, pb) = (ports(), ports());
    let (sa, sb) = (pa.s2s, pb.s2s);
    let mut a = start(spec_a(sb, "", "starttls_required"), pa);
    let b_extra =
        format!("[s2s.address.\"conference.petrel.test\"]\nhost = \"127.0.0.1\"\nport = {sa}\n");
    let b = start(spec_b(sa, &b_extra), pb);
    // alice creates the room (users of other servers may only join) and unlocks it.
    let mut alice = login(&a, "alice", true);
    alice.send(
        "<presence to='lounge@conference.petrel.test/alice'>\
         <x xmlns='http://jabber.org/protocol/muc'/></presence>",
    );
    alice.expect("created", |s| {
        s.name() == "presence" && s.from().as_deref() == Some("lounge@conference.petrel.test/alice")
    });
    alice.send(
        "<iq type='set' id='cfg' to='lounge@conference.petrel.test'>\
         <query xmlns='http://jabber.org/protocol/muc#owner'>\
         <x xmlns='jabber:x:data' type='submit'/></query></iq>",
    );
    let r = alice.expect("configured", |s| s.id().as_deref() == Some("cfg"));
    assert_eq!(r.type_().as_deref(), Some("result"));
    let mut bob = login(&b, "bob", true);
    bob.send(
        "<presence to='lounge@conference.petrel.test/bob'>\
         <x xmlns='http://jabber.org/protocol/muc'/></presence>",
    );
    let joined = bob.expect("self-presence", |s| {
        s.name() == "presence" && s.from().as_deref() == Some("lounge@conference.petrel.test/bob")
    });
    assert!(
        joined.type_().is_none(),
        "{}",
        String::from_utf8_lossy(joined.bytes())
    );
    alice.expect("bob joined", |s| {
        s.name() == "presence" && s.from().as_deref() == Some("lounge@conference.petrel.test/bob")
    });
    alice.send(
        "<message to='lounge@conference.petrel.test' type='groupchat' id='g1'><body>hi bob</body></message>",
    );
    bob.expect("alice's groupchat", |s| {
        body(s).as_deref() == Some("hi bob")
    });
    bob.send(
        "<message to='lounge@conference.petrel.test' type='groupchat' id='g2'><body>hi alice</body></message>",
    );
    let echo = alice.expect("bob's groupchat", |s| {
        body(s).as_deref() == Some("hi alice")
    });
    assert_eq!(
        echo.from().as_deref(),
        Some("lounge@conference.petrel.test/bob")
    );
    bob.expect("his own groupchat", |s| {
        body(s).as_deref() == Some("hi alice")
    });
    a.server.stop();
    let gone = bob.expect("the room's goodbye", |s| {
        s.name() == "presence" && s.from().as_deref() == Some("lounge@conference.petrel.test/bob")
    });
    let text = String::from_utf8_lossy(gone.bytes()).into_owned();
    assert_eq!(gone.type_().as_deref(), Some("unavailable"), "{text}");
    assert!(
        text.contains("code='332'") || text.contains("code=\"332\""),
        "{text}"
    );
    assert!(
        text.contains("code='110'") || text.contains("code=\"110\""),
        "{text}"
    );
}

/// A test CA and, per domain, a certificate it signed; written as PEM files into `dir`.
/// Returns the CA file.
fn test_ca(dir: &std::path::Path, domains: &[&str]) -> std::path::PathBuf {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "petrel s2s test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    for d in domains {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![d.to_string()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        std::fs::write(dir.join(format!("{d}.pem")), cert.pem() + &ca.pem()).unwrap();
        std::fs::write(dir.join(format!("{d}.key")), key.serialize_pem()).unwrap();
    }
    let path = dir.join("ca.pem");
    std::fs::write(&path, ca.pem()).unwrap();
    path
}

#[test]
fn sasl_external_with_a_trusted_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = test_ca(dir.path(), &["petrel.test", "other.test"]);
    let extra = |d: &str| {
        format!(
            "cafile = \"{}\"\ncertfile = \"{}\"\nkeyfile = \"{}\"\n",
            ca.display(),
            dir.path().join(format!("{d}.pem")).display(),
            dir.path().join(format!("{d}.key")).display()
        )
    };
    let (a, b) = pair(&extra("petrel.test"), &extra("other.test"));
    let mut alice = login(&a, "alice", true);
    let mut bob = login(&b, "bob", true);
    chat_across(&mut alice, &mut bob, "bob@other.test/r", "ext-1");
    chat_across(&mut bob, &mut alice, "alice@petrel.test/r", "ext-2");
    assert!(counter(&a, "petrel_s2s_out_sasl_external") >= 1);
    assert!(counter(&b, "petrel_s2s_out_sasl_external") >= 1);
    assert!(counter(&b, "petrel_s2s_in_sasl_external") >= 1);
    assert_eq!(counter(&a, "petrel_s2s_out_dialback"), 0);
    assert_eq!(counter(&b, "petrel_s2s_in_dialback"), 0);
}

/// A raw plaintext s2s stream to `port` claiming `from`; returns the socket and the stream id.
fn raw_stream(port: u16, from: &str, to: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    write!(
        s,
        "<?xml version='1.0'?><stream:stream xmlns='jabber:server' \
         xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' \
         from='{from}' to='{to}' version='1.0'>"
    )
    .unwrap();
    let head = read_until(&mut s, "</stream:features>");
    let id = head
        .split(" id='")
        .nth(1)
        .or_else(|| head.split(" id=\"").nth(1))
        .and_then(|r| r.split(['\'', '"']).next())
        .expect("stream id")
        .to_owned();
    (s, id)
}

/// Reads until `what` appears (or the socket closes / times out); returns everything read.
fn read_until(s: &mut TcpStream, what: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + READ_TIMEOUT;
    while !String::from_utf8_lossy(&got).contains(what) && Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

const SECRET_B: &str = "other-test-dialback-secret";

/// The dialback key other.test (with [`SECRET_B`]) computes for a stream to petrel.test.
fn key_of_b(stream_id: &str) -> String {
    use sha2::Digest;
    let secret: [u8; 32] = sha2::Sha256::digest(SECRET_B.as_bytes()).into();
    petrel::s2s::dialback_key(&secret, "petrel.test", "other.test", stream_id)
}

#[test]
fn bad_input_from_a_remote_is_answered_and_disturbs_nothing() {
    // petrel.test accepts dialback without TLS so a raw socket can play a remote server.
    let (pa, pb) = (ports(), ports());
    let (sa, sb) = (pa.s2s, pb.s2s);
    let closed = free_port();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    // connect_timeout applies to other.test too: long enough for a loaded machine.
    let a_extra = format!(
        "connect_timeout = 6\n\
         [s2s.address.\"closed.test\"]\nhost = \"127.0.0.1\"\nport = {closed}\n\
         [s2s.address.\"silent.test\"]\nhost = \"127.0.0.1\"\nport = {silent_port}\n"
    );
    let a = start(spec_a(sb, &a_extra, "starttls"), pa);
    let b_extra = format!("secret = \"{SECRET_B}\"\n");
    let b = start(spec_b(sa, &b_extra), pb);
    let mut alice = login(&a, "alice", true);
    let mut bob = login(&b, "bob", true);

    // A dialback key other.test never made: refused (XEP-0220 §2.4).
    let (mut s, _id) = raw_stream(a.s2s, "other.test", "petrel.test");
    write!(
        s,
        "<db:result from='other.test' to='petrel.test'>0123456789abcdef</db:result>"
    )
    .unwrap();
    let got = read_until(&mut s, "type='invalid'");
    assert!(
        got.contains("type='invalid'") || got.contains("type=\"invalid\""),
        "{got}"
    );

    // With other.test's real key the stream is authenticated; a stanza from another domain on it
    // ends it with <invalid-from/> (RFC 6120 §4.9.3.9).
    let (mut s, id) = raw_stream(a.s2s, "other.test", "petrel.test");
    write!(
        s,
        "<db:result from='other.test' to='petrel.test'>{}</db:result>",
        key_of_b(&id)
    )
    .unwrap();
    let got = read_until(&mut s, "valid");
    assert!(
        got.contains("type='valid'") || got.contains("type=\"valid\""),
        "{got}"
    );
    // A stanza from the authenticated domain is delivered.
    write!(s, "<message from='mallory@other.test/x' to='alice@petrel.test/r' type='chat'><body>raw-ok</body></message>").unwrap();
    alice.expect("raw stanza", |m| body(m).as_deref() == Some("raw-ok"));
    // IQs that break RFC 6120 §8.2.3 (no id, an unknown type, two payloads) and a presence of a
    // type RFC 6121 does not define are answered bad-request towards the remote and never reach
    // alice: her next stanza is the message after.
    let to = "from='mallory@other.test/x' to='alice@petrel.test/r'";
    let ping = "<ping xmlns='urn:xmpp:ping'/>";
    write!(
        s,
        "<iq type='get' {to}>{ping}</iq><iq type='foo' id='f' {to}>{ping}</iq>\
         <iq type='set' id='s' {to}>{ping}{ping}</iq>\
         <presence type='bogus' id='pb' {to}/>\
         <message {to} type='chat'><body>after-iqs</body></message>"
    )
    .unwrap();
    let next = alice.next_stanza();
    assert_eq!(
        body(&next).as_deref(),
        Some("after-iqs"),
        "{}",
        String::from_utf8_lossy(next.bytes())
    );
    write!(s, "<message from='eve@third.test/x' to='alice@petrel.test/r' type='chat'><body>forged</body></message>").unwrap();
    let got = read_until(&mut s, "</stream:stream>");
    assert!(got.contains("invalid-from"), "{got}");

    // A domain whose only address refuses connections: remote-server-not-found to the sender.
    alice.send("<message to='x@closed.test' id='c1' type='chat'><body>c</body></message>");
    let e = alice.expect("bounce", |m| m.id().as_deref() == Some("c1"));
    assert_eq!(
        error_condition(&e).as_deref(),
        Some("remote-server-not-found")
    );

    // A remote that accepts but never answers: remote-server-timeout after connect_timeout.
    alice.send("<message to='x@silent.test' id='t1' type='chat'><body>t</body></message>");
    let e = alice.expect("timeout", |m| m.id().as_deref() == Some("t1"));
    assert_eq!(
        error_condition(&e).as_deref(),
        Some("remote-server-timeout")
    );

    // Nothing else was disturbed: chat across still flows both ways.
    chat_across(&mut alice, &mut bob, "bob@other.test/r", "still-1");
    chat_across(&mut bob, &mut alice, "alice@petrel.test/r", "still-2");
    drop(silent);
}

/// other.test played by the test over a real socket: petrel's own incoming s2s core (`S2sIn`,
/// STARTTLS with a self-signed certificate) behind a blocking socket the test reads only when it
/// wants to. It takes any dialback key: it is its own authoritative server.
struct FakeRemote {
    sock: TcpStream,
    inn: petrel::s2s::S2sIn,
    /// The `id`s of the whole stanzas read, in order.
    ids: Vec<usize>,
}

impl FakeRemote {
    /// The configuration of other.test's incoming streams.
    fn config() -> std::sync::Arc<petrel::s2s::S2sConfig> {
        let ck = rcgen::generate_simple_self_signed(vec!["other.test".to_string()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.key_pair.serialize_der().into());
        let mut cfg = petrel::s2s::S2sConfig::new(vec!["other.test".to_string()]).unwrap();
        let served = petrel::tls::ServedCert::new(vec![ck.cert.der().clone()], key).unwrap();
        cfg.tls_server = Some(petrel::s2s::server_tls_config(served, false).unwrap());
        std::sync::Arc::new(cfg)
    }

    /// Accepts petrel.test's next connection (panics if none comes within [`READ_TIMEOUT`]).
    fn accept(
        listener: &std::net::TcpListener,
        cfg: &std::sync::Arc<petrel::s2s::S2sConfig>,
    ) -> FakeRemote {
        listener.set_nonblocking(true).unwrap();
        let since = Instant::now();
        let (sock, peer) = loop {
            match listener.accept() {
                Ok(accepted) => break accepted,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(
                        since.elapsed() < READ_TIMEOUT,
                        "petrel.test opened no stream"
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        sock.set_nonblocking(false).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut inn = petrel::s2s::S2sIn::new(cfg.clone(), peer, Instant::now());
        inn.set_wall_clock(rustls::pki_types::UnixTime::now());
        FakeRemote {
            sock,
            inn,
            ids: Vec::new(),
        }
    }

    /// One read (up to 5 s) handed to the core, its answers written; false once the socket is
    /// quiet or closed.
    fn turn(&mut self) -> bool {
        let mut buf = [0u8; 16 * 1024];
        match self.sock.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => self.inn.handle_input(&buf[..n], Instant::now()),
        }
        loop {
            let mut quiet = true;
            while let Some(ev) = self.inn.poll_event() {
                quiet = false;
                match ev {
                    petrel::s2s::S2sInEvent::VerifyRequest { remote, local, .. } => {
                        self.inn.dialback_verified(&remote, &local, true)
                    }
                    petrel::s2s::S2sInEvent::Stanza { stanza, .. } => {
                        let text = String::from_utf8_lossy(stanza.bytes()).into_owned();
                        self.ids.extend(message_id(&text));
                    }
                    _ => {}
                }
            }
            let mut out = Vec::new();
            self.inn.take_transmit(&mut out);
            if !out.is_empty() {
                quiet = false;
                self.sock.write_all(&out).unwrap();
            }
            if quiet {
                return true;
            }
        }
    }

    /// Resets the connection (SO_LINGER 0): what TCP holds on either side is gone.
    fn reset(self) {
        use std::os::fd::AsRawFd;
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: setsockopt(2) on our own open socket with a valid `linger` of the right size.
        let rc = unsafe {
            libc::setsockopt(
                self.sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0);
    }
}

/// The number in `id='mNNNNN'` of a message's text.
fn message_id(text: &str) -> Option<usize> {
    let at = text.find("id='m")? + 5;
    text[at..at + text[at..].find('\'')?].parse().ok()
}

/// Message `i` of [`send_burst`]: to bob@other.test, `id='mNNNNN'`, ~1 KB, all the same length.
fn burst_message(i: usize) -> String {
    let pad = "p".repeat(1000);
    format!("<message to='bob@other.test' type='chat' id='m{i:05}'><body>{pad}</body></message>")
}

/// Writes messages 0..n of [`burst_message`] on `from`'s socket from a thread.
fn send_burst(from: &Client, n: usize) -> std::thread::JoinHandle<()> {
    let burst: String = (0..n).map(burst_message).collect();
    let mut sock = from.sock.try_clone().unwrap();
    std::thread::spawn(move || sock.write_all(burst.as_bytes()).unwrap())
}

/// The ids of the error messages among what a client read.
fn error_ids(read: &[u8]) -> Vec<usize> {
    String::from_utf8_lossy(read)
        .split("<message ")
        .filter(|m| m.contains("type='error'"))
        .filter_map(message_id)
        .collect()
}

/// Bytes TCP holds for the loopback connection between ports `a` and `b`: sent by `a` and not yet
/// taken by `b`'s reader (`a`'s send queue plus `b`'s receive queue, from /proc/net/tcp).
fn tcp_held(a: u16, b: u16) -> u64 {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let queues = |local: u16, remote: u16| -> (u64, u64) {
        for line in table.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let port = |addr: &str| u16::from_str_radix(addr.rsplit(':').next().unwrap(), 16).ok();
            if port(f[1]) == Some(local) && port(f[2]) == Some(remote) {
                let (tx, rx) = f[4].split_once(':').unwrap();
                return (
                    u64::from_str_radix(tx, 16).unwrap(),
                    u64::from_str_radix(rx, 16).unwrap(),
                );
            }
        }
        panic!("no connection {local} -> {remote} in /proc/net/tcp");
    };
    queues(a, b).0 + queues(b, a).1
}

/// petrel.test (with `extra` in its `[s2s]`) while alice sends `n` messages of [`send_burst`] to
/// other.test, played by a [`FakeRemote`] that read the first 100 of them and stopped reading.
struct Stopped {
    listener: std::net::TcpListener,
    a: Side,
    cfg: std::sync::Arc<petrel::s2s::S2sConfig>,
    alice: Client,
    /// What alice reads (errors), until quiet for 10 s.
    answers: std::thread::JoinHandle<Vec<u8>>,
    writer: std::thread::JoinHandle<()>,
    first: FakeRemote,
}

fn a_remote_that_stops_reading(extra: &str, n: usize) -> Stopped {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let a = start(spec_a(port, extra, "starttls_required"), ports());
    let cfg = FakeRemote::config();
    let alice = login(&a, "alice", false);
    let answers = alice.read_until_quiet_on_a_thread(Duration::from_secs(10));
    let writer = send_burst(&alice, n);
    let mut first = FakeRemote::accept(&listener, &cfg);
    while first.ids.len() < 100 {
        assert!(first.turn(), "the first stream stopped early");
    }
    Stopped {
        listener,
        a,
        cfg,
        alice,
        answers,
        writer,
        first,
    }
}

/// A remote server that stops reading, then resets the connection, loses only what TCP held at
/// that moment: every stanza the outgoing stream had taken and its socket had not goes first on
/// the next stream to that server. Each message is read by the remote or answered exactly once,
/// and the ones lost are one block, no larger than the bytes TCP held (both ends' queues).
/// Before, the stream's own queue (up to `outbound_queue_bytes`, 1 MiB) was lost with it too.
#[test]
fn a_remote_reset_loses_only_what_tcp_held() {
    const N: usize = 8000;
    // Every message the same length: the lost block's size in bytes is its count times that.
    let Stopped {
        listener,
        a: _a,
        cfg,
        alice: _alice,
        answers,
        writer,
        first,
    } = a_remote_that_stops_reading("", N);
    let port = listener.local_addr().unwrap().port();
    // The remote stops reading: petrel's stream queue and both ends' TCP buffers fill. Once they
    // are full nothing moves while nobody reads, and what TCP holds is what the reset throws away.
    let a_port = first.sock.peer_addr().unwrap().port();
    let since = Instant::now();
    let mut held = tcp_held(a_port, port);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = tcp_held(a_port, port);
        if now == held && since.elapsed() > Duration::from_secs(2) {
            break;
        }
        assert!(since.elapsed() < READ_TIMEOUT, "TCP's queues never settled");
        held = now;
    }
    let got_first = first.ids.clone();
    first.reset();

    // petrel connects again and sends what its socket never took first.
    let mut second = FakeRemote::accept(&listener, &cfg);
    while second.turn() {}
    writer.join().unwrap();
    let answered = error_ids(&answers.join().unwrap());

    let mut seen = vec![0u8; N];
    for &i in got_first.iter().chain(&second.ids).chain(&answered) {
        seen[i] += 1;
    }
    let lost: Vec<usize> = (0..N).filter(|&i| seen[i] == 0).collect();
    let twice: Vec<usize> = (0..N).filter(|&i| seen[i] > 1).collect();
    let len = burst_message(0).len() as u64;
    eprintln!(
        "s2s reset: first stream {}, second {}, answered {}, lost {} ({} bytes), TCP held {held} bytes",
        got_first.len(),
        second.ids.len(),
        answered.len(),
        lost.len(),
        lost.len() as u64 * len
    );
    assert!(
        twice.is_empty(),
        "{} twice, first {:?}",
        twice.len(),
        &twice[..twice.len().min(10)]
    );
    assert!(!second.ids.is_empty(), "nothing came on the second stream");
    // The bytes TCP held, plus the one stanza the remote had read part of when it reset.
    assert!(
        lost.len() as u64 * len <= held + len,
        "{} lost ({} bytes) but TCP held only {held} bytes; first {:?}",
        lost.len(),
        lost.len() as u64 * len,
        &lost[..lost.len().min(10)]
    );
    if let (Some(&lo), Some(&hi)) = (lost.first(), lost.last()) {
        assert_eq!(hi - lo + 1, lost.len(), "the lost stanzas are one block");
    }
}

/// A remote server that stops reading but keeps its connection open is given up after
/// `s2s.send_timeout`: the stream closes, what its socket never took goes first on a new stream,
/// and what TCP had taken still reaches the remote once it reads the old connection again (it was
/// closed, not reset). Every message arrives or is answered exactly once. Before, the stanzas
/// waited for that connection as long as it stayed open.
#[test]
fn a_remote_that_stops_reading_is_given_up_and_nothing_is_lost() {
    // More than TCP holds on loopback once the remote's reader stops (the test above: under 8 MB).
    const N: usize = 10_000;
    let Stopped {
        listener,
        a,
        cfg,
        alice: _alice,
        answers,
        writer,
        mut first,
    } = a_remote_that_stops_reading("send_timeout = 2", N);
    let read_first = first.ids.len();
    // The remote stops reading and keeps the connection: petrel opens a second stream.
    let mut second = FakeRemote::accept(&listener, &cfg);
    while second.turn() {}
    // The old connection still holds what TCP took before the stall: the remote reads it now.
    while first.turn() {}
    writer.join().unwrap();
    let answered = error_ids(&answers.join().unwrap());

    let mut seen = vec![0u8; N];
    for &i in first.ids.iter().chain(&second.ids).chain(&answered) {
        seen[i] += 1;
    }
    let lost: Vec<usize> = (0..N).filter(|&i| seen[i] == 0).collect();
    let twice: Vec<usize> = (0..N).filter(|&i| seen[i] > 1).collect();
    eprintln!(
        "s2s stall: first stream {} ({} before the stall), second {}, answered {}, lost {}",
        first.ids.len(),
        read_first,
        second.ids.len(),
        answered.len(),
        lost.len()
    );
    assert!(
        lost.is_empty() && twice.is_empty(),
        "lost {:?}, twice {:?}",
        &lost[..lost.len().min(10)],
        &twice[..twice.len().min(10)]
    );
    assert!(
        second.ids.len() > N / 10,
        "the second stream carried only {}",
        second.ids.len()
    );
    assert_eq!(counter(&a, "petrel_s2s_out_stalled"), 1);
}

/// A DNS server on a loopback UDP port that answers every query NXDOMAIN (until the test ends).
fn nxdomain_dns() -> u16 {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, peer)) = sock.recv_from(&mut buf) {
            if n < 12 {
                continue;
            }
            // The query back as the answer: QR, the RD it asked, RA, RCODE 3; no records.
            let mut r = buf[..n].to_vec();
            r[2] = 0x80 | (buf[2] & 0x01);
            r[3] = 0x83;
            r[6..12].fill(0);
            let _ = sock.send_to(&r, peer);
        }
    });
    port
}

#[test]
fn messages_to_a_domain_that_does_not_resolve_bounce_every_time() {
    // Past the failure memory (5 s) a new stream is tried, and its DNS answer comes at once from
    // the resolver's cache: its failure then ran inside the routing that started it, borrowed
    // the shard a second time and panicked, taking the server down.
    let dns = nxdomain_dns();
    let server = Server::start_config(2, &["alice"], |port, data| {
        Server::config_text(port, data, "", "")
            + &format!("\n[[listen.s2s]]\nport = {}\nip_address = \"127.0.0.1\"\n\n[s2s]\nnameservers = [\"127.0.0.1:{dns}\"]\n", free_port())
    });
    let mut alice = server.login("alice", "a", Some(0));
    for round in 0..3 {
        if round > 0 {
            std::thread::sleep(Duration::from_millis(5600));
        }
        let id = format!("nx{round}");
        alice.send(&format!(
            "<message to='x@nxdomain.invalid' type='chat' id='{id}'><body>?</body></message>"
        ));
        let e = alice.expect("bounce", |s| s.id().as_deref() == Some(id.as_str()));
        assert_eq!(
            error_condition(&e).as_deref(),
            Some("remote-server-not-found"),
            "round {round}"
        );
    }
    alice.sync();
}

#[test]
fn pep_notifies_a_contact_on_another_server() {
    // The contact's caps are learned from its presence (the server asks its client), and the
    // notification reaches it over federation (it was handed to the session manager, which
    // bounced it, and a `ver` no local client shared stayed unknown).
    use petrel::modules::caps::{ver, CapsInfo, Identity};
    let (a, b) = pair("", "");
    let mut alice = login(&a, "alice", true);
    let mut bob = login(&b, "bob", false);
    bob.send("<presence/>");
    fn subscribe(x: &mut Client, xj: &str, y: &mut Client, yj: &str) {
        x.send(&format!("<presence to='{yj}' type='subscribe'/>"));
        y.expect("subscribe", |s| s.type_().as_deref() == Some("subscribe"));
        y.send(&format!("<presence to='{xj}' type='subscribed'/>"));
        x.expect("subscribed", |s| s.type_().as_deref() == Some("subscribed"));
    }
    subscribe(&mut bob, "bob@other.test", &mut alice, "alice@petrel.test");
    subscribe(&mut alice, "alice@petrel.test", &mut bob, "bob@other.test");
    let info = CapsInfo {
        identities: vec![Identity {
            category: "client".into(),
            type_: "pc".into(),
            lang: String::new(),
            name: "test".into(),
        }],
        features: [
            "http://jabber.org/protocol/caps",
            "http://jabber.org/protocol/disco#info",
            "urn:xmpp:tune+notify",
        ]
        .iter()
        .map(|f| f.to_string())
        .collect(),
        forms: Vec::new(),
    };
    let v = ver::ver(&info, "sha-1").unwrap();
    bob.send(&format!(
        "<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://test' ver='{v}'/></presence>"
    ));
    let features: String = info
        .features
        .iter()
        .map(|f| format!("<feature var='{f}'/>"))
        .collect();
    // bob's own server asks too: the client answers whoever asks, until petrel.test did.
    loop {
        let q = bob.expect("a caps query", |s| {
            s.name() == "iq" && String::from_utf8_lossy(s.bytes()).contains("disco#info")
        });
        let asker = q.from().unwrap_or_default().into_owned();
        bob.send(&format!(
            "<iq type='result' id='{}' to='{asker}'><query xmlns='http://jabber.org/protocol/disco#info' node='https://test#{v}'>\
             <identity category='client' type='pc' name='test'/>{features}</query></iq>",
            q.id().unwrap()
        ));
        if asker == "petrel.test" {
            break;
        }
    }
    // Learned (the answer crossed back): alice publishes until the notification comes.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 0;
    loop {
        n += 1;
        alice.send(&format!(
            "<iq type='set' id='pub{n}'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
             <publish node='urn:xmpp:tune'><item id='t{n}'><tune xmlns='http://jabber.org/protocol/tune'><title>song {n}</title></tune></item></publish></pubsub></iq>"
        ));
        let id = format!("pub{n}");
        let r = alice.expect("published", |s| s.id().as_deref() == Some(id.as_str()));
        assert_eq!(r.type_().as_deref(), Some("result"));
        let got = bob.read_until_quiet(Duration::from_millis(700));
        let text = String::from_utf8_lossy(&got).into_owned();
        if text.contains("pubsub#event") && text.contains(&format!("song {n}")) {
            assert!(text.contains("from='alice@petrel.test'"), "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "no notification at bob: {text}");
    }
}
