//! `mod_http_upload`: HTTP file upload (XEP-0363), served at `upload.@HOST@` for every hosted
//! domain.
//!
//! - [`service`]: the service's local route: disco#info (with `max-file-size`) and slot requests,
//!   answered with a PUT and a GET URL under `base_url`.
//! - [`slot`]: stateless slots, an HMAC-SHA256 token over the slot in the PUT URL (keyed by a
//!   secret generated once in the upload directory): any shard verifies a PUT without shared state.
//! - [`web`]: the sans-IO decisions of the HTTP side (`/upload/` of a `[[listen.http]]` listener
//!   with the `upload` handler); `rt::http_upload` does its file I/O.
//! - [`expiry`]: the periodic removal of files older than `file_expiry_days`.
//! - The quota: `daily_quota` bytes of slots per user per day, counted in the store
//!   ([`crate::store::Store::upload_grant`]) so that it holds across shards; past it a request gets
//!   `resource-constraint` (type `wait`) with a `<retry stamp/>` (XEP-0363 §5).

mod expiry;
pub mod options;
mod secret;
mod service;
pub mod slot;
pub mod web;

pub use options::{UploadOptions, NAME};
pub use web::UploadFiles;

use std::rc::Rc;

use crate::hooks::{HookCtx, JobDone};
use crate::shard::Shard;

/// The XMPP namespace of XEP-0363.
pub const NS: &str = "urn:xmpp:http:upload:0";

/// Registers the service on every host and the files the HTTP handler serves; the upload directory
/// and its secret are created if needed (an error stops the module, logged).
pub fn start(shard: &mut Shard, hosts: &[String], opts: UploadOptions) {
    let key = match secret::load_or_create(&opts.dir) {
        Ok(key) => key,
        Err(e) => {
            tracing::error!(dir = %opts.dir.display(), error = %e, "http_upload: cannot set up the upload directory; module not started");
            return;
        }
    };
    let files = Rc::new(UploadFiles {
        dir: opts.dir.clone(),
        key,
    });
    let opts = Rc::new(opts);
    for host in hosts {
        let domain = opts.service_for(host);
        let svc = Rc::new(service::Service {
            host: host.clone(),
            base_url: opts.base_url_for(host),
            opts: opts.clone(),
            files: files.clone(),
        });
        shard.register_route(&domain, Rc::new(move |s, acc| svc.route(s, acc)));
        crate::modules::disco::add_server_item(&mut shard.ext, host, &domain, "HTTP File Upload");
    }
    // A deleted account's files go with it (ejabberd's `rm_on_unregister`, on by default there):
    // found by the owner's tag their records keep, in a walk of the directory on the store pool.
    // The quota's grants stay (see `store::upload`).
    let (dir, key) = (files.dir.clone(), files.key.clone());
    crate::hooks::Events::<crate::modules::register::AccountRemoved>::listen(
        shard,
        50,
        NAME,
        move |shard, ev| {
            let (dir, tag, who) = (dir.clone(), key.owner_tag(ev.jid.as_str()), ev.jid.clone());
            HookCtx::new(shard.id, &mut shard.fx, &mut shard.ext).store(None, move |_| {
                let n = expiry::remove_owned(&dir, &tag);
                if n > 0 {
                    tracing::info!(user = %who, removed = n, "http_upload: a deleted account's files removed");
                }
                JobDone::default()
            });
        },
    );
    shard.ext.insert(files);
}

/// The files this shard's HTTP listeners serve at `/upload/` (`None` when the module is off).
pub fn files(shard: &Shard) -> Option<Rc<UploadFiles>> {
    shard.ext.get::<Rc<UploadFiles>>().cloned()
}

/// The periodic removal of files past `file_expiry_days` and of quota grants past their window.
pub fn expiry(opts: &UploadOptions) -> Vec<crate::modules::Periodic> {
    expiry::task(opts)
        .into_iter()
        .chain(expiry::grants_task(opts))
        .collect()
}
