//! Where connected components are. A component may connect on any shard; the home shard of its
//! domain (the hash of the domain, like a bare JID's home) arbitrates who holds the domain and
//! announces the route to every shard, where the router (`external_localnode`, `external`) finds it
//! in a per-shard table without any lock.
//!
//! Policy for a second connection claiming a domain already held: the new one is refused with the
//! stream error `conflict` and the connected component keeps the route (a component that reconnects
//! after a network cut waits until the old stream is gone: its close or its idle timeout).
//!
//! Every message here travels as a `ShardMsg::Run` control message (never refused by the outbox
//! bound), from the home shard to every shard in order, so the tables follow the home shard's
//! decisions in the order it made them. The home shard answers the claiming connection with
//! `ConnMsg::Bound` (`Ok`: the route is held, `Err(Conflict)`: refused) after its announcement, so
//! the route is in the connection's own shard's table before the component is told it may send.

use ahash::{HashMap, HashSet};

use crate::c2s::BindError;
use crate::shard::{home_shard_of, ConnMsg, SessionRef, Shard, ShardId, ShardMsg};

/// One shard's view of the components (kept in the shard's extensions).
#[derive(Debug, Default)]
pub struct Routes {
    /// Every configured component domain (one not connected answers `recipient-unavailable`).
    configured: HashSet<String>,
    /// Connected components: domain -> its connection.
    connected: HashMap<String, SessionRef>,
    /// On the domain's home shard only: the connection holding it.
    holders: HashMap<String, SessionRef>,
}

/// What the table says about a destination domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// A component serves the domain on this connection.
    Connected(SessionRef),
    /// A component is configured for the domain but not connected.
    Disconnected,
    /// Not a component domain.
    Unknown,
}

impl Routes {
    /// A table knowing the configured component domains.
    pub fn new(configured: impl IntoIterator<Item = String>) -> Routes {
        Routes {
            configured: configured.into_iter().collect(),
            ..Routes::default()
        }
    }

    /// Where stanzas to `domain` go.
    pub fn lookup(&self, domain: &str) -> Lookup {
        match self.connected.get(domain) {
            Some(&s) => Lookup::Connected(s),
            None if self.configured.contains(domain) => Lookup::Disconnected,
            None => Lookup::Unknown,
        }
    }

    /// True when a component is configured for `domain`: a domain of ours, which may send to
    /// remote servers and be addressed by them.
    pub fn is_configured(&self, domain: &str) -> bool {
        self.configured.contains(domain)
    }

    /// The configured component domains, sorted.
    pub fn configured_domains(&self) -> Vec<String> {
        let mut v: Vec<String> = self.configured.iter().cloned().collect();
        v.sort();
        v
    }

    /// The connected component domains (for the server's disco#items), sorted.
    pub fn connected_domains(&self) -> Vec<String> {
        let mut v: Vec<String> = self.connected.keys().cloned().collect();
        v.sort();
        v
    }
}

/// Asks the home shard of `domain` for its route, for the connection `sref` (after its handshake).
/// The answer comes back as `ConnMsg::Bound`.
pub fn claim(shard: &mut Shard, domain: String, sref: SessionRef) {
    let home = home_shard_of(&domain, shard.shards);
    let f = move |sh: &mut Shard| on_claim(sh, domain, sref);
    shard.send_to_shard(home, ShardMsg::Run(Box::new(f)));
}

/// Gives the route of `domain` up if `sref` still holds it (the connection closed).
pub fn release(shard: &mut Shard, domain: String, sref: SessionRef) {
    let home = home_shard_of(&domain, shard.shards);
    let f = move |sh: &mut Shard| on_release(sh, domain, sref);
    shard.send_to_shard(home, ShardMsg::Run(Box::new(f)));
}

