//! `mod_disco`: service discovery (XEP-0030) of the server and of accounts.
//!
//! The server's disco#info lists the identity `server/im`, the namespaces of every server IQ handler
//! registered on the host, and the features modules declared with [`add_server_feature`] (those that
//! are not IQ namespaces of the server: `msgoffline`, `urn:xmpp:carbons:2`, `urn:xmpp:blocking`...).
//! An account's disco#info (IQ to its bare JID) lists `account/registered` and the features declared
//! with [`add_account_feature`]. Modules declare features in their `start`; disco starts last
//! (`modules::KNOWN`) and freezes the lists.
//!
//! Who may query an account's disco#info: the account itself, and contacts it shares its presence
//! with (a `from` or `both` subscription, read from the stored roster: XEP-0163 §6.2, a contact
//! learns that the account supports PEP). Others get `service-unavailable`, which reveals nothing
//! about the account's existence.

use std::collections::BTreeSet;
use std::rc::Rc;

use ahash::HashMap;

use crate::hooks::{Acc, HookCtx};
use crate::local::{IqHandler, IqReply};
use crate::shard::{Extensions, Shard};
use crate::store::Store;
use crate::xml::{Element, StanzaType};
use crate::xmpp::{ns, StanzaErrorCondition};

/// Features declared by modules, per host, beyond the server's IQ namespaces (per-shard state).
#[derive(Default)]
pub struct DiscoFeatures {
    server: HashMap<String, BTreeSet<String>>,
    account: HashMap<String, BTreeSet<String>>,
    /// Services under each host (`conference.example.org`), with their names.
    items: HashMap<String, BTreeSet<(String, String)>>,
    /// Identities of accounts beyond `account/registered` (category, type), per host.
    account_identities: HashMap<String, BTreeSet<(String, String)>>,
    /// The module that answers an account's disco#items (PEP: its nodes), per host.
    account_items: HashMap<String, IqHandler>,
    /// The module that answers an account's disco#info about a node (PEP), per host.
    account_node_info: HashMap<String, IqHandler>,
}

/// Adds the identity `category/type` to the disco#info of every account on `host`.
pub fn add_account_identity(ext: &mut Extensions, host: &str, category: &str, type_: &str) {
    ext.get_or_default::<DiscoFeatures>()
        .account_identities
        .entry(host.to_owned())
        .or_default()
        .insert((category.to_owned(), type_.to_owned()));
}

/// Lets `h` answer the disco#items of accounts on `host` (instead of an empty list).
pub fn set_account_items(ext: &mut Extensions, host: &str, h: IqHandler) {
    ext.get_or_default::<DiscoFeatures>()
        .account_items
        .insert(host.to_owned(), h);
}

/// Lets `h` answer the disco#info of a node of accounts on `host` (instead of `item-not-found`).
pub fn set_account_node_info(ext: &mut Extensions, host: &str, h: IqHandler) {
    ext.get_or_default::<DiscoFeatures>()
        .account_node_info
        .insert(host.to_owned(), h);
}

/// Lists the service `jid` called `name` in the disco#items of the server `host`.
pub fn add_server_item(ext: &mut Extensions, host: &str, jid: &str, name: &str) {
    ext.get_or_default::<DiscoFeatures>()
        .items
        .entry(host.to_owned())
        .or_default()
        .insert((jid.to_owned(), name.to_owned()));
}

/// Declares `var` as a feature of the server `host` (shown in the server's disco#info).
pub fn add_server_feature(ext: &mut Extensions, host: &str, var: &str) {
    ext.get_or_default::<DiscoFeatures>()
        .server
        .entry(host.to_owned())
        .or_default()
        .insert(var.to_owned());
}

/// Declares `var` as a feature of every account on `host` (shown in an account's disco#info).
pub fn add_account_feature(ext: &mut Extensions, host: &str, var: &str) {
    ext.get_or_default::<DiscoFeatures>()
        .account
        .entry(host.to_owned())
        .or_default()
        .insert(var.to_owned());
}

