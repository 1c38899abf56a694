//! Server modules (MongooseIM's `mod_*`): each registers hook handlers and IQ handlers on a shard at
//! start-up, from its `[modules.NAME]` table in `petrel.toml`.

pub mod avatar;
pub mod blocking;
pub mod bookmarks;
pub mod caps;
pub mod carbons;
pub mod csi;
pub mod disco;
pub mod gather;
pub mod http_upload;
pub mod last;
pub mod mam;
#[cfg(test)]
mod misc_tests;
pub mod muc;
pub mod offline;
mod options;
pub mod pep;
pub mod ping;
pub mod presence;
pub mod private;
pub mod pubsub;
pub mod push;
pub mod register;
pub mod roster;
pub mod stream_mgmt;
#[cfg(test)]
pub(crate) mod testing;
pub mod time;
pub mod vcard;
pub mod version;

pub use options::OptionError;

use std::time::Duration;

use crate::config::Config;
use crate::shard::Shard;

/// Modules petrel knows, in start order (disco last: it advertises what the others registered).
pub const KNOWN: &[&str] = &[
    // Before roster and presence: its home-shard handler observes roster pushes and the user's own
    // presence updates, which theirs take.
    "pep",
    // After pep (they use its API) and, for avatar's presence stamp, before presence.
    "avatar",
    "bookmarks",
    "roster",
    "presence",
    "caps",
    "ping",
    "version",
    "time",
    "last",
    "register",
    "offline",
    "blocking",
    "private",
    "vcard",
    "csi",
    "carbons",
    "stream_management",
    // After offline (its offline_message handler runs before offline storage's by priority).
    "push",
    "muc",
    "pubsub",
    "mam",
    "http_upload",
    "disco",
];

/// What the c2s listeners take from the module configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct C2sModuleOptions {
    /// `[modules.ping] ping_interval` (zero: the server never pings clients).
    pub ping_interval: Duration,
    /// `[modules.ping] ping_timeout`.
    pub ping_timeout: Duration,
    /// `[modules.register]` is present: registration before authentication is allowed.
    pub register: bool,
    /// `[modules.stream_management]` (XEP-0198), `None` when off.
    pub sm: Option<crate::c2s::SmConfig>,
    /// Stream features the enabled modules offer after authentication, rendered.
    pub post_auth_features: Vec<u8>,
    /// Bind 2 inline features of the enabled modules (`<feature var=''/>`), rendered.
    pub bind2_features: Vec<u8>,
}

/// What the enabled modules can switch on inside a Bind 2 request (XEP-0386): their handlers of
/// `bind2_enable_features` act on the requests.
fn bind2_features(config: &Config) -> Vec<u8> {
    let mut out = Vec::new();
    for (module, var) in [("carbons", carbons::NS_CARBONS), ("csi", csi::NS_CSI)] {
        if config.modules.contains_key(module) {
            out.extend_from_slice(format!("<feature var='{var}'/>").as_bytes());
        }
    }
    out
}

/// The post-authentication stream features of the enabled modules.
fn post_auth_features(config: &Config) -> Vec<u8> {
    let mut out = Vec::new();
    if config.modules.contains_key(caps::NAME) {
        out.extend(caps::stream_feature(&server_disco_features(config)));
    }
    if let Some(t) = config.modules.get("roster") {
        if roster::RosterOpts::from_table(t).is_ok_and(|o| o.versioning) {
            out.extend_from_slice(b"<ver xmlns='urn:xmpp:features:rosterver'/>");
        }
        out.extend_from_slice(b"<sub xmlns='urn:xmpp:features:pre-approval'/>");
    }
    if config.modules.contains_key(stream_mgmt::NAME) {
        out.extend_from_slice(b"<sm xmlns='urn:xmpp:sm:3'/>");
    }
    if config.modules.contains_key("csi") {
        out.extend_from_slice(b"<csi xmlns='urn:xmpp:csi:0'/>");
    }
    out
}

