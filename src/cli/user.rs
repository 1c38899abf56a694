//! `petrel user add|del|passwd|list`: account management on the store.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use crate::auth::ScramSecrets;
use crate::config::{Config, Domain, DomainError};
use crate::jid::{BareJid, JidError};
use crate::store::{Backend, Store, StoreError};

use super::UserCommand;

/// Why a `user` command failed.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// The argument is not a bare JID (or has a resource).
    #[error("invalid JID `{jid}`: {source}")]
    BadJid {
        /// The argument as given.
        jid: String,
        /// Why it was refused.
        source: JidError,
    },
    /// The JID has no localpart, so it cannot be an account.
    #[error("`{0}` is not an account JID: it has no localpart (user@domain)")]
    NoLocalpart(String),
    /// The JID's domain is not one of `general.hosts`.
    #[error("`{jid}`: domain `{domain}` is not served here (general.hosts = [{hosts}])")]
    DomainNotServed {
        /// The JID.
        jid: String,
        /// Its domain.
        domain: String,
        /// The configured hosts, comma separated.
        hosts: String,
    },
    /// `user del` while a server runs on the data directory.
    #[error("a petrel server (pid {pid}) is running on this data directory: delete `{jid}` through it (`petrel ctl user del {jid}` or DELETE /api/users/{jid}), so that its sessions end and its contacts are told")]
    ServerRunning {
        /// The account.
        jid: String,
        /// The server's pid.
        pid: String,
    },
    /// The `list` filter is not a domain name.
    #[error("invalid domain `{domain}`: {source}")]
    BadDomain {
        /// The argument as given.
        domain: String,
        /// Why it was refused.
        source: DomainError,
    },
    /// The password is empty.
    #[error("the password must not be empty")]
    EmptyPassword,
    /// Reading the password from standard input failed.
    #[error("cannot read the password from standard input: {0}")]
    ReadPassword(std::io::Error),
    /// The data directory could not be created.
    #[error("{}: cannot create data directory: {source}", path.display())]
    DataDir {
        /// `general.data_dir`.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Writing the listing to standard output failed.
    #[error("cannot write to standard output: {0}")]
    Output(std::io::Error),
}

/// Runs one `user` command against the configured store (`[store]`).
pub(super) fn run(config: &Config, command: UserCommand) -> Result<(), UserError> {
    // Validate arguments before touching the store, so a typo never creates a data directory.
    // Domains added at run time (admin API) are read from the store only for a JID whose domain
    // is not configured.
    let dynamic = std::cell::OnceCell::new();
    let dynamic = || dynamic.get_or_init(|| dynamic_domains(config)).as_slice();
    let account_jid = |c: &Config, jid: &str| account_jid(c, jid, dynamic);
    let stdin = std::io::stdin();
    let action = match command {
        UserCommand::Add { jid, password } => Action::Add(
            account_jid(config, &jid)?,
            read_password(&password, &mut stdin.lock())?,
        ),
        UserCommand::Del { jid } => Action::Del(account_jid(config, &jid)?),
        UserCommand::AddRange {
            prefix,
            first,
            count,
            domain,
            password,
        } => {
            let jids = (first..first.saturating_add(count))
                .map(|i| account_jid(config, &format!("{prefix}{i}@{domain}")))
                .collect::<Result<Vec<_>, _>>()?;
            Action::AddRange(jids, read_password(&password, &mut stdin.lock())?)
        }
        UserCommand::Passwd { jid, password } => Action::Passwd(
            account_jid(config, &jid)?,
            read_password(&password, &mut stdin.lock())?,
        ),
        UserCommand::List { domain } => Action::List(
            domain
                .map(|d| {
                    Domain::parse(&d).map_err(|source| UserError::BadDomain { domain: d, source })
                })
                .transpose()?,
        ),
    };
    // A running server would keep the account's sessions, and its contacts would not be told: it
    // must do the deletion itself.
    if let (Action::Del(jid), Some(pid)) = (
        &action,
        crate::rt::data_lock::DataDirLock::holder_of(&config.general.data_dir),
    ) {
        return Err(UserError::ServerRunning {
            jid: jid.to_string(),
            pid,
        });
    }
    let backend = Backend::from_config(config)?;
    if let Backend::Sqlite(data_dir) = &backend {
        crate::store::create_private_dir(data_dir).map_err(|source| UserError::DataDir {
            path: data_dir.clone(),
            source,
        })?;
    }
    let store = Store::connect(&backend)?;
    let iterations = config.auth.scram_iterations;
    match action {
        Action::Add(jid, password) => {
            store.add_user(&jid, &ScramSecrets::derive(&password, iterations))?;
        }
        Action::Del(jid) => {
            let roster = store.remove_user(&jid)?;
            cancel_subscriptions(&store, config, &jid, &roster)?;
        }
        Action::AddRange(jids, password) => add_range(&store, &jids, &password, iterations)?,
        Action::Passwd(jid, password) => {
            store.set_secrets(&jid, &ScramSecrets::derive(&password, iterations))?;
        }
        Action::List(domain) => {
            let users = store.list_users(domain.as_ref().map(Domain::as_str))?;
            let mut out = std::io::stdout().lock();
            for jid in users {
                writeln!(out, "{jid}").map_err(UserError::Output)?;
            }
            out.flush().map_err(UserError::Output)?;
        }
    }
    Ok(())
}

