//! The roster's data model (RFC 6121 §2 items, §3 subscription states): plain types shared by the
//! roster module and the store, below both so the store never imports a module.

mod item;
pub mod state;

pub use item::{RosterItem, SetRequest, MAX_GROUPS, MAX_NAME_BYTES};
pub use state::{SubKind, SubState, Transition};