/// The features of the server's disco#info (on its first host) with this configuration: the
/// modules started on a scratch shard, as every shard starts them.
pub fn server_disco_features(config: &Config) -> Vec<String> {
    let hosts: ahash::HashSet<String> =
        config.general.hosts.iter().map(|h| h.to_string()).collect();
    let mut shard = Shard::new(
        crate::shard::ShardId(0),
        1,
        std::rc::Rc::new(hosts),
        config.general.routing_modules.clone().into(),
        0,
    );
    start(config, &mut shard);
    let first = config.general.hosts.first().map_or("", |h| h.as_str());
    disco::server_features(&shard, first)
}

/// Validates the options of the modules in this file and returns what the c2s needs; called once
/// at start-up, before any shard starts, so `start` may rely on valid options.
pub fn c2s_options(config: &Config) -> Result<C2sModuleOptions, OptionError> {
    let ping = ping::options(config.modules.get("ping"))?;
    version::options(config.modules.get("version"))?;
    register::options(config.modules.get("register"))?;
    csi::options(config.modules.get("csi"))?;
    options::Options::new("carbons", config.modules.get("carbons")).only(&[])?;
    Ok(C2sModuleOptions {
        ping_interval: ping.interval,
        ping_timeout: ping.timeout,
        register: config.modules.contains_key("register"),
        sm: stream_mgmt::options(config.modules.get(stream_mgmt::NAME))?.map(|sm| {
            crate::c2s::SmConfig {
                // Leaked once: this runs once per process, at start-up (see above).
                id_prefix: config
                    .cluster
                    .as_ref()
                    .map(|c| &*Box::leak(c.node.clone().into_boxed_str())),
                ..sm
            }
        }),
        post_auth_features: post_auth_features(config),
        bind2_features: bind2_features(config),
    })
}

/// Registers the configured modules' handlers on `shard`.
pub fn start(config: &Config, shard: &mut Shard) {
    let hosts: Vec<String> = config.general.hosts.iter().map(|h| h.to_string()).collect();
    let data_dir = &config.general.data_dir;
    for &name in KNOWN {
        let Some(table) = config.modules.get(name) else {
            continue;
        };
        let started: Result<(), OptionError> = match name {
            "roster" => {
                // Options were checked by `check` before the shards started; defaults otherwise.
                let opts =
                    roster::RosterOpts::from_table(&config.modules[name]).unwrap_or_default();
                roster::start(shard, &hosts, opts);
                Ok(())
            }
            "presence" => {
                presence::start(shard, &hosts);
                Ok(())
            }
            caps::NAME => caps::CapsOptions::from_table(table)
                .map(|o| caps::start(shard, o, config.cluster.is_some())),
            "ping" => {
                ping::start(shard, &hosts);
                Ok(())
            }
            // Options were validated by `c2s_options` before the shards started.
            "version" => {
                version::start(
                    shard,
                    &hosts,
                    version::options(Some(table)).unwrap_or_default(),
                );
                Ok(())
            }
            "time" => {
                time::start(shard, &hosts);
                Ok(())
            }
            "last" => {
                last::start(shard, &hosts);
                Ok(())
            }
            "register" => {
                register::start(
                    shard,
                    &hosts,
                    register::options(Some(table)).unwrap_or_default(),
                    config.auth.scram_iterations,
                );
                Ok(())
            }
            muc::NAME => muc::MucOptions::from_table(table).map(|o| {
                let ids = muc::occupant_ids(config);
                muc::start(shard, &hosts, o, config.cluster.is_some(), ids)
            }),
            pubsub::NAME => pubsub::PubsubOptions::from_table(table)
                .map(|o| pubsub::start(shard, &hosts, o, config.cluster.is_some())),
            mam::NAME => mam::MamOptions::from_table(table).map(|o| mam::start(shard, &hosts, o)),
            http_upload::NAME => http_upload::UploadOptions::from_table(table, data_dir)
                .map(|o| http_upload::start(shard, &hosts, o)),
            "offline" => offline::Options::from_table(table).map(|o| offline::start(shard, &o)),
            "blocking" => blocking::Options::from_table(table)
                .map(|o| blocking::start(shard, &hosts, &o, config)),
            "private" => {
                private::Options::from_table(table).map(|o| private::start(shard, &hosts, &o))
            }
            "vcard" => vcard::Options::from_table(table).map(|o| vcard::start(shard, &hosts, &o)),
            pep::NAME => pep::Options::from_table(table).map(|o| pep::start(shard, &hosts, o)),
            push::NAME => push::Options::from_table(table).map(|o| push::start(shard, &hosts, o)),
            // Options were validated by `c2s_options` before the shards started.
            "csi" => {
                csi::start(shard, csi::options(Some(table)).unwrap_or_default());
                Ok(())
            }
            "carbons" => {
                carbons::start(shard, &hosts);
                Ok(())
            }
            "avatar" => {
                avatar::start(shard, &hosts);
                Ok(())
            }
            "bookmarks" => {
                bookmarks::start(shard, &hosts);
                Ok(())
            }
            "stream_management" => {
                stream_mgmt::start(shard);
                Ok(())
            }
            "disco" => {
                for host in &hosts {
                    for f in im_storage_features(config) {
                        disco::add_server_feature(&mut shard.ext, host, f);
                    }
                }
                disco::start(shard, &hosts);
                Ok(())
            }
            _ => Ok(()),
        };
        if let Err(e) = started {
            // `check_options` refuses such a config before the shards start; this is a backstop.
            tracing::error!(error = %e, "module not started");
        }
    }
}

