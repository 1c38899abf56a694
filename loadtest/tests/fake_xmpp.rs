//! Integration: full XMPP login (SASL PLAIN, restart, bind, presence) and the
//! `max` scenario against a tiny fake XMPP server running in this test process.

mod common;

use common::{decode_b64, run, HEADER};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

type Routes = Arc<Mutex<HashMap<String, TcpStream>>>;

/// Serve one client: scripted login, then route `<message to='...'>` elements.
fn serve(mut s: TcpStream, routes: Routes, password: &'static str, deliver: bool) {
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
                    me = format!("{}@localhost", String::from_utf8_lossy(parts[1]));
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

/// Start the fake; with `deliver == false` it swallows every message.
fn start_fake(deliver: bool) -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    let routes: Routes = Arc::default();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let r = routes.clone();
            std::thread::spawn(move || serve(s, r, "secret", deliver));
        }
    });
    addr
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
