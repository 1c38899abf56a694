//! Federation's sans-IO parts around the s2s streams (`crate::s2s`): where a remote domain is
//! reached ([`targets`]) and the table of outgoing streams with their bounded queues ([`table`]).
//! The runtime drives them (`rt::s2s_out`, `rt::s2s_in`, `rt::s2s_dns`).

pub mod table;
pub mod targets;
