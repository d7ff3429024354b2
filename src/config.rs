//! The configuration file: TOML with kebab-case keys, unknown keys rejected by name.
//!
//! Parsing ([`Config::from_toml`]) is separate from reading ([`Config::read`]) so tests and
//! `--check-config` go through exactly the same code. Every error names the key that is wrong
//! (`listen.udp`, `auth.users.alice`) and what is wrong with it; [`Config::read`] adds the file.
//! Rules that span several keys live in [`Config::validate`], which `from_toml` always runs.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

mod host;

pub use host::read_error;

/// Where rturn looks for its configuration when `-c` is not given.
pub const DEFAULT_PATH: &str = "/etc/rturn/turnserver.toml";
/// The STUN/TURN port of RFC 8489 §9, used by the default listen addresses.
pub const DEFAULT_PORT: u16 = 3478;
/// The password the shipped `conf/turnserver.toml` carries; refused on public addresses.
pub const PLACEHOLDER_SECRET: &str = "change-me";
/// The shortest secret rturn accepts where it guards anything reachable from elsewhere:
/// `token-secret`, `admin.token` and `nonce-secret` always, `static-auth-secret` and user
/// passwords once a listener is not on loopback (a REST secret or password is guessed
/// offline from one captured request).
pub const MIN_SECRET_LEN: usize = 16;
/// How long a TCP connection may stay silent before it is closed.
pub const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How many client TCP connections are served at once; more wait in the kernel backlog.
pub const DEFAULT_MAX_TCP_CONNECTIONS: usize = 10_000;
/// Client TCP/TLS connections one IP address may hold at once. Networks that block UDP put
/// every user of an office or campus on TURN over TCP/TLS from one address.
pub const DEFAULT_MAX_TCP_CONNECTIONS_PER_IP: usize = 1000;
/// Unauthenticated requests (Binding, and TURN requests answered without valid credentials)
/// answered per second per source address and worker. A browser starting a call sends about
/// 10 to 20 (a Binding and an unauthenticated Allocate per local interface and server URL,
/// with retransmissions), so this sustains 10 to 20 call setups a second from one address.
pub const DEFAULT_UNAUTHENTICATED_RATE: u32 = 200;
/// How many unauthenticated requests one source address may send at once: about 50 to 100
/// browsers behind one NAT starting calls at the same moment.
pub const DEFAULT_UNAUTHENTICATED_BURST: u32 = 1000;
/// How long a TCP/TLS connection may live without holding an allocation.
pub const DEFAULT_TCP_ALLOCATION_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes waiting to be written to one connection (`server.max-tcp-queued-bytes`,
/// `signal.max-queued-bytes`): 16 full-size signaling messages, or a second of 8 Mbit/s
/// relayed to a TCP client; a client that lets more pile up is not reading, and is closed.
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 1024 * 1024;
/// The smallest `server.max-tcp-queued-bytes`: one largest TURN frame and a little more.
pub const MIN_TCP_QUEUED_BYTES: usize = 65_536;
/// How long a client may take to finish the TLS handshake.
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request head on the HTTP listeners: the first one
/// counted from accept (after the TLS handshake), later ones from their first byte.
pub const DEFAULT_HTTP_HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an HTTP connection may wait for its next request (keep-alive) before it is closed.
pub const DEFAULT_HTTP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections the HTTP and HTTPS listeners hold at once, WebSockets included: above the
/// default `[signal] max-connections`, so a full signaling server still serves its pages.
pub const DEFAULT_MAX_HTTP_CONNECTIONS: usize = 20_000;
/// HTTP and HTTPS connections (WebSockets included) one IP address may hold at once: above
/// the default `[signal] max-connections-per-ip` plus a browser's parallel page loads.
pub const DEFAULT_MAX_HTTP_CONNECTIONS_PER_IP: usize = 500;
/// Permissions (peer IPs) one allocation may hold; a browser uses one per remote candidate
/// address, a handful per call.
pub const DEFAULT_MAX_PERMISSIONS_PER_ALLOCATION: usize = 128;
/// Default `[relay] max-allocations-per-ip`: room for an office behind one NAT address (a
/// browser call takes one to three allocations, one per TURN URL), while one address alone
/// can hold only a sliver of the default 16 384-port relay range.
pub const DEFAULT_MAX_ALLOCATIONS_PER_IP: usize = 256;
/// Channels one allocation may bind; a browser binds one per remote candidate pair in use.
pub const DEFAULT_MAX_CHANNELS_PER_ALLOCATION: usize = 128;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// The long-term credential realm (RFC 8489 §9.2); required.
    pub realm: String,
    /// Process-wide settings.
    #[serde(default)]
    pub server: ServerConfig,
    /// Addresses to listen on.
    #[serde(default)]
    pub listen: ListenConfig,
    /// Relay addresses and peer rules for TURN.
    #[serde(default)]
    pub relay: RelayConfig,
    /// Credentials.
    #[serde(default)]
    pub auth: AuthConfig,
    /// The WebSocket signaling relay.
    #[serde(default)]
    pub signal: SignalConfig,
    /// What `/api/ice-servers` and the signaling `peers` reply hand out.
    #[serde(default)]
    pub ice: IceConfig,
    /// The certificate for `listen.tls` and `listen.https`.
    pub tls: Option<TlsConfig>,
    /// The admin API (off unless a token is set).
    #[serde(default)]
    pub admin: AdminConfig,
    /// Signaling rooms shared with other nodes over Redis (off unless `redis` is set).
    #[serde(default)]
    pub cluster: ClusterConfig,
}

/// `[cluster]`: signaling rooms across nodes through one Redis. Off unless `redis` is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ClusterConfig {
    /// `redis://[user:password@]host:port[/db]` or `unix:///path/redis.sock`; unset: rooms are
    /// this node's alone.
    pub redis: Option<String>,
    /// This node's name in logs, `/healthz` and Redis; default: the host name.
    pub node_id: Option<String>,
    /// A node silent this long is dead: its peers leave their rooms on every other node.
    #[serde(default = "default_presence_ttl", deserialize_with = "human_duration")]
    pub presence_ttl: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            redis: None,
            node_id: None,
            presence_ttl: default_presence_ttl(),
        }
    }
}

/// Whether `id` can name a node in Redis: 1 to 64 printable ASCII characters, no "/" (which
/// separates the node-id from the session, `wire::session_name`).
pub fn valid_node_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.chars().all(|c| c.is_ascii_graphic() && c != '/')
}

fn default_presence_ttl() -> Duration {
    Duration::from_secs(10)
}

/// `[admin]`: the `/admin` API. Off unless `token` is set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AdminConfig {
    /// Bearer token every `/admin` request must carry; unset: no admin API at all.
    pub token: Option<String>,
    /// Serve `/admin` on this address instead of the HTTP listener (`/metrics` stays there).
    pub listen: Option<SocketAddr>,
}

