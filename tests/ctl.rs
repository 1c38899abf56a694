//! `petrel ctl` against a running server: the URL and token come from its configuration file.

mod common;

use common::admin::{start, TOKEN};

/// Runs `petrel --config CONFIG ctl args...`; (success, stdout, stderr).
fn ctl(server: &common::Server, args: &[&str]) -> (bool, String, String) {
    ctl_stdin(server, args, "")
}

/// [`ctl`] with `stdin` (through a file) as standard input.
fn ctl_stdin(server: &common::Server, args: &[&str], stdin: &str) -> (bool, String, String) {
    let input = server.dir.path().join("ctl-stdin");
    std::fs::write(&input, stdin).unwrap();
    let out = common::petrel()
        .arg("--config")
        .arg(&server.config)
        .arg("ctl")
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(std::fs::File::open(&input).unwrap())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn ctl_commands_against_a_running_server() {
    let (server, _http) = start(2, &["alice"], true, "");

    let (ok, out, err) = ctl(&server, &["user", "add", "bob@localhost", "pw-bob"]);
    assert!(ok, "{err}");
    assert_eq!(out, "ok: bob@localhost\n");
    let (ok, _, err) = ctl(&server, &["user", "add", "bob@localhost", "pw-bob"]);
    assert!(!ok);
    assert!(err.contains("409") && err.contains("exists"), "{err}");
    let (ok, out, _) = ctl(&server, &["user", "list"]);
    assert!(ok);
    assert_eq!(out, "alice@localhost\nbob@localhost\n");
    let (ok, _, err) = ctl_stdin(
        &server,
        &["user", "passwd", "bob@localhost", "-"],
        "pw-new\n",
    );
    assert!(ok, "{err}");

    let (ok, _, err) = ctl(&server, &["domain", "add", "ctl.test"]);
    assert!(ok, "{err}");
    let (ok, out, _) = ctl(&server, &["domain", "list"]);
    assert!(ok);
    assert!(out.starts_with("DOMAIN"), "{out}");
    assert!(out.contains("ctl.test      run-time"), "{out}");

    let mut bob = server.connect();
    bob.login_plain("bob", "localhost", "pw-new", "laptop");
    let (ok, out, _) = ctl(&server, &["sessions"]);
    assert!(ok);
    assert!(
        out.contains("bob@localhost/laptop") && out.contains("tcp"),
        "{out}"
    );
    let (ok, json, _) = ctl(&server, &["--json", "sessions"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["sessions"][0]["jid"], "bob@localhost/laptop");

    let (ok, _, err) = ctl(
        &server,
        &[
            "send",
            "localhost",
            "bob@localhost/laptop",
            "hello from ctl",
        ],
    );
    assert!(ok, "{err}");
    let m = bob.expect("ctl message", |s| s.name() == "message");
    assert_eq!(common::body(&m).as_deref(), Some("hello from ctl"));
    let (ok, _, err) = ctl(
        &server,
        &[
            "stanza",
            "alice@localhost",
            "<message to='bob@localhost/laptop' id='c1'><body>xml</body></message>",
        ],
    );
    assert!(ok, "{err}");
    let m = bob.expect("ctl stanza", |s| s.id().as_deref() == Some("c1"));
    assert_eq!(m.from().as_deref(), Some("alice@localhost"));

    let (ok, out, _) = ctl(&server, &["stats"]);
    assert!(ok);
    assert!(
        out.contains("shards       2") && out.contains("sessions     1"),
        "{out}"
    );
    let (ok, out, _) = ctl(&server, &["rooms"]);
    assert!(ok);
    assert!(out.contains("MUC is not enabled"), "{out}");

    let (ok, out, err) = ctl(&server, &["kick", "bob@localhost/laptop"]);
    assert!(ok, "{err}");
    assert_eq!(out, "1 session(s) closed\n");
    assert!(bob.read_to_close().contains("kicked by administrator"));
    let (ok, _, err) = ctl(&server, &["kick", "bob@localhost/laptop"]);
    assert!(!ok && err.contains("404"), "{err}");

    let (ok, _, err) = ctl(&server, &["user", "del", "bob@localhost"]);
    assert!(ok, "{err}");
    let (ok, _, err) = ctl(&server, &["domain", "del", "ctl.test"]);
    assert!(ok, "{err}");

    // A wrong token is refused; --token overrides the file's.
    let (ok, _, err) = ctl(&server, &["--token", "wrong-token-wrong-token", "stats"]);
    assert!(!ok && err.contains("401"), "{err}");
    let (ok, _, err) = ctl(&server, &["--token", TOKEN, "user", "list"]);
    assert!(ok, "{err}");
}

#[test]
fn ctl_without_an_api_listener_says_so() {
    let server = common::Server::start(1, &[]);
    let (ok, _, err) = ctl(&server, &["stats"]);
    assert!(!ok);
    assert!(err.contains("no --url given"), "{err}");
}

#[test]
fn ctl_route_explain_prints_the_steps() {
    let (server, _http) = start(2, &["alice", "bob"], true, "");
    let mut bob = server.login("bob", "phone", Some(0));
    let (ok, out, err) = ctl(
        &server,
        &[
            "route",
            "explain",
            "alice@localhost",
            "<message to='bob@localhost/phone' type='chat'><body>via ctl</body></message>",
        ],
    );
    assert!(ok, "{err}");
    bob.expect("the message", |s| {
        s.name() == "message" && String::from_utf8_lossy(s.bytes()).contains("via ctl")
    });
    for step in [
        "user_send_packet",
        "user_send_message",
        "user_receive_packet",
        "bob@localhost/phone",
    ] {
        assert!(out.contains(step), "no {step} in:\n{out}");
    }
    let (ok, out, _) = ctl(
        &server,
        &[
            "--json",
            "route",
            "explain",
            "alice@localhost",
            "<message to='bob@localhost'/>",
        ],
    );
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        v["paths"].as_array().is_some_and(|p| !p.is_empty()),
        "{out}"
    );
}
