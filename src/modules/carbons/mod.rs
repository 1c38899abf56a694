//! `mod_carbons`: Message Carbons (XEP-0280).
//!
//! **State**: which sessions enabled carbons lives on the HOME shard of the user's bare JID, beside its
//! resources in the session manager ([`CarbonsHome`]). The enable/disable IQ is received on the
//! sender's shard (account IQ), which sends the change to the home shard as a mesh task (`run_on`); the
//! home shard records it and only then answers the IQ, so a client that has the result knows its
//! next message is copied. A session leaving the session manager leaves the list
//! (`sm_remove_connection`, on the home shard).
//!
//! **Copies** are built and sent by the home shard, straight to each target session wherever it
//! lives (any shard):
//! - `<sent/>`: `user_send_message` on the sender's shard sends the message to the sender's home
//!   shard, which copies it to every carbons-enabled resource but the sender (whether or not the
//!   sender enabled carbons, §7), with the `<stanza-id/>` of the sender's archive when it keeps the
//!   message (XEP-0313 §3.3);
//! - `<received/>`, message to a bound full JID: `user_receive_message` on the receiving connection's
//!   shard sends it to the recipient's home shard, which copies it to every carbons-enabled resource
//!   but the receiver. Done on the receiving side so that the local fast path (a full JID on the
//!   sender's own shard, no home hop) gets copies too;
//! - `<received/>`, message to the bare JID (or to a full JID whose resource is gone, which RFC 6121
//!   treats as bare): those always pass the home shard; a home handler copies it to every
//!   carbons-enabled resource that the §8.5 rules did not pick for the original. When no resource
//!   takes the original (offline storage or an error), no copy is made either.
//!
//! **Which messages** (§6): `chat`, and `normal` with a `<body/>`. Never: `groupchat`, `headline`,
//! `error` (the rule for errors answering eligible messages needs message tracking; §6 itself calls
//! it unlikely to be appropriate), a message carrying `<private xmlns='urn:xmpp:carbons:2'/>` or the
//! XEP-0334 hint `<no-copy xmlns='urn:xmpp:hints'/>`, a carbon (`<sent/>`/`<received/>` inside), and a
//! MUC private message recognised by its `<x xmlns='http://jabber.org/protocol/muc#user'/>` (which
//! petrel's own rooms add to every private message they pass on; other messages from a room are
//! `groupchat` or carry that element too). The `<private/>` element
//! is left in the delivered original (§8 says SHOULD remove it; harmless to keep).
//!
//! A message between two resources of one account (a "note to self", one device to another) gets
//! no copies: the sending and receiving resources have it already, and copies both ways gave the
//! sender a `<received/>` of its own message and the receiver a `<sent/>` beside the original.
//!
//! A copy whose session vanished on the way comes back to the home shard (re-route) and is dropped
//! there: the copy is addressed to the vanished full JID, and delivering it "as if bare" would hand a
//! duplicate to a resource that has its own copy.

use std::rc::Rc;

use ahash::HashMap;

use crate::c2s::route::{WantReceiver, RECEIVER};
use crate::hooks::{Acc, Bind2Enable, HookCtx, HookResult, SessionEvent, UnackedMessage};
use crate::jid::{BareJid, FullJid, Jid};
use crate::local::{result_reply, IqReply};
use crate::shard::{home_shard, ConnMsg, SessionRef, Shard, ShardId};
use crate::sm::Targets;
use crate::xml::{Element, Stanza, StanzaKind, StanzaType};
use crate::xmpp::{ns, StanzaErrorCondition};

#[cfg(test)]
mod tests;

