//! Roster and presence across shards, with `Cluster` (store jobs run inline in `pump`).

use std::rc::Rc;

use crate::c2s::route::{unbind, user_receive, user_send, Session};
use crate::jid::{BareJid, FullJid};
use crate::modules::roster::{self, RosterOpts};
use crate::shard::cluster::Cluster;
use crate::shard::{home_shard, ConnMsg, Mailbox};
use crate::store::Store;
use crate::xml::{Element, Stanza};
use crate::xmpp::ns;

const HOST: &str = "example.com";

struct Net {
    c: Cluster,
    _dir: tempfile::TempDir,
}

struct Client {
    sess: Session,
    mb: Rc<Mailbox>,
    on: usize,
}

fn full(s: &str) -> FullJid {
    FullJid::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn bare(s: &str) -> BareJid {
    BareJid::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

impl Net {
    fn new(shards: usize, opts: RosterOpts) -> Net {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut c = Cluster::new(shards, &[HOST]);
        let hosts = vec![HOST.to_owned()];
        for s in &mut c.shards {
            roster::start(s, &hosts, opts);
            super::start(s, &hosts);
        }
        c.store = Some(Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}")));
        Net { c, _dir: dir }
    }

    /// Binds `jid` on the shard that is NOT its home when there are several (cross-shard paths).
    fn connect(&mut self, jid: &str) -> Client {
        let jid = full(jid);
        let n = self.c.shards.len();
        let on = (home_shard(&jid.bare(), n).index() + 1) % n;
        let (sess, mb) = self.c.connect(on, &jid, None);
        Client { sess, mb, on }
    }

    fn send(&mut self, cl: &mut Client, xml: &str) {
        let mut st =
            Stanza::parse(xml.as_bytes().to_vec()).unwrap_or_else(|e| panic!("{xml}: {e}"));
        st.set_from(cl.sess.jid.as_str());
        user_send(&mut self.c.shards[cl.on], &mut cl.sess, st);
        self.c.pump();
    }

    /// Everything delivered to `cl` since the last call, after the receive hooks.
    fn recv(&mut self, cl: &Client) -> Vec<Element> {
        let mut out = Vec::new();
        while let Some(msg) = cl.mb.pop() {
            if let ConnMsg::Deliver(acc) = msg {
                if let Some(acc) = user_receive(&mut self.c.shards[cl.on], acc) {
                    out.push(acc.stanza.tree().unwrap_or_else(|e| panic!("{e}")));
                }
            }
        }
        self.c.pump();
        out
    }

    fn drop_conn(&mut self, cl: Client) {
        let shard = &mut self.c.shards[cl.on];
        shard.close_conn(cl.sess.session.conn);
        unbind(shard, &cl.sess);
        self.c.pump();
    }

    fn store(&self) -> &Store {
        self.c.store.as_ref().unwrap_or_else(|| panic!("store"))
    }
}

fn ty(el: &Element) -> &str {
    el.attr("type").unwrap_or("")
}

fn presences<'a>(els: &'a [Element], type_: &str, from: &str) -> Vec<&'a Element> {
    els.iter()
        .filter(|e| e.name == "presence" && ty(e) == type_ && e.attr("from") == Some(from))
        .collect()
}

fn pushes(els: &[Element]) -> Vec<Element> {
    els.iter()
        .filter(|e| e.name == "iq" && ty(e) == "set")
        .filter_map(|e| e.get_child("query", ns::ROSTER))
        .filter_map(|q| q.child_elements().next().cloned())
        .collect()
}

fn roster_get(net: &mut Net, cl: &mut Client, ver: Option<&str>) -> Element {
    let v = ver.map(|v| format!(" ver='{v}'")).unwrap_or_default();
    net.send(
        cl,
        &format!("<iq type='get' id='g1'><query xmlns='jabber:iq:roster'{v}/></iq>"),
    );
    let got = net.recv(cl);
    got.into_iter()
        .find(|e| e.name == "iq" && e.attr("id") == Some("g1"))
        .unwrap_or_else(|| panic!("no roster result"))
}

