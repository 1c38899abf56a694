//! A petrel cluster over NATS (docs/CLUSTER.md): Debian's `nats-server` on a free loopback port
//! and three petrel nodes, each with its own c2s port, admin API and SQLite store. Users chat
//! across nodes (full and bare JID, priorities across nodes); a node killed with SIGKILL leaves
//! the others' session map, messages to its users go to offline storage, and it rejoins after a
//! restart.

mod common;

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::muc::{create, expect_groupchat, groupchat, has_status, join, kept_room_fields, text};
use common::{admin, body, error_condition, free_port, Client, Server};

const USERS: &[&str] = &["alice", "bob", "carol"];

/// The NATS server binary (Debian's package), if installed.
fn nats_bin() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
}

/// A NATS server on loopback, killed when dropped.
struct Nats {
    child: Child,
    port: u16,
}

impl Nats {
    fn start() -> Option<Nats> {
        Nats::start_with(&[])
    }

    /// A server with extra command-line arguments (credentials).
    fn start_with(args: &[&str]) -> Option<Nats> {
        let Some(bin) = nats_bin() else {
            eprintln!("SKIPPED: nats-server is not installed (apt-get install nats-server)");
            return None;
        };
        let port = free_port();
        Some(Nats {
            child: Nats::spawn(&bin, port, args),
            port,
        })
    }

    fn spawn(bin: &std::path::Path, port: u16, args: &[&str]) -> Child {
        let child = Command::new(bin)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    /// Kills the server (every node loses its connections).
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port.
    fn restart(&mut self) {
        let bin = nats_bin().expect("it ran before");
        self.child = Nats::spawn(&bin, self.port, &[]);
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One petrel node: the server and its admin API port.
struct Node {
    server: Server,
    http: u16,
}

fn node(name: &str, nats: &Nats, modules: &str, users: &[&str]) -> Node {
    let url = format!("nats://127.0.0.1:{}", nats.port);
    node_at(name, &url, modules, users, "")
}

/// A node reaching NATS at `url`, with `more` lines in its `[cluster]` table.
fn node_at(name: &str, url: &str, modules: &str, users: &[&str], more: &str) -> Node {
    let cluster = format!(
        "{modules}\n[cluster]\nnode = \"{name}\"\nnats = [\"{url}\"]\nheartbeat_ms = 100\nfailure_timeout_ms = 1000\n{more}\n"
    );
    let (server, http) = admin::start(2, users, true, &cluster);
    Node { server, http }
}

/// `GET /api/cluster` of `n`.
fn view(n: &Node) -> serde_json::Value {
    admin::api(n.http, "GET", "/api/cluster", None).json()
}

/// (sessions, available) of member `member` in `n`'s view, None when it is not a member.
fn member(n: &Node, member: &str) -> Option<(u64, u64)> {
    let v = view(n);
    v["members"].as_array()?.iter().find_map(|m| {
        (m["node"] == member).then(|| {
            (
                m["sessions"].as_u64().unwrap_or(0),
                m["available"].as_u64().unwrap_or(0),
            )
        })
    })
}

/// Waits (at most 30 s: a liveness bound, not a timing assertion) until `cond` holds.
fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The next message with `body`, skipping others (presences, pushes).
fn expect_body(c: &mut Client, text: &str) -> petrel::xml::Stanza {
    c.expect(&format!("message '{text}'"), |s| {
        s.name() == "message" && body(s).as_deref() == Some(text)
    })
}

/// Reads until the ping round trip: no error stanza may come before it.
fn no_error_before_sync(c: &mut Client) {
    let id = format!("sync{}", common::rand_u64());
    c.send(&format!(
        "<iq type='get' to='localhost' id='{id}'><ping xmlns='urn:xmpp:ping'/></iq>"
    ));
    loop {
        let s = c.next_stanza();
        assert!(
            error_condition(&s).is_none() || s.id().as_deref() == Some(id.as_str()),
            "unexpected error: {}",
            String::from_utf8_lossy(s.bytes())
        );
        if s.id().as_deref() == Some(id.as_str()) {
            return;
        }
    }
}

/// Three nodes; with `shared_store` the accounts are added once (on n1's store, which the others
/// share), else on each node's own store.
fn three_nodes(nats: &Nats, modules: &str, shared_store: bool) -> [Node; 3] {
    let others: &[&str] = if shared_store { &[] } else { USERS };
    let nodes = [
        node("n1", nats, modules, USERS),
        node("n2", nats, modules, others),
        node("n3", nats, modules, others),
    ];
    for (i, n) in nodes.iter().enumerate() {
        for other in ["n1", "n2", "n3"] {
            if other != format!("n{}", i + 1) {
                wait_until(&format!("n{} sees {other}", i + 1), || {
                    member(n, other).is_some()
                });
            }
        }
    }
    nodes
}

#[test]
fn chat_and_priorities_across_nodes() {
    let Some(nats) = Nats::start() else { return };
    let [n1, n2, n3] = three_nodes(&nats, "", false);
    let mut alice = n1.server.login("alice", "a", Some(0));
    let mut phone = n2.server.login("bob", "phone", Some(1));
    let mut desk = n3.server.login("bob", "desk", Some(5));
    wait_until("n1 sees bob on n2 and n3", || {
        member(&n1, "n2") == Some((1, 1)) && member(&n1, "n3") == Some((1, 1))
    });
    wait_until("n2 and n3 see alice", || {
        member(&n2, "n1") == Some((1, 1)) && member(&n3, "n1") == Some((1, 1))
    });

    // Full JID, both ways.
    alice.chat("bob@localhost/phone", "to the phone");
    let got = expect_body(&mut phone, "to the phone");
    assert_eq!(got.from().as_deref(), Some("alice@localhost/a"));
    phone.chat("alice@localhost", "from the phone");
    let got = expect_body(&mut alice, "from the phone");
    assert_eq!(got.from().as_deref(), Some("bob@localhost/phone"));

    // Bare JID: the highest priority (5, on n3) only. The phone then gets a message to its full
    // JID on the same path (n1's home shard of bob -> n2): had the bare one gone there too, it
    // would have come first.
    alice.chat("bob@localhost", "to the best");
    expect_body(&mut desk, "to the best");
    alice.chat("bob@localhost/phone", "marker");
    let first = phone.expect("a message", |s| s.name() == "message");
    assert_eq!(body(&first).as_deref(), Some("marker"));

    // The desk goes negative: bare JID messages now reach the phone, on another node.
    desk.send("<presence><priority>-1</priority></presence>");
    wait_until("n1 sees the desk's new priority", || {
        member(&n1, "n3") == Some((1, 0))
    });
    alice.chat("bob@localhost", "now the phone");
    expect_body(&mut phone, "now the phone");
    alice.chat("bob@localhost/desk", "desk marker");
    let first = desk.expect("a message", |s| s.name() == "message");
    assert_eq!(body(&first).as_deref(), Some("desk marker"));

    // Traffic is counted.
    let v = view(&n1);
    assert!(v["traffic"]["stanzas_out"].as_u64().unwrap() >= 4, "{v}");
    assert!(v["traffic"]["stanzas_in"].as_u64().unwrap() >= 1, "{v}");
    // A session that leaves leaves every map.
    drop(phone);
    wait_until("n1 forgets the phone", || member(&n1, "n2") == Some((0, 0)));

    // `petrel ctl cluster`: the members and their sessions, as an operator sees them.
    let out = common::petrel()
        .arg("--config")
        .arg(&n1.server.config)
        .args(["ctl", "cluster"])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("node            n1"), "{text}");
    let row = |node: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(node))
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
    };
    let n3_row = row("n3").unwrap_or_else(|| panic!("no n3 row: {text}"));
    // MEMBER INCARNATION SHARDS C2S SESSIONS AVAILABLE: the desk, connected, priority -1.
    assert_eq!(n3_row[2], "2", "{text}");
    assert_eq!(&n3_row[4..], ["1", "0"], "{text}");
    assert!(row("n2").is_some(), "{text}");
}

