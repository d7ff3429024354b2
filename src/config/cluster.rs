//! `[cluster]`: signaling rooms shared with other nodes through one Redis, off unless `redis`
//! is set; defaults, checks and what may name a node.

use std::time::Duration;

use serde::Deserialize;

use super::de::human_duration;
use super::error::KeyError;

/// `[cluster]`: signaling rooms across nodes through one Redis. Off unless `redis` is set.
/// A key left out takes its value from [`ClusterConfig::default`].
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ClusterConfig {
    /// `redis://[user:password@]host:port[/db]` or `unix:///path/redis.sock`; unset: rooms are
    /// this node's alone.
    pub redis: Option<String>,
    /// This node's name in logs, `/healthz` and Redis; default: the host name.
    pub node_id: Option<String>,
    /// A node silent this long is dead: its peers leave their rooms on every other node.
    #[serde(deserialize_with = "human_duration")]
    pub presence_ttl: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            redis: None,
            node_id: None,
            presence_ttl: Duration::from_secs(10),
        }
    }
}

/// Whether `id` can name a node in Redis: 1 to 64 printable ASCII characters, no "/" (which
/// separates the node-id from the session, `wire::session_name`).
pub fn valid_node_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.chars().all(|c| c.is_ascii_graphic() && c != '/')
}

impl ClusterConfig {
    /// The rules within `[cluster]`.
    pub(super) fn validate(&self) -> Result<(), KeyError> {
        if let Some(url) = &self.redis {
            let scheme_ok = url.starts_with("redis://") || url.starts_with("unix://");
            if !scheme_ok || redis::Client::open(url.as_str()).is_err() {
                return Err(KeyError::new(
                    "cluster.redis",
                    format!(
                        "{:?} is not a Redis address; write \"redis://host:6379\" or \"unix:///path/redis.sock\"",
                        crate::signal::cluster::wire::redact(url)
                    ),
                ));
            }
        }
        if self.node_id.as_deref().is_some_and(|id| !valid_node_id(id)) {
            return Err(KeyError::new(
                "cluster.node-id",
                "must be 1 to 64 printable ASCII characters without spaces or \"/\" (e.g. \"turn-1\")",
            ));
        }
        if self.presence_ttl < Duration::from_secs(1) {
            return Err(KeyError::new(
                "cluster.presence-ttl",
                "must be at least \"1s\" (a node refreshes its presence four times per TTL)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
