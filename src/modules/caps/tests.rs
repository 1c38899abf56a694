use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::cache::{Cache, Claim, Claims};
use super::ver::{self, CapsError};
use super::*;
use crate::modules::testing::{World, HOST};
use crate::shard::ConnMsg;
use crate::xml::Stanza;

use crate::xml::test_element as el;

/// XEP-0115 §5.2.
const SIMPLE: &str = "<query xmlns='http://jabber.org/protocol/disco#info' node='http://code.google.com/p/exodus#QgayPKawpkPSDYmwT/WM94uAlu0='>\
<identity category='client' name='Exodus 0.9.1' type='pc'/>\
<feature var='http://jabber.org/protocol/caps'/>\
<feature var='http://jabber.org/protocol/disco#info'/>\
<feature var='http://jabber.org/protocol/disco#items'/>\
<feature var='http://jabber.org/protocol/muc'/>\
</query>";
const SIMPLE_VER: &str = "QgayPKawpkPSDYmwT/WM94uAlu0=";

/// XEP-0115 §5.3.
const COMPLEX: &str = "<query xmlns='http://jabber.org/protocol/disco#info' node='http://psi-im.org#q07IKJEyjvHSyhy//CH0CxmKi8w='>\
<identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>\
<identity xml:lang='el' category='client' name='Ψ 0.11' type='pc'/>\
<feature var='http://jabber.org/protocol/caps'/>\
<feature var='http://jabber.org/protocol/disco#info'/>\
<feature var='http://jabber.org/protocol/disco#items'/>\
<feature var='http://jabber.org/protocol/muc'/>\
<x xmlns='jabber:x:data' type='result'>\
<field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value></field>\
<field var='ip_version'><value>ipv4</value><value>ipv6</value></field>\
<field var='os'><value>Mac</value></field>\
<field var='os_version'><value>10.5.1</value></field>\
<field var='software'><value>Psi</value></field>\
<field var='software_version'><value>0.11</value></field>\
</x></query>";
const COMPLEX_VER: &str = "q07IKJEyjvHSyhy//CH0CxmKi8w=";

fn caps(ver: &str, hash: &str) -> CapsRef {
    CapsRef {
        node: "http://example.org/client".into(),
        ver: ver.into(),
        hash: hash.into(),
    }
}

#[test]
fn parses_hashed_caps_and_ignores_legacy_ones() {
    let p = el("<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='http://psi-im.org' ver='q07IKJEyjvHSyhy//CH0CxmKi8w='/></presence>");
    let want = CapsRef {
        node: "http://psi-im.org".into(),
        ver: COMPLEX_VER.into(),
        hash: "sha-1".into(),
    };
    assert_eq!(parse(&p), Some(want.clone()));
    let s = Stanza::from_element(&p);
    assert_eq!(parse(&s), Some(want));
    let legacy = el("<presence><c xmlns='http://jabber.org/protocol/caps' node='http://psi-im.org' ver='0.11' ext='a b'/></presence>");
    assert_eq!(parse(&legacy), None);
    let other_ns = el("<presence><c xmlns='urn:other' hash='sha-1' node='n' ver='v'/></presence>");
    assert_eq!(parse(&other_ns), None);
    assert_eq!(parse(&Stanza::from_element(&el("<presence/>"))), None);
}

#[test]
fn verification_strings_and_hashes_of_the_xep_examples() {
    let (info, loose) = ver::parse_info(&el(SIMPLE)).unwrap_or_else(|e| panic!("{e}"));
    assert!(loose.is_empty());
    assert_eq!(
        ver::verification_string(&info, &[]),
        "client/pc//Exodus 0.9.1<http://jabber.org/protocol/caps<http://jabber.org/protocol/disco#info<http://jabber.org/protocol/disco#items<http://jabber.org/protocol/muc<"
    );
    assert_eq!(ver::ver(&info, "sha-1").as_deref(), Ok(SIMPLE_VER));
    let (info, _) = ver::parse_info(&el(COMPLEX)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ver::verification_string(&info, &[]),
        "client/pc/el/Ψ 0.11<client/pc/en/Psi 0.11<http://jabber.org/protocol/caps<http://jabber.org/protocol/disco#info<http://jabber.org/protocol/disco#items<http://jabber.org/protocol/muc<urn:xmpp:dataforms:softwareinfo<ip_version<ipv4<ipv6<os<Mac<os_version<10.5.1<software<Psi<software_version<0.11<"
    );
    assert_eq!(ver::ver(&info, "sha-1").as_deref(), Ok(COMPLEX_VER));
    let verified = ver::verify(&el(COMPLEX), &caps(COMPLEX_VER, "sha-1"));
    assert_eq!(
        verified
            .as_ref()
            .map(|i| i.has("http://jabber.org/protocol/muc")),
        Ok(true)
    );
    assert_eq!(verified.map(|i| i.forms.len()), Ok(1));
}

