//! Test helpers: a `Cluster` with modules started from a `[modules.*]` snippet and a store.

use std::path::Path;
use std::rc::Rc;

use crate::c2s::route::{user_send, Session};
use crate::config::Config;
use crate::jid::FullJid;
use crate::shard::cluster::Cluster;
use crate::shard::{ConnMsg, Mailbox};
use crate::store::Store;
use crate::xml::Stanza;

/// The served domain.
pub const HOST: &str = "example.com";

/// A cluster of `shards` with the modules of `modules` (TOML `[modules.*]` tables) and a store.
pub struct World {
    /// The shards.
    pub cluster: Cluster,
    /// Keeps the store's directory alive.
    pub _dir: tempfile::TempDir,
}

impl World {
    /// Builds the world; panics on a bad snippet (tests only).
    pub fn new(shards: usize, modules: &str) -> World {
        World::with_metrics(shards, modules, None)
    }

    /// [`World::new`] whose shards take their metric handles from `metrics` (before the modules
    /// start, as in the server), instead of a private registry each.
    pub fn with_metrics(
        shards: usize,
        modules: &str,
        metrics: Option<&std::sync::Arc<crate::metrics::Metrics>>,
    ) -> World {
        let text = format!(
            "[general]\nhosts = [\"{HOST}\"]\n[auth]\nscram_iterations = 4096\n[[listen.c2s]]\nport = 5222\n{modules}"
        );
        let config = Config::parse(&text, Path::new("t.toml")).unwrap_or_else(|e| panic!("{e}"));
        crate::modules::c2s_options(&config).unwrap_or_else(|e| panic!("{e}"));
        let mut cluster = Cluster::new(shards, &[HOST]);
        for shard in &mut cluster.shards {
            if let Some(m) = metrics {
                shard.metrics = m.shard(shard.id);
            }
            crate::modules::start(&config, shard);
        }
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        cluster.store = Some(Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}")));
        World { cluster, _dir: dir }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        self.cluster
            .store
            .as_ref()
            .unwrap_or_else(|| panic!("no store"))
    }

    /// Registers the account `bare` in the store unless it exists (connected test sessions have
    /// one; requests about another account tell one that exists from one that does not).
    pub fn add_account(&self, bare: &str) {
        let jid = crate::jid::BareJid::parse(bare).unwrap_or_else(|e| panic!("{e}"));
        self.cluster.add_account(&jid);
    }

    /// Removes the account `bare` from the store (its sessions stay bound).
    pub fn remove_account(&self, bare: &str) {
        let jid = crate::jid::BareJid::parse(bare).unwrap_or_else(|e| panic!("{e}"));
        self.store()
            .remove_user(&jid)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Binds `jid` on shard `on` (with initial presence when `priority` is given).
    pub fn connect(&mut self, on: usize, jid: &str, priority: Option<i8>) -> User {
        let jid = FullJid::parse(jid).unwrap_or_else(|e| panic!("{e}"));
        let (sess, mb) = self.cluster.connect(on, &jid, priority);
        User { on, sess, mb }
    }

    /// Sends `xml` from `user` and routes everything that follows.
    pub fn send(&mut self, user: &mut User, xml: &str) {
        let s = Stanza::parse(xml.as_bytes().to_vec()).unwrap_or_else(|e| panic!("{e}: {xml}"));
        user_send(&mut self.cluster.shards[user.on], &mut user.sess, s);
        self.cluster.pump();
    }

    /// Sends an IQ and returns the reply delivered to `user`.
    pub fn iq(&mut self, user: &mut User, xml: &str) -> Stanza {
        self.send(user, xml);
        loop {
            match user.mb.pop() {
                Some(ConnMsg::Deliver(acc)) => return acc.into_stanza(),
                // The release of the input held for an earlier presence broadcast.
                Some(ConnMsg::InputReleased) => continue,
                other => panic!("no reply to {xml}: {other:?}"),
            }
        }
    }
}

/// A bound test session.
pub struct User {
    /// Its shard.
    pub on: usize,
    /// The route's session.
    pub sess: Session,
    /// Its mailbox.
    pub mb: Rc<Mailbox>,
}

/// The text of the error condition of an error stanza.
pub fn error_condition(s: &Stanza) -> Option<String> {
    let t = s.tree().ok()?;
    let e = t.get_child("error", crate::xmpp::ns::CLIENT)?;
    let cond = e
        .child_elements()
        .find(|c| c.ns == crate::xmpp::ns::STANZAS)
        .map(|c| c.name.clone());
    cond
}

/// The `type` of the error of an error stanza.
pub fn error_type(s: &Stanza) -> Option<String> {
    let t = s.tree().ok()?;
    let e = t.get_child("error", crate::xmpp::ns::CLIENT)?;
    e.attr("type").map(str::to_owned)
}

impl World {
    /// Breaks the store under the running shards (a disk gone bad, a database down): every write
    /// to `table` of the SQLite file fails until [`World::heal_table`].
    pub fn break_table(&self, table: &str) {
        self.sql(&format!(
            "CREATE TRIGGER broken_{table}_i BEFORE INSERT ON {table} BEGIN SELECT RAISE(FAIL, 'store down'); END;
             CREATE TRIGGER broken_{table}_u BEFORE UPDATE ON {table} BEGIN SELECT RAISE(FAIL, 'store down'); END;"
        ));
    }

    /// Undoes [`World::break_table`].
    pub fn heal_table(&self, table: &str) {
        self.sql(&format!(
            "DROP TRIGGER broken_{table}_i; DROP TRIGGER broken_{table}_u;"
        ));
    }

    fn sql(&self, sql: &str) {
        let path = self._dir.path().join(crate::store::DB_FILE);
        let db = rusqlite::Connection::open(path).unwrap_or_else(|e| panic!("{e}"));
        db.execute_batch(sql).unwrap_or_else(|e| panic!("{e}"));
    }
}
