//! Integration: the `muc` scenario against a small fake XEP-0045 service inside
//! this test process (rooms locked until the creator submits the instant-room
//! form, joins refused while locked, occupant presences, groupchat reflection),
//! and against variants that refuse first joins or drop reflections.

mod common;

use common::{decode_b64, run, HEADER};
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

const SERVICE: &str = "conference.localhost";

/// How the fake misbehaves.
#[derive(Clone, Copy)]
struct Mode {
    /// Refuse every nick's first join with item-not-found (as a locked room does).
    refuse_first: bool,
    /// Never reflect a groupchat message to the room's last occupant (unless it sent it).
    drop_last: bool,
}

#[derive(Default)]
struct Room {
    locked: bool,
    /// (nick, full JID of the occupant's connection).
    occupants: Vec<(String, String)>,
}

#[derive(Default)]
struct State {
    conns: HashMap<String, TcpStream>,
    rooms: HashMap<String, Room>,
    refused: HashSet<String>,
}

type Shared = Arc<Mutex<State>>;

/// Value of attribute `a` in the start tag of `el`.
fn attr<'a>(el: &'a str, a: &str) -> Option<&'a str> {
    let tag = &el[..el.find('>')?];
    let i = tag.find(&format!(" {a}='"))? + a.len() + 3;
    Some(&tag[i..i + tag[i..].find('\'')?])
}

/// Take one complete top-level element (or stream header) off the front of `buf`.
fn take(buf: &mut String) -> Option<String> {
    let gt = buf.find('>')?;
    let name: String = buf[1..]
        .chars()
        .take_while(|c| !matches!(c, ' ' | '>' | '/'))
        .collect();
    let end = if name == "stream:stream" || name == "?xml" || buf[..gt].ends_with('/') {
        gt + 1
    } else {
        let close = format!("</{name}>");
        buf.find(&close)? + close.len()
    };
    Some(buf.drain(..end).collect())
}

fn send(st: &mut State, to: &str, data: &str) {
    if let Some(s) = st.conns.get_mut(to) {
        let _ = s.write_all(data.as_bytes());
    }
}

fn presence(room: &str, nick: &str, to: &str, codes: &[u16]) -> String {
    let status: String = codes
        .iter()
        .map(|c| format!("<status code='{c}'/>"))
        .collect();
    format!("<presence from='{room}/{nick}' to='{to}'><x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='none' role='participant'/>{status}</x></presence>")
}

fn on_join(st: &mut State, mode: Mode, me: &str, to: &str) {
    let (room, nick) = to.split_once('/').expect("join to room/nick");
    let (room, nick) = (room.to_owned(), nick.to_owned());
    let refuse = |st: &mut State, me: &str| {
        let e = format!("<presence type='error' from='{room}/{nick}' to='{me}'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>");
        send(st, me, &e);
    };
    if mode.refuse_first && st.refused.insert(nick.clone()) {
        return refuse(st, me);
    }
    let Some(r) = st.rooms.get_mut(&room) else {
        let mut r = Room {
            locked: true,
            ..Room::default()
        };
        r.occupants.push((nick.clone(), me.to_owned()));
        st.rooms.insert(room.clone(), r);
        let p = presence(&room, &nick, me, &[110, 201]);
        return send(st, me, &p);
    };
    if r.locked {
        return refuse(st, me);
    }
    let others = r.occupants.clone();
    r.occupants.push((nick.clone(), me.to_owned()));
    for (n, jid) in &others {
        let p = presence(&room, n, me, &[]);
        send(st, me, &p);
        let p = presence(&room, &nick, jid, &[]);
        send(st, jid, &p);
    }
    let p = presence(&room, &nick, me, &[110]);
    send(st, me, &p);
}

fn on_groupchat(st: &mut State, mode: Mode, me: &str, el: &str) {
    let room = attr(el, "to").expect("groupchat to").to_owned();
    let Some(r) = st.rooms.get(&room) else { return };
    let occupants = r.occupants.clone();
    let Some((nick, _)) = occupants.iter().find(|(_, j)| j == me) else {
        return;
    };
    let body = &el[el.find("<body>").expect("body")..];
    for (i, (_, jid)) in occupants.iter().enumerate() {
        if mode.drop_last && i + 1 == occupants.len() && jid != me {
            continue;
        }
        let m = format!("<message from='{room}/{nick}' to='{jid}' type='groupchat'>{body}");
        send(st, jid, &m);
    }
}