#[test]
fn killed_node_users_go_offline_and_it_rejoins() {
    let Some(nats) = Nats::start() else { return };
    let [n1, n2, mut n3] = three_nodes(&nats, "[modules.offline]\n", false);
    let mut alice = n1.server.login("alice", "a", Some(0));
    let bob = n3.server.login("bob", "r", Some(0));
    wait_until("n1 sees bob on n3", || member(&n1, "n3") == Some((1, 1)));
    wait_until("n2 sees bob on n3", || member(&n2, "n3") == Some((1, 1)));

    // SAFETY: kill(2) on our own child's pid (reaped by kill9 below).
    unsafe {
        libc::kill(n3.server.pid() as i32, libc::SIGKILL);
    }
    // Sent at once, before the death is detected: NATS returns it (no one listens on n3 any
    // more) or it waits, unacknowledged, for the detection; either way it is routed again.
    alice.chat("bob@localhost/r", "sent while n3 died");
    n3.server.kill9();
    drop(bob);
    wait_until("n1 declares n3 dead", || member(&n1, "n3").is_none());
    wait_until("n2 declares n3 dead", || member(&n2, "n3").is_none());
    // After detection: bob is offline; the message is stored, not bounced.
    alice.chat("bob@localhost", "sent after");
    no_error_before_sync(&mut alice);

    // The first was published to n3 and came back: returned by NATS, or routed again at the
    // detection as unacknowledged.
    let t = &view(&n1)["traffic"];
    assert!(
        t["returned"].as_u64().unwrap() + t["rerouted"].as_u64().unwrap() >= 1,
        "{t}"
    );
    // Both wait in n1's offline store (per-node SQLite: bob logs in there to get them).
    let mut bob = n1.server.login("bob", "back", None);
    bob.send("<presence/>");
    expect_body(&mut bob, "sent while n3 died");
    expect_body(&mut bob, "sent after");
    drop(bob);

    // n3 restarts: a new incarnation joins, chat works again both ways.
    n3.server.spawn(2);
    wait_until("n1 sees n3 again", || member(&n1, "n3").is_some());
    let mut bob = n3.server.login("bob", "r", Some(0));
    wait_until("n1 sees bob on the new n3", || {
        member(&n1, "n3") == Some((1, 1))
    });
    wait_until("n3 sees alice", || member(&n3, "n1") == Some((1, 1)));
    alice.chat("bob@localhost/r", "welcome back");
    expect_body(&mut bob, "welcome back");
    bob.chat("alice@localhost/a", "thanks");
    expect_body(&mut alice, "thanks");
}

/// A session that ends while NATS is down (its `Gone` record is lost with the connection) does not
/// stay in the other nodes' maps: the node's framed announcement after reconnecting drops it.
#[test]
fn a_session_that_ended_while_nats_was_down_leaves_the_other_maps() {
    let Some(mut nats) = Nats::start() else {
        return;
    };
    let [n1, n2, _n3] = three_nodes(&nats, "[modules.offline]\n", false);
    let alice = n1.server.login("alice", "a", Some(0));
    let mut bob = n1.server.login("bob", "b", Some(0));
    wait_until("n2 sees both on n1", || member(&n2, "n1") == Some((2, 2)));

    nats.stop();
    drop(alice);
    wait_until("alice's session ends on n1", || {
        view(&n1)["local_sessions"] == 1
    });
    nats.restart();
    wait_until("n2 drops alice's session and keeps bob's", || {
        member(&n2, "n1") == Some((1, 1))
    });
    // The map that remains works: a message from n2 reaches bob on n1.
    let mut carol = n2.server.login("alice", "c", Some(0));
    carol.chat("bob@localhost", "after the outage");
    expect_body(&mut bob, "after the outage");
}

/// NATS restarts while users of every node send to each other (docs/CLUSTER.md, "Failure"): a
/// node that comes back first publishes what waited to shards that have not subscribed again
/// yet, NATS returns it, and that is no death: every message reaches its connected recipient
/// (none is stored offline) and no member is declared dead. Several rounds, since which node
/// comes back first varies; n1 has one shard, the others two.
#[test]
fn a_nats_restart_during_traffic_declares_no_member_dead() {
    let Some(mut nats) = Nats::start() else {
        return;
    };
    let [mut n1, n2, n3] = three_nodes(&nats, "[modules.offline]\n", false);
    let log = n1.server.dir.path().join("n1.log");
    n1.server.stop();
    n1.server.spawn_logging_to(1, &log);
    let mut alice = n1.server.login("alice", "a", Some(0));
    let mut bob = n2.server.login("bob", "b", Some(0));
    let mut carol = n3.server.login("carol", "c", Some(0));
    let all_see_all = || {
        for (n, others) in [
            (&n1, ["n2", "n3"]),
            (&n2, ["n1", "n3"]),
            (&n3, ["n1", "n2"]),
        ] {
            for o in others {
                wait_until(&format!("{o}'s user in every other map"), || {
                    member(n, o) == Some((1, 1))
                });
            }
        }
    };
    all_see_all();
    for round in 0..4 {
        nats.stop();
        std::thread::sleep(Duration::from_millis(300));
        // Sent while NATS is down: each waits on its sender's node for the reconnection.
        alice.chat("bob@localhost/b", &format!("to bob {round}"));
        bob.chat("carol@localhost/c", &format!("to carol {round}"));
        carol.chat("alice@localhost/a", &format!("to alice {round}"));
        std::thread::sleep(Duration::from_millis(300));
        nats.restart();
        expect_body(&mut bob, &format!("to bob {round}"));
        expect_body(&mut carol, &format!("to carol {round}"));
        expect_body(&mut alice, &format!("to alice {round}"));
        all_see_all();
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(!text.contains("member died"), "round {round}: {text}");
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("connected to NATS"), "{text}");
}

