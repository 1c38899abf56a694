//! Domains hosted at run time (the admin API adds them and keeps them in the store), beside the
//! configured `general.hosts`.

use std::cell::RefCell;
use std::rc::Rc;

use ahash::HashSet;

/// One shard's set of run-time domains, read by its route (`dynamic_domains`, local IQ handlers)
/// and by its c2s streams' header check. Shared by `Rc` on the shard's own thread, so reading it
/// takes no lock; it is changed only by mesh messages, between two stanzas, never while read.
#[derive(Clone, Default)]
pub struct DynamicHosts(Rc<RefCell<Inner>>);

#[derive(Default)]
struct Inner {
    domains: HashSet<String>,
    /// The configured host whose per-host handlers (IQ handlers of the modules) serve the
    /// run-time domains too, like MongooseIM's host type.
    template: String,
}

impl DynamicHosts {
    /// An empty set whose domains are served by the handlers of the configured host `template`.
    pub fn new(template: &str) -> DynamicHosts {
        DynamicHosts(Rc::new(RefCell::new(Inner {
            domains: HashSet::default(),
            template: template.to_owned(),
        })))
    }

    /// True when `domain` (lowercase) was added at run time.
    pub fn contains(&self, domain: &str) -> bool {
        self.0.borrow().domains.contains(domain)
    }

    /// The configured host whose handlers the run-time domains share.
    pub fn template(&self) -> String {
        self.0.borrow().template.clone()
    }

    /// Adds `domain`; false if it was there.
    pub fn insert(&self, domain: &str) -> bool {
        self.0.borrow_mut().domains.insert(domain.to_owned())
    }

    /// Removes `domain`; false if it was not there.
    pub fn remove(&self, domain: &str) -> bool {
        self.0.borrow_mut().domains.remove(domain)
    }

    /// The domains, sorted.
    pub fn list(&self) -> Vec<String> {
        let mut v: Vec<String> = self.0.borrow().domains.iter().cloned().collect();
        v.sort();
        v
    }
}

/// Every domain served here: the configured hosts and the run-time ones, as a cheap handle a
/// module keeps (both parts are shared, so domains added or removed later are seen).
#[derive(Clone, Default)]
pub struct Served {
    hosts: Rc<HashSet<String>>,
    dynamic: DynamicHosts,
}

impl Served {
    /// The configured `hosts` and the run-time `dynamic` ones.
    pub fn new(hosts: Rc<HashSet<String>>, dynamic: DynamicHosts) -> Served {
        Served { hosts, dynamic }
    }

    /// True when `domain` (prepared) is served here.
    pub fn contains(&self, domain: &str) -> bool {
        self.hosts.contains(domain) || self.dynamic.contains(domain)
    }
}

impl std::fmt::Debug for DynamicHosts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.list()).finish()
    }
}
