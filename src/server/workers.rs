//! The tokio side's handle on the workers ([`super::datapath`]): [`Workers`] starts one
//! event loop per shard and is the only way to reach them afterwards, through each one's
//! command channel and mio waker ([`Command`]); answers come back over `oneshot`s. Nothing
//! here is touched per relayed UDP packet, and no lock is shared with the loops.
//!
//! State that spans workers is not here: the relay port pools ([`super::ports`]) and the
//! quotas and reservations ([`crate::turn::quota`]) are shared by every worker's manager.

use std::hash::BuildHasher;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use mio::Waker;
use tokio::sync::{mpsc, oneshot};

use super::command::{Command, EstablishedTls, Reload, WorkerSnapshot};
use super::conns::Guards;
use super::datapath::{self, Poller, WorkerParts};
use super::handoff::{Handoffs, Inbox};
use super::limiter::SourceLimiter;
use super::mobility::{self, Moves};
use super::offload::{Kernel, WorkerOffload};
use super::ports::Pools;
use super::relay::RelayTable;
use super::shard::Shard;
use super::stats::Stats;
use super::stream::Limits;
use super::tcp_relay::{TcpRelays, Waiting};
use crate::auth::Auth;
use crate::turn::peer_rules::PeerRules;
use crate::turn::quota::Quotas;
use crate::turn::{FiveTuple, Manager, Session, TurnConfig};

/// Commands a worker's channel holds before senders wait (TCP frames are the bulk).
const QUEUE: usize = 1024;

/// What every worker's shard is built from.
pub(super) struct Setup<'a> {
    pub(super) config: &'a TurnConfig,
    pub(super) auth: &'a Arc<Auth>,
    pub(super) rules: &'a Arc<PeerRules>,
    pub(super) quotas: &'a Arc<Quotas>,
    /// The relay port pools of `relay.min-port..=relay.max-port`, shared by every worker.
    pub(super) ports: &'a Pools,
    /// `unauthenticated-rate` and `unauthenticated-burst`.
    pub(super) rate: (u32, u32),
    /// The UDP listen sockets of each worker.
    pub(super) listen: Vec<Vec<std::net::UdpSocket>>,
    /// What TURN TCP/TLS connections are held to.
    pub(super) stream_limits: Limits,
    pub(super) stats: &'a Stats,
    /// The kernel fast path: each worker's handle on its maps, if it is on.
    pub(super) kernel: &'a Kernel,
    /// `[stun] only`: TURN requests refused with 403.
    pub(super) stun_only: bool,
    /// RFC 5780's four addresses, if `[stun] other-address` is set.
    pub(super) rfc5780: Option<crate::stun::rfc5780::Addresses>,
}

/// One worker, as the tokio side sees it.
struct Handle {
    commands: mpsc::Sender<Command>,
    waker: Arc<Waker>,
    notified: Arc<AtomicBool>,
}

/// The running workers.
pub(crate) struct Workers {
    handles: Vec<Handle>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    stop: Arc<AtomicBool>,
    hasher: std::collections::hash_map::RandomState,
    /// RFC 6062 peer connections waiting for a ConnectionBind, shared by every worker.
    waiting: Arc<Waiting>,
}

