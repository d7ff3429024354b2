//! The black-box test harness, compiled only for the crate's own tests and for the
//! `testkit` feature (which the integration tests turn on through a dev-dependency on this
//! crate): every test binary under `tests/` uses it as `rturn::testkit`.
//!
//! - [`server`]: the built `rturn` binary on port 0, its bound addresses read from its log,
//!   `/metrics` scrapes, config helpers.
//! - [`net`]: STUN/TURN requests built by hand and exchanged over blocking UDP and TCP sockets.
//! - [`raw_turn`]: [`RawTurn`], a deliberately naive TURN client over UDP built on
//!   [`crate::client`], for requests a careful client never sends.
//! - [`peer`]: coturn's echo peer, the `turn` crate's client, noise, a one-port relay range.
//! - [`uclient`]: coturn's `turnutils_uclient` run and its output judged.
//! - [`redis`]: a private `redis-server` per cluster test.
//! - [`netns`]: [`in_netns`], code run inside a network namespace a test made.
//!
//! This is test code: it panics (with the server's log) where a test should fail.

pub mod net;
pub mod netns;
pub mod peer;
pub mod raw_turn;
pub mod redis;
pub mod server;
pub mod uclient;

pub use net::*;
pub use netns::in_netns;
pub use peer::*;
pub use raw_turn::{RawTurn, Relayed};
pub use server::*;
pub use uclient::*;
