//! HTTP file upload (XEP-0363) over real sockets: an XMPP client asks `upload.localhost` for a slot,
//! PUTs the file to the `[[listen.http]]` listener and GETs it back; then the bad inputs (a file
//! too large, a body larger than the slot, a wrong token, a second PUT, an expired slot, path
//! traversal in names and URLs, a user of another domain).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{error_condition, free_port, Client, Server};
use petrel::xml::{Element, Stanza};

const SERVICE: &str = "upload.localhost";
const NS: &str = "urn:xmpp:http:upload:0";
const MAX: u64 = 1024 * 1024;

/// A server with an HTTP listener serving `upload` and the module's `extra` options; returns
/// (server, http port).
fn start(shards: usize, extra: &str) -> (Server, u16) {
    let http = free_port();
    let extra = format!("max_file_size = {MAX}\n{extra}");
    let server = Server::start_upload(shards, &["alice", "bob@example.test"], http, &extra);
    (server, http)
}

/// An HTTP answer.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `head` (request line and headers, without the blank line) and `body` on a new
/// connection, and reads the answer to the end (`Connection: close`).
fn http_req(port: u16, head: &str, body: &[u8]) -> Answer {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("{head}\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    // A refused request may be answered (and the socket closed) before the body is read.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer: {}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    }
}

/// The path and query of a URL on the test listener.
fn path_of(url: &str, http: u16) -> String {
    url.strip_prefix(&format!("http://127.0.0.1:{http}"))
        .unwrap_or_else(|| panic!("{url}"))
        .to_owned()
}

fn put(http: u16, url: &str, body: &[u8], headers: &str) -> Answer {
    let path = path_of(url, http);
    http_req(
        http,
        &format!(
            "PUT {path} HTTP/1.1\r\nContent-Length: {}{headers}",
            body.len()
        ),
        body,
    )
}

fn get(http: u16, url: &str, method: &str) -> Answer {
    let path = path_of(url, http);
    http_req(http, &format!("{method} {path} HTTP/1.1"), b"")
}

/// Sends an IQ and returns its answer's tree.
fn iq(c: &mut Client, id: &str, to: &str, payload: &str) -> (Stanza, Element) {
    c.send(&format!(
        "<iq type='get' id='{id}' to='{to}'>{payload}</iq>"
    ));
    let s = c.expect(id, |s| s.id().as_deref() == Some(id));
    let t = s.tree().unwrap();
    (s, t)
}

/// Requests a slot; (put url, get url) or the error stanza.
fn slot(c: &mut Client, id: &str, attrs: &str) -> Result<(String, String), Box<Stanza>> {
    let (s, t) = iq(c, id, SERVICE, &format!("<request xmlns='{NS}' {attrs}/>"));
    if s.type_().as_deref() != Some("result") {
        return Err(Box::new(s));
    }
    let slot = t.get_child("slot", NS).unwrap();
    let put = slot
        .get_child("put", NS)
        .unwrap()
        .attr("url")
        .unwrap()
        .to_owned();
    let get = slot
        .get_child("get", NS)
        .unwrap()
        .attr("url")
        .unwrap()
        .to_owned();
    Ok((put, get))
}

/// A file of `n` bytes that is not all one value.
fn content(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn round_trip(shards: usize) {
    let (server, http) = start(shards, "");
    let mut c = server.login("alice", "r", None);

    let (_, items) = iq(
        &mut c,
        "i",
        "localhost",
        "<query xmlns='http://jabber.org/protocol/disco#items'/>",
    );
    let listed = items
        .get_child("query", "http://jabber.org/protocol/disco#items")
        .unwrap();
    assert!(
        listed
            .child_elements()
            .any(|i| i.attr("jid") == Some(SERVICE)),
        "{items:?}"
    );
    let (info, _) = iq(
        &mut c,
        "d",
        SERVICE,
        "<query xmlns='http://jabber.org/protocol/disco#info'/>",
    );
    let info = String::from_utf8_lossy(info.bytes()).into_owned();
    assert!(
        info.contains(&format!("var='{NS}'")) || info.contains(&format!("var=\"{NS}\"")),
        "{info}"
    );
    assert!(
        info.contains("category='store'") && info.contains("type='file'"),
        "{info}"
    );
    assert!(info.contains(&format!("<value>{MAX}</value>")), "{info}");

    // Larger than one disk chunk and than hyper's read buffer.
    let data = content(300 * 1000 + 17);
    let (put_url, get_url) = slot(
        &mut c,
        "s1",
        &format!(
            "filename='photo ü.png' size='{}' content-type='image/png'",
            data.len()
        ),
    )
    .unwrap();
    assert!(get_url.ends_with("/photo%20%C3%BC.png"), "{get_url}");
    // Not there until uploaded.
    assert_eq!(get(http, &get_url, "GET").status, 404);
    let r = put(http, &put_url, &data, "\r\nContent-Type: image/png");
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));

    let r = get(http, &get_url, "GET");
    assert_eq!(r.status, 200);
    assert!(
        r.body == data,
        "downloaded file differs ({} bytes)",
        r.body.len()
    );
    assert_eq!(r.header("content-type"), Some("image/png"));
    assert_eq!(
        r.header("content-length"),
        Some(data.len().to_string().as_str())
    );
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert!(r
        .header("content-disposition")
        .unwrap()
        .starts_with("inline"));
    let r = get(http, &get_url, "HEAD");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-length"),
        Some(data.len().to_string().as_str())
    );
    assert!(r.body.is_empty());
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    // Byte ranges (RFC 9110 §14): players seek in audio and video by them; the whole file came
    // back for any Range.
    let path = path_of(&get_url, http);
    let ranged =
        |range: &str| http_req(http, &format!("GET {path} HTTP/1.1\r\nRange: {range}"), b"");
    let r = ranged("bytes=10-19");
    assert_eq!(r.status, 206);
    assert_eq!(r.body, data[10..20].to_vec());
    let total = data.len();
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 10-19/{total}").as_str())
    );
    let r = ranged("bytes=-5");
    assert_eq!(
        (r.status, r.body.clone()),
        (206, data[total - 5..].to_vec())
    );
    let r = ranged(&format!("bytes={total}-"));
    assert_eq!(r.status, 416);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes */{total}").as_str())
    );
    let r = get(http, &get_url, "OPTIONS");
    assert_eq!(r.status, 204);
    assert!(r
        .header("access-control-allow-methods")
        .unwrap()
        .contains("PUT"));
    assert!(r
        .header("access-control-allow-headers")
        .unwrap()
        .contains("Content-Type"));

    // The same slot again: refused, the file unchanged.
    let r = put(
        http,
        &put_url,
        &content(data.len()).iter().map(|b| !b).collect::<Vec<_>>(),
        "",
    );
    assert_eq!(r.status, 409);
    assert!(get(http, &get_url, "GET").body == data);

    // HTML is served, but never inline in the server's origin.
    let html = b"<script>alert(1)</script>";
    let (put_url, get_url) = slot(
        &mut c,
        "s2",
        &format!(
            "filename='x.html' size='{}' content-type='text/html'",
            html.len()
        ),
    )
    .unwrap();
    assert_eq!(
        put(http, &put_url, html, "\r\nContent-Type: text/html").status,
        201
    );
    let r = get(http, &get_url, "GET");
    assert_eq!(r.header("content-type"), Some("text/html"));
    assert!(r
        .header("content-disposition")
        .unwrap()
        .starts_with("attachment"));
}

