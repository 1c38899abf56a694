//! `mod_bookmarks`: bookmarks kept in step across XEP-0048 private storage, the XEP-0411 PEP node
//! and the XEP-0402 PEP node.

pub mod convert;
