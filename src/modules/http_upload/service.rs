//! The service's packet handler: runs on the shard where a stanza to `upload.example.org` is routed
//! (the sender's); everything it needs is in the slot it signs, so no other shard is involved.

use std::rc::Rc;

use super::options::{UploadOptions, QUOTA_WINDOW_SECS};
use super::slot::{self, Slot};
use super::{UploadFiles, NS};
use crate::hooks::{Acc, HookCtx, JobDone};
use crate::jid::BareJid;
use crate::local::result_reply;
use crate::modules::offline::user_key;
use crate::shard::{Shard, ShardId};
use crate::store::UploadGrant;
use crate::xml::{Element, StanzaKind, StanzaType};
use crate::xmpp::{ns, StanzaErrorCondition};

/// The `jabber:x:data` namespace (XEP-0004).
const NS_DATA: &str = "jabber:x:data";

/// The service of one hosted domain.
pub(super) struct Service {
    /// The hosted domain whose users it serves.
    pub host: String,
    /// Its URL prefix (`base_url` for this host).
    pub base_url: String,
    /// The module's options.
    pub opts: Rc<UploadOptions>,
    /// The directory and secret.
    pub files: Rc<UploadFiles>,
}

/// Why a slot request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Missing or invalid `filename` or `size`.
    BadRequest,
    /// Larger than `max_file_size`.
    TooLarge(u64),
    /// A user the service does not serve.
    NotAllowed,
    /// Past the user's daily quota until this unix time.
    OverQuota(i64),
    /// No randomness for the slot id, or the store failed.
    Internal,
}

/// A slot to give, once the quota allows it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Offer {
    /// The `<slot/>` answer.
    pub slot: Element,
    /// The file's size, counted against the quota.
    pub size: u64,
}

impl Service {
    /// Routes a stanza addressed to the service.
    pub fn route(&self, shard: &mut Shard, acc: Acc) {
        // Nothing lives under the service (`user@upload.example.org`).
        if acc.to.node().is_some() {
            let ty = acc.ty();
            if acc.kind() == StanzaKind::Iq && ty.is_request() {
                shard.bounce(&acc, StanzaErrorCondition::ServiceUnavailable);
            }
            return;
        }
        let Some(payload) = crate::local::service_iq(shard, &acc) else {
            return;
        };
        let ty = acc.ty();
        match (ty, payload.ns.as_str(), payload.name.as_str()) {
            (StanzaType::Get, ns::DISCO_INFO, _) if payload.attr("node").is_none() => {
                let reply = result_reply(&acc, Some(self.disco_info()), shard.id);
                shard.fx.to_route.push(reply);
            }
            (StanzaType::Get, ns::DISCO_ITEMS, _) if payload.attr("node").is_none() => {
                let q = Element::new("query", ns::DISCO_ITEMS);
                let reply = result_reply(&acc, Some(q), shard.id);
                shard.fx.to_route.push(reply);
            }
            (StanzaType::Get, NS, "request") => {
                let now = crate::store::unix_now();
                match self.slot(&acc.from.bare(), &payload, now) {
                    Ok(offer) if self.opts.daily_quota == 0 => {
                        let reply = result_reply(&acc, Some(offer.slot), shard.id);
                        shard.fx.to_route.push(reply);
                    }
                    Ok(offer) => self.grant(shard, &acc, offer, now),
                    Err(r) => shard.fx.to_route.extend(refusal(&acc, r, shard.id)),
                }
            }
            (StanzaType::Get, ns::DISCO_INFO | ns::DISCO_ITEMS, _) => {
                shard.bounce(&acc, StanzaErrorCondition::ItemNotFound)
            }
            _ => shard.bounce(&acc, StanzaErrorCondition::ServiceUnavailable),
        }
    }