/// The features of the server `host`: IQ namespaces, declared features and disco itself, sorted.
pub fn server_features(shard: &Shard, host: &str) -> Vec<String> {
    let mut set: BTreeSet<String> = shard.iq.server_features(host).into_iter().collect();
    if let Some(declared) = shard
        .ext
        .get::<DiscoFeatures>()
        .and_then(|f| f.server.get(host))
    {
        set.extend(declared.iter().cloned());
    }
    set.insert(ns::DISCO_INFO.to_owned());
    set.insert(ns::DISCO_ITEMS.to_owned());
    set.into_iter().collect()
}

/// The features of accounts on `host`: declared features and disco#info, sorted.
pub fn account_features(shard: &Shard, host: &str) -> Vec<String> {
    let mut set: BTreeSet<String> = shard
        .ext
        .get::<DiscoFeatures>()
        .and_then(|f| f.account.get(host))
        .cloned()
        .unwrap_or_default();
    set.insert(ns::DISCO_INFO.to_owned());
    set.into_iter().collect()
}

/// Registers disco#info and disco#items for the server and its accounts on every host; run after
/// the other modules.
pub fn start(shard: &mut Shard, hosts: &[String]) {
    for host in hosts {
        add_account_feature(&mut shard.ext, host, ns::DISCO_INFO);
        let features: Rc<[String]> = server_features(shard, host).into();
        // The node of the server's own caps (XEP-0115 §6.2) names the same disco#info.
        let caps_node = format!(
            "{}#{}",
            super::caps::SERVER_NODE,
            super::caps::server_ver(&features)
        );
        shard.iq.register_server(
            host,
            ns::DISCO_INFO,
            Rc::new(move |acc, payload, _| {
                if acc.ty() != StanzaType::Get {
                    return IqReply::Error(StanzaErrorCondition::BadRequest);
                }
                let mut reply = info("server", "im", Some("petrel"), &features);
                match payload.attr("node") {
                    None => {}
                    Some(node) if node == caps_node => reply = reply.with_attr("node", node),
                    Some(_) => return IqReply::Error(StanzaErrorCondition::ItemNotFound),
                }
                IqReply::Result(Some(reply))
            }),
        );
        let services: Rc<[(String, String)]> = shard
            .ext
            .get::<DiscoFeatures>()
            .and_then(|f| f.items.get(host))
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        let own = host.clone();
        shard.iq.register_server(
            host,
            ns::DISCO_ITEMS,
            Rc::new(move |acc, payload, ctx| {
                // A domain added at run time shares this host's handlers, not its services
                // (`conference.HOST`...): listing them would name another tenant's domain.
                if acc.to.domain() != own {
                    return items(acc, payload, &[]);
                }
                // Connected external components (XEP-0114) are services of the server too.
                let components = ctx
                    .ext
                    .get::<crate::component::Routes>()
                    .map(|r| r.connected_domains())
                    .unwrap_or_default();
                if components.is_empty() {
                    return items(acc, payload, &services);
                }
                let mut all = services.to_vec();
                all.extend(components.into_iter().map(|d| (d.clone(), d)));
                items(acc, payload, &all)
            }),
        );
        let features: Rc<[String]> = account_features(shard, host).into();
        let identities: Rc<[(String, String)]> = shard
            .ext
            .get::<DiscoFeatures>()
            .and_then(|f| f.account_identities.get(host))
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        let node_info = shard
            .ext
            .get::<DiscoFeatures>()
            .and_then(|f| f.account_node_info.get(host))
            .cloned();
        shard.iq.register_account(
            host,
            ns::DISCO_INFO,
            Rc::new(move |acc, payload, ctx| {
                let own = may_see_account(acc);
                if acc.ty() != StanzaType::Get {
                    return IqReply::Error(StanzaErrorCondition::BadRequest);
                }
                if let (Some(_), Some(h)) = (payload.attr("node"), &node_info) {
                    return h(acc, payload, ctx);
                }
                if own && payload.attr("node").is_some() {
                    return IqReply::Error(StanzaErrorCondition::ItemNotFound);
                }
                let mut q = info("account", "registered", None, &features);
                for (category, type_) in identities.iter() {
                    let id = Element::new("identity", ns::DISCO_INFO)
                        .with_attr("category", category.as_str())
                        .with_attr("type", type_.as_str());
                    // Identities come before features (XEP-0030 lists them first).
                    q.children.insert(1, crate::xml::Node::Element(id));
                }
                if own {
                    return IqReply::Result(Some(q));
                }
                // A contact's node query is refused like a stranger's before it is answered.
                let node = payload.attr("node").is_some();
                let refused = StanzaErrorCondition::ServiceUnavailable;
                answer_if_shared(acc, ctx, None, refused, move |_| {
                    if node {
                        Err(StanzaErrorCondition::ItemNotFound)
                    } else {
                        Ok(q)
                    }
                })
            }),
        );
        let delegate = shard
            .ext
            .get::<DiscoFeatures>()
            .and_then(|f| f.account_items.get(host))
            .cloned();
        let account_items: IqHandler = match delegate {
            Some(h) => h,
            None => Rc::new(|acc, payload, _| {
                if !may_see_account(acc) {
                    return IqReply::Error(StanzaErrorCondition::ServiceUnavailable);
                }
                items(acc, payload, &[])
            }),
        };
        shard
            .iq
            .register_account(host, ns::DISCO_ITEMS, account_items);
    }
}

