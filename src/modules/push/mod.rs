//! `mod_event_pusher_push`: push notifications (XEP-0357).
//!
//! A client registers an app server (`<enable jid node/>`, optionally with a `publish-options`
//! form) on its account; the registration is stored ([`crate::store::StoredPush`]), at most
//! `max_per_user` per account, with the resource of the session that enabled it. When a message
//! with a body (or a XEP-0334 `<store/>` hint) reaches the account while
//! - no session can take it (`offline_message`, the home shard), or
//! - a session whose connection is gone waits for an XEP-0198 resumption and buffers it
//!   (`unacknowledged_message`, the connection's shard; only the registrations that session
//!   enabled, or all of them when it enabled none); a groupchat message counts there when it
//!   names the session's nick in that room (a mention),
//!
//! the user's home shard publishes a `urn:xmpp:push:summary` form (messages since the user was last
//! available or resumed a session, last sender, last body when allowed) to each registration's node, from the user's
//! bare JID, through the normal route, and waits for the answer with [`Shard::send_iq`].
//!
//! Bounded ([`state`]): at most one publish in flight per registration; messages arriving meanwhile
//! are coalesced into one publish sent when the answer comes, with the latest count and sender.
//! An error answer, or [`MAX_TIMEOUTS`] timeouts in a row, disables the registration (§8); an
//! error of type `wait` (e.g. `remote-server-timeout`) counts as a timeout.
//!
//! Memory per registration is bounded: a node longer than [`MAX_NODE_BYTES`] or a publish-options
//! form larger than [`MAX_FORM_BYTES`] (serialized) is refused with `not-acceptable`.
//!
//! Bodies: `include_body = "never"` (default) never sends one; `"on_request"` sends it only for
//! registrations whose enable form had `petrel#include_body` true (the field is not forwarded to
//! the app server); `"always"` sends it for every registration.

mod iq;
mod notify;
mod state;
#[cfg(test)]
mod tests;

use std::rc::Rc;
use std::time::Duration;

use crate::hooks::{Acc, HookCtx, HookResult, SessionEvent, UnackedMessage};
use crate::jid::BareJid;
use crate::local::IqHandler;
use crate::modules::disco;
use crate::modules::options::{self, OptionError};
use crate::modules::register::AccountRemoved;
use crate::modules::stream_mgmt::Resumed;
use crate::shard::{home_shard, Shard};

use state::{Home, Trigger};

/// A groupchat message a detached session buffered that names the session's nick in that room: it
/// notifies like a chat message (Prosody's mod_cloud_notify does the same); other groupchat
/// traffic does not wake the device.
fn mention(
    acc: &Acc,
    session: &crate::jid::FullJid,
    ext: &crate::shard::Extensions,
    user: &crate::jid::BareJid,
    resource: Option<String>,
) -> Option<Trigger> {
    if acc.kind() != crate::xml::StanzaKind::Message
        || acc.ty() != crate::xml::StanzaType::Groupchat
    {
        return None;
    }
    let nick = crate::modules::muc::tracker::nick_in(ext, session, acc.from.bare_str())?;
    let el = acc.stanza.tree().ok()?;
    let body = el.get_child("body", crate::xmpp::ns::CLIENT)?.text();
    let named = body.to_lowercase().contains(&nick.to_lowercase());
    // The sender is the room/nick that wrote it: its own echo never notifies.
    (named && acc.from.resource() != Some(nick.as_str())).then(|| Trigger {
        user: user.clone(),
        resource,
        sender: acc.from.clone(),
        body: Some(body),
    })
}

/// The module's name in `[modules]`.
pub const NAME: &str = "push";

/// XEP-0357's namespace.
pub const NS: &str = "urn:xmpp:push:0";
/// FORM_TYPE of the notification's summary.
pub const NS_SUMMARY: &str = "urn:xmpp:push:summary";
/// The enable form's field asking for message bodies (under `include_body = "on_request"`).
pub const INCLUDE_BODY_FIELD: &str = "petrel#include_body";

/// Longest node accepted in an enable, in bytes (kept per registration, in memory and stored);
/// longer is `not-acceptable`.
pub const MAX_NODE_BYTES: usize = 1024;
/// Longest publish-options form accepted in an enable, serialized, in bytes (kept per
/// registration, in memory and stored); larger is `not-acceptable`.
pub const MAX_FORM_BYTES: usize = 4096;

/// Timeouts in a row after which a registration is disabled.
pub const MAX_TIMEOUTS: u8 = 3;

/// Scratch key set on a message already counted for push (buffered by a detached session), so it
/// is not counted again when it reaches `offline_message` at that session's end.
const COUNTED: crate::hooks::Key<bool> = crate::hooks::Key::new("push.counted");