/// `[tls]`: one certificate for STUN/TURN over TLS and for HTTPS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TlsConfig {
    /// PEM file with the certificate and its chain, leaf first (Let's Encrypt's fullchain.pem).
    pub cert: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// `[signal]`: the WebSocket signaling relay on the HTTP listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SignalConfig {
    /// A WebSocket Ping is sent this often.
    #[serde(
        default = "default_heartbeat_interval",
        deserialize_with = "human_duration"
    )]
    pub heartbeat_interval: Duration,
    /// A client silent for this long is dropped and announced with `remove_peer`.
    #[serde(
        default = "default_heartbeat_timeout",
        deserialize_with = "human_duration"
    )]
    pub heartbeat_timeout: Duration,
    /// Peers one room holds; the next joiner gets `room_full`.
    #[serde(default = "default_max_peers_per_room")]
    pub max_peers_per_room: usize,
    /// Largest text message in bytes; larger ones get `too_large`.
    #[serde(default = "default_max_message_size")]
    pub max_message_size: usize,
    /// Bytes waiting to be written to one connection; a client that stops reading and lets
    /// more pile up is closed (WebSocket close 1008).
    #[serde(default = "default_max_queued_bytes")]
    pub max_queued_bytes: usize,
    /// Messages per second one connection may send (burst of the same size); past it,
    /// `rate_limited`.
    #[serde(default = "default_messages_per_second")]
    pub messages_per_second: u32,
    /// Joins per minute from one client address (an IPv6 /64), over all its connections,
    /// in bursts of the same size; past it, `rate_limited`.
    #[serde(default = "default_joins_per_minute_per_ip")]
    pub joins_per_minute_per_ip: u32,
    /// WebSocket connections served at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// WebSocket connections one IP address (an IPv6 /64) may hold at once.
    #[serde(default = "default_max_connections_per_ip")]
    pub max_connections_per_ip: usize,
    /// Origins allowed to connect (`https://app.example.org`); empty allows any.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// When set, `/ws` and `/api/ice-servers` need `?token=EXPIRY:MAC` (see `rturn token`).
    pub token_secret: Option<String>,
}

/// `[ice]`: the ICE servers handed to browsers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct IceConfig {
    /// Host name or address in the `stun:`/`turn:` URLs. Default: the IPv4 `external-ip`,
    /// else the first concrete UDP/TCP listen address.
    pub public_host: Option<String>,
    /// Lifetime of the TURN REST credentials handed out.
    #[serde(
        default = "default_credential_ttl",
        deserialize_with = "human_duration"
    )]
    pub credential_ttl: Duration,
}

/// `[server]`: process-wide settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServerConfig {
    /// Data-path worker threads, each with its own SO_REUSEPORT socket per UDP address.
    /// Absent means one per core.
    pub workers: Option<usize>,
    /// A TCP client connection that sends nothing for this long is closed.
    #[serde(
        default = "default_tcp_idle_timeout",
        deserialize_with = "human_duration"
    )]
    pub tcp_idle_timeout: Duration,
    /// Client TCP connections served at once.
    #[serde(default = "default_max_tcp_connections")]
    pub max_tcp_connections: usize,
    /// Client TCP/TLS connections one IP address may hold at once; more are closed at
    /// accept. 0 means no limit.
    #[serde(default = "default_max_tcp_connections_per_ip")]
    pub max_tcp_connections_per_ip: usize,
    /// A TCP/TLS connection that holds no allocation this long after it was accepted (or
    /// after its allocation ended) is closed, however chatty it is.
    #[serde(
        default = "default_tcp_allocation_timeout",
        deserialize_with = "human_duration"
    )]
    pub tcp_allocation_timeout: Duration,
    /// Bytes (answers and relayed data) waiting to be written to one TCP/TLS client; a
    /// client that stops reading and lets more pile up is closed.
    #[serde(default = "default_max_tcp_queued_bytes")]
    pub max_tcp_queued_bytes: usize,
    /// A TLS client that has not finished its handshake this long after connecting is closed.
    #[serde(
        default = "default_tls_handshake_timeout",
        deserialize_with = "human_duration"
    )]
    pub tls_handshake_timeout: Duration,
    /// A request head on the HTTP listeners that is not complete this long after it started
    /// (the first: after accept) closes the connection.
    #[serde(
        default = "default_http_header_timeout",
        deserialize_with = "human_duration"
    )]
    pub http_header_timeout: Duration,
    /// An HTTP connection that waits this long for its next request is closed.
    #[serde(
        default = "default_http_idle_timeout",
        deserialize_with = "human_duration"
    )]
    pub http_idle_timeout: Duration,
    /// Connections the HTTP and HTTPS listeners hold at once, WebSockets included; more are
    /// closed at accept.
    #[serde(default = "default_max_http_connections")]
    pub max_http_connections: usize,
    /// HTTP and HTTPS connections one IP address may hold at once, WebSockets included; more
    /// are closed at accept. 0 means no limit.
    #[serde(default = "default_max_http_connections_per_ip")]
    pub max_http_connections_per_ip: usize,
    /// Unauthenticated requests answered per second per source address (IPv6: per /64) and
    /// worker; past the bucket nothing is answered. 0 turns the limit off.
    #[serde(default = "default_unauthenticated_rate")]
    pub unauthenticated_rate: u32,
    /// The token bucket's size: how many unauthenticated requests one source may send at once.
    #[serde(default = "default_unauthenticated_burst")]
    pub unauthenticated_burst: u32,
    /// After SIGUSR1 (drain), rturn exits when the last allocation ends or this much time
    /// has passed.
    #[serde(default = "default_drain_timeout", deserialize_with = "human_duration")]
    pub drain_timeout: Duration,
}

/// `[listen]`: where clients reach rturn.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ListenConfig {
    /// STUN/TURN over UDP.
    #[serde(default = "default_listen")]
    pub udp: Vec<SocketAddr>,
    /// STUN/TURN over TCP.
    #[serde(default = "default_listen")]
    pub tcp: Vec<SocketAddr>,
    /// STUN/TURN over TLS (`turns:`); needs `[tls]`.
    #[serde(default)]
    pub tls: Vec<SocketAddr>,
    /// The HTTP listener's routes over HTTPS (`wss://` signaling); needs `[tls]`.
    pub https: Option<SocketAddr>,
    /// Signaling, pages and the ICE-servers API over HTTP; unset: no HTTP listener.
    pub http: Option<SocketAddr>,
}

/// `[relay]`: relay addresses, lifetimes, quotas and which peers may be reached.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RelayConfig {
    /// Addresses relay sockets bind to: at most one IPv4 and one IPv6.
    #[serde(default, deserialize_with = "one_or_many")]
    pub relay_ip: Vec<IpAddr>,
    /// Addresses advertised in XOR-RELAYED-ADDRESS behind 1:1 NAT: `"PUBLIC"` (for the
    /// relay-ip of the same family) or coturn's `"PUBLIC/PRIVATE"` (PRIVATE is a relay-ip).
    #[serde(default, deserialize_with = "one_or_many")]
    pub external_ip: Vec<String>,
    /// Lowest relay port.
    #[serde(default = "default_min_port")]
    pub min_port: u16,
    /// Highest relay port.
    #[serde(default = "default_max_port")]
    pub max_port: u16,
    /// Whether peers on loopback addresses may be reached (tests and benchmarks only).
    #[serde(default)]
    pub allow_loopback_peers: bool,
    /// Peer addresses or CIDR ranges allowed even inside the default-denied classes.
    #[serde(default, deserialize_with = "ip_nets")]
    pub allowed_peer_ip: Vec<IpNet>,
    /// Peer addresses or CIDR ranges always refused.
    #[serde(default, deserialize_with = "ip_nets")]
    pub denied_peer_ip: Vec<IpNet>,
    /// Allocation lifetime when the client asks for less or nothing.
    #[serde(
        default = "default_allocation_lifetime",
        deserialize_with = "human_duration"
    )]
    pub allocation_lifetime: Duration,
    /// The longest lifetime one Allocate or Refresh may grant.
    #[serde(
        default = "default_max_allocation_lifetime",
        deserialize_with = "human_duration"
    )]
    pub max_allocation_lifetime: Duration,
    /// Permission lifetime.
    #[serde(
        default = "default_permission_lifetime",
        deserialize_with = "human_duration"
    )]
    pub permission_lifetime: Duration,
    /// Channel binding lifetime.
    #[serde(
        default = "default_channel_lifetime",
        deserialize_with = "human_duration"
    )]
    pub channel_lifetime: Duration,
    /// Allocations one user may hold at once; 0 means no limit.
    #[serde(default)]
    pub user_quota: usize,
    /// Allocations the server holds at once; 0 means no limit.
    #[serde(default)]
    pub total_quota: usize,
    /// Allocations (and EVEN-PORT reservations) one client address holds at once, whatever
    /// user it authenticates as: an IPv4 address or an IPv6 /64. 486 past it; 0: no limit.
    #[serde(default = "default_max_allocations_per_ip")]
    pub max_allocations_per_ip: usize,
    /// Permissions one allocation may hold (508 past it); 0 means no limit.
    #[serde(default = "default_max_permissions_per_allocation")]
    pub max_permissions_per_allocation: usize,
    /// Channels one allocation may bind (508 past it); 0 means no limit.
    #[serde(default = "default_max_channels_per_allocation")]
    pub max_channels_per_allocation: usize,
    /// Bytes per second one allocation may relay in each direction (coturn's max-bps);
    /// beyond it packets are dropped. 0 means no limit.
    #[serde(default)]
    pub max_bps: u64,
    /// Bytes per second the server relays in each direction over all allocations (coturn's
    /// bps-capacity); beyond it packets are dropped. 0 means no limit.
    #[serde(default)]
    pub bps_capacity: u64,
    /// Where a draining or full server sends new allocations (300 Try Alternate); else 508.
    pub alternate_server: Option<SocketAddr>,
}

