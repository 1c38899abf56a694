//! Server modules (MongooseIM's `mod_*`): each registers hook handlers and IQ handlers on a shard at
//! start-up, from its `[modules.NAME]` table in `petrel.toml`.

mod disco;
mod ping;

use crate::config::Config;
use crate::shard::Shard;

/// Modules petrel knows, in start order (disco last: it advertises what the others registered).
pub const KNOWN: &[&str] = &["ping", "disco"];

/// Registers the configured modules' handlers on `shard`.
pub fn start(config: &Config, shard: &mut Shard) {
    let hosts: Vec<String> = config.general.hosts.iter().map(|h| h.to_string()).collect();
    for &name in KNOWN {
        if !config.modules.contains_key(name) {
            continue;
        }
        match name {
            "ping" => ping::start(shard, &hosts),
            "disco" => disco::start(shard, &hosts),
            _ => {}
        }
    }
}
