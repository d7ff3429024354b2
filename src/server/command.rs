//! What the tokio side asks of a worker's event loop ([`super::datapath`]), and what the
//! loop answers: plain data sent over the worker's command channel, each question with a
//! `oneshot` for its reply (its `send` works from the loop's plain thread). The facade that
//! sends them is [`super::workers::Workers`].

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::conns::Guards;
use crate::auth::Auth;
use crate::turn::metrics::TurnMetrics;
use crate::turn::peer_rules::PeerRules;
use crate::turn::{FiveTuple, Session, TurnConfig};

/// One request to a worker.
pub(super) enum Command {
    /// Every allocation, for the admin API.
    Sessions(oneshot::Sender<Vec<Session>>),
    /// Delete the allocations with this admin ID or of this user; replies how many went.
    Kick {
        id: Option<String>,
        user: Option<String>,
        reply: oneshot::Sender<usize>,
    },
    /// The worker's counters and gauges, for `/metrics` and `/admin/status`.
    Snapshot(oneshot::Sender<WorkerSnapshot>),
    /// New settings from a config reload (see [`crate::turn::Manager::reload`]).
    Reload(Box<Reload>, oneshot::Sender<()>),
    /// New credentials only (`[auth] redis` changed): the rest of the settings stay.
    SetAuth(Arc<Auth>, oneshot::Sender<()>),
    /// Refuse new allocations (300 to this alternate, or 508).
    Drain(Option<SocketAddr>, oneshot::Sender<()>),
    /// Delete every allocation and reservation (shutdown); replies how many allocations went.
    Clear(oneshot::Sender<usize>),
    /// A TURN TCP/TLS connection the accept loop hands over: from now on the worker serves
    /// it ([`super::conns`]); `client` is the socket's peer or the client a load balancer's
    /// PROXY header named; `tls` is the `turns:` listener's config; `guards` keep it
    /// counted until it closes.
    Accept {
        stream: std::net::TcpStream,
        client: SocketAddr,
        tls: Option<Arc<rustls::ServerConfig>>,
        guards: Guards,
    },
    /// A TLS connection of the shared `turns:`/HTTPS port, handshaken on the tokio side
    /// and found to speak STUN ([`super::shared_tls`]): the worker serves it from now on.
    AcceptTls(Box<EstablishedTls>),
}

/// A TURN-over-TLS connection whose handshake is done, as handed to a worker.
pub(super) struct EstablishedTls {
    /// The socket.
    pub(super) stream: std::net::TcpStream,
    /// Its 5-tuple, with the client address the listener was given.
    pub(super) tuple: FiveTuple,
    /// The TLS session, holding whatever it read past the handshake.
    pub(super) session: Box<rustls::ServerConnection>,
    /// Plaintext already read from the session (the bytes that told STUN from HTTP).
    pub(super) prefix: Vec<u8>,
    /// What keeps it counted until it closes.
    pub(super) guards: Guards,
}

/// What a reload hands every worker.
pub(super) struct Reload {
    pub(super) config: TurnConfig,
    pub(super) auth: Arc<Auth>,
    pub(super) rules: Arc<PeerRules>,
    /// Set while draining: the alternate server to keep refusing new allocations with.
    pub(super) draining: Option<Option<SocketAddr>>,
    /// `unauthenticated-rate` and `unauthenticated-burst`.
    pub(super) rate: u32,
    pub(super) burst: u32,
}

/// One worker's counters and gauges; [`WorkerSnapshot::add`] sums them over workers.
#[derive(Debug, Default, Clone)]
pub(crate) struct WorkerSnapshot {
    /// The allocation manager's counters.
    pub(crate) turn: TurnMetrics,
    /// Live allocations by client transport: UDP, TCP, TLS.
    pub(crate) by_transport: [usize; 3],
    /// Relay sockets bound.
    pub(crate) relays_in_use: usize,
    /// Relay ports reserved (EVEN-PORT R=1), by every worker: the pool is shared, so the
    /// sum keeps the largest, not the total.
    pub(crate) reserved: usize,
    /// Sources the unauthenticated-request limiter tracks.
    pub(crate) limited_sources: usize,
    /// Whether new allocations are refused.
    pub(crate) draining: bool,
    /// Channels the kernel relays by itself (#18).
    pub(crate) offloaded: usize,
}

impl WorkerSnapshot {
    /// Adds `other` (another worker's) into `self`.
    pub(super) fn add(&mut self, other: &Self) {
        self.turn.add(&other.turn);
        for (total, n) in self.by_transport.iter_mut().zip(other.by_transport) {
            *total += n;
        }
        self.relays_in_use += other.relays_in_use;
        self.reserved = self.reserved.max(other.reserved);
        self.limited_sources += other.limited_sources;
        self.draining |= other.draining;
        self.offloaded += other.offloaded;
    }

    /// Live allocations.
    pub(crate) fn allocations(&self) -> usize {
        self.by_transport.iter().sum()
    }
}
