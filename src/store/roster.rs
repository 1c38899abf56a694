//! Rosters (RFC 6121 §2) and pending inbound subscription requests.
//!
//! One row per (user, contact): the roster item and the subscription state, plus the stored
//! `subscribe` stanza while a request is pending in (re-delivered at the next login). Rows that
//! only hold a pending request are hidden from the roster. Every change is one transaction that
//! also bumps the user's roster version (XEP-0237) when what the user sees changed.

use super::db::{sql, End, Sql};
use super::value::{args, Row};
use super::{Corruption, Store, StoreError};
use crate::jid::BareJid;
use crate::xmpp::roster::{RosterItem, SubKind, SubState, Transition};

/// What a roster change does to the row.
#[derive(Debug)]
pub enum RosterWrite {
    /// Leave the row as it is.
    Keep,
    /// Insert or replace the row.
    Put(RosterItem),
    /// Delete the row.
    Delete,
}

impl RosterWrite {
    /// The row write for transition `t` of the row `before` (the contact `contact`). Visible
    /// items stay until the user removes them (RFC 6121 §2.5); rows holding nothing are deleted.
    /// `user_action`: the user's own subscription stanza, which puts the contact in the roster.
    pub fn after(
        before: Option<RosterItem>,
        contact: &BareJid,
        t: &Transition,
        user_action: bool,
    ) -> RosterWrite {
        let s0 = before.as_ref().map(|b| b.state).unwrap_or_default();
        if t.state == s0 {
            return RosterWrite::Keep;
        }
        let mut item = before.unwrap_or_else(|| {
            let mut i = RosterItem::new(contact.clone());
            i.in_roster = false;
            i
        });
        item.state = t.state;
        if !t.state.pending_in {
            item.request = None;
        }
        let s = t.state;
        // §3.1.2, §3.4: a subscription the user takes part in puts the contact in the roster.
        if user_action && (s.to || s.from || s.pending_out || s.approved) {
            item.in_roster = true;
        }
        if item.is_empty() {
            RosterWrite::Delete
        } else {
            RosterWrite::Put(item)
        }
    }
}

/// The result of [`Store::roster_change`].
#[derive(Debug)]
pub struct RosterChanged<R> {
    /// What the change function returned.
    pub out: R,
    /// The new roster version, when what the user sees changed (a push is due).
    pub ver: Option<u64>,
    /// The item as the user now sees it (None: not in the roster any more, or never was).
    pub item: Option<RosterItem>,
}

macro_rules! cols {
    () => {
        "contact, name, sub_to, sub_from, ask_out, pending_in, approved, in_roster, request"
    };
}

/// One row as read, before its contact JID is parsed.
struct RawRow {
    contact: String,
    name: Option<String>,
    state: SubState,
    in_roster: bool,
    request: Option<String>,
}

fn raw_row(mut r: Row) -> Result<RawRow, StoreError> {
    Ok(RawRow {
        contact: r.text(0)?,
        name: r.opt_text(1)?,
        state: SubState {
            to: r.bool(2)?,
            from: r.bool(3)?,
            pending_out: r.bool(4)?,
            pending_in: r.bool(5)?,
            approved: r.bool(6)?,
        },
        in_roster: r.bool(7)?,
        request: r.opt_text(8)?,
    })
}

impl RawRow {
    fn into_item(self, groups: Vec<String>) -> Result<RosterItem, StoreError> {
        Ok(RosterItem {
            jid: BareJid::parse(&self.contact).map_err(Corruption::Jid)?,
            name: self.name,
            groups,
            state: self.state,
            in_roster: self.in_roster,
            request: self.request,
        })
    }
}