/// `[auth]`: long-term credentials and TURN REST API secrets.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AuthConfig {
    /// Static users: name to password, or to a coturn-style `0x`-prefixed MD5 key.
    #[serde(default)]
    pub users: BTreeMap<String, String>,
    /// TURN REST API shared secrets; the first one mints, all of them verify.
    #[serde(default, deserialize_with = "one_or_many")]
    pub static_auth_secret: Vec<String>,
    /// Separates the expiry from the user name in a REST username ("1700000000:alice").
    #[serde(default = "default_rest_separator")]
    pub rest_separator: char,
    /// How long a nonce stays valid before the client gets 438 Stale Nonce.
    #[serde(
        default = "default_nonce_lifetime",
        deserialize_with = "human_duration"
    )]
    pub nonce_lifetime: Duration,
    /// Key for the stateless nonces; nodes sharing it accept each other's nonces.
    /// Absent: random at each start.
    pub nonce_secret: Option<String>,
}

fn default_heartbeat_interval() -> Duration {
    Duration::from_secs(25)
}
fn default_heartbeat_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_max_peers_per_room() -> usize {
    16
}
fn default_max_message_size() -> usize {
    64 * 1024
}
fn default_max_queued_bytes() -> usize {
    DEFAULT_MAX_QUEUED_BYTES
}
fn default_messages_per_second() -> u32 {
    50
}
fn default_joins_per_minute_per_ip() -> u32 {
    60
}
fn default_max_connections() -> usize {
    10_000
}
fn default_max_connections_per_ip() -> usize {
    100
}
fn default_credential_ttl() -> Duration {
    Duration::from_secs(3600)
}

impl Default for SignalConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: default_heartbeat_interval(),
            heartbeat_timeout: default_heartbeat_timeout(),
            max_peers_per_room: default_max_peers_per_room(),
            max_message_size: default_max_message_size(),
            max_queued_bytes: default_max_queued_bytes(),
            messages_per_second: default_messages_per_second(),
            joins_per_minute_per_ip: default_joins_per_minute_per_ip(),
            max_connections: default_max_connections(),
            max_connections_per_ip: default_max_connections_per_ip(),
            allowed_origins: Vec::new(),
            token_secret: None,
        }
    }
}

impl Default for IceConfig {
    fn default() -> Self {
        Self {
            public_host: None,
            credential_ttl: default_credential_ttl(),
        }
    }
}

fn default_tcp_idle_timeout() -> Duration {
    DEFAULT_TCP_IDLE_TIMEOUT
}
fn default_drain_timeout() -> Duration {
    Duration::from_secs(3600)
}
fn default_max_tcp_connections() -> usize {
    DEFAULT_MAX_TCP_CONNECTIONS
}
fn default_max_tcp_connections_per_ip() -> usize {
    DEFAULT_MAX_TCP_CONNECTIONS_PER_IP
}
fn default_tcp_allocation_timeout() -> Duration {
    DEFAULT_TCP_ALLOCATION_TIMEOUT
}
fn default_max_tcp_queued_bytes() -> usize {
    DEFAULT_MAX_QUEUED_BYTES
}
fn default_tls_handshake_timeout() -> Duration {
    DEFAULT_TLS_HANDSHAKE_TIMEOUT
}
fn default_unauthenticated_rate() -> u32 {
    DEFAULT_UNAUTHENTICATED_RATE
}
fn default_unauthenticated_burst() -> u32 {
    DEFAULT_UNAUTHENTICATED_BURST
}
fn default_max_permissions_per_allocation() -> usize {
    DEFAULT_MAX_PERMISSIONS_PER_ALLOCATION
}
fn default_max_allocations_per_ip() -> usize {
    DEFAULT_MAX_ALLOCATIONS_PER_IP
}
fn default_max_channels_per_allocation() -> usize {
    DEFAULT_MAX_CHANNELS_PER_ALLOCATION
}
fn default_http_header_timeout() -> Duration {
    DEFAULT_HTTP_HEADER_TIMEOUT
}
fn default_http_idle_timeout() -> Duration {
    DEFAULT_HTTP_IDLE_TIMEOUT
}
fn default_max_http_connections() -> usize {
    DEFAULT_MAX_HTTP_CONNECTIONS
}
fn default_max_http_connections_per_ip() -> usize {
    DEFAULT_MAX_HTTP_CONNECTIONS_PER_IP
}
fn default_listen() -> Vec<SocketAddr> {
    vec![SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT))]
}
fn default_allocation_lifetime() -> Duration {
    Duration::from_secs(600)
}
fn default_max_allocation_lifetime() -> Duration {
    Duration::from_secs(3600)
}
fn default_permission_lifetime() -> Duration {
    Duration::from_secs(300)
}
fn default_channel_lifetime() -> Duration {
    Duration::from_secs(600)
}
fn default_rest_separator() -> char {
    ':'
}
fn default_nonce_lifetime() -> Duration {
    Duration::from_secs(600)
}
fn default_min_port() -> u16 {
    49152
}
fn default_max_port() -> u16 {
    65535
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            workers: None,
            tcp_idle_timeout: DEFAULT_TCP_IDLE_TIMEOUT,
            max_tcp_connections: DEFAULT_MAX_TCP_CONNECTIONS,
            max_tcp_connections_per_ip: DEFAULT_MAX_TCP_CONNECTIONS_PER_IP,
            tcp_allocation_timeout: DEFAULT_TCP_ALLOCATION_TIMEOUT,
            max_tcp_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
            tls_handshake_timeout: DEFAULT_TLS_HANDSHAKE_TIMEOUT,
            http_header_timeout: DEFAULT_HTTP_HEADER_TIMEOUT,
            http_idle_timeout: DEFAULT_HTTP_IDLE_TIMEOUT,
            max_http_connections: DEFAULT_MAX_HTTP_CONNECTIONS,
            max_http_connections_per_ip: DEFAULT_MAX_HTTP_CONNECTIONS_PER_IP,
            unauthenticated_rate: DEFAULT_UNAUTHENTICATED_RATE,
            unauthenticated_burst: DEFAULT_UNAUTHENTICATED_BURST,
            drain_timeout: default_drain_timeout(),
        }
    }
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self {
            udp: default_listen(),
            tcp: default_listen(),
            tls: Vec::new(),
            https: None,
            http: None,
        }
    }
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            relay_ip: Vec::new(),
            external_ip: Vec::new(),
            min_port: default_min_port(),
            max_port: default_max_port(),
            allow_loopback_peers: false,
            allowed_peer_ip: Vec::new(),
            denied_peer_ip: Vec::new(),
            allocation_lifetime: default_allocation_lifetime(),
            max_allocation_lifetime: default_max_allocation_lifetime(),
            permission_lifetime: default_permission_lifetime(),
            channel_lifetime: default_channel_lifetime(),
            user_quota: 0,
            total_quota: 0,
            max_allocations_per_ip: DEFAULT_MAX_ALLOCATIONS_PER_IP,
            max_permissions_per_allocation: DEFAULT_MAX_PERMISSIONS_PER_ALLOCATION,
            max_channels_per_allocation: DEFAULT_MAX_CHANNELS_PER_ALLOCATION,
            max_bps: 0,
            bps_capacity: 0,
            alternate_server: None,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            users: BTreeMap::new(),
            static_auth_secret: Vec::new(),
            rest_separator: default_rest_separator(),
            nonce_lifetime: default_nonce_lifetime(),
            nonce_secret: None,
        }
    }
}

