//! `mod_ping`: answers XMPP pings (XEP-0199) addressed to the server.

use std::rc::Rc;

use crate::local::IqReply;
use crate::shard::Shard;
use crate::xmpp::ns;

/// Registers the server's ping handler on every host.
pub fn start(shard: &mut Shard, hosts: &[String]) {
    for host in hosts {
        shard.iq.register_server(
            host,
            ns::PING,
            Rc::new(|_, payload, _| {
                if payload.name == "ping" {
                    IqReply::Result(None)
                } else {
                    IqReply::Error(crate::xmpp::StanzaErrorCondition::BadRequest)
                }
            }),
        );
    }
}
