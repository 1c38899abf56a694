//! The admin REST API (`/api` on a `[[listen.http]]` with the `api` handler), sans-IO: the bearer
//! token check, requests parsed into typed [`Command`]s, the JSON shapes of the answers and the
//! errors with their HTTP statuses. The runtime (`rt::admin`) carries the commands out on the
//! shards and the store; `petrel ctl` (`cli::ctl`) is its client and shares the shapes.
//!
//! REST with JSON rather than GraphQL (MongooseIM's choice): a small surface one can use with curl,
//! and `petrel ctl` maps one command to one request.

mod auth;
mod error;
mod request;
pub mod shapes;

pub use auth::check_token;
pub use error::{ApiError, ErrorBody};
pub use request::{has_body, parse, Command, MAX_BODY};
