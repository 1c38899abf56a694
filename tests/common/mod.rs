//! Test harness: a real petrel process on a free loopback port, and a small blocking XMPP client.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use petrel::xml::{Event, Limits, Scanner, Stanza};
use petrel::xmpp::ns;

pub mod admin;
pub mod component;
pub mod muc;
pub mod peers;
pub mod pg;
pub mod venv;
pub mod web;
pub mod ws;

/// Password every test user gets.
pub const PASSWORD: &str = "secret-pass";

/// A petrel server process, stopped (SIGTERM) when dropped.
pub struct Server {
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    child: Option<Child>,
}

/// A `[[listen.http]]` table on loopback port `http`, with `extra` in it.
fn http_table(http: u16, extra: &str) -> String {
    format!("\n[[listen.http]]\nport = {http}\nip_address = \"127.0.0.1\"\n{extra}\n")
}

/// A free TCP port on loopback, reserved for this process: free when bound then released, and
/// locked (flock on a file per port, held until the process exits) so that no other test
/// process running at the same time takes it too. petrel binds with SO_REUSEPORT; it refuses to
/// start on a port something listens on, but two servers starting at the same instant could still
/// both pass that check and share the port's connections (foreign XML, failed dialback).
pub fn free_port() -> u16 {
    use std::os::fd::AsRawFd;
    static HELD: std::sync::Mutex<Vec<std::fs::File>> = std::sync::Mutex::new(Vec::new());
    let dir = std::env::temp_dir().join("petrel-test-ports");
    std::fs::create_dir_all(&dir).unwrap();
    loop {
        let Some(port) = candidate_port() else {
            continue;
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(port.to_string()))
            .unwrap();
        // SAFETY: flock(2) on a descriptor we own; a lock per open file, so a second reservation
        // of the same port in this process fails too.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            HELD.lock().unwrap().push(file);
            return port;
        }
    }
}

/// A port free now, below the kernel's ephemeral range when there is room there: no outgoing
/// connection takes one of those as its local port, so a server restarted on it binds it again.
/// (A port from the ephemeral range could by then be held by some client's socket, open or in
/// TIME_WAIT, and a restarted server failed to listen.)
fn candidate_port() -> Option<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOWEST: u32 = 10_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    if ephemeral < LOWEST + 1_000 {
        // No room below it: any port the kernel gives.
        let l = TcpListener::bind("127.0.0.1:0").ok()?;
        return Some(l.local_addr().ok()?.port());
    }
    // Spread over the range by process and call, so test binaries running at once rarely try the
    // same ports (the lock below settles it when they do).
    let seed = std::process::id().wrapping_mul(2_654_435_761);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let port = LOWEST + seed.wrapping_add(n.wrapping_mul(7_919)) % (ephemeral - LOWEST);
    let port = u16::try_from(port).ok()?;
    TcpListener::bind(("127.0.0.1", port)).ok()?;
    Some(port)
}

pub fn petrel() -> Command {
    Command::new(env!("CARGO_BIN_EXE_petrel"))
}

impl Server {
    /// Config text for a test server; `extra_listener` is appended inside the c2s listener table and
    /// `extra` at the end of the file.
    pub fn config_text(
        port: u16,
        data_dir: &std::path::Path,
        extra_listener: &str,
        extra: &str,
    ) -> String {
        format!(
            r#"[general]
hosts = ["localhost", "example.test"]
data_dir = "{data}"
loglevel = "info"

[auth]
scram_iterations = 4096

[[listen.c2s]]
port = {port}
ip_address = "127.0.0.1"
tls = "starttls"
allow_plaintext_on_loopback = true
{extra_listener}

[modules.ping]
[modules.disco]
{extra}
"#,
            data = data_dir.display()
        )
    }

    /// Writes the config, adds `users` (user@localhost with [`PASSWORD`]) and starts `--shards N`.
    pub fn start_with(shards: usize, users: &[&str], extra_listener: &str, extra: &str) -> Server {
        Self::start_config(shards, users, |port, data| {
            Self::config_text(port, data, extra_listener, extra)
        })
    }

