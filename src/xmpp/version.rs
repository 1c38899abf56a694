//! The stream header's `version` (RFC 6120 §4.7.5), for c2s and s2s alike.

/// `version` is "major.minor" with major >= 1.
pub fn at_least_1(v: Option<&str>) -> bool {
    let Some(v) = v else { return false };
    let major = v.split_once('.').map_or(v, |(major, _)| major);
    major.parse::<u32>().is_ok_and(|m| m >= 1)
}

/// The `version` of our answer to a peer's header: the lower of theirs and 1.0; none when the
/// peer gave none (it is then treated as 0.9, and the answer SHOULD NOT carry one) or one that is
/// no version number.
pub fn answer(theirs: Option<&str>) -> Option<&str> {
    let v = theirs?;
    if at_least_1(Some(v)) {
        return Some("1.0");
    }
    let (major, minor) = v.split_once('.')?;
    let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (number(major) && number(minor)).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        for v in ["1.0", "1.1", "2.0"] {
            assert!(at_least_1(Some(v)), "{v}");
            assert_eq!(answer(Some(v)), Some("1.0"));
        }
        for v in ["0.9", "", "x.0"] {
            assert!(!at_least_1(Some(v)), "{v}");
        }
        assert!(!at_least_1(None));
        assert_eq!(answer(Some("0.9")), Some("0.9"));
        assert_eq!(answer(None), None);
        assert_eq!(answer(Some("x.0")), None);
        assert_eq!(answer(Some("0.")), None);
    }
}