#[test]
fn other_hash_functions_and_mismatches() {
    let (info, _) = ver::parse_info(&el(SIMPLE)).unwrap_or_else(|e| panic!("{e}"));
    let s256 = ver::ver(&info, "sha-256").unwrap_or_default();
    assert_eq!(s256.len(), 44);
    assert!(ver::verify(&el(SIMPLE), &caps(&s256, "sha-256")).is_ok());
    assert_eq!(
        ver::verify(&el(SIMPLE), &caps(SIMPLE_VER, "sha-256")),
        Err(CapsError::Mismatch)
    );
    assert_eq!(
        ver::verify(&el(SIMPLE), &caps(SIMPLE_VER, "md5")),
        Err(CapsError::UnsupportedHash("md5".into()))
    );
    assert!(!ver::hash_supported("md5") && ver::hash_supported("sha-512"));
    // One feature more than the hash covers.
    let extra = SIMPLE.replace("</query>", "<feature var='urn:xmpp:extra'/></query>");
    assert_eq!(
        ver::verify(&el(&extra), &caps(SIMPLE_VER, "sha-1")),
        Err(CapsError::Mismatch)
    );
}

#[test]
fn ill_formed_answers_are_refused() {
    let form = |values: &str| {
        format!("<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE' type='hidden'>{values}</field></x>")
    };
    let one = form("<value>urn:a</value>");
    for (extra, want) in [
        (
            "<feature var='http://jabber.org/protocol/muc'/>".to_owned(),
            CapsError::BadFeature,
        ),
        (
            "<identity category='client' name='Exodus 0.9.1' type='pc'/>".to_owned(),
            CapsError::DuplicateIdentity,
        ),
        (format!("{one}{one}"), CapsError::BadForm),
        (
            form("<value>urn:a</value><value>urn:b</value>"),
            CapsError::BadForm,
        ),
    ] {
        let xml = SIMPLE.replace("</query>", &format!("{extra}</query>"));
        assert_eq!(ver::parse_info(&el(&xml)).err(), Some(want), "{extra}");
    }
    // A form without FORM_TYPE is ignored: the hash is the one without it.
    let no_type = SIMPLE.replace(
        "</query>",
        "<x xmlns='jabber:x:data' type='result'><field var='a'><value>b</value></field></x></query>",
    );
    assert!(ver::verify(&el(&no_type), &caps(SIMPLE_VER, "sha-1")).is_ok());
    assert_eq!(
        ver::parse_info(&el("<query xmlns='urn:other'/>")).err(),
        Some(CapsError::NotDiscoInfo)
    );
}

#[test]
fn a_form_type_that_is_not_hidden_is_accepted_either_way() {
    let shown = COMPLEX.replace("var='FORM_TYPE' type='hidden'", "var='FORM_TYPE'");
    // Hashed with the form (as the XEP example) and without it (as §5.4 says).
    assert!(ver::verify(&el(&shown), &caps(COMPLEX_VER, "sha-1")).is_ok());
    let (without, _) = ver::parse_info(&el(&shown)).unwrap_or_else(|e| panic!("{e}"));
    let v = ver::ver(&without, "sha-1").unwrap_or_default();
    assert!(ver::verify(&el(&shown), &caps(&v, "sha-1")).is_ok());
}