    /// Like [`Server::start_with`] with the whole config text from `make(port, data_dir)` (for keys the
    /// default test config already sets).
    pub fn start_config(
        shards: usize,
        users: &[&str],
        make: impl FnOnce(u16, &std::path::Path) -> String,
    ) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("petrel.toml");
        std::fs::write(&config, make(port, &dir.path().join("data"))).unwrap();
        for u in users {
            let jid = if u.contains('@') {
                u.to_string()
            } else {
                format!("{u}@localhost")
            };
            let out = petrel()
                .args(["user", "add", &jid, PASSWORD, "--config"])
                .arg(&config)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "user add {jid}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut server = Server {
            port,
            dir,
            config,
            child: None,
        };
        server.spawn(shards);
        server
    }

    /// A server with the default test config plus `modules` (appended at the end) and a
    /// `[[listen.http]]` listener on its own loopback port with `http_extra` in its table; returns
    /// (server, http port).
    pub fn start_http(
        shards: usize,
        users: &[&str],
        http_extra: &str,
        modules: &str,
    ) -> (Server, u16) {
        let listener = format!("allow_plaintext_on_loopback = true\n{http_extra}");
        Self::start_http_listener(shards, users, &listener, modules)
    }

    /// Like [`Server::start_http`], the HTTP listener's settings all given by `listener`.
    pub fn start_http_listener(
        shards: usize,
        users: &[&str],
        listener: &str,
        modules: &str,
    ) -> (Server, u16) {
        let http = free_port();
        let server = Self::start_config(shards, users, |port, data| {
            Self::config_text(port, data, "", modules) + &http_table(http, listener)
        });
        (server, http)
    }

    /// A server with `[modules.http_upload]` (its `base_url` on the HTTP listener at port `http`,
    /// which serves `upload`, and the `extra` options) for the upload tests.
    pub fn start_upload(shards: usize, users: &[&str], http: u16, extra: &str) -> Server {
        Self::start_config(shards, users, |port, data| {
            let module = format!(
                "[modules.http_upload]\nbase_url = \"http://127.0.0.1:{http}/upload\"\n{extra}\n"
            );
            Self::config_text(port, data, "", &module)
                + &http_table(
                    http,
                    "allow_plaintext_on_loopback = true\nhandlers = [\"upload\"]",
                )
        })
    }

    /// A server with the default test config.
    pub fn start(shards: usize, users: &[&str]) -> Server {
        Self::start_with(shards, users, "", "")
    }

    /// `petrel serve` with this server's configuration and `shards` shards, not yet started.
    pub fn serve_command(&self, shards: usize) -> Command {
        let mut cmd = petrel();
        cmd.args([
            "serve",
            "--allow-oversubscribe",
            "--shards",
            &shards.to_string(),
            "--config",
        ])
        .arg(&self.config);
        cmd
    }

    /// (Re)starts the process and waits until the port accepts connections.
    pub fn spawn(&mut self, shards: usize) {
        self.spawn_with(shards, |cmd| {
            cmd.stderr(Stdio::inherit());
        });
    }

    /// (Re)starts the process logging at `info` into `log` (for tests of what it logs).
    pub fn spawn_logging_to(&mut self, shards: usize, log: &std::path::Path) {
        let file = std::fs::File::create(log).unwrap();
        self.spawn_with(shards, |cmd| {
            cmd.env("RUST_LOG", "info").stderr(file);
        });
    }

    fn spawn_with(&mut self, shards: usize, configure: impl FnOnce(&mut Command)) {
        let mut cmd = self.serve_command(shards);
        cmd.stdin(Stdio::null()).stdout(Stdio::null());
        configure(&mut cmd);
        let child = cmd.spawn().unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                // Every shard binds the port: give the others a moment too.
                std::thread::sleep(Duration::from_millis(150));
                // A later listener (HTTP, s2s) that could not bind ends the process: say so here,
                // not as a refused connection later.
                if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                    panic!("petrel exited right after listening: {status}");
                }
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("petrel exited early: {status}");
            }
            assert!(Instant::now() < deadline, "petrel did not start listening");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return Some(st);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process with SIGKILL (no shutdown path runs) and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGKILL);
            }
            let _ = child.wait();
        }
        // io_uring releases a dead process's sockets asynchronously: its listener may still accept
        // for a moment. Wait until it is gone, or a respawn would look ready too early.
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The self-signed certificate the server generated (PEM), to trust in TLS clients.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("data/tls/selfsigned-cert.pem")
    }

    /// The server's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.port)
    }

    /// Logs `user` in with PLAIN over plaintext loopback, binds `resource`, optionally sends initial presence.
    pub fn login(&self, user: &str, resource: &str, presence: Option<i8>) -> Client {
        let mut c = self.connect();
        c.login_plain(user, "localhost", PASSWORD, resource);
        if let Some(p) = presence {
            c.send(&format!("<presence><priority>{p}</priority></presence>"));
            if p >= 0 {
                c.home_sync();
            }
        }
        c
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A blocking client speaking raw XMPP; server output is split into events with petrel's scanner
/// (the tests assert on attributes and on raw bytes).
pub struct Client {
    pub sock: TcpStream,
    scanner: Scanner,
    pub raw: Vec<u8>,
    pub jid: String,
    /// Stanzas read by the harness itself (home sync) that belong to the test: returned first.
    pushback: std::collections::VecDeque<Stanza>,
}

impl Client {
    pub fn connect(port: u16) -> Client {
        Client::from_stream(TcpStream::connect(("127.0.0.1", port)).unwrap())
    }

    /// Like [`Client::connect`], from local address `from` (all of 127.0.0.0/8 is local on Linux), so
    /// tests can play several client machines.
    pub fn connect_from(port: u16, from: std::net::Ipv4Addr) -> Client {
        use socket2::{Domain, Socket, Type};
        let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        sock.bind(&std::net::SocketAddr::from((from, 0)).into())
            .unwrap();
        sock.connect(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into())
            .unwrap();
        Client::from_stream(sock.into())
    }

    /// A client on a socket the test connected itself (socket options set before connecting).
    pub fn from_stream(sock: TcpStream) -> Client {
        Client::from_stream_ns(sock, ns::CLIENT)
    }

    /// [`Client::from_stream`] for a stream whose content namespace is `default_ns` (a component's).
    pub fn from_stream_ns(sock: TcpStream, default_ns: &'static str) -> Client {
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        sock.set_nodelay(true).unwrap();
        Client {
            sock,
            scanner: Scanner::new(
                Limits {
                    max_stanza_bytes: 1 << 20,
                    ..Limits::default()
                },
                default_ns,
            ),
            raw: Vec::new(),
            jid: String::new(),
            pushback: std::collections::VecDeque::new(),
        }
    }

    pub fn send(&mut self, s: &str) {
        self.sock.write_all(s.as_bytes()).unwrap();
    }

    pub fn send_bytes(&mut self, b: &[u8]) {
        self.sock.write_all(b).unwrap();
    }

    pub fn open(&mut self, domain: &str) {
        self.send(&format!(
            "<?xml version='1.0'?><stream:stream to='{domain}' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
        ));
    }

    /// Reads more bytes; false on EOF.
    fn fill(&mut self) -> bool {
        let mut buf = [0u8; 16384];
        match self.sock.read(&mut buf) {
            Ok(0) => false,
            Ok(n) => {
                self.raw.extend_from_slice(&buf[..n]);
                self.scanner.feed(&buf[..n]);
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => false,
            Err(e) => panic!(
                "read failed (timeout?): {e}; got so far: {}",
                String::from_utf8_lossy(&self.raw)
            ),
        }
    }

    /// The next event from the server (stream header, stanza, close); None on EOF.
    pub fn next_event(&mut self) -> Option<Event> {
        if let Some(s) = self.pushback.pop_front() {
            return Some(Event::Stanza(s));
        }
        loop {
            match self.scanner.next_event() {
                Ok(Some(Event::Whitespace)) => continue,
                Ok(Some(ev)) => return Some(ev),
                Ok(None) => {
                    if !self.fill() {
                        return None;
                    }
                }
                Err(e) => panic!(
                    "server sent bad XML: {e}: {}",
                    String::from_utf8_lossy(&self.raw)
                ),
            }
        }
    }

    /// The next stanza (skips headers); panics on EOF.
    pub fn next_stanza(&mut self) -> Stanza {
        loop {
            match self.next_event() {
                Some(Event::Stanza(s)) => return s,
                Some(_) => continue,
                None => panic!(
                    "EOF while waiting for a stanza; got: {}",
                    String::from_utf8_lossy(&self.raw)
                ),
            }
        }
    }

    /// The next stanza, or `None` on EOF or when nothing arrives within the socket's read timeout.
    pub fn try_next_stanza(&mut self) -> Option<Stanza> {
        if let Some(s) = self.pushback.pop_front() {
            return Some(s);
        }
        loop {
            match self.scanner.next_event() {
                Ok(Some(Event::Stanza(s))) => return Some(s),
                Ok(Some(_)) => continue,
                Ok(None) => {
                    let mut buf = [0u8; 16384];
                    match self.sock.read(&mut buf) {
                        Ok(0) | Err(_) => return None,
                        Ok(n) => {
                            self.raw.extend_from_slice(&buf[..n]);
                            self.scanner.feed(&buf[..n]);
                        }
                    }
                }
                Err(e) => panic!(
                    "server sent bad XML: {e}: {}",
                    String::from_utf8_lossy(&self.raw)
                ),
            }
        }
    }

    /// Skips stanzas until one satisfies `pred`.
    pub fn expect(&mut self, what: &str, pred: impl Fn(&Stanza) -> bool) -> Stanza {
        loop {
            let s = self.next_stanza();
            if pred(&s) {
                return s;
            }
            eprintln!(
                "(skipping while waiting for {what}: {})",
                String::from_utf8_lossy(s.bytes())
            );
        }
    }

    /// The stanzas that arrive until `quiet` passes without one (or EOF).
    pub fn read_stanzas_until_quiet(&mut self, quiet: Duration) -> Vec<Stanza> {
        self.sock.set_read_timeout(Some(quiet)).unwrap();
        let out = std::iter::from_fn(|| self.try_next_stanza()).collect();
        self.sock
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        out
    }

    /// Reads raw bytes until EOF, an error, or `quiet` without a byte; returns them (what the
    /// parser had not consumed yet is not included).
    pub fn read_until_quiet(&mut self, quiet: Duration) -> Vec<u8> {
        read_until_quiet(&mut self.sock, quiet)
    }

    /// [`Client::read_until_quiet`] on a thread of its own, over a clone of the socket: a sender's
    /// errors are read meanwhile, so that she does not become a slow reader herself.
    pub fn read_until_quiet_on_a_thread(
        &self,
        quiet: Duration,
    ) -> std::thread::JoinHandle<Vec<u8>> {
        let mut sock = self.sock.try_clone().unwrap();
        std::thread::spawn(move || read_until_quiet(&mut sock, quiet))
    }

    /// Reads until EOF and returns everything received from the start.
    pub fn read_to_close(&mut self) -> String {
        while self.fill() {}
        String::from_utf8_lossy(&self.raw).into_owned()
    }

    /// Forgets the current stream's parser state (after SASL success or STARTTLS).
    pub fn restart(&mut self) {
        self.scanner.reset();
    }

    /// Stream header + features, AUTH PLAIN, restart, bind.
    pub fn login_plain(&mut self, user: &str, domain: &str, password: &str, resource: &str) {
        let f = self.auth_plain(user, domain, password);
        assert_eq!(f.name(), "stream:features");
        self.bind(resource);
    }

    /// Stream header + features, AUTH PLAIN, restart; returns the post-authentication features.
    pub fn auth_plain(&mut self, user: &str, domain: &str, password: &str) -> Stanza {
        self.open(domain);
        let features = self.next_stanza();
        assert_eq!(
            features.name(),
            "stream:features",
            "{}",
            String::from_utf8_lossy(features.bytes())
        );
        use base64::Engine;
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        self.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>"
        ));
        let r = self.next_stanza();
        assert_eq!(
            r.name(),
            "success",
            "auth failed: {}",
            String::from_utf8_lossy(r.bytes())
        );
        self.restart();
        self.open(domain);
        self.next_stanza()
    }

    /// Stream header + features, then SASL2 (XEP-0388) PLAIN with `inline` after the initial
    /// response (a `<user-agent/>`, a Bind 2 `<bind/>`...); returns the `<success/>` and sets
    /// `jid` to its authorization identifier. No restart follows; after a Bind 2 or resumption
    /// success the (empty) features that follow it are read too.
    pub fn authenticate_sasl2(
        &mut self,
        user: &str,
        domain: &str,
        password: &str,
        inline: &str,
    ) -> Stanza {
        self.open(domain);
        let features = self.next_stanza();
        let text = String::from_utf8_lossy(features.bytes()).into_owned();
        assert!(
            text.contains("<authentication xmlns='urn:xmpp:sasl:2'>"),
            "{text}"
        );
        use base64::Engine;
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        self.send(&format!(
            "<authenticate xmlns='urn:xmpp:sasl:2' mechanism='PLAIN'>\
             <initial-response>{token}</initial-response>{inline}</authenticate>"
        ));
        let r = self.next_stanza();
        let text = String::from_utf8_lossy(r.bytes()).into_owned();
        assert_eq!(r.name(), "success", "{text}");
        if text.contains("<bound ") || text.contains("<resumed ") {
            let f = self.next_stanza();
            assert_eq!(f.name(), "stream:features", "{text}");
            assert!(
                f.tree().is_ok_and(|t| t.children.is_empty()),
                "nothing left to negotiate"
            );
        }
        self.jid = r
            .tree()
            .ok()
            .and_then(|t| {
                t.get_child("authorization-identifier", "urn:xmpp:sasl:2")
                    .map(|e| e.text())
            })
            .unwrap_or_default();
        r
    }

    pub fn bind(&mut self, resource: &str) {
        let res = if resource.is_empty() {
            String::new()
        } else {
            format!("<resource>{resource}</resource>")
        };
        self.send(&format!("<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>{res}</bind></iq>"));
        let r = self.expect("bind result", |s| s.id().as_deref() == Some("bind1"));
        assert_eq!(
            r.type_().as_deref(),
            Some("result"),
            "{}",
            String::from_utf8_lossy(r.bytes())
        );
        let tree = r.tree().unwrap();
        let jid = tree
            .get_child("bind", ns::BIND)
            .and_then(|b| b.get_child("jid", ns::BIND))
            .map(|j| j.text())
            .unwrap();
        self.jid = jid;
    }

    /// Waits until everything this session sent so far reached its home shard's session manager: a
    /// headline to our own bare JID travels the same ring as our presence (FIFO), so once it comes back,
    /// the session manager has our availability. Needs a non-negative priority.
    pub fn home_sync(&mut self) {
        let bare = self.jid.split('/').next().unwrap_or_default().to_owned();
        let id = format!("hs{}", rand_u64());
        self.send(&format!("<message to='{bare}' type='headline' id='{id}'/>"));
        // Whatever arrives meanwhile (a stored subscription request, presences) is the test's.
        let mut seen = Vec::new();
        loop {
            let s = self.next_stanza();
            if s.id().as_deref() == Some(id.as_str()) {
                break;
            }
            seen.push(s);
        }
        self.pushback.extend(seen);
    }

    /// Sends a chat message.
    pub fn chat(&mut self, to: &str, body: &str) {
        self.send(&format!(
            "<message to='{to}' type='chat'><body>{body}</body></message>"
        ));
    }

    /// Round trip to the server: everything sent before was processed when this returns.
    pub fn sync(&mut self) {
        let id = format!("sync{}", rand_u64());
        self.send(&format!(
            "<iq type='get' to='localhost' id='{id}'><ping xmlns='urn:xmpp:ping'/></iq>"
        ));
        self.expect("ping reply", |s| s.id().as_deref() == Some(id.as_str()));
    }
}