/// A validated `user` command.
enum Action {
    Add(BareJid, String),
    Del(BareJid),
    AddRange(Vec<BareJid>, String),
    Passwd(BareJid, String),
    List(Option<Domain>),
}

/// Derives the secrets on every CPU (PBKDF2 dominates), then inserts; existing accounts are kept.
fn add_range(
    store: &Store,
    jids: &[BareJid],
    password: &str,
    iterations: u32,
) -> Result<(), UserError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = jids.len().div_ceil(threads).max(1);
    let secrets: Vec<ScramSecrets> = std::thread::scope(|s| {
        let handles: Vec<_> = jids
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|_| ScramSecrets::derive(password, iterations))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            // A derive thread only panics if the OS random source fails; propagate it.
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let (mut added, mut kept) = (0usize, 0usize);
    for (jid, sec) in jids.iter().zip(&secrets) {
        match store.add_user(jid, sec) {
            Ok(()) => added += 1,
            Err(StoreError::UserExists) => kept += 1,
            Err(e) => return Err(e.into()),
        }
    }
    eprintln!("{added} accounts added, {kept} already existed");
    Ok(())
}

/// The domains added at run time, from the store (none when it does not exist yet).
fn dynamic_domains(config: &Config) -> Vec<String> {
    let Ok(backend) = Backend::from_config(config) else {
        return Vec::new();
    };
    if let Backend::Sqlite(dir) = &backend {
        if !dir.join(crate::store::DB_FILE).exists() {
            return Vec::new();
        }
    }
    match Store::connect(&backend).and_then(|s| s.list_domains()) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the run-time domains from the store");
            Vec::new()
        }
    }
}

