//! Integration: full XMPP login (SASL PLAIN, restart, bind, presence) and the
//! `max` scenario against a tiny fake XMPP server running in this test process;
//! two fakes sharing one routing table stand for two federated servers (`--server-b`), three
//! serving one domain for the nodes of a cluster (`--nodes`).

mod common;

use common::{decode_b64, run, HEADER};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

type Routes = Arc<Mutex<HashMap<String, TcpStream>>>;

/// Messages a fake routed: (sender's domain, recipient's domain) of each, across all fakes.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// Logins: (the fake's label, the bare JID), across all fakes.
type Logins = Arc<Mutex<Vec<(&'static str, String)>>>;

/// What one fake serves.
#[derive(Clone)]
struct Fake {
    /// Its users' domain.
    domain: &'static str,
    /// Bound sessions by bare JID: shared by two fakes that "federate".
    routes: Routes,
    /// Route messages at all (false: swallow them).
    deliver: bool,
    /// The domains of every message routed.
    seen: Seen,
    /// Which fake this is, in `logins`.
    label: &'static str,
    /// Every login, with the label of the fake it reached.
    logins: Logins,
    /// Messages bounced (`service-unavailable`) before routing starts: a peer that learns of
    /// sessions late, as a cluster's node does.
    bounce_first: Arc<std::sync::atomic::AtomicUsize>,
}

/// The domain part of a JID.
fn domain_of(jid: &str) -> String {
    let bare = jid.split('/').next().unwrap_or("");
    bare.rsplit('@').next().unwrap_or("").to_owned()
}

/// Serve one client: scripted login, then route `<message to='...'>` elements.
fn serve(mut s: TcpStream, fake: Fake, password: &'static str) {
    let Fake {
        domain,
        routes,
        deliver,
        seen,
        label,
        logins,
        bounce_first,
    } = fake;
    let mut buf = String::new();
    let mut chunk = [0u8; 65536];
    let mut authed = false;
    let mut me = String::new();
    loop {
        let n = match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.push_str(&String::from_utf8_lossy(&chunk[..n]));
        loop {
            let reply: String;
            if let Some(i) = buf.find("<stream:stream") {
                let Some(j) = buf[i..].find('>') else { break };
                buf.drain(..i + j + 1);
                let feats = if authed {
                    "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>"
                } else {
                    "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>"
                };
                reply = format!("{HEADER}{feats}");
            } else if buf.starts_with("<auth") {
                let Some(j) = buf.find("</auth>") else { break };
                let el: String = buf.drain(..j + 7).collect();
                let b64 = &el[el.find('>').expect("auth start tag") + 1..el.len() - 7];
                let raw = decode_b64(b64);
                let parts: Vec<&[u8]> = raw.split(|&c| c == 0).collect();
                if parts.len() == 3 && parts[2] == password.as_bytes() {
                    me = format!("{}@{domain}", String::from_utf8_lossy(parts[1]));
                    logins.lock().expect("logins").push((label, me.clone()));
                    authed = true;
                    reply = "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>".into();
                } else {
                    reply = "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>".into();
                }
            } else if buf.starts_with("<iq") {
                let Some(j) = buf.find("</iq>") else { break };
                buf.drain(..j + 5);
                routes
                    .lock()
                    .expect("routes")
                    .insert(me.clone(), s.try_clone().expect("clone"));
                reply = format!("<iq type='result' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>{me}/load</jid></bind></iq>");
            } else if buf.starts_with("<presence/>") {
                buf.drain(..11);
                continue;
            } else if buf.starts_with("<message") {
                let Some(j) = buf.find("</message>") else {
                    break;
                };
                let el: String = buf.drain(..j + 10).collect();
                let to = el
                    .split("to='")
                    .nth(1)
                    .and_then(|r| r.split('\'').next())
                    .unwrap_or("");
                seen.lock()
                    .expect("seen")
                    .push((domain.to_owned(), domain_of(to)));
                let bounce = bounce_first
                    .fetch_update(
                        std::sync::atomic::Ordering::Relaxed,
                        std::sync::atomic::Ordering::Relaxed,
                        |n| n.checked_sub(1),
                    )
                    .is_ok();
                if bounce {
                    let body = el.find('>').map_or("", |i| &el[i + 1..el.len() - 10]);
                    let err = format!(
                        "<message type='error' from='{to}' to='{me}/load'>{body}<error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
                    );
                    let _ = s.write_all(err.as_bytes());
                    continue;
                }
                if let Some(peer) = routes
                    .lock()
                    .expect("routes")
                    .get_mut(to)
                    .filter(|_| deliver)
                {
                    let _ = peer.write_all(el.as_bytes());
                }
                continue;
            } else {
                break;
            }
            if s.write_all(reply.as_bytes()).is_err() {
                return;
            }
        }
    }
}

/// Start a fake serving `fake`; its address.
fn start(fake: Fake) -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let f = fake.clone();
            std::thread::spawn(move || serve(s, f, "secret"));
        }
    });
    addr
}

