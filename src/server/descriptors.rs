//! The descriptor budget: HTTP (WebSockets included) and TURN TCP/TLS connections together
//! can never take the descriptors relay sockets need.
//!
//! At start the soft `RLIMIT_NOFILE` is raised to the hard one ([`raise_limit`]). What is left
//! after the descriptors already open and a little headroom is split ([`Split::new`]): relay
//! sockets (one per relay port and address family) keep their share, connections get the
//! rest, and HTTP at most three quarters of that, so TURN over TCP/TLS always keeps a quarter
//! and HTTP is refused first. Every connection (an RFC 6062 peer connection too, on TURN's
//! share: `server/tcp_relay.rs`) holds a
//! [`Permit`] from accept until its socket closes (an upgraded WebSocket keeps its
//! connection's). When the budget is full, the HTTP connection waiting longest for a request
//! is closed to make room ([`Budget::shed_idle_http`]); a connection in a request, or
//! upgraded, is never shed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use tokio::sync::Notify;

use super::http_activity::Activity;
use crate::config::Config;

/// Descriptors never handed to connections or relay sockets: config and certificate reads on
/// reload, the cluster's Redis link, resolver sockets, log files.
const MIN_HEADROOM: u64 = 32;
/// How long an accept waits for a shed connection's descriptor to come back.
const SHED_WAIT: Duration = Duration::from_millis(250);

/// The descriptor limit in force, after trying to raise the soft limit to the hard one.
/// Returns (limit now, soft limit before).
pub(super) fn raise_limit() -> (u64, u64) {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return (1024, 1024);
    };
    if hard <= soft {
        return (soft, soft);
    }
    // An unlimited hard limit cannot be the soft one (the kernel caps it at fs.nr_open).
    let target = if hard == nix::sys::resource::RLIM_INFINITY {
        std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1 << 20)
    } else {
        hard
    };
    match setrlimit(Resource::RLIMIT_NOFILE, target, hard) {
        Ok(()) => (target, soft),
        Err(e) => {
            tracing::warn!("cannot raise the descriptor limit from {soft} to {target}: {e}");
            (soft, soft)
        }
    }
}

/// Descriptors this process holds now (64 when /proc is not there to ask).
pub(super) fn open_now() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(64, |dir| dir.count() as u64)
}

/// How the descriptors left at start are shared out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Split {
    /// The process limit.
    pub(super) limit: u64,
    /// Kept for relay sockets.
    pub(super) relay: u64,
    /// Connections of every kind at once (HTTP, WebSocket, TURN TCP/TLS).
    pub(super) connections: u64,
    /// Of those, HTTP and WebSocket connections.
    pub(super) http: u64,
}

impl Split {
    /// `limit` descriptors, `open` already in use, `relay_sockets` the most relay sockets
    /// the port range and relay addresses allow. Relay sockets get what they can use, up to
    /// half of what is left; connections get the rest, HTTP three quarters of it (TURN over
    /// TCP/TLS keeps the last quarter whatever the WebSockets hold).
    pub(super) fn new(limit: u64, open: u64, relay_sockets: u64) -> Self {
        let spare = limit.saturating_sub(open);
        let headroom = MIN_HEADROOM.max(spare / 64);
        let usable = spare.saturating_sub(headroom);
        let relay = relay_sockets.min(usable / 2);
        let connections = usable - relay;
        Self {
            limit,
            relay,
            connections,
            http: connections - connections / 4,
        }
    }
}

/// Which share a connection draws on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// HTTP or HTTPS (and the WebSocket it may become).
    Http,
    /// TURN over TCP or TLS.
    Turn,
}

/// What the budget has counted, for `/metrics`.
#[derive(Debug, Default)]
struct Counts {
    refused_http: AtomicU64,
    refused_turn: AtomicU64,
    shed: AtomicU64,
    accept_errors_http: AtomicU64,
    accept_errors_turn: AtomicU64,
}

/// The shared budget; one per process.
#[derive(Debug)]
pub(super) struct Budget {
    split: Split,
    /// (all connections, HTTP connections) held now.
    held: Mutex<(u64, u64)>,
    released: Notify,
    /// HTTP connections that may be shed, by id.
    sheddable: Mutex<HashMap<u64, Arc<Activity>>>,
    next_id: AtomicU64,
    counts: Counts,
}

