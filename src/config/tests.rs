use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::Duration;

use super::*;

const MINIMAL: &str = "[general]\nhosts = [\"Example.ORG\"]\n[[listen.c2s]]\nport = 5222\n";

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("t.toml"))
}

/// Parses `text`, expecting an error; returns its location and rendered message.
fn parse_err(text: &str) -> (ConfigError, Location, String) {
    let err = parse(text).expect_err("config should be rejected");
    let at = err.location().expect("error has a location");
    let msg = err.to_string();
    (err, at, msg)
}

fn invalid_kind(err: ConfigError) -> InvalidValue {
    match err {
        ConfigError::Invalid { kind, .. } => kind,
        other => panic!("expected a validation error, got {other:?}"),
    }
}

#[test]
fn embedded_default_is_valid() {
    let c = Config::default_embedded();
    assert_eq!(c.general.hosts, vec![Domain::parse("localhost").unwrap()]);
    assert_eq!(c.listen.c2s.len(), 1);
    let l = &c.listen.c2s[0];
    assert_eq!(l.port, 5222);
    assert_eq!(l.tls, TlsMode::Starttls);
    assert!(l.allow_plaintext_on_loopback);
    assert_eq!(
        c.general.routing_modules,
        RoutingModule::DEFAULT_CHAIN.to_vec()
    );
    assert!(c.modules.contains_key("ping"));
    assert_eq!(c.source, Path::new(EMBEDDED_PATH));
}

#[test]
fn minimal_config_gets_defaults() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.general.hosts[0].as_str(), "example.org");
    assert_eq!(c.general.data_dir, Path::new("./data"));
    assert_eq!(c.general.loglevel, LogLevel::Info);
    assert_eq!(
        c.general.routing_modules,
        RoutingModule::DEFAULT_CHAIN.to_vec()
    );
    assert_eq!(c.auth.scram_iterations, 10_000);
    let l = &c.listen.c2s[0];
    assert_eq!(l.ip_address, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    assert_eq!(l.tls, TlsMode::Starttls);
    assert_eq!((l.certfile.as_ref(), l.keyfile.as_ref()), (None, None));
    assert!(!l.allow_plaintext_on_loopback);
    assert!(l.sasl2, "SASL2 and Bind 2 are offered unless switched off");
    let off = parse(&format!("{MINIMAL}sasl2 = false\n")).unwrap();
    assert!(!off.listen.c2s[0].sasl2);
    assert_eq!(l.max_stanza_size, 65_536);
    assert_eq!((l.max_depth, l.max_attrs), (32, 64));
    assert_eq!(l.outbound_queue_bytes, 262_144);
    assert_eq!(l.auth_timeout, Duration::from_secs(30));
    assert_eq!(l.idle_timeout, Duration::from_secs(600));
    assert_eq!(c.shards.count, validate::available_cpus());
    assert!(c.shards.count >= 1);
    assert_eq!(
        (
            c.shards.ring_capacity,
            c.shards.outbox_capacity,
            c.shards.io_memory_kib
        ),
        (1024, 8192, 64)
    );
    assert_eq!(
        c.shards.ring_depth, None,
        "by default the depth follows the memlock limit"
    );
    assert!(
        !c.shards.huge_pages,
        "transparent huge pages are off by default"
    );
    assert_eq!(c.shards.nap_us, 200, "shards nap 200 us by default");
    assert!(c.modules.is_empty());
}