/// Serve one client: scripted login, then the MUC service.
fn serve(mut s: TcpStream, state: Shared, mode: Mode) {
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
        while let Some(el) = take(&mut buf) {
            let mut st = state.lock().expect("state");
            if el.starts_with("<?xml") {
                continue;
            } else if el.starts_with("<stream:stream") {
                let feats = if authed {
                    "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>"
                } else {
                    "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>"
                };
                let _ = s.write_all(format!("{HEADER}{feats}").as_bytes());
            } else if el.starts_with("<auth") {
                let b64 = &el[el.find('>').expect("auth start tag") + 1..el.len() - 7];
                let raw = decode_b64(b64);
                let user = raw.split(|&c| c == 0).nth(1).expect("PLAIN authcid");
                me = format!("{}@localhost/load", String::from_utf8_lossy(user));
                authed = true;
                let _ = s.write_all(b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
            } else if el.contains("urn:ietf:params:xml:ns:xmpp-bind") {
                st.conns.insert(me.clone(), s.try_clone().expect("clone"));
                let id = attr(&el, "id").unwrap_or_default();
                let r = format!("<iq type='result' id='{id}'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>{me}</jid></bind></iq>");
                send(&mut st, &me, &r);
            } else if el.contains("muc#owner") {
                let room = attr(&el, "to").expect("form to room");
                if let Some(r) = st.rooms.get_mut(room) {
                    r.locked = false;
                }
                let id = attr(&el, "id").unwrap_or_default();
                let r = format!("<iq type='result' id='{id}' from='{room}'/>");
                send(&mut st, &me, &r);
            } else if el.starts_with("<presence") {
                if let Some(to) = attr(&el, "to").filter(|t| t.contains(SERVICE)) {
                    on_join(&mut st, mode, &me, to);
                }
            } else if el.starts_with("<message") {
                on_groupchat(&mut st, mode, &me, &el);
            }
        }
    }
}

fn start_fake(mode: Mode) -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    let state: Shared = Arc::default();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let st = state.clone();
            std::thread::spawn(move || serve(s, st, mode));
        }
    });
    addr
}

fn muc(addr: &str, rooms: &str, occupants: &str, extra: &[&str]) -> (i32, serde_json::Value) {
    let mut args = vec![
        "muc",
        "--server",
        addr,
        "--mech",
        "PLAIN",
        "--rooms",
        rooms,
        "--occupants",
        occupants,
        "--duration",
        "0.5",
        "--grace",
        "3",
        "--login-timeout",
        "10",
    ];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn every_occupant_gets_every_message() {
    let mode = Mode {
        refuse_first: false,
        drop_last: false,
    };
    let addr = start_fake(mode);
    let (code, r) = muc(&addr, "3", "4", &["--msg-rate", "20"]);
    assert_eq!(code, 0, "{r}");
    let m = &r["muc"];
    assert_eq!(m["joined"].as_u64(), Some(12), "{r}");
    assert_eq!(m["join_failed"].as_u64(), Some(0), "{r}");
    let v = &m["verdict"];
    let sent = v["messages"].as_u64().expect("messages");
    assert!(sent >= 12, "{r}");
    assert_eq!(v["expected"].as_u64(), Some(sent * 4), "{r}");
    assert_eq!(v["deliveries"].as_u64(), Some(sent * 4), "{r}");
    assert_eq!(r["delivered"].as_u64(), Some(sent * 4), "{r}");
    assert_eq!(v["lost"].as_u64(), Some(0), "{r}");

    // Closed loop: each occupant's next message waits for its own reflection. (A fresh fake: this
    // one never takes the first run's occupants out of their rooms.)
    let addr = start_fake(mode);
    let (code, r) = muc(&addr, "2", "3", &["--closed"]);
    assert_eq!(code, 0, "{r}");
    let v = &r["muc"]["verdict"];
    assert!(v["messages"].as_u64().expect("messages") > 6, "{r}");
    assert_eq!(v["lost"].as_u64(), Some(0), "{r}");
}

#[test]
fn refused_joins_are_retried() {
    let mode = Mode {
        refuse_first: true,
        drop_last: false,
    };
    let addr = start_fake(mode);
    let (code, r) = muc(&addr, "2", "3", &["--msg-rate", "10"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["muc"]["joined"].as_u64(), Some(6), "{r}");
    assert!(
        r["muc"]["join_retries"].as_u64().expect("retries") >= 6,
        "{r}"
    );
}

#[test]
fn a_missing_occupant_delivery_fails_the_run() {
    let mode = Mode {
        refuse_first: false,
        drop_last: true,
    };
    let addr = start_fake(mode);
    let (code, r) = muc(&addr, "1", "3", &["--msg-rate", "10"]);
    assert_eq!(code, 1, "{r}");
    let v = &r["muc"]["verdict"];
    let sent = v["messages"].as_u64().expect("messages");
    assert!(sent > 0, "{r}");
    // The last occupant to join misses the messages of the two others.
    assert!(v["lost"].as_u64().expect("lost") > 0, "{r}");
    assert_eq!(r["lost"], v["lost"], "{r}");
}

#[test]
fn users_must_match_the_rooms() {
    let (code, _) = {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_petrel-load"))
            .args(["muc", "--rooms", "2", "--occupants", "3", "--users", "5"])
            .output()
            .expect("run");
        (out.status.code(), ())
    };
    assert_eq!(code, Some(3));
}
