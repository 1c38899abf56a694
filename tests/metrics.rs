//! `GET /metrics` of a `[[listen.http]]` listener over a real socket, parsed by the reference
//! Prometheus text-format parser (Python's prometheus_client), after real traffic at 2 shards.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{venv, Client, Server};

/// One HTTP/1.1 request on a fresh connection; returns (status line, headers, body).
fn http(port: u16, request: &str) -> (String, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let resp = String::from_utf8(resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (
        status.to_string(),
        headers.to_ascii_lowercase(),
        body.to_string(),
    )
}

/// The samples of an exposition, by `name{sorted labels}`, parsed by prometheus_client.
fn parse(dir: &std::path::Path, exposition: &str) -> HashMap<String, f64> {
    let (file, parsed) = (dir.join("metrics.txt"), dir.join("samples.txt"));
    std::fs::write(&file, exposition).unwrap();
    venv::run_script(
        "prom_parse.py",
        &[file.display().to_string(), parsed.display().to_string()],
        Duration::from_secs(60),
    );
    std::fs::read_to_string(parsed)
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

/// Sum of the samples named `name` whose labels contain every `k=v` of `with`.
fn sum(samples: &HashMap<String, f64>, name: &str, with: &[&str]) -> f64 {
    samples
        .iter()
        .filter(|(k, _)| {
            k.split_once('{').is_some_and(|(n, labels)| {
                n == name
                    && with
                        .iter()
                        .all(|w| labels.trim_end_matches('}').split(',').any(|l| l == *w))
            })
        })
        .map(|(_, v)| v)
        .sum()
}

#[test]
fn metrics_after_traffic_parse_and_count() {
    let (server, http_port) = Server::start_http_listener(
        2,
        &["alice", "bob"],
        "handlers = [\"metrics\"]",
        "[modules.offline]\n",
    );
    let mut alice = server.login("alice", "a", Some(0));
    let mut bob = server.login("bob", "b", Some(0));
    for i in 0..5 {
        alice.send(&format!(
            "<message to='bob@localhost' type='chat' id='m{i}'><body>hi</body></message>"
        ));
    }
    for _ in 0..5 {
        bob.expect("a message", |s| s.name() == "message");
    }
    // One wrong password.
    let mut bad = Client::connect(server.port);
    bad.open("localhost");
    bad.next_stanza();
    bad.send(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHdyb25n</auth>",
    );
    bad.expect("a SASL failure", |s| s.name() == "failure");

    let (status, headers, body) = http(
        http_port,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(
        headers.contains("content-type: text/plain; version=0.0.4"),
        "{headers}"
    );
    let samples = parse(server.dir.path(), &body);
    // Both shards report.
    for shard in ["shard=0", "shard=1"] {
        assert!(
            samples
                .keys()
                .any(|k| k.starts_with("petrel_sessions{") && k.contains(shard)),
            "no sessions gauge for {shard}"
        );
    }
    assert_eq!(sum(&samples, "petrel_sessions", &[]), 2.0);
    assert!(sum(&samples, "petrel_logins_total", &["result=ok"]) >= 2.0);
    assert!(sum(&samples, "petrel_logins_total", &["result=failed"]) >= 1.0);
    assert!(sum(&samples, "petrel_stanzas_in_total", &["kind=message"]) >= 5.0);
    assert!(sum(&samples, "petrel_stanzas_out_total", &["kind=message"]) >= 5.0);
    assert!(sum(&samples, "petrel_route_latency_seconds_count", &[]) >= 5.0);
    assert!(samples
        .keys()
        .any(|k| k.starts_with("petrel_store_queue_depth")));
    // Offline storage counts when bob is gone.
    drop(bob);
    let before = sum(&samples, "petrel_offline_stored_total", &[]);
    alice.send("<message to='bob@localhost' type='chat' id='off'><body>later</body></message>");
    let mut stored = before;
    for _ in 0..100 {
        let (_, _, body) = http(
            http_port,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        stored = sum(
            &parse(server.dir.path(), &body),
            "petrel_offline_stored_total",
            &[],
        );
        if stored > before {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(stored, before + 1.0);

    // Only GET (and HEAD); other handlers are not served by this listener.
    let (status, _, _) = http(
        http_port,
        "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert!(status.starts_with("HTTP/1.1 405"), "{status}");
    let (status, _, _) = http(
        http_port,
        "GET /ws-xmpp HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(status.starts_with("HTTP/1.1 404"), "{status}");
}
