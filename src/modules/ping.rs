//! `mod_ping`: answers XMPP pings (XEP-0199) addressed to the server, and configures the pings the
//! server sends to idle clients (carried out by the c2s state machine, which owns the connection's
//! clock: see `c2s::C2sConfig::ping_interval`).
//!
//! Options: `ping_interval` (seconds without input before the server pings a client; 0 = never,
//! the default) and `ping_timeout` (seconds to wait for any input after a ping before closing the
//! stream with `connection-timeout`; default 32).

use std::rc::Rc;
use std::time::Duration;

use super::options::{OptionError, Options};
use crate::hooks::Acc;
use crate::local::IqReply;
use crate::shard::Shard;
use crate::xml::{Element, StanzaType};
use crate::xmpp::{ns, StanzaErrorCondition};

/// Options of `[modules.ping]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingOptions {
    /// Idle time before the server pings a client (zero: never).
    pub interval: Duration,
    /// Time to wait for any input after a ping.
    pub timeout: Duration,
}

impl Default for PingOptions {
    fn default() -> Self {
        PingOptions {
            interval: Duration::ZERO,
            timeout: Duration::from_secs(32),
        }
    }
}

/// Reads `[modules.ping]` (`None`: module off, defaults).
pub fn options(table: Option<&toml::Table>) -> Result<PingOptions, OptionError> {
    let o = Options::new("ping", table);
    o.only(&["ping_interval", "ping_timeout"])?;
    let d = PingOptions::default();
    let timeout = o.positive_secs("ping_timeout", d.timeout.as_secs())?;
    Ok(PingOptions {
        interval: o.secs("ping_interval", 0)?,
        timeout,
    })
}

/// Whether the request is a ping: an IQ get with `<ping/>` (XEP-0199 §3); a set is `bad-request`,
/// as the other server handlers answer it.
fn is_ping(acc: &Acc, payload: &Element) -> bool {
    acc.ty() == StanzaType::Get && payload.name == "ping"
}

/// Registers the ping handler on every host, for the server and, on their behalf, for its
/// accounts: a ping without `to` (RFC 6120 §10.3.3) or to a bare JID (RFC 6121 §8.5.2.1.3) is
/// answered by the server, as Prosody and ejabberd do; a ping to an account that does not exist is
/// `service-unavailable` (RFC 6121 §8.5.1).
pub fn start(shard: &mut Shard, hosts: &[String]) {
    for host in hosts {
        let pong: crate::local::IqHandler = Rc::new(|acc, payload, _| {
            if is_ping(acc, payload) {
                IqReply::Result(None)
            } else {
                IqReply::Error(StanzaErrorCondition::BadRequest)
            }
        });
        let account: crate::local::IqHandler = Rc::new(|acc, payload, ctx| {
            if !is_ping(acc, payload) {
                return IqReply::Error(StanzaErrorCondition::BadRequest);
            }
            let (req, shard, who) = (acc.fork(), ctx.shard, acc.to.bare());
            ctx.store(None, move |store| {
                let reply = match store.user_exists(&who) {
                    Ok(true) => Some(crate::local::result_reply(&req, None, shard)),
                    Ok(false) => req.error_reply(StanzaErrorCondition::ServiceUnavailable, shard),
                    Err(e) => {
                        tracing::warn!(%who, error = %e, "ping: cannot read the account");
                        req.error_reply(StanzaErrorCondition::InternalServerError, shard)
                    }
                };
                reply.into_iter().collect::<Vec<_>>().into()
            });
            IqReply::NoReply
        });
        shard.iq.register_server(host, ns::PING, pong);
        shard.iq.register_account(host, ns::PING, account);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_defaults_and_errors() {
        assert_eq!(options(None), Ok(PingOptions::default()));
        let t: toml::Table = "ping_interval = 60\nping_timeout = 5"
            .parse()
            .unwrap_or_default();
        assert_eq!(
            options(Some(&t)),
            Ok(PingOptions {
                interval: Duration::from_secs(60),
                timeout: Duration::from_secs(5)
            })
        );
        let zero: toml::Table = "ping_timeout = 0".parse().unwrap_or_default();
        assert!(options(Some(&zero)).is_err());
        let bad: toml::Table = "send_pings = true".parse().unwrap_or_default();
        assert!(matches!(
            options(Some(&bad)),
            Err(OptionError::Unknown { .. })
        ));
    }
}