/// A remote server (`other.test`, bob) for the federation test: its own s2s port, and
/// `example.test` found at `cluster_s2s` (one node of the cluster).
fn remote_server(s2s: u16, cluster_s2s: u16) -> Server {
    Server::start_config(2, &["bob@other.test"], |c2s, data| {
        format!(
            r#"[general]
hosts = ["other.test"]
data_dir = "{data}"

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
tls = "starttls_required"

[s2s.address."example.test"]
host = "127.0.0.1"
port = {cluster_s2s}
tls = "starttls_required"
"#,
            data = data.display()
        )
    })
}

/// Federation from a cluster: each node keeps its own outgoing streams; a remote server verifies
/// n1's dialback key by connecting to n2 (the address it has for the domain), which holds the same
/// secret; a stanza arriving at n2 from the remote server reaches a user on n1 through the
/// cluster.
#[test]
fn a_cluster_federates_from_any_node() {
    let Some(nats) = Nats::start() else { return };
    let (r_s2s, s2s1, s2s2) = (free_port(), free_port(), free_port());
    let fed = |port: u16| {
        format!(
            "[[listen.s2s]]\nport = {port}\nip_address = \"127.0.0.1\"\ntls = \"starttls_required\"\n\
             [s2s]\nsecret = \"one-dialback-secret-for-every-node\"\n\
             [s2s.address.\"other.test\"]\nhost = \"127.0.0.1\"\nport = {r_s2s}\ntls = \"starttls_required\"\n"
        )
    };
    let users = ["alice@example.test"];
    let n1 = node("n1", &nats, &fed(s2s1), &users);
    let n2 = node("n2", &nats, &fed(s2s2), &users);
    wait_until("n1 sees n2", || member(&n1, "n2").is_some());
    wait_until("n2 sees n1", || member(&n2, "n1").is_some());
    let remote = remote_server(r_s2s, s2s2);

    let mut alice = n1.server.connect();
    alice.login_plain("alice", "example.test", common::PASSWORD, "a");
    alice.send("<presence/>");
    wait_until("n2 sees alice on n1", || member(&n2, "n1") == Some((1, 1)));
    let mut bob = remote.connect();
    bob.login_plain("bob", "other.test", common::PASSWORD, "b");
    bob.send("<presence/>");

    // n1's own outgoing stream; other.test checks n1's key with n2.
    alice.chat("bob@other.test/b", "from n1");
    expect_body(&mut bob, "from n1");
    // other.test's stream goes to n2; the stanza crosses the cluster to n1.
    bob.chat("alice@example.test/a", "to n1 through n2");
    expect_body(&mut alice, "to n1 through n2");
    bob.chat("alice@example.test", "to the bare JID");
    expect_body(&mut alice, "to the bare JID");
    let t = &view(&n2)["traffic"];
    assert!(t["stanzas_out"].as_u64().unwrap() >= 2, "{t}");
}

/// n1 and n2 form a cluster and chat; n3, started before them and refused by NATS, was heard by
/// no one (it heartbeats every 100 ms once connected: by now the others would have heard it, as
/// they heard each other) and hears no one.
fn n1_n2_chat_and_n3_alone(n1: &Node, n2: &Node, n3: &Node) {
    wait_until("n1 sees n2", || member(n1, "n2").is_some());
    wait_until("n2 sees n1", || member(n2, "n1").is_some());
    let mut alice = n1.server.login("alice", "a", Some(0));
    let mut bob = n2.server.login("bob", "b", Some(0));
    wait_until("n1 sees bob on n2", || member(n1, "n2") == Some((1, 1)));
    alice.chat("bob@localhost/b", "between n1 and n2");
    expect_body(&mut bob, "between n1 and n2");
    assert!(member(n1, "n3").is_none() && member(n2, "n3").is_none());
    assert_eq!(view(n3)["members"].as_array().map(Vec::len), Some(0));
}

/// A NATS server that requires a user and password: nodes with the credentials form the
/// cluster, a node with a wrong password is refused by NATS and stays alone.
#[test]
fn nodes_authenticate_to_nats() {
    let Some(nats) = Nats::start_with(&["--user", "petrel", "--pass", "s3cret-pw"]) else {
        return;
    };
    let n = |name: &str, host: &str, pw: &str| {
        let url = format!("nats://{host}:{}", nats.port);
        let creds = format!("nats_user = \"petrel\"\nnats_password = \"{pw}\"");
        node_at(name, &url, "", USERS, &creds)
    };
    let n3 = n("n3", "127.0.0.1", "wrong");
    let n1 = n("n1", "127.0.0.1", "s3cret-pw");
    // A host name: resolved off the shard (to ::1 and 127.0.0.1; NATS listens on the latter).
    let n2 = n("n2", "localhost", "s3cret-pw");
    n1_n2_chat_and_n3_alone(&n1, &n2, &n3);
}

/// A CA and a certificate for 127.0.0.1 signed by it, in `dir`: (ca.pem, cert.pem, key.pem).
fn nats_certificate(dir: &std::path::Path) -> [PathBuf; 3] {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "petrel NATS test CA");
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let files = [
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    ];
    std::fs::write(&files[0], ca.pem()).unwrap();
    std::fs::write(&files[1], cert.pem()).unwrap();
    std::fs::write(&files[2], key.serialize_pem()).unwrap();
    files
}

/// A nats-server that requires TLS: nodes with `tls://` and the CA form the cluster; a node
/// that does not trust the server's certificate stays alone.
#[test]
fn nodes_reach_nats_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let [ca, cert, key] = nats_certificate(dir.path());
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let Some(nats) = Nats::start_with(&["--tls", "--tlscert", &cert, "--tlskey", &key]) else {
        return;
    };
    let url = format!("tls://127.0.0.1:{}", nats.port);
    let trust = format!("nats_cafile = \"{}\"", ca.display());
    let n3 = node_at("n3", &url, "", USERS, "");
    let n1 = node_at("n1", &url, "", USERS, &trust);
    let n2 = node_at("n2", &url, "", USERS, &trust);
    n1_n2_chat_and_n3_alone(&n1, &n2, &n3);
}

/// Asks for the roster (the session then gets roster pushes) and waits for the answer.
fn get_roster(c: &mut Client) {
    c.send("<iq type='get' id='roster1'><query xmlns='jabber:iq:roster'/></iq>");
    c.expect("roster result", |s| s.id().as_deref() == Some("roster1"));
}

/// The next presence from `from` of type `ty` (None: available).
fn expect_presence(c: &mut Client, from: &str, ty: Option<&str>) {
    c.expect(&format!("presence {ty:?} from {from}"), |s| {
        s.name() == "presence" && s.from().as_deref() == Some(from) && s.type_().as_deref() == ty
    });
}

