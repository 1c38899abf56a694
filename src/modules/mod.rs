//! Server modules (MongooseIM's `mod_*`): each registers hook handlers and IQ handlers on a shard at
//! start-up, from its `[modules.NAME]` table in `petrel.toml`.

pub mod carbons;
pub mod csi;
pub mod disco;
pub mod last;
#[cfg(test)]
mod misc_tests;
mod options;
pub mod ping;
pub mod presence;
pub mod register;
pub mod roster;
#[cfg(test)]
mod testing;
pub mod time;
pub mod version;

pub use options::OptionError;

use std::time::Duration;

use crate::config::Config;
use crate::shard::Shard;

/// Modules petrel knows, in start order (disco last: it advertises what the others registered).
pub const KNOWN: &[&str] = &[
    "roster", "presence", "ping", "version", "time", "last", "register", "csi", "carbons", "disco",
];

/// What the c2s listeners take from the module configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct C2sModuleOptions {
    /// `[modules.ping] ping_interval` (zero: the server never pings clients).
    pub ping_interval: Duration,
    /// `[modules.ping] ping_timeout`.
    pub ping_timeout: Duration,
    /// `[modules.register]` is present: registration before authentication is allowed.
    pub register: bool,
    /// `[modules.csi]` is present: Client State Indication is offered.
    pub csi: bool,
}

/// Validates the options of the modules in this file and returns what the c2s needs; called once
/// at start-up, before any shard starts, so `start` may rely on valid options.
pub fn c2s_options(config: &Config) -> Result<C2sModuleOptions, OptionError> {
    let ping = ping::options(config.modules.get("ping"))?;
    version::options(config.modules.get("version"))?;
    register::options(config.modules.get("register"))?;
    csi::options(config.modules.get("csi"))?;
    options::Options::new("carbons", config.modules.get("carbons")).only(&[])?;
    Ok(C2sModuleOptions {
        ping_interval: ping.interval,
        ping_timeout: ping.timeout,
        register: config.modules.contains_key("register"),
        csi: config.modules.contains_key("csi"),
    })
}

/// Registers the configured modules' handlers on `shard`.
pub fn start(config: &Config, shard: &mut Shard) {
    let hosts: Vec<String> = config.general.hosts.iter().map(|h| h.to_string()).collect();
    for &name in KNOWN {
        let Some(table) = config.modules.get(name) else {
            continue;
        };
        match name {
            "roster" => {
                // Options were checked by `check` before the shards started; defaults otherwise.
                let opts =
                    roster::RosterOpts::from_table(&config.modules[name]).unwrap_or_default();
                roster::start(shard, &hosts, opts)
            }
            "presence" => presence::start(shard, &hosts),
            "ping" => ping::start(shard, &hosts),
            // Options were validated by `c2s_options` before the shards started.
            "version" => version::start(
                shard,
                &hosts,
                version::options(Some(table)).unwrap_or_default(),
            ),
            "time" => time::start(shard, &hosts),
            "last" => last::start(shard, &hosts),
            "register" => register::start(
                shard,
                &hosts,
                register::options(Some(table)).unwrap_or_default(),
                config.auth.scram_iterations,
            ),
            // Options were validated by `c2s_options` before the shards started.
            "csi" => csi::start(shard, csi::options(Some(table)).unwrap_or_default()),
            "carbons" => carbons::start(shard, &hosts),
            "disco" => disco::start(shard, &hosts),
            _ => {}
        }
    }
}

/// A module's options are wrong.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// `[modules.roster]`.
    #[error("[modules.roster]: {0}")]
    Roster(#[from] roster::OptionError),
    /// `[modules.presence]` takes no options.
    #[error("[modules.presence]: unknown option `{0}` (the module takes none)")]
    Presence(String),
}

/// Checks the options of the configured modules (call before starting the shards).
pub fn check(config: &Config) -> Result<(), ModuleError> {
    if let Some(t) = config.modules.get("roster") {
        roster::RosterOpts::from_table(t)?;
    }
    if let Some(k) = config.modules.get("presence").and_then(|t| t.keys().next()) {
        return Err(ModuleError::Presence(k.clone()));
    }
    Ok(())
}