#[test]
fn full_config_is_read() {
    let text = r#"
[general]
hosts = ["a.example", "b.example"]
data_dir = "/var/lib/petrel"
loglevel = "debug"
routing_modules = ["localdomain", "global"]
[auth]
scram_iterations = 4096
[[listen.c2s]]
port = 5223
ip_address = "::1"
tls = "tls"
certfile = "c.pem"
keyfile = "k.pem"
max_stanza_size = 4096
auth_timeout = 5
idle_timeout = 7
[shards]
count = 3
ring_capacity = 16
outbox_capacity = 32
io_memory_kib = 64
ring_depth = 256
nap_us = 0
huge_pages = true
[modules.ping]
interval = 60
[modules.disco]
"#;
    let c = parse(text).unwrap();
    assert_eq!(c.general.hosts.len(), 2);
    assert_eq!(c.general.data_dir, Path::new("/var/lib/petrel"));
    assert_eq!(c.general.loglevel, LogLevel::Debug);
    assert_eq!(
        c.general.routing_modules,
        vec![RoutingModule::Localdomain, RoutingModule::Global]
    );
    assert_eq!(c.auth.scram_iterations, 4096);
    let l = &c.listen.c2s[0];
    assert_eq!(l.ip_address, IpAddr::V6(Ipv6Addr::LOCALHOST));
    assert_eq!(l.tls, TlsMode::Tls);
    assert_eq!(l.certfile.as_deref(), Some(Path::new("c.pem")));
    assert_eq!(l.keyfile.as_deref(), Some(Path::new("k.pem")));
    assert_eq!(l.auth_timeout, Duration::from_secs(5));
    assert_eq!(l.idle_timeout, Duration::from_secs(7));
    assert_eq!(c.shards.count, 3);
    assert_eq!(c.shards.ring_depth, Some(256));
    assert_eq!(c.shards.nap_us, 0);
    assert!(c.shards.huge_pages);
    assert_eq!(c.modules["ping"]["interval"].as_integer(), Some(60));
    assert!(c.modules["disco"].is_empty());
    assert_eq!(
        c.module_location("disco"),
        Some(Location { line: 28, col: 10 })
    );
    assert_eq!(c.module_location("nope"), None);
}

#[test]
fn to_toml_round_trips() {
    for c in [
        Config::default_embedded(),
        parse(MINIMAL).unwrap(),
        parse(
            "[general]\nhosts=[\"x\"]\n[[listen.c2s]]\nport=1\ncertfile=\"a\"\nkeyfile=\"b\"\n\
             [[listen.c2s]]\nport=2\ntls=\"none\"\n[modules.m]\nk={a=1}\n",
        )
        .unwrap(),
    ] {
        let text = c.to_toml();
        let back = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(back.general, c.general);
        assert_eq!(back.auth, c.auth);
        assert_eq!(back.listen, c.listen);
        assert_eq!(back.shards, c.shards);
        assert_eq!(back.modules, c.modules);
    }
}

#[test]
fn syntax_error_has_line_and_column() {
    let (err, at, msg) = parse_err("[general]\nhosts = [\"a\" \"b\"]\n[[listen.c2s]]\nport = 1\n");
    assert!(matches!(err, ConfigError::Parse { .. }));
    assert_eq!(at, Location { line: 2, col: 14 }, "{msg}");
    assert!(msg.starts_with("t.toml:2:14: "), "{msg}");
    // One line, even when the parser's message has several.
    assert!(!msg.contains('\n'), "{msg}");
    let (_, at, msg) = parse_err("[general]\nhosts = [\"a\"\n");
    assert_eq!(at.line, 3, "end of input: {msg}");
}

#[test]
fn unknown_key_is_rejected_where_it_is() {
    let (err, at, msg) =
        parse_err("[general]\nhosts = [\"a\"]\n[[listen.c2s]]\nport = 1\nprot = 2\n");
    assert!(matches!(err, ConfigError::Parse { .. }));
    assert_eq!(at, Location { line: 5, col: 1 });
    assert!(msg.starts_with("t.toml:5:1: "), "{msg}");
    assert!(msg.contains("prot"), "{msg}");

    let (_, at, msg) = parse_err("[general]\nhosts = [\"a\"]\n[bogus]\n");
    assert_eq!(at.line, 3, "{msg}");
    assert!(msg.contains("bogus"), "{msg}");
}

