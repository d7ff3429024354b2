//! The `iceServers` list handed to browsers by `/api/ice-servers` and the `peers` reply:
//! rturn's own STUN and TURN URLs, with short-lived TURN REST credentials.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::auth::Auth;
use crate::config::Config;

/// Builds the list; cheap enough to build per request (one HMAC).
pub struct IceServers {
    host: String,
    udp_port: Option<u16>,
    tcp_port: Option<u16>,
    tls_port: Option<u16>,
    auth: std::sync::RwLock<Arc<Auth>>,
    ttl: Duration,
}

impl IceServers {
    /// From the config and the addresses actually bound (port 0 resolved). The host is
    /// `[ice] public-host`, else the IPv4 `external-ip`, else the first concrete listen
    /// address, else "localhost": never 0.0.0.0, which no browser can reach.
    pub fn new(
        config: &Config,
        udp: &[SocketAddr],
        tcp: &[SocketAddr],
        tls: &[SocketAddr],
        auth: Arc<Auth>,
    ) -> Self {
        let external = config
            .external_ips()
            .unwrap_or_default()
            .into_iter()
            .map(|(_, public)| public)
            .find(IpAddr::is_ipv4);
        let listen = udp
            .iter()
            .chain(tcp)
            .map(SocketAddr::ip)
            .find(|ip| !ip.is_unspecified());
        let host = match (&config.ice.public_host, external.or(listen)) {
            (Some(name), _) => name.clone(),
            (None, Some(IpAddr::V6(ip))) => format!("[{ip}]"),
            (None, Some(ip)) => ip.to_string(),
            (None, None) => "localhost".to_owned(),
        };
        Self {
            host,
            udp_port: udp.first().map(SocketAddr::port),
            tcp_port: tcp.first().map(SocketAddr::port),
            tls_port: tls.first().map(SocketAddr::port),
            auth: std::sync::RwLock::new(auth),
            ttl: config.ice.credential_ttl,
        }
    }

    /// Mints with these secrets from now on (config reload).
    pub fn set_auth(&self, auth: Arc<Auth>) {
        *self.auth.write().unwrap_or_else(|e| e.into_inner()) = auth;
    }

    /// `{"iceServers":[…],"ttl":N}` with fresh credentials.
    pub fn response(&self) -> Value {
        json!({"iceServers": self.list(), "ttl": self.ttl.as_secs()})
    }

    /// The `iceServers` array alone.
    pub fn list(&self) -> Value {
        let host = &self.host;
        let mut servers = Vec::new();
        if let Some(port) = self.udp_port.or(self.tcp_port) {
            servers.push(json!({"urls": [format!("stun:{host}:{port}")]}));
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let auth = Arc::clone(&self.auth.read().unwrap_or_else(|e| e.into_inner()));
        let minted = auth.mint_rest(Some("rturn"), now, self.ttl.as_secs());
        if let Some((username, credential)) = minted {
            let mut urls = Vec::new();
            if let Some(port) = self.udp_port {
                urls.push(format!("turn:{host}:{port}?transport=udp"));
            }
            if let Some(port) = self.tcp_port {
                urls.push(format!("turn:{host}:{port}?transport=tcp"));
            }
            if let Some(port) = self.tls_port {
                urls.push(format!("turns:{host}:{port}?transport=tcp"));
            }
            if !urls.is_empty() {
                servers.push(json!({"urls": urls, "username": username, "credential": credential}));
            }
        }
        Value::Array(servers)
    }
}