fn error_of(el: &Element) -> Option<String> {
    el.get_child("error", ns::CLIENT)?
        .child_elements()
        .next()
        .map(|c| c.name.clone())
}

fn roster_set(net: &mut Net, cl: &mut Client, item: &str) -> Vec<Element> {
    net.send(
        cl,
        &format!("<iq type='set' id='s1'><query xmlns='jabber:iq:roster'>{item}</query></iq>"),
    );
    net.recv(cl)
}

fn result_of<'a>(els: &'a [Element], id: &str) -> &'a Element {
    els.iter()
        .find(|e| e.name == "iq" && e.attr("id") == Some(id))
        .unwrap_or_else(|| panic!("no reply {id} in {els:?}"))
}

fn for_shards(f: impl Fn(usize)) {
    for n in [1, 2, 3] {
        f(n);
    }
}

#[test]
fn roster_set_push_get_versioning_remove() {
    for_shards(|n| {
        let mut net = Net::new(n, RosterOpts::default());
        let mut a1 = net.connect("alice@example.com/one");
        let mut a2 = net.connect("alice@example.com/two");
        let mut a3 = net.connect("alice@example.com/three");
        let r = roster_get(&mut net, &mut a1, None);
        let q = r
            .get_child("query", ns::ROSTER)
            .unwrap_or_else(|| panic!("query"));
        assert_eq!(q.attr("ver"), Some("0"));
        assert_eq!(q.child_elements().count(), 0);
        roster_get(&mut net, &mut a2, Some("junk"));

        let got = roster_set(
            &mut net,
            &mut a1,
            "<item jid='bob@example.com' name='Bob'><group>Friends</group></item>",
        );
        assert_eq!(ty(result_of(&got, "s1")), "result");
        let p = pushes(&got);
        assert_eq!(p.len(), 1, "{got:?}");
        assert_eq!(p[0].attr("jid"), Some("bob@example.com"));
        assert_eq!(p[0].attr("subscription"), Some("none"));
        assert_eq!(
            p[0].get_child("group", ns::ROSTER).map(|g| g.text()),
            Some("Friends".into())
        );
        // Interested a2 gets the push too; a3 never asked for the roster.
        assert_eq!(pushes(&net.recv(&a2)).len(), 1);
        assert!(pushes(&net.recv(&a3)).is_empty());

        let r = roster_get(&mut net, &mut a3, None);
        let q = r
            .get_child("query", ns::ROSTER)
            .unwrap_or_else(|| panic!("query"));
        assert_eq!(q.attr("ver"), Some("1"));
        assert_eq!(q.child_elements().count(), 1);
        // Same version: empty result (XEP-0237 §4.2).
        let r = roster_get(&mut net, &mut a3, Some("1"));
        assert!(r.get_child("query", ns::ROSTER).is_none());

        // Update keeps subscription, new name; push carries the new version.
        let got = roster_set(
            &mut net,
            &mut a1,
            "<item jid='bob@example.com' name='Bobby' subscription='both'/>",
        );
        let p = pushes(&got);
        assert_eq!(p[0].attr("name"), Some("Bobby"));
        assert_eq!(p[0].attr("subscription"), Some("none"));
        assert_eq!(p[0].get_child("group", ns::ROSTER), None);

        let got = roster_set(
            &mut net,
            &mut a1,
            "<item jid='bob@example.com' subscription='remove'/>",
        );
        assert_eq!(ty(result_of(&got, "s1")), "result");
        assert_eq!(pushes(&got)[0].attr("subscription"), Some("remove"));
        let got = roster_set(
            &mut net,
            &mut a1,
            "<item jid='bob@example.com' subscription='remove'/>",
        );
        assert_eq!(
            error_of(result_of(&got, "s1")).as_deref(),
            Some("item-not-found")
        );
        assert_eq!(
            net.store().roster_version(&bare("alice@example.com")).ok(),
            Some(3)
        );
    });
}