#[test]
fn wrong_type_and_unknown_enum_values_are_located() {
    let (_, at, msg) =
        parse_err("[general]\nhosts = [\"a\"]\n[auth]\nscram_iterations = \"many\"\n");
    assert_eq!(at, Location { line: 4, col: 20 }, "{msg}");

    let (_, at, msg) =
        parse_err("[general]\nhosts = [\"a\"]\nrouting_modules = [\"global\", \"smtp\"]\n");
    assert_eq!(at, Location { line: 3, col: 30 }, "{msg}");
    assert!(msg.contains("smtp"), "{msg}");

    let (_, at, msg) = parse_err("[general]\nhosts = [\"a\"]\nloglevel = \"loud\"\n");
    assert_eq!(at, Location { line: 3, col: 12 }, "{msg}");

    let (_, at, msg) =
        parse_err("[general]\nhosts = [\"a\"]\n[[listen.c2s]]\nport = 1\ntls = \"ssl\"\n");
    assert_eq!(at, Location { line: 5, col: 7 }, "{msg}");

    let (_, at, msg) =
        parse_err("[general]\nhosts = [\"a\"]\n[[listen.c2s]]\nport = 1\nip_address = \"1.2.3\"\n");
    assert_eq!(at, Location { line: 5, col: 14 }, "{msg}");

    let (_, at, msg) = parse_err("[general]\nhosts = [\"a\"]\n[[listen.c2s]]\nport = 70000\n");
    assert_eq!(at, Location { line: 4, col: 8 }, "{msg}");
}

#[test]
fn missing_required_key_is_reported() {
    let (err, _, msg) = parse_err("[general]\ndata_dir = \"x\"\n");
    assert!(matches!(err, ConfigError::Parse { .. }));
    assert!(msg.contains("hosts"), "{msg}");
    let (_, _, msg) = parse_err("[general]\nhosts = [\"a\"]\n[[listen.c2s]]\ntls = \"none\"\n");
    assert!(msg.contains("port"), "{msg}");
}

#[test]
fn bad_hosts_are_rejected() {
    let (err, at, msg) = parse_err("[general]\nhosts = []\n");
    assert_eq!(invalid_kind(err), InvalidValue::NoHosts);
    assert_eq!(at, Location { line: 2, col: 9 }, "{msg}");

    let (err, at, msg) = parse_err("[general]\nhosts = [\"ok.example\", \"bad host\"]\n");
    assert_eq!(at, Location { line: 2, col: 24 }, "{msg}");
    assert!(
        msg.starts_with("t.toml:2:24: invalid host `bad host`"),
        "{msg}"
    );
    assert!(matches!(
        invalid_kind(err),
        InvalidValue::InvalidDomain {
            reason: DomainError::InvalidChar(' '),
            ..
        }
    ));

    let (err, at, _) = parse_err("[general]\nhosts = [\"a.b\",\n  \"A.B\"]\n");
    assert_eq!(invalid_kind(err), InvalidValue::DuplicateHost("a.b".into()));
    assert_eq!(at, Location { line: 3, col: 3 });
}

#[test]
fn bad_routing_modules_are_rejected() {
    let (err, at, _) = parse_err(
        "[general]\nhosts = [\"a\"]\nrouting_modules = [\"global\", \"s2s\", \"global\"]\n",
    );
    assert_eq!(
        invalid_kind(err),
        InvalidValue::DuplicateRoutingModule(RoutingModule::Global)
    );
    assert_eq!(at, Location { line: 3, col: 37 });

    let (err, at, _) = parse_err("[general]\nhosts = [\"a\"]\nrouting_modules = []\n");
    assert_eq!(invalid_kind(err), InvalidValue::NoRoutingModules);
    assert_eq!(at.line, 3);
}

#[test]
fn numeric_bounds_are_enforced() {
    let (err, at, msg) = parse_err("[general]\nhosts = [\"a\"]\n[auth]\nscram_iterations = 4095\n");
    assert_eq!(
        invalid_kind(err),
        InvalidValue::TooSmall {
            field: "auth.scram_iterations",
            value: 4095,
            min: 4096
        }
    );
    assert_eq!(at, Location { line: 4, col: 20 });
    assert!(
        msg.starts_with("t.toml:4:20: auth.scram_iterations = 4095 is too small"),
        "{msg}"
    );

    let base = "[general]\nhosts = [\"a\"]\n[[listen.c2s]]\nport = 1\n";
    for (line, field) in [
        ("max_stanza_size = 4095", "listen.c2s.max_stanza_size"),
        ("max_depth = 0", "listen.c2s.max_depth"),
        ("max_attrs = 0", "listen.c2s.max_attrs"),
        (
            "outbound_queue_bytes = 0",
            "listen.c2s.outbound_queue_bytes",
        ),
        ("auth_timeout = 0", "listen.c2s.auth_timeout"),
        ("idle_timeout = 0", "listen.c2s.idle_timeout"),
    ] {
        let (err, at, msg) = parse_err(&format!("{base}{line}\n"));
        assert!(
            matches!(invalid_kind(err), InvalidValue::TooSmall { field: f, .. } if f == field),
            "{msg}"
        );
        assert_eq!(at.line, 5, "{msg}");
    }
    let (err, at, _) = parse_err(&format!("{base}max_stanza_size = 1000000000\n"));
    assert!(matches!(invalid_kind(err), InvalidValue::TooLarge { .. }));
    assert_eq!(at, Location { line: 5, col: 19 });

    let (err, at, _) = parse_err("[general]\nhosts = [\"a\"]\n[[listen.c2s]]\nport = 0\n");
    assert!(matches!(
        invalid_kind(err),
        InvalidValue::TooSmall {
            field: "listen.c2s.port",
            ..
        }
    ));
    assert_eq!(at, Location { line: 4, col: 8 });

    for line in [
        "count = 0",
        "ring_capacity = 0",
        "outbox_capacity = 0",
        "io_memory_kib = 1",
    ] {
        let (err, at, msg) = parse_err(&format!("{MINIMAL}[shards]\n{line}\n"));
        assert!(
            matches!(invalid_kind(err), InvalidValue::TooSmall { .. }),
            "{msg}"
        );
        assert_eq!(at.line, 6, "{msg}");
    }
}

