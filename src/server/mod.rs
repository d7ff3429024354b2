//! The I/O glue: binding the listen sockets, serving them until shutdown, stopping cleanly.
//! The protocol cores (`stun`, `turn`, `signal::rooms`) hold no sockets; this module moves
//! their bytes.
//!
//! - `listeners`: binding every `[listen]` address first ([`Listeners::bind`]), so a bind
//!   failure names its config key before anything is served.
//! - `app`: assembling the running server ([`run`]): shards and event loops, the TURN
//!   TCP/TLS listeners, the HTTP app, the cluster link.
//! - `control`: reload, drain and shutdown of a running server ([`Control`]).
//! - `datapath`, `shard`, `relay`, `ports`, `mmsg`, `gso`, `udp`: the UDP event loops and relay
//!   sockets; `handoff`: data for rturn's own relays, handed between workers in process;
//!   `mobility`: datagrams of clients whose allocation moved (RFC 8016) to another worker;
//!   `offload`: the kernel fast path's status and each worker's handle on its maps;
//!   `tcp`, `tls`: TURN over TCP/TLS; `tcp_relay`, `splice`: RFC 6062 TCP allocations; `shared_tls`, `rewind`: one TLS port for `turns:` and
//!   HTTPS; `proxy`: the PROXY protocol header at the TCP, TLS and HTTP listeners' doors;
//!   `limiter`, `throttle`, `descriptors`: limits
//!   at the edge; `http_listener`, `http_conn`: the HTTP accept loop and connections;
//!   `scrape` (gathering `/metrics` from the workers), `stats`, `report`: what operators see (the admin and
//!   metrics routes are in [`crate::http`]); `reload`, `turn_parts`, `systemd`.

mod app;
mod auth_store;
mod batches;
pub(crate) mod command;
mod conns;
mod control;
mod datapath;
mod descriptors;
mod gso;
mod handoff;
mod http_activity;
mod http_conn;
mod http_listener;
mod http_stats;
mod limiter;
mod listeners;
mod mmsg;
mod mobility;
mod offload;
mod ports;
mod proxy;
mod redis_auth;
mod relay;
pub(crate) mod reload;
mod report;
mod rewind;
mod scrape;
mod shard;
mod shared_tls;
mod socket;
mod splice;
mod stats;
mod stream;
mod systemd;
mod tcp;
mod tcp_relay;
mod throttle;
pub mod tls;
mod turn_parts;
mod udp;
pub(crate) mod workers;

pub use app::run;
pub use control::Control;
pub use listeners::{BindError, ListenError, Listeners};
use socket::new_socket;
pub use stats::{Snapshot, Stats};
