//! `[modules.muc]` options.

use super::room::RoomLimits;
use crate::modules::options::{OptionError, Options};

/// The module's name in `[modules.NAME]`.
pub const NAME: &str = "muc";

/// Options of `[modules.muc]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MucOptions {
    /// The service's domain, `@HOST@` standing for each hosted domain (MongooseIM's `host`).
    pub host: String,
    /// Rooms a user may have created that still exist (`not-allowed` past it).
    pub max_rooms_per_user: u32,
    /// What every room enforces (occupants, history kept in memory, message size).
    pub limits: RoomLimits,
    /// Service administrators: accounts that are owners of every room of the service (to take
    /// over a room whose owners are gone, moderate or destroy any room).
    pub admins: Vec<crate::jid::BareJid>,
}

impl Default for MucOptions {
    fn default() -> Self {
        MucOptions {
            host: "conference.@HOST@".to_owned(),
            max_rooms_per_user: 100,
            limits: RoomLimits::default(),
            admins: Vec::new(),
        }
    }
}

impl MucOptions {
    /// Reads `[modules.muc]`.
    pub fn from_table(table: &toml::Table) -> Result<MucOptions, OptionError> {
        let o = Options::new(NAME, Some(table));
        o.only(&[
            "host",
            "max_rooms_per_user",
            "max_occupants",
            "max_history",
            "max_stanza_bytes",
            "max_affiliations",
            "admins",
        ])?;
        let d = MucOptions::default();
        let host = o.string("host", &d.host)?;
        if !host.contains("@HOST@") && crate::jid::BareJid::domain_only(&host).is_err() {
            return Err(o.invalid("host", "a domain, `@HOST@` standing for each hosted domain"));
        }
        Ok(MucOptions {
            admins: o.accounts("admins")?,
            host,
            max_rooms_per_user: o.positive_u32("max_rooms_per_user", d.max_rooms_per_user)?,
            limits: RoomLimits {
                max_occupants: o.positive_u32("max_occupants", d.limits.max_occupants)?,
                max_history: u32::try_from(o.uint(
                    "max_history",
                    u64::from(d.limits.max_history),
                    10_000,
                )?)
                // `uint` checked the value is at most 10 000.
                .unwrap_or(10_000),
                max_stanza_bytes: o.positive_u32(
                    "max_stanza_bytes",
                    u32::try_from(d.limits.max_stanza_bytes).unwrap_or(u32::MAX),
                )? as usize,
                max_affiliations: o.positive_u32(
                    "max_affiliations",
                    u32::try_from(d.limits.max_affiliations).unwrap_or(u32::MAX),
                )? as usize,
            },
        })
    }

    /// The service domain for hosted domain `host`.
    pub fn service_for(&self, host: &str) -> String {
        self.host.replace("@HOST@", host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<MucOptions, OptionError> {
        let t: toml::Table = toml::from_str(s).unwrap_or_else(|e| panic!("{e}"));
        MucOptions::from_table(&t)
    }

    #[test]
    fn defaults_and_pattern() {
        let o = parse("").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(o, MucOptions::default());
        assert_eq!(o.service_for("example.org"), "conference.example.org");
        let o = parse("host = \"muc.@HOST@\"\nmax_occupants = 7").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(o.service_for("a.b"), "muc.a.b");
        assert_eq!(o.limits.max_occupants, 7);
    }

    #[test]
    fn bad_options_are_refused() {
        assert!(parse("hots = \"x\"").is_err());
        assert!(parse("max_occupants = 0").is_err());
        assert!(parse("host = \"bad domain\"").is_err());
        assert!(parse("max_history = 100000").is_err());
        // Service administrators are accounts.
        for bad in ["\"root@x\"", "[\"x.org\"]", "[\"@x\"]", "[1]"] {
            assert!(parse(&format!("admins = {bad}")).is_err(), "{bad}");
        }
        let o = parse("admins = [\"Root@X.org\"]").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(o.admins.len(), 1);
        assert_eq!(o.admins[0].as_str(), "root@x.org");
    }
}