/// Start the fake for `localhost`; with `deliver == false` it swallows every message.
fn start_fake(deliver: bool) -> String {
    start(Fake {
        domain: "localhost",
        routes: Arc::default(),
        deliver,
        seen: Arc::default(),
        label: "localhost",
        logins: Arc::default(),
        bounce_first: Arc::default(),
    })
}

/// Two fakes for a.example and b.example; with `federate` they share one routing table (a
/// message reaches a user of the other fake), else each only reaches its own users.
fn start_pair(federate: bool) -> (String, String, Routes, Seen) {
    start_pair_bouncing(federate, 0)
}

/// Like [`start_pair`], a.example bouncing the first `bounces` messages it gets.
fn start_pair_bouncing(federate: bool, bounces: usize) -> (String, String, Routes, Seen) {
    let routes: Routes = Arc::default();
    let seen: Seen = Arc::default();
    let a = start(Fake {
        domain: "a.example",
        routes: routes.clone(),
        deliver: true,
        seen: seen.clone(),
        label: "a.example",
        logins: Arc::default(),
        bounce_first: Arc::new(bounces.into()),
    });
    let b_routes = if federate {
        routes.clone()
    } else {
        Arc::default()
    };
    let b = start(Fake {
        domain: "b.example",
        routes: b_routes,
        deliver: true,
        seen: seen.clone(),
        label: "b.example",
        logins: Arc::default(),
        bounce_first: Arc::default(),
    });
    (a, b, routes, seen)
}

/// Run `scenario` against `a` (a.example) and `b` (b.example) with the options in `rest`.
fn run_across(scenario: &str, a: &str, b: &str, rest: &str) -> (i32, serde_json::Value) {
    let head = format!(
        "{scenario} --server {a} --domain a.example --server-b {b} --domain-b b.example --password secret"
    );
    let args: Vec<&str> = head.split(' ').chain(rest.split(' ')).collect();
    run(&args)
}

#[test]
fn max_across_two_servers() {
    let (a, b, routes, seen) = start_pair(true);
    let rest = "--users 6 --window 4 --duration 0.3 --grace 5";
    let (code, r) = run_across("max", &a, &b, rest);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["connected"].as_u64(), Some(6));
    assert_eq!(r["lost"].as_u64(), Some(0));
    assert!(r["delivered"].as_u64().expect("delivered") >= 24);
    assert_eq!(r["federation"]["ok"].as_bool(), Some(true), "{r}");
    // 3 pairs with one warm-up each way (one core).
    assert_eq!(r["federation"]["warmup_delivered"].as_u64(), Some(2));
    // User k of A and user k of B, k = 1..3: the same localparts on both servers.
    let mut users: Vec<String> = routes.lock().expect("routes").keys().cloned().collect();
    users.sort();
    let mut want: Vec<String> = ["a", "b"]
        .iter()
        .flat_map(|d| (1..=3).map(move |k| format!("user{k}@{d}.example")))
        .collect();
    want.sort();
    assert_eq!(users, want);
    // Every message went from one server to the other, both ways.
    let seen = seen.lock().expect("seen");
    let ab = seen
        .iter()
        .filter(|(f, t)| f == "a.example" && t == "b.example")
        .count();
    let ba = seen
        .iter()
        .filter(|(f, t)| f == "b.example" && t == "a.example")
        .count();
    assert_eq!(ab + ba, seen.len(), "a message stayed on one server");
    assert!(ab >= 12 && ba >= 12, "{ab} a->b, {ba} b->a");
}

/// `--nodes`: three fakes serving one domain with one routing table (a cluster's nodes); users
/// log in to node u mod 3 (`--placement user`) or (u / 2) mod 3 (`--placement pair`), and every
/// message is delivered.
#[test]
fn max_over_three_cluster_nodes() {
    for (placement, node_of) in [("user", 1usize), ("pair", 2)] {
        let routes: Routes = Arc::default();
        let logins: Logins = Arc::default();
        let labels = ["n0", "n1", "n2"];
        let nodes: Vec<String> = labels
            .iter()
            .map(|&label| {
                start(Fake {
                    domain: "localhost",
                    routes: routes.clone(),
                    deliver: true,
                    seen: Arc::default(),
                    label,
                    logins: logins.clone(),
                    bounce_first: Arc::default(),
                })
            })
            .collect();
        let args = format!(
            "max --nodes {} --placement {placement} --password secret --users 6 --window 4 \
             --duration 0.3 --grace 5",
            nodes.join(",")
        );
        let args: Vec<&str> = args.split_whitespace().collect();
        let (code, r) = run(&args);
        assert_eq!(code, 0, "{placement}: {r}");
        assert_eq!(r["connected"].as_u64(), Some(6), "{placement}");
        assert_eq!(r["lost"].as_u64(), Some(0), "{placement}");
        assert!(r["delivered"].as_u64().expect("delivered") >= 24, "{r}");
        let mut got = logins.lock().expect("logins").clone();
        got.sort();
        // user1..user6 are indices 0..5.
        let mut want: Vec<(&str, String)> = (0..6)
            .map(|u| {
                (
                    labels[(u / node_of) % 3],
                    format!("user{}@localhost", u + 1),
                )
            })
            .collect();
        want.sort();
        assert_eq!(got, want, "{placement}");
    }
}

