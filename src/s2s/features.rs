//! s2s stream headers and `<stream:features/>` (RFC 6120 §4.7, §5.4, §6.4; XEP-0220 §2.5).
