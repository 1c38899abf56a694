//! `mod_muc`: multi-user chat (XEP-0045) served at `conference.@HOST@`.

pub mod room;
