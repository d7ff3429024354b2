//! `[relay]`: relay addresses (`relay-ip`, `external-ip` behind 1:1 NAT), the port range,
//! lifetimes, quotas, bandwidth, which peers may be reached and whether the kernel relays
//! bound channels by itself (`offload`); defaults and checks.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use super::de::{human_duration, ip_nets, one_or_many};
use super::error::KeyError;

/// Permissions (peer IPs) one allocation may hold; a browser uses one per remote candidate
/// address, a handful per call.
pub const DEFAULT_MAX_PERMISSIONS_PER_ALLOCATION: usize = 128;
/// Default `[relay] max-allocations-per-ip`: room for an office behind one NAT address (a
/// browser call takes one to three allocations, one per TURN URL), while one address alone
/// can hold only a sliver of the default 16 384-port relay range.
pub const DEFAULT_MAX_ALLOCATIONS_PER_IP: usize = 256;
/// Channels one allocation may bind; a browser binds one per remote candidate pair in use.
pub const DEFAULT_MAX_CHANNELS_PER_ALLOCATION: usize = 128;

/// `[relay] offload`: whether the kernel relays UDP ChannelData of bound channels by
/// itself (an eBPF program), where it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OffloadMode {
    /// On where the kernel and the process's capabilities allow it, else off with one log
    /// line saying why.
    #[default]
    Auto,
    /// Never: every packet goes through user space.
    Off,
}

/// `[relay]`: relay addresses, lifetimes, quotas and which peers may be reached. A key left
/// out takes its value from [`RelayConfig::default`].
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct RelayConfig {
    /// Addresses relay sockets bind to: at most one IPv4 and one IPv6.
    #[serde(deserialize_with = "one_or_many")]
    pub relay_ip: Vec<IpAddr>,
    /// Addresses advertised in XOR-RELAYED-ADDRESS behind 1:1 NAT: `"PUBLIC"` (for the
    /// relay-ip of the same family) or coturn's `"PUBLIC/PRIVATE"` (PRIVATE is a relay-ip).
    #[serde(deserialize_with = "one_or_many")]
    pub external_ip: Vec<String>,
    /// Lowest relay port.
    pub min_port: u16,
    /// Highest relay port.
    pub max_port: u16,
    /// Whether peers on loopback addresses may be reached (tests and benchmarks only).
    pub allow_loopback_peers: bool,
    /// Peer addresses or CIDR ranges allowed even inside the default-denied classes.
    #[serde(deserialize_with = "ip_nets")]
    pub allowed_peer_ip: Vec<IpNet>,
    /// Peer addresses or CIDR ranges always refused.
    #[serde(deserialize_with = "ip_nets")]
    pub denied_peer_ip: Vec<IpNet>,
    /// Allocation lifetime when the client asks for less or nothing.
    #[serde(deserialize_with = "human_duration")]
    pub allocation_lifetime: Duration,
    /// The longest lifetime one Allocate or Refresh may grant.
    #[serde(deserialize_with = "human_duration")]
    pub max_allocation_lifetime: Duration,
    /// Permission lifetime.
    #[serde(deserialize_with = "human_duration")]
    pub permission_lifetime: Duration,
    /// Channel binding lifetime.
    #[serde(deserialize_with = "human_duration")]
    pub channel_lifetime: Duration,
    /// Allocations one user may hold at once; 0 means no limit.
    pub user_quota: usize,
    /// Allocations the server holds at once; 0 means no limit.
    pub total_quota: usize,
    /// Allocations (and EVEN-PORT reservations) one client address holds at once, whatever
    /// user it authenticates as: an IPv4 address or an IPv6 /64. 486 past it; 0: no limit.
    pub max_allocations_per_ip: usize,
    /// Permissions one allocation may hold (508 past it); 0 means no limit.
    pub max_permissions_per_allocation: usize,
    /// Channels one allocation may bind (508 past it); 0 means no limit.
    pub max_channels_per_allocation: usize,
    /// Bytes per second one allocation may relay in each direction (coturn's max-bps);
    /// beyond it packets are dropped. 0 means no limit.
    pub max_bps: u64,
    /// Bytes per second the server relays in each direction over all allocations (coturn's
    /// bps-capacity); beyond it packets are dropped. 0 means no limit.
    pub bps_capacity: u64,
    /// Where a draining or full server sends new allocations (300 Try Alternate); else 508.
    pub alternate_server: Option<SocketAddr>,
    /// Whether the kernel relays bound UDP channels by itself (`"auto"` or `"off"`).
    pub offload: OffloadMode,
    /// RFC 8016 mobility (coturn's `mobility`): a client may keep its allocation when its
    /// address changes, with the MOBILITY-TICKET it was given. Off: such requests get 405.
    pub mobility: bool,
    /// Whether clients may allocate TCP relays (RFC 6062; coturn allows them unless
    /// `no-tcp-relay`). Reloadable: off, a TCP Allocate gets 442; live ones stay.
    pub tcp_allocations: bool,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            relay_ip: Vec::new(),
            external_ip: Vec::new(),
            min_port: 49152,
            max_port: 65535,
            allow_loopback_peers: false,
            allowed_peer_ip: Vec::new(),
            denied_peer_ip: Vec::new(),
            allocation_lifetime: Duration::from_secs(600),
            max_allocation_lifetime: Duration::from_secs(3600),
            permission_lifetime: Duration::from_secs(300),
            channel_lifetime: Duration::from_secs(600),
            user_quota: 0,
            total_quota: 0,
            max_allocations_per_ip: DEFAULT_MAX_ALLOCATIONS_PER_IP,
            max_permissions_per_allocation: DEFAULT_MAX_PERMISSIONS_PER_ALLOCATION,
            max_channels_per_allocation: DEFAULT_MAX_CHANNELS_PER_ALLOCATION,
            max_bps: 0,
            bps_capacity: 0,
            alternate_server: None,
            offload: OffloadMode::Auto,
            mobility: false,
            tcp_allocations: true,
        }
    }
}