/// Durations are human strings such as `"30s"`, `"10m"` or `"1h 30m"`.
/// The longest duration any key takes. Every duration is added to the clock somewhere
/// (`Instant + Duration` panics on overflow), so a typo such as "600000000000y" must be a
/// config error, not a crash at the first allocation.
const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

fn human_duration<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(de)?;
    let duration = humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "invalid duration {text:?}: {e} (write it like \"30s\", \"10m\" or \"1h\")"
        ))
    })?;
    if duration > MAX_DURATION {
        return Err(serde::de::Error::custom(format!(
            "duration {text:?} is longer than 10 years (\"3650d\")"
        )));
    }
    Ok(duration)
}

/// A list key that also takes a single value: `key = "a"` means `key = ["a"]`.
fn one_or_many<'de, D, T>(de: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: fmt::Display,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let items = match OneOrMany::deserialize(de) {
        Ok(OneOrMany::One(s)) => vec![s],
        Ok(OneOrMany::Many(v)) => v,
        Err(_) => {
            return Err(serde::de::Error::custom(
                "expected a string or a list of strings",
            ));
        }
    };
    items
        .iter()
        .map(|item| {
            item.parse::<T>()
                .map_err(|e| serde::de::Error::custom(format!("{item:?}: {e}")))
        })
        .collect()
}

/// Addresses or CIDR ranges: "10.0.0.1" means "10.0.0.1/32".
fn ip_nets<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<IpNet>, D::Error> {
    let items = Vec::<String>::deserialize(de)?;
    items
        .iter()
        .map(|item| {
            item.parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    serde::de::Error::custom(format!(
                        "{item:?} is not an address or CIDR range (e.g. \"10.0.0.0/8\")"
                    ))
                })
        })
        .collect()
}

/// What is wrong with a configuration, and which key it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    /// Dotted key path, e.g. `listen.udp` or `auth.users.alice`; empty for the whole file.
    pub key: String,
    /// What is wrong, and where possible how to fix it.
    pub message: String,
    /// 1-based line in the TOML text, when known.
    pub line: Option<usize>,
}

impl KeyError {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
            line: None,
        }
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)?;
        if let Some(line) = self.line {
            write!(f, " (line {line})")?;
        }
        Ok(())
    }
}

impl std::error::Error for KeyError {}

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("{}: cannot read the file: {}", path.display(), read_error(path, error))]
    Read {
        /// The file.
        path: PathBuf,
        /// Why (in the message, not a chained source: printed once).
        error: std::io::Error,
    },
    /// The file was read but a key is wrong.
    #[error("{}: {error}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Which key and what is wrong.
        error: KeyError,
    },
}