#[test]
fn upload_and_download_one_shard() {
    round_trip(1);
}

#[test]
fn upload_and_download_two_shards() {
    round_trip(2);
}

#[test]
fn bad_input() {
    let (server, http) = start(2, "");
    let mut c = server.login("alice", "r", None);

    // XEP-0363 §5: too large, with the limit.
    let e = slot(
        &mut c,
        "big",
        &format!("filename='a.bin' size='{}'", MAX + 1),
    )
    .unwrap_err();
    assert_eq!(error_condition(&e).as_deref(), Some("not-acceptable"));
    let t = e.tree().unwrap();
    let max = t
        .get_child("error", "jabber:client")
        .and_then(|e| e.get_child("file-too-large", NS))
        .and_then(|f| f.get_child("max-file-size", NS))
        .map(|m| m.text());
    assert_eq!(max, Some(MAX.to_string()));
    for (id, attrs) in [
        ("nosize", "filename='a.bin'"),
        ("badsize", "filename='a.bin' size='-1'"),
        ("noname", "size='10'"),
        ("dots", "filename='..' size='10'"),
        ("slash", "filename='dir/' size='10'"),
    ] {
        let e = slot(&mut c, id, attrs).unwrap_err();
        assert_eq!(error_condition(&e).as_deref(), Some("bad-request"), "{id}");
    }

    // A name with a path keeps only its last component; the file lands in its slot directory.
    let (put_url, get_url) = slot(&mut c, "trav", "filename='../../../secret' size='4'").unwrap();
    assert!(
        get_url.ends_with("/secret") && !get_url.contains(".."),
        "{get_url}"
    );
    assert_eq!(put(http, &put_url, b"evil", "").status, 201);
    let upload = server.data_dir().join("upload");
    assert_eq!(
        std::fs::read(upload.join("secret")).unwrap().len(),
        32,
        "the slot secret is untouched"
    );
    assert_eq!(get(http, &get_url, "GET").body, b"evil");
    // URLs that try to leave the upload directory.
    for path in [
        "/upload/secret".to_owned(),
        "/upload/../upload/secret".to_owned(),
        "/upload/..%2Fsecret/x".to_owned(),
        format!(
            "{}/..%2F..%2Fsecret",
            get_url
                .rsplit_once('/')
                .unwrap()
                .0
                .rsplit_once('/')
                .unwrap()
                .0
        ),
        "/upload/%2e%2e/secret".to_owned(),
    ] {
        let path = path.replace(&format!("http://127.0.0.1:{http}"), "");
        let r = http_req(http, &format!("GET {path} HTTP/1.1"), b"");
        assert_eq!(r.status, 404, "{path}");
    }

    let body = content(1000);
    let (put_url, get_url) = slot(
        &mut c,
        "s",
        "filename='f.bin' size='1000' content-type='application/pdf'",
    )
    .unwrap();
    // A body larger than the slot: refused on its Content-Length, before any byte is read.
    let path = path_of(&put_url, http);
    let r = http_req(
        http,
        &format!("PUT {path} HTTP/1.1\r\nContent-Length: 5000"),
        b"",
    );
    assert_eq!(r.status, 413);
    // Shorter than the slot, another content type, no length.
    assert_eq!(put(http, &put_url, &body[..999], "").status, 400);
    assert_eq!(
        put(http, &put_url, &body, "\r\nContent-Type: text/html").status,
        400
    );
    let r = http_req(
        http,
        &format!("PUT {path} HTTP/1.1\r\nTransfer-Encoding: chunked"),
        b"0\r\n\r\n",
    );
    assert_eq!(r.status, 400);
    // A wrong token, or a URL whose size or expiry was changed.
    let tampered = [
        put_url.replace("token=", "token=x"),
        put_url.replace("size=1000", "size=999"),
        put_url.replace("expires=", "expires=9"),
        put_url.replace("f.bin", "g.bin"),
    ];
    for url in &tampered {
        let len = if url.contains("size=999") { 999 } else { 1000 };
        assert_eq!(put(http, url, &body[..len], "").status, 403, "{url}");
    }
    assert_eq!(
        get(http, &get_url, "GET").status,
        404,
        "nothing stored by refused PUTs"
    );
    // A client that goes away mid-body: its partial file goes, and the slot can be used again.
    {
        let mut s = TcpStream::connect(("127.0.0.1", http)).unwrap();
        let head = format!("PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n");
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(&body[..500]).unwrap();
    }
    let mut removed = false;
    for _ in 0..100 {
        // The server notices the closed connection and removes the partial upload.
        std::thread::sleep(Duration::from_millis(50));
        let r = http_req(
            http,
            &format!("HEAD {} HTTP/1.1", path_of(&get_url, http)),
            b"",
        );
        assert_eq!(r.status, 404, "a partial upload is never served");
        if !upload
            .join(get_url.rsplit('/').nth(1).unwrap())
            .join("meta")
            .exists()
        {
            removed = true;
            break;
        }
    }
    assert!(removed, "the partial upload was not removed");
    // The slot is still good after all that.
    assert_eq!(put(http, &put_url, &body, "").status, 201);
    let r = get(http, &get_url, "GET");
    assert!(r.body == body);
    assert_eq!(r.header("content-type"), Some("application/pdf"));
    // Unknown files and methods.
    let unknown = get_url.replace("f.bin", "other.bin");
    assert_eq!(get(http, &unknown, "GET").status, 404);
    assert_eq!(get(http, &get_url, "DELETE").status, 405);

    // A user of another hosted domain gets no slot from this one's service.
    let mut bob = server.connect();
    bob.login_plain("bob", "example.test", common::PASSWORD, "r");
    let e = slot(&mut bob, "bob", "filename='a' size='1'").unwrap_err();
    assert_eq!(error_condition(&e).as_deref(), Some("not-allowed"));
}