/// The carbons namespace.
pub const NS_CARBONS: &str = ns::CARBONS;
/// Stanza forwarding (XEP-0297).
pub const NS_FORWARD: &str = ns::FORWARD;
/// XEP-0334 hints.
const NS_HINTS: &str = "urn:xmpp:hints";
/// MUC user extension (private messages from rooms carry it).
const NS_MUC_USER: &str = "http://jabber.org/protocol/muc#user";
/// Scratch key marking a carbon copy.
const COPY: crate::hooks::Key<CopyMarker> = crate::hooks::Key::new("carbons.copy");
/// Scratch key of an original whose `<received/>` copies were asked for (its session took it, or
/// buffered it while detached).
const COPIED: crate::hooks::Key<()> = crate::hooks::Key::new("carbons.copied");

/// Work for the home shard.
enum Op {
    /// Enable (`on`) or disable carbons for `jid`, then deliver `reply` to it (an IQ result; none
    /// for a Bind 2 inline request, answered by `<bound/>` already).
    Set {
        jid: FullJid,
        on: bool,
        reply: Option<Acc>,
    },
    /// `sender` sent `msg`: `<sent/>` copies.
    Sent { sender: FullJid, msg: Stanza },
    /// `receiver` got `msg`: `<received/>` copies.
    Received { receiver: FullJid, msg: Stanza },
}

/// Scratch marker of a carbon copy.
struct CopyMarker;

/// On a home shard: the carbons-enabled sessions of the users whose home it is.
#[derive(Default)]
pub struct CarbonsHome {
    users: HashMap<BareJid, Vec<(FullJid, SessionRef)>>,
}

impl CarbonsHome {
    /// The carbons-enabled resources of `user` (home shard only).
    pub fn enabled(&self, user: &BareJid) -> &[(FullJid, SessionRef)] {
        self.users.get(user).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// Registers the module on `shard` for `hosts`.
pub fn start(shard: &mut Shard, hosts: &[String]) {
    shard.ext.get_or_default::<WantReceiver>();
    shard.ext.get_or_default::<CarbonsHome>();
    let n = shard.shards;
    for host in hosts {
        shard.iq.register_account(
            host,
            NS_CARBONS,
            Rc::new(move |acc: &Acc, el: &Element, ctx: &mut HookCtx<'_>| {
                enable_iq(acc, el, ctx, n)
            }),
        );
        crate::modules::disco::add_server_feature(&mut shard.ext, host, NS_CARBONS);
    }
    // Late: a message a filter stopped (blocking, privacy) is not copied.
    shard.hooks.user_send_message.add(
        90,
        "carbons",
        move |acc: &mut Acc, ctx: &mut HookCtx<'_>| on_send(acc, ctx, n),
    );
    shard.hooks.user_receive_message.add(
        90,
        "carbons",
        move |acc: &mut Acc, ctx: &mut HookCtx<'_>| on_receive(acc, ctx, n),
    );
    shard.hooks.unacknowledged_message.add(
        40,
        "carbons",
        move |ev: &mut UnackedMessage, ctx: &mut HookCtx<'_>| on_buffered(ev, ctx, n),
    );
    shard.hooks.sm_remove_connection.add(
        50,
        "carbons",
        |ev: &mut SessionEvent, ctx: &mut HookCtx<'_>| {
            let home = ctx.ext.get_or_default::<CarbonsHome>();
            let bare = ev.jid.bare();
            if let Some(list) = home.users.get_mut(&bare) {
                match ev.moved_to {
                    // Resumed (XEP-0198): carbons stay on, at the new connection (the client does
                    // not enable them again, §5).
                    Some(new) => list
                        .iter_mut()
                        .filter(|(_, s)| *s == ev.session)
                        .for_each(|(_, s)| *s = new),
                    None => list.retain(|(_, s)| *s != ev.session),
                }
                if list.is_empty() {
                    home.users.remove(&bare);
                }
            }
            HookResult::Continue
        },
    );
    // XEP-0386: `<enable xmlns='urn:xmpp:carbons:2'/>` inside a Bind 2 request, recorded on the
    // home shard like the IQ. No answer waits for it (`<bound/>` is the answer): the session's own
    // messages follow it on the same ring, in order; a message from elsewhere that reaches the home
    // shard within the mesh hop after `<success/>` left may miss its copy.
    shard.hooks.bind2_enable_features.add(
        50,
        "carbons",
        move |ev: &mut Bind2Enable, ctx: &mut HookCtx<'_>| {
            let asked = ev
                .requests
                .iter()
                .any(|e| e.name == "enable" && e.ns == NS_CARBONS);
            if asked {
                let (jid, on, reply) = (ev.jid.clone(), true, None);
                to_home(ctx, n, Op::Set { jid, on, reply });
            }
            HookResult::Continue
        },
    );
    shard.sm.add_home_handler("carbons", Rc::new(home));
}