#[test]
fn cert_without_key_is_rejected() {
    let base = "[general]\nhosts = [\"a\"]\n[[listen.c2s]]\nport = 1\n";
    let (err, at, _) = parse_err(&format!("{base}certfile = \"c.pem\"\n"));
    assert_eq!(
        invalid_kind(err),
        InvalidValue::CertKeyPair { given: "certfile" }
    );
    assert_eq!(at, Location { line: 5, col: 12 });
    let (err, _, _) = parse_err(&format!("{base}keyfile = \"k.pem\"\n"));
    assert_eq!(
        invalid_kind(err),
        InvalidValue::CertKeyPair { given: "keyfile" }
    );
}

#[test]
fn listeners_must_not_collide() {
    let head = "[general]\nhosts = [\"a\"]\n";
    let (err, at, msg) = parse_err(&format!(
        "{head}[[listen.c2s]]\nport = 5222\n[[listen.c2s]]\nport = 5222\nip_address = \"127.0.0.1\"\n"
    ));
    assert_eq!(at, Location { line: 6, col: 8 });
    assert!(msg.contains("line 4"), "{msg}");
    assert!(matches!(
        invalid_kind(err),
        InvalidValue::DuplicateListener {
            port: 5222,
            other_line: 4,
            ..
        }
    ));

    // Same port on two distinct specific addresses, or different ports: fine.
    parse(&format!(
        "{head}[[listen.c2s]]\nport = 5222\nip_address = \"127.0.0.1\"\n\
         [[listen.c2s]]\nport = 5222\nip_address = \"127.0.0.2\"\n\
         [[listen.c2s]]\nport = 5223\n"
    ))
    .unwrap();
}

#[test]
fn no_listener_is_an_error() {
    let (err, at, msg) = parse_err("[general]\nhosts = [\"a\"]\n");
    assert_eq!(invalid_kind(err), InvalidValue::NoListeners);
    assert_eq!(at, Location::START);
    assert!(msg.starts_with("t.toml:1:1: "), "{msg}");
}

#[test]
fn load_reports_missing_file_and_errors_with_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.toml");
    let err = Config::load(&missing).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(err.to_string().contains("none.toml"));

    let file = dir.path().join("p.toml");
    std::fs::write(
        &file,
        "[general]\nhosts = [\"a\"]\n[[listen.c2s]]\nport = 1\nx = 1\n",
    )
    .unwrap();
    let msg = Config::load(&file).unwrap_err().to_string();
    assert!(
        msg.starts_with(&format!("{}:5:1: ", file.display())),
        "{msg}"
    );

    std::fs::write(&file, MINIMAL).unwrap();
    assert_eq!(Config::load(&file).unwrap().source, file);
}

#[test]
fn module_tables_must_be_tables() {
    let (err, at, msg) = parse_err(&format!("{MINIMAL}[modules]\nping = 3\n"));
    assert!(matches!(err, ConfigError::Parse { .. }), "{msg}");
    assert_eq!(at.line, 6, "{msg}");
}

