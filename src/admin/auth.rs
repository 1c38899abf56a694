//! The bearer token check (RFC 6750 header form), in constant time.

use subtle::ConstantTimeEq;

use super::ApiError;

/// Checks an `Authorization` header value against the configured token (`None`: no `[admin]`).
pub fn check_token(configured: Option<&str>, authorization: Option<&[u8]>) -> Result<(), ApiError> {
    let Some(token) = configured else {
        return Err(ApiError::Disabled);
    };
    let given = authorization
        .and_then(|h| {
            // The scheme is case-insensitive (RFC 7235 §2.1).
            let (scheme, rest) = h.split_at_checked(7)?;
            scheme.eq_ignore_ascii_case(b"bearer ").then_some(rest)
        })
        .map(|t| t.trim_ascii())
        .ok_or(ApiError::Unauthorized)?;
    // `ct_eq` on slices of different lengths is false at once: the length is not a secret worth
    // hiding (the configured one has a documented minimum), the bytes are.
    if bool::from(given.ct_eq(token.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "0123456789abcdef0123";

    #[test]
    fn tokens() {
        assert_eq!(
            check_token(None, Some(b"Bearer x")),
            Err(ApiError::Disabled)
        );
        assert_eq!(check_token(Some(T), None), Err(ApiError::Unauthorized));
        assert_eq!(
            check_token(Some(T), Some(b"Bearer 0123456789abcdef0124")),
            Err(ApiError::Unauthorized)
        );
        assert_eq!(
            check_token(Some(T), Some(b"Basic 0123456789abcdef0123")),
            Err(ApiError::Unauthorized)
        );
        assert_eq!(
            check_token(Some(T), Some(b"Bear")),
            Err(ApiError::Unauthorized)
        );
        assert_eq!(
            check_token(Some(T), Some(b"bearer 0123456789abcdef0123")),
            Ok(())
        );
    }
}
