//! Cluster tests of disco, version, time, last and register (store jobs run inline in `pump`).

use std::net::IpAddr;

use super::testing::{error_condition, World, HOST};
use crate::jid::BareJid;
use crate::shard::ConnMsg;
use crate::xml::{Element, Stanza};
use crate::xmpp::{ns, StreamErrorCondition};

const ALL: &str =
    "[modules.ping]\n[modules.version]\n[modules.time]\n[modules.last]\n[modules.register]\n[modules.disco]\n";

fn query(s: &Stanza, ns_: &str) -> Element {
    let t = s.tree().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        t.attr("type"),
        Some("result"),
        "{}",
        String::from_utf8_lossy(s.bytes())
    );
    let found = t.child_elements().find(|c| c.ns == ns_).cloned();
    found.unwrap_or_else(|| panic!("no {ns_} payload: {}", String::from_utf8_lossy(s.bytes())))
}

fn features(q: &Element) -> Vec<String> {
    q.child_elements()
        .filter(|c| c.name == "feature")
        .filter_map(|c| c.attr("var").map(str::to_owned))
        .collect()
}

fn identity(q: &Element) -> (String, String) {
    let id = q.get_child("identity", ns::DISCO_INFO);
    let attr = |k| id.and_then(|i| i.attr(k)).unwrap_or_default().to_owned();
    (attr("category"), attr("type"))
}

fn disco(
    world: &mut World,
    user: &mut super::testing::User,
    to: &str,
    node: Option<&str>,
) -> Stanza {
    let node = node.map_or(String::new(), |n| format!(" node='{n}'"));
    world.iq(
        user,
        &format!(
            "<iq type='get' id='d1' to='{to}'><query xmlns='{}'{node}/></iq>",
            ns::DISCO_INFO
        ),
    )
}

#[test]
fn server_disco_lists_enabled_modules_and_declared_features() {
    let mut w = World::new(2, ALL);
    let mut alice = w.connect(0, "alice@example.com/r", None);
    let info = query(&disco(&mut w, &mut alice, HOST, None), ns::DISCO_INFO);
    assert_eq!(identity(&info), ("server".into(), "im".into()));
    let f = features(&info);
    for want in [
        ns::DISCO_INFO,
        ns::DISCO_ITEMS,
        ns::PING,
        super::version::NS,
        super::time::NS,
        super::last::NS,
        super::register::form::NS,
    ] {
        assert!(f.iter().any(|x| x == want), "{want} missing from {f:?}");
    }
    let mut sorted = f.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(f, sorted, "sorted, no duplicates");

    // Without version and time, and with a module declaring a non-IQ feature.
    let mut w = World::new(1, "[modules.ping]\n[modules.disco]\n");
    // A module declaring a feature before disco starts (what offline/carbons will do).
    let mut cluster = crate::shard::cluster::Cluster::new(1, &[HOST]);
    super::disco::add_server_feature(&mut cluster.shards[0].ext, HOST, "msgoffline");
    super::disco::start(&mut cluster.shards[0], &[HOST.to_owned()]);
    let declared = super::disco::server_features(&cluster.shards[0], HOST);
    assert!(declared.iter().any(|x| x == "msgoffline"), "{declared:?}");
    let mut bob = w.connect(0, "bob@example.com/r", None);
    let f = features(&query(&disco(&mut w, &mut bob, HOST, None), ns::DISCO_INFO));
    assert!(f.iter().any(|x| x == ns::PING));
    assert!(
        !f.iter()
            .any(|x| x == super::version::NS || x == super::time::NS),
        "{f:?}"
    );
    assert!(!f.iter().any(|x| x == "msgoffline"));
}

#[test]
fn disco_nodes_items_and_accounts() {
    let mut w = World::new(2, ALL);
    let mut alice = w.connect(0, "alice@example.com/r", None);
    let mut bob = w.connect(1, "bob@example.com/r", None);
    let r = disco(&mut w, &mut alice, HOST, Some("x"));
    assert_eq!(error_condition(&r).as_deref(), Some("item-not-found"));
    let items = w.iq(
        &mut alice,
        &format!(
            "<iq type='get' id='i' to='{HOST}'><query xmlns='{}'/></iq>",
            ns::DISCO_ITEMS
        ),
    );
    assert_eq!(query(&items, ns::DISCO_ITEMS).child_elements().count(), 0);
    // Own account (bob's home shard may differ from his connection's).
    let own = query(
        &disco(&mut w, &mut bob, "bob@example.com", None),
        ns::DISCO_INFO,
    );
    assert_eq!(identity(&own), ("account".into(), "registered".into()));
    let f = features(&own);
    assert!(f.iter().any(|x| x == super::last::NS), "{f:?}");
    // Someone else's account: nothing revealed.
    let other = disco(&mut w, &mut alice, "bob@example.com", None);
    assert_eq!(
        error_condition(&other).as_deref(),
        Some("service-unavailable")
    );
}