/// The enable/disable IQ (to the user's own bare JID, §4-5).
fn enable_iq(acc: &Acc, payload: &Element, ctx: &mut HookCtx<'_>, shards: usize) -> IqReply {
    let Ok(jid) = acc.from.clone().try_into_full() else {
        return IqReply::Error(StanzaErrorCondition::Forbidden);
    };
    if jid.bare().as_str() != acc.to.as_str() {
        // Only the account itself may switch its carbons.
        return IqReply::NotYours(StanzaErrorCondition::Forbidden);
    }
    if acc.ty() != StanzaType::Set {
        return IqReply::Error(StanzaErrorCondition::BadRequest);
    }
    let on = match payload.name.as_str() {
        "enable" => true,
        "disable" => false,
        _ => return IqReply::Error(StanzaErrorCondition::BadRequest),
    };
    let reply = result_reply(acc, None, ctx.shard);
    let reply = Some(reply);
    to_home(ctx, shards, Op::Set { jid, on, reply });
    // The home shard answers once the state is recorded.
    IqReply::NoReply
}

/// `user_send_message` (sender's shard): `<sent/>` copies are made on the sender's home shard.
fn on_send(acc: &mut Acc, ctx: &mut HookCtx<'_>, shards: usize) -> HookResult {
    if !eligible(&acc.stanza) || to_self(acc) {
        return HookResult::Continue;
    }
    let Ok(sender) = acc.from.clone().try_into_full() else {
        return HookResult::Continue;
    };
    // The copy says where the sender's archive keeps the message, as a received copy does.
    let mut msg = acc.stanza.clone();
    if let Some(sid) = acc.get(crate::hooks::SENT_STANZA_ID) {
        msg.append_child(sid);
    }
    let op = Op::Sent { sender, msg };
    to_home(ctx, shards, op);
    HookResult::Continue
}

/// `user_receive_message` (receiving connection's shard): a message to this very full JID gets
/// `<received/>` copies from the home shard; bare-JID messages were copied there already.
fn on_receive(acc: &mut Acc, ctx: &mut HookCtx<'_>, shards: usize) -> HookResult {
    if acc.get(COPY).is_some() {
        return HookResult::Continue;
    }
    let Some(receiver) = acc.get(RECEIVER) else {
        return HookResult::Continue;
    };
    if acc.to.as_str() != receiver.jid.as_str() || !eligible(&acc.stanza) || to_self(acc) {
        return HookResult::Continue;
    }
    let op = Op::Received {
        receiver: receiver.jid.clone(),
        msg: acc.stanza.clone(),
    };
    acc.put(COPIED, ());
    to_home(ctx, shards, op);
    HookResult::Continue
}

/// `unacknowledged_message` (the connection's shard): a message to a detached session's full JID,
/// buffered for its resumption, gets its `<received/>` copies now, as it would had the client
/// been connected (the buffer is replayed to the resumed stream without `user_receive_message`):
/// the other devices saw nothing of it until then.
fn on_buffered(ev: &mut UnackedMessage, ctx: &mut HookCtx<'_>, shards: usize) -> HookResult {
    let acc = &mut ev.acc;
    let copied = acc.get(COPY).is_some() || acc.get(COPIED).is_some();
    if copied || acc.kind() != StanzaKind::Message || acc.to.as_str() != ev.jid.as_str() {
        return HookResult::Continue;
    }
    if !eligible(&acc.stanza) || to_self(acc) {
        return HookResult::Continue;
    }
    acc.put(COPIED, ());
    let op = Op::Received {
        receiver: ev.jid.clone(),
        msg: acc.stanza.clone(),
    };
    to_home(ctx, shards, op);
    HookResult::Continue
}

