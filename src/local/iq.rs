//! The IQ handler registry (MongooseIM's `gen_iq_handler`), keyed by (host, namespace).

use std::rc::Rc;

use ahash::HashMap;

use crate::hooks::{Acc, HookCtx};
use crate::shard::ShardId;
use crate::xml::{Element, Stanza};
use crate::xmpp::{ns, StanzaErrorCondition};

/// What an IQ handler answers.
pub enum IqReply {
    /// `type='result'`, with an optional payload.
    Result(Option<Element>),
    /// A stanza error.
    Error(StanzaErrorCondition),
    /// A stanza error without the request's payload, which must not travel back (a new
    /// password, XEP-0077 §3.3).
    ErrorWithoutPayload(StanzaErrorCondition),
    /// A request about another account than the sender's: refused with this condition when that
    /// account exists, with `service-unavailable` when it does not (RFC 6121 §8.5.1).
    NotYours(StanzaErrorCondition),
    /// The handler answers later, or the IQ needs no answer.
    NoReply,
}

/// An IQ handler: the request, its payload element, and the hook context for side effects.
pub type IqHandler = Rc<dyn Fn(&Acc, &Element, &mut HookCtx<'_>) -> IqReply>;

/// IQ handlers for the server (`to` = a domain) and for accounts (`to` = a bare user JID).
#[derive(Default)]
pub struct IqHandlers {
    server: HashMap<String, HashMap<String, IqHandler>>,
    account: HashMap<String, HashMap<String, IqHandler>>,
}

impl IqHandlers {
    /// Registers a handler for IQs to `host` whose payload is in `namespace`.
    pub fn register_server(&mut self, host: &str, namespace: &str, h: IqHandler) {
        self.server
            .entry(host.to_owned())
            .or_default()
            .insert(namespace.to_owned(), h);
    }

    /// Registers a handler for IQs to accounts on `host` whose payload is in `namespace`.
    pub fn register_account(&mut self, host: &str, namespace: &str, h: IqHandler) {
        self.account
            .entry(host.to_owned())
            .or_default()
            .insert(namespace.to_owned(), h);
    }

    /// The server handler for (`host`, `namespace`).
    pub fn server(&self, host: &str, namespace: &str) -> Option<IqHandler> {
        self.server.get(host)?.get(namespace).cloned()
    }

    /// The account handler for (`host`, `namespace`).
    pub fn account(&self, host: &str, namespace: &str) -> Option<IqHandler> {
        self.account.get(host)?.get(namespace).cloned()
    }

    /// Namespaces the server answers on `host`, sorted (for service discovery).
    pub fn server_features(&self, host: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .server
            .get(host)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        v.sort();
        v
    }
}

/// Builds `<iq type='result'/>` for `req`, `from`/`to` swapped, same id.
pub fn result_reply(req: &Acc, body: Option<Element>, shard: ShardId) -> Acc {
    let mut el = Element::new("iq", ns::CLIENT)
        .with_attr("type", "result")
        .with_attr("from", req.to.as_str())
        .with_attr("to", req.from.as_str());
    if let Some(id) = req.stanza.id() {
        el = el.with_attr("id", id.as_ref());
    }
    if let Some(body) = body {
        el = el.with_child(body);
    }
    let mut reply = Acc::new(
        Stanza::from_element(&el),
        req.to.clone(),
        req.from.clone(),
        shard,
    );
    req.reply_trace(
        &mut reply,
        shard,
        crate::explain::Outcome::Answered,
        Some("result"),
    );
    reply
}