#[test]
fn version_reveals_os_only_when_asked() {
    for (opts, os) in [("", false), ("os = true", true)] {
        let mut w = World::new(1, &format!("[modules.version]\n{opts}\n"));
        let mut a = w.connect(0, "alice@example.com/r", None);
        let r = w.iq(
            &mut a,
            "<iq type='get' id='v' to='example.com'><query xmlns='jabber:iq:version'/></iq>",
        );
        let q = query(&r, super::version::NS);
        let text = |n| q.get_child(n, super::version::NS).map(|e| e.text());
        assert_eq!(text("name").as_deref(), Some("petrel"));
        assert_eq!(text("version").as_deref(), Some(env!("CARGO_PKG_VERSION")));
        assert_eq!(text("os").is_some(), os);
    }
}

#[test]
fn entity_time_is_now() {
    let mut w = World::new(1, "[modules.time]\n");
    let mut a = w.connect(0, "alice@example.com/r", None);
    let r = w.iq(
        &mut a,
        "<iq type='get' id='t' to='example.com'><time xmlns='urn:xmpp:time'/></iq>",
    );
    let t = query(&r, super::time::NS);
    let utc = t
        .get_child("utc", super::time::NS)
        .map(|e| e.text())
        .unwrap_or_default();
    let parsed = time::OffsetDateTime::parse(&utc, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{e}: {utc}"));
    let skew = (time::OffsetDateTime::now_utc() - parsed).abs();
    assert!(skew < time::Duration::seconds(5), "{utc}");
    assert_eq!(
        t.get_child("tzo", super::time::NS)
            .map(|e| e.text())
            .as_deref(),
        Some("+00:00")
    );
}

fn last(w: &mut World, user: &mut super::testing::User, to: &str) -> Stanza {
    w.iq(
        user,
        &format!("<iq type='get' id='l' to='{to}'><query xmlns='jabber:iq:last'/></iq>"),
    )
}

#[test]
fn last_activity_of_accounts_and_server() {
    let mut w = World::new(2, ALL);
    for u in ["alice@example.com", "bob@example.com"] {
        let jid = crate::jid::BareJid::parse(u).unwrap_or_else(|e| panic!("{e}"));
        w.store()
            .add_user(&jid, &crate::auth::ScramSecrets::derive("pw", 16))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let mut a1 = w.connect(0, "alice@example.com/one", Some(0));
    let mut a2 = w.connect(1, "alice@example.com/two", None);
    let up = query(&last(&mut w, &mut a2, HOST), super::last::NS);
    assert!(up.attr("seconds").is_some_and(|s| s.parse::<u64>().is_ok()));
    // One available resource: 0.
    let q = query(&last(&mut w, &mut a2, "alice@example.com"), super::last::NS);
    assert_eq!(q.attr("seconds"), Some("0"));
    // The available resource leaves with a status.
    w.send(
        &mut a1,
        "<presence type='unavailable'><status>gone fishing</status></presence>",
    );
    let q = query(&last(&mut w, &mut a2, "alice@example.com"), super::last::NS);
    assert_eq!(q.text(), "gone fishing");
    let secs: i64 = q.attr("seconds").and_then(|s| s.parse().ok()).unwrap_or(-1);
    assert!((0..5).contains(&secs), "logout was just now: {secs}");
    // Others may not ask; an account never seen has nothing.
    let mut bob = w.connect(1, "bob@example.com/r", None);
    let r = last(&mut w, &mut bob, "alice@example.com");
    assert_eq!(error_condition(&r).as_deref(), Some("forbidden"));
    let r = last(&mut w, &mut bob, "bob@example.com");
    assert_eq!(error_condition(&r).as_deref(), Some("item-not-found"));
    // RFC 6121 §8.5.1: no such account.
    let r = last(&mut w, &mut bob, "nobody@example.com");
    assert_eq!(error_condition(&r).as_deref(), Some("service-unavailable"));
}

const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

fn pre_auth(w: &World, xml: &str, ip: IpAddr) -> String {
    let s = Stanza::parse(xml.as_bytes().to_vec()).unwrap_or_else(|e| panic!("{e}"));
    let bytes = match super::register::pre_auth(&w.cluster.shards[0].ext, &s, HOST, ip) {
        super::register::PreAuth::Reply(b) => b,
        super::register::PreAuth::Job(job) => job(w.store()),
    };
    String::from_utf8(bytes).unwrap_or_default()
}

fn reg(user: &str, pw: &str) -> String {
    format!(
        "<iq type='set' id='r'><query xmlns='jabber:iq:register'><username>{user}</username><password>{pw}</password></query></iq>"
    )
}

#[test]
fn registration_before_auth() {
    let w = World::new(
        1,
        "[modules.register]\nip_rate_limit = 2\nmin_password_length = 6\n",
    );
    let form = pre_auth(
        &w,
        "<iq type='get' id='f'><query xmlns='jabber:iq:register'/></iq>",
        IP,
    );
    assert!(
        form.contains("<username/>") && form.contains("<password/>"),
        "{form}"
    );
    assert_eq!(
        pre_auth(&w, &reg("carol", "secret1"), IP),
        "<iq type='result' id='r'/>"
    );
    let jid = BareJid::parse("carol@example.com").unwrap_or_else(|e| panic!("{e}"));
    let secrets = w.store().get_secrets(&jid).ok().flatten();
    assert!(secrets.is_some_and(|s| s.verify_plain("secret1")));
    assert!(pre_auth(&w, &reg("Carol", "secret2"), IP).contains("<conflict"));
    assert!(pre_auth(&w, &reg("bad@name", "secret1"), IP).contains("<not-acceptable"));
    assert!(pre_auth(&w, &reg("dave", "short"), IP).contains("<not-acceptable"));
    assert!(pre_auth(&w, &reg("dave", "secret1"), IP).contains("type='result'"));
    let limited = pre_auth(&w, &reg("erin", "secret1"), IP);
    assert!(limited.contains("<resource-constraint"), "{limited}");
    let other_ip = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));
    assert!(pre_auth(&w, &reg("erin", "secret1"), other_ip).contains("type='result'"));
    let removal = "<iq type='set' id='x'><query xmlns='jabber:iq:register'><remove/></query></iq>";
    assert!(pre_auth(&w, removal, IP).contains("<not-authorized"));
    // Module off: service-unavailable.
    let off = World::new(1, "[modules.ping]\n");
    assert!(pre_auth(&off, &reg("zed", "secret1"), IP).contains("<service-unavailable"));
}