impl Budget {
    /// A budget shared out as `split`.
    pub(super) fn new(split: Split) -> Arc<Self> {
        Arc::new(Self {
            split,
            held: Mutex::default(),
            released: Notify::new(),
            sheddable: Mutex::default(),
            next_id: AtomicU64::new(0),
            counts: Counts::default(),
        })
    }

    /// The budget for this process under `config`: its descriptor limit (raised at start,
    /// and what it was before), what is open now, and the most relay sockets the port range
    /// and relay addresses allow. Logged.
    pub(super) fn for_config(config: &Config, (limit, was): (u64, u64)) -> Arc<Self> {
        let ports = u64::from(config.relay.max_port - config.relay.min_port) + 1;
        let relay_sockets = ports * config.relay.relay_ip.len() as u64;
        let open = open_now();
        let split = Split::new(limit, open, relay_sockets);
        tracing::info!(
            limit,
            raised_from = was,
            open,
            relay_reserve = split.relay,
            connections = split.connections,
            http = split.http,
            "descriptor budget"
        );
        if split.http < 16 {
            tracing::warn!(
                "only {} descriptors for HTTP connections: raise LimitNOFILE (ulimit -n)",
                split.http
            );
        }
        Self::new(split)
    }

    /// How the descriptors are shared out.
    pub(super) fn split(&self) -> Split {
        self.split
    }

