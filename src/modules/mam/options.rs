//! `[modules.mam]` options.

use std::time::Duration;

use super::prefs::Mode;
use crate::modules::options::{OptionError, Options};

/// The module's name in `[modules.NAME]`.
pub const NAME: &str = "mam";

/// Options of `[modules.mam]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MamOptions {
    /// Archiving default for owners who set no preferences.
    pub default_mode: Mode,
    /// Page size when a query names none.
    pub default_page: u32,
    /// Largest page a query may ask for (`policy-violation` past it).
    pub max_page: u32,
    /// Messages kept per archive (0: no limit); older ones are removed by the retention task.
    pub max_messages: u64,
    /// Age past which messages are removed (zero: no limit).
    pub max_age: Duration,
    /// How often the retention task runs.
    pub retention_interval: Duration,
    /// Rows buffered on a shard before they are written even within one scheduler turn.
    pub batch: usize,
}

impl Default for MamOptions {
    fn default() -> Self {
        MamOptions {
            default_mode: Mode::Always,
            default_page: 50,
            max_page: 250,
            max_messages: 0,
            max_age: Duration::ZERO,
            retention_interval: Duration::from_secs(3600),
            batch: 512,
        }
    }
}

impl MamOptions {
    /// Reads `[modules.mam]`.
    pub fn from_table(table: &toml::Table) -> Result<MamOptions, OptionError> {
        let o = Options::new(NAME, Some(table));
        o.only(&[
            "default",
            "default_page",
            "max_page",
            "max_messages",
            "max_age_days",
            "retention_interval",
            "batch",
        ])?;
        let d = MamOptions::default();
        let mode = o.string("default", d.default_mode.as_str())?;
        let default_mode =
            Mode::parse(&mode).ok_or_else(|| o.invalid("default", "always, never or roster"))?;
        let max_page = o.positive_u32("max_page", d.max_page)?;
        let default_page = o.positive_u32("default_page", d.default_page)?;
        if default_page > max_page {
            return Err(o.invalid("default_page", "at most max_page"));
        }
        let days = o.uint("max_age_days", 0, 100 * 365)?;
        let interval = o.secs("retention_interval", d.retention_interval.as_secs())?;
        if interval.is_zero() {
            return Err(o.invalid("retention_interval", "at least 1 second"));
        }
        Ok(MamOptions {
            default_mode,
            default_page,
            max_page,
            max_messages: o.uint("max_messages", 0, u64::from(u32::MAX))?,
            max_age: Duration::from_secs(days * 24 * 3600),
            retention_interval: interval,
            batch: o.positive_u32("batch", 512)? as usize,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<MamOptions, OptionError> {
        let t: toml::Table = toml::from_str(s).unwrap_or_else(|e| panic!("{e}"));
        MamOptions::from_table(&t)
    }

    #[test]
    fn defaults_and_errors() {
        assert_eq!(
            parse("").unwrap_or_else(|e| panic!("{e}")),
            MamOptions::default()
        );
        let o = parse("default = \"roster\"\nmax_messages = 10\nmax_age_days = 2")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(o.default_mode, Mode::Roster);
        assert_eq!(o.max_age, Duration::from_secs(2 * 86400));
        assert!(parse("default = \"sometimes\"").is_err());
        assert!(parse("default_page = 300").is_err());
        assert!(parse("nope = 1").is_err());
    }
}
