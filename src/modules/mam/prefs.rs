//! Archiving preferences (XEP-0313 §6.1): kept on every shard (a message is archived where it is
//! routed), loaded from the store at start, replaced everywhere when an owner sets them and dropped
//! everywhere when the account is removed. Only owners who set preferences have an entry; everyone
//! else follows the configured default.

use ahash::HashMap;

use crate::hooks::{HookCtx, JobDone};
use crate::jid::{BareJid, Jid};
use crate::shard::{Shard, ShardId};
use crate::store::StoredMamPrefs;

/// The default behaviour of an archive (`default` attribute of `<prefs/>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Archive every message.
    Always,
    /// Archive nothing (but the `always` list).
    Never,
    /// Archive messages with contacts in the owner's roster.
    Roster,
}

impl Mode {
    /// The XML value.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Always => "always",
            Mode::Never => "never",
            Mode::Roster => "roster",
        }
    }

    /// From the XML value.
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "always" => Some(Mode::Always),
            "never" => Some(Mode::Never),
            "roster" => Some(Mode::Roster),
            _ => None,
        }
    }
}

/// One owner's preferences: JIDs in the lists are bare or full, as the owner wrote them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefs {
    /// Default.
    pub mode: Mode,
    /// Always archived.
    pub always: Vec<String>,
    /// Never archived (wins over `always`).
    pub never: Vec<String>,
}

impl Prefs {
    /// As the store keeps them.
    pub fn to_stored(&self) -> StoredMamPrefs {
        StoredMamPrefs {
            mode: self.mode.as_str().to_owned(),
            always: self.always.clone(),
            never: self.never.clone(),
        }
    }

    /// From the store (an unknown mode reads as `always`).
    pub fn from_stored(s: StoredMamPrefs) -> Prefs {
        Prefs {
            mode: Mode::parse(&s.mode).unwrap_or(Mode::Always),
            always: s.always,
            never: s.never,
        }
    }
}

/// What the archive does with one message for one owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Archive it.
    Archive,
    /// Archive it if the other party is in the owner's roster (checked by the store when it writes).
    IfInRoster,
    /// Do not archive it.
    Skip,
}

/// Preferences of the owners who set some, on this shard.
#[derive(Debug)]
pub struct PrefsTable {
    map: HashMap<String, Prefs>,
    /// The configured default for everyone else.
    pub default: Mode,
    /// Shards in the process.
    shards: usize,
}

impl PrefsTable {
    /// An empty table.
    pub fn new(default: Mode, shards: usize) -> PrefsTable {
        PrefsTable {
            map: HashMap::default(),
            default,
            shards,
        }
    }

    /// `owner`'s preferences (the default when they set none).
    pub fn get(&self, owner: &str) -> Prefs {
        self.map.get(owner).cloned().unwrap_or(Prefs {
            mode: self.default,
            always: Vec::new(),
            never: Vec::new(),
        })
    }

    /// Whether `owner` archives a message exchanged with `with`.
    pub fn decide(&self, owner: &str, with: &Jid) -> Decision {
        let Some(p) = self.map.get(owner) else {
            return mode_decision(self.default);
        };
        let listed = |list: &[String]| {
            list.iter()
                .any(|j| j == with.as_str() || j == with.bare_str())
        };
        if listed(&p.never) {
            Decision::Skip
        } else if listed(&p.always) {
            Decision::Archive
        } else {
            mode_decision(p.mode)
        }
    }

    /// Replaces `owner`'s preferences on this shard.
    pub fn put(&mut self, owner: String, prefs: Prefs) {
        self.map.insert(owner, prefs);
    }

    /// Drops `owner`'s preferences on this shard (they follow the default again).
    pub fn remove(&mut self, owner: &str) {
        self.map.remove(owner);
    }
}

fn mode_decision(mode: Mode) -> Decision {
    match mode {
        Mode::Always => Decision::Archive,
        Mode::Never => Decision::Skip,
        Mode::Roster => Decision::IfInRoster,
    }
}

