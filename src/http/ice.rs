//! The `iceServers` list handed to browsers by `/api/ice-servers` and the `peers` reply:
//! rturn's own STUN and TURN URLs, with short-lived TURN REST credentials (STUN alone under
//! `[stun] only`, where every TURN request is refused).
//!
//! Each client gets its own REST user part (`EXPIRY:USER`, coturn's format), so `user-quota`
//! limits that client and not everyone who fetched credentials: the signaling peer ID for a
//! join, a keyed hash of the client's address ([`client_key`]: IPv4 address or IPv6 /64) for
//! `/api/ice-servers`. The hash keeps addresses out of usernames and cannot be chosen by the
//! client.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::auth::Auth;
use crate::client_key::client_key_bits;
use crate::config::Config;

/// Builds the list; cheap enough to build per request (one HMAC).
pub struct IceServers {
    host: String,
    udp_port: Option<u16>,
    tcp_port: Option<u16>,
    tls_port: Option<u16>,
    /// `[stun] only`: no TURN entry, whatever secrets are set.
    stun_only: bool,
    auth: Arc<Auth>,
    ttl: Duration,
    /// Keys the hash of a client address into its user part; drawn at start.
    user_key: Hmac<Sha256>,
    /// The addresses bound at start (a reload rebuilds from them).
    bound: [Vec<SocketAddr>; 3],
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
        Self {
            host: host(config, udp, tcp),
            udp_port: udp.first().map(SocketAddr::port),
            tcp_port: tcp.first().map(SocketAddr::port),
            tls_port: tls.first().map(SocketAddr::port),
            stun_only: config.stun.only,
            auth,
            ttl: config.ice.credential_ttl,
            user_key: Hmac::new_from_slice(&crate::random::os_random::<[u8; 32]>())
                .expect("HMAC accepts keys of any length"),
            bound: [udp.to_vec(), tcp.to_vec(), tls.to_vec()],
        }
    }

    /// The REST user part for a client at `ip` (`/api/ice-servers`): 16 hex digits of a keyed
    /// hash of its address key, the same for every request from that address or /64.
    pub fn user_for(&self, ip: IpAddr) -> String {
        let mut mac = self.user_key.clone();
        mac.update(&client_key_bits(ip).to_be_bytes());
        let digest = mac.finalize().into_bytes();
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The same list rebuilt for a reloaded `config` on the addresses bound at start, keeping
    /// this one's address-hash key, so a client keeps its user part (and its quota).
    pub fn reloaded(&self, config: &Config, auth: Arc<Auth>) -> Self {
        let [udp, tcp, tls] = &self.bound;
        Self {
            user_key: self.user_key.clone(),
            ..Self::new(config, udp, tcp, tls, auth)
        }
    }

    /// `{"iceServers":[…],"ttl":N}` with fresh credentials for the client at `ip`.
    pub fn response(&self, ip: IpAddr) -> Value {
        json!({"iceServers": self.list(&self.user_for(ip)), "ttl": self.ttl.as_secs()})
    }

    /// The `iceServers` array alone, its credentials minted for REST user part `user`.
    pub fn list(&self, user: &str) -> Value {
        let host = &self.host;
        let mut servers = Vec::new();
        if let Some(port) = self.udp_port.or(self.tcp_port) {
            servers.push(json!({"urls": [format!("stun:{host}:{port}")]}));
        }
        if self.stun_only {
            return Value::Array(servers);
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let auth = Arc::clone(&self.auth);
        let minted = auth.mint_rest(Some(user), now, self.ttl.as_secs());
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

/// The host in the URLs: `[ice] public-host` (a fleet's one name), else this node's own
/// IPv4 `external-ip`, else its first concrete listen address, else "localhost".
fn host(config: &Config, udp: &[SocketAddr], tcp: &[SocketAddr]) -> String {
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
    match (&config.ice.public_host, external.or(listen)) {
        (Some(name), _) => name.clone(),
        (None, Some(IpAddr::V6(ip))) => format!("[{ip}]"),
        (None, Some(ip)) => ip.to_string(),
        (None, None) => "localhost".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_of(extra: &str, listen: &[&str]) -> String {
        let config = Config::from_toml(&format!(
            "realm = \"r\"\n[relay]\nrelay-ip = \"10.0.0.5\"\n{extra}"
        ))
        .expect("config");
        let listen: Vec<SocketAddr> = listen.iter().map(|a| a.parse().expect("addr")).collect();
        host(&config, &listen, &[])
    }

    #[test]
    fn each_node_hands_out_its_own_address_or_the_fleets_name() {
        let nat = "external-ip = \"203.0.113.5/10.0.0.5\"\n";
        assert_eq!(host_of(nat, &["0.0.0.0:3478"]), "203.0.113.5");
        let fleet = format!("{nat}[ice]\npublic-host = \"turn.example.org\"\n");
        assert_eq!(host_of(&fleet, &["0.0.0.0:3478"]), "turn.example.org");
        assert_eq!(
            host_of("", &["0.0.0.0:3478", "192.0.2.7:3478"]),
            "192.0.2.7"
        );
        assert_eq!(host_of("", &["[2001:db8::7]:3478"]), "[2001:db8::7]");
        assert_eq!(host_of("", &["0.0.0.0:3478"]), "localhost");
    }

    /// The list for a config whose `[auth]` holds secret `secret`, on one UDP listener.
    fn ice_for(toml: &str, secret: &str) -> IceServers {
        let config = Config::from_toml(toml).expect("config");
        let auth = Arc::new(Auth::new(crate::auth::AuthSettings {
            realm: "r".into(),
            secrets: vec![secret.into()],
            ..Default::default()
        }));
        let udp = ["127.0.0.1:3478".parse().expect("addr")];
        IceServers::new(&config, &udp, &[], &[], auth)
    }

    #[test]
    fn each_client_address_gets_a_user_part_of_its_own() {
        let toml = "realm = \"r\"\n[listen]\nudp = [\"127.0.0.1:3478\"]\ntcp = []\n[relay]\nrelay-ip = \"127.0.0.1\"\n";
        let config = Config::from_toml(toml).expect("config");
        let udp = ["127.0.0.1:3478".parse().expect("addr")];
        let ice = ice_for(toml, "s");
        let user = |ip: &str| ice.user_for(ip.parse().expect("ip"));
        let a = user("192.0.2.1");
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()), "{a}");
        assert_eq!(a, user("::ffff:192.0.2.1"));
        assert_ne!(a, user("192.0.2.2"));
        // An IPv6 client is its /64.
        assert_eq!(user("2001:db8:1:2::1"), user("2001:db8:1:2:ffff::9"));
        assert_ne!(user("2001:db8:1:2::1"), user("2001:db8:1:3::1"));
        // The minted username is EXPIRY:USER with that user part.
        let body = ice.response("192.0.2.1".parse().expect("ip"));
        let username = (body["iceServers"].as_array().expect("array").iter())
            .find_map(|s| s["username"].as_str())
            .expect("TURN credentials");
        assert_eq!(username.split_once(':').map(|(_, u)| u), Some(a.as_str()));
        let joined = ice.list("0123abcd");
        let username = joined[1]["username"].as_str().expect("username");
        assert!(username.ends_with(":0123abcd"), "{username}");
        // A reload keeps each client's user part, and so its quota.
        let auth = Arc::new(Auth::new(crate::auth::AuthSettings {
            realm: "r".into(),
            secrets: vec!["rotated".into()],
            ..Default::default()
        }));
        let reloaded = ice.reloaded(&config, auth);
        assert_eq!(reloaded.user_for("192.0.2.1".parse().expect("ip")), a);
        let fresh = IceServers::new(&config, &udp, &[], &[], Arc::clone(&reloaded.auth));
        assert_ne!(fresh.user_for("192.0.2.1".parse().expect("ip")), a);
    }

    #[test]
    fn a_stun_only_server_hands_out_no_turn_entry() {
        let toml =
            "realm = \"r\"\n[listen]\nudp = [\"127.0.0.1:3478\"]\ntcp = []\n[stun]\nonly = true\n";
        let ice = ice_for(toml, "s");
        let list = ice.list("u");
        assert_eq!(list, json!([{"urls": ["stun:127.0.0.1:3478"]}]));
    }
}