    fn lock(&self) -> MutexGuard<'_, (u64, u64)> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_sheddable(&self) -> MutexGuard<'_, HashMap<u64, Arc<Activity>>> {
        self.sheddable.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// (all, HTTP) connections holding a permit now.
    pub(super) fn held(&self) -> (u64, u64) {
        *self.lock()
    }

    /// A permit for one more connection of `kind`, or `None` when its share is spent.
    pub(super) fn try_acquire(self: &Arc<Self>, kind: Kind) -> Option<Permit> {
        let mut held = self.lock();
        let (all, http) = &mut *held;
        if *all >= self.split.connections || (kind == Kind::Http && *http >= self.split.http) {
            return None;
        }
        *all += 1;
        if kind == Kind::Http {
            *http += 1;
        }
        Some(Permit {
            budget: Arc::clone(self),
            kind,
        })
    }

    /// A permit for `kind`; when the budget is spent, the longest-waiting idle HTTP connection
    /// is closed to make room (HTTP gives way first). `None`, counted, when nothing could be
    /// shed or its descriptor did not come back in time.
    pub(super) async fn acquire(self: &Arc<Self>, kind: Kind) -> Option<Permit> {
        if let Some(permit) = self.try_acquire(kind) {
            return Some(permit);
        }
        let released = self.released.notified();
        tokio::pin!(released);
        released.as_mut().enable();
        if self.shed_idle_http() {
            let _ = tokio::time::timeout(SHED_WAIT, released).await;
            if let Some(permit) = self.try_acquire(kind) {
                return Some(permit);
            }
        }
        let refused = match kind {
            Kind::Http => &self.counts.refused_http,
            Kind::Turn => &self.counts.refused_turn,
        };
        refused.fetch_add(1, Relaxed);
        None
    }

    /// Lists an HTTP connection that may be shed while it waits for a request, from its
    /// accept (so a flood that outruns the connection tasks still finds one to shed) until
    /// the [`Listing`] is dropped (closed, or upgraded to a WebSocket).
    pub(super) fn list(self: &Arc<Self>, activity: Arc<Activity>) -> Listing {
        let id = self.next_id.fetch_add(1, Relaxed);
        self.lock_sheddable().insert(id, activity);
        Listing {
            budget: Arc::clone(self),
            id,
        }
    }

    /// Closes the HTTP connection that has waited longest for a request (none in progress);
    /// `false` when there is none.
    fn shed_idle_http(&self) -> bool {
        let mut sheddable = self.lock_sheddable();
        let oldest = (sheddable.iter())
            .filter_map(|(id, activity)| Some((activity.waiting_since()?, *id)))
            .min();
        let Some((_, id)) = oldest else {
            return false;
        };
        if let Some(activity) = sheddable.remove(&id) {
            activity.shed();
            self.counts.shed.fetch_add(1, Relaxed);
        }
        true
    }

    /// Counts a failed accept (EMFILE and friends) on a listener of `kind`.
    pub(super) fn accept_error(&self, kind: Kind) {
        match kind {
            Kind::Http => &self.counts.accept_errors_http,
            Kind::Turn => &self.counts.accept_errors_turn,
        }
        .fetch_add(1, Relaxed);
    }

    /// Connections refused for the budget, (HTTP, TURN).
    pub(super) fn refused(&self) -> (u64, u64) {
        let c = &self.counts;
        (c.refused_http.load(Relaxed), c.refused_turn.load(Relaxed))
    }

    /// Idle HTTP connections closed to make room.
    pub(super) fn shed_count(&self) -> u64 {
        self.counts.shed.load(Relaxed)
    }

    /// Failed accepts, (HTTP, TURN).
    pub(super) fn accept_errors(&self) -> (u64, u64) {
        let c = &self.counts;
        (
            c.accept_errors_http.load(Relaxed),
            c.accept_errors_turn.load(Relaxed),
        )
    }
}

/// An HTTP connection on the shedding list; taken off when dropped.
#[derive(Debug)]
pub(super) struct Listing {
    budget: Arc<Budget>,
    id: u64,
}

impl Drop for Listing {
    fn drop(&mut self) {
        self.budget.lock_sheddable().remove(&self.id);
    }
}

/// One connection's share of the budget; given back when dropped (when its socket closes).
#[derive(Debug)]
pub(super) struct Permit {
    budget: Arc<Budget>,
    kind: Kind,
}

impl Drop for Permit {
    fn drop(&mut self) {
        {
            let mut held = self.budget.lock();
            let (all, http) = &mut *held;
            *all = all.saturating_sub(1);
            if self.kind == Kind::Http {
                *http = http.saturating_sub(1);
            }
        }
        self.budget.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_sockets_keep_their_share_and_http_gets_three_quarters_of_the_rest() {
        // A small limit: relay and connections halve what is left after the headroom.
        let s = Split::new(256, 30, 16_384);
        assert_eq!((s.relay, s.connections, s.http), (97, 97, 73));
        // A large one: the relay gets every port it can use, connections the rest.
        let s = Split::new(1_048_576, 40, 16_384);
        assert_eq!(s.relay, 16_384);
        assert!(s.connections > 1_000_000 && s.http == s.connections - s.connections / 4);
        // No relay addresses: no reserve. Nothing left: nothing handed out, no panic.
        assert_eq!(Split::new(1000, 0, 0).relay, 0);
        let none = Split::new(10, 50, 100);
        assert_eq!((none.relay, none.connections, none.http), (0, 0, 0));
    }

    #[test]
    fn http_is_refused_before_turn_and_permits_come_back() {
        let budget = Budget::new(Split {
            limit: 100,
            relay: 0,
            connections: 4,
            http: 2,
        });
        let h1 = budget.try_acquire(Kind::Http).unwrap();
        let h2 = budget.try_acquire(Kind::Http).unwrap();
        assert!(budget.try_acquire(Kind::Http).is_none(), "HTTP share spent");
        let t1 = budget.try_acquire(Kind::Turn).unwrap();
        let t2 = budget.try_acquire(Kind::Turn).unwrap();
        assert!(budget.try_acquire(Kind::Turn).is_none(), "all spent");
        assert_eq!(budget.held(), (4, 2));
        drop(h1);
        assert!(budget.try_acquire(Kind::Http).is_some());
        drop((h2, t1, t2));
        assert_eq!(budget.held(), (0, 0));
    }

    #[tokio::test]
    async fn a_full_budget_sheds_the_longest_idle_http_connection() {
        let budget = Budget::new(Split {
            limit: 100,
            relay: 0,
            connections: 2,
            http: 2,
        });
        let old = Arc::new(Activity::new());
        let busy = Arc::new(Activity::new());
        let _in_request = busy.request();
        let permits = [
            budget.try_acquire(Kind::Http).unwrap(),
            budget.try_acquire(Kind::Http).unwrap(),
        ];
        let _listed = [
            budget.list(Arc::clone(&old)),
            budget.list(Arc::clone(&busy)),
        ];
        // The shed connection gives its permit back when it closes.
        let [first, second] = permits;
        let closer = {
            let old = Arc::clone(&old);
            tokio::spawn(async move {
                old.shed_requested().await;
                drop(first);
            })
        };
        let permit = budget.acquire(Kind::Turn).await;
        assert!(permit.is_some(), "the idle connection made room");
        closer.await.unwrap();
        assert_eq!(budget.shed_count(), 1);
        // Only the busy one is left: nothing to shed, refused and counted.
        assert!(budget.acquire(Kind::Turn).await.is_none());
        assert_eq!(budget.refused(), (0, 1));
        drop((second, permit));
    }
}