impl Workers {
    /// Builds one shard per entry of `setup.listen` and starts its loop.
    pub(super) fn start(setup: Setup<'_>) -> io::Result<Self> {
        let now = Instant::now();
        let unix_now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let pools = setup.ports.both();
        // RFC 6062 peer connections waiting for a ConnectionBind, which may reach any worker.
        let waiting = Arc::new(Waiting::default());
        let mut workers = Self {
            handles: Vec::new(),
            threads: Mutex::new(Vec::new()),
            stop: Arc::new(AtomicBool::new(false)),
            hasher: Default::default(),
            waiting: Arc::clone(&waiting),
        };
        // Every loop's poll set first: each worker's inbox of hand-offs wakes its loop.
        let pollers =
            (setup.listen.iter().map(|_| Poller::new())).collect::<io::Result<Vec<_>>>()?;
        let inboxes: Arc<[Inbox]> = pollers.iter().map(|p| Inbox::new(p.waker())).collect();
        // RFC 8016: one ticket key and one table of moved clients for every worker.
        let moved = mobility::Shared {
            reports: pollers.iter().map(|_| Default::default()).collect(),
            inboxes: pollers
                .iter()
                .map(|p| mobility::Inbox::new(p.waker()))
                .collect(),
            adoptions: pollers
                .iter()
                .map(|p| mobility::Adoptions::new(p.waker()))
                .collect(),
            key: crate::turn::ticket::TicketKey::random(),
        };
        for ((index, listen), poller) in setup.listen.into_iter().enumerate().zip(pollers) {
            let counters = setup.stats.register();
            let handoffs = Handoffs::new(
                index,
                Arc::clone(&inboxes),
                pools.clone(),
                Arc::clone(&counters),
            );
            let mut manager = Manager::new(
                setup.config.clone(),
                Arc::clone(setup.auth),
                Arc::clone(setup.rules),
                Arc::clone(setup.quotas),
                now,
                unix_now,
            );
            let offload = (setup.kernel.maps(index))
                .map(|maps| WorkerOffload::new(maps, Arc::clone(&counters), now));
            manager.set_offload(offload.is_some());
            // At most 1024 workers (`server.workers`).
            manager.set_mobility(index as u16, moved.key.clone());
            let shard = Shard {
                manager,
                relays: RelayTable::new(pools.clone(), poller.registry()?, index),
                limiter: SourceLimiter::new(setup.rate.0, setup.rate.1, now),
                handoffs,
                offload,
                stun_only: setup.stun_only,
                rfc5780: setup.rfc5780,
                moves: Moves::new(index, moved.clone(), Arc::clone(&counters)),
                tcp: TcpRelays::new(
                    pools.clone(),
                    poller.registry()?,
                    index,
                    Arc::clone(&waiting),
                ),
            };
            let (tx, rx) = mpsc::channel(QUEUE);
            let notified = Arc::new(AtomicBool::new(false));
            workers.handles.push(Handle {
                commands: tx,
                waker: poller.waker(),
                notified: Arc::clone(&notified),
            });
            let parts = WorkerParts {
                poller,
                shard,
                listen,
                commands: rx,
                notified,
                counters,
                stream_limits: setup.stream_limits,
            };
            match datapath::spawn(index, parts, Arc::clone(&workers.stop)) {
                Ok(thread) => workers.lock_threads().push(thread),
                Err(e) => {
                    workers.stop();
                    return Err(e);
                }
            }
        }
        Ok(workers)
    }

    fn lock_threads(&self) -> std::sync::MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.threads.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// RFC 6062: every peer socket holds a permit of the descriptor budget from now on.
    pub(super) fn share_budget(&self, budget: &Arc<super::descriptors::Budget>) {
        self.waiting.share_budget(budget);
    }

    /// How many workers run.
    pub(crate) fn count(&self) -> usize {
        self.handles.len()
    }

    /// The worker a TCP/TLS connection (and so its allocation) lives on.
    fn worker_for(&self, tuple: &FiveTuple) -> usize {
        (self.hasher.hash_one(tuple) % self.handles.len().max(1) as u64) as usize
    }

    /// Queues `command` for `worker` (waiting while its channel is full) and wakes it;
    /// `false` once the workers have stopped.
    async fn send(&self, worker: usize, command: Command) -> bool {
        let Some(handle) = self.handles.get(worker) else {
            return false;
        };
        if handle.commands.send(command).await.is_err() {
            return false;
        }
        if !handle.notified.swap(true, Ordering::AcqRel) {
            let _ = handle.waker.wake();
        }
        true
    }

    /// Asks every worker and collects the answers (none from a stopped worker).
    async fn ask_all<T>(&self, mut ask: impl FnMut(oneshot::Sender<T>) -> Command) -> Vec<T> {
        let mut waiting = Vec::with_capacity(self.handles.len());
        for worker in 0..self.handles.len() {
            let (tx, rx) = oneshot::channel();
            if self.send(worker, ask(tx)).await {
                waiting.push(rx);
            }
        }
        let mut answers = Vec::with_capacity(waiting.len());
        for rx in waiting {
            if let Ok(answer) = rx.await {
                answers.push(answer);
            }
        }
        answers
    }