#[test]
fn http_listeners() {
    let base = "[general]\nhosts = [\"a\"]\n[[listen.c2s]]\nport = 5222\n";
    let c = Config::parse(
        &format!("{base}[[listen.http]]\nport = 5280\n"),
        Path::new("t"),
    )
    .unwrap();
    let h = &c.listen.http[0];
    assert_eq!(h.handlers, HttpHandler::ALL.to_vec());
    assert_eq!(h.session.tls, TlsMode::None);
    assert_eq!(h.session.port, 5280);
    assert_eq!(
        (h.bosh_max_wait, h.bosh_inactivity),
        (Duration::from_secs(60), Duration::from_secs(30))
    );
    let c = Config::parse(
        &format!("{base}[[listen.http]]\nport = 5280\nbosh_max_wait = 20\nbosh_inactivity = 5\n"),
        Path::new("t"),
    )
    .unwrap();
    let h = &c.listen.http[0];
    assert_eq!(
        (h.bosh_max_wait, h.bosh_inactivity),
        (Duration::from_secs(20), Duration::from_secs(5))
    );
    let back = Config::parse(&c.to_toml(), Path::new("t")).unwrap();
    assert_eq!(back.listen, c.listen);
    let (_, _, msg) = parse_err(&format!(
        "{base}[[listen.http]]\nport = 5280\nbosh_inactivity = 0\n"
    ));
    assert!(msg.contains("listen.http.bosh_inactivity"), "{msg}");
    let c = Config::parse(
        &format!("{base}[[listen.http]]\nport = 5443\ntls = \"tls\"\nhandlers = [\"websocket\", \"metrics\"]\n"),
        Path::new("t"),
    )
    .unwrap();
    assert_eq!(c.listen.http[0].session.tls, TlsMode::Tls);
    assert_eq!(
        c.listen.http[0].handlers,
        vec![HttpHandler::Websocket, HttpHandler::Metrics]
    );
    // The effective configuration parses back to the same.
    let back = Config::parse(&c.to_toml(), Path::new("t")).unwrap();
    assert_eq!(back.listen, c.listen);
    let (_, _, msg) = parse_err(&format!(
        "{base}[[listen.http]]\nport = 5280\ntls = \"starttls\"\n"
    ));
    assert!(msg.contains("no STARTTLS"), "{msg}");
    let (_, _, msg) = parse_err(&format!("{base}[[listen.http]]\nport = 5222\n"));
    assert!(msg.contains("already used"), "{msg}");
    let (_, _, msg) = parse_err(&format!(
        "{base}[[listen.http]]\nport = 5280\nhandlers = [\"gopher\"]\n"
    ));
    assert!(msg.contains("gopher"), "{msg}");
    // An operations listener defaults to loopback; one that serves clients, to every address.
    let ops = |rest: &str| {
        let c = Config::parse(
            &format!("{base}[[listen.http]]\nport = 5281\n{rest}"),
            Path::new("t"),
        )
        .unwrap();
        c.listen.http[0].session.ip_address
    };
    let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    assert_eq!(ops("handlers = [\"metrics\", \"api\"]\n"), loopback);
    assert_eq!(ops("handlers = [\"api\"]\n"), loopback);
    assert_eq!(ops("handlers = [\"metrics\", \"websocket\"]\n"), any);
    assert_eq!(ops(""), any);
    assert_eq!(
        ops("handlers = [\"metrics\"]\nip_address = \"0.0.0.0\"\n"),
        any
    );
}

