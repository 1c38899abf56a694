use super::*;

fn events(core: &mut NatsCore) -> Vec<Event> {
    let mut out = Vec::new();
    while let Some(e) = core.next_event().unwrap() {
        out.push(e);
    }
    out
}

#[test]
fn connect_sub_and_publish_are_encoded() {
    let mut c = NatsCore::new(1024);
    c.connect("n1", &NatsAuth::None);
    c.subscribe("petrel.c.n.n1.0", 7);
    c.publish("a.b", Some("r.1"), b"hello").unwrap();
    c.publish("a.b", None, b"").unwrap();
    let out = String::from_utf8(c.take_output()).unwrap();
    let mut lines = out.split("\r\n");
    let connect = lines.next().unwrap();
    assert!(connect.starts_with("CONNECT {"), "{connect}");
    let json: serde_json::Value = serde_json::from_str(&connect["CONNECT ".len()..]).unwrap();
    assert_eq!(json["headers"], true);
    assert_eq!(json["no_responders"], true);
    assert_eq!(json["echo"], false);
    assert_eq!(json["name"], "n1");
    assert!(json.get("user").is_none() && json.get("auth_token").is_none());
    let rest: Vec<&str> = lines.collect();
    assert_eq!(
        rest,
        [
            "SUB petrel.c.n.n1.0 7",
            "PUB a.b r.1 5",
            "hello",
            "PUB a.b 0",
            "",
            ""
        ]
    );
    assert!(!c.has_output());
}

#[test]
fn publish_is_refused_past_the_bound() {
    let mut c = NatsCore::new(32);
    c.publish("s", None, &[b'x'; 20]).unwrap();
    assert_eq!(c.publish("s", None, &[b'x'; 20]), Err(OutputFull));
    c.take_output();
    c.publish("s", None, &[b'x'; 20]).unwrap();
}

#[test]
fn messages_split_anywhere_are_reassembled() {
    let wire = b"INFO {\"server_id\":\"x\"}\r\nMSG a.b 3 5\r\nhello\r\nMSG a.c 4 r.9 0\r\n\r\n+OK\r\nPONG\r\n";
    let expected = vec![
        Event::Info("{\"server_id\":\"x\"}".to_owned()),
        Event::Msg(Msg {
            subject: "a.b".into(),
            sid: 3,
            reply: None,
            status: None,
            payload: b"hello".to_vec(),
        }),
        Event::Msg(Msg {
            subject: "a.c".into(),
            sid: 4,
            reply: Some("r.9".into()),
            status: None,
            payload: vec![],
        }),
        Event::Pong,
    ];
    for split in 0..wire.len() {
        let mut c = NatsCore::new(1024);
        c.feed(&wire[..split]);
        let mut got = events(&mut c);
        c.feed(&wire[split..]);
        got.extend(events(&mut c));
        assert_eq!(got, expected, "split at {split}");
    }
}

#[test]
fn payload_containing_crlf_is_taken_by_length() {
    let mut c = NatsCore::new(1024);
    c.feed(b"MSG s 1 6\r\na\r\nb\r\n\r\n");
    let got = events(&mut c);
    assert_eq!(got.len(), 1);
    let Event::Msg(m) = &got[0] else { panic!() };
    assert_eq!(m.payload, b"a\r\nb\r\n");
}

#[test]
fn no_responders_status_is_read_from_hmsg() {
    let mut c = NatsCore::new(1024);
    c.feed(b"HMSG r.12 2 16 16\r\nNATS/1.0 503\r\n\r\n\r\n");
    let got = events(&mut c);
    let Event::Msg(m) = &got[0] else { panic!() };
    assert_eq!(m.status, Some(503));
    assert_eq!(m.subject, "r.12");
    assert!(m.payload.is_empty());
}

#[test]
fn server_ping_is_answered() {
    let mut c = NatsCore::new(1024);
    c.feed(b"PING\r\n");
    assert!(events(&mut c).is_empty());
    assert_eq!(c.take_output(), b"PONG\r\n");
}

#[test]
fn errors_and_garbage() {
    let mut c = NatsCore::new(1024);
    c.feed(b"-ERR 'Authorization Violation'\r\n");
    assert_eq!(
        events(&mut c),
        vec![Event::Err("Authorization Violation".into())]
    );
    c.feed(b"BOGUS\r\n");
    assert!(matches!(c.next_event(), Err(ProtoError::Malformed(_))));
    let mut c = NatsCore::new(1024);
    c.feed(b"MSG s x 1\r\na\r\n");
    assert!(c.next_event().is_err());
    let mut c = NatsCore::new(1024);
    c.feed(&vec![b'a'; MAX_LINE + 10]);
    assert_eq!(c.next_event(), Err(ProtoError::LineTooLong));
}

#[test]
fn publish_in_parts_is_one_message() {
    let mut c = NatsCore::new(1024);
    c.publish_parts(b"a.1", &[b"r.", b"2"], &[b"he", b"llo"])
        .unwrap();
    assert_eq!(c.take_output(), b"PUB a.1 r.2 5\r\nhello\r\n");
    let mut c = NatsCore::new(4);
    assert_eq!(c.publish_parts(b"a", &[b"r"], &[b"hello"]), Err(OutputFull));
}

#[test]
fn credentials_go_in_connect() {
    let json = |auth: &NatsAuth| -> serde_json::Value {
        let mut c = NatsCore::new(1024);
        c.connect("n1", auth);
        let out = String::from_utf8(c.take_output()).unwrap();
        let line = out.strip_prefix("CONNECT ").unwrap().trim_end();
        serde_json::from_str(line).unwrap()
    };
    let j = json(&NatsAuth::Token("t\"ok".into()));
    assert_eq!(j["auth_token"], "t\"ok");
    let j = json(&NatsAuth::UserPassword {
        user: "petrel".into(),
        password: "pw".into(),
    });
    assert_eq!(
        (j["user"].as_str(), j["pass"].as_str()),
        (Some("petrel"), Some("pw"))
    );
}
