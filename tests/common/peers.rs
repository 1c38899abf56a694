//! Federation peers for the tests: a throwaway Prosody (Debian's package) serving one domain on
//! private loopback ports, a small DNS server (tests/interop/dns.py) that both servers resolve
//! through, and a test certificate authority.
//!
//! Domains end in `.example`, not `.test`: libunbound, which Prosody resolves with, answers
//! NXDOMAIN for `test.` itself (RFC 6761 default local zone) before asking any server.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedKey, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};

use super::venv::Background;

/// Whether Prosody is installed (the federation tests skip without it unless CI requires it).
pub fn prosody_available() -> bool {
    let found = Command::new("prosody")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found && std::env::var_os("PETREL_REQUIRE_PEERS").is_some() {
        panic!("prosody is not installed and PETREL_REQUIRE_PEERS is set");
    }
    found
}

/// A DNS server on a loopback UDP/TCP port answering the given zone-file records.
pub struct Dns {
    /// Its port on 127.0.0.1.
    pub port: u16,
    _server: Background,
}

impl Dns {
    /// Serves `records` (zone-file lines, e.g. `"_xmpp-server._tcp.a.example. 60 IN SRV 0 5 5269 a.example."`).
    pub fn start(records: &[String]) -> Dns {
        let port = super::free_port();
        let mut args = vec!["--port".to_string(), port.to_string()];
        for r in records {
            args.push("--record".into());
            args.push(r.clone());
        }
        let mut server = Background::spawn("dns.py", &args);
        server.wait_line("READY", Duration::from_secs(20));
        Dns {
            port,
            _server: server,
        }
    }

    /// The records making `domain` reachable for s2s at 127.0.0.1:`port` (SRV + A).
    pub fn s2s_records(domain: &str, port: u16) -> Vec<String> {
        vec![
            format!("_xmpp-server._tcp.{domain}. 60 IN SRV 0 5 {port} {domain}."),
            format!("{domain}. 60 IN A 127.0.0.1"),
        ]
    }
}

/// A certificate and its key, as PEM files.
pub struct CertFiles {
    /// The certificate chain (leaf only).
    pub cert: PathBuf,
    /// The private key (PKCS#8).
    pub key: PathBuf,
}

/// A test certificate authority whose leaf certificates carry serverAuth and clientAuth, as
/// server-to-server certificates must (each server is the TLS client of its outgoing streams).
pub struct TestCa {
    ca: CertifiedKey,
    /// The CA certificate (PEM): the trust anchor both servers are given.
    pub ca_file: PathBuf,
}

impl TestCa {
    /// A new CA, its certificate written into `dir`.
    pub fn new(dir: &Path) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "petrel federation test CA");
        let cert = params.self_signed(&key).unwrap();
        let ca_file = dir.join("test-ca.pem");
        std::fs::write(&ca_file, cert.pem()).unwrap();
        TestCa {
            ca: CertifiedKey {
                cert,
                key_pair: key,
            },
            ca_file,
        }
    }

    /// A certificate for `domain` signed by this CA, written into `dir`.
    pub fn issue(&self, dir: &Path, domain: &str) -> CertFiles {
        let key = KeyPair::generate().unwrap();
        let cert = leaf_params(domain)
            .signed_by(&key, &self.ca.cert, &self.ca.key_pair)
            .unwrap();
        write_pair(dir, domain, &cert.pem(), &key.serialize_pem())
    }
}

fn leaf_params(domain: &str) -> CertificateParams {
    let mut params = CertificateParams::new(vec![domain.to_string()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, domain);
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params
}

/// A self-signed certificate for `domain`, written into `dir` (what most small servers have:
/// it does not validate, so federation falls back to dialback).
pub fn self_signed(dir: &Path, domain: &str) -> CertFiles {
    let key = KeyPair::generate().unwrap();
    let cert = leaf_params(domain).self_signed(&key).unwrap();
    write_pair(dir, domain, &cert.pem(), &key.serialize_pem())
}

fn write_pair(dir: &Path, domain: &str, cert: &str, key: &str) -> CertFiles {
    let files = CertFiles {
        cert: dir.join(format!("{domain}.crt")),
        key: dir.join(format!("{domain}.key")),
    };
    std::fs::write(&files.cert, cert).unwrap();
    std::fs::write(&files.key, key).unwrap();
    files
}

/// How a Prosody instance is set up.
pub struct ProsodyOptions<'a> {
    /// The domain it serves.
    pub domain: &'a str,
    /// Its certificate.
    pub cert: &'a CertFiles,
    /// Trust anchors for peers' certificates (`ssl.cafile`); `None`: the system's.
    pub cafile: Option<&'a Path>,
    /// `s2s_secure_auth`: peers must present a valid certificate (no dialback).
    pub secure_auth: bool,
    /// The DNS server it resolves other domains with.
    pub dns_port: u16,
    /// Accounts to create (user, password).
    pub users: &'a [(&'a str, &'a str)],
}

/// A Prosody process, killed when dropped.
pub struct Prosody {
    /// Its c2s port on 127.0.0.1.
    pub c2s_port: u16,
    /// Its s2s port on 127.0.0.1.
    pub s2s_port: u16,
    /// Its working directory (config, data, log).
    pub dir: tempfile::TempDir,
    child: Child,
}