/// Stores `owner`'s preferences and replaces them on every shard; `done` runs (on this shard) once
/// the store committed them, with whether it did.
pub fn set(
    ctx: &mut HookCtx<'_>,
    owner: String,
    prefs: Prefs,
    done: impl FnOnce(&mut Shard, bool) + Send + 'static,
) {
    let Some(shards) = ctx.ext.get::<PrefsTable>().map(|t| t.shards) else {
        return;
    };
    let stored = prefs.to_stored();
    let key = Some(super::STORE_KEY);
    ctx.store(key, move |store| {
        let ok = store.mam_set_prefs(&owner, &stored).is_ok();
        JobDone {
            then: Some(Box::new(move |shard: &mut Shard| {
                if ok {
                    spread(shard, 0, shards, owner, prefs, Box::new(done));
                } else {
                    done(shard, false);
                }
            })),
            ..JobDone::default()
        }
    });
}

/// What runs once a change is stored (`true`) or not: the answer.
type Done = Box<dyn FnOnce(&mut Shard, bool) + Send>;

/// Puts `owner`'s `prefs` into the table of shard `to`, then of each next one; `done` runs on the
/// last. Whether a message is archived is decided on its sender's shard, so the answer waits until
/// every shard has the new table: a contact's message sent once the owner saw it is archived
/// under the new preferences.
fn spread(shard: &mut Shard, to: usize, shards: usize, owner: String, prefs: Prefs, done: Done) {
    if to == shards {
        return done(shard, true);
    }
    let step = move |s: &mut Shard| {
        if let Some(t) = s.ext.get_mut::<PrefsTable>() {
            t.put(owner.clone(), prefs.clone());
        }
        spread(s, to + 1, shards, owner, prefs, done);
    };
    let to = ShardId(u16::try_from(to).unwrap_or(u16::MAX));
    shard.send_to_shard(to, crate::shard::ShardMsg::Run(Box::new(step)));
}

/// `gone`'s account was deleted (the store dropped its preferences with it): every shard forgets
/// them too, so that whoever registers the name next starts from the default, as after a restart.
pub fn account_removed(shard: &mut Shard, gone: &BareJid) {
    for i in 0..shard.shards {
        let owner = gone.as_str().to_owned();
        let to = ShardId(u16::try_from(i).unwrap_or(u16::MAX));
        let forget = move |s: &mut Shard| {
            if let Some(t) = s.ext.get_mut::<PrefsTable>() {
                t.remove(&owner);
            }
        };
        shard.send_to_shard(to, crate::shard::ShardMsg::Run(Box::new(forget)));
    }
}

/// Loads every stored preference into this shard's table (at start).
pub fn load(shard: &mut Shard) {
    let mut ctx = HookCtx::new(shard.id, &mut shard.fx, &mut shard.ext);
    ctx.store(None, |store| {
        let all = store.mam_all_prefs();
        JobDone {
            then: Some(Box::new(move |shard: &mut Shard| match all {
                Ok(all) => {
                    if let Some(t) = shard.ext.get_mut::<PrefsTable>() {
                        for (owner, p) in all {
                            t.put(owner, Prefs::from_stored(p));
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "MAM preferences could not be loaded"),
            })),
            ..JobDone::default()
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_win_over_the_mode_and_never_wins_over_always() {
        let mut t = PrefsTable::new(Mode::Always, 1);
        let bob = Jid::parse("bob@x/phone").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.decide("a@x", &bob), Decision::Archive);
        t.put(
            "a@x".into(),
            Prefs {
                mode: Mode::Never,
                always: vec!["bob@x".into()],
                never: vec!["bob@x/phone".into()],
            },
        );
        assert_eq!(t.decide("a@x", &bob), Decision::Skip);
        let laptop = Jid::parse("bob@x/laptop").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.decide("a@x", &laptop), Decision::Archive);
        let carol = Jid::parse("carol@x").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.decide("a@x", &carol), Decision::Skip);
        t.put(
            "r@x".into(),
            Prefs {
                mode: Mode::Roster,
                always: vec![],
                never: vec![],
            },
        );
        assert_eq!(t.decide("r@x", &carol), Decision::IfInRoster);
    }
}