#[test]
fn password_change_and_account_removal() {
    let mut w = World::new(2, "[modules.register]\n");
    let jid = BareJid::parse("alice@example.com").unwrap_or_else(|e| panic!("{e}"));
    let old = crate::auth::ScramSecrets::derive("old password", 4096);
    w.store()
        .add_user(&jid, &old)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut a = w.connect(1, "alice@example.com/r", None);
    let form = w.iq(
        &mut a,
        "<iq type='get' id='g' to='example.com'><query xmlns='jabber:iq:register'/></iq>",
    );
    let q = query(&form, super::register::form::NS);
    assert!(q
        .get_child("registered", super::register::form::NS)
        .is_some());
    // Someone else's name: refused.
    let r = w.iq(
        &mut a,
        &reg("bob", "new password").replace("type='set'", "type='set' to='example.com'"),
    );
    assert_eq!(error_condition(&r).as_deref(), Some("not-authorized"));
    let r = w.iq(
        &mut a,
        &reg("alice", "new password").replace("type='set'", "type='set' to='example.com'"),
    );
    assert_eq!(
        r.type_().as_deref(),
        Some("result"),
        "{}",
        String::from_utf8_lossy(r.bytes())
    );
    let s = w.store().get_secrets(&jid).ok().flatten();
    assert!(s.is_some_and(|s| s.verify_plain("new password") && !s.verify_plain("old password")));
    // Removal: the result, then the stream closes.
    w.send(
        &mut a,
        "<iq type='set' id='rm'><query xmlns='jabber:iq:register'><remove/></query></iq>",
    );
    match a.mb.pop() {
        Some(ConnMsg::Deliver(acc)) => {
            assert_eq!(acc.stanza.id().as_deref(), Some("rm"));
            assert_eq!(acc.stanza.type_().as_deref(), Some("result"));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        a.mb.pop(),
        Some(ConnMsg::Close(StreamErrorCondition::NotAuthorized))
    ));
    assert!(w.store().get_secrets(&jid).ok().flatten().is_none());
}

#[test]
fn a_component_may_not_claim_a_module_service_domain() {
    let text = |domain: &str| {
        format!(
            "[general]\nhosts = [\"{HOST}\"]\n[[listen.c2s]]\nport = 5222\n[modules.muc]\n[components.\"{domain}\"]\npassword = \"x\"\n"
        )
    };
    let parse = |t: &str| {
        crate::config::Config::parse(t, std::path::Path::new("t.toml"))
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let clash = parse(&text(&format!("conference.{HOST}")));
    let err = super::check(&clash).err().map(|e| e.to_string());
    assert_eq!(
        err,
        Some(format!(
            "components.\"conference.{HOST}\": a component domain must not be a module's service domain"
        ))
    );
    assert!(super::check(&parse(&text(&format!("bot.{HOST}")))).is_ok());
}
