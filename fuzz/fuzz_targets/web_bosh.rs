//! BOSH (XEP-0124/0206): request bodies parsed under the default limits, and a session driven by a
//! sequence of them, by c2s output and by time. Checks: no panic, every request answered at most
//! once, every answer one `<body/>` in the httpbind namespace.
//!
//! Input: a control byte (seeds the clock steps), then segments separated by 0x00: the first is the
//! creation request, the others requests to the session, except those starting with `o`: output of
//! the c2s (the rest of the segment, when it is UTF-8: what a c2s writes always is).
#![no_main]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use petrel::web::bosh::{self, Action, BoshConfig, BoshSession, RequestId};
use petrel_fuzz::{control, Rng};

fn check_body(body: &[u8]) {
    let s = std::str::from_utf8(body).unwrap_or_else(|_| panic!("a body is not UTF-8"));
    assert!(
        s.starts_with("<body") && s.ends_with('>'),
        "not a body: {s:?}"
    );
    assert!(
        s.contains("http://jabber.org/protocol/httpbind"),
        "no namespace: {s:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((c, rest)) = control(data) else {
        return;
    };
    let cfg = Arc::new(BoshConfig::default());
    let mut segs = rest.split(|b| *b == 0);
    let Some(first) = segs.next() else {
        return;
    };
    let Ok(req) = bosh::parse(first, &cfg.limits) else {
        return;
    };
    let mut rng = Rng::new(c);
    let mut now = Instant::now();
    let mut answered = HashSet::new();
    let mut session =
        match BoshSession::create(cfg.clone(), "0.fuzz".into(), RequestId(0), req, now) {
            Ok(s) => s,
            Err(Action::Respond { body, .. }) => return check_body(&body),
            Err(_) => return,
        };
    let mut next_id = 1;
    let drain = |s: &mut BoshSession, answered: &mut HashSet<u64>| {
        while let Some(a) = s.poll_action() {
            if let Action::Respond {
                request_id, body, ..
            } = a
            {
                assert!(
                    answered.insert(request_id.0),
                    "request {} answered twice",
                    request_id.0
                );
                check_body(&body);
            }
        }
    };
    for seg in segs {
        if let Some(out) = seg.strip_prefix(b"o") {
            if std::str::from_utf8(out).is_ok() {
                session.c2s_output(out, now);
            }
        } else if let Ok(req) = bosh::parse(seg, &cfg.limits) {
            session.handle_request(RequestId(next_id), req, now);
            next_id += 1;
        }
        drain(&mut session, &mut answered);
        now += Duration::from_millis(u64::from(rng.next() % 70_000));
        if session.next_timeout().is_some_and(|t| t <= now) {
            session.handle_timeout(now);
        }
        drain(&mut session, &mut answered);
        if session.is_terminated() {
            break;
        }
    }
    session.c2s_closed(now);
    drain(&mut session, &mut answered);
});
