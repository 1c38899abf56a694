//! Command line: `petrel serve | check-config | user ... | mam ... | ctl ...`.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use tracing::info;

use crate::config::{Config, ConfigError};
use crate::logging::{self, LoggingError};
use crate::tls::{self, TlsError};

mod ctl;
mod mam;
mod user;

pub use ctl::{CtlArgs, CtlCommand, CtlDomain, CtlError, CtlUser};
pub use user::UserError;

/// The config file looked for when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "./petrel.toml";

/// petrel: a thread-per-core XMPP server.
#[derive(Debug, Parser)]
#[command(name = "petrel", version, about)]
pub struct Cli {
    /// Configuration file. Default: ./petrel.toml, or, if that file does not exist, the
    /// built-in default configuration (hosts = ["localhost"], c2s on port 5222).
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve {
        /// Number of shards (one per CPU), overriding [shards] count.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
        shards: Option<u16>,
        /// Allow more shards than CPUs this process may use (they then share CPUs; for tests).
        #[arg(long)]
        allow_oversubscribe: bool,
    },
    /// Validate the configuration and print the effective one, defaults filled in.
    CheckConfig,
    /// Manage user accounts in the store.
    User {
        /// The user command.
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Drive a running server through its admin API (`[admin]` and a [[listen.http]] serving
    /// "api").
    Ctl(ctl::CtlArgs),
    /// Manage the message archive (XEP-0313) in the store.
    Mam {
        /// The archive command.
        #[command(subcommand)]
        command: MamCommand,
    },
}

/// `petrel mam ...`.
#[derive(Debug, Subcommand)]
pub enum MamCommand {
    /// Delete every archived message older than a date (all archives).
    Purge {
        /// YYYY-MM-DD (midnight UTC) or an RFC 3339 time.
        #[arg(long)]
        before: String,
    },
}

/// `petrel user ...`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account.
    Add {
        /// Bare JID (user@domain) on one of the configured hosts.
        jid: String,
        /// Password, or "-" to read one line from standard input.
        password: String,
    },
    /// Delete an account.
    Del {
        /// Bare JID of the account.
        jid: String,
    },
    /// Change an account's password.
    Passwd {
        /// Bare JID of the account.
        jid: String,
        /// New password, or "-" to read one line from standard input.
        password: String,
    },
    /// Create many numbered accounts at once (PREFIX{FIRST}..PREFIX{FIRST+COUNT-1}@DOMAIN, one
    /// password), for load tests; existing ones are left as they are.
    AddRange {
        /// Localpart prefix.
        #[arg(long, default_value = "user")]
        prefix: String,
        /// First number.
        #[arg(long, default_value_t = 1)]
        first: u64,
        /// How many accounts.
        #[arg(long)]
        count: u64,
        /// Domain (one of the configured hosts).
        domain: String,
        /// Password for all of them, or "-" to read one line from standard input.
        password: String,
    },
    /// List accounts, one JID per line.
    List {
        /// Only accounts on this domain.
        domain: Option<String>,
    },
}

/// Why a command failed; rendered as one line on stderr.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The configuration could not be loaded.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Logging could not be set up.
    #[error(transparent)]
    Logging(#[from] LoggingError),
    /// A configured certificate/key pair is unusable.
    #[error("listener on port {port}: {source}")]
    Tls {
        /// The listener's port.
        port: u16,
        /// What is wrong with its files.
        source: TlsError,
    },
    /// `[s2s] certfile`/`keyfile` cannot be used.
    #[error("s2s: {0}")]
    S2sTls(TlsError),
    /// The server stopped with an error.
    #[error(transparent)]
    Serve(#[from] crate::rt::RtError),
    /// A `user` command failed.
    #[error(transparent)]
    User(#[from] UserError),
    /// A `mam` command failed.
    #[error(transparent)]
    Mam(#[from] mam::MamError),
    /// A `ctl` command failed.
    #[error(transparent)]
    Ctl(#[from] ctl::CtlError),
}

/// Where the configuration came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigOrigin {
    /// A file on disk.
    File,
    /// The built-in default, because `./petrel.toml` does not exist.
    Embedded,
}

/// Loads `--config FILE`, or `./petrel.toml`, or the embedded default when neither is given
/// nor present. An explicitly named file must exist.
pub fn load_config(path: Option<&Path>) -> Result<(Config, ConfigOrigin), ConfigError> {
    match path {
        Some(path) => Ok((Config::load(path)?, ConfigOrigin::File)),
        None => {
            let default = Path::new(DEFAULT_CONFIG_PATH);
            if default.exists() {
                Ok((Config::load(default)?, ConfigOrigin::File))
            } else {
                Ok((Config::default_embedded(), ConfigOrigin::Embedded))
            }
        }
    }
}

/// Runs one command line. Logging lives exactly as long as this call, so everything is
/// flushed before the caller prints an error.
pub fn run(cli: Cli) -> Result<(), CliError> {
    let (config, origin) = load_config(cli.config.as_deref())?;
    let _log_guard = logging::init(config.general.loglevel.as_str())?;
    match origin {
        ConfigOrigin::Embedded => info!(
            "{DEFAULT_CONFIG_PATH} not found and no --config given: using the built-in default configuration"
        ),
        ConfigOrigin::File => info!(file = %config.source.display(), "configuration loaded"),
    }
    match cli.command {
        Command::Serve {
            shards,
            allow_oversubscribe,
        } => {
            let shards = Some(shards.map(usize::from).unwrap_or(config.shards.count));
            crate::rt::serve(
                config,
                crate::rt::ServeOptions {
                    shards,
                    allow_oversubscribe,
                },
            )?
        }
        Command::CheckConfig => {
            check_certificates(&config)?;
            // The component check and the stream features start the modules on a scratch shard:
            // on a scratch store too, once for both.
            crate::modules::with_scratch_store(&config, |c| {
                crate::modules::check(c)?;
                crate::modules::c2s_options(c).map_err(crate::modules::ModuleError::from)
            })
            .map_err(crate::rt::RtError::from)?;
            print!("{}", config.to_toml());
        }
        Command::User { command } => user::run(&config, command)?,
        Command::Mam { command } => mam::run(&config, command)?,
        Command::Ctl(args) => ctl::run(&config, args)?,
    }
    Ok(())
}

/// Loads configured certificate/key pairs (c2s and HTTP listeners, `[s2s]`) so `check-config`
/// catches unusable files. Listeners without files are skipped: checking them would generate a
/// certificate.
fn check_certificates(config: &Config) -> Result<(), CliError> {
    let sessions = config
        .listen
        .c2s
        .iter()
        .chain(config.listen.http.iter().map(|h| &h.session));
    for listener in sessions {
        if listener.tls.uses_tls() && listener.certfile.is_some() {
            tls::server_config(listener, &config.general).map_err(|source| CliError::Tls {
                port: listener.port,
                source,
            })?;
        }
    }
    if let (Some(cert), Some(key)) = (&config.s2s.certfile, &config.s2s.keyfile) {
        tls::load_pair(cert, key).map_err(CliError::S2sTls)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn arguments_parse() {
        let cli = Cli::try_parse_from(["petrel", "serve", "--config", "x.toml", "--shards", "3"])
            .unwrap();
        assert_eq!(cli.config.as_deref(), Some(Path::new("x.toml")));
        assert!(matches!(
            cli.command,
            Command::Serve {
                shards: Some(3),
                ..
            }
        ));

        let cli =
            Cli::try_parse_from(["petrel", "-c", "y.toml", "user", "add", "a@b", "-"]).unwrap();
        assert_eq!(cli.config.as_deref(), Some(Path::new("y.toml")));
        assert!(matches!(
            cli.command,
            Command::User { command: UserCommand::Add { ref jid, ref password } } if jid == "a@b" && password == "-"
        ));

        let cli = Cli::try_parse_from(["petrel", "user", "list"]).unwrap();
        assert!(cli.config.is_none());
        assert!(matches!(
            cli.command,
            Command::User {
                command: UserCommand::List { domain: None }
            }
        ));

        assert!(Cli::try_parse_from(["petrel", "serve", "--shards", "0"]).is_err());
        assert!(Cli::try_parse_from(["petrel", "user", "add", "a@b"]).is_err());
        assert!(Cli::try_parse_from(["petrel", "frobnicate"]).is_err());
    }

    #[test]
    fn explicit_missing_config_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_config(Some(&dir.path().join("nope.toml"))).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
    }
}
