//! rturn: a STUN/TURN server and WebRTC signaling relay in one binary.
//!
//! A STUN server (RFC 8489) and TURN relay (RFC 8656) over UDP, TCP and TLS, and a WebSocket
//! signaling relay with an ICE-servers API, an admin API, metrics and test pages over HTTP.
//! `ARCHITECTURE.md` has the map: the layers, who owns what, and a packet's and an offer's
//! path file by file.
//!
//! # Layout
//!
//! Pure cores (no sockets, no tasks, no clock: time is passed in, bytes come out):
//! - [`stun`]: the STUN wire codec, TCP framing, ChannelData and the Binding responder.
//! - [`auth`]: long-term credentials, TURN REST secrets, stateless nonces.
//! - [`turn`]: the allocation manager: decoded requests and the time in, answers, data-path
//!   routes (naming relay sockets by slot) and bind/close events out; it owns no socket.
//!   Peer rules, quotas and reservations shared by every worker, bandwidth limits, and
//!   which channels the kernel may relay by itself (offload insert/remove events out).
//! - [`client`]: a sans-IO TURN client (requests with long-term credentials, responses,
//!   ChannelData), used by the tests, benches, fuzz targets and `rturn-bench`.
//! - [`signal`]: the signaling relay: the message format, the SkyRTC dialect and the room
//!   registry (pure), the hub, one task per WebSocket session, the cross-node steps and the
//!   Redis link.
//! - [`config`]: the TOML configuration, one file per section with its defaults and checks,
//!   and the two checks that ask the machine.
//! - [`coturn`]: `rturn import-coturn`, turnserver.conf to turnserver.toml.
//! - [`proxy_protocol`]: the PROXY protocol header (v1 and v2) a load balancer puts before
//!   a connection, parsed from a byte slice.
//! - [`probe`]: `rturn probe`, a running server checked end to end (steps, credentials and
//!   report pure; blocking sockets bounded by a timeout in `probe::conn`).
//!
//! Glue and small shared pieces:
//! - [`server`]: sockets, threads and tasks: binding `[listen]`, one event loop per worker
//!   owning its shard (UDP listen and relay sockets, TURN TCP/TLS clients, timers), the
//!   accept loops with their limits, the descriptor budget, reload, drain and shutdown.
//! - [`http`]: every HTTP route: pages from `web/`, `/ws`, `/api/ice-servers`, `/healthz`,
//!   `/metrics`, `/admin`; the origin rules (pure).
//! - [`offload`]: the kernel fast path: the eBPF TC program relaying UDP
//!   ChannelData in the kernel, loaded and attached with aya, and the maps user space writes.
//! - [`metrics`]: one way to count: each subsystem's families, reported through one trait
//!   and rendered from one table.
//! - [`outbox`]: a signaling connection's outgoing queue, bounded in bytes.
//! - [`cli`], [`client_key`] (who a client is for per-address limits), [`random`].
//! - `testkit` (tests and the `testkit` feature only): the black-box test harness every
//!   binary under `tests/` uses.
//!
//! `main.rs` is thin: it parses the command line, sets up tracing, reads the config, builds the
//! runtime, binds, and calls [`server::run`].

pub mod auth;
pub mod cli;
pub mod client;
pub mod client_key;
pub mod config;
pub mod coturn;
pub mod http;
pub mod metrics;
pub mod offload;
pub mod outbox;
pub mod probe;
pub mod proxy_protocol;
pub mod random;
pub mod server;
pub mod signal;
pub mod stun;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod turn;

pub use config::Config;
pub use server::{Control, Listeners, run};
