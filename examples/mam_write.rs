//! Store-only archive write cost: `max`'s pattern (users in pairs, each message in the sender's
//! and the recipient's archive) through the coalesced write path; prints CPU per message.
use petrel::store::{ArchiveBatch, RowRef, Store};
use std::time::Instant;

fn cpu() -> f64 {
    let s = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    let rest = &s[s.rfind(')').unwrap() + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    (f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()) as f64 / 100.0
}

fn main() {
    let msgs: i64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2_000_000);
    let per_turn = 200;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let users: Vec<String> = (0..1000).map(|i| format!("user{i}@localhost")).collect();
    let res: Vec<String> = (0..1000).map(|i| format!("load-{i}")).collect();
    let mut batch = ArchiveBatch::default();
    let (t0, c0) = (Instant::now(), cpu());
    let mut id: i64 = 1_800_000_000_000_000 << 10;
    for m in 0..msgs {
        let u = (m % 1000) as usize;
        let p = u ^ 1;
        id += 1024;
        let stanza = format!("<message xmlns='jabber:client' to='{}' type='chat' id='m{m}' from='{}/{}'><body>message number {m} from the benchmark, about this long</body></message>", users[p], users[u], res[u]);
        for (owner, with, wres, out) in [(u, p, &res[p], true), (p, u, &res[u], false)] {
            batch.push(RowRef {
                owner: &users[owner],
                id,
                with_bare: &users[with],
                with_res: if out { "" } else { wres },
                outgoing: out,
                ts: id >> 10,
                stanza: stanza.as_bytes(),
                keep: petrel::store::Keep::Always,
            });
        }
        if batch.len() >= per_turn * 2 {
            batch = store.mam_append_later(batch, Box::new(|_| {}));
            if let Some(d) = store.deferred() {
                if d.is_zero() {
                    store.run_deferred();
                }
            }
        }
    }
    store.run_deferred();
    let (secs, c) = (t0.elapsed().as_secs_f64(), cpu() - c0);
    let db = std::fs::metadata(dir.path().join("petrel.sqlite3"))
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "{msgs} messages in {secs:.1} s, thread CPU {c:.1} s: {:.2} us/msg, db {:.0} bytes/msg",
        c / msgs as f64 * 1e6,
        db as f64 / msgs as f64
    );
}
