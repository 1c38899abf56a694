//! `[modules.pubsub]` options.

use super::core::node::MAX_SUBSCRIPTIONS;
use super::core::Limits;
use crate::modules::options::{OptionError, Options};

/// The module's name in `[modules.NAME]`.
pub const NAME: &str = "pubsub";

/// Options of `[modules.pubsub]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubsubOptions {
    /// The service's domain, `@HOST@` standing for each hosted domain.
    pub host: String,
    /// Items per node, item size, nodes per owner.
    pub limits: Limits,
    /// Nodes one service holds at most (`max-nodes-exceeded` past it).
    pub max_nodes: u32,
    /// Subscriptions one node holds at most (`too-many-subscriptions` past it).
    pub max_subscriptions: usize,
}

impl Default for PubsubOptions {
    fn default() -> Self {
        PubsubOptions {
            host: "pubsub.@HOST@".to_owned(),
            limits: Limits {
                max_items_per_node: 1000,
                max_item_bytes: 65_536,
                max_nodes_per_owner: 100,
            },
            max_nodes: 100_000,
            max_subscriptions: MAX_SUBSCRIPTIONS,
        }
    }
}

impl PubsubOptions {
    /// Reads `[modules.pubsub]`.
    pub fn from_table(table: &toml::Table) -> Result<PubsubOptions, OptionError> {
        let o = Options::new(NAME, Some(table));
        o.only(&[
            "host",
            "max_items_per_node",
            "max_item_bytes",
            "max_nodes_per_user",
            "max_nodes",
            "max_subscriptions_per_node",
        ])?;
        let d = PubsubOptions::default();
        let host = o.string("host", &d.host)?;
        if !host.contains("@HOST@") && crate::jid::BareJid::domain_only(&host).is_err() {
            return Err(o.invalid("host", "a domain, `@HOST@` standing for each hosted domain"));
        }
        let n = |key, default: usize| {
            o.positive_u32(key, u32::try_from(default).unwrap_or(u32::MAX))
                .map(|v| v as usize)
        };
        Ok(PubsubOptions {
            host,
            limits: Limits {
                max_items_per_node: n("max_items_per_node", d.limits.max_items_per_node)?,
                max_item_bytes: n("max_item_bytes", d.limits.max_item_bytes)?,
                max_nodes_per_owner: n("max_nodes_per_user", d.limits.max_nodes_per_owner)?,
            },
            max_nodes: o.positive_u32("max_nodes", d.max_nodes)?,
            // The core bounds every node at MAX_SUBSCRIPTIONS; this may only lower it.
            max_subscriptions: o.uint_in(
                "max_subscriptions_per_node",
                d.max_subscriptions as u64,
                1..=MAX_SUBSCRIPTIONS as u64,
            )? as usize,
        })
    }

    /// The service domain for hosted domain `host`.
    pub fn service_for(&self, host: &str) -> String {
        self.host.replace("@HOST@", host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<PubsubOptions, OptionError> {
        let t: toml::Table = toml::from_str(s).unwrap_or_else(|e| panic!("{e}"));
        PubsubOptions::from_table(&t)
    }

    #[test]
    fn defaults_pattern_and_limits() {
        let o = parse("").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(o, PubsubOptions::default());
        assert_eq!(o.service_for("example.org"), "pubsub.example.org");
        let o = parse("host = \"ps.@HOST@\"\nmax_item_bytes = 10\nmax_nodes = 3\nmax_subscriptions_per_node = 2")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(o.service_for("a.b"), "ps.a.b");
        assert_eq!(o.limits.max_item_bytes, 10);
        assert_eq!(o.max_nodes, 3);
        assert_eq!(o.max_subscriptions, 2);
    }

    #[test]
    fn bad_options_are_refused() {
        assert!(parse("hots = \"x\"").is_err());
        assert!(parse("max_nodes = 0").is_err());
        assert!(parse("max_subscriptions_per_node = 10001").is_err());
        assert!(parse("host = \"bad domain\"").is_err());
    }
}
