//! Options of the IM storage modules (offline, blocking, private, vcard), read from their
//! `[modules.NAME]` tables with serde: unknown keys and wrong types are errors naming the key.

use serde::de::DeserializeOwned;

/// A bad `[modules.NAME]` table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    /// Unknown key or wrong type (toml's message names the key).
    #[error("[modules.{module}]: {message}")]
    Invalid {
        /// Module name.
        module: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A number that must be positive is zero.
    #[error("[modules.{module}]: `{key}` must be at least 1")]
    Zero {
        /// Module name.
        module: &'static str,
        /// The key.
        key: &'static str,
    },
}

/// Deserializes `table` into `T` (whose serde attributes deny unknown fields and default the rest).
pub fn parse<T: DeserializeOwned>(
    module: &'static str,
    table: &toml::Table,
) -> Result<T, OptionError> {
    toml::Value::Table(table.clone())
        .try_into()
        .map_err(|e: toml::de::Error| OptionError::Invalid {
            module,
            message: e.message().to_owned(),
        })
}

/// Fails with [`OptionError::Zero`] when `value` is 0.
pub fn nonzero(module: &'static str, key: &'static str, value: u64) -> Result<(), OptionError> {
    if value == 0 {
        Err(OptionError::Zero { module, key })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Opts {
        max_bytes: u32,
    }
    impl Default for Opts {
        fn default() -> Self {
            Opts { max_bytes: 7 }
        }
    }

    fn table(s: &str) -> toml::Table {
        toml::from_str(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn defaults_unknown_keys_and_types() {
        assert_eq!(parse::<Opts>("m", &table("")), Ok(Opts { max_bytes: 7 }));
        assert_eq!(
            parse::<Opts>("m", &table("max_bytes = 9")),
            Ok(Opts { max_bytes: 9 })
        );
        let e = parse::<Opts>("m", &table("max_byte = 9"))
            .err()
            .map(|e| e.to_string());
        assert!(
            e.as_deref().is_some_and(|e| e.contains("max_byte")),
            "{e:?}"
        );
        let e = parse::<Opts>("m", &table("max_bytes = -1"))
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some(), "negative accepted");
        let e = parse::<Opts>("m", &table("max_bytes = 'x'")).err();
        assert!(e.is_some(), "string accepted");
        assert!(nonzero("m", "k", 0).is_err() && nonzero("m", "k", 1).is_ok());
    }
}
