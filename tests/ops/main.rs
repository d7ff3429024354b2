//! Black-box: the built binary as an operator runs it, on loopback only.
//!
//! - [`cli`]: the command line and config errors.
//! - [`credentials`]: `rturn credentials` and where its secret comes from.
//! - [`operations`]: SIGHUP reloads, SIGUSR1 drains, the admin API.
//! - [`fleet`]: two nodes sharing secrets; capacity and draining redirect with 300.
//! - [`http_edge`]: the HTTP listeners' timeouts, connection caps and descriptor budget.
//! - [`import_coturn`]: `rturn import-coturn` on coturn's files, and a converted config served.
//! - [`redis_users`]: `[auth] redis`, users and secrets in a real redis-server.
//! - [`probe`]: `rturn probe` against rturn and coturn: every step, a wrong password, peer rules.
//!
//! Every module uses the shared harness, `rturn::testkit`.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod cli;
mod credentials;
mod fleet;
mod http_edge;
mod import_coturn;
mod operations;
mod probe;
mod redis_users;