const ITEMS: Sql = sql(concat!(
    "SELECT ",
    cols!(),
    " FROM roster_items WHERE \"user\" = ?1 AND in_roster = 1 ORDER BY contact"
));
const ROWS: Sql = sql(concat!(
    "SELECT ",
    cols!(),
    " FROM roster_items WHERE \"user\" = ?1 ORDER BY contact"
));
const ROW: Sql = sql(concat!(
    "SELECT ",
    cols!(),
    " FROM roster_items WHERE \"user\" = ?1 AND contact = ?2"
));
const PUT: Sql = sql("INSERT INTO roster_items
     (\"user\", contact, name, sub_to, sub_from, ask_out, pending_in, approved, in_roster, request)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
     ON CONFLICT (\"user\", contact) DO UPDATE SET
       name = excluded.name, sub_to = excluded.sub_to, sub_from = excluded.sub_from,
       ask_out = excluded.ask_out, pending_in = excluded.pending_in, approved = excluded.approved,
       in_roster = excluded.in_roster, request = excluded.request");
const DELETE_GROUPS: Sql = sql("DELETE FROM roster_groups WHERE \"user\" = ?1 AND contact = ?2");
// PostgreSQL would read an unqualified `ver` as ambiguous (the row or `excluded`).
const BUMP: Sql = sql("INSERT INTO roster_version (\"user\", ver) VALUES (?1, 1)
     ON CONFLICT (\"user\") DO UPDATE SET ver = roster_version.ver + 1 RETURNING ver");

impl Store {
    fn groups_of(&self, user: &str, contact: &str) -> Result<Vec<String>, StoreError> {
        let q =
            sql("SELECT grp FROM roster_groups WHERE \"user\" = ?1 AND contact = ?2 ORDER BY grp");
        self.rows(q, args![user, contact])?
            .into_iter()
            .map(|mut r| r.text(0))
            .collect()
    }

    fn finish_item(&self, user: &str, raw: RawRow) -> Result<RosterItem, StoreError> {
        let groups = self.groups_of(user, &raw.contact)?;
        raw.into_item(groups)
    }

    /// The user's roster version (0 before the first change).
    pub fn roster_version(&self, user: &BareJid) -> Result<u64, StoreError> {
        let q = sql("SELECT ver FROM roster_version WHERE \"user\" = ?1");
        let v = match self.row(q, args![user.as_str()])? {
            Some(mut r) => r.int(0)?,
            None => 0,
        };
        Ok(v.max(0) as u64)
    }

    /// The user's roster (visible items, sorted by contact) and its version.
    pub fn roster_items(&self, user: &BareJid) -> Result<(u64, Vec<RosterItem>), StoreError> {
        let ver = self.roster_version(user)?;
        let items = self
            .rows(ITEMS, args![user.as_str()])?
            .into_iter()
            .map(|r| self.finish_item(user.as_str(), raw_row(r)?))
            .collect::<Result<_, _>>()?;
        Ok((ver, items))
    }

    /// Every row of the user (hidden pending requests too), for presence broadcasts and re-delivery.
    pub fn roster_rows(&self, user: &BareJid) -> Result<Vec<RosterItem>, StoreError> {
        self.rows(ROWS, args![user.as_str()])?
            .into_iter()
            .map(|r| raw_row(r)?.into_item(Vec::new()))
            .collect()
    }

    /// [`Store::roster_rows`] with each item's groups (read in one more query): for who decides by
    /// groups (PEP's `roster` access model).
    pub fn roster_rows_grouped(&self, user: &BareJid) -> Result<Vec<RosterItem>, StoreError> {
        let q = sql("SELECT contact, grp FROM roster_groups WHERE \"user\" = ?1 ORDER BY grp");
        let mut groups: ahash::HashMap<String, Vec<String>> = Default::default();
        for mut r in self.rows(q, args![user.as_str()])? {
            let contact = r.text(0)?;
            groups.entry(contact).or_default().push(r.text(1)?);
        }
        self.rows(ROWS, args![user.as_str()])?
            .into_iter()
            .map(|r| {
                let raw = raw_row(r)?;
                let g = groups.remove(&raw.contact).unwrap_or_default();
                raw.into_item(g)
            })
            .collect()
    }

    /// One row (hidden or not).
    pub fn roster_item(
        &self,
        user: &BareJid,
        contact: &BareJid,
    ) -> Result<Option<RosterItem>, StoreError> {
        self.row(ROW, args![user.as_str(), contact.as_str()])?
            .map(|r| self.finish_item(user.as_str(), raw_row(r)?))
            .transpose()
    }

    /// Whether `user` shares its presence with `contact` (a `from` or `both` subscription): who may
    /// learn about the account what its presence tells (XEP-0012 §4, the account's disco#info).
    pub fn shares_presence_with(
        &self,
        user: &BareJid,
        contact: &BareJid,
    ) -> Result<bool, StoreError> {
        Ok(self
            .roster_item(user, contact)?
            .is_some_and(|item| item.state.from))
    }

    /// Reads the row for (`user`, `contact`), lets `change` decide (given the row and the number of
    /// visible items), writes what it decided, and bumps the version if the visible item changed:
    /// all in one transaction, so nothing is stored half-way. On PostgreSQL the transaction holds
    /// the user's roster lock, so the count and the version cannot move under it. `NoSuchUser`
    /// (nothing written) when the account does not exist or was removed meanwhile: a removed
    /// account's name gets no rows back, and a stranger's request to no account is not kept for
    /// the next account of that name (RFC 6121 §8.5.1).
    pub fn roster_change<R>(
        &self,
        user: &BareJid,
        contact: &BareJid,
        change: impl FnOnce(Option<RosterItem>, u64) -> (RosterWrite, R),
    ) -> Result<RosterChanged<R>, StoreError> {
        let lock = format!("roster {user}");
        self.account_write(user, Some(&lock), || {
            let before = self.roster_item(user, contact)?;
            let count = self.int(
                sql("SELECT count(*) FROM roster_items WHERE \"user\" = ?1 AND in_roster = 1"),
                args![user.as_str()],
            )?;
            let seen_before = before.clone().filter(|i| i.in_roster);
            let (write, out) = change(before, count.max(0) as u64);
            let after = match write {
                RosterWrite::Keep => {
                    return Ok(End::Rollback(RosterChanged {
                        out,
                        ver: None,
                        item: seen_before,
                    }))
                }
                RosterWrite::Delete => {
                    self.delete_row(user, contact)?;
                    None
                }
                RosterWrite::Put(item) => {
                    self.put_row(user, &item)?;
                    Some(item)
                }
            };
            let seen_after = after.filter(|i| i.in_roster);
            let visible_change = match (&seen_before, &seen_after) {
                (Some(a), Some(b)) => !a.same_view(b),
                (None, None) => false,
                _ => true,
            };
            let ver = if visible_change {
                Some(self.int(BUMP, args![user.as_str()])?.max(0) as u64)
            } else {
                None
            };
            Ok(End::Commit(RosterChanged {
                out,
                ver,
                item: seen_after,
            }))
        })
    }

    /// `user` receives the subscription stanza `kind` from `contact` (RFC 6121 Appendix A.3), in
    /// the store only: for a contact's server that is not running (`petrel user del`).
    pub fn roster_inbound(
        &self,
        user: &BareJid,
        contact: &BareJid,
        kind: SubKind,
    ) -> Result<RosterChanged<Transition>, StoreError> {
        self.roster_change(user, contact, |before, _| {
            let t = before
                .as_ref()
                .map(|b| b.state)
                .unwrap_or_default()
                .inbound(kind);
            (RosterWrite::after(before, contact, &t, false), t)
        })
    }

    fn delete_row(&self, user: &BareJid, contact: &BareJid) -> Result<(), StoreError> {
        let (u, c) = (user.as_str(), contact.as_str());
        self.exec(
            sql("DELETE FROM roster_items WHERE \"user\" = ?1 AND contact = ?2"),
            args![u, c],
        )?;
        self.exec(DELETE_GROUPS, args![u, c])?;
        Ok(())
    }

    fn put_row(&self, user: &BareJid, item: &RosterItem) -> Result<(), StoreError> {
        let s = item.state;
        let (u, c) = (user.as_str(), item.jid.as_str());
        self.exec(
            PUT,
            args![
                u,
                c,
                item.name.as_deref(),
                s.to,
                s.from,
                s.pending_out,
                s.pending_in,
                s.approved,
                item.in_roster,
                item.request.as_deref()
            ],
        )?;
        self.exec(DELETE_GROUPS, args![u, c])?;
        let ins = sql(
            "INSERT INTO roster_groups (\"user\", contact, grp) VALUES (?1, ?2, ?3)
             ON CONFLICT DO NOTHING",
        );
        for g in &item.groups {
            self.exec(ins, args![u, c, g])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::test_dbs;

    fn jid(s: &str) -> BareJid {
        BareJid::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn item(contact: &str) -> RosterItem {
        RosterItem::new(jid(contact))
    }

    #[test]
    fn change_bumps_version_only_on_visible_changes_and_rolls_back() {
        for db in test_dbs() {
            eprintln!("backend: {}", db.name);
            let store = db.open();
            let u = jid("alice@example.com");
            let c = jid("bob@example.com");
            // No account, no rows (RFC 6121 §8.5.1): nothing is kept for a later one.
            let r = store.roster_change(&u, &c, |_, _| {
                (RosterWrite::Put(item("bob@example.com")), ())
            });
            assert!(matches!(r, Err(StoreError::NoSuchUser)), "{r:?}");
            assert_eq!(store.roster_rows(&u).map(|r| r.len()).ok(), Some(0));
            store
                .add_user(&u, &crate::auth::ScramSecrets::derive("pw", 16))
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(store.roster_version(&u).ok(), Some(0));
            let mut it = item("bob@example.com");
            it.name = Some("Bob".into());
            it.groups = vec!["Friends".into(), "Work".into()];
            let r = store
                .roster_change(&u, &c, |_, n| {
                    assert_eq!(n, 0);
                    (RosterWrite::Put(it.clone()), ())
                })
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(r.ver, Some(1));
            let (ver, items) = store.roster_items(&u).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(ver, 1);
            assert_eq!(items, vec![it.clone()]);
            // A hidden change (pending in) does not bump.
            let mut hidden = it.clone();
            hidden.state.pending_in = true;
            hidden.request = Some("<presence/>".into());
            let r = store
                .roster_change(&u, &c, |_, n| {
                    assert_eq!(n, 1);
                    (RosterWrite::Put(hidden), ())
                })
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(r.ver, None);
            // Hidden rows are not in the roster but are in the rows.
            let d = jid("dave@example.com");
            let mut pend = item("dave@example.com");
            pend.in_roster = false;
            pend.state.pending_in = true;
            store
                .roster_change(&u, &d, |_, _| (RosterWrite::Put(pend), ()))
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(store.roster_items(&u).map(|r| r.1.len()).ok(), Some(1));
            assert_eq!(store.roster_rows(&u).map(|r| r.len()).ok(), Some(2));
            // Delete: visible -> bump, groups gone.
            let r = store
                .roster_change(&u, &c, |_, _| (RosterWrite::Delete, ()))
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(r.ver, Some(2));
            assert!(r.item.is_none());
            assert!(store
                .groups_of(u.as_str(), c.as_str())
                .map(|g| g.is_empty())
                .unwrap_or(false));
            // Keep writes nothing.
            let r = store
                .roster_change(&u, &c, |before, _| {
                    assert!(before.is_none());
                    (RosterWrite::Keep, 7)
                })
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!((r.out, r.ver), (7, None));
        }
    }
}
