//! XEP-0082 date-times, as the archive, delayed delivery and upload retries write them.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// XEP-0082 date-time of `us` microseconds since the Unix epoch (UTC, fraction only when needed).
pub fn stamp(us: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_xep_0082() {
        assert_eq!(stamp(1_278_803_305_000_000), "2010-07-10T23:08:25Z");
        assert_eq!(stamp(1_278_803_305_000_250), "2010-07-10T23:08:25.00025Z");
    }
}
