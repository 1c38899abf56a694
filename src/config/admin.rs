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

/// `check-config` output never shows the token: the file it came from, or a mask.
impl Serialize for AdminConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("AdminConfig", 1)?;
        match &self.token_file {
            Some(path) => st.serialize_field("token_file", &path.to_string_lossy())?,
            None => st.serialize_field("token", "********")?,
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
