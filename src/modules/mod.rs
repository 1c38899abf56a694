//! Server modules (MongooseIM's `mod_*`): each registers hook handlers and IQ handlers on a shard at
//! start-up, from its `[modules.NAME]` table in `petrel.toml`.

mod disco;
mod ping;
pub mod presence;
pub mod roster;

use crate::config::Config;
use crate::shard::Shard;

/// Modules petrel knows, in start order (disco last: it advertises what the others registered).
pub const KNOWN: &[&str] = &["roster", "presence", "ping", "disco"];

/// Registers the configured modules' handlers on `shard`.
pub fn start(config: &Config, shard: &mut Shard) {
    let hosts: Vec<String> = config.general.hosts.iter().map(|h| h.to_string()).collect();
    for &name in KNOWN {
        if !config.modules.contains_key(name) {
            continue;
        }
        match name {
            "roster" => {
                // Options were checked by `check` before the shards started; defaults otherwise.
                let opts =
                    roster::RosterOpts::from_table(&config.modules[name]).unwrap_or_default();
                roster::start(shard, &hosts, opts)
            }
            "presence" => presence::start(shard, &hosts),
            "ping" => ping::start(shard, &hosts),
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
