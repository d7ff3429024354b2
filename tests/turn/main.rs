//! Black-box: STUN and TURN against the built binary, on loopback only.
//!
//! - [`stun_binding`]: Binding over UDP and TCP, to coturn's client and raw sockets; malformed
//!   input survived.
//! - [`turn_client`], [`turn_interop`]: clients we did not write (the `turn` crate's,
//!   coturn's `turnutils_uclient`) allocate and relay, losing nothing.
//! - [`dual_relay`]: IPv4 and IPv6 relays of one allocation, both ways at once.
//! - [`gso`]: a peer's burst to one client leaves as UDP GSO sends and arrives datagram by
//!   datagram.
//! - [`bypass_matrix`]: every forbidden peer class and disguise refused, on real sockets.
//! - [`tcp_relay`]: RFC 6062 TCP allocations, with coturn's `uclient -T` and a client of our
//!   own: bytes both ways, ConnectionAttempt, the pair closing, the refusals.
//! - [`quotas`], [`limits`], [`tcp_queue`]: quotas, abuse limits, a TCP client that stops
//!   reading.
//! - [`tls`]: HTTPS and certificate errors; [`shared_tls`]: `turns:`, HTTPS and WSS on one
//!   port.
//! - [`offload`]: the kernel fast path relays a bound channel both ways, and with it off,
//!   user space does the same; a reload that refuses the peer or revokes the user takes the
//!   channel out of the kernel at once.
//! - [`offload_veth`]: coturn's uclient relays through the kernel fast path between network
//!   namespaces joined by veth pairs (as root), losing nothing.
//! - [`mobility`]: RFC 8016: a client that changes address keeps its allocation, whichever
//!   worker its new address lands on; coturn's `turnutils_uclient -M` loses nothing.
//! - [`proxy_protocol`]: behind a load balancer: the client a PROXY header names is the one
//!   TURN, the per-IP caps and the ICE API see; untrusted or missing headers refused.
//!
//! Every module uses the shared harness, `rturn::testkit`.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod bypass_matrix;
mod dual_relay;
mod gso;
mod limits;
mod mobility;
mod offload;
mod offload_veth;
mod own_relays;
mod proxy_protocol;
mod quotas;
mod rfc5780;
mod shared_tls;
mod stun_binding;
mod stun_only;
mod tcp_queue;
mod tcp_relay;
mod tls;
mod turn_client;
mod turn_interop;