/// When message bodies go in the notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyPolicy {
    /// Never.
    Never,
    /// For registrations whose enable form asked for them ([`INCLUDE_BODY_FIELD`]).
    OnRequest,
    /// Always.
    Always,
}

/// `[modules.push]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Registrations per account; past it `enable` is `not-acceptable`.
    pub max_per_user: u32,
    /// When bodies are sent.
    pub include_body: BodyPolicy,
    /// How long a publish waits for the app server's answer.
    pub timeout: Duration,
    /// Accounts whose push state (count, registrations) a shard keeps; past it new ones get no
    /// notification until one without a publish in flight is forgotten.
    pub max_users: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_per_user: 10,
            include_body: BodyPolicy::Never,
            timeout: Duration::from_secs(30),
            max_users: 10_000,
        }
    }
}

impl Options {
    /// Reads and checks `[modules.push]`.
    pub fn from_table(table: &toml::Table) -> Result<Options, OptionError> {
        let o = options::Options::new(NAME, Some(table));
        o.only(&["max_per_user", "include_body", "timeout", "max_users"])?;
        let d = Options::default();
        let include_body = match o.string("include_body", "never")?.as_str() {
            "never" => BodyPolicy::Never,
            "on_request" => BodyPolicy::OnRequest,
            "always" => BodyPolicy::Always,
            _ => return Err(o.invalid("include_body", "\"never\", \"on_request\" or \"always\"")),
        };
        Ok(Options {
            max_per_user: o.positive_u32("max_per_user", d.max_per_user)?,
            include_body,
            timeout: o.positive_secs("timeout", d.timeout.as_secs())?,
            max_users: o.positive_u32("max_users", d.max_users as u32)? as usize,
        })
    }
}

/// Registers the IQ handler, the triggers and the disco feature on `shard`.
pub fn start(shard: &mut Shard, hosts: &[String], opts: Options) {
    let home = Home::new(opts, shard);
    shard.ext.insert(home);
    let handler: IqHandler = Rc::new(iq::iq);
    for host in hosts {
        shard.iq.register_account(host, NS, handler.clone());
        disco::add_account_feature(&mut shard.ext, host, NS);
    }
    // Before offline storage (50), which stops the hook.
    shard
        .hooks
        .offline_message
        .add(40, NAME, |acc: &mut Acc, ctx: &mut HookCtx<'_>| {
            let counted = acc.get(COUNTED).is_some()
                || acc.get(crate::modules::offline::OFFLINE_ROW).is_some();
            if !counted {
                if let Some(t) = Trigger::of(acc, &acc.to.bare(), None) {
                    ctx.run_on(
                        ctx.shard,
                        Box::new(move |s: &mut Shard| state::trigger(s, t)),
                    );
                }
            }
            HookResult::Continue
        });
    shard.hooks.unacknowledged_message.add(
        50,
        NAME,
        |ev: &mut UnackedMessage, ctx: &mut HookCtx<'_>| {
            // Counted when its session detached before (it followed a resumption and the client
            // is gone again without acknowledging it).
            if ev.acc.get(COUNTED).is_some() {
                return HookResult::Continue;
            }
            let user = ev.jid.bare();
            let resource = Some(ev.jid.resource().to_owned());
            let trigger = Trigger::of(&ev.acc, &user, resource.clone())
                .or_else(|| mention(&ev.acc, &ev.jid, ctx.ext, &user, resource));
            if let Some(t) = trigger {
                ev.acc.put(COUNTED, true);
                let shards = ctx.ext.get::<Home>().map_or(1, |h| h.shards);
                ctx.run_on(
                    home_shard(&user, shards),
                    Box::new(move |s: &mut Shard| state::trigger(s, t)),
                );
            }
            HookResult::Continue
        },
    );
    // The user is back: the count starts again.
    shard
        .hooks
        .user_available
        .add(60, NAME, |ev: &mut SessionEvent, ctx: &mut HookCtx<'_>| {
            if let Some(home) = ctx.ext.get_mut::<Home>() {
                home.back_online(ev.jid.bare().as_str());
            }
            HookResult::Continue
        });
    // Resumed by XEP-0198 (on the home shard): back as well.
    crate::hooks::Events::<Resumed>::listen(shard, 60, NAME, |shard, ev| {
        if let Some(home) = shard.ext.get_mut::<Home>() {
            home.back_online(ev.jid.bare().as_str());
        }
    });
    crate::hooks::Events::<AccountRemoved>::listen(shard, 60, NAME, |shard, ev| {
        let user: BareJid = ev.jid.clone();
        let shards = shard.shards;
        crate::sm::run_on(
            shard,
            home_shard(&user, shards),
            Box::new(move |shard: &mut Shard| {
                if let Some(home) = shard.ext.get_mut::<Home>() {
                    home.forget(user.as_str());
                }
            }),
        );
    });
}
