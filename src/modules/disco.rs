//! `mod_disco`: service discovery (XEP-0030) of the server: its identity and the features of the
//! modules actually registered on it.

use std::rc::Rc;

use crate::local::IqReply;
use crate::shard::Shard;
use crate::xml::Element;
use crate::xmpp::ns;

/// Registers disco#info and disco#items for every host; run after the other modules.
pub fn start(shard: &mut Shard, hosts: &[String]) {
    for host in hosts {
        let mut features = shard.iq.server_features(host);
        features.push(ns::DISCO_INFO.to_owned());
        features.push(ns::DISCO_ITEMS.to_owned());
        features.sort();
        features.dedup();
        let features: Rc<[String]> = features.into();
        shard.iq.register_server(
            host,
            ns::DISCO_INFO,
            Rc::new(move |_, payload, _| {
                if payload.attr("node").is_some() {
                    return IqReply::Error(crate::xmpp::StanzaErrorCondition::ItemNotFound);
                }
                let mut q = Element::new("query", ns::DISCO_INFO).with_child(
                    Element::new("identity", ns::DISCO_INFO)
                        .with_attr("category", "server")
                        .with_attr("type", "im")
                        .with_attr("name", "petrel"),
                );
                for f in features.iter() {
                    q = q.with_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", f));
                }
                IqReply::Result(Some(q))
            }),
        );
        shard.iq.register_server(
            host,
            ns::DISCO_ITEMS,
            Rc::new(|_, _, _| IqReply::Result(Some(Element::new("query", ns::DISCO_ITEMS)))),
        );
    }
}