/// `modules` and a `[store]` on the test's PostgreSQL database.
fn on_postgres(db: &common::pg::TestDatabase, modules: &str) -> String {
    format!(
        "{modules}[store]\nbackend = \"postgres\"\nurl = {:?}\npool_size = 2\n",
        db.url
    )
}

#[test]
fn presence_and_offline_across_nodes_on_a_shared_store() {
    let Some(db) = common::pg::TestDatabase::create() else {
        return;
    };
    let Some(nats) = Nats::start() else { return };
    let modules = on_postgres(
        &db,
        "[modules.roster]\n[modules.presence]\n[modules.offline]\n",
    );
    let [n1, mut n2, n3] = three_nodes(&nats, &modules, true);
    let mut alice = n1.server.login("alice", "a", None);
    get_roster(&mut alice);
    alice.send("<presence/>");
    let mut bob = n2.server.login("bob", "b", None);
    get_roster(&mut bob);
    bob.send("<presence/>");
    wait_until("n1 sees bob available", || {
        member(&n1, "n2") == Some((1, 1))
    });
    wait_until("n2 sees alice available", || {
        member(&n2, "n1") == Some((1, 1))
    });

    // Subscription across nodes: the request reaches bob on n2, his approval gives alice a roster
    // push and bob's presence on n1.
    alice.send("<presence to='bob@localhost' type='subscribe'/>");
    bob.expect("subscription request", |s| {
        s.name() == "presence"
            && s.type_().as_deref() == Some("subscribe")
            && s.from().as_deref() == Some("alice@localhost")
    });
    bob.send("<presence to='alice@localhost' type='subscribed'/>");
    alice.expect("roster push: subscription to bob", |s| {
        s.name() == "iq"
            && s.type_().as_deref() == Some("set")
            && String::from_utf8_lossy(s.bytes()).contains("subscription='to'")
    });
    expect_presence(&mut alice, "bob@localhost/b", None);

    // Bob's availability reaches alice across nodes.
    bob.send("<presence type='unavailable'/>");
    expect_presence(&mut alice, "bob@localhost/b", Some("unavailable"));
    bob.send("<presence><show>away</show></presence>");
    expect_presence(&mut alice, "bob@localhost/b", None);

    // Alice's second session on n3: its initial presence probes bob, answered on n3 from the
    // replicated last presence of bob's session on n2.
    wait_until("n3 sees bob available", || {
        member(&n3, "n2") == Some((1, 1))
    });
    let mut alice3 = n3.server.login("alice", "c", None);
    get_roster(&mut alice3);
    alice3.send("<presence/>");
    let p = alice3.expect("bob's presence, probed", |s| {
        s.name() == "presence" && s.from().as_deref() == Some("bob@localhost/b")
    });
    assert!(
        String::from_utf8_lossy(p.bytes()).contains("away"),
        "{:?}",
        p
    );

    // n2 dies: bob's contacts are told he is unavailable (once per session: one node speaks for
    // him), and a message to bob goes to the shared offline store and reaches him on n3.
    n2.server.kill9();
    drop(bob);
    expect_presence(&mut alice, "bob@localhost/b", Some("unavailable"));
    expect_presence(&mut alice3, "bob@localhost/b", Some("unavailable"));
    wait_until("n1 declares n2 dead", || member(&n1, "n2").is_none());
    alice.chat("bob@localhost", "stored for bob");
    no_error_before_sync(&mut alice);
    // n1 stores it; n3 fetches at bob's login: across nodes nothing orders the two (see
    // CLUSTER.md, "Store"), so the test waits for the row first.
    let store = petrel::store::Store::connect(&db.backend()).unwrap();
    let bob_jid = petrel::jid::BareJid::parse("bob@localhost").unwrap();
    wait_until("the offline message stored", || {
        store.offline_count(&bob_jid).unwrap() == 1
    });
    let mut bob = n3.server.login("bob", "again", None);
    bob.send("<presence/>");
    expect_body(&mut bob, "stored for bob");
}

/// Stream management on, resumable for a minute.
const SM: &str =
    "[modules.stream_management]\nresume_timeout = 60\nbuffer_max = 500\nack_freq = 1000\n";

/// A client with resumable stream management: counts the stanzas it handles.
struct SmClient {
    c: Client,
    h: u32,
    id: String,
    jid: String,
    /// Answer the server's `<r/>` (off while the test reads stanzas it will pretend were lost:
    /// stanzas from another node carry a sender's acknowledgement, so the server asks at once).
    answer_r: bool,
}

impl SmClient {
    /// Logs `user` in on `n` as `resource`, enables resumption, sends initial presence.
    fn login(n: &Node, user: &str, resource: &str) -> SmClient {
        let mut c = n.server.connect();
        c.auth_plain(user, "localhost", common::PASSWORD);
        c.bind(resource);
        c.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>");
        let en = c.next_stanza();
        assert_eq!(en.name(), "enabled", "{en:?}");
        let id = en.attr("id").expect("an id").into_owned();
        let jid = c.jid.clone();
        let mut sm = SmClient {
            c,
            h: 0,
            id,
            jid,
            answer_r: true,
        };
        sm.c.send("<presence/>");
        // A ping round trip: the presence was handled (what came meanwhile is counted).
        sm.c.send("<iq type='get' to='localhost' id='sm-sync'><ping xmlns='urn:xmpp:ping'/></iq>");
        while sm.recv().id().as_deref() != Some("sm-sync") {}
        sm
    }

    /// The next stanza, counted (`<r/>` answered, `<a/>` skipped).
    fn recv(&mut self) -> petrel::xml::Stanza {
        loop {
            let s = self.c.next_stanza();
            match s.name() {
                "r" if self.answer_r => self.ack(),
                "r" | "a" => {}
                _ => {
                    self.h = self.h.wrapping_add(1);
                    return s;
                }
            }
        }
    }

    fn ack(&mut self) {
        let h = self.h;
        self.c.send(&format!("<a xmlns='urn:xmpp:sm:3' h='{h}'/>"));
    }

    /// The bodies of the next `n` messages (other stanzas skipped).
    fn bodies(&mut self, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        while out.len() < n {
            let s = self.recv();
            if s.name() == "message" {
                out.push(body(&s).unwrap_or_default());
            }
        }
        out
    }

    /// Resumes `self` on node `n` from a new connection: the answer (`resumed` or `failed`) and
    /// the new connection.
    fn resume_on(&self, n: &Node, user: &str) -> (petrel::xml::Stanza, Client) {
        let (r, mut c) = resume_raw(n, user, &self.id, self.h);
        c.jid = self.jid.clone();
        (r, c)
    }
}

/// Sends `<resume/>` for `id` with `h` from a new connection of `user` on `n`: the answer.
fn resume_raw(n: &Node, user: &str, id: &str, h: u32) -> (petrel::xml::Stanza, Client) {
    let mut c = n.server.connect();
    c.auth_plain(user, "localhost", common::PASSWORD);
    c.send(&format!(
        "<resume xmlns='urn:xmpp:sm:3' previd='{id}' h='{h}'/>"
    ));
    let r = c.next_stanza();
    (r, c)
}