/// A message from one of the account's resources to the account (see the module docs).
fn to_self(acc: &Acc) -> bool {
    acc.from.bare_str() == acc.to.bare_str()
}

/// Runs `op` on the home shard of the user it concerns (over the mesh, in order with this shard's
/// other traffic there).
fn to_home(ctx: &mut HookCtx<'_>, shards: usize, op: Op) {
    let user = match &op {
        Op::Set { jid, .. } => jid.bare(),
        Op::Sent { sender, .. } => sender.bare(),
        Op::Received { receiver, .. } => receiver.bare(),
    };
    ctx.run_on(
        home_shard(&user, shards),
        Box::new(move |shard: &mut Shard| run_op(shard, op)),
    );
}

/// Home handler: drops re-routed copies, copies bare-JID messages.
fn home(shard: &mut Shard, mut acc: Acc) -> Option<Acc> {
    if acc.get(COPY).is_some() {
        return None;
    }
    if acc.kind() != StanzaKind::Message {
        return Some(acc);
    }
    let bare = acc.to.bare();
    let enabled = shard
        .ext
        .get::<CarbonsHome>()
        .map(|h| h.enabled(&bare).to_vec())
        .unwrap_or_default();
    if enabled.is_empty() {
        return Some(acc);
    }
    let resources = shard.sm.resources(&bare);
    if let Some(res) = acc.to.resource() {
        if resources.iter().any(|r| r.jid.resource() == res) {
            // A bound full JID: the receiving connection asks for copies.
            return Some(acc);
        }
        if acc.get(COPIED).is_some() {
            // Its session ended without it (a detached one expired) after the copies were made:
            // the resources with carbons have it, so it is not delivered to them again as if to
            // the bare JID; offline storage takes it when no resource is left.
            if acc.get(crate::hooks::COPY_FOR).is_none() {
                if let Ok(full) = acc.to.clone().try_into_full() {
                    acc.put(crate::hooks::COPY_FOR, crate::hooks::CopyFor::FanOut(full));
                }
            }
            return Some(acc);
        }
    }
    if !eligible(&acc.stanza) || to_self(&acc) {
        return Some(acc);
    }
    let Targets::Deliver(got) = shard.sm.bare_targets(bare.as_str(), &acc) else {
        return Some(acc);
    };
    let Some(msg) = acc.stanza.tree().ok() else {
        return Some(acc);
    };
    for (jid, sref) in enabled.iter().filter(|(_, s)| !got.contains(s)) {
        let mut copy = wrap("received", &bare, jid, &msg, &acc.stanza, shard.id);
        acc.derive_trace(
            &mut copy,
            shard.id,
            "carbons",
            crate::explain::Outcome::Reply,
            Some("received copy"),
        );
        shard.send_to_session(*sref, ConnMsg::Deliver(copy));
    }
    Some(acc)
}

fn run_op(shard: &mut Shard, op: Op) {
    match op {
        Op::Set { jid, on, reply } => {
            let bare = jid.bare();
            let Some(sref) = shard
                .sm
                .resources(&bare)
                .iter()
                .find(|r| r.jid == jid)
                .map(|r| r.session)
            else {
                // The session ended on the way: nobody to answer.
                return;
            };
            let home = shard.ext.get_or_default::<CarbonsHome>();
            let list = home.users.entry(bare.clone()).or_default();
            list.retain(|(j, _)| *j != jid);
            if on {
                list.push((jid, sref));
            } else if list.is_empty() {
                home.users.remove(&bare);
            }
            if let Some(reply) = reply {
                shard.send_to_session(sref, ConnMsg::Deliver(reply));
            }
        }
        Op::Sent { sender, msg } => fan_out(shard, "sent", &sender, &msg),
        Op::Received { receiver, msg } => fan_out(shard, "received", &receiver, &msg),
    }
}