    /// Every allocation, for the admin API.
    pub(crate) async fn sessions(&self) -> Vec<Session> {
        (self.ask_all(Command::Sessions).await)
            .into_iter()
            .flatten()
            .collect()
    }

    /// Deletes the allocations whose admin ID is `id` or whose user is `user`; returns how
    /// many went.
    pub(crate) async fn kick(&self, id: Option<&str>, user: Option<&str>) -> usize {
        let ask = |reply| Command::Kick {
            id: id.map(str::to_owned),
            user: user.map(str::to_owned),
            reply,
        };
        self.ask_all(ask).await.into_iter().sum()
    }

    /// Counters and gauges added up over every worker.
    pub(crate) async fn snapshot(&self) -> WorkerSnapshot {
        let mut total = WorkerSnapshot::default();
        for one in self.ask_all(Command::Snapshot).await {
            total.add(&one);
        }
        total
    }

    /// New settings from a config reload; returns once every worker applied them.
    pub(super) async fn reload(
        &self,
        config: &TurnConfig,
        auth: &Arc<Auth>,
        rules: &Arc<PeerRules>,
        draining: Option<Option<SocketAddr>>,
        rate: (u32, u32),
    ) {
        let ask = |reply| {
            let reload = Reload {
                config: config.clone(),
                auth: Arc::clone(auth),
                rules: Arc::clone(rules),
                draining,
                rate: rate.0,
                burst: rate.1,
            };
            Command::Reload(Box::new(reload), reply)
        };
        self.ask_all(ask).await;
    }

    /// New credentials (a read of `[auth] redis` that changed them); returns once every
    /// worker applied them.
    pub(super) async fn set_auth(&self, auth: &Arc<Auth>) {
        self.ask_all(|reply| Command::SetAuth(Arc::clone(auth), reply))
            .await;
    }

    /// Refuse new allocations from now on (300 with `alternate`, else 508).
    pub(super) async fn drain(&self, alternate: Option<SocketAddr>) {
        self.ask_all(|reply| Command::Drain(alternate, reply)).await;
    }

    /// Deletes every allocation and reservation (shutdown); returns how many allocations
    /// there were.
    pub(super) async fn clear(&self) -> usize {
        self.ask_all(Command::Clear).await.into_iter().sum()
    }

    /// Hands an accepted TURN TCP/TLS connection (with the `turns:` listener's TLS config,
    /// and the guards that keep it counted) to the worker its 5-tuple hashes to, which
    /// serves it from then on. Dropped (and so closed) once the workers have stopped.
    pub(super) async fn accept(
        &self,
        tuple: &FiveTuple,
        stream: std::net::TcpStream,
        tls: Option<Arc<rustls::ServerConfig>>,
        guards: Guards,
    ) {
        let worker = self.worker_for(tuple);
        let accept = Command::Accept {
            stream,
            client: tuple.client,
            tls,
            guards,
        };
        self.send(worker, accept).await;
    }

    /// Hands a TURN-over-TLS connection handshaken on the tokio side (the shared
    /// `turns:`/HTTPS port) to the worker its 5-tuple hashes to. Dropped (and so closed)
    /// once the workers have stopped.
    pub(super) async fn accept_tls(&self, tls: EstablishedTls) {
        let worker = self.worker_for(&tls.tuple);
        self.send(worker, Command::AcceptTls(Box::new(tls))).await;
    }

    /// Stops every loop and waits for it (blocking: call from a blocking thread); the
    /// listen and relay sockets close on return.
    pub(super) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        for handle in &self.handles {
            let _ = handle.waker.wake();
        }
        let threads = std::mem::take(&mut *self.lock_threads());
        for thread in threads {
            if thread.join().is_err() {
                tracing::error!("a worker's event loop panicked");
            }
        }
    }
}
