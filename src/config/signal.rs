//! `[signal]`: the WebSocket signaling relay on the HTTP listener (heartbeats, room and
//! message sizes, rate and connection limits, origins, tokens); defaults and checks.

use std::time::Duration;

use serde::Deserialize;

use super::de::human_duration;
use super::error::KeyError;
use super::secret::MIN_SECRET_LEN;
use super::server::DEFAULT_MAX_QUEUED_BYTES;

/// `[signal]`: the WebSocket signaling relay on the HTTP listener. A key left out takes its
/// value from [`SignalConfig::default`].
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct SignalConfig {
    /// A WebSocket Ping is sent this often.
    #[serde(deserialize_with = "human_duration")]
    pub heartbeat_interval: Duration,
    /// A client silent for this long is dropped and announced with `remove_peer`.
    #[serde(deserialize_with = "human_duration")]
    pub heartbeat_timeout: Duration,
    /// Peers one room holds; the next joiner gets `room_full`.
    pub max_peers_per_room: usize,
    /// Largest text message in bytes; larger ones get `too_large`.
    pub max_message_size: usize,
    /// Bytes waiting to be written to one connection; a client that stops reading and lets
    /// more pile up is closed (WebSocket close 1008).
    pub max_queued_bytes: usize,
    /// Messages per second one connection may send (burst of the same size); past it,
    /// `rate_limited`.
    pub messages_per_second: u32,
    /// Joins per minute from one client address (an IPv6 /64), over all its connections,
    /// in bursts of the same size; past it, `rate_limited`.
    pub joins_per_minute_per_ip: u32,
    /// WebSocket connections served at once.
    pub max_connections: usize,
    /// WebSocket connections one IP address (an IPv6 /64) may hold at once.
    pub max_connections_per_ip: usize,
    /// Origins allowed to connect (`https://app.example.org`); empty allows any.
    pub allowed_origins: Vec<String>,
    /// When set, `/ws` and `/api/ice-servers` need `?token=EXPIRY:MAC` (see `rturn token`).
    pub token_secret: Option<String>,
}

impl Default for SignalConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(25),
            heartbeat_timeout: Duration::from_secs(60),
            max_peers_per_room: 16,
            max_message_size: 64 * 1024,
            max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
            messages_per_second: 50,
            joins_per_minute_per_ip: 60,
            max_connections: 10_000,
            max_connections_per_ip: 100,
            allowed_origins: Vec::new(),
            token_secret: None,
        }
    }
}

impl SignalConfig {
    /// The rules within `[signal]`.
    pub(super) fn validate(&self) -> Result<(), KeyError> {
        if self.heartbeat_interval < Duration::from_millis(100) {
            return Err(KeyError::new(
                "signal.heartbeat-interval",
                "must be at least \"100ms\"",
            ));
        }
        if self.heartbeat_timeout <= self.heartbeat_interval {
            return Err(KeyError::new(
                "signal.heartbeat-timeout",
                "must be longer than signal.heartbeat-interval (a client gets several pings)",
            ));
        }
        let at_least_one = [
            ("signal.max-peers-per-room", self.max_peers_per_room),
            ("signal.max-message-size", self.max_message_size),
            (
                "signal.messages-per-second",
                self.messages_per_second as usize,
            ),
            (
                "signal.joins-per-minute-per-ip",
                self.joins_per_minute_per_ip as usize,
            ),
            ("signal.max-connections", self.max_connections),
            ("signal.max-connections-per-ip", self.max_connections_per_ip),
        ];
        for (key, value) in at_least_one {
            if value == 0 {
                return Err(KeyError::new(key, "must be at least 1"));
            }
        }
        if self.max_message_size > 16 * 1024 * 1024 {
            return Err(KeyError::new(
                "signal.max-message-size",
                "must be at most 16 MiB",
            ));
        }
        if self.max_queued_bytes < self.max_message_size {
            return Err(KeyError::new(
                "signal.max-queued-bytes",
                format!(
                    "must be at least signal.max-message-size ({}): a queue holds at least \
                     one message of the largest size",
                    self.max_message_size
                ),
            ));
        }
        for origin in &self.allowed_origins {
            if !(origin.starts_with("http://") || origin.starts_with("https://"))
                || origin.ends_with('/')
            {
                return Err(KeyError::new(
                    "signal.allowed-origins",
                    format!(
                        "{origin:?} is not an origin: write it like \"https://app.example.org\""
                    ),
                ));
            }
        }
        if (self.token_secret.as_deref()).is_some_and(|s| s.len() < MIN_SECRET_LEN) {
            return Err(KeyError::new(
                "signal.token-secret",
                format!("must be at least {MIN_SECRET_LEN} characters"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signal(text: &str) -> SignalConfig {
        toml::from_str(text).expect("a [signal] section")
    }

    #[test]
    fn the_defaults_pass_their_own_rules() {
        let s = signal("");
        assert_eq!(s.max_queued_bytes, DEFAULT_MAX_QUEUED_BYTES);
        s.validate().unwrap();
    }

    #[test]
    fn each_rule_names_its_key() {
        for (text, key) in [
            ("heartbeat-interval = \"50ms\"", "signal.heartbeat-interval"),
            ("max-connections = 0", "signal.max-connections"),
            (
                "max-connections-per-ip = 0",
                "signal.max-connections-per-ip",
            ),
            ("messages-per-second = 0", "signal.messages-per-second"),
            (
                "max-message-size = 16777217\nmax-queued-bytes = 33554432",
                "signal.max-message-size",
            ),
            (
                "allowed-origins = [\"https://app.example.org/\"]",
                "signal.allowed-origins",
            ),
            ("token-secret = \"short\"", "signal.token-secret"),
        ] {
            assert_eq!(signal(text).validate().unwrap_err().key, key, "{text}");
        }
        signal("allowed-origins = [\"https://app.example.org\", \"http://localhost:8080\"]")
            .validate()
            .unwrap();
    }
}
