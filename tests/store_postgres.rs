//! The real server on PostgreSQL (`[store] backend = "postgres"`), in a database of its own on the
//! server `PETREL_TEST_PG` names: accounts added by `petrel user add`, a login, an offline message
//! stored while Bob is away and delivered after a restart, and no SQLite file written. Skipped with
//! a note when `PETREL_TEST_PG` is unset (an error under CI, whose script always sets it).

mod common;

use std::time::{Duration, Instant};

use common::pg::TestDatabase;
use common::{body, Server};
use petrel::jid::BareJid;
use petrel::store::{Store, DB_FILE};

#[test]
fn login_and_offline_message_on_postgres() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let extra = format!(
        "[modules.offline]\n[store]\nbackend = \"postgres\"\nurl = {:?}\npool_size = 3\n",
        db.url
    );
    let mut server = Server::start_config(1, &["alice", "bob"], |port, data| {
        Server::config_text(port, data, "", &extra)
    });
    // `petrel user add` wrote the accounts to PostgreSQL.
    let store = Store::connect(&db.backend()).unwrap();
    let listed: Vec<String> = store
        .list_users(Some("localhost"))
        .unwrap()
        .iter()
        .map(|j| j.to_string())
        .collect();
    assert_eq!(listed, ["alice@localhost", "bob@localhost"]);

    let mut alice = server.login("alice", "a", Some(0));
    alice.chat("bob@localhost", "while you were away");
    let bob_jid = BareJid::parse("bob@localhost").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.offline_count(&bob_jid).unwrap() != 1 {
        assert!(
            Instant::now() < deadline,
            "the offline message was not stored"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(alice);

    // Across a restart, from PostgreSQL.
    server.stop();
    server.spawn(1);
    let mut bob = server.login("bob", "b", Some(0));
    let m = bob.expect("offline message", |s| {
        s.name() == "message" && body(s).is_some()
    });
    assert_eq!(body(&m).as_deref(), Some("while you were away"));
    assert_eq!(m.from().as_deref(), Some("alice@localhost/a"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.offline_count(&bob_jid).unwrap() != 0 {
        assert!(
            Instant::now() < deadline,
            "the delivered message was not deleted"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Nothing went to the embedded store.
    assert!(!server.data_dir().join(DB_FILE).exists());
}

/// Runs without a PostgreSQL server: one that cannot be reached stops the start, with the reason.
#[test]
fn unreachable_postgres_fails_start_and_user_commands() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("petrel.toml");
    let missing = dir.path().join("no-server-here");
    let extra = format!(
        "[store]\nbackend = \"postgres\"\nurl = \"host={} user=petrel dbname=petrel\"\n",
        missing.display()
    );
    std::fs::write(
        &config,
        Server::config_text(common::free_port(), &dir.path().join("data"), "", &extra),
    )
    .unwrap();
    for args in [
        &["serve", "--allow-oversubscribe", "--shards", "1"][..],
        &["user", "list"][..],
    ] {
        let out = common::petrel()
            .args(args)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr.contains("postgres"), "{args:?}: {stderr}");
    }
    assert!(!dir.path().join("data").join(DB_FILE).exists());
}

/// A database that stops answering (here: a lock another client holds on the accounts) does not
/// leave a login waiting: after `store.query_timeout_ms` the statement is cancelled and the client
/// told `temporary-auth-failure`; once the lock is gone, logins go through again.
#[test]
fn a_login_waiting_on_a_locked_table_is_told_and_the_server_goes_on() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let extra = format!(
        "[store]\nbackend = \"postgres\"\nurl = {:?}\nquery_timeout_ms = 500\n",
        db.url
    );
    let server = Server::start_config(1, &["alice"], |port, data| {
        Server::config_text(port, data, "", &extra)
    });
    let config: postgres::Config = db.url.parse().unwrap();
    let mut holder = config.connect(postgres::NoTls).unwrap();
    let mut tx = holder.transaction().unwrap();
    tx.batch_execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .unwrap();

    let mut c = server.connect();
    c.open("localhost");
    let features = c.next_stanza();
    assert_eq!(features.name(), "stream:features");
    use base64::Engine;
    let token =
        base64::engine::general_purpose::STANDARD.encode(format!("\0alice\0{}", common::PASSWORD));
    c.send(&format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>"
    ));
    let r = c.next_stanza();
    let text = String::from_utf8_lossy(r.bytes()).into_owned();
    assert!(
        r.name() == "failure" && text.contains("<temporary-auth-failure"),
        "{text}"
    );

    tx.rollback().unwrap();
    let mut alice = server.login("alice", "a", Some(0));
    alice.sync();
}