/// A module's options are wrong (the start-up check of the modules [`c2s_options`] does not read).
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// `[modules.roster|presence|offline|blocking|private|vcard]`.
    #[error(transparent)]
    Options(#[from] OptionError),
    /// A `[components."domain"]` that a module serves (`conference.`, `pubsub.`, `upload.` ...).
    #[error("components.\"{0}\": a component domain must not be a module's service domain")]
    ComponentIsService(String),
    /// A `[modules.NAME]` no module answers to: a misspelt name would leave the module off.
    #[error("{at}: [modules.{name}]: no such module (the modules are: {known})")]
    Unknown {
        /// The table's name.
        name: String,
        /// `FILE:LINE:COL` of the table.
        at: String,
        /// The known names.
        known: String,
    },
}

/// Checks the options of the configured modules (call before starting the shards).
pub fn check(config: &Config) -> Result<(), ModuleError> {
    if let Some(name) = config.modules.keys().find(|n| !KNOWN.contains(&n.as_str())) {
        let at = config
            .module_location(name)
            .map_or(String::new(), |l| format!(":{l}"));
        return Err(ModuleError::Unknown {
            name: name.clone(),
            at: format!("{}{at}", config.source.display()),
            known: KNOWN.join(", "),
        });
    }
    if let Some(t) = config.modules.get("roster") {
        roster::RosterOpts::from_table(t)?;
    }
    options::Options::new("presence", config.modules.get("presence")).only(&[])?;
    check_options(config)?;
    check_component_domains(config)
}

/// No external component may claim a domain a module serves: the modules start on a scratch shard
/// (no sockets, the configured store: `check-config` passes a throwaway one, see
/// [`with_scratch_store`]) and every service domain they register is compared.
fn check_component_domains(config: &Config) -> Result<(), ModuleError> {
    if config.components.is_empty() {
        return Ok(());
    }
    let hosts = config.general.hosts.iter().map(|h| h.to_string()).collect();
    let mut shard = Shard::new(
        crate::shard::ShardId(0),
        1,
        std::rc::Rc::new(hosts),
        config.general.routing_modules.clone().into(),
        usize::MAX,
    );
    start(config, &mut shard);
    match config
        .components
        .keys()
        .find(|d| shard.service(d.as_str()).is_some())
    {
        Some(d) => Err(ModuleError::ComponentIsService(d.to_string())),
        None => Ok(()),
    }
}