/// Copies `msg` to every carbons-enabled resource of `except`'s user but `except`.
fn fan_out(shard: &mut Shard, dir: &str, except: &FullJid, msg: &Stanza) {
    let bare = except.bare();
    let targets: Vec<(FullJid, SessionRef)> = shard
        .ext
        .get::<CarbonsHome>()
        .map(|h| {
            h.enabled(&bare)
                .iter()
                .filter(|(j, _)| j != except)
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    if targets.is_empty() {
        return;
    }
    let Ok(tree) = msg.tree() else {
        return;
    };
    for (jid, sref) in targets {
        let copy = wrap(dir, &bare, &jid, &tree, msg, shard.id);
        shard.send_to_session(sref, ConnMsg::Deliver(copy));
    }
}

/// `<message from=bare to=jid type=...><{dir} xmlns=carbons><forwarded>msg</forwarded></{dir}></message>`.
fn wrap(
    dir: &str,
    bare: &BareJid,
    to: &FullJid,
    msg: &Element,
    original: &Stanza,
    shard: ShardId,
) -> Acc {
    let mut el = Element::new("message", ns::CLIENT)
        .with_attr("from", bare.as_str())
        .with_attr("to", to.as_str());
    if let Some(ty) = original.type_() {
        el = el.with_attr("type", ty.as_ref());
    }
    let el = el.with_child(
        Element::new(dir, NS_CARBONS)
            .with_child(Element::new("forwarded", NS_FORWARD).with_child(msg.clone())),
    );
    let mut acc = Acc::new(
        Stanza::from_element(&el),
        Jid::from(bare.clone()),
        Jid::from(to.clone()),
        shard,
    );
    acc.put(COPY, CopyMarker);
    // Each resource gets its own copy: one whose session is gone is not re-routed to the others.
    acc.put(crate::hooks::COPY_FOR, crate::hooks::CopyFor::SessionOnly);
    acc
}

/// XEP-0280 §6 as petrel applies it (see the module comment).
pub fn eligible(stanza: &Stanza) -> bool {
    if stanza.kind() != StanzaKind::Message {
        return false;
    }
    let normal = match stanza.ty() {
        StanzaType::Chat => false,
        StanzaType::Absent | StanzaType::Normal => true,
        _ => return false,
    };
    let bytes = stanza.bytes();
    let has = |s: &str| memchr::memmem::find(bytes, s.as_bytes()).is_some();
    // §6: a `normal` message counts with a body or with what IM clients exchange about messages:
    // receipts (XEP-0184), chat markers (XEP-0333), chat states (XEP-0085); the user's other
    // devices learn from them that a message was delivered or read.
    if normal && !has("body") && !IM_PAYLOADS.iter().any(|ns| has(ns)) {
        return false;
    }
    // Only a message naming one of these needs a closer look (cheap scan first).
    if !normal && !has(NS_CARBONS) && !has(NS_HINTS) && !has(NS_MUC_USER) {
        return true;
    }
    let Ok(el) = stanza.tree() else {
        return false;
    };
    let mut body = false;
    for c in el.child_elements() {
        match (c.ns.as_str(), c.name.as_str()) {
            (NS_CARBONS, "private" | "sent" | "received") => return false,
            (NS_HINTS, "no-copy") => return false,
            (NS_MUC_USER, "x") => return false,
            (ns::CLIENT, "body") => body = true,
            (ns, _) if IM_PAYLOADS.contains(&ns) => body = true,
            _ => {}
        }
    }
    body || !normal
}

/// Payload namespaces that make a body-less `normal` message eligible (§6): receipts, chat
/// markers, chat states.
const IM_PAYLOADS: [&str; 3] = [
    "urn:xmpp:receipts",
    "urn:xmpp:chat-markers:0",
    ns::CHATSTATES,
];
