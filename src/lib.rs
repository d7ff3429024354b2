//! rturn: a STUN/TURN server and WebRTC signaling relay in one binary.
//!
//! Today it is a STUN server (RFC 8489) and TURN relay (RFC 8656) over UDP and TCP, and a
//! WebSocket signaling relay with an ICE-servers API and test pages over HTTP; TLS and
//! operations arrive in later issues on the same foundation.
//!
//! # Layout
//!
//! - [`cli`]: the command line (`rturn -c FILE`, `--check-config`, `-v`/`-q`).
//! - [`config`]: the TOML configuration, its defaults and its validation (pure), and the two
//!   checks that ask the machine (`relay-ip` is ours; who could not read a file).
//! - [`stun`]: the STUN wire codec, TCP framing and the Binding responder. Pure: no tokio,
//!   no sockets, no clock, so every path is unit-tested on bytes.
//! - [`auth`]: long-term credentials, TURN REST secrets, stateless nonces. Pure.
//! - [`client`]: a sans-IO TURN client: requests built with long-term credentials, responses,
//!   Data indications and ChannelData parsed; used by the tests, benches, fuzz targets and
//!   `rturn-bench`. Pure.
//! - [`turn`]: the allocation manager, sans-IO: decoded requests and the time in, response
//!   bytes and data-path routes out; relay ports come through a binder trait; peer rules,
//!   per-allocation caps and bandwidth limits.
//! - [`signal`]: the signaling relay: protocol and room registry (pure), WebSocket glue.
//! - [`client_key`]: who a client is for per-address limits (IPv4, or IPv6 by /64).
//! - [`random`]: values from the OS CSPRNG (nonce keys, relay ports, tokens, IDs).
//! - [`outbox`]: a connection's outgoing queue, bounded in bytes (TURN TCP/TLS clients and
//!   signaling WebSockets); a client that stops reading overflows it and is closed.
//! - [`http`]: the axum routes: `/ws`, `/api/ice-servers`, pages from `web/`, `/healthz`;
//!   the origin rules (pure).
//! - [`server`]: tokio glue only: binding the `[listen]` sockets (one SO_REUSEPORT UDP socket
//!   per worker), relay sockets, one expiry timer per shard, the per-source bucket for
//!   unauthenticated requests, the TCP/TLS connection limits, the HTTP listeners (hyper with
//!   header and idle timers, connection caps at accept) and the descriptor budget they share,
//!   counting what was seen, and stopping on one cancellation token.
//! - `testkit` (tests and the `testkit` feature only): the black-box test harness that every
//!   binary under `tests/` uses.
//!
//! `main.rs` is thin: it parses the command line, sets up tracing, reads the config, builds the
//! runtime with one worker thread per configured worker, binds, and calls [`server::run`].

pub mod auth;
pub mod cli;
pub mod client;
pub mod client_key;
pub mod config;
pub mod coturn;
pub mod http;
pub mod metrics;
pub mod outbox;
pub mod random;
pub mod server;
pub mod signal;
pub mod stun;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod turn;

pub use config::Config;
pub use server::{Control, Listeners, run};