impl RelayConfig {
    /// The rules within `[relay]`; `public` is the first listen address reachable from
    /// other machines, beside which a loopback relay address is useless.
    pub(super) fn validate(&self, public: Option<SocketAddr>) -> Result<(), KeyError> {
        if self.min_port == 0 {
            return Err(KeyError::new("relay.min-port", "must be at least 1"));
        }
        if self.min_port > self.max_port {
            return Err(KeyError::new(
                "relay.min-port",
                format!(
                    "{} is above relay.max-port {}; the range must not be empty",
                    self.min_port, self.max_port
                ),
            ));
        }
        for (key, bps) in [
            ("relay.max-bps", self.max_bps),
            ("relay.bps-capacity", self.bps_capacity),
        ] {
            if bps != 0 && bps < 1000 {
                return Err(KeyError::new(
                    key,
                    "must be 0 (no limit) or at least 1000 bytes per second",
                ));
            }
        }
        for (i, ip) in self.relay_ip.iter().enumerate() {
            if ip.is_unspecified() || ip.is_multicast() {
                return Err(KeyError::new(
                    "relay.relay-ip",
                    format!("{ip} cannot be a relay address; give this machine's address"),
                ));
            }
            if self.relay_ip[..i]
                .iter()
                .any(|o| o.is_ipv4() == ip.is_ipv4())
            {
                return Err(KeyError::new(
                    "relay.relay-ip",
                    "give at most one IPv4 and one IPv6 address",
                ));
            }
        }
        self.external_ips()?;
        let loopback = self.relay_ip.iter().find(|ip| ip.is_loopback());
        if let (Some(ip), Some(public)) = (loopback, public) {
            return Err(KeyError::new(
                "relay.relay-ip",
                format!(
                    "{ip} is loopback, but rturn listens on {public}: clients there would be \
                     handed relay addresses nobody else can reach. Set relay-ip to this \
                     machine's own address (and behind NAT, relay.external-ip to the public \
                     one), or listen on loopback only"
                ),
            ));
        }
        let lifetimes = [
            ("relay.allocation-lifetime", self.allocation_lifetime),
            (
                "relay.max-allocation-lifetime",
                self.max_allocation_lifetime,
            ),
            ("relay.permission-lifetime", self.permission_lifetime),
            ("relay.channel-lifetime", self.channel_lifetime),
        ];
        for (key, value) in lifetimes {
            if value < Duration::from_secs(1) {
                return Err(KeyError::new(key, "must be at least \"1s\""));
            }
        }
        if self.max_allocation_lifetime < self.allocation_lifetime {
            return Err(KeyError::new(
                "relay.max-allocation-lifetime",
                "must not be shorter than relay.allocation-lifetime",
            ));
        }
        Ok(())
    }

    /// Resolves `external-ip` against `relay-ip`: (bound relay IP, advertised IP) pairs.
    pub(super) fn external_ips(&self) -> Result<Vec<(IpAddr, IpAddr)>, KeyError> {
        let key = "relay.external-ip";
        let mut pairs: Vec<(IpAddr, IpAddr)> = Vec::new();
        for entry in &self.external_ip {
            let (public, private) = match entry.split_once('/') {
                Some((p, q)) => (p, Some(q)),
                None => (entry.as_str(), None),
            };
            let bad = |what: &str| KeyError::new(key, format!("{entry:?}: {what}"));
            let public: IpAddr = public
                .trim()
                .parse()
                .map_err(|_| bad("not an IP address"))?;
            if public.is_unspecified() {
                return Err(bad(
                    "cannot be advertised to clients; give the public address",
                ));
            }
            let bind = match private {
                Some(p) => p
                    .trim()
                    .parse()
                    .map_err(|_| bad("private part is not an IP address"))?,
                None => self
                    .relay_ip
                    .iter()
                    .copied()
                    .find(|r| r.is_ipv4() == public.is_ipv4())
                    .ok_or_else(|| bad("no relay.relay-ip of the same IP family"))?,
            };
            if !self.relay_ip.contains(&bind) {
                return Err(bad("the private address must be one of relay.relay-ip"));
            }
            if bind.is_ipv4() != public.is_ipv4() {
                return Err(bad(
                    "public and private addresses must be the same IP family",
                ));
            }
            if pairs.iter().any(|(b, _)| *b == bind) {
                return Err(bad("relay address given twice"));
            }
            pairs.push((bind, public));
        }
        Ok(pairs)
    }
}

#[cfg(test)]
mod tests;
