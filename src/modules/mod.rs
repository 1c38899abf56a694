//! Server modules (MongooseIM's `mod_*`): each registers hook handlers and IQ handlers on a shard at
//! start-up, from its `[modules.NAME]` table in `petrel.toml`.

pub mod blocking;
mod disco;
pub mod offline;
mod ping;
pub mod private;
pub mod vcard;

use crate::config::Config;
use crate::shard::Shard;

/// Modules petrel knows, in start order (disco last: it advertises what the others registered).
pub const KNOWN: &[&str] = &["ping", "offline", "blocking", "private", "vcard", "disco"];

/// Registers the configured modules' handlers on `shard`.
pub fn start(config: &Config, shard: &mut Shard) {
    let hosts: Vec<String> = config.general.hosts.iter().map(|h| h.to_string()).collect();
    for &name in KNOWN {
        let Some(table) = config.modules.get(name) else {
            continue;
        };
        let started = match name {
            "ping" => {
                ping::start(shard, &hosts);
                Ok(())
            }
            "disco" => {
                disco::start(shard, &hosts);
                Ok(())
            }
            "offline" => offline::Options::from_table(table).map(|o| offline::start(shard, &o)),
            "blocking" => blocking::Options::from_table(table)
                .map(|o| blocking::start(shard, &hosts, &o, &config.general.data_dir)),
            "private" => {
                private::Options::from_table(table).map(|o| private::start(shard, &hosts, &o))
            }
            "vcard" => vcard::Options::from_table(table).map(|o| vcard::start(shard, &hosts, &o)),
            _ => Ok(()),
        };
        if let Err(e) = started {
            // `check_options` refuses such a config before the shards start; this is a backstop.
            tracing::error!(error = %e, "module not started");
        }
    }
}

/// Validates the option tables of the modules that read options; run before the shards start so a
/// bad `[modules.NAME]` stops the server with a clear error.
pub fn check_options(config: &Config) -> Result<(), offline::OptionError> {
    for (name, table) in &config.modules {
        match name.as_str() {
            "offline" => offline::Options::from_table(table).map(drop)?,
            "blocking" => blocking::Options::from_table(table).map(drop)?,
            "private" => private::Options::from_table(table).map(drop)?,
            "vcard" => vcard::Options::from_table(table).map(drop)?,
            _ => {}
        }
    }
    Ok(())
}

/// Features the enabled storage modules add to the server's disco#info (for `mod_disco`).
pub fn im_storage_features(config: &Config) -> Vec<&'static str> {
    let mut v = Vec::new();
    for (name, features) in [
        ("offline", offline::FEATURES),
        ("blocking", blocking::FEATURES),
        ("private", private::FEATURES),
        ("vcard", vcard::FEATURES),
    ] {
        if config.modules.contains_key(name) {
            v.extend_from_slice(features);
        }
    }
    v
}
