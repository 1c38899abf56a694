//! Runs the built `petrel` binary on temporary configurations.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use petrel::config::Config;
use petrel::jid::BareJid;
use petrel::store::{Backend, Store};

const BIN: &str = env!("CARGO_BIN_EXE_petrel");

/// A temporary directory with a config whose data_dir is inside it.
struct Env {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("petrel.toml");
        let data = dir.path().join("data");
        std::fs::write(
            &config,
            format!(
                "[general]\nhosts = [\"localhost\", \"chat.example\"]\ndata_dir = {:?}\n\
                 loglevel = \"warn\"\n[auth]\nscram_iterations = 4096\n[[listen.c2s]]\nport = 5222\n",
                data.to_str().unwrap()
            ),
        )
        .unwrap();
        Env { dir, config }
    }

    /// Runs `petrel --config CONFIG args...` with `stdin` as standard input.
    fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new(BIN)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, "")
    }

    /// Runs and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?} failed: {}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Whether the stored secrets of `jid` accept `password`.
    fn password_is(&self, jid: &str, password: &str) -> bool {
        let store = Store::open(&self.dir.path().join("data")).unwrap();
        let secrets = store
            .get_secrets(&BareJid::parse(jid).unwrap())
            .unwrap()
            .expect("user exists");
        secrets.verify_plain(password)
    }

    fn users(&self, domain: Option<&str>) -> Vec<String> {
        let mut args = vec!["user", "list"];
        args.extend(domain);
        let mut users: Vec<String> = self.ok(&args).lines().map(str::to_owned).collect();
        users.sort();
        users
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts a clean failure: exit code 1 and exactly one line on stderr, containing `needle`.
fn assert_fails_with(out: &Output, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line expected: {err}");
    assert!(err.contains(needle), "{needle:?} not in {err:?}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn check_config_prints_effective_config() {
    let env = Env::new();
    let text = env.ok(&["check-config"]);
    let printed = Config::parse(&text, Path::new("stdout")).unwrap();
    let original = Config::load(&env.config).unwrap();
    assert_eq!(printed.general, original.general);
    assert_eq!(printed.listen, original.listen);
    assert!(
        text.contains("idle_timeout = 600"),
        "defaults filled in: {text}"
    );
}

#[test]
fn check_config_reports_file_line_and_column() {
    let env = Env::new();
    let mut text = std::fs::read_to_string(&env.config).unwrap();
    text.push_str("max_depth = 0\n");
    std::fs::write(&env.config, text).unwrap();
    let out = env.run(&["check-config"]);
    assert_fails_with(
        &out,
        &format!(
            "{}:9:13: listen.c2s.max_depth = 0 is too small",
            env.config.display()
        ),
    );
    assert!(out.stdout.is_empty());

    std::fs::write(&env.config, "[general]\nhosts = [\"a\"]\nfoo = 1\n").unwrap();
    let out = env.run(&["check-config"]);
    assert_fails_with(
        &out,
        &format!("{}:3:1: unknown field `foo`", env.config.display()),
    );

    // A misspelt module would silently stay off.
    std::fs::write(
        &env.config,
        "[general]\nhosts = [\"a\"]\n[[listen.c2s]]\nport = 5222\n[modules.ping]\n[modules.stream_managment]\n",
    )
    .unwrap();
    let out = env.run(&["check-config"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let want = format!(
        "petrel: {}:6:10: [modules.stream_managment]: no such module",
        env.config.display()
    );
    assert!(stderr.lines().any(|l| l.starts_with(&want)), "{stderr}");
}

#[test]
fn missing_explicit_config_is_an_error() {
    let env = Env::new();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(env.dir.path().join("absent.toml"))
        .output()
        .unwrap();
    assert_fails_with(&out, "absent.toml: cannot read configuration");
}

#[test]
fn without_config_uses_local_file_or_embedded_default() {
    let dir = tempfile::tempdir().unwrap();
    let run = || {
        Command::new(BIN)
            .arg("check-config")
            .current_dir(dir.path())
            .env("RUST_LOG", "info")
            .output()
            .unwrap()
    };
    let out = run();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("built-in default"),
        "{}",
        stderr(&out)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("<embedded petrel.toml>"), "{stdout}");
    assert!(stdout.contains("hosts = [\"localhost\"]"), "{stdout}");

    std::fs::write(
        dir.path().join("petrel.toml"),
        "[general]\nhosts = [\"here.example\"]\n[[listen.c2s]]\nport = 5333\n",
    )
    .unwrap();
    let out = run();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("hosts = [\"here.example\"]"), "{stdout}");
    assert!(stdout.contains("port = 5333"), "{stdout}");
}

#[test]
fn usage_errors_exit_with_2() {
    let out = Command::new(BIN)
        .args(["serve", "--shards", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(BIN).arg("nonsense").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn user_add_list_passwd_del_round_trip() {
    let env = Env::new();
    assert!(env.users(None).is_empty());

    env.ok(&["user", "add", "alice@localhost", "wonderland"]);
    let out = env.run_with_stdin(&["user", "add", "Bob@Chat.Example", "-"], "builder\n");
    assert!(out.status.success(), "{}", stderr(&out));
    env.ok(&["user", "add", "carol@chat.example", "x"]);

    assert_eq!(
        env.users(None),
        ["alice@localhost", "bob@chat.example", "carol@chat.example"]
    );
    assert_eq!(
        env.users(Some("chat.example")),
        ["bob@chat.example", "carol@chat.example"]
    );
    assert_eq!(env.users(Some("localhost")), ["alice@localhost"]);

    assert!(env.password_is("alice@localhost", "wonderland"));
    assert!(
        env.password_is("bob@chat.example", "builder"),
        "stdin line, newline stripped"
    );
    assert!(!env.password_is("bob@chat.example", "builder\n"));

    env.ok(&["user", "passwd", "alice@localhost", "new password"]);
    let out = env.run_with_stdin(&["user", "passwd", "bob@chat.example", "-"], "again\n");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(env.password_is("alice@localhost", "new password"));
    assert!(!env.password_is("alice@localhost", "wonderland"));
    assert!(env.password_is("bob@chat.example", "again"));

    assert_fails_with(
        &env.run(&["user", "add", "alice@localhost", "dup"]),
        "user exists",
    );
    assert_fails_with(
        &env.run(&["user", "passwd", "nobody@localhost", "pw"]),
        "no such user",
    );

    env.ok(&["user", "del", "carol@chat.example"]);
    assert_eq!(env.users(None), ["alice@localhost", "bob@chat.example"]);
    env.ok(&["user", "del", "alice@localhost"]);
    assert_eq!(env.users(None), ["bob@chat.example"]);
    assert_fails_with(
        &env.run(&["user", "del", "alice@localhost"]),
        "no such user",
    );
    assert_fails_with(&env.run(&["user", "list", "bad..domain"]), "invalid domain");
}

#[test]
fn bad_jids_are_refused_with_exit_code_1() {
    let env = Env::new();
    assert_fails_with(
        &env.run(&["user", "add", "alice@localhost/phone", "pw"]),
        "alice@localhost/phone",
    );
    assert_fails_with(
        &env.run(&["user", "add", "alice@elsewhere.example", "pw"]),
        "domain `elsewhere.example` is not served here",
    );
    assert_fails_with(
        &env.run(&["user", "add", "a b@localhost", "pw"]),
        "invalid JID",
    );
    assert_fails_with(
        &env.run(&["user", "add", "localhost", "pw"]),
        "no localpart",
    );
    assert_fails_with(
        &env.run_with_stdin(&["user", "add", "dave@localhost", "-"], ""),
        "password must not be empty",
    );
    assert!(env.users(None).is_empty(), "nothing was created");
}

#[test]
fn mam_purge_removes_messages_before_the_date() {
    let env = Env::new();
    let data = env.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    mam_purge(&env, &Backend::Sqlite(data));
}

#[test]
fn mam_purge_removes_messages_before_the_date_on_postgresql() {
    let Some(db) = common::pg::TestDatabase::create() else {
        return;
    };
    let env = Env::new();
    let mut config = std::fs::read_to_string(&env.config).unwrap();
    config += &format!("[store]\nbackend = \"postgres\"\nurl = {:?}\n", db.url);
    std::fs::write(&env.config, config).unwrap();
    mam_purge(&env, &db.backend());
    assert!(
        !env.dir.path().join("data/petrel.sqlite3").exists(),
        "no SQLite file beside PostgreSQL"
    );
}

fn mam_purge(env: &Env, backend: &Backend) {
    let store = Store::connect(backend).unwrap();
    let day = 86_400_000_000_i64;
    let rows: Vec<_> = [1_i64, 2, 10]
        .iter()
        .map(|d| petrel::store::ArchivedMessage {
            owner: "a@localhost".into(),
            id: d << 40,
            with_bare: "b@localhost".into(),
            with_res: String::new(),
            outgoing: true,
            ts: d * day,
            stanza: b"<message/>".to_vec(),
            keep: petrel::store::Keep::Always,
        })
        .collect();
    store.mam_append(&rows).unwrap();
    drop(store);
    let out = env.ok(&["mam", "purge", "--before", "1970-01-05"]);
    assert!(out.contains("2 archived messages"), "{out}");
    let store = Store::connect(backend).unwrap();
    let left = store
        .mam_count("a@localhost", &petrel::store::MamFilter::default())
        .unwrap();
    assert_eq!(left, 1);
    assert_fails_with(
        &env.run(&["mam", "purge", "--before", "soon"]),
        "invalid date",
    );
}

#[test]
fn postgresql_errors_name_their_cause() {
    let env = Env::new();
    let base = std::fs::read_to_string(&env.config).unwrap();
    let with_url = |url: &str| {
        let config = format!("{base}[store]\nbackend = \"postgres\"\nurl = {url:?}\n");
        std::fs::write(&env.config, config).unwrap();
    };
    // Nothing listens on port 1: the socket's error, not only "error connecting to server".
    with_url("host=127.0.0.1 port=1 user=petrel dbname=petrel connect_timeout=5");
    assert_fails_with(&env.run(&["user", "list"]), "Connection refused");
    // The server's own message for a database that is not there.
    if let Ok(url) = std::env::var("PETREL_TEST_PG") {
        let mut admin: postgres::Config = url.parse().unwrap();
        admin.dbname("petrel_no_such_database");
        let host = match &admin.get_hosts()[0] {
            postgres::config::Host::Unix(p) => p.to_string_lossy().into_owned(),
            postgres::config::Host::Tcp(h) => h.clone(),
        };
        let user = admin.get_user().unwrap_or("postgres").to_owned();
        with_url(&format!(
            "host={host} user={user} dbname=petrel_no_such_database"
        ));
        assert_fails_with(
            &env.run(&["user", "list"]),
            "database \"petrel_no_such_database\" does not exist",
        );
    }
}

/// `petrel user del` on a stopped server cancels the account's subscriptions with the contacts it
/// serves (RFC 6121 §2.5.2, as the running server does): the next account of that name inherits
/// none.
#[test]
fn user_del_cancels_the_subscriptions_of_local_contacts() {
    use petrel::store::RosterWrite;
    use petrel::xmpp::roster::{RosterItem, SubState};
    let env = Env::new();
    env.ok(&["user", "add", "alice@localhost", "wonderland"]);
    env.ok(&["user", "add", "carol@localhost", "x"]);
    let data = env.dir.path().join("data");
    let store = Store::open(&data).unwrap();
    let (alice, carol) = (
        BareJid::parse("alice@localhost").unwrap(),
        BareJid::parse("carol@localhost").unwrap(),
    );
    let both = SubState {
        to: true,
        from: true,
        ..SubState::default()
    };
    for (user, contact) in [(&alice, &carol), (&carol, &alice)] {
        store
            .roster_change(user, contact, |_, _| {
                let mut item = RosterItem::new(contact.clone());
                item.state = both;
                (RosterWrite::Put(item), ())
            })
            .unwrap();
    }
    drop(store);
    env.ok(&["user", "del", "carol@localhost"]);
    env.ok(&["user", "add", "carol@localhost", "someone else"]);
    let store = Store::open(&data).unwrap();
    let item = store
        .roster_item(&alice, &carol)
        .unwrap()
        .expect("the item stays");
    assert!(
        item.in_roster,
        "alice's item stays until she removes it (§2.5)"
    );
    assert_eq!(item.state.subscription(), "none");
    assert!(!item.state.pending_in && !item.state.pending_out);
    assert!(store.roster_items(&carol).unwrap().1.is_empty());
}

#[test]
fn the_data_directory_and_the_store_are_private() {
    // They hold every account's SCRAM secrets and the messages: no other local user reads them,
    // whatever the umask (the test runs under the usual 022).
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    env.ok(&["user", "add", "alice@localhost", "alice-pass"]);
    let data = env.dir.path().join("data");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    let mut checked = 0;
    for entry in std::fs::read_dir(&data).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("petrel.sqlite3") {
            assert_eq!(mode(&p), 0o600, "{name}");
            checked += 1;
        }
    }
    assert!(checked >= 1);
}

#[test]
fn check_config_checks_component_domains_without_touching_the_store() {
    // The check starts the modules to learn their service domains; it must neither create nor
    // migrate the configured store (a newer build checking a production configuration).
    let env = Env::new();
    let base = std::fs::read_to_string(&env.config).unwrap();
    // (caps: the stream features start the modules too.)
    let modules = "[modules.muc]\n[modules.blocking]\n[modules.caps]\n[modules.http_upload]\n\
                   base_url = \"http://localhost:5280/upload\"\n";
    let component = |domain: &str| {
        format!("[[listen.component]]\nport = 5347\n[components.\"{domain}\"]\npassword = \"s3cret-s3cret\"\n")
    };
    std::fs::write(
        &env.config,
        format!("{base}{modules}{}", component("echo.localhost")),
    )
    .unwrap();
    env.ok(&["check-config"]);
    assert!(
        !env.dir.path().join("data").exists(),
        "check-config created the data directory"
    );
    std::fs::write(
        &env.config,
        format!("{base}{modules}{}", component("conference.localhost")),
    )
    .unwrap();
    let out = env.run(&["check-config"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("must not be a module's service domain"),
        "{}",
        stderr(&out)
    );
    assert!(!env.dir.path().join("data").exists());
}

#[test]
fn check_config_refuses_missing_certificates_of_every_listener() {
    // `serve` would fail on them: so must the check (c2s, HTTP and s2s alike).
    let env = Env::new();
    let base = std::fs::read_to_string(&env.config).unwrap();
    let missing = env.dir.path().join("nonexistent.pem");
    let m = missing.display();
    for (extra, says) in [
        (
            format!("[[listen.http]]\nport = 5280\ntls = \"tls\"\ncertfile = \"{m}\"\nkeyfile = \"{m}\"\n"),
            "port 5280",
        ),
        (
            format!("[s2s]\ncertfile = \"{m}\"\nkeyfile = \"{m}\"\n"),
            "s2s",
        ),
    ] {
        std::fs::write(&env.config, format!("{base}{extra}")).unwrap();
        let out = env.run(&["check-config"]);
        assert!(!out.status.success(), "{extra}");
        let err = stderr(&out);
        assert!(err.contains(says) && err.contains("nonexistent.pem"), "{extra}: {err}");
    }
}