/// `<failed><item-not-found/></failed>`.
fn assert_item_not_found(r: &petrel::xml::Stanza) {
    let text = String::from_utf8_lossy(r.bytes());
    assert_eq!(r.name(), "failed", "{text}");
    assert!(text.contains("<item-not-found"), "{text}");
}

/// Resumes `old` on `n` and expects it to succeed.
fn resumed_on(old: &SmClient, n: &Node, user: &str) -> SmClient {
    let (r, c) = old.resume_on(n, user);
    assert_eq!(
        r.name(),
        "resumed",
        "{}",
        String::from_utf8_lossy(r.bytes())
    );
    assert_eq!(r.attr("previd").as_deref(), Some(old.id.as_str()));
    SmClient {
        c,
        h: old.h,
        id: old.id.clone(),
        jid: old.jid.clone(),
        answer_r: true,
    }
}

#[test]
fn resumption_on_another_node() {
    let Some(nats) = Nats::start() else { return };
    let [n1, n2, n3] = three_nodes(&nats, SM, false);
    let mut alice = SmClient::login(&n1, "alice", "r");
    assert!(
        alice.id.starts_with("n1."),
        "the id names its node: {}",
        alice.id
    );
    let mut bob = n3.server.login("bob", "b", Some(0));
    let mut bob1 = n1.server.login("bob", "b1", Some(0));
    wait_until("n3 sees alice on n1", || member(&n3, "n1") == Some((2, 2)));

    for m in ["m1", "m2", "m3", "m4"] {
        bob.chat(&alice.jid, m);
    }
    assert_eq!(alice.bodies(1), ["m1"]);
    alice.ack();
    let acked = alice.h;
    alice.answer_r = false;
    assert_eq!(alice.bodies(3), ["m2", "m3", "m4"]);
    // m2..m4 unacknowledged, and as if lost in transit: the client's h stays at m1. The socket
    // is cut (no </stream>).
    alice.h = acked;
    let _ = alice.c.sock.shutdown(std::net::Shutdown::Both);

    let mut alice = resumed_on(&alice, &n2, "alice");
    // The unacknowledged ones, in order, and not m1.
    assert_eq!(alice.bodies(3), ["m2", "m3", "m4"]);
    // Every map now routes to n2: n1 and n3 count alice there (available), no longer on n1.
    wait_until("n3 sees alice on n2", || {
        member(&n3, "n2") == Some((1, 1)) && member(&n3, "n1") == Some((1, 1))
    });
    wait_until("n1 sees alice on n2", || member(&n1, "n2") == Some((1, 1)));
    bob.chat(&alice.jid, "after the move");
    assert_eq!(alice.bodies(1), ["after the move"]);
    // A bare-JID message sent on n1 reaches her on n2.
    bob1.chat("alice@localhost", "bare from n1");
    assert_eq!(alice.bodies(1), ["bare from n1"]);
    // Her own stanzas go out from n2.
    alice.c.chat(&bob.jid, "from n2");
    expect_body(&mut bob, "from n2");
    no_error_before_sync(&mut bob1);

    // Cut again: resumed on n3 (its id names n1, which sends n3 on to n2), then back on n1.
    alice.answer_r = false;
    bob.chat(&alice.jid, "to n2, unacked");
    assert_eq!(alice.bodies(1), ["to n2, unacked"]);
    alice.h -= 1;
    let _ = alice.c.sock.shutdown(std::net::Shutdown::Both);
    let mut alice = resumed_on(&alice, &n3, "alice");
    assert_eq!(alice.bodies(1), ["to n2, unacked"]);
    wait_until("n1 sees alice on n3", || member(&n1, "n3") == Some((2, 2)));
    bob1.chat(&alice.jid, "to n3");
    assert_eq!(alice.bodies(1), ["to n3"]);
    let _ = alice.c.sock.shutdown(std::net::Shutdown::Both);
    let mut alice = resumed_on(&alice, &n1, "alice");
    wait_until("n3 sees alice back on n1", || {
        member(&n3, "n1") == Some((2, 2))
    });
    bob.chat(&alice.jid, "back on n1");
    assert_eq!(alice.bodies(1), ["back on n1"]);
}

#[test]
fn resumption_with_an_id_of_a_dead_node_fails() {
    let Some(nats) = Nats::start() else { return };
    let [_n1, n2, mut n3] = three_nodes(&nats, SM, false);
    let alice = SmClient::login(&n3, "alice", "r");
    n3.server.kill9();
    wait_until("n2 declares n3 dead", || member(&n2, "n3").is_none());
    let (r, mut c) = alice.resume_on(&n2, "alice");
    assert_item_not_found(&r);
    // The stream stays authenticated: a fresh bind works.
    c.bind("again");
    c.sync();

    // An id a live node never issued: that node says so.
    let (r, _) = resume_raw(&n2, "alice", "n1.NOSUCHID", 0);
    assert_item_not_found(&r);
}

#[test]
fn live_takeover_across_nodes() {
    let Some(nats) = Nats::start() else { return };
    let [n1, n2, n3] = three_nodes(&nats, SM, false);
    let mut first = SmClient::login(&n1, "alice", "r");
    let mut bob = n3.server.login("bob", "b", Some(0));
    wait_until("n3 sees alice on n1", || member(&n3, "n1") == Some((1, 1)));
    for i in 0..5 {
        bob.chat(&first.jid, &format!("in flight {i}"));
    }
    // They reached the first connection (read here, never acknowledged to the server).
    let seen: Vec<String> = (0..5)
        .map(|_| body(&first.c.expect("a message", |s| s.name() == "message")).unwrap())
        .collect();
    assert_eq!(seen.len(), 5);
    // The client comes back on n2 while the first connection still looks alive.
    let mut second = resumed_on(&first, &n2, "alice");
    let old = first.c.read_to_close();
    assert!(
        old.contains("<conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"),
        "{old}"
    );
    let want: Vec<String> = (0..5).map(|i| format!("in flight {i}")).collect();
    assert_eq!(second.bodies(5), want);
    wait_until("n3 sees alice on n2", || {
        member(&n3, "n2") == Some((1, 1)) && member(&n3, "n1") == Some((0, 0))
    });
    bob.chat(&second.jid, "after");
    assert_eq!(second.bodies(1), ["after"]);
}