/// Reads `sock` until EOF, an error, or `quiet` without a byte; returns what came.
fn read_until_quiet(sock: &mut TcpStream, quiet: Duration) -> Vec<u8> {
    sock.set_read_timeout(Some(quiet)).unwrap();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        match sock.read(&mut buf) {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// VmRSS of a process in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

pub fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    getrandom::getrandom(&mut b).unwrap();
    u64::from_le_bytes(b)
}

/// Body text of a message stanza.
pub fn body(s: &Stanza) -> Option<String> {
    s.tree()
        .ok()?
        .get_child("body", ns::CLIENT)
        .map(|b| b.text())
}

/// The error condition element name of an error stanza.
pub fn error_condition(s: &Stanza) -> Option<String> {
    let t = s.tree().ok()?;
    let e = t.get_child("error", ns::CLIENT)?;
    let cond = e
        .child_elements()
        .find(|c| c.ns == ns::STANZAS)
        .map(|c| c.name.clone());
    cond
}

/// The application-specific condition (RFC 6120 §8.3.2) of an error stanza in namespace `app_ns`
/// (e.g. XEP-0060's `pubsub#errors`).
pub fn app_error_condition(s: &Stanza, app_ns: &str) -> Option<String> {
    let t = s.tree().ok()?;
    let e = t.get_child("error", ns::CLIENT)?;
    let app = e.child_elements().find(|c| c.ns == app_ns)?;
    Some(app.name.clone())
}

/// A rustls client configuration trusting only the PEM certificates in `cert` (the server's
/// generated self-signed one).
pub fn tls_client_config(cert: &std::path::Path) -> std::sync::Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    std::sync::Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// `x` (user `xn`) subscribes to `y`'s (user `yn`) presence and `y` approves; both on localhost.
pub fn subscribe_one_way(x: &mut Client, xn: &str, y: &mut Client, yn: &str) {
    x.send(&format!("<presence to='{yn}@localhost' type='subscribe'/>"));
    y.expect("subscribe", |s| s.type_().as_deref() == Some("subscribe"));
    y.send(&format!(
        "<presence to='{xn}@localhost' type='subscribed'/>"
    ));
    x.expect("subscribed", |s| s.type_().as_deref() == Some("subscribed"));
}
