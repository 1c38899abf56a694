//! XMPP protocol vocabulary shared by every layer: namespaces, stream errors, stanza errors.

pub mod datetime;
pub mod form;
pub mod ns;
pub mod roster;
pub mod stanza_error;
pub mod stream_error;
pub mod version;

pub use stanza_error::{ErrorType, StanzaErrorCondition};
pub use stream_error::StreamErrorCondition;