/// On a shared store with rosters: a session that moves to another node by resumption keeps its
/// presence; its contact gets no `unavailable` for the move, and its presence stays known.
#[test]
fn resumption_on_another_node_keeps_presence_on_a_shared_store() {
    let Some(db) = common::pg::TestDatabase::create() else {
        return;
    };
    let Some(nats) = Nats::start() else { return };
    let modules = on_postgres(&db, &format!("{SM}[modules.roster]\n[modules.presence]\n"));
    let [n1, n2, n3] = three_nodes(&nats, &modules, true);
    let mut alice = SmClient::login(&n1, "alice", "r");
    let mut bob = n3.server.login("bob", "b", None);
    get_roster(&mut bob);
    bob.send("<presence/>");
    // Bob subscribes to alice; she approves; he then has her presence.
    bob.send("<presence to='alice@localhost' type='subscribe'/>");
    while alice.recv().type_().as_deref() != Some("subscribe") {}
    alice
        .c
        .send("<presence to='bob@localhost' type='subscribed'/>");
    expect_presence(&mut bob, "alice@localhost/r", None);
    wait_until("n3 sees alice on n1", || member(&n3, "n1") == Some((1, 1)));

    alice.answer_r = false;
    bob.chat(&alice.jid, "unacked");
    while alice.recv().name() != "message" {}
    alice.h -= 1;
    let _ = alice.c.sock.shutdown(std::net::Shutdown::Both);
    let mut alice = resumed_on(&alice, &n2, "alice");
    assert_eq!(alice.bodies(1), ["unacked"]);
    wait_until("every node sees alice on n2", || {
        member(&n3, "n2") == Some((1, 1))
            && member(&n3, "n1") == Some((0, 0))
            && member(&n1, "n2") == Some((1, 1))
    });
    // An `unavailable` for the move would have been routed on n1 before her session left n1's map,
    // through bob's home shard there to n3; a message from n1 to bob, sent now, takes that same
    // path after it. So it is the first thing bob gets.
    let mut bob1 = n1.server.login("bob", "b1", None);
    bob1.chat(&bob.jid, "marker from n1");
    let first = bob.expect("a message or a presence from alice", |s| {
        s.name() == "message" || s.from().as_deref() == Some("alice@localhost/r")
    });
    assert_eq!(
        body(&first).as_deref(),
        Some("marker from n1"),
        "{}",
        String::from_utf8_lossy(first.bytes())
    );
    // Her presence, replicated from n2, still answers a probe: bob's new session on n1 gets it.
    get_roster(&mut bob1);
    bob1.send("<presence/>");
    expect_presence(&mut bob1, "alice@localhost/r", None);
    // And she still chats from n2.
    alice.c.chat(&bob.jid, "still here");
    expect_body(&mut bob, "still here");
}

/// A session whose unacknowledged stanzas do not fit in one NATS message (1 MiB by default) is not
/// moved: the resumption fails, and the stanzas go to the user's other resource, none lost.
#[test]
fn a_hand_over_too_large_for_nats_fails_and_loses_nothing() {
    let Some(nats) = Nats::start() else { return };
    let [n1, n2, n3] = three_nodes(&nats, SM, false);
    let mut alice = SmClient::login(&n1, "alice", "r");
    let mut desk = n3.server.login("alice", "desk", Some(0));
    let mut bob = n2.server.login("bob", "b", Some(0));
    wait_until("n2 sees alice's sessions", || {
        member(&n2, "n1") == Some((1, 1)) && member(&n2, "n3") == Some((1, 1))
    });
    const N: usize = 300;
    let pad = "x".repeat(4000);
    for i in 0..N {
        bob.chat(&alice.jid, &format!("{i}:{pad}"));
    }
    // All of them reach her connection on n1; she acknowledges none (`<r/>` left unanswered).
    let mut got = 0;
    while got < N {
        let s = alice.c.next_stanza();
        got += usize::from(s.name() == "message");
    }
    let _ = alice.c.sock.shutdown(std::net::Shutdown::Both);
    let (r, mut c) = alice.resume_on(&n2, "alice");
    assert_item_not_found(&r);
    c.bind("again");
    // The session ended on n1: every message goes to her other resource, in order.
    for i in 0..N {
        let s = desk.expect("a message", |s| body(s).is_some());
        let b = body(&s).unwrap_or_default();
        assert_eq!(
            b.split_once(':').map(|(n, _)| n),
            Some(i.to_string().as_str()),
            "{}",
            String::from_utf8_lossy(s.bytes())
        );
    }
}

const MUC: &str = "[modules.presence]\n[modules.muc]\n";

/// A room JID under `prefix` whose rendezvous node among n1, n2 and n3 is `node` (where it is
/// created, every node agreeing).
fn room_homed_on(node: &str, prefix: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}{i}@conference.localhost"))
        .find(|r| petrel::cluster::objects::rendezvous(r, ["n1", "n2", "n3"]) == Some(node))
        .expect("some name hashes to each node")
}