#[test]
fn expired_slot_is_refused() {
    let (server, http) = start(1, "slot_timeout = 1");
    let mut c = server.login("alice", "r", None);
    let (put_url, get_url) = slot(&mut c, "s", "filename='late.txt' size='4'").unwrap();
    // Past the slot's expiry second, whatever the clock's phase.
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(put(http, &put_url, b"late", "").status, 410);
    assert_eq!(get(http, &get_url, "GET").status, 404);
}

#[test]
fn a_slot_outlives_a_restart() {
    // Stateless slots: the token verifies under the secret kept in the upload directory.
    let (mut server, http) = start(2, "");
    let mut c = server.login("alice", "r", None);
    let (put_url, get_url) = slot(&mut c, "s", "filename='kept.txt' size='5'").unwrap();
    drop(c);
    server.stop();
    server.spawn(2);
    assert_eq!(put(http, &put_url, b"hello", "").status, 201);
    let r = get(http, &get_url, "GET");
    assert_eq!(r.body, b"hello");
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
}

#[test]
fn the_daily_quota_holds_across_sessions_shards_and_restarts() {
    let http = free_port();
    let extra = format!("max_file_size = {MAX}\ndaily_quota = {}", 3 * MAX);
    let mut server = Server::start_upload(2, &["alice", "carol"], http, &extra);
    // Four sessions: with two shards they are most likely spread over both.
    let mut cs: Vec<Client> = (0..4)
        .map(|i| server.login("alice", &format!("r{i}"), None))
        .collect();
    for (i, c) in cs.iter_mut().take(3).enumerate() {
        let attrs = format!("filename='f{i}' size='{MAX}'");
        if let Err(e) = slot(c, &format!("s{i}"), &attrs) {
            panic!(
                "slot {i} within the quota refused: {}",
                String::from_utf8_lossy(e.bytes())
            );
        }
    }
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };
    let refused = |c: &mut Client, id: &str| {
        let before = now();
        let e = slot(c, id, "filename='more' size='1'").unwrap_err();
        let t = e.tree().unwrap();
        let err = t.get_child("error", petrel::xmpp::ns::CLIENT).unwrap();
        assert_eq!(
            err.attr("type"),
            Some("wait"),
            "{}",
            String::from_utf8_lossy(e.bytes())
        );
        assert_eq!(error_condition(&e).as_deref(), Some("resource-constraint"));
        // XEP-0363 §5: when to retry, a day after the first grant.
        let stamp = err.get_child("retry", NS).and_then(|r| r.attr("stamp"));
        let at = time::OffsetDateTime::parse(
            stamp.unwrap_or_default(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap_or_else(|e| panic!("retry stamp {stamp:?}: {e}"))
        .unix_timestamp();
        assert!(
            (before - 120 + 86_400..=now() + 86_400).contains(&at),
            "retry at {at}, now {before}"
        );
    };
    refused(&mut cs[3], "s3");
    // Another user's quota is their own.
    let mut carol = server.login("carol", "r", None);
    slot(&mut carol, "c1", &format!("filename='c' size='{MAX}'")).unwrap();
    // The grants are stored: a restart does not reset them.
    drop((cs, carol));
    server.stop();
    server.spawn(2);
    let mut c = server.login("alice", "again", None);
    refused(&mut c, "s4");
}

#[test]
fn a_deleted_accounts_files_go_with_it() {
    // Alice and carol upload; alice deletes her account (XEP-0077): her file is no longer
    // served, carol's is (ejabberd's rm_on_unregister does the same).
    let http = free_port();
    let extra = format!("max_file_size = {MAX}\n[modules.register]\n");
    let server = Server::start_upload(2, &["alice", "carol"], http, &extra);
    let mut alice = server.login("alice", "r", None);
    let mut carol = server.login("carol", "r", None);
    let mut urls = Vec::new();
    for (c, name) in [(&mut alice, "a.txt"), (&mut carol, "b.txt")] {
        let (put_url, get_url) = slot(c, "s", &format!("filename='{name}' size='5'")).unwrap();
        assert_eq!(put(http, &put_url, b"hello", "").status, 201);
        assert_eq!(get(http, &get_url, "GET").status, 200);
        urls.push(get_url);
    }
    alice.send("<iq type='set' id='rm'><query xmlns='jabber:iq:register'><remove/></query></iq>");
    let r = alice.expect("removal", |s| s.id().as_deref() == Some("rm"));
    assert_eq!(r.type_().as_deref(), Some("result"));
    // The files go in a walk of the directory on the store pool, after the answer.
    let mut status = 0;
    for _ in 0..100 {
        status = get(http, &urls[0], "GET").status;
        if status == 404 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(status, 404, "alice's file is still served");
    assert_eq!(get(http, &urls[1], "GET").body, b"hello");
}
