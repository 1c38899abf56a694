//! `mod_avatar`: XEP-0398, user avatars kept in step between PEP (XEP-0084) and vCards (XEP-0153).

pub mod convert;