#[test]
fn chat_across_two_servers() {
    let (a, b, _, seen) = start_pair(true);
    let rest = "--users 20 --interval-ms 50 --duration 0.5 --grace 5";
    let (code, r) = run_across("chat", &a, &b, rest);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["lost"].as_u64(), Some(0));
    let sent = r["sent"].as_u64().expect("sent");
    assert!(sent >= 20, "{r}");
    let seen = seen.lock().expect("seen");
    assert!(
        seen.iter().all(|(f, t)| f != t),
        "a message stayed on one server"
    );
}

/// A warm-up message bounced at first (a cluster node that has not heard of the session yet) is
/// sent again, and the run goes on.
#[test]
fn a_bounced_warm_up_is_sent_again() {
    let (a, b, _, seen) = start_pair_bouncing(true, 1);
    let rest = "--users 2 --window 2 --duration 0.2 --grace 5 --warmup-timeout 5";
    let (code, r) = run_across("max", &a, &b, rest);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["federation"]["ok"].as_bool(), Some(true), "{r}");
    assert_eq!(r["federation"]["warmup_delivered"].as_u64(), Some(2), "{r}");
    assert_eq!(r["lost"].as_u64(), Some(0), "{r}");
    // The bounced one went twice: three warm-up messages routed before the load.
    assert!(seen.lock().expect("seen").len() > 3);
}

#[test]
fn no_federation_fails_the_run_before_measuring() {
    let (a, b, _, seen) = start_pair(false);
    let rest = "--users 4 --duration 0.2 --warmup-timeout 0.5";
    let (code, r) = run_across("max", &a, &b, rest);
    assert_eq!(code, 2, "{r}");
    assert_eq!(r["federation"]["ok"].as_bool(), Some(false), "{r}");
    assert_eq!(r["federation"]["warmup_delivered"].as_u64(), Some(0));
    // Only the two warm-up messages were sent: nothing measured.
    assert_eq!(r["sent"].as_u64(), Some(0));
    assert_eq!(seen.lock().expect("seen").len(), 2);
}

#[test]
fn login_and_max_through_fake_server() {
    let addr = start_fake(true);
    let (code, r) = run(&[
        "max",
        "--server",
        &addr,
        "--users",
        "6",
        "--password",
        "secret",
        "--window",
        "4",
        "--duration",
        "0.3",
        "--grace",
        "5",
    ]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["connected"].as_u64(), Some(6));
    assert_eq!(r["lost"].as_u64(), Some(0));
    assert!(r["delivered"].as_u64().expect("delivered") >= 24);

    // A wrong password is a login failure and a non-zero exit.
    let (code, r) = run(&[
        "connect",
        "--server",
        &addr,
        "--users",
        "3",
        "--password",
        "nope",
    ]);
    assert_eq!(code, 2);
    assert_eq!(r["login_failed"].as_u64(), Some(3));
    assert_eq!(r["connected"].as_u64(), Some(0));
}

#[test]
fn lost_messages_fail_the_run() {
    let addr = start_fake(false);
    let (code, r) = run(&[
        "max",
        "--server",
        &addr,
        "--users",
        "2",
        "--password",
        "secret",
        "--window",
        "3",
        "--duration",
        "0.1",
        "--grace",
        "0.2",
    ]);
    assert_eq!(code, 1, "{r}");
    assert_eq!(r["sent"].as_u64(), Some(6));
    assert_eq!(r["lost"].as_u64(), Some(6));
}

/// `chat --burst K`: every user sends K messages each interval (to its next neighbours in turn),
/// and every one of them is delivered.
#[test]
fn chat_bursts_send_k_messages_per_interval() {
    let addr = start_fake(true);
    let (code, r) = run(&[
        "chat",
        "--server",
        &addr,
        "--users",
        "20",
        "--password",
        "secret",
        "--interval-ms",
        "300",
        "--burst",
        "5",
        "--duration",
        "0.5",
        "--grace",
        "5",
    ]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["lost"].as_u64(), Some(0), "{r}");
    let sent = r["sent"].as_u64().expect("sent");
    // Each of the 20 users starts within the first interval, so each sends at least one burst
    // and at most two in 0.5 s; bursts are whole.
    assert!((100..=200).contains(&sent), "{r}");
    assert_eq!(sent % 5, 0, "{r}");
    assert_eq!(r["delivered"].as_u64(), Some(sent), "{r}");
}