/// Answers a query about the account `acc` is addressed to from a store job (keyed `key`):
/// `answer(store)` when the sender is the account itself or a contact the account shares its
/// presence with (a `from` or `both` subscription), else `refused`, or `service-unavailable` when
/// no such account exists (RFC 6121 §8.5.1).
pub fn answer_if_shared(
    acc: &Acc,
    ctx: &mut HookCtx<'_>,
    key: Option<u64>,
    refused: StanzaErrorCondition,
    answer: impl FnOnce(&Store) -> Result<Element, StanzaErrorCondition> + Send + 'static,
) -> IqReply {
    let owner = acc.to.bare();
    let asker = (!may_see_account(acc)).then(|| acc.from.bare());
    let req = acc.fork();
    let shard = ctx.shard;
    ctx.store(key, move |store| {
        let allowed = match &asker {
            None => Ok(true),
            Some(asker) => store.shares_presence_with(&owner, asker),
        };
        let reply = match allowed {
            Ok(true) => answer(store),
            Ok(false) if refused == StanzaErrorCondition::ServiceUnavailable => Err(refused),
            // Nobody shares the presence of an account that does not exist: say which it is.
            Ok(false) => match store.user_exists(&owner) {
                Ok(false) => Err(StanzaErrorCondition::ServiceUnavailable),
                _ => Err(refused),
            },
            Err(e) => {
                tracing::warn!(%owner, error = %e, "cannot read the roster");
                Err(StanzaErrorCondition::InternalServerError)
            }
        };
        let reply = match reply {
            Ok(q) => Some(crate::local::result_reply(&req, Some(q), shard)),
            Err(cond) => req.error_reply(cond, shard),
        };
        reply.into_iter().collect::<Vec<_>>().into()
    });
    IqReply::NoReply
}

/// Whether the sender of `acc` may see the account it is addressed to (see the module docs).
pub fn may_see_account(acc: &Acc) -> bool {
    acc.from.node().is_some() && acc.from.bare() == acc.to.bare()
}

fn info(category: &str, type_: &str, name: Option<&str>, features: &[String]) -> Element {
    let mut identity = Element::new("identity", ns::DISCO_INFO)
        .with_attr("category", category)
        .with_attr("type", type_);
    if let Some(name) = name {
        identity = identity.with_attr("name", name);
    }
    let mut q = Element::new("query", ns::DISCO_INFO).with_child(identity);
    for f in features {
        q = q.with_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", f));
    }
    q
}

/// The `services` (jid, name) as items; nodes are unknown.
fn items(acc: &Acc, payload: &Element, services: &[(String, String)]) -> IqReply {
    if acc.ty() != StanzaType::Get {
        return IqReply::Error(StanzaErrorCondition::BadRequest);
    }
    if payload.attr("node").is_some() {
        return IqReply::Error(StanzaErrorCondition::ItemNotFound);
    }
    let mut q = Element::new("query", ns::DISCO_ITEMS);
    for (jid, name) in services {
        q = q.with_child(
            Element::new("item", ns::DISCO_ITEMS)
                .with_attr("jid", jid.as_str())
                .with_attr("name", name.as_str()),
        );
    }
    IqReply::Result(Some(q))
}