#[test]
fn roster_bad_input_and_limit() {
    let mut net = Net::new(
        2,
        RosterOpts {
            max_items: 2,
            versioning: false,
        },
    );
    let mut a = net.connect("alice@example.com/r");
    let cases = [
        ("<item jid='x@@y'/>", "jid-malformed"),
        ("<item jid='x@y/res'/>", "bad-request"),
        ("<item jid='a@b'/><item jid='c@d'/>", "bad-request"),
        (
            "<item jid='a@b'><group>g</group><group>g</group></item>",
            "bad-request",
        ),
        ("<item jid='a@b'><group/></item>", "not-acceptable"),
    ];
    for (item, cond) in cases {
        let got = roster_set(&mut net, &mut a, item);
        assert_eq!(
            error_of(result_of(&got, "s1")).as_deref(),
            Some(cond),
            "{item}"
        );
    }
    assert_eq!(
        net.store()
            .roster_items(&bare("alice@example.com"))
            .map(|r| r.1.len())
            .ok(),
        Some(0)
    );
    for c in ["a@b", "c@d"] {
        let got = roster_set(&mut net, &mut a, &format!("<item jid='{c}'/>"));
        assert_eq!(ty(result_of(&got, "s1")), "result");
    }
    let got = roster_set(&mut net, &mut a, "<item jid='e@f'/>");
    assert_eq!(
        error_of(result_of(&got, "s1")).as_deref(),
        Some("not-allowed")
    );
    // Updating an existing item is still fine at the limit.
    let got = roster_set(&mut net, &mut a, "<item jid='a@b' name='A'/>");
    assert_eq!(ty(result_of(&got, "s1")), "result");
    // Without versioning, no ver attributes.
    let r = roster_get(&mut net, &mut a, None);
    assert_eq!(
        r.get_child("query", ns::ROSTER).and_then(|q| q.attr("ver")),
        None
    );
    // Another user's roster is forbidden; an account that does not exist is service-unavailable
    // (RFC 6121 §8.5.1).
    net.store()
        .add_user(
            &bare("bob@example.com"),
            &crate::auth::ScramSecrets::derive("pw", 4096),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    for (to, want) in [
        ("bob@example.com", "forbidden"),
        ("nobody@example.com", "service-unavailable"),
    ] {
        net.send(
            &mut a,
            &format!("<iq type='get' id='x' to='{to}'><query xmlns='jabber:iq:roster'/></iq>"),
        );
        let got = net.recv(&a);
        assert_eq!(
            error_of(result_of(&got, "x")).as_deref(),
            Some(want),
            "{to}"
        );
    }
}

/// alice subscribes to bob; bob approves; alice sees bob's presence after the `subscribed`.
#[test]
fn subscription_handshake_both_ways() {
    for_shards(|n| {
        let mut net = Net::new(n, RosterOpts::default());
        let mut a = net.connect("alice@example.com/a");
        let mut b = net.connect("bob@example.com/b");
        roster_get(&mut net, &mut a, None);
        roster_get(&mut net, &mut b, None);
        net.send(&mut a, "<presence/>");
        net.send(&mut b, "<presence><show>away</show></presence>");
        net.recv(&a);
        net.recv(&b);

        net.send(
            &mut a,
            "<presence to='bob@example.com/b' type='subscribe'><status>hi</status></presence>",
        );
        let got_a = net.recv(&a);
        let p = pushes(&got_a);
        assert_eq!(p.len(), 1);
        assert_eq!(
            (p[0].attr("subscription"), p[0].attr("ask")),
            (Some("none"), Some("subscribe"))
        );
        let got_b = net.recv(&b);
        let sub = presences(&got_b, "subscribe", "alice@example.com");
        assert_eq!(sub.len(), 1, "{got_b:?}");
        assert_eq!(sub[0].attr("to"), Some("bob@example.com"));
        assert_eq!(
            sub[0].get_child("status", ns::CLIENT).map(|s| s.text()),
            Some("hi".into())
        );
        assert!(pushes(&got_b).is_empty(), "pending in is not a roster item");

        net.send(
            &mut b,
            "<presence to='alice@example.com' type='subscribed'/>",
        );
        let got_b = net.recv(&b);
        let p = pushes(&got_b);
        assert_eq!(p[0].attr("subscription"), Some("from"));
        let got_a = net.recv(&a);
        let order: Vec<String> = got_a
            .iter()
            .map(|e| format!("{}:{}:{}", e.name, ty(e), e.attr("from").unwrap_or("")))
            .collect();
        let i_sub = order
            .iter()
            .position(|s| s == "presence:subscribed:bob@example.com");
        let i_pres = order
            .iter()
            .position(|s| s == "presence::bob@example.com/b");
        assert!(
            i_sub.is_some() && i_pres.is_some() && i_sub < i_pres,
            "{order:?}"
        );
        assert_eq!(pushes(&got_a)[0].attr("subscription"), Some("to"));
        assert_eq!(pushes(&got_a)[0].attr("ask"), None);

        // The other way: bob subscribes to alice -> both.
        net.send(
            &mut b,
            "<presence to='alice@example.com' type='subscribe'/>",
        );
        net.recv(&b);
        let got_a = net.recv(&a);
        assert_eq!(presences(&got_a, "subscribe", "bob@example.com").len(), 1);
        net.send(&mut a, "<presence to='bob@example.com' type='subscribed'/>");
        assert_eq!(pushes(&net.recv(&a))[0].attr("subscription"), Some("both"));
        let got_b = net.recv(&b);
        assert_eq!(pushes(&got_b)[0].attr("subscription"), Some("both"));
        assert_eq!(
            presences(&got_b, "", "alice@example.com/a").len(),
            1,
            "{got_b:?}"
        );

        // A presence change of alice now reaches bob.
        net.send(&mut a, "<presence><show>dnd</show></presence>");
        let got_b = net.recv(&b);
        assert_eq!(presences(&got_b, "", "alice@example.com/a").len(), 1);

        // bob cancels alice's subscription to him: alice gets unsubscribed + unavailable from b.
        net.send(
            &mut b,
            "<presence to='alice@example.com' type='unsubscribed'/>",
        );
        assert_eq!(pushes(&net.recv(&b))[0].attr("subscription"), Some("to"));
        let got_a = net.recv(&a);
        assert_eq!(
            presences(&got_a, "unsubscribed", "bob@example.com").len(),
            1,
            "{got_a:?}"
        );
        assert_eq!(
            presences(&got_a, "unavailable", "bob@example.com/b").len(),
            1,
            "{got_a:?}"
        );
        assert_eq!(pushes(&got_a)[0].attr("subscription"), Some("from"));

        // alice unsubscribes from... nothing left on her side but bob's subscription to her:
        // bob unsubscribes, alice's item goes to none and bob gets alice's unavailable.
        net.send(
            &mut b,
            "<presence to='alice@example.com' type='unsubscribe'/>",
        );
        assert_eq!(pushes(&net.recv(&b))[0].attr("subscription"), Some("none"));
        let got_a = net.recv(&a);
        assert_eq!(presences(&got_a, "unsubscribe", "bob@example.com").len(), 1);
        assert_eq!(pushes(&got_a)[0].attr("subscription"), Some("none"));
        let got_b = net.recv(&b);
        assert!(presences(&got_b, "", "alice@example.com/a").is_empty());
    });
}

fn befriend(net: &mut Net, a: &mut Client, b: &mut Client, bj: &str, aj: &str) {
    net.send(a, &format!("<presence to='{bj}' type='subscribe'/>"));
    net.send(b, &format!("<presence to='{aj}' type='subscribed'/>"));
    net.send(b, &format!("<presence to='{aj}' type='subscribe'/>"));
    net.send(a, &format!("<presence to='{bj}' type='subscribed'/>"));
    net.recv(a);
    net.recv(b);
}

#[test]
fn login_broadcast_probe_and_logout() {
    for_shards(|n| {
        let mut net = Net::new(n, RosterOpts::default());
        let mut a = net.connect("alice@example.com/a");
        let mut b = net.connect("bob@example.com/b");
        befriend(
            &mut net,
            &mut a,
            &mut b,
            "bob@example.com",
            "alice@example.com",
        );
        net.send(&mut a, "<presence><status>here</status></presence>");
        net.recv(&a);
        net.recv(&b);
        // bob logs in (initial presence): alice gets it, bob gets alice's via the probe.
        net.send(&mut b, "<presence><priority>5</priority></presence>");
        let got_a = net.recv(&a);
        assert_eq!(
            presences(&got_a, "", "bob@example.com/b").len(),
            1,
            "{got_a:?}"
        );
        let got_b = net.recv(&b);
        let ap = presences(&got_b, "", "alice@example.com/a");
        assert_eq!(ap.len(), 1, "{got_b:?}");
        assert_eq!(
            ap[0].get_child("status", ns::CLIENT).map(|s| s.text()),
            Some("here".into())
        );
        // bob's own presence comes back to him too.
        assert_eq!(presences(&got_b, "", "bob@example.com/b").len(), 1);

        // A second resource of bob learns the first one's presence; the first sees the second.
        let mut b2 = net.connect("bob@example.com/b2");
        net.send(&mut b2, "<presence/>");
        let got_b2 = net.recv(&b2);
        assert_eq!(
            presences(&got_b2, "", "bob@example.com/b").len(),
            1,
            "{got_b2:?}"
        );
        assert_eq!(
            presences(&got_b2, "", "alice@example.com/a").len(),
            1,
            "{got_b2:?}"
        );
        // The probe answers go to the new resource only: b had alice's presence already.
        let got_b = net.recv(&b);
        assert_eq!(presences(&got_b, "", "bob@example.com/b2").len(), 1);
        assert!(
            presences(&got_b, "", "alice@example.com/a").is_empty(),
            "{got_b:?}"
        );
        assert_eq!(presences(&net.recv(&a), "", "bob@example.com/b2").len(), 1);

        // Explicit unavailable, then a TCP drop without it.
        net.send(&mut b2, "<presence type='unavailable'/>");
        assert_eq!(
            presences(&net.recv(&a), "unavailable", "bob@example.com/b2").len(),
            1
        );
        assert_eq!(
            presences(&net.recv(&b), "unavailable", "bob@example.com/b2").len(),
            1
        );
        net.drop_conn(b);
        let got_a = net.recv(&a);
        assert_eq!(
            presences(&got_a, "unavailable", "bob@example.com/b").len(),
            1,
            "{got_a:?}"
        );
        // An unavailable session dropping sends nothing more.
        net.drop_conn(b2);
        assert!(net.recv(&a).is_empty());
    });
}

#[test]
fn probe_of_offline_contact_gets_unavailable() {
    for_shards(|n| {
        let mut net = Net::new(n, RosterOpts::default());
        let mut a = net.connect("alice@example.com/a");
        let mut b = net.connect("bob@example.com/b");
        befriend(
            &mut net,
            &mut a,
            &mut b,
            "bob@example.com",
            "alice@example.com",
        );
        net.drop_conn(b);
        let mut a2 = net.connect("alice@example.com/a2");
        net.send(&mut a2, "<presence/>");
        let got = net.recv(&a2);
        assert_eq!(
            presences(&got, "unavailable", "bob@example.com").len(),
            1,
            "{got:?}"
        );
        // A stranger's probe is not answered.
        let mut m = net.connect("mallory@example.com/m");
        net.send(&mut m, "<presence to='alice@example.com' type='probe'/>");
        assert!(net.recv(&m).is_empty());
    });
}

#[test]
fn pending_request_redelivered_at_login_and_preapproval() {
    for_shards(|n| {
        let mut net = Net::new(n, RosterOpts::default());
        let mut a = net.connect("alice@example.com/a");
        net.store()
            .add_user(
                &bare("bob@example.com"),
                &crate::auth::ScramSecrets::derive("pw", 16),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        net.send(&mut a, "<presence to='bob@example.com' type='subscribe'/>");
        net.recv(&a);
        // bob was offline: the request waits for his initial presence.
        let rows = net
            .store()
            .roster_rows(&bare("bob@example.com"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rows.len(), 1, "n={n}");
        assert!(
            rows[0].state.pending_in && rows[0].request.is_some(),
            "{rows:?}"
        );
        let mut b = net.connect("bob@example.com/b");
        assert!(net.recv(&b).is_empty());
        net.send(&mut b, "<presence/>");
        let got = net.recv(&b);
        assert_eq!(
            presences(&got, "subscribe", "alice@example.com").len(),
            1,
            "{got:?}"
        );
        // A repeated request while pending is not delivered again (A.3.1).
        net.send(&mut a, "<presence to='bob@example.com' type='subscribe'/>");
        assert!(presences(&net.recv(&b), "subscribe", "alice@example.com").is_empty());

        // Pre-approval: carol pre-approves alice, then alice's request is answered by the server.
        let mut c = net.connect("carol@example.com/c");
        roster_get(&mut net, &mut c, None);
        net.send(&mut c, "<presence/>");
        net.send(
            &mut c,
            "<presence to='alice@example.com' type='subscribed'/>",
        );
        let got_c = net.recv(&c);
        let p = pushes(&got_c);
        assert_eq!(p[0].attr("approved"), Some("true"), "{got_c:?}");
        assert!(
            presences(&net.recv(&a), "subscribed", "carol@example.com").is_empty(),
            "pre-approval is not routed"
        );
        net.send(&mut a, "<presence/>");
        net.recv(&a);
        net.send(
            &mut a,
            "<presence to='carol@example.com' type='subscribe'/>",
        );
        let got_c = net.recv(&c);
        assert!(presences(&got_c, "subscribe", "alice@example.com").is_empty());
        assert_eq!(pushes(&got_c)[0].attr("subscription"), Some("from"));
        assert_eq!(pushes(&got_c)[0].attr("approved"), None);
        let got_a = net.recv(&a);
        assert_eq!(
            presences(&got_a, "subscribed", "carol@example.com").len(),
            1,
            "{got_a:?}"
        );
    });
}

#[test]
fn directed_presence_is_revoked_on_logout() {
    for_shards(|n| {
        let mut net = Net::new(n, RosterOpts::default());
        let mut a = net.connect("alice@example.com/a");
        let mut d = net.connect("dave@example.com/d");
        net.send(&mut d, "<presence/>");
        net.send(&mut a, "<presence/>");
        net.send(
            &mut a,
            "<presence to='dave@example.com/d'><status>psst</status></presence>",
        );
        let got = net.recv(&d);
        assert_eq!(
            presences(&got, "", "alice@example.com/a").len(),
            1,
            "{got:?}"
        );
        net.drop_conn(a);
        let got = net.recv(&d);
        assert_eq!(
            presences(&got, "unavailable", "alice@example.com/a").len(),
            1,
            "{got:?}"
        );
    });
}

#[test]
fn bad_presence_types_and_self_subscription() {
    let mut net = Net::new(2, RosterOpts::default());
    let mut a = net.connect("alice@example.com/a");
    for xml in [
        "<presence to='bob@example.com' type='bogus' id='p1'/>",
        "<presence to='alice@example.com' type='subscribe' id='p1'/>",
        "<presence type='subscribe' id='p1'/>",
    ] {
        net.send(&mut a, xml);
        let got = net.recv(&a);
        let err = got
            .iter()
            .find(|e| e.name == "presence" && ty(e) == "error")
            .unwrap_or_else(|| panic!("no error for {xml}: {got:?}"));
        assert_eq!(error_of(err).as_deref(), Some("bad-request"), "{xml}");
    }
    assert_eq!(
        net.store()
            .roster_rows(&bare("alice@example.com"))
            .map(|r| r.len())
            .ok(),
        Some(0)
    );
}

#[test]
fn roster_remove_cancels_both_directions() {
    for_shards(|n| {
        let mut net = Net::new(n, RosterOpts::default());
        let mut a = net.connect("alice@example.com/a");
        let mut b = net.connect("bob@example.com/b");
        befriend(
            &mut net,
            &mut a,
            &mut b,
            "bob@example.com",
            "alice@example.com",
        );
        net.send(&mut b, "<presence/>");
        net.send(&mut a, "<presence/>");
        net.recv(&a);
        roster_get(&mut net, &mut b, None);
        net.recv(&b);
        roster_set(
            &mut net,
            &mut a,
            "<item jid='bob@example.com' subscription='remove'/>",
        );
        let got_b = net.recv(&b);
        assert_eq!(
            presences(&got_b, "unsubscribe", "alice@example.com").len(),
            1,
            "{got_b:?}"
        );
        assert_eq!(
            presences(&got_b, "unsubscribed", "alice@example.com").len(),
            1
        );
        assert_eq!(
            presences(&got_b, "unavailable", "alice@example.com/a").len(),
            1
        );
        let last = pushes(&got_b).pop().unwrap_or_else(|| panic!("push"));
        assert_eq!(last.attr("subscription"), Some("none"));
        let bob_items = net
            .store()
            .roster_items(&bare("bob@example.com"))
            .unwrap_or_else(|e| panic!("{e}"))
            .1;
        assert_eq!(bob_items.len(), 1);
        assert_eq!(bob_items[0].state, Default::default());
    });
}

/// Stanzas leaving for remote.test, as the federation runtime would take them.
fn remote_outbox(net: &mut Net) -> Rc<std::cell::RefCell<Vec<Element>>> {
    let out: Rc<std::cell::RefCell<Vec<Element>>> = Rc::default();
    for s in &mut net.c.shards {
        let out = out.clone();
        s.set_remote_handler(Rc::new(move |_, acc| {
            out.borrow_mut()
                .push(acc.stanza.tree().unwrap_or_else(|e| panic!("{e}")))
        }));
    }
    out
}

/// A network of `n` shards whose remote traffic is kept, and alice online with `dnd`.
fn alice_dnd_with_remote_outbox(n: usize) -> (Net, Rc<std::cell::RefCell<Vec<Element>>>, Client) {
    let mut net = Net::new(n, RosterOpts::default());
    let out = remote_outbox(&mut net);
    let mut a = net.connect("alice@example.com/a");
    net.send(&mut a, "<presence><show>dnd</show></presence>");
    net.recv(&a);
    (net, out, a)
}

/// `xml` (with its `from` and `to`) arriving over s2s on shard `at`, routed to its end.
fn arrive(net: &mut Net, xml: &str, at: usize) {
    let st = Stanza::parse(xml.as_bytes().to_vec()).unwrap_or_else(|e| panic!("{e}"));
    let jid = |j: Option<std::borrow::Cow<'_, str>>| {
        crate::jid::Jid::parse(&j.unwrap_or_default()).unwrap_or_else(|e| panic!("{e}"))
    };
    let (from, to) = (jid(st.from()), jid(st.to()));
    let acc = crate::hooks::Acc::new(st, from, to, crate::shard::ShardId(at as u16));
    crate::router::route(&mut net.c.shards[at], acc);
    net.c.shards[at].drain_to_route();
    net.c.pump();
}

#[test]
fn approving_a_remote_subscription_sends_current_presence() {
    for_shards(|n| {
        let (mut net, out, mut a) = alice_dnd_with_remote_outbox(n);
        // rem@remote.test asks, arriving over s2s.
        arrive(
            &mut net,
            "<presence from='rem@remote.test' to='alice@example.com' type='subscribe'/>",
            0,
        );
        assert_eq!(
            presences(&net.recv(&a), "subscribe", "rem@remote.test").len(),
            1
        );
        net.send(&mut a, "<presence to='rem@remote.test' type='subscribed'/>");
        let sent = out.borrow().clone();
        assert_eq!(presences(&sent, "subscribed", "alice@example.com").len(), 1);
        // RFC 6121 §3.1.5: the current presence follows, from the available resource.
        let avail = presences(&sent, "", "alice@example.com/a");
        assert_eq!(avail.len(), 1, "{sent:?}");
        assert_eq!(avail[0].attr("to"), Some("rem@remote.test"));
        assert_eq!(
            avail[0].get_child("show", ns::CLIENT).map(|s| s.text()),
            Some("dnd".into())
        );
    });
}

#[test]
fn remote_subscription_stanzas_to_a_full_jid_count_as_to_the_bare_jid() {
    for_shards(|n| {
        let (mut net, out, mut a) = alice_dnd_with_remote_outbox(n);
        // Arriving over s2s on every shard in turn, so that one of them holds alice's session
        // (a full JID bound on the routing shard is delivered without the home hop).
        for at in 0..n {
            let asker = format!("rem{at}@remote.test");
            arrive(
                &mut net,
                &format!(
                    "<presence from='{asker}/laptop' to='alice@example.com/a' type='subscribe'/>"
                ),
                at,
            );
            // The request is recorded (Pending In) and shown between bare JIDs (RFC 6121 §3.1).
            let item = net
                .store()
                .roster_item(&bare("alice@example.com"), &bare(&asker))
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(item.is_some_and(|i| i.state.pending_in), "shard {at}");
            let got = net.recv(&a);
            let req = presences(&got, "subscribe", &asker);
            assert_eq!(req.len(), 1, "{got:?}");
            assert_eq!(req[0].attr("to"), Some("alice@example.com"));

            // A probe to the full JID is the server's to answer, and the client never sees it:
            // the asker has no subscription yet, so its server is told `unsubscribed` (§4.3.2).
            out.borrow_mut().clear();
            arrive(
                &mut net,
                &format!("<presence from='{asker}' to='alice@example.com/a' type='probe'/>"),
                at,
            );
            let got = net.recv(&a);
            assert!(presences(&got, "probe", &asker).is_empty(), "{got:?}");
            let sent = out.borrow().clone();
            let no = presences(&sent, "unsubscribed", "alice@example.com");
            assert_eq!(no.len(), 1, "{sent:?}");
            assert_eq!(no[0].attr("to"), Some(asker.as_str()));
        }

        // Pre-approved (§3.4): the automatic `subscribed` is followed by alice's presence, as an
        // approval by hand is (§3.1.5).
        net.send(&mut a, "<presence to='pre@remote.test' type='subscribed'/>");
        out.borrow_mut().clear();
        arrive(
            &mut net,
            "<presence from='pre@remote.test' to='alice@example.com/a' type='subscribe'/>",
            n - 1,
        );
        let sent = out.borrow().clone();
        assert_eq!(
            presences(&sent, "subscribed", "alice@example.com").len(),
            1,
            "{sent:?}"
        );
        let avail = presences(&sent, "", "alice@example.com/a");
        assert_eq!(avail.len(), 1, "{sent:?}");
        assert_eq!(avail[0].attr("to"), Some("pre@remote.test"));
    });
}

/// RFC 6121 §3.1.5, RFC 6120 §10.1: a remote contact's server sends `subscribed` and then the
/// contact's presence, back to back; the presence waits for the `subscribed` (a store job) and so
/// reaches the user after it and after the roster push, never first.
#[test]
fn a_remote_contacts_presence_does_not_overtake_its_subscribed() {
    for_shards(|n| {
        let (mut net, _out, mut a) = alice_dnd_with_remote_outbox(n);
        roster_get(&mut net, &mut a, None);
        net.send(&mut a, "<presence to='rem@remote.test' type='subscribe'/>");
        net.recv(&a);
        // Both arrive over s2s before any store job runs.
        for xml in [
            "<presence from='rem@remote.test' to='alice@example.com' type='subscribed'/>",
            "<presence from='rem@remote.test/x' to='alice@example.com'><status>here</status></presence>",
        ] {
            let st = Stanza::parse(xml.as_bytes().to_vec()).unwrap_or_else(|e| panic!("{e}"));
            let jid = |j: Option<std::borrow::Cow<'_, str>>| {
                crate::jid::Jid::parse(&j.unwrap_or_default()).unwrap_or_else(|e| panic!("{e}"))
            };
            let (from, to) = (jid(st.from()), jid(st.to()));
            let acc = crate::hooks::Acc::new(st, from, to, crate::shard::ShardId(0));
            crate::router::route(&mut net.c.shards[0], acc);
        }
        net.c.shards[0].drain_to_route();
        net.c.pump();
        let got = net.recv(&a);
        let at = |f: &dyn Fn(&Element) -> bool| {
            got.iter()
                .position(f)
                .unwrap_or_else(|| panic!("missing in {got:?}"))
        };
        let push = at(&|e| e.name == "iq");
        let subscribed = at(&|e| ty(e) == "subscribed");
        let available = at(&|e| ty(e).is_empty() && e.attr("from") == Some("rem@remote.test/x"));
        assert!(
            push < available && subscribed < available,
            "{n} shards: {got:?}"
        );
    });
}
