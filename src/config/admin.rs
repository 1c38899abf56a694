//! `[admin]`: the bearer token of the admin API (`/api` on a `[[listen.http]]` with the `api`
//! handler, and `petrel ctl`). Without it every `/api` request is refused with 403.

use std::path::PathBuf;

use serde::{Deserialize, Serialize, Serializer};
use toml::Spanned;

use super::error::{ConfigError, InvalidValue};
use super::validate::Ctx;

/// Shortest token accepted: a guessable token would open the whole server.
const MIN_TOKEN_LEN: usize = 16;

/// `[admin]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// The bearer token (`token`, or the first line of `token_file`, read at load).
    pub token: String,
    /// Where the token was read from, if a file.
    pub token_file: Option<PathBuf>,
}

/// `check-config` output never shows the token: the file it came from, or a mask that is not a
/// valid token (so output pasted back as a configuration cannot open the API with a known token).
const MASK: &str = "******** (hidden)";

/// `check-config` output never shows the token: the file it came from, or [`MASK`].
impl Serialize for AdminConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("AdminConfig", 1)?;
        match &self.token_file {
            Some(path) => st.serialize_field("token_file", &path.to_string_lossy())?,
            None => st.serialize_field("token", MASK)?,
        }
        st.end()
    }
}

/// `[admin]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub token: Option<Spanned<String>>,
    pub token_file: Option<Spanned<PathBuf>>,
}

/// Validates `[admin]`: exactly one of `token` and `token_file`, a token of at least 16 bytes
/// without whitespace. `None` when the section is absent.
pub(super) fn admin(
    cx: &Ctx<'_>,
    raw: Option<Spanned<RawAdmin>>,
) -> Result<Option<AdminConfig>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let span = raw.span();
    let raw = raw.into_inner();
    let (token, token_file, span) = match (raw.token, raw.token_file) {
        (Some(t), None) => {
            let span = t.span();
            (t.into_inner(), None, span)
        }
        (None, Some(f)) => {
            let span = f.span();
            let path = f.into_inner();
            let text = std::fs::read_to_string(&path).map_err(|e| {
                cx.err(
                    &span,
                    InvalidValue::AdminTokenFile(format!("{}: {e}", path.display())),
                )
            })?;
            let line = text.lines().next().unwrap_or("").trim().to_owned();
            (line, Some(path), span)
        }
        (Some(t), Some(_)) => return Err(cx.err(&t.span(), InvalidValue::AdminTokenTwice)),
        (None, None) => return Err(cx.err(&span, InvalidValue::AdminTokenMissing)),
    };
    if token.len() < MIN_TOKEN_LEN || token.chars().any(char::is_whitespace) {
        return Err(cx.err(&span, InvalidValue::AdminToken(MIN_TOKEN_LEN)));
    }
    Ok(Some(AdminConfig { token, token_file }))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, ConfigError, InvalidValue};

    const BASE: &str = "[general]\nhosts = [\"localhost\"]\n[[listen.c2s]]\nport = 5222\n";

    fn parse(admin: &str) -> Result<Config, ConfigError> {
        Config::parse(&format!("{BASE}{admin}"), Path::new("t.toml"))
    }

    fn kind(r: Result<Config, ConfigError>) -> InvalidValue {
        match r {
            Err(ConfigError::Invalid { kind, .. }) => kind,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn token_inline_or_from_a_file_and_never_printed() {
        assert!(parse("").unwrap().admin.is_none());
        let c = parse("[admin]\ntoken = \"0123456789abcdef\"\n").unwrap();
        assert_eq!(c.admin.as_ref().unwrap().token, "0123456789abcdef");
        let shown = c.to_toml();
        assert!(
            !shown.contains("0123456789abcdef") && shown.contains("[admin]"),
            "{shown}"
        );
        assert_eq!(
            kind(Config::parse(&shown, Path::new("t"))),
            InvalidValue::AdminToken(16)
        );

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "fedcba9876543210fedc\n").unwrap();
        let c = parse(&format!(
            "[admin]\ntoken_file = {:?}\n",
            file.to_str().unwrap()
        ))
        .unwrap();
        assert_eq!(c.admin.unwrap().token, "fedcba9876543210fedc");
    }

    #[test]
    fn bad_admin_sections() {
        assert_eq!(kind(parse("[admin]\n")), InvalidValue::AdminTokenMissing);
        assert_eq!(
            kind(parse("[admin]\ntoken = \"short\"\n")),
            InvalidValue::AdminToken(16)
        );
        assert_eq!(
            kind(parse(
                "[admin]\ntoken = \"0123456789abcdef\"\ntoken_file = \"x\"\n"
            )),
            InvalidValue::AdminTokenTwice
        );
        assert!(matches!(
            kind(parse("[admin]\ntoken_file = \"/nonexistent/token\"\n")),
            InvalidValue::AdminTokenFile(_)
        ));
    }
}