    /// disco#info: identity `store/file`, the XEP-0363 feature and its `max-file-size` form.
    fn disco_info(&self) -> Element {
        let field = |var: &str, value: &str| {
            Element::new("field", NS_DATA)
                .with_attr("var", var)
                .with_child(Element::new("value", NS_DATA).with_text(value))
        };
        let form = Element::new("x", NS_DATA)
            .with_attr("type", "result")
            .with_child(field("FORM_TYPE", NS).with_attr("type", "hidden"))
            .with_child(field("max-file-size", &self.opts.max_file_size.to_string()));
        let mut q = Element::new("query", ns::DISCO_INFO).with_child(
            Element::new("identity", ns::DISCO_INFO)
                .with_attr("category", "store")
                .with_attr("type", "file")
                .with_attr("name", "HTTP File Upload"),
        );
        for f in [ns::DISCO_INFO, ns::DISCO_ITEMS, NS] {
            q = q.with_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", f));
        }
        q.with_child(form)
    }

    /// Gives `offer` if the requester's grants of the last day leave room for it (a store job,
    /// keyed by the user: the quota holds across shards and sessions), else refuses it.
    fn grant(&self, shard: &mut Shard, acc: &Acc, offer: Offer, now: i64) {
        let user = acc.from.bare();
        let (req, on, quota) = (acc.fork(), shard.id, self.opts.daily_quota);
        let key = Some(user_key(&user));
        HookCtx::new(shard.id, &mut shard.fx, &mut shard.ext).store(key, move |store| {
            let reply = match store.upload_grant(&user, offer.size, now, QUOTA_WINDOW_SECS, quota) {
                Ok(UploadGrant::Granted) => Some(result_reply(&req, Some(offer.slot), on)),
                Ok(UploadGrant::OverQuota { retry_at }) => {
                    refusal(&req, Refusal::OverQuota(retry_at), on)
                }
                Err(e) => {
                    tracing::error!(error = %e, "http_upload: quota check failed");
                    refusal(&req, Refusal::Internal, on)
                }
            };
            JobDone::from(reply.into_iter().collect::<Vec<_>>())
        });
    }

    /// A slot for `<request filename size content-type/>` from `from` (an account, not a server)
    /// at unix time `now`.
    pub(super) fn slot(&self, from: &BareJid, req: &Element, now: i64) -> Result<Offer, Refusal> {
        if from.node().is_none() || (self.opts.host_users_only && from.domain() != self.host) {
            return Err(Refusal::NotAllowed);
        }
        let filename = req
            .attr("filename")
            .and_then(slot::sanitize_filename)
            .ok_or(Refusal::BadRequest)?;
        let size: u64 = req
            .attr("size")
            .and_then(|s| s.trim().parse().ok())
            .ok_or(Refusal::BadRequest)?;
        if size > self.opts.max_file_size {
            return Err(Refusal::TooLarge(self.opts.max_file_size));
        }
        // An unusable content type is dropped: the PUT's (or octet-stream) is served instead.
        let content_type = req
            .attr("content-type")
            .and_then(slot::sanitize_content_type);
        let timeout = i64::try_from(self.opts.slot_timeout.as_secs()).unwrap_or(i64::MAX);
        let owner = Some(self.files.key.owner_tag(from.as_str()));
        let slot = Slot::new(
            filename,
            size,
            content_type,
            now.saturating_add(timeout),
            owner,
        )
        .map_err(|_| Refusal::Internal)?;
        let urls = slot.urls(&self.base_url, &self.files.key);
        let slot = Element::new("slot", NS)
            .with_child(Element::new("put", NS).with_attr("url", urls.put))
            .with_child(Element::new("get", NS).with_attr("url", urls.get));
        Ok(Offer { slot, size })
    }
}