impl Config {
    /// Reads, parses and validates the file at `path`.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        Self::from_toml(&text).map_err(|error| ConfigError::Invalid {
            path: path.to_owned(),
            error,
        })
    }

    /// Parses and validates TOML text.
    pub fn from_toml(text: &str) -> Result<Self, KeyError> {
        let de = toml::Deserializer::parse(text).map_err(|e| toml_error(text, "", &e))?;
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            toml_error(text, if path == "." { "" } else { &path }, e.inner())
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Worker threads for the data path: the configured count, or one per core.
    pub fn workers(&self) -> NonZeroUsize {
        self.server
            .workers
            .and_then(NonZeroUsize::new)
            .or_else(|| std::thread::available_parallelism().ok())
            .unwrap_or(NonZeroUsize::MIN)
    }

    /// Cross-field rules that serde cannot express.
    pub fn validate(&self) -> Result<(), KeyError> {
        self.validate_realm()?;
        self.validate_server()?;
        self.validate_listen()?;
        self.validate_relay()?;
        self.validate_auth()?;
        self.validate_signal()?;
        self.validate_cluster()?;
        let has_credentials =
            !self.auth.users.is_empty() || !self.auth.static_auth_secret.is_empty();
        if has_credentials && self.relay.relay_ip.is_empty() {
            return Err(KeyError::new(
                "relay.relay-ip",
                "required once [auth] has users or secrets: the address relay sockets bind to",
            ));
        }
        Ok(())
    }

    fn validate_cluster(&self) -> Result<(), KeyError> {
        let cluster = &self.cluster;
        if let Some(url) = &cluster.redis {
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
        if cluster
            .node_id
            .as_deref()
            .is_some_and(|id| !valid_node_id(id))
        {
            return Err(KeyError::new(
                "cluster.node-id",
                "must be 1 to 64 printable ASCII characters without spaces or \"/\" (e.g. \"turn-1\")",
            ));
        }
        if cluster.presence_ttl < Duration::from_secs(1) {
            return Err(KeyError::new(
                "cluster.presence-ttl",
                "must be at least \"1s\" (a node refreshes its presence four times per TTL)",
            ));
        }
        Ok(())
    }

    fn validate_realm(&self) -> Result<(), KeyError> {
        // RFC 8489 §14.9: fewer than 128 characters, and it travels in every 401.
        if self.realm.trim().is_empty() {
            return Err(KeyError::new(
                "realm",
                "must not be empty (e.g. \"example.org\")",
            ));
        }
        if self.realm.chars().count() >= 128 || self.realm.chars().any(char::is_control) {
            return Err(KeyError::new(
                "realm",
                "must be fewer than 128 printable characters (RFC 8489 §14.9)",
            ));
        }
        Ok(())
    }

    fn validate_server(&self) -> Result<(), KeyError> {
        match self.server.workers {
            Some(0) => {
                return Err(KeyError::new(
                    "server.workers",
                    "must be at least 1; leave it out to use one worker per core",
                ));
            }
            Some(n) if n > 1024 => {
                return Err(KeyError::new("server.workers", "must be at most 1024"));
            }
            _ => {}
        }
        if self.server.max_tcp_connections == 0 {
            return Err(KeyError::new(
                "server.max-tcp-connections",
                "must be at least 1",
            ));
        }
        if self.server.tcp_idle_timeout < Duration::from_secs(1) {
            return Err(KeyError::new(
                "server.tcp-idle-timeout",
                "must be at least \"1s\"",
            ));
        }
        if self.server.tcp_allocation_timeout < Duration::from_secs(1) {
            return Err(KeyError::new(
                "server.tcp-allocation-timeout",
                "must be at least \"1s\" (a client needs a few round trips to allocate)",
            ));
        }
        if self.server.max_tcp_queued_bytes < MIN_TCP_QUEUED_BYTES {
            return Err(KeyError::new(
                "server.max-tcp-queued-bytes",
                format!("must be at least {MIN_TCP_QUEUED_BYTES} (one largest TURN frame)"),
            ));
        }
        if self.server.tls_handshake_timeout < Duration::from_millis(100) {
            return Err(KeyError::new(
                "server.tls-handshake-timeout",
                "must be at least \"100ms\"",
            ));
        }
        for (key, timeout) in [
            (
                "server.http-header-timeout",
                self.server.http_header_timeout,
            ),
            ("server.http-idle-timeout", self.server.http_idle_timeout),
        ] {
            if timeout < Duration::from_millis(100) {
                return Err(KeyError::new(key, "must be at least \"100ms\""));
            }
        }
        if self.server.max_http_connections == 0 {
            return Err(KeyError::new(
                "server.max-http-connections",
                "must be at least 1",
            ));
        }
        if self.server.unauthenticated_rate > 0 && self.server.unauthenticated_burst == 0 {
            return Err(KeyError::new(
                "server.unauthenticated-burst",
                "must be at least 1 while server.unauthenticated-rate is on (0 turns the limit off)",
            ));
        }
        Ok(())
    }

    fn validate_listen(&self) -> Result<(), KeyError> {
        let listen = &self.listen;
        if listen.udp.is_empty() && listen.tcp.is_empty() {
            return Err(KeyError::new(
                "listen",
                "nothing to listen on: give at least one address in listen.udp or listen.tcp",
            ));
        }
        for (key, addrs) in [("listen.udp", &listen.udp), ("listen.tcp", &listen.tcp)] {
            for (i, addr) in addrs.iter().enumerate() {
                if addrs[..i].contains(addr) {
                    return Err(KeyError::new(key, format!("{addr} is listed twice")));
                }
            }
        }
        if self.tls.is_none() {
            if !listen.tls.is_empty() {
                return Err(KeyError::new(
                    "listen.tls",
                    "needs a certificate: add [tls] with cert and key",
                ));
            }
            if listen.https.is_some() {
                return Err(KeyError::new(
                    "listen.https",
                    "needs a certificate: add [tls] with cert and key",
                ));
            }
        }
        for (i, addr) in listen.tls.iter().enumerate() {
            let taken = listen.tls[..i].contains(addr) || listen.tcp.contains(addr);
            if taken && addr.port() != 0 {
                return Err(KeyError::new(
                    "listen.tls",
                    format!("{addr} is listed twice (in listen.tcp or listen.tls)"),
                ));
            }
        }
        Ok(())
    }

    fn validate_relay(&self) -> Result<(), KeyError> {
        let relay = &self.relay;
        if relay.min_port == 0 {
            return Err(KeyError::new("relay.min-port", "must be at least 1"));
        }
        if relay.min_port > relay.max_port {
            return Err(KeyError::new(
                "relay.min-port",
                format!(
                    "{} is above relay.max-port {}; the range must not be empty",
                    relay.min_port, relay.max_port
                ),
            ));
        }
        for (key, bps) in [
            ("relay.max-bps", relay.max_bps),
            ("relay.bps-capacity", relay.bps_capacity),
        ] {
            if bps != 0 && bps < 1000 {
                return Err(KeyError::new(
                    key,
                    "must be 0 (no limit) or at least 1000 bytes per second",
                ));
            }
        }
        for (i, ip) in relay.relay_ip.iter().enumerate() {
            if ip.is_unspecified() || ip.is_multicast() {
                return Err(KeyError::new(
                    "relay.relay-ip",
                    format!("{ip} cannot be a relay address; give this machine's address"),
                ));
            }
            if relay.relay_ip[..i]
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
        let loopback = relay.relay_ip.iter().find(|ip| ip.is_loopback());
        if let (Some(ip), Some(public)) = (loopback, self.public_listen_address()) {
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
            ("relay.allocation-lifetime", relay.allocation_lifetime),
            (
                "relay.max-allocation-lifetime",
                relay.max_allocation_lifetime,
            ),
            ("relay.permission-lifetime", relay.permission_lifetime),
            ("relay.channel-lifetime", relay.channel_lifetime),
        ];
        for (key, value) in lifetimes {
            if value < Duration::from_secs(1) {
                return Err(KeyError::new(key, "must be at least \"1s\""));
            }
        }
        if relay.max_allocation_lifetime < relay.allocation_lifetime {
            return Err(KeyError::new(
                "relay.max-allocation-lifetime",
                "must not be shorter than relay.allocation-lifetime",
            ));
        }
        Ok(())
    }

    /// Resolves `external-ip` against `relay-ip`: (bound relay IP, advertised IP) pairs.
    pub fn external_ips(&self) -> Result<Vec<(IpAddr, IpAddr)>, KeyError> {
        let key = "relay.external-ip";
        let mut pairs: Vec<(IpAddr, IpAddr)> = Vec::new();
        for entry in &self.relay.external_ip {
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
                    .relay
                    .relay_ip
                    .iter()
                    .copied()
                    .find(|r| r.is_ipv4() == public.is_ipv4())
                    .ok_or_else(|| bad("no relay.relay-ip of the same IP family"))?,
            };
            if !self.relay.relay_ip.contains(&bind) {
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

    fn validate_signal(&self) -> Result<(), KeyError> {
        let signal = &self.signal;
        if signal.heartbeat_interval < Duration::from_millis(100) {
            return Err(KeyError::new(
                "signal.heartbeat-interval",
                "must be at least \"100ms\"",
            ));
        }
        if signal.heartbeat_timeout <= signal.heartbeat_interval {
            return Err(KeyError::new(
                "signal.heartbeat-timeout",
                "must be longer than signal.heartbeat-interval (a client gets several pings)",
            ));
        }
        let at_least_one = [
            ("signal.max-peers-per-room", signal.max_peers_per_room),
            ("signal.max-message-size", signal.max_message_size),
            (
                "signal.messages-per-second",
                signal.messages_per_second as usize,
            ),
            (
                "signal.joins-per-minute-per-ip",
                signal.joins_per_minute_per_ip as usize,
            ),
            ("signal.max-connections", signal.max_connections),
            (
                "signal.max-connections-per-ip",
                signal.max_connections_per_ip,
            ),
        ];
        for (key, value) in at_least_one {
            if value == 0 {
                return Err(KeyError::new(key, "must be at least 1"));
            }
        }
        if signal.max_message_size > 16 * 1024 * 1024 {
            return Err(KeyError::new(
                "signal.max-message-size",
                "must be at most 16 MiB",
            ));
        }
        if signal.max_queued_bytes < signal.max_message_size {
            return Err(KeyError::new(
                "signal.max-queued-bytes",
                format!(
                    "must be at least signal.max-message-size ({}): a queue holds at least \
                     one message of the largest size",
                    signal.max_message_size
                ),
            ));
        }
        for origin in &signal.allowed_origins {
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
        if (signal.token_secret.as_deref()).is_some_and(|s| s.len() < MIN_SECRET_LEN) {
            return Err(KeyError::new(
                "signal.token-secret",
                format!("must be at least {MIN_SECRET_LEN} characters"),
            ));
        }
        if (self.admin.token.as_deref()).is_some_and(|t| t.len() < MIN_SECRET_LEN) {
            return Err(KeyError::new(
                "admin.token",
                format!("must be at least {MIN_SECRET_LEN} characters"),
            ));
        }
        if self.admin.listen.is_some() && self.admin.token.is_none() {
            return Err(KeyError::new(
                "admin.listen",
                "the admin API is off without admin.token; set a token too",
            ));
        }
        if self.ice.credential_ttl < Duration::from_secs(60) {
            return Err(KeyError::new(
                "ice.credential-ttl",
                "must be at least \"1m\"",
            ));
        }
        if self
            .ice
            .public_host
            .as_deref()
            .is_some_and(|h| h.is_empty() || h.contains(['/', ' ']))
        {
            return Err(KeyError::new(
                "ice.public-host",
                "must be a bare host name or address, like \"turn.example.org\"",
            ));
        }
        Ok(())
    }

    fn validate_auth(&self) -> Result<(), KeyError> {
        let public = self.public_listen_address();
        for (user, password) in &self.auth.users {
            let key = format!("auth.users.{user}");
            if user.is_empty() {
                return Err(KeyError::new("auth.users", "a user name must not be empty"));
            }
            if password.is_empty() {
                return Err(KeyError::new(key, "the password must not be empty"));
            }
            if let Some(hex) = password.strip_prefix("0x")
                && (hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                return Err(KeyError::new(
                    key,
                    "a 0x-prefixed key must be 32 hex digits (MD5 of \"user:realm:password\")",
                ));
            }
            let md5_key = password.starts_with("0x");
            check_secret(&key, password, public, !md5_key)?;
        }
        if self.auth.nonce_lifetime < Duration::from_secs(10) {
            return Err(KeyError::new(
                "auth.nonce-lifetime",
                "must be at least \"10s\"",
            ));
        }
        if self
            .auth
            .nonce_secret
            .as_deref()
            .is_some_and(|s| s.len() < MIN_SECRET_LEN)
        {
            return Err(KeyError::new(
                "auth.nonce-secret",
                format!("must be at least {MIN_SECRET_LEN} characters (it keys every nonce)"),
            ));
        }
        let sep = self.auth.rest_separator;
        if sep.is_ascii_digit() || sep.is_control() || sep.is_whitespace() {
            return Err(KeyError::new(
                "auth.rest-separator",
                format!(
                    "{sep:?} cannot separate the expiry from the user in a REST username \
                     (\"1700000000{sep}alice\"): it would read as part of the expiry or vanish; \
                     use ':' (coturn's default) or another punctuation character"
                ),
            ));
        }
        for (i, secret) in self.auth.static_auth_secret.iter().enumerate() {
            let key = format!("auth.static-auth-secret[{i}]");
            if secret.is_empty() {
                return Err(KeyError::new(key, "a secret must not be empty"));
            }
            check_secret(&key, secret, public, true)?;
        }
        Ok(())
    }

    /// The first listen address reachable from other machines, if any.
    pub fn public_listen_address(&self) -> Option<SocketAddr> {
        let l = &self.listen;
        l.udp
            .iter()
            .chain(&l.tcp)
            .chain(&l.tls)
            .chain(&l.http)
            .chain(&l.https)
            .copied()
            .find(|a| !a.ip().is_loopback())
    }
}

/// The shipped secret, or any shorter than [`MIN_SECRET_LEN`] (when `measured`: not for an
/// MD5 key), is fine on loopback; anywhere else it is an open relay waiting to happen.
fn check_secret(
    key: &str,
    secret: &str,
    public: Option<SocketAddr>,
    measured: bool,
) -> Result<(), KeyError> {
    let Some(addr) = public else {
        return Ok(());
    };
    if secret == PLACEHOLDER_SECRET {
        return Err(KeyError::new(
            key,
            format!(
                "still the shipped placeholder {PLACEHOLDER_SECRET:?}; set a real secret before listening on {addr}"
            ),
        ));
    }
    if measured && secret.chars().count() < MIN_SECRET_LEN {
        return Err(KeyError::new(
            key,
            format!(
                "must be at least {MIN_SECRET_LEN} characters while rturn listens on {addr}, \
                 like every other secret (a short one is guessed offline from one captured \
                 request); loopback-only listeners accept shorter ones"
            ),
        ));
    }
    Ok(())
}

/// Turns a toml/serde error into a [`KeyError`]: the key path from serde_path_to_error (it
/// already ends in the unknown field's name for `deny_unknown_fields` errors) and the line from
/// the error's byte span.
fn toml_error(text: &str, path: &str, e: &toml::de::Error) -> KeyError {
    let line = e
        .span()
        .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
    let message = e.message().trim().to_owned();
    // serde reports a missing field at its parent; name the field itself.
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    let key = match missing {
        Some(field) if path.is_empty() => field.to_owned(),
        Some(field) => format!("{path}.{field}"),
        None => path.to_owned(),
    };
    KeyError { key, message, line }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "realm = \"example.org\"\n";

    fn err(text: &str) -> KeyError {
        Config::from_toml(text).expect_err("config should be rejected")
    }

    #[test]
    fn minimal_config_takes_defaults() {
        let c = Config::from_toml(MINIMAL).unwrap();
        assert_eq!(c.listen.udp, vec!["0.0.0.0:3478".parse().unwrap()]);
        assert_eq!(c.listen.tcp, c.listen.udp);
        assert_eq!(c.server.tcp_idle_timeout, DEFAULT_TCP_IDLE_TIMEOUT);
        assert_eq!((c.relay.min_port, c.relay.max_port), (49152, 65535));
        assert!(!c.relay.allow_loopback_peers);
        assert!(c.workers().get() >= 1);
        // The abuse limits: on by default where a legitimate client never meets them,
        // bandwidth off (as in coturn).
        let s = &c.server;
        assert_eq!(
            (s.unauthenticated_rate, s.unauthenticated_burst),
            (200, 1000)
        );
        assert_eq!(s.max_tcp_connections_per_ip, 1000);
        assert_eq!(s.tcp_allocation_timeout, Duration::from_secs(30));
        assert_eq!(s.tls_handshake_timeout, Duration::from_secs(10));
        assert_eq!(
            (s.http_header_timeout, s.http_idle_timeout),
            (Duration::from_secs(5), Duration::from_secs(10))
        );
        assert_eq!(
            (s.max_http_connections, s.max_http_connections_per_ip),
            (20_000, 500)
        );
        assert_eq!(s.max_tcp_queued_bytes, 1024 * 1024);
        assert_eq!(c.signal.max_queued_bytes, 1024 * 1024);
        let r = &c.relay;
        assert_eq!(
            (
                r.max_permissions_per_allocation,
                r.max_channels_per_allocation
            ),
            (128, 128)
        );
        assert_eq!((r.max_bps, r.bps_capacity), (0, 0));
        assert_eq!(r.max_allocations_per_ip, 256);
    }

    #[test]
    fn abuse_limits_parse_and_are_validated() {
        let c = Config::from_toml(
            "realm = \"r\"\n[server]\nunauthenticated-rate = 0\nunauthenticated-burst = 0\n\
             max-tcp-connections-per-ip = 0\ntcp-allocation-timeout = \"2m\"\n\
             tls-handshake-timeout = \"3s\"\nhttp-header-timeout = \"1s\"\n\
             http-idle-timeout = \"2m\"\nmax-http-connections = 10\n\
             max-http-connections-per-ip = 0\n[relay]\nmax-permissions-per-allocation = 0\n\
             max-channels-per-allocation = 7\nmax-bps = 125000\nbps-capacity = 12500000\n\
             max-allocations-per-ip = 0\n",
        )
        .unwrap();
        assert_eq!(c.server.unauthenticated_rate, 0);
        assert_eq!(c.server.tcp_allocation_timeout, Duration::from_secs(120));
        assert_eq!(c.server.tls_handshake_timeout, Duration::from_secs(3));
        assert_eq!(c.server.http_header_timeout, Duration::from_secs(1));
        assert_eq!(c.server.http_idle_timeout, Duration::from_secs(120));
        assert_eq!(c.server.max_http_connections, 10);
        assert_eq!(c.server.max_http_connections_per_ip, 0);
        assert_eq!(c.relay.max_channels_per_allocation, 7);
        assert_eq!(c.relay.max_allocations_per_ip, 0);
        assert_eq!(
            (c.relay.max_bps, c.relay.bps_capacity),
            (125_000, 12_500_000)
        );
        let cases = [
            (
                "[server]\nunauthenticated-rate = 10\nunauthenticated-burst = 0",
                "server.unauthenticated-burst",
            ),
            (
                "[server]\ntcp-allocation-timeout = \"0s\"",
                "server.tcp-allocation-timeout",
            ),
            (
                "[server]\ntls-handshake-timeout = \"10ms\"",
                "server.tls-handshake-timeout",
            ),
            (
                "[server]\nhttp-header-timeout = \"0s\"",
                "server.http-header-timeout",
            ),
            (
                "[server]\nhttp-idle-timeout = \"50ms\"",
                "server.http-idle-timeout",
            ),
            (
                "[server]\nmax-http-connections = 0",
                "server.max-http-connections",
            ),
            ("[relay]\nmax-bps = 10", "relay.max-bps"),
            ("[relay]\nbps-capacity = 999", "relay.bps-capacity"),
            (
                "[relay]\nmax-allocations-per-ip = -1",
                "relay.max-allocations-per-ip",
            ),
            (
                "[server]\nunauthenticated-rate = -1",
                "server.unauthenticated-rate",
            ),
            (
                "[relay]\nmax-channels-per-allocation = \"x\"",
                "relay.max-channels-per-allocation",
            ),
        ];
        for (text, key) in cases {
            let text = format!("realm = \"r\"\n{text}\n");
            assert_eq!(err(&text).key, key, "for {text:?}");
        }
    }

    #[test]
    fn cluster_is_off_by_default_and_its_keys_are_validated() {
        let c = Config::from_toml(MINIMAL).unwrap();
        assert_eq!(c.cluster.redis, None);
        assert_eq!(c.cluster.presence_ttl, Duration::from_secs(10));
        let c = Config::from_toml(
            "realm = \"r\"\n[cluster]\nredis = \"redis://:pw@127.0.0.1:6380/2\"\n\
             node-id = \"turn-1\"\npresence-ttl = \"30s\"\n",
        )
        .unwrap();
        assert_eq!(c.cluster.node_id.as_deref(), Some("turn-1"));
        assert_eq!(c.cluster.presence_ttl, Duration::from_secs(30));
        let cases = [
            ("redis = \"http://127.0.0.1:6379\"", "cluster.redis"),
            ("redis = \"127.0.0.1:6379\"", "cluster.redis"),
            ("node-id = \"\"", "cluster.node-id"),
            ("node-id = \"turn 1\"", "cluster.node-id"),
            // "/" would let node "a" take node "a/b"'s peers for its own.
            ("node-id = \"a/b\"", "cluster.node-id"),
            ("presence-ttl = \"500ms\"", "cluster.presence-ttl"),
            ("redis-url = \"redis://h\"", "cluster.redis-url"),
        ];
        for (text, key) in cases {
            let text = format!("realm = \"r\"\n[cluster]\n{text}\n");
            assert_eq!(err(&text).key, key, "for {text:?}");
        }
        // The password never reaches an error message.
        let e = err("realm = \"r\"\n[cluster]\nredis = \"tcp://u:secret@h\"\n");
        assert!(!e.message.contains("secret"), "{e}");
    }

    #[test]
    fn realm_is_required() {
        let e = err("[listen]\nudp = []\n");
        assert_eq!(e.key, "realm", "{e}");
    }

    #[test]
    fn secret_may_be_one_string_or_a_list() {
        let one = Config::from_toml(&format!("{LOCAL}[auth]\nstatic-auth-secret = \"s1\"\n"));
        assert_eq!(one.unwrap().auth.static_auth_secret, ["s1"]);
        let many = format!("{LOCAL}[auth]\nstatic-auth-secret = [\"s1\", \"s2\"]\n");
        let many = Config::from_toml(&many).unwrap();
        assert_eq!(many.auth.static_auth_secret, ["s1", "s2"]);
        let bad = err("realm = \"r\"\n[auth]\nstatic-auth-secret = 5\n");
        assert_eq!(bad.key, "auth.static-auth-secret");
    }

    #[test]
    fn unknown_key_is_named_with_its_section() {
        let e = err("realm = \"r\"\n[listen]\nudpp = [\"127.0.0.1:1\"]\n");
        assert_eq!(e.key, "listen.udpp");
        assert_eq!(e.line, Some(3));
        let e = err("realm = \"r\"\nlisten-udp = 1\n");
        assert_eq!(e.key, "listen-udp");
    }

    #[test]
    fn bad_value_names_the_key() {
        let e = err("realm = \"r\"\n[listen]\nudp = [\"not-an-address\"]\n");
        assert_eq!(e.key, "listen.udp[0]", "{e}");
        let e = err("realm = \"r\"\n[server]\ntcp-idle-timeout = \"5 parsecs\"\n");
        assert_eq!(e.key, "server.tcp-idle-timeout");
        assert!(e.message.contains("invalid duration"), "{e}");
        // Would overflow the clock at the first allocation (Instant + Duration panics).
        let e = err("realm = \"r\"\n[relay]\nallocation-lifetime = \"500000000000y\"\n");
        assert_eq!(e.key, "relay.allocation-lifetime");
        assert!(e.message.contains("longer than 10 years"), "{e}");
        let e = err("realm = \"r\"\n[relay]\nmin-port = 70000\n");
        assert_eq!(e.key, "relay.min-port");
    }

    #[test]
    fn durations_are_human() {
        let c =
            Config::from_toml("realm = \"r\"\n[server]\ntcp-idle-timeout = \"2m 30s\"\n").unwrap();
        assert_eq!(c.server.tcp_idle_timeout, Duration::from_secs(150));
    }

    #[test]
    fn syntax_error_has_a_line() {
        let e = err("realm = \"r\"\n[listen\n");
        assert_eq!(e.line, Some(2), "{e}");
    }

    #[test]
    fn cross_field_rules() {
        let cases = [
            ("realm = \"\"", "realm"),
            ("realm = \"r\"\n[server]\nworkers = 0", "server.workers"),
            ("realm = \"r\"\n[listen]\nudp = []\ntcp = []", "listen"),
            (
                "realm = \"r\"\n[listen]\nudp = [\"127.0.0.1:1\", \"127.0.0.1:1\"]",
                "listen.udp",
            ),
            (
                "realm = \"r\"\n[listen]\ntls = [\"127.0.0.1:5349\"]",
                "listen.tls",
            ),
            (
                "realm = \"r\"\n[listen]\nhttps = \"127.0.0.1:8443\"",
                "listen.https",
            ),
            (
                "realm = \"r\"\n[listen]\ntcp = [\"127.0.0.1:1\"]\ntls = [\"127.0.0.1:1\"]\n[tls]\ncert = \"c\"\nkey = \"k\"",
                "listen.tls",
            ),
            (
                "realm = \"r\"\n[signal]\nheartbeat-timeout = \"10s\"\nheartbeat-interval = \"20s\"",
                "signal.heartbeat-timeout",
            ),
            (
                "realm = \"r\"\n[signal]\nmax-peers-per-room = 0",
                "signal.max-peers-per-room",
            ),
            (
                "realm = \"r\"\n[signal]\njoins-per-minute-per-ip = 0",
                "signal.joins-per-minute-per-ip",
            ),
            (
                "realm = \"r\"\n[signal]\nmax-message-size = 70000\nmax-queued-bytes = 65536",
                "signal.max-queued-bytes",
            ),
            (
                "realm = \"r\"\n[server]\nmax-tcp-queued-bytes = 1000",
                "server.max-tcp-queued-bytes",
            ),
            (
                "realm = \"r\"\n[signal]\nallowed-origins = [\"app.example.org\"]",
                "signal.allowed-origins",
            ),
            (
                "realm = \"r\"\n[ice]\npublic-host = \"http://x/\"",
                "ice.public-host",
            ),
            (
                "realm = \"r\"\n[relay]\nmin-port = 6000\nmax-port = 5000",
                "relay.min-port",
            ),
            (
                "realm = \"r\"\n[relay]\nrelay-ip = \"0.0.0.0\"",
                "relay.relay-ip",
            ),
            (
                "realm = \"r\"\n[relay]\nrelay-ip = \"10.0.0.1\"\nexternal-ip = \"::1\"",
                "relay.external-ip",
            ),
            ("realm = \"r\"\n[auth.users]\nbob = \"\"", "auth.users.bob"),
            (
                "realm = \"r\"\n[auth.users]\nbob = \"0x1234\"",
                "auth.users.bob",
            ),
            (
                "realm = \"r\"\n[auth]\nstatic-auth-secret = [\"\"]",
                "auth.static-auth-secret[0]",
            ),
        ];
        for (text, key) in cases {
            assert_eq!(err(text).key, key, "for {text:?}");
        }
    }

    #[test]
    fn placeholder_secret_only_allowed_on_loopback() {
        let local = "realm = \"r\"\n[listen]\nudp = [\"127.0.0.1:3478\"]\ntcp = []\n\
                     [relay]\nrelay-ip = \"127.0.0.1\"\n[auth.users]\nalice = \"change-me\"\n";
        Config::from_toml(local).unwrap();
        let public = "realm = \"r\"\n[auth.users]\nalice = \"change-me\"\n";
        let e = err(public);
        assert_eq!(e.key, "auth.users.alice");
        assert!(e.message.contains("0.0.0.0:3478"), "{e}");
        let secret = "realm = \"r\"\n[auth]\nstatic-auth-secret = [\"change-me\"]\n";
        assert_eq!(err(secret).key, "auth.static-auth-secret[0]");
    }

    #[test]
    fn external_ip_forms() {
        let c = Config::from_toml(
            "realm = \"r\"\n[relay]\nrelay-ip = [\"10.0.0.5\", \"fd00::5\"]\n\
             external-ip = [\"203.0.113.7/10.0.0.5\", \"2001:db8::7\"]\n",
        )
        .unwrap();
        let pairs = c.external_ips().unwrap();
        assert_eq!(
            pairs[0],
            ("10.0.0.5".parse().unwrap(), "203.0.113.7".parse().unwrap())
        );
        assert_eq!(
            pairs[1],
            ("fd00::5".parse().unwrap(), "2001:db8::7".parse().unwrap())
        );
    }

    #[test]
    fn peer_ranges_take_addresses_and_cidrs() {
        let c = Config::from_toml(
            "realm = \"r\"\n[relay]\nallowed-peer-ip = [\"10.1.0.0/16\", \"192.168.1.1\"]\n",
        )
        .unwrap();
        let nets: Vec<String> = c
            .relay
            .allowed_peer_ip
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(nets, ["10.1.0.0/16", "192.168.1.1/32"]);
    }

    #[test]
    fn md5_keys_are_accepted() {
        let text = "realm = \"r\"\n[relay]\nrelay-ip = \"10.0.0.5\"\n[auth.users]\nbob = \"0x0123456789abcdef0123456789ABCDEF\"\n";
        Config::from_toml(text).unwrap();
    }

    /// Loopback listeners and relay address: what the shipped config and the tests use.
    const LOCAL: &str = "realm = \"r\"\n[listen]\nudp = [\"127.0.0.1:3478\"]\ntcp = []\n\
                         [relay]\nrelay-ip = \"127.0.0.1\"\n";
    /// A public listener (the default 0.0.0.0:3478) and a relay address of its own.
    const PUBLIC: &str = "realm = \"r\"\n[relay]\nrelay-ip = \"10.0.0.5\"\n";

    /// Every secret that guards a public listener needs 16 characters: static-auth-secret
    /// and user passwords now too, like token-secret, admin.token and nonce-secret.
    #[test]
    fn secrets_on_a_public_listener_need_16_characters() {
        let cases = [
            (
                "[auth]\nstatic-auth-secret = \"x\"\n",
                "auth.static-auth-secret[0]",
            ),
            (
                "[auth]\nstatic-auth-secret = [\"0123456789abcdef\", \"short\"]\n",
                "auth.static-auth-secret[1]",
            ),
            ("[auth.users]\nalice = \"p\"\n", "auth.users.alice"),
            (
                "[auth.users]\nalice = \"fifteen chars!!\"\n",
                "auth.users.alice",
            ),
        ];
        for (section, key) in cases {
            let e = err(&format!("{PUBLIC}{section}"));
            assert_eq!(e.key, key, "{section}");
            assert!(e.message.contains("16 characters"), "{e}");
            assert!(e.message.contains("0.0.0.0:3478"), "{e}");
            // The same on loopback listeners is fine (the shipped config, the tests).
            Config::from_toml(&format!("{LOCAL}{section}")).unwrap();
        }
        for good in [
            "[auth]\nstatic-auth-secret = \"0123456789abcdef\"\n",
            "[auth.users]\nalice = \"sixteen chars!!!\"\n",
            "[auth.users]\nbob = \"0x0123456789abcdef0123456789abcdef\"\n",
        ] {
            Config::from_toml(&format!("{PUBLIC}{good}")).unwrap();
        }
    }

    /// A digit separator breaks every REST username: "1700000000" + "5" + "alice" reads as
    /// one longer expiry.
    #[test]
    fn rest_separator_must_not_be_part_of_an_expiry() {
        for sep in ["5", "0", " ", "\\t"] {
            let e = err(&format!("{LOCAL}[auth]\nrest-separator = \"{sep}\"\n"));
            assert_eq!(e.key, "auth.rest-separator", "{sep:?}");
        }
        for sep in [":", "-", "_", "."] {
            Config::from_toml(&format!("{LOCAL}[auth]\nrest-separator = \"{sep}\"\n")).unwrap();
        }
    }

    #[test]
    fn loopback_relay_ip_beside_a_public_listener_is_refused() {
        for (listen, relay) in [
            ("", "127.0.0.1"),
            (
                "[listen]\nudp = [\"192.0.2.7:3478\"]\ntcp = []\n",
                "127.0.0.1",
            ),
            (
                "[listen]\nudp = [\"127.0.0.1:3478\"]\ntcp = []\nhttp = \"0.0.0.0:80\"\n",
                "127.0.0.1",
            ),
            ("[listen]\nudp = [\"[::]:3478\"]\ntcp = []\n", "::1"),
        ] {
            let e = err(&format!(
                "realm = \"r\"\n{listen}[relay]\nrelay-ip = \"{relay}\"\n"
            ));
            assert_eq!(e.key, "relay.relay-ip", "{listen}");
            assert!(e.message.contains("external-ip"), "{e}");
        }
        Config::from_toml(LOCAL).unwrap();
    }

    /// Binding says whether relay-ip is this machine's; 192.0.2.1 (documentation) is not.
    #[test]
    fn relay_ip_must_be_an_address_of_this_machine() {
        let local = Config::from_toml(LOCAL).unwrap();
        local.check_relay_addresses().unwrap();
        let foreign = Config::from_toml(
            "realm = \"r\"\n[listen]\nudp = [\"127.0.0.1:3478\"]\ntcp = []\n\
             [relay]\nrelay-ip = \"192.0.2.1\"\n",
        )
        .unwrap();
        let e = foreign.check_relay_addresses().unwrap_err();
        assert_eq!(e.key, "relay.relay-ip");
        assert!(e.message.contains("not an address of this machine"), "{e}");
    }

    /// Said once, naming who must read the file and how.
    #[test]
    fn permission_denied_says_who_and_how() {
        let e = ConfigError::Read {
            path: PathBuf::from("/etc/rturn/turnserver.toml"),
            error: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        }
        .to_string();
        assert_eq!(e.matches("ermission denied").count(), 1, "{e}");
        assert!(e.contains(&format!("uid {}", nix::unistd::getuid())), "{e}");
        assert!(e.contains("chmod") && e.contains("LoadCredential"), "{e}");
    }

    #[test]
    fn every_shipped_config_is_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                Config::read(&path).unwrap_or_else(|e| panic!("{e}"));
                seen += 1;
            }
        }
        assert!(seen >= 1, "no config files in {}", dir.display());
    }

    #[test]
    fn read_error_names_the_file() {
        let e = Config::read(Path::new("/nonexistent/rturn.toml")).unwrap_err();
        assert!(
            e.to_string().starts_with("/nonexistent/rturn.toml: "),
            "{e}"
        );
    }
}
