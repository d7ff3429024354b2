//! Black-box fault tests of the built binary, on loopback only:
//!
//! - [`flood`]: an attack on the side (malformed datagrams, unauthenticated Allocates,
//!   half-open TCP) while honest clients relay: they lose nothing, and memory comes back.
//! - [`vanishing`]: clients that never refresh lose their allocation at expiry and the port
//!   returns to the pool; TCP clients that drop mid-message (FIN or RST) are cleaned up and
//!   counted.
//! - [`exhaustion`]: a full relay port range and `total-quota` answer 508, `user-quota` 486
//!   (RFC 8656 §7.2), and service resumes the moment a Refresh of 0 or a TCP close frees room.
//! - [`restart`]: SIGTERM while coturn's `turnutils_uclient` relays exits cleanly within the
//!   shutdown grace; a second run binds at once on exactly the ports the first one took.
//!
//! [`raw`] is the bare TURN client the life-cycle tests drive. Signaling clients that stop
//! answering pings are covered by `tests/signal/rooms.rs`.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod exhaustion;
mod flood;
mod raw;
mod restart;
mod vanishing;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rturn::testkit::*;

/// A TURN server on loopback relaying to loopback peers, with users alice and bob, an HTTP
/// listener for `/metrics`, and `relay` appended to its `[relay]` section.
fn turn_config(relay: &str) -> String {
    loopback_config(&format!(
        "http = \"127.0.0.1:0\"\n\
         [relay]\nrelay-ip = \"127.0.0.1\"\nallow-loopback-peers = true\n{relay}\n\
         [auth.users]\nalice = \"wonderland\"\nbob = \"builder\"\n"
    ))
}

/// Polls `cond` every 50 ms until it holds; panics with `what` after `limit`.
fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
