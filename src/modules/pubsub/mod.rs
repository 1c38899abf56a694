//! Publish-subscribe (XEP-0060): the sans-IO core shared by PEP and the pubsub service.

pub mod core;
