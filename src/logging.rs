//! Logging: tracing to stderr through a background writer thread, so a blocked stderr never
//! stalls a shard (lines are dropped instead when the writer falls behind).

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::filter::{EnvFilter, ParseError};
use tracing_subscriber::util::TryInitError;

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// The level (or `RUST_LOG`) is not a valid filter directive.
    #[error("invalid log filter `{directive}`: {source}")]
    Filter {
        /// The directive as given.
        directive: String,
        /// The parser's reason.
        source: ParseError,
    },
    /// A global subscriber is already installed.
    #[error("logging is already initialized: {0}")]
    AlreadyInitialized(#[from] TryInitError),
}

/// Builds the filter: `RUST_LOG` if set and non-empty, else `level`.
pub fn filter(level: &str, rust_log: Option<&str>) -> Result<EnvFilter, LoggingError> {
    let directive = match rust_log {
        Some(env) if !env.trim().is_empty() => env,
        _ => level,
    };
    EnvFilter::try_new(directive).map_err(|source| LoggingError::Filter {
        directive: directive.to_owned(),
        source,
    })
}

/// Installs the global subscriber at `level` (overridden by `RUST_LOG`). Keep the guard alive
/// until exit: dropping it flushes the remaining lines.
pub fn init(level: &str) -> Result<WorkerGuard, LoggingError> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let rust_log = std::env::var(EnvFilter::DEFAULT_ENV).ok();
    let filter = filter(level, rust_log.as_deref())?;
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(writer)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_thread_names(true),
        )
        .try_init()?;
    Ok(guard)
}

#[cfg(test)]
mod tests {
    use tracing::level_filters::LevelFilter;

    use super::*;

    #[test]
    fn level_is_used_unless_rust_log_is_set() {
        assert_eq!(
            filter("warn", None).unwrap().max_level_hint(),
            Some(LevelFilter::WARN)
        );
        assert_eq!(
            filter("warn", Some("trace")).unwrap().max_level_hint(),
            Some(LevelFilter::TRACE)
        );
        assert_eq!(
            filter("error", Some("  ")).unwrap().max_level_hint(),
            Some(LevelFilter::ERROR)
        );
    }

    #[test]
    fn bad_directive_is_an_error() {
        let err = filter("info", Some("petrel=loud")).unwrap_err();
        assert!(
            matches!(err, LoggingError::Filter { ref directive, .. } if directive == "petrel=loud")
        );
    }

    #[test]
    fn second_init_fails_cleanly() {
        // The first may fail if another test installed a subscriber; the second always does.
        // "off" keeps the global subscriber from printing other tests' events.
        let _first = init("off");
        assert!(matches!(
            init("off"),
            Err(LoggingError::AlreadyInitialized(_))
        ));
    }
}
