//! `mod_version`: software version (XEP-0092) of the server.
//!
//! Option `os` (default false): also reveal the operating system and architecture (a fingerprinting
//! aid for attackers, hence off unless asked for).

use std::rc::Rc;

use super::options::{OptionError, Options};
use crate::local::IqReply;
use crate::shard::Shard;
use crate::xml::{Element, StanzaType};
use crate::xmpp::StanzaErrorCondition;

/// `jabber:iq:version`.
pub const NS: &str = "jabber:iq:version";

/// Options of `[modules.version]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VersionOptions {
    /// Include `<os/>`.
    pub os: bool,
}

/// Reads `[modules.version]`.
pub fn options(table: Option<&toml::Table>) -> Result<VersionOptions, OptionError> {
    let o = Options::new("version", table);
    o.only(&["os"])?;
    Ok(VersionOptions {
        os: o.bool("os", false)?,
    })
}

/// The `<query xmlns='jabber:iq:version'/>` answer.
pub fn query(opts: VersionOptions) -> Element {
    let mut q = Element::new("query", NS)
        .with_child(Element::new("name", NS).with_text("petrel"))
        .with_child(Element::new("version", NS).with_text(env!("CARGO_PKG_VERSION")));
    if opts.os {
        let os = format!("{} {}", std::env::consts::OS, std::env::consts::ARCH);
        q = q.with_child(Element::new("os", NS).with_text(&os));
    }
    q
}

/// Registers the version handler on every host.
pub fn start(shard: &mut Shard, hosts: &[String], opts: VersionOptions) {
    let answer = Rc::new(query(opts));
    for host in hosts {
        let answer = answer.clone();
        shard.iq.register_server(
            host,
            NS,
            Rc::new(move |acc, _, _| {
                if acc.ty() != StanzaType::Get {
                    return IqReply::Error(StanzaErrorCondition::BadRequest);
                }
                IqReply::Result(Some((*answer).clone()))
            }),
        );
    }
}