/// Runs `f` on `config` with its store replaced by a throwaway SQLite file in a temporary data
/// directory (removed after): `check-config` starts the modules only to learn about them (their
/// service domains, the stream features), and must not create or migrate the configured store (a
/// newer build would migrate a production schema before the upgrade). `serve` opens the real one.
pub fn with_scratch_store<R>(config: &Config, f: impl FnOnce(&Config) -> R) -> R {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let scratch = std::env::temp_dir().join(format!("petrel-check-{}-{nanos}", std::process::id()));
    let mut config = config.clone();
    config.general.data_dir = scratch.clone();
    config.store.backend = crate::config::StoreBackend::Sqlite;
    config.store.url = None;
    let r = f(&config);
    // Best effort: a leftover in the temporary directory harms nothing.
    let _ = std::fs::remove_dir_all(&scratch);
    r
}

/// Validates the option tables of the modules that read options; run before the shards start so a
/// bad `[modules.NAME]` stops the server with a clear error.
pub fn check_options(config: &Config) -> Result<(), OptionError> {
    for (name, table) in &config.modules {
        match name.as_str() {
            "offline" => offline::Options::from_table(table).map(drop)?,
            "blocking" => blocking::Options::from_table(table).map(drop)?,
            "private" => private::Options::from_table(table).map(drop)?,
            "vcard" => vcard::Options::from_table(table).map(drop)?,
            pep::NAME => pep::Options::from_table(table).map(drop)?,
            push::NAME => push::Options::from_table(table).map(drop)?,
            avatar::NAME => options::Options::new(avatar::NAME, Some(table)).only(&[])?,
            bookmarks::NAME => options::Options::new(bookmarks::NAME, Some(table)).only(&[])?,
            muc::NAME => muc::MucOptions::from_table(table).map(drop)?,
            pubsub::NAME => pubsub::PubsubOptions::from_table(table).map(drop)?,
            caps::NAME => caps::CapsOptions::from_table(table).map(drop)?,
            mam::NAME => mam::MamOptions::from_table(table).map(drop)?,
            http_upload::NAME => {
                http_upload::UploadOptions::from_table(table, &config.general.data_dir).map(drop)?
            }
            _ => {}
        }
    }
    Ok(())
}

/// Store work a module wants done every `every` (retention, expired uploads); run on the store
/// pool, queued from shard 0.
pub struct Periodic {
    /// What it is, for the logs.
    pub name: &'static str,
    /// How often.
    pub every: Duration,
    /// The work.
    pub run: std::sync::Arc<dyn Fn(&crate::store::Store) + Send + Sync>,
}

/// The periodic store work of the enabled modules (options were validated by [`check_options`]).
pub fn periodic(config: &Config) -> Vec<Periodic> {
    let mut v = Vec::new();
    if let Some(t) = config.modules.get(mam::NAME) {
        if let Ok(o) = mam::MamOptions::from_table(t) {
            v.extend(mam::retention(&o));
        }
    }
    if let Some(t) = config.modules.get(http_upload::NAME) {
        if let Ok(o) = http_upload::UploadOptions::from_table(t, &config.general.data_dir) {
            v.extend(http_upload::expiry(&o));
        }
    }
    v
}

/// Features the enabled storage modules add to the server's disco#info (for `mod_disco`).
pub fn im_storage_features(config: &Config) -> Vec<&'static str> {
    let mut v = Vec::new();
    for (name, features) in [
        ("offline", offline::FEATURES),
        ("blocking", blocking::FEATURES),
        ("private", private::FEATURES),
        ("vcard", vcard::FEATURES),
    ] {
        if config.modules.contains_key(name) {
            v.extend_from_slice(features);
        }
    }
    v
}
