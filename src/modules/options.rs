//! Typed reading of a `[modules.NAME]` table: each module names the keys it knows, unknown keys and
//! values of the wrong type are errors reported at start-up.

use std::ops::RangeInclusive;
use std::time::Duration;

/// A `[modules.NAME]` option petrel cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    /// A key the module does not know.
    #[error("[modules.{module}]: unknown option `{key}` (known: {known})")]
    Unknown {
        /// The module.
        module: &'static str,
        /// The key as written.
        key: String,
        /// The keys the module knows, comma-separated.
        known: String,
    },
    /// A value of the wrong type or out of range.
    #[error("[modules.{module}] {key}: expected {expected}")]
    Invalid {
        /// The module.
        module: &'static str,
        /// The key.
        key: &'static str,
        /// What the value must be.
        expected: String,
    },
}

/// Reads the options of one module's table.
pub(crate) struct Options<'a> {
    module: &'static str,
    table: Option<&'a toml::Table>,
}

impl<'a> Options<'a> {
    /// The options of `module` (`None`: the module is not configured; every getter gives its default).
    pub fn new(module: &'static str, table: Option<&'a toml::Table>) -> Options<'a> {
        Options { module, table }
    }

    /// Fails on any key outside `known`.
    pub fn only(&self, known: &[&str]) -> Result<(), OptionError> {
        let Some(table) = self.table else {
            return Ok(());
        };
        match table.keys().find(|k| !known.contains(&k.as_str())) {
            Some(key) => Err(OptionError::Unknown {
                module: self.module,
                key: key.clone(),
                known: if known.is_empty() {
                    "none, the module takes no options".to_owned()
                } else {
                    known.join(", ")
                },
            }),
            None => Ok(()),
        }
    }

    /// A boolean option.
    pub fn bool(&self, key: &'static str, default: bool) -> Result<bool, OptionError> {
        match self.table.and_then(|t| t.get(key)) {
            None => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| self.invalid(key, "true or false")),
        }
    }

    /// A non-negative integer option at most `max`.
    pub fn uint(&self, key: &'static str, default: u64, max: u64) -> Result<u64, OptionError> {
        self.uint_in(key, default, 0..=max)
    }

    /// An integer option within `range` (an end at or past `i64::MAX` means no upper bound: toml
    /// integers are `i64`).
    pub fn uint_in(
        &self,
        key: &'static str,
        default: u64,
        range: RangeInclusive<u64>,
    ) -> Result<u64, OptionError> {
        match self.table.and_then(|t| t.get(key)) {
            None => Ok(default),
            Some(v) => v
                .as_integer()
                .and_then(|i| u64::try_from(i).ok())
                .filter(|i| range.contains(i))
                .ok_or_else(|| {
                    let expected = if *range.end() >= i64::MAX as u64 {
                        format!("an integer >= {}", range.start())
                    } else {
                        format!("an integer in {}..={}", range.start(), range.end())
                    };
                    self.invalid(key, expected)
                }),
        }
    }

    /// A positive integer option that fits a `u32` (sizes and counts of the storage modules).
    pub fn positive_u32(&self, key: &'static str, default: u32) -> Result<u32, OptionError> {
        let max = u64::from(u32::MAX);
        let n = self.uint_in(key, u64::from(default), 1..=max)?;
        // `uint_in` checked `n <= u32::MAX`.
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// A duration in whole seconds.
    pub fn secs(&self, key: &'static str, default: u64) -> Result<Duration, OptionError> {
        // A year is far above any sensible interval and keeps `Instant` arithmetic safe.
        self.uint(key, default, 365 * 24 * 3600)
            .map(Duration::from_secs)
    }

    /// A duration in whole seconds, at least one.
    pub fn positive_secs(&self, key: &'static str, default: u64) -> Result<Duration, OptionError> {
        let d = self.secs(key, default)?;
        if d.is_zero() {
            return Err(self.invalid(key, "at least 1 second"));
        }
        Ok(d)
    }

    /// A string option.
    pub fn string(&self, key: &'static str, default: &str) -> Result<String, OptionError> {
        match self.table.and_then(|t| t.get(key)) {
            None => Ok(default.to_owned()),
            Some(v) => v
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| self.invalid(key, "a string")),
        }
    }

    /// A list of account JIDs (`["admin@example.org", ...]`), empty by default.
    pub fn accounts(&self, key: &'static str) -> Result<Vec<crate::jid::BareJid>, OptionError> {
        let Some(v) = self.table.and_then(|t| t.get(key)) else {
            return Ok(Vec::new());
        };
        let bad = || self.invalid(key, "a list of account JIDs (\"user@domain\")");
        let list = v.as_array().ok_or_else(bad)?;
        list.iter()
            .map(|item| {
                let jid = item
                    .as_str()
                    .and_then(|s| crate::jid::BareJid::parse(s).ok())
                    .ok_or_else(bad)?;
                jid.node().is_some().then_some(jid).ok_or_else(bad)
            })
            .collect()
    }

    /// The error for a bad value of `key`.
    pub fn invalid(&self, key: &'static str, expected: impl Into<String>) -> OptionError {
        OptionError::Invalid {
            module: self.module,
            key,
            expected: expected.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(s: &str) -> toml::Table {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn typed_values_and_unknown_keys() {
        let t = table("a = true\nn = 5\nneg = -1\ns = 'x'");
        let o = Options::new("m", Some(&t));
        assert_eq!(o.bool("a", false), Ok(true));
        assert_eq!(o.bool("missing", true), Ok(true));
        assert!(o.bool("n", false).is_err());
        assert_eq!(o.uint("n", 0, 10), Ok(5));
        assert!(o.uint("n", 0, 4).is_err());
        assert!(o.uint("neg", 0, 10).is_err());
        assert_eq!(o.secs("n", 0), Ok(Duration::from_secs(5)));
        let e = o.only(&["a", "n", "neg"]).unwrap_err();
        assert!(e.to_string().contains("unknown option `s`"), "{e}");
        assert_eq!(o.only(&["a", "n", "neg", "s"]), Ok(()));
        assert_eq!(
            o.uint("n", 0, 4),
            Err(OptionError::Invalid {
                module: "m",
                key: "n",
                expected: "an integer in 0..=4".into()
            })
        );
        assert_eq!(o.uint_in("n", 0, 5..=5), Ok(5));
        assert!(o.uint_in("n", 0, 6..=9).is_err());
        let e = o.uint_in("neg", 0, 1..=i64::MAX as u64).unwrap_err();
        assert!(e.to_string().contains("expected an integer >= 1"), "{e}");
        let e = Options::new("m", Some(&t)).only(&[]).unwrap_err();
        assert!(e.to_string().contains("takes no options"), "{e}");
        let none = Options::new("m", None);
        assert_eq!(none.uint("n", 7, 10), Ok(7));
        assert_eq!(none.only(&[]), Ok(()));
    }

    #[test]
    fn positive_u32_bounds() {
        let t = table(
            "neg = -1\nzero = 0\none = 1\nbig = 4294967295\nhuge = 4294967296\nf = 1.5\ns = 'x'",
        );
        let o = Options::new("m", Some(&t));
        assert_eq!(o.positive_u32("missing", 7), Ok(7));
        assert_eq!(o.positive_u32("one", 7), Ok(1));
        assert_eq!(o.positive_u32("big", 7), Ok(u32::MAX));
        for key in ["neg", "zero", "huge", "f", "s"] {
            let e = o.positive_u32(key, 7).unwrap_err();
            assert!(
                e.to_string().contains(&format!(
                    "[modules.m] {key}: expected an integer in 1..=4294967295"
                )),
                "{e}"
            );
        }
    }
}