#[test]
fn notify_and_has() {
    let info = CapsInfo {
        features: ["urn:xmpp:avatar:metadata+notify".to_owned()].into(),
        ..CapsInfo::default()
    };
    assert!(info.notify("urn:xmpp:avatar:metadata"));
    assert!(!info.notify("urn:xmpp:omemo:2:devices"));
    assert!(info.has("urn:xmpp:avatar:metadata+notify"));
}

#[test]
fn the_cache_forgets_the_oldest_past_its_bounds() {
    let mut c = Cache::new(3, usize::MAX);
    for i in 0..5 {
        c.insert(format!("v{i}"), Rc::new(CapsInfo::default()));
    }
    assert_eq!(c.len(), 3);
    assert!(c.get("v0").is_none() && c.get("v1").is_none());
    assert!(c.get("v2").is_some() && c.get("v4").is_some());
    let weight = CapsInfo::default().weight();
    let mut c = Cache::new(100, weight * 2);
    for i in 0..5 {
        c.insert(format!("v{i}"), Rc::new(CapsInfo::default()));
    }
    assert_eq!(c.len(), 2);
    assert!(c.get("v3").is_some() && c.get("v4").is_some());
}

#[test]
fn claims_let_one_query_out_and_remember_failures_for_a_while() {
    let now = Instant::now();
    let ttl = Duration::from_secs(60);
    let mut c = Claims::new(2, ttl, ttl * 10);
    assert_eq!(c.claim("a", "u1@x", now), Claim::Granted);
    assert_eq!(c.claim("a", "u2@x", now), Claim::Busy);
    assert_eq!(c.claim("b", "u1@x", now), Claim::Granted);
    assert_eq!(c.claim("c", "u1@x", now), Claim::Full);
    // A claim whose answer never came expires.
    assert_eq!(c.claim("a", "u1@x", now + ttl * 2), Claim::Granted);
    c.done("b");
    c.failed("a", "u1@x", now);
    assert_eq!(c.claim("a", "u1@x", now + ttl), Claim::Failed);
    assert_eq!(c.claim("a", "u1@x", now + ttl * 11), Claim::Granted);
    // Failures are bounded too.
    for i in 0..10 {
        c.failed(&format!("f{i}"), "u1@x", now);
    }
    assert!(c.failed_len() <= 3);
}

#[test]
fn one_account_failing_a_ver_does_not_keep_others_from_being_asked() {
    let now = Instant::now();
    let ttl = Duration::from_secs(60);
    let mut c = Claims::new(100, ttl, ttl * 10);
    for (i, account) in ["mallory@x", "m2@x", "m3@x"].iter().enumerate() {
        assert_eq!(c.claim("v", account, now), Claim::Granted, "account {i}");
        c.failed("v", account, now);
        // The account that failed is not asked again.
        assert_eq!(c.claim("v", account, now), Claim::Failed);
    }
    // Past FAILING_ACCOUNTS distinct accounts, nobody is asked until the failure expires.
    assert_eq!(c.claim("v", "alice@x", now), Claim::Failed);
    assert_eq!(c.claim("v", "alice@x", now + ttl * 11), Claim::Granted);
}

#[test]
fn the_server_ver_matches_its_stream_feature() {
    let features = vec![ns::DISCO_INFO.to_owned(), ns::PING.to_owned()];
    let v = server_ver(&features);
    let s = String::from_utf8(stream_feature(&features)).unwrap_or_default();
    assert!(s.contains(&format!("ver='{v}'")), "{s}");
    assert!(s.contains("node='https://petrel.im'") && s.contains("hash='sha-1'"));
    let direct = ver::hash(
        "sha-1",
        format!("server/im//petrel<{}<{}<", ns::DISCO_INFO, ns::PING).as_bytes(),
    );
    assert_eq!(direct.as_deref(), Ok(v.as_str()));
}

/// The next stanza in `user`'s mailbox.
fn next(user: &crate::modules::testing::User) -> Option<Stanza> {
    loop {
        match user.mb.pop()? {
            ConnMsg::Deliver(acc) => return Some(acc.into_stanza()),
            _ => continue,
        }
    }
}

