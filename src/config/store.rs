//! `[store]`: which database holds accounts, rosters and the rest (embedded SQLite by default, or
//! PostgreSQL at `url`), and how many store threads use it.

use serde::{Deserialize, Serialize, Serializer};
use toml::Spanned;

use super::error::{ConfigError, InvalidValue};
use super::validate::{Bounds, Ctx};

/// `[store] backend`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreBackend {
    /// The embedded SQLite file in `general.data_dir` (no setup).
    #[default]
    Sqlite,
    /// A PostgreSQL database at `store.url`.
    Postgres,
}

/// `[store]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoreConfig {
    /// Which database.
    pub backend: StoreBackend,
    /// PostgreSQL connection URL or `key=value` string (only with `backend = "postgres"`).
    #[serde(serialize_with = "ser_url", skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Store threads, each with its own connection.
    pub pool_size: usize,
    /// PostgreSQL: milliseconds a statement may run (or wait for a lock) before the database
    /// cancels it (`statement_timeout`); 0: no limit.
    pub query_timeout_ms: u64,
}

/// `[store]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    pub backend: Option<Spanned<StoreBackend>>,
    pub url: Option<Spanned<String>>,
    pub pool_size: Option<Spanned<usize>>,
    pub query_timeout_ms: Option<Spanned<u64>>,
}

const POOL_SIZE: Bounds = Bounds {
    field: "store.pool_size",
    default: 2,
    min: 1,
    max: 256,
};

const QUERY_TIMEOUT: Bounds = Bounds {
    field: "store.query_timeout_ms",
    default: 60_000,
    min: 0,
    max: 86_400_000,
};

/// Validates `[store]`: a PostgreSQL backend needs a URL that parses, SQLite takes none.
pub(super) fn store(cx: &Ctx<'_>, raw: RawStore) -> Result<StoreConfig, ConfigError> {
    let backend = raw
        .backend
        .as_ref()
        .map_or(StoreBackend::Sqlite, |b| *b.get_ref());
    match (&raw.backend, backend, &raw.url) {
        (Some(b), StoreBackend::Postgres, None) => {
            return Err(cx.err(&b.span(), InvalidValue::StoreUrlMissing));
        }
        (_, StoreBackend::Sqlite, Some(url)) => {
            return Err(cx.err(&url.span(), InvalidValue::StoreUrlUnused));
        }
        (_, StoreBackend::Postgres, Some(url)) => {
            let reason = match url.get_ref().parse::<postgres::Config>() {
                Err(e) => Some(e.to_string()),
                // petrel connects without TLS; say so now rather than at the first connect.
                Ok(c) if c.get_ssl_mode() == postgres::config::SslMode::Require => Some(
                    "sslmode=require: TLS to PostgreSQL is not supported yet \
                     (use the local socket or a trusted network)"
                        .to_owned(),
                ),
                Ok(_) => None,
            };
            if let Some(reason) = reason {
                return Err(cx.err(&url.span(), InvalidValue::StoreUrl(reason)));
            }
        }
        _ => {}
    }
    // POOL_SIZE.max fits in usize.
    let pool_size = usize::try_from(cx.num(&POOL_SIZE, raw.pool_size)?).unwrap_or(usize::MAX);
    Ok(StoreConfig {
        backend,
        url: raw.url.map(Spanned::into_inner),
        pool_size,
        query_timeout_ms: cx.num(&QUERY_TIMEOUT, raw.query_timeout_ms)?,
    })
}

/// The URL with its password replaced, so `check-config` output can be shared.
fn ser_url<S: Serializer>(url: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match url {
        Some(url) => s.serialize_str(&redact(url)),
        None => s.serialize_none(),
    }
}

const HIDDEN: &str = "********";

/// `postgres://user:SECRET@host/db` and `... password=SECRET ...` with SECRET hidden.
pub(super) fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..auth_end].rfind('@') {
            if let Some(colon) = rest[..at].find(':') {
                return format!("{scheme}://{}:{HIDDEN}{}", &rest[..colon], &rest[at..]);
            }
        }
        // A password given as a query parameter.
        return redact_pairs(url, '&');
    }
    redact_pairs(url, ' ')
}