/// Parses `jid` as `user@domain` on one of the configured hosts or of the run-time domains
/// `dynamic` gives (no resource).
fn account_jid<'a>(
    config: &Config,
    jid: &str,
    dynamic: impl FnOnce() -> &'a [String],
) -> Result<BareJid, UserError> {
    let bare = BareJid::parse(jid).map_err(|source| UserError::BadJid {
        jid: jid.to_owned(),
        source,
    })?;
    if bare.node().is_none() {
        return Err(UserError::NoLocalpart(jid.to_owned()));
    }
    let hosts = &config.general.hosts;
    if !hosts.iter().any(|h| h.as_str() == bare.domain())
        && !dynamic().iter().any(|d| d == bare.domain())
    {
        return Err(UserError::DomainNotServed {
            jid: jid.to_owned(),
            domain: bare.domain().to_owned(),
            hosts: hosts
                .iter()
                .map(Domain::as_str)
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(bare)
}

/// The password argument, or for "-" one line of `input` without its line ending.
pub(super) fn read_password(arg: &str, input: &mut impl BufRead) -> Result<String, UserError> {
    let password = if arg == "-" {
        let mut line = String::new();
        input
            .read_line(&mut line)
            .map_err(UserError::ReadPassword)?;
        let trimmed = line.strip_suffix('\n').unwrap_or(&line);
        trimmed.strip_suffix('\r').unwrap_or(trimmed).to_owned()
    } else {
        arg.to_owned()
    };
    if password.is_empty() {
        return Err(UserError::EmptyPassword);
    }
    Ok(password)
}

/// What a running server's presence module sends the contacts of a deleted account
/// (`unsubscribe` and/or `unsubscribed`, RFC 6121 §2.5.2), done in the store for the contacts of
/// the domains served here (the server is not running, and they are its users): the next account
/// of the same name inherits no subscription. Contacts of other servers cannot be told offline.
fn cancel_subscriptions(
    store: &Store,
    config: &Config,
    jid: &BareJid,
    roster: &[crate::xmpp::roster::RosterItem],
) -> Result<(), UserError> {
    use crate::xmpp::roster::SubKind;
    let dynamic = store.list_domains().unwrap_or_default();
    let served = |d: &str| {
        config.general.hosts.iter().any(|h| h.as_str() == d) || dynamic.iter().any(|x| x == d)
    };
    let mut remote = 0;
    for item in roster {
        let s = item.state;
        if !served(item.jid.domain()) {
            remote += usize::from(s.to || s.from || s.pending_out || s.pending_in);
            continue;
        }
        // A contact without an account has no roster to change.
        let told = |kind| match store.roster_inbound(&item.jid, jid, kind) {
            Ok(_) | Err(StoreError::NoSuchUser) => Ok(()),
            Err(e) => Err(e),
        };
        if s.to || s.pending_out {
            told(SubKind::Unsubscribe)?;
        }
        if s.from || s.pending_in {
            told(SubKind::Unsubscribed)?;
        }
    }
    if remote > 0 {
        eprintln!(
            "note: {remote} contact(s) on other servers were not told: `petrel ctl user del` on a running server tells them"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn config() -> Config {
        Config::parse(
            "[general]\nhosts = [\"localhost\", \"chat.example\"]\n[[listen.c2s]]\nport = 5222\n",
            Path::new("t.toml"),
        )
        .unwrap()
    }

    #[test]
    fn account_jids_must_be_bare_local_and_served() {
        let c = config();
        let none: &[String] = &[];
        let account_jid = |c: &Config, j: &str| account_jid(c, j, || none);
        let dynamic = ["dyn.example".to_owned()];
        assert!(super::account_jid(&c, "a@dyn.example", || dynamic.as_slice()).is_ok());
        assert_eq!(
            account_jid(&c, "Alice@Chat.Example").unwrap().as_str(),
            "alice@chat.example"
        );
        assert!(matches!(
            account_jid(&c, "alice@localhost/phone"),
            Err(UserError::BadJid {
                source: JidError::ResourceNotAllowed,
                ..
            })
        ));
        assert!(matches!(
            account_jid(&c, "alice@elsewhere.example"),
            Err(UserError::DomainNotServed { ref domain, .. }) if domain == "elsewhere.example"
        ));
        assert!(matches!(
            account_jid(&c, "localhost"),
            Err(UserError::NoLocalpart(_))
        ));
        assert!(matches!(
            account_jid(&c, "@localhost"),
            Err(UserError::BadJid { .. })
        ));
    }

    #[test]
    fn password_from_argument_or_one_stdin_line() {
        let mut none = std::io::empty();
        assert_eq!(
            read_password("s3cret", &mut none.by_ref()).unwrap(),
            "s3cret"
        );
        let mut input: &[u8] = b"from stdin\r\nsecond line\n";
        assert_eq!(read_password("-", &mut input).unwrap(), "from stdin");
        let mut input: &[u8] = b"no newline";
        assert_eq!(read_password("-", &mut input).unwrap(), "no newline");
        let mut input: &[u8] = b"\n";
        assert!(matches!(
            read_password("-", &mut input),
            Err(UserError::EmptyPassword)
        ));
        let mut input: &[u8] = b"";
        assert!(matches!(
            read_password("-", &mut input),
            Err(UserError::EmptyPassword)
        ));
        assert!(matches!(
            read_password("", &mut std::io::empty()),
            Err(UserError::EmptyPassword)
        ));
    }
}