/// The disco#info queries in `user`'s mailbox: (id, node).
fn queries(user: &crate::modules::testing::User) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while let Some(s) = next(user) {
        let Ok(t) = s.tree() else { continue };
        if let Some(q) = t.get_child("query", ns::DISCO_INFO) {
            if t.attr("type") == Some("get") {
                out.push((
                    t.attr("id").unwrap_or_default().to_owned(),
                    q.attr("node").unwrap_or_default().to_owned(),
                ));
            }
        }
    }
    out
}

fn presence(ver: &str) -> String {
    format!("<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='http://code.google.com/p/exodus' ver='{ver}'/></presence>")
}

fn answer(id: &str, body: &str) -> String {
    format!("<iq type='result' id='{id}' to='{HOST}'>{body}</iq>")
}

#[test]
fn learns_once_on_every_shard_and_ignores_forged_answers() {
    let mut w = World::new(2, "[modules.presence]\n[modules.caps]\n");
    let seen = Rc::new(Cell::new(0));
    for shard in &mut w.cluster.shards {
        let seen = seen.clone();
        on_learned(&mut shard.ext, 50, "test", move |l, _| {
            assert_eq!(l.ver, SIMPLE_VER);
            seen.set(seen.get() + 1);
            HookResult::Continue
        });
    }
    let mut alice = w.connect(1, &format!("alice@{HOST}/a"), None);
    let mut mallory = w.connect(1, &format!("mallory@{HOST}/m"), None);
    w.send(&mut alice, &presence(SIMPLE_VER));
    let asked = queries(&alice);
    assert_eq!(asked.len(), 1, "{asked:?}");
    let (id, node) = &asked[0];
    assert_eq!(
        node,
        &format!("http://code.google.com/p/exodus#{SIMPLE_VER}")
    );
    // Someone else answering with the query's id changes nothing.
    w.send(&mut mallory, &answer(id, SIMPLE));
    assert_eq!(seen.get(), 0);
    assert!(features(&w.cluster.shards[0].ext, SIMPLE_VER).is_none());
    // While the query is under way, the same ver from another client is not asked again.
    let mut bob = w.connect(0, &format!("bob@{HOST}/b"), None);
    w.send(&mut bob, &presence(SIMPLE_VER));
    assert!(queries(&bob).is_empty());
    w.send(&mut alice, &answer(id, SIMPLE));
    assert_eq!(seen.get(), 2);
    for shard in &w.cluster.shards {
        let info = features(&shard.ext, SIMPLE_VER).unwrap_or_default();
        assert!(info.has("http://jabber.org/protocol/muc"));
    }
    w.send(&mut bob, &presence(SIMPLE_VER));
    assert!(queries(&bob).is_empty());
}

#[test]
fn an_answer_that_does_not_verify_is_not_cached_nor_asked_again() {
    let mut w = World::new(2, "[modules.presence]\n[modules.caps]\n");
    let bogus = "AAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let mut alice = w.connect(0, &format!("alice@{HOST}/a"), None);
    w.send(&mut alice, &presence(bogus));
    let asked = queries(&alice);
    assert_eq!(asked.len(), 1);
    w.send(&mut alice, &answer(&asked[0].0, SIMPLE));
    assert!(features(&w.cluster.shards[0].ext, bogus).is_none());
    assert!(features(&w.cluster.shards[1].ext, bogus).is_none());
    // Not asked of the same account again; another account is asked (see FAILING_ACCOUNTS).
    let mut alice2 = w.connect(1, &format!("alice@{HOST}/a2"), None);
    w.send(&mut alice2, &presence(bogus));
    assert!(queries(&alice2).is_empty());
    let mut bob = w.connect(1, &format!("bob@{HOST}/b"), None);
    w.send(&mut bob, &presence(bogus));
    assert_eq!(queries(&bob).len(), 1);
    // An error answer fails the same way.
    w.send(&mut bob, &presence(COMPLEX_VER));
    let asked = queries(&bob);
    assert_eq!(asked.len(), 1);
    w.send(
        &mut bob,
        &format!(
            "<iq type='error' id='{}' to='{HOST}'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
            asked[0].0
        ),
    );
    let mut bob2 = w.connect(0, &format!("bob@{HOST}/b2"), None);
    w.send(&mut bob2, &presence(COMPLEX_VER));
    assert!(queries(&bob2).is_empty());
}