#[test]
fn s2s_defaults_and_listener() {
    let c = parse(MINIMAL).unwrap();
    assert!(c.listen.s2s.is_empty());
    assert_eq!(c.s2s, S2sOptions::default());
    assert!(c.s2s.dialback && c.s2s.sasl_external);
    assert_eq!(
        (
            c.s2s.max_queue,
            c.s2s.max_queue_bytes,
            c.s2s.max_queue_bytes_total
        ),
        (10_000, 16 << 20, 64 << 20)
    );
    assert_eq!(c.s2s.connect_timeout, Duration::from_secs(15));
    assert_eq!(c.s2s.idle_timeout, Duration::from_secs(600));
    let c = parse(&format!("{MINIMAL}[[listen.s2s]]\n")).unwrap();
    let l = &c.listen.s2s[0];
    assert_eq!((l.port, l.tls), (5269, S2sTls::StarttlsRequired));
    assert_eq!(l.ip_address, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    assert_eq!(l.max_stanza_size, 262_144);
}

#[test]
fn s2s_full_table_is_read_and_round_trips() {
    let c = parse(&format!(
        "{MINIMAL}[[listen.s2s]]\nport = 5270\nip_address = \"127.0.0.1\"\ntls = \"tls\"\nidle_timeout = 30\n\
         [s2s]\ndialback = false\ncafile = \"ca.pem\"\ncertfile = \"c.pem\"\nkeyfile = \"k.pem\"\n\
         max_queue = 10\nmax_queue_bytes = 8192\nmax_queue_bytes_total = 65536\nconnect_timeout = 2\nidle_timeout = 60\n\
         nameservers = [\"127.0.0.1:5353\"]\n\
         [s2s.address.\"Other.Test\"]\nhost = \"127.0.0.1\"\nport = 6269\n\
         [s2s.address.\"third.test\"]\nip_address = \"::1\"\ntls = \"tls\"\n"
    ))
    .unwrap();
    let l = &c.listen.s2s[0];
    assert_eq!((l.port, l.tls), (5270, S2sTls::Tls));
    assert_eq!(l.idle_timeout, Duration::from_secs(30));
    let s = &c.s2s;
    assert!(!s.dialback && s.sasl_external);
    assert_eq!(s.cafile.as_deref(), Some(Path::new("ca.pem")));
    assert_eq!(
        (s.max_queue, s.max_queue_bytes, s.max_queue_bytes_total),
        (10, 8192, 65536)
    );
    assert_eq!(s.connect_timeout, Duration::from_secs(2));
    assert_eq!(s.nameservers, vec!["127.0.0.1:5353".parse().unwrap()]);
    // Domains are normalized like hosts.
    let other = &s.address["other.test"];
    assert_eq!(
        (other.host.as_str(), other.port, other.tls),
        ("127.0.0.1", 6269, S2sTls::StarttlsRequired)
    );
    assert_eq!(s.address["third.test"].host, "::1");
    assert_eq!(s.address["third.test"].port, 5269);
    let back = parse(&c.to_toml()).unwrap();
    assert_eq!(back.listen, c.listen);
    assert_eq!(back.s2s, c.s2s);
}

#[test]
fn s2s_secret_is_checked_and_never_printed() {
    let c = parse(&format!(
        "{MINIMAL}[s2s]\nsecret = \"0123456789abcdef-xyz\"\n"
    ))
    .unwrap();
    assert_eq!(c.s2s.secret.as_deref(), Some("0123456789abcdef-xyz"));
    let text = c.to_toml();
    assert!(!text.contains("0123456789abcdef"), "{text}");
    // The printed mask is not a valid secret.
    let (err, _, _) = parse_err(&text);
    assert_eq!(invalid_kind(err), InvalidValue::S2sSecret(16));
    let (err, at, _) = parse_err(&format!("{MINIMAL}[s2s]\nsecret = \"short\"\n"));
    assert_eq!(invalid_kind(err), InvalidValue::S2sSecret(16));
    assert_eq!(at.line, 6);
}

#[test]
fn s2s_bad_values_are_located() {
    let (err, at, _) = parse_err(&format!("{MINIMAL}[s2s]\nmax_queue = 0\n"));
    assert!(matches!(
        invalid_kind(err),
        InvalidValue::TooSmall {
            field: "s2s.max_queue",
            ..
        }
    ));
    assert_eq!(at.line, 6);
    let (err, _, _) = parse_err(&format!("{MINIMAL}[s2s]\nconnect_timeout = 601\n"));
    assert!(matches!(
        invalid_kind(err),
        InvalidValue::TooLarge {
            field: "s2s.connect_timeout",
            ..
        }
    ));
    let (err, _, _) = parse_err(&format!("{MINIMAL}[s2s]\ncertfile = \"c.pem\"\n"));
    assert_eq!(
        invalid_kind(err),
        InvalidValue::CertKeyPair { given: "certfile" }
    );
    let (err, _, _) = parse_err(&format!("{MINIMAL}[s2s.address.\"a_b\"]\nhost = \"x\"\n"));
    assert!(matches!(
        invalid_kind(err),
        InvalidValue::InvalidDomain { .. }
    ));
    let (err, _, _) = parse_err(&format!("{MINIMAL}[s2s.address.\"a.b\"]\nport = 1\n"));
    assert_eq!(invalid_kind(err), InvalidValue::S2sAddressHost);
    let (err, _, _) = parse_err(&format!(
        "{MINIMAL}[s2s.address.\"a.b\"]\nhost = \"x\"\ntls = \"starttls\"\n"
    ));
    assert_eq!(invalid_kind(err), InvalidValue::S2sAddressStarttls);
    let (_, _, msg) = parse_err(&format!("{MINIMAL}[[listen.s2s]]\ntls = \"none\"\n"));
    assert!(msg.contains("none"), "{msg}");
    let (err, _, _) = parse_err(&format!("{MINIMAL}[[listen.s2s]]\nport = 5222\n"));
    assert!(matches!(
        invalid_kind(err),
        InvalidValue::DuplicateListener { port: 5222, .. }
    ));
}

#[test]
fn component_listeners_and_secrets() {
    let base = "[general]\nhosts = [\"a\"]\n[[listen.c2s]]\nport = 5222\n";
    let c = parse(&format!(
        "{base}[[listen.component]]\n[components.\"Echo.A\"]\npassword = \"pw\"\n"
    ))
    .unwrap();
    let l = &c.listen.component[0];
    assert_eq!(l.port, 5347);
    assert_eq!(l.ip_address, IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(l.outbound_queue_bytes, 1 << 20);
    assert_eq!(l.auth_timeout, Duration::from_secs(30));
    let d = Domain::parse("echo.a").unwrap();
    assert_eq!(c.components[&d].password, "pw");
    // The effective configuration hides the secret, and keeps the listener.
    let text = c.to_toml();
    assert!(!text.contains("\"pw\""), "{text}");
    let back = parse(&text).unwrap();
    assert_eq!(back.listen, c.listen);
    assert!(back.components.contains_key(&d));

    let c = parse(&format!(
        "{base}[[listen.component]]\nport = 6000\nip_address = \"0.0.0.0\"\nmax_stanza_size = 8192\nidle_timeout = 60\n"
    ))
    .unwrap();
    let l = &c.listen.component[0];
    assert_eq!((l.port, l.max_stanza_size), (6000, 8192));
    assert_eq!(l.idle_timeout, Duration::from_secs(60));
    assert!(c.components.is_empty());
}

#[test]
fn bad_components_are_rejected() {
    let base = "[general]\nhosts = [\"a\"]\n[[listen.c2s]]\nport = 5222\n";
    let (err, at, _) = parse_err(&format!("{base}[components.\"A\"]\npassword = \"pw\"\n"));
    assert_eq!(at.line, 5);
    assert_eq!(
        invalid_kind(err),
        InvalidValue::ComponentIsHosted("a".into())
    );
    let (err, at, _) = parse_err(&format!("{base}[components.\"c.a\"]\npassword = \"\"\n"));
    assert_eq!(at.line, 6);
    assert_eq!(
        invalid_kind(err),
        InvalidValue::ComponentPassword("c.a".into())
    );
    let (err, _, _) = parse_err(&format!("{base}[components.\"a b\"]\npassword = \"x\"\n"));
    assert!(matches!(
        invalid_kind(err),
        InvalidValue::InvalidDomain { .. }
    ));
    let (_, _, msg) = parse_err(&format!("{base}[components.\"c.a\"]\n"));
    assert!(msg.contains("password"), "{msg}");
    let (err, _, _) = parse_err(&format!("{base}[[listen.component]]\nport = 5222\n"));
    assert!(matches!(
        invalid_kind(err),
        InvalidValue::ComponentPortTaken { port: 5222, .. }
    ));
    let (err, _, _) = parse_err(&format!(
        "{base}[[listen.component]]\n[[listen.component]]\n"
    ));
    assert!(matches!(
        invalid_kind(err),
        InvalidValue::ComponentPortTaken { port: 5347, .. }
    ));
    let (_, _, msg) = parse_err(&format!("{base}[[listen.component]]\nport = 0\n"));
    assert!(msg.contains("listen.component.port"), "{msg}");
    let (_, _, msg) = parse_err(&format!("{base}[[listen.component]]\nmax_depth = 0\n"));
    assert!(msg.contains("listen.component.max_depth"), "{msg}");
}

#[test]
fn cluster_section_defaults_and_errors() {
    assert!(parse(MINIMAL).unwrap().cluster.is_none());
    let c = parse(&format!("{MINIMAL}[cluster]\nnode = \"n-1\"\n"))
        .unwrap()
        .cluster
        .unwrap();
    assert_eq!(c.name, "petrel");
    assert_eq!(c.node, "n-1");
    assert_eq!(
        c.nats,
        [NatsUrl {
            host: "127.0.0.1".into(),
            port: 4222,
            tls: false
        }]
    );
    assert_eq!(c.heartbeat, Duration::from_millis(500));
    assert_eq!(c.failure_timeout, Duration::from_millis(3000));
    let c = parse(&format!(
        "{MINIMAL}[cluster]\nnode = \"a\"\nname = \"prod\"\nnats = [\"nats://10.0.0.1:4333\", \"h\"]\n"
    ))
    .unwrap()
    .cluster
    .unwrap();
    assert_eq!(
        (c.nats[0].host.as_str(), c.nats[0].port),
        ("10.0.0.1", 4333)
    );
    assert_eq!((c.nats[1].host.as_str(), c.nats[1].port), ("h", 4222));
    assert!(!c.nats[0].tls);
    let c = parse(&format!(
        "{MINIMAL}[cluster]\nnode = \"a\"\nnats = [\"tls://10.0.0.1:4333\"]\nnats_cafile = \"/etc/ca.pem\"\n"
    ))
    .unwrap()
    .cluster
    .unwrap();
    assert!(c.nats[0].tls && c.nats[0].port == 4333);
    assert_eq!(
        c.nats_cafile.as_deref(),
        Some(std::path::Path::new("/etc/ca.pem"))
    );
    for (bad, kind) in [
        ("node = \"a.b\"", InvalidValue::ClusterName),
        ("node = \"a\"\nname = \"\"", InvalidValue::ClusterName),
        ("node = \"a\"\nnats = [\"nats://\"]", InvalidValue::NatsUrl),
        (
            "node = \"a\"\nheartbeat_ms = 1000\nfailure_timeout_ms = 1500",
            InvalidValue::ClusterTimeout,
        ),
    ] {
        let (err, _, _) = parse_err(&format!("{MINIMAL}[cluster]\n{bad}\n"));
        assert_eq!(invalid_kind(err), kind, "{bad}");
    }
    // NATS credentials: a token, or a user with a password; never printed.
    let c = parse(&format!(
        "{MINIMAL}[cluster]\nnode = \"a\"\nnats_user = \"petrel\"\nnats_password = \"pw-secret\"\n"
    ))
    .unwrap()
    .cluster
    .unwrap();
    assert_eq!(
        c.auth,
        crate::config::NatsAuth::UserPassword {
            user: "petrel".into(),
            password: "pw-secret".into()
        }
    );
    assert!(!format!("{c:?}").contains("pw-secret"));
    assert!(!serde_json::to_string(&c).unwrap().contains("pw-secret"));
    for bad in [
        "nats_user = \"u\"",
        "nats_password = \"p\"",
        "nats_token = \"\"",
        "nats_token = \"t\"\nnats_user = \"u\"\nnats_password = \"p\"",
    ] {
        let (err, _, _) = parse_err(&format!("{MINIMAL}[cluster]\nnode = \"a\"\n{bad}\n"));
        assert_eq!(invalid_kind(err), InvalidValue::NatsAuth, "{bad}");
    }
    // Federation from a cluster: one dialback secret for every node.
    let s2s = "[[listen.s2s]]\nport = 5269\n";
    let (err, _, _) = parse_err(&format!("{MINIMAL}{s2s}[cluster]\nnode = \"a\"\n"));
    assert_eq!(invalid_kind(err), InvalidValue::ClusterDialbackSecret);
    let ok = format!(
        "{MINIMAL}{s2s}[s2s]\nsecret = \"0123456789abcdef-xyz\"\n[cluster]\nnode = \"a\"\n"
    );
    assert!(parse(&ok).unwrap().cluster.is_some());
}