/// The rooms live on `n` (`GET /api/rooms`): (JID, occupants).
fn rooms_of(n: &Node) -> Vec<(String, u64)> {
    let v = admin::api(n.http, "GET", "/api/rooms", None).json();
    v["rooms"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    (
                        r["jid"].as_str().unwrap_or_default().to_owned(),
                        r["occupants"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Waits for a presence from `from` (available unless `unavailable`).
fn expect_occupant(c: &mut Client, from: &str, unavailable: bool) -> petrel::xml::Stanza {
    let ty = unavailable.then_some("unavailable");
    c.expect(&format!("presence {ty:?} from {from}"), |s| {
        s.name() == "presence" && s.from().as_deref() == Some(from) && s.type_().as_deref() == ty
    })
}

/// Asks the MUC service's room list (disco#items) until it holds every one of `want` (the room's
/// announcement reaches the other nodes on its own path: at most 30 s, a liveness bound).
fn listed(c: &mut Client, want: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        c.send("<iq type='get' id='items' to='conference.localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>");
        let r = text(&c.expect("room list", |s| s.id().as_deref() == Some("items")));
        if want.iter().all(|w| r.contains(w)) {
            return;
        }
        assert!(Instant::now() < deadline, "not listed: {want:?} in {r}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The join's stanzas hold an occupant presence from `room/nick`.
fn saw(seen: &[petrel::xml::Stanza], room: &str, nick: &str) -> bool {
    let from = format!("{room}/{nick}");
    seen.iter()
        .any(|s| s.name() == "presence" && s.from().as_deref() == Some(from.as_str()))
}

/// Waits until every node sees `n` sessions, all available, on each other node.
fn sessions_known(nodes: &[&Node], names: &[&str]) {
    for (i, n) in nodes.iter().enumerate() {
        for (j, other) in names.iter().enumerate() {
            if i != j {
                wait_until(&format!("{} sees the session on {other}", names[i]), || {
                    member(n, other) == Some((1, 1))
                });
            }
        }
    }
}

#[test]
fn one_muc_room_across_nodes_its_node_dies_and_a_late_node_joins_it() {
    let Some(nats) = Nats::start() else { return };
    let [n1, n2, mut n3] = three_nodes(&nats, MUC, false);
    // Its rendezvous node is n3: created there whoever creates it.
    let room = room_homed_on("n3", "lobby");
    let mut alice = n1.server.login("alice", "a", Some(0));
    let mut bob = n2.server.login("bob", "b", Some(0));
    let mut carol = n3.server.login("carol", "c", Some(0));
    sessions_known(&[&n1, &n2, &n3], &["n1", "n2", "n3"]);

    // Users of three nodes in one room: each sees the others.
    create(&mut alice, &room, "alice", "");
    let seen = join(&mut bob, &room, "bob", "");
    assert!(saw(&seen, &room, "alice"), "{seen:?}");
    expect_occupant(&mut alice, &format!("{room}/bob"), false);
    let seen = join(&mut carol, &room, "carol", "");
    assert!(
        saw(&seen, &room, "alice") && saw(&seen, &room, "bob"),
        "{seen:?}"
    );
    for c in [&mut alice, &mut bob] {
        expect_occupant(c, &format!("{room}/carol"), false);
    }
    // One room, on n3, with the three of them; none on the others.
    assert_eq!(rooms_of(&n3), vec![(room.clone(), 3)]);
    assert!(rooms_of(&n1).is_empty() && rooms_of(&n2).is_empty());
    // The room list on another node shows it (from the room's announcement).
    listed(&mut bob, &[&format!("jid='{room}'")]);

    // A groupchat message reaches all three; a private message crosses nodes.
    groupchat(&mut alice, &room, "g1", "hello all");
    for c in [&mut alice, &mut bob, &mut carol] {
        let m = expect_groupchat(c, "g1");
        assert_eq!(m.from().as_deref(), Some(format!("{room}/alice").as_str()));
    }
    bob.send(&format!(
        "<message type='chat' to='{room}/carol'><body>psst</body></message>"
    ));
    let m = expect_body(&mut carol, "psst");
    assert_eq!(m.from().as_deref(), Some(format!("{room}/bob").as_str()));
    carol.send(&format!(
        "<message type='chat' to='{room}/alice'><body>back</body></message>"
    ));
    let m = expect_body(&mut alice, "back");
    assert_eq!(m.from().as_deref(), Some(format!("{room}/carol").as_str()));

    // The room's node dies: the occupants on the live nodes are told by their own node
    // (unavailable self-presence, status 332).
    n3.server.kill9();
    drop(carol);
    for (c, nick) in [(&mut alice, "alice"), (&mut bob, "bob")] {
        let p = expect_occupant(c, &format!("{room}/{nick}"), true);
        assert!(has_status(&p, "332"), "{}", text(&p));
    }
    // A temporary room is gone with its node: joining creates it again (on n1 or n2).
    wait_until("n1 declares n3 dead", || member(&n1, "n3").is_none());
    wait_until("n2 declares n3 dead", || member(&n2, "n3").is_none());
    create(&mut bob, &room, "bob", "");
    let seen = join(&mut alice, &room, "alice", "");
    assert!(saw(&seen, &room, "bob"), "{seen:?}");
    let homes = [rooms_of(&n1), rooms_of(&n2)];
    assert_eq!(
        homes.iter().filter(|r| **r == [(room.clone(), 2)]).count(),
        1,
        "{homes:?}"
    );

    // n3 comes back (its rendezvous node again): it learns the room lives elsewhere, and carol,
    // on n3, joins that room rather than a copy.
    n3.server.spawn(2);
    wait_until("n3 sees alice and bob", || {
        member(&n3, "n1") == Some((1, 1)) && member(&n3, "n2") == Some((1, 1))
    });
    let mut carol = n3.server.login("carol", "c", Some(0));
    wait_until("n1 and n2 see carol", || {
        member(&n1, "n3") == Some((1, 1)) && member(&n2, "n3") == Some((1, 1))
    });
    let seen = join(&mut carol, &room, "carol", "");
    assert!(!seen.iter().any(|s| has_status(s, "201")), "{seen:?}");
    assert!(
        saw(&seen, &room, "alice") && saw(&seen, &room, "bob"),
        "{seen:?}"
    );
    assert!(rooms_of(&n3).is_empty());
    groupchat(&mut carol, &room, "g2", "I am back");
    for c in [&mut alice, &mut bob, &mut carol] {
        expect_groupchat(c, "g2");
    }

    // n3 dies again, now an occupant's node: carol leaves the room (on n1 or n2), the others see
    // her go.
    n3.server.kill9();
    drop(carol);
    for c in [&mut alice, &mut bob] {
        expect_occupant(c, &format!("{room}/carol"), true);
    }
}

/// How many messages `room`'s archive gives `c`.
fn archived(c: &mut Client, room: &str) -> usize {
    c.send(&format!(
        "<iq type='set' id='mq' to='{room}'><query xmlns='urn:xmpp:mam:2' queryid='cq'/></iq>"
    ));
    let mut n = 0;
    loop {
        let s = c.next_stanza();
        if s.id().as_deref() == Some("mq") {
            return n;
        }
        if s.name() == "message" && text(&s).contains("queryid='cq'") {
            n += 1;
        }
    }
}

#[test]
fn a_persistent_room_comes_back_on_another_node_from_the_shared_store() {
    let Some(db) = common::pg::TestDatabase::create() else {
        return;
    };
    let Some(nats) = Nats::start() else { return };
    let modules = format!(
        "{MUC}[modules.mam]\n[store]\nbackend = \"postgres\"\nurl = {:?}\npool_size = 2\n",
        db.url
    );
    let [n1, n2, n3] = three_nodes(&nats, &modules, true);
    let room = room_homed_on("n2", "kept");
    let mut alice = n1.server.login("alice", "a", Some(0));
    let mut carol = n3.server.login("carol", "c", Some(0));
    sessions_known(&[&n1, &n3], &["n1", "n3"]);
    create(&mut alice, &room, "owner", &kept_room_fields());
    join(&mut carol, &room, "carol", "");
    assert_eq!(rooms_of(&n2), vec![(room.clone(), 2)]);
    listed(&mut alice, &[&format!("jid='{room}'"), "name='Kept Room'"]);
    for j in 0..2 {
        groupchat(
            &mut alice,
            &room,
            &format!("h{j}"),
            &format!("before the death {j}"),
        );
        expect_groupchat(&mut alice, &format!("h{j}"));
    }
    // In the shared archive before the node dies (rows are written in batches).
    let deadline = Instant::now() + Duration::from_secs(30);
    while archived(&mut alice, &room) < 2 {
        assert!(Instant::now() < deadline, "the archive never had both");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Its node dies: the occupants are told; the room is loaded from the shared store by its new
    // node (rendezvous among n1 and n3) on the next stanza, with its configuration.
    let mut n2 = n2;
    n2.server.kill9();
    for (c, nick) in [(&mut alice, "owner"), (&mut carol, "carol")] {
        let p = expect_occupant(c, &format!("{room}/{nick}"), true);
        assert!(has_status(&p, "332"), "{}", text(&p));
    }
    wait_until("n1 declares n2 dead", || member(&n1, "n2").is_none());
    wait_until("n3 declares n2 dead", || member(&n3, "n2").is_none());
    carol.send(&format!("<iq type='get' id='d' to='{room}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"));
    let r = carol.expect("disco", |s| s.id().as_deref() == Some("d"));
    assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
    assert!(text(&r).contains("Kept Room"), "{}", text(&r));
    assert!(text(&r).contains("muc_persistent"), "{}", text(&r));
    let seen = join(&mut carol, &room, "carol", "");
    assert!(!seen.iter().any(|s| has_status(s, "201")), "{seen:?}");
    // Its history comes back from the archive, up to the subject.
    let mut history = Vec::new();
    loop {
        let s = carol.next_stanza();
        if s.name() != "message" {
            continue;
        }
        if text(&s).contains("<subject") {
            break;
        }
        history.extend(body(&s));
    }
    assert_eq!(history, ["before the death 0", "before the death 1"]);
    // The owner is still the owner, from the other live node: it reads the configuration form.
    alice.send(&format!("<iq type='get' id='f' to='{room}'><query xmlns='http://jabber.org/protocol/muc#owner'/></iq>"));
    let r = alice.expect("form", |s| s.id().as_deref() == Some("f"));
    assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
    let homes = [rooms_of(&n1), rooms_of(&n3)];
    assert_eq!(
        homes.iter().filter(|r| **r == [(room.clone(), 1)]).count(),
        1,
        "{homes:?}"
    );
}

const PUBSUB: &str = "pubsub.localhost";

/// A pubsub node name whose rendezvous node among n1, n2 and n3 is `node`.
fn pubsub_node_homed_on(node: &str, prefix: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|n| {
            let key = format!("{n}@{PUBSUB}");
            petrel::cluster::objects::rendezvous(&key, ["n1", "n2", "n3"]) == Some(node)
        })
        .expect("some name hashes to each node")
}

/// Sends a pubsub IQ (`body` inside `<pubsub>`) and returns its answer, which must be a result.
fn pubsub_ok(c: &mut Client, id: &str, ty: &str, body: &str) -> petrel::xml::Stanza {
    c.send(&format!(
        "<iq type='{ty}' id='{id}' to='{PUBSUB}'><pubsub xmlns='http://jabber.org/protocol/pubsub'>{body}</pubsub></iq>"
    ));
    let r = c.expect(id, |s| s.id().as_deref() == Some(id));
    assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(&r));
    r
}

/// Waits for the notification of item `item` of `node`.
fn expect_item(c: &mut Client, node: &str, item: &str) {
    c.expect(&format!("notification of {item}"), |s| {
        let t = text(s);
        s.name() == "message"
            && s.from().as_deref() == Some(PUBSUB)
            && t.contains(&format!("node='{node}'"))
            && t.contains(&format!("id='{item}'"))
    });
}

/// Alice (n1) makes `node` (on its rendezvous node), bob (n2) subscribes, alice publishes `item`:
/// bob is notified.
fn pubsub_across(alice: &mut Client, bob: &mut Client, node: &str, item: &str) {
    pubsub_ok(alice, "c1", "set", &format!("<create node='{node}'/>"));
    pubsub_ok(
        bob,
        "s1",
        "set",
        &format!("<subscribe node='{node}' jid='bob@localhost/b'/>"),
    );
    let entry = format!("<item id='{item}'><entry xmlns='urn:x'>news</entry></item>");
    pubsub_ok(
        alice,
        "p1",
        "set",
        &format!("<publish node='{node}'>{entry}</publish>"),
    );
    expect_item(bob, node, item);
}

#[test]
fn one_pubsub_node_across_nodes() {
    let Some(nats) = Nats::start() else { return };
    let [n1, n2, n3] = three_nodes(&nats, "[modules.presence]\n[modules.pubsub]\n", false);
    let node = pubsub_node_homed_on("n3", "news");
    let mut alice = n1.server.login("alice", "a", Some(0));
    let mut bob = n2.server.login("bob", "b", Some(0));
    let mut carol = n3.server.login("carol", "c", Some(0));
    sessions_known(&[&n1, &n2, &n3], &["n1", "n2", "n3"]);
    // Made, subscribed to and published to from three nodes: one node (bob's subscription and
    // alice's publication met), whose items carol reads from a third.
    pubsub_across(&mut alice, &mut bob, &node, "i1");
    let r = pubsub_ok(&mut carol, "g1", "get", &format!("<items node='{node}'/>"));
    assert!(text(&r).contains("id='i1'"), "{}", text(&r));
    // A second create from another node finds it exists.
    carol.send(&format!("<iq type='set' id='c2' to='{PUBSUB}'><pubsub xmlns='http://jabber.org/protocol/pubsub'><create node='{node}'/></pubsub></iq>"));
    let r = carol.expect("create refused", |s| s.id().as_deref() == Some("c2"));
    assert_eq!(
        error_condition(&r).as_deref(),
        Some("conflict"),
        "{}",
        text(&r)
    );
}

#[test]
fn a_pubsub_node_comes_back_on_another_node_from_the_shared_store() {
    let Some(db) = common::pg::TestDatabase::create() else {
        return;
    };
    let Some(nats) = Nats::start() else { return };
    let modules = format!(
        "[modules.presence]\n[modules.pubsub]\n[store]\nbackend = \"postgres\"\nurl = {:?}\npool_size = 2\n",
        db.url
    );
    let [n1, n2, mut n3] = three_nodes(&nats, &modules, true);
    let node = pubsub_node_homed_on("n3", "kept");
    let mut alice = n1.server.login("alice", "a", Some(0));
    let mut bob = n2.server.login("bob", "b", Some(0));
    sessions_known(&[&n1, &n2], &["n1", "n2"]);
    pubsub_across(&mut alice, &mut bob, &node, "i1");
    // The item is written after the publish is answered: the test waits for the row.
    let store = petrel::store::Store::connect(&db.backend()).unwrap();
    wait_until("the item stored", || {
        store
            .pubsub_load_node(PUBSUB, &node)
            .unwrap()
            .is_some_and(|n| n.items.len() == 1)
    });
    // Its node dies: the next request loads it (its item, subscriptions) on a live node.
    n3.server.kill9();
    wait_until("n1 declares n3 dead", || member(&n1, "n3").is_none());
    wait_until("n2 declares n3 dead", || member(&n2, "n3").is_none());
    let r = pubsub_ok(&mut bob, "g1", "get", &format!("<items node='{node}'/>"));
    assert!(text(&r).contains("id='i1'"), "{}", text(&r));
    let entry = "<item id='i2'><entry xmlns='urn:x'>more</entry></item>";
    pubsub_ok(
        &mut alice,
        "p2",
        "set",
        &format!("<publish node='{node}'>{entry}</publish>"),
    );
    expect_item(&mut bob, &node, "i2");
}
