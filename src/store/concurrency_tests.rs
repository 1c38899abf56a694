//! Write transactions racing on separate connections (as the pool threads do): the limits and
//! versions SQLite's write lock protects must hold on PostgreSQL's advisory locks too.

use std::sync::Barrier;

use super::testing::test_dbs;
use super::{BlockChange, OfflinePush, PrivateSet, Registered, RosterWrite};
use crate::auth::ScramSecrets;
use crate::jid::BareJid;
use crate::xmpp::roster::RosterItem;

const THREADS: usize = 6;

fn jid(s: &str) -> BareJid {
    BareJid::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// Runs `f(i)` on `THREADS` threads, each with its own connection, released together.
fn race<R: Send>(
    db: &super::testing::TestDb,
    f: impl Fn(&super::Store, usize) -> R + Sync,
) -> Vec<R> {
    let stores: Vec<_> = (0..THREADS).map(|_| db.open()).collect();
    let barrier = Barrier::new(THREADS);
    std::thread::scope(|s| {
        let handles: Vec<_> = stores
            .into_iter()
            .enumerate()
            .map(|(i, store)| {
                let (barrier, f) = (&barrier, &f);
                s.spawn(move || {
                    barrier.wait();
                    f(&store, i)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| panic!("racing thread panicked"))
            })
            .collect()
    })
}

#[test]
fn offline_limit_holds_under_racing_pushes() {
    for db in test_dbs() {
        let n = db.name;
        let bob = jid("bob@example.com");
        db.open()
            .add_user(&bob, &ScramSecrets::derive("pw", 16))
            .unwrap_or_else(|e| panic!("{n}: {e}"));
        let got = race(&db, |store, i| {
            (0..3)
                .map(|k| {
                    let body = format!("<message>{i}.{k}</message>");
                    store.offline_push(&bob, "a@x/y", body.as_bytes(), 10, None)
                })
                .collect::<Vec<_>>()
        });
        let stored = got
            .iter()
            .flatten()
            .filter(|r| matches!(r, Ok(OfflinePush::Stored)))
            .count();
        let full = got
            .iter()
            .flatten()
            .filter(|r| matches!(r, Ok(OfflinePush::Full)))
            .count();
        assert_eq!((stored, full), (10, 3 * THREADS - 10), "{n}: {got:?}");
        assert_eq!(db.open().offline_count(&bob).ok(), Some(10), "{n}");
    }
}

#[test]
fn private_quota_holds_under_racing_sets() {
    for db in test_dbs() {
        let n = db.name;
        let u = jid("u@example.com");
        super::testing::add_accounts(&db.open(), &["u@example.com"]);
        // Room for two 40-byte fragments under 100 bytes.
        let got = race(&db, |store, i| {
            store.private_set(&u, &[(format!("ns{i}"), vec![b'x'; 40])], 100)
        });
        let stored = got
            .iter()
            .filter(|r| matches!(r, Ok(PrivateSet::Stored)))
            .count();
        assert_eq!(stored, 2, "{n}: {got:?}");
        let store = db.open();
        let kept = (0..THREADS)
            .filter(|i| matches!(store.private_get(&u, &format!("ns{i}")), Ok(Some(_))))
            .count();
        assert_eq!(kept, 2, "{n}");
    }
}

#[test]
fn roster_versions_are_distinct_under_racing_changes() {
    for db in test_dbs() {
        let n = db.name;
        let u = jid("alice@example.com");
        db.open()
            .add_user(&u, &ScramSecrets::derive("pw", 16))
            .unwrap_or_else(|e| panic!("{n}: {e}"));
        let got = race(&db, |store, i| {
            let contact = jid(&format!("c{i}@example.com"));
            store.roster_change(&u, &contact, |_, count| {
                (RosterWrite::Put(RosterItem::new(contact.clone())), count)
            })
        });
        let mut vers: Vec<u64> = got
            .iter()
            .map(|r| match r {
                Ok(c) => c.ver.unwrap_or(0),
                Err(e) => panic!("{n}: {e}"),
            })
            .collect();
        // Each change saw the ones before it: the counts are 0..THREADS in some order.
        let mut counts: Vec<u64> = got.iter().flatten().map(|c| c.out).collect();
        vers.sort_unstable();
        counts.sort_unstable();
        assert_eq!(vers, (1..=THREADS as u64).collect::<Vec<_>>(), "{n}");
        assert_eq!(counts, (0..THREADS as u64).collect::<Vec<_>>(), "{n}");
        assert_eq!(
            db.open().roster_version(&u).ok(),
            Some(THREADS as u64),
            "{n}"
        );
    }
}

#[test]
fn registration_limit_holds_under_racing_registrations() {
    for db in test_dbs() {
        let n = db.name;
        let s = ScramSecrets::derive("pw", 16);
        let got = race(&db, |store, i| {
            let j = jid(&format!("r{i}@example.com"));
            store.register_user(&j, &s, "192.0.2.1", 100, 40, 3)
        });
        let created = got
            .iter()
            .filter(|r| matches!(r, Ok(Registered::Created)))
            .count();
        let limited = got
            .iter()
            .filter(|r| matches!(r, Ok(Registered::RateLimited)))
            .count();
        assert_eq!((created, limited), (3, THREADS - 3), "{n}: {got:?}");
    }
}

#[test]
fn racing_leases_hand_out_each_message_once() {
    for db in test_dbs() {
        let n = db.name;
        let bob = jid("bob@example.com");
        let store = db.open();
        store
            .add_user(&bob, &ScramSecrets::derive("pw", 16))
            .unwrap_or_else(|e| panic!("{n}: {e}"));
        for i in 0..20 {
            let body = format!("<message>{i}</message>");
            store
                .offline_push(&bob, "a@x/y", body.as_bytes(), 100, None)
                .unwrap_or_else(|e| panic!("{n}: {e}"));
        }
        // One process, so one lease value: every message goes to exactly one of the racers.
        let got = race(&db, |store, _| {
            store.offline_lease(&bob, usize::MAX, usize::MAX)
        });
        let mut ids: Vec<i64> = got
            .iter()
            .flat_map(|r| match r {
                Ok(v) => v.iter().map(|m| m.id).collect::<Vec<_>>(),
                Err(e) => panic!("{n}: {e}"),
            })
            .collect();
        ids.sort_unstable();
        let len = ids.len();
        ids.dedup();
        assert_eq!((len, ids.len()), (20, 20), "{n}");
    }
}

#[test]
fn block_list_versions_are_distinct_under_racing_updates() {
    for db in test_dbs() {
        let n = db.name;
        let u = jid("alice@example.com");
        super::testing::add_accounts(&db.open(), &["alice@example.com"]);
        let got = race(&db, |store, i| {
            store.blocklist_update(&u, &BlockChange::Block(vec![format!("j{i}@x")]), 1000)
        });
        let mut vers: Vec<u64> = got
            .iter()
            .map(|r| match r {
                Ok(l) => {
                    // The list returned is the one at that version: one item per version.
                    assert_eq!(l.items.len() as u64, l.version, "{n}: {l:?}");
                    l.version
                }
                Err(e) => panic!("{n}: {e}"),
            })
            .collect();
        vers.sort_unstable();
        assert_eq!(vers, (1..=THREADS as u64).collect::<Vec<_>>(), "{n}");
    }
}