/// The XEP-0363 §5 error answering a refused request.
fn refusal(acc: &Acc, r: Refusal, on: ShardId) -> Option<Acc> {
    let (cond, app) = match r {
        Refusal::BadRequest => (StanzaErrorCondition::BadRequest, None),
        Refusal::NotAllowed => (StanzaErrorCondition::NotAllowed, None),
        Refusal::Internal => (StanzaErrorCondition::InternalServerError, None),
        Refusal::TooLarge(max) => (
            StanzaErrorCondition::NotAcceptable,
            Some(
                Element::new("file-too-large", NS)
                    .with_child(Element::new("max-file-size", NS).with_text(&max.to_string())),
            ),
        ),
        // A temporary error (type `wait`) saying when to try again.
        Refusal::OverQuota(at) => (
            StanzaErrorCondition::ResourceConstraint,
            Some(Element::new("retry", NS).with_attr(
                "stamp",
                crate::xmpp::datetime::stamp(at.saturating_mul(1_000_000)),
            )),
        ),
    };
    acc.error_reply_with(cond, app, on)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::http_upload::slot::SlotKey;

    fn service() -> Service {
        let mut opts = UploadOptions::defaults(std::path::Path::new("/d"));
        opts.max_file_size = 100;
        Service {
            host: "a.test".into(),
            base_url: opts.base_url_for("a.test"),
            opts: Rc::new(opts),
            files: Rc::new(UploadFiles {
                dir: "/d/upload".into(),
                key: SlotKey::new([1; 32]),
            }),
        }
    }

    fn jid(s: &str) -> BareJid {
        BareJid::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    fn request(attrs: &[(&str, &str)]) -> Element {
        attrs
            .iter()
            .fold(Element::new("request", NS), |e, (k, v)| e.with_attr(*k, *v))
    }

    #[test]
    fn a_slot_has_urls_the_http_side_accepts() {
        let s = service();
        let req = request(&[
            ("filename", "../x y.txt"),
            ("size", "100"),
            ("content-type", "text/plain"),
        ]);
        let slot = s
            .slot(&jid("u@a.test"), &req, 1000)
            .unwrap_or_else(|e| panic!("{e:?}"))
            .slot;
        let url = |name: &str| {
            slot.get_child(name, NS)
                .and_then(|e| e.attr("url"))
                .unwrap_or_default()
                .to_owned()
        };
        let (put, get) = (url("put"), url("get"));
        assert!(
            get.starts_with("http://a.test:5280/upload/") && get.ends_with("/x%20y.txt"),
            "{get}"
        );
        let rest = put.strip_prefix("http://a.test:5280").unwrap_or_default();
        let (path, query) = rest.split_once('?').unwrap_or_default();
        let plan = s
            .files
            .put(path, Some(query), Some("100"), Some("text/plain"), 1300);
        assert!(plan.is_ok(), "{plan:?}");
        // slot_timeout (300 s) later, the PUT URL is refused.
        let late = s.files.put(path, Some(query), Some("100"), None, 1301);
        assert_eq!(late.map(drop), Err(super::super::web::Reject::Expired));
    }

    #[test]
    fn refusals() {
        let s = service();
        let ok = [("filename", "a"), ("size", "1")];
        assert!(s.slot(&jid("u@a.test"), &request(&ok), 0).is_ok());
        assert_eq!(
            s.slot(&jid("u@b.test"), &request(&ok), 0),
            Err(Refusal::NotAllowed)
        );
        assert_eq!(
            s.slot(&jid("a.test"), &request(&ok), 0),
            Err(Refusal::NotAllowed)
        );
        let big = [("filename", "a"), ("size", "101")];
        assert_eq!(
            s.slot(&jid("u@a.test"), &request(&big), 0),
            Err(Refusal::TooLarge(100))
        );
        for bad in [
            &[("filename", "a")][..],
            &[("size", "1")],
            &[("filename", "a"), ("size", "x")],
            &[("filename", "a"), ("size", "-1")],
            &[("filename", "/"), ("size", "1")],
        ] {
            assert_eq!(
                s.slot(&jid("u@a.test"), &request(bad), 0),
                Err(Refusal::BadRequest),
                "{bad:?}"
            );
        }
    }
}