fn on_claim(shard: &mut Shard, domain: String, sref: SessionRef) {
    let routes = shard.ext.get_or_default::<Routes>();
    if routes.holders.get(&domain).is_some_and(|h| *h != sref) {
        shard.send_to_session(sref, ConnMsg::Bound(Err(BindError::Conflict)));
        return;
    }
    routes.holders.insert(domain.clone(), sref);
    announce(shard, &domain, sref, true);
    shard.send_to_session(sref, ConnMsg::Bound(Ok(())));
}

fn on_release(shard: &mut Shard, domain: String, sref: SessionRef) {
    let routes = shard.ext.get_or_default::<Routes>();
    if routes.holders.get(&domain) != Some(&sref) {
        return;
    }
    routes.holders.remove(&domain);
    announce(shard, &domain, sref, false);
}

/// Tells every shard (this one included) that `sref` now holds `domain` (`up`) or left it.
fn announce(shard: &mut Shard, domain: &str, sref: SessionRef, up: bool) {
    for i in 0..shard.shards {
        let domain = domain.to_owned();
        let f = move |sh: &mut Shard| {
            let routes = sh.ext.get_or_default::<Routes>();
            if up {
                routes.connected.insert(domain, sref);
            } else if routes.connected.get(&domain) == Some(&sref) {
                routes.connected.remove(&domain);
            }
        };
        // At most a few thousand shards: `shards` came from a u16-bounded configuration.
        let to = ShardId(u16::try_from(i).unwrap_or(u16::MAX));
        shard.send_to_shard(to, ShardMsg::Run(Box::new(f)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::Acc;
    use crate::jid::{FullJid, Jid};
    use crate::shard::cluster::Cluster;
    use crate::xml::Stanza;

    const ECHO: &str = "echo.localhost";
    const IDLE: &str = "idle.localhost";

    fn cluster() -> Cluster {
        let mut c = Cluster::new(2, &["localhost"]);
        for s in &mut c.shards {
            s.ext
                .insert(Routes::new([ECHO.to_owned(), IDLE.to_owned()]));
        }
        c
    }

    fn lookups(c: &Cluster, domain: &str) -> Vec<Lookup> {
        c.shards
            .iter()
            .map(|s| s.ext.get::<Routes>().unwrap().lookup(domain))
            .collect()
    }

    fn answer(mb: &crate::shard::Mailbox) -> Result<(), BindError> {
        match mb.pop() {
            Some(ConnMsg::Bound(r)) => r,
            other => panic!("no claim answer: {other:?}"),
        }
    }

    /// A chat message from `from` to `to`, entering the route on shard `on`.
    fn chat(from: &FullJid, to: &str, on: usize) -> Acc {
        let st = Stanza::parse(
            format!("<message from='{from}' to='{to}' id='m'><body>x</body></message>")
                .into_bytes(),
        )
        .unwrap();
        Acc::new(
            st,
            Jid::from(from.clone()),
            Jid::parse(to).unwrap(),
            ShardId(on as u16),
        )
    }

    /// [`chat`], routed.
    fn send(c: &mut Cluster, on: usize, from: &FullJid, to: &str) {
        let acc = chat(from, to, on);
        crate::router::route(&mut c.shards[on], acc);
        c.shards[on].drain_to_route();
        c.pump();
    }

    #[test]
    fn home_shard_arbitrates_and_every_shard_routes() {
        let mut c = cluster();
        let (a, mb_a) = c.shards[1].open_conn();
        let sref_a = c.shards[1].session_ref(a);
        claim(&mut c.shards[1], ECHO.to_owned(), sref_a);
        c.pump();
        assert_eq!(answer(&mb_a), Ok(()));
        assert_eq!(lookups(&c, ECHO), [Lookup::Connected(sref_a); 2]);
        assert_eq!(lookups(&c, IDLE), [Lookup::Disconnected; 2]);
        assert_eq!(lookups(&c, "localhost"), [Lookup::Unknown; 2]);

        // A second connection, on the other shard: refused, the first keeps the route.
        let (b, mb_b) = c.shards[0].open_conn();
        let sref_b = c.shards[0].session_ref(b);
        claim(&mut c.shards[0], ECHO.to_owned(), sref_b);
        c.pump();
        assert_eq!(answer(&mb_b), Err(BindError::Conflict));
        // Its release (it never held the route) changes nothing.
        release(&mut c.shards[0], ECHO.to_owned(), sref_b);
        c.pump();
        assert_eq!(lookups(&c, ECHO), [Lookup::Connected(sref_a); 2]);

        // A user on shard 0 reaches the component on shard 1; one to a component that is not
        // connected gets recipient-unavailable (type wait).
        let alice = FullJid::parse("alice@localhost/r").unwrap();
        let (_sess, mb_alice) = c.connect(0, &alice, None);
        send(&mut c, 0, &alice, &format!("bot@{ECHO}"));
        match mb_a.pop() {
            Some(ConnMsg::Deliver(acc)) => assert_eq!(acc.to.as_str(), format!("bot@{ECHO}")),
            other => panic!("not delivered to the component: {other:?}"),
        }
        send(&mut c, 0, &alice, IDLE);
        match mb_alice.pop() {
            Some(ConnMsg::Deliver(acc)) => {
                let text = String::from_utf8_lossy(acc.stanza.bytes()).into_owned();
                assert!(text.contains("type='error'"), "{text}");
                assert!(text.contains("<recipient-unavailable"), "{text}");
                assert!(
                    text.contains("type='wait'") || text.contains("type=\"wait\""),
                    "{text}"
                );
            }
            other => panic!("no error: {other:?}"),
        }

        // The holder leaves: the route is gone everywhere, and the other connection may claim it.
        release(&mut c.shards[1], ECHO.to_owned(), sref_a);
        c.pump();
        assert_eq!(lookups(&c, ECHO), [Lookup::Disconnected; 2]);
        claim(&mut c.shards[0], ECHO.to_owned(), sref_b);
        c.pump();
        assert_eq!(answer(&mb_b), Ok(()));
        assert_eq!(lookups(&c, ECHO), [Lookup::Connected(sref_b); 2]);
        assert_eq!(
            c.shards[0].ext.get::<Routes>().unwrap().connected_domains(),
            [ECHO]
        );
    }

    #[test]
    fn a_stanza_whose_component_connection_is_gone_goes_back_to_the_router() {
        let mut c = cluster();
        let alice = FullJid::parse("alice@localhost/r").unwrap();
        let (_sess, mb_alice) = c.connect(0, &alice, None);
        // The connection that held the route is gone; another now holds it.
        let (b, mb_b) = c.shards[1].open_conn();
        let sref_b = c.shards[1].session_ref(b);
        claim(&mut c.shards[1], ECHO.to_owned(), sref_b);
        c.pump();
        assert_eq!(answer(&mb_b), Ok(()));
        let acc = chat(&alice, &format!("bot@{ECHO}"), 0);
        // The old connection's shard finds it closed and hands the stanza back.
        c.shards[0].reroute(acc);
        c.shards[0].drain_to_route();
        c.pump();
        match mb_b.pop() {
            Some(ConnMsg::Deliver(acc)) => assert_eq!(acc.to.as_str(), format!("bot@{ECHO}")),
            other => panic!("not delivered to the new holder: {other:?}"),
        }
        assert!(mb_alice.pop().is_none());

        // With no holder at all, the sender learns it is temporary (never offline storage).
        release(&mut c.shards[1], ECHO.to_owned(), sref_b);
        c.pump();
        let acc = chat(&alice, &format!("bot@{ECHO}"), 0);
        c.shards[0].reroute(acc);
        c.shards[0].drain_to_route();
        c.pump();
        match mb_alice.pop() {
            Some(ConnMsg::Deliver(acc)) => {
                let text = String::from_utf8_lossy(acc.stanza.bytes()).into_owned();
                assert!(text.contains("<recipient-unavailable"), "{text}");
            }
            other => panic!("no error: {other:?}"),
        }
    }
}
