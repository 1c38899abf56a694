//! `petrel mam purge --before DATE`: removes archived messages older than a date.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::config::Config;
use crate::store::{Backend, Store, StoreError};

use super::MamCommand;

/// Why a `mam` command failed.
#[derive(Debug, thiserror::Error)]
pub enum MamError {
    /// The date is neither `YYYY-MM-DD` nor an RFC 3339 timestamp.
    #[error(
        "invalid date `{0}`: expected YYYY-MM-DD or an RFC 3339 time such as 2026-01-31T12:00:00Z"
    )]
    BadDate(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Microseconds since the Unix epoch of `YYYY-MM-DD` (midnight UTC) or an RFC 3339 time.
pub fn parse_date(s: &str) -> Result<i64, MamError> {
    let full = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        s.to_owned()
    };
    let t = OffsetDateTime::parse(&full, &Rfc3339).map_err(|_| MamError::BadDate(s.to_owned()))?;
    i64::try_from(t.unix_timestamp_nanos() / 1000).map_err(|_| MamError::BadDate(s.to_owned()))
}

/// Runs a `mam` command; prints what it did.
pub fn run(config: &Config, command: MamCommand) -> Result<(), MamError> {
    match command {
        MamCommand::Purge { before } => {
            let cutoff = parse_date(&before)?;
            // The configured backend: opening the SQLite file by its path would purge nothing on
            // PostgreSQL (and leave an empty SQLite file behind).
            let store = Store::connect(&Backend::from_config(config)?)?;
            let n = store.mam_purge_before(cutoff)?;
            println!("{n} archived messages before {before} removed");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(parse_date("1970-01-02").ok(), Some(86_400_000_000));
        assert_eq!(parse_date("1970-01-01T00:00:01Z").ok(), Some(1_000_000));
        assert!(parse_date("yesterday").is_err());
        assert!(parse_date("2026-13-01").is_err());
    }
}