impl Prosody {
    /// Writes a config into a fresh directory, creates the accounts and starts Prosody.
    pub fn start(opts: &ProsodyOptions) -> Prosody {
        Self::start_on(opts, super::free_port())
    }

    /// [`Prosody::start`] with its s2s listener on `s2s_port` (already published in DNS).
    pub fn start_on(opts: &ProsodyOptions, s2s_port: u16) -> Prosody {
        let dir = tempfile::tempdir().unwrap();
        let c2s_port = super::free_port();
        let d = dir.path();
        let cafile = opts
            .cafile
            .map(|p| format!("cafile = {:?}, ", p.display().to_string()))
            .unwrap_or_default();
        let config = format!(
            r#"-- Written by tests/common/prosody.rs: a throwaway federation peer.
run_as_root = true
pidfile = "{d}/prosody.pid"
data_path = "{d}/data"
log = {{ debug = "{d}/prosody.log" }}
c2s_ports = {{ {c2s_port} }}
c2s_interfaces = {{ "127.0.0.1" }}
s2s_ports = {{ {s2s_port} }}
s2s_interfaces = {{ "127.0.0.1" }}
http_ports = {{ }}
https_ports = {{ }}
component_ports = {{ }}
modules_enabled = {{ "roster", "saslauth", "tls", "disco", "ping", "version", "presence", "dialback", "s2s_auth_certs" }}
authentication = "internal_hashed"
s2s_require_encryption = true
s2s_secure_auth = {secure}
s2s_timeout = 20
unbound = {{ forward = {{ "127.0.0.1@{dns}" }}, resolvconf = false, hoststxt = false }}
ssl = {{ {cafile}key = "{key}", certificate = "{cert}" }}
VirtualHost "{domain}"
"#,
            d = d.display(),
            secure = opts.secure_auth,
            dns = opts.dns_port,
            key = opts.cert.key.display(),
            cert = opts.cert.cert.display(),
            domain = opts.domain,
        );
        std::fs::create_dir_all(d.join("data")).unwrap();
        let cfg = d.join("prosody.cfg.lua");
        std::fs::write(&cfg, config).unwrap();
        for (user, password) in opts.users {
            let out = Command::new("prosodyctl")
                .arg("--config")
                .arg(&cfg)
                .args(["register", user, opts.domain, password])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "prosodyctl register {user}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let child = Command::new("prosody")
            .arg("--config")
            .arg(&cfg)
            .arg("-F")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prosody");
        let prosody = Prosody {
            c2s_port,
            s2s_port,
            dir,
            child,
        };
        prosody.wait_listening();
        prosody
    }

    fn wait_listening(&self) {
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            let up = |p: u16| std::net::TcpStream::connect(("127.0.0.1", p)).is_ok();
            if up(self.c2s_port) && up(self.s2s_port) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("prosody did not listen:\n{}", self.log_tail(40));
    }

    /// The last `n` lines of its debug log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("prosody.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Its whole debug log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prosody.log")).unwrap_or_default()
    }
}

impl Drop for Prosody {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An ejabberd node (Debian's package) run by loadtest/peers/ejabberd.sh in a private directory,
/// stopped when dropped. One at a time: the script's Erlang node name is fixed.
pub struct Ejabberd {
    /// Its c2s port on 127.0.0.1.
    pub c2s_port: u16,
    /// Its s2s port on 127.0.0.1.
    pub s2s_port: u16,
    /// Its working directory (config, spool, logs).
    pub dir: tempfile::TempDir,
    env: Vec<(&'static str, String)>,
}

/// Whether ejabberd is installed (the test skips without it unless CI requires it).
pub fn ejabberd_available() -> bool {
    let found = Path::new("/usr/sbin/ejabberdctl").exists();
    if !found && std::env::var_os("PETREL_REQUIRE_PEERS").is_some() {
        panic!("ejabberd is not installed and PETREL_REQUIRE_PEERS is set");
    }
    found
}

impl Ejabberd {
    fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("loadtest/peers/ejabberd.sh")
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("bash")
            .arg(Self::script())
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .output()
            .expect("run ejabberd.sh");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "ejabberd.sh {args:?}: {text}");
        text
    }

    /// Starts ejabberd serving `domain` with s2s on `s2s_port` (already in DNS), resolving through
    /// the DNS server on `dns_port`, and creates `users` (user, password).
    pub fn start(domain: &str, s2s_port: u16, dns_port: u16, users: &[(&str, &str)]) -> Ejabberd {
        let dir = tempfile::tempdir().unwrap();
        let c2s_port = super::free_port();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let env = vec![
            ("PEER_DIR", dir.path().display().to_string()),
            ("PORT", c2s_port.to_string()),
            ("S2S_PORT", s2s_port.to_string()),
            ("DNS_PORT", dns_port.to_string()),
            ("DOMAIN", domain.to_string()),
            ("EJABBERD_CPUS", format!("0-{}", cpus - 1)),
        ];
        let ejabberd = Ejabberd {
            c2s_port,
            s2s_port,
            dir,
            env,
        };
        ejabberd.run(&["start"]);
        for (user, password) in users {
            ejabberd.run(&["ctl", "register", user, domain, password]);
        }
        ejabberd
    }

    /// The tail of its logs (for a failing test).
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("log/ejabberd.log"))
            .or_else(|_| std::fs::read_to_string(self.dir.path().join("log/error.log")))
            .unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }
}

impl Drop for Ejabberd {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(Self::script())
            .arg("stop")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