#[test]
fn no_answer_in_time_fails_like_a_wrong_one() {
    let mut w = World::new(2, "[modules.caps]\n");
    let mut alice = w.connect(1, &format!("alice@{HOST}/a"), None);
    w.send(&mut alice, &presence(SIMPLE_VER));
    let asked = queries(&alice);
    assert_eq!(asked.len(), 1);
    let later = Instant::now() + QUERY_TIMEOUT + Duration::from_secs(2);
    w.cluster.shards[1].expire_iqs(later);
    w.cluster.pump();
    // The late answer finds nothing waiting for it.
    w.send(&mut alice, &answer(&asked[0].0, SIMPLE));
    assert!(features(&w.cluster.shards[1].ext, SIMPLE_VER).is_none());
    let mut alice2 = w.connect(0, &format!("alice@{HOST}/a2"), None);
    w.send(&mut alice2, &presence(SIMPLE_VER));
    assert!(queries(&alice2).is_empty());
    // A client that went away without answering does not keep other accounts from being asked.
    let mut bob = w.connect(0, &format!("bob@{HOST}/b"), None);
    w.send(&mut bob, &presence(SIMPLE_VER));
    assert_eq!(queries(&bob).len(), 1);
}

#[test]
fn options() {
    let t = |s: &str| s.parse::<toml::Table>().unwrap_or_default();
    assert_eq!(CapsOptions::from_table(&t("")), Ok(CapsOptions::default()));
    assert_eq!(
        CapsOptions::from_table(&t("max_entries = 5\nretry_after = 7")),
        Ok(CapsOptions {
            max_entries: 5,
            retry_after: Duration::from_secs(7)
        })
    );
    assert!(CapsOptions::from_table(&t("max_entries = 0")).is_err());
    assert!(CapsOptions::from_table(&t("retry_after = 0")).is_err());
    assert!(CapsOptions::from_table(&t("size = 1")).is_err());
}

#[test]
fn the_default_configuration_advertises_the_server_caps() {
    let config = crate::config::Config::default_embedded();
    let c2s = crate::modules::c2s_options(&config).unwrap_or_else(|e| panic!("{e}"));
    let features = String::from_utf8(c2s.post_auth_features).unwrap_or_default();
    let v = server_ver(&crate::modules::server_disco_features(&config));
    assert!(
        features.contains(&format!(
            "<c xmlns='{}' hash='sha-1' node='{SERVER_NODE}' ver='{v}'/>",
            ver::NS_CAPS
        )),
        "{features}"
    );
}

/// `Shard::send_iq` from one shard to a client on another: the answer reaches local delivery on
/// the client's shard and is handed to the waiting shard by its id.
#[test]
fn an_answer_on_another_shard_reaches_the_waiting_one() {
    let mut w = World::new(2, "");
    let alice = w.connect(1, &format!("alice@{HOST}/a"), None);
    let got: Rc<Cell<Option<bool>>> = Rc::new(Cell::new(None));
    let seen = got.clone();
    let sent = w.cluster.shards[0].send_iq(
        "get",
        Element::new("ping", ns::PING),
        Jid::parse(HOST).unwrap_or_else(|e| panic!("{e}")),
        Jid::parse(&format!("alice@{HOST}/a")).unwrap_or_else(|e| panic!("{e}")),
        QUERY_TIMEOUT,
        Box::new(move |s, answer| {
            assert_eq!(s.id, ShardId(0));
            seen.set(Some(matches!(answer, IqAnswer::Result(_))));
        }),
    );
    assert!(sent.is_ok());
    w.cluster.shards[0].drain_to_route();
    w.cluster.pump();
    let iq = next(&alice).unwrap_or_else(|| panic!("no IQ delivered"));
    let id = iq.id().unwrap_or_default().into_owned();
    assert!(id.starts_with("pq-0-"), "{id}");
    let mut alice = alice;
    w.send(&mut alice, &answer(&id, ""));
    assert_eq!(got.get(), Some(true));
}