/// Hides the value of every `password=` pair separated by `sep` (a quoted value may hold `sep`).
fn redact_pairs(text: &str, sep: char) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("password=") {
        let start = i + "password=".len();
        // Only a whole key: at the start, or after a separator or `?`.
        let whole = rest[..i]
            .chars()
            .next_back()
            .is_none_or(|c| c == sep || c == '?' || c.is_whitespace());
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        if !whole {
            continue;
        }
        let end = if let Some(quoted) = rest.strip_prefix('\'') {
            quoted.find('\'').map_or(rest.len(), |j| j + 2)
        } else {
            rest.find(sep).unwrap_or(rest.len())
        };
        out.push_str(HIDDEN);
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{Config, ConfigError, InvalidValue, Location};
    use super::{redact, StoreBackend};

    const BASE: &str = "[general]\nhosts = [\"example.org\"]\n[[listen.c2s]]\nport = 5222\n";

    fn parse(store: &str) -> Result<Config, ConfigError> {
        Config::parse(&format!("{BASE}[store]\n{store}"), Path::new("t.toml"))
    }

    /// The error's kind and line (the `[store]` table starts at line 5).
    fn err(store: &str) -> (InvalidValue, usize) {
        match parse(store) {
            Err(ConfigError::Invalid { kind, at, .. }) => (kind, at.line),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn defaults_to_sqlite_with_two_threads() {
        let c = Config::parse(BASE, Path::new("t.toml")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.store.backend, StoreBackend::Sqlite);
        assert_eq!((c.store.url.as_deref(), c.store.pool_size), (None, 2));
        assert_eq!(c.store.query_timeout_ms, 60_000);
        let c = parse("query_timeout_ms = 0\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.store.query_timeout_ms, 0);
        assert!(parse("query_timeout_ms = 86400001\n").is_err());
    }

    #[test]
    fn postgres_needs_a_valid_url_and_sqlite_takes_none() {
        let c = parse(
            "backend = \"postgres\"\nurl = \"postgres://petrel:pw@db/petrel\"\npool_size = 8\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.store.backend, StoreBackend::Postgres);
        assert_eq!(c.store.pool_size, 8);
        // check-config hides the password.
        let shown = c.to_toml();
        assert!(
            shown.contains("url = \"postgres://petrel:********@db/petrel\""),
            "{shown}"
        );
        assert!(!shown.contains("pw@"));

        let (kind, line) = err("pool_size = 1\nbackend = \"postgres\"\n");
        assert_eq!((kind, line), (InvalidValue::StoreUrlMissing, 7));
        let (kind, line) = err("url = \"postgres://db/petrel\"\n");
        assert_eq!((kind, line), (InvalidValue::StoreUrlUnused, 6));
        let (kind, line) = err("backend = \"postgres\"\nurl = \"postgres://db:notaport/x\"\n");
        assert!(matches!(kind, InvalidValue::StoreUrl(_)), "{kind:?}");
        assert_eq!(line, 7);
        let (kind, _) = err("backend = \"postgres\"\nurl = \"postgres://db/x?sslmode=require\"\n");
        assert!(
            matches!(kind, InvalidValue::StoreUrl(ref r) if r.contains("TLS")),
            "{kind:?}"
        );
        let (kind, _) = err("pool_size = 0\n");
        assert!(matches!(
            kind,
            InvalidValue::TooSmall {
                field: "store.pool_size",
                ..
            }
        ));
        match parse("backend = \"mysql\"\n") {
            Err(ConfigError::Parse { at, .. }) => assert_eq!(at, Location { line: 6, col: 11 }),
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            redact("postgres://petrel:s3cr@t@db.example:5432/petrel"),
            "postgres://petrel:********@db.example:5432/petrel"
        );
        assert_eq!(
            redact("postgres://petrel@db/petrel?password=x&sslmode=disable"),
            "postgres://petrel@db/petrel?password=********&sslmode=disable"
        );
        assert_eq!(
            redact("host=db user=petrel password='a b' dbname=petrel"),
            "host=db user=petrel password=******** dbname=petrel"
        );
        assert_eq!(
            redact("host=/run/postgresql user=petrel"),
            "host=/run/postgresql user=petrel"
        );
    }
}
