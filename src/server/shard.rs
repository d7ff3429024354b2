//! One worker's shard, owned by its event loop ([`super::datapath`]) and by nothing else:
//! the allocation manager, the relay sockets its allocations hold, its TURN TCP/TLS clients
//! and the rate limit of unauthenticated requests from the sources it serves. A UDP listen
//! socket always serves the same shard (SO_REUSEPORT keeps a client on one socket), a TCP
//! connection is hashed to one by the accept loop ([`super::workers::Workers::accept`]), and a relay
//! socket belongs to the shard of its allocation, so shards never wait on each other.
//!
//! [`Dispatcher`] is what a client-facing socket does with each packet: ChannelData goes
//! straight to the peer without touching the STUN decoder, Binding is answered locally (over
//! UDP with RFC 5780's [`Dispatcher::route`] when the answer leaves from another socket), TURN
//! requests and Send indications go to the shard's manager (under `[stun] only` TURN requests
//! get 403 and Send indications are dropped). Data for one of rturn's own relay
//! endpoints is handed over inside the process ([`super::handoff`]) instead of sent.
//! With the kernel fast path on, the shard also holds its worker's handle on the kernel's
//! channel maps ([`super::offload`]), which acts on the manager's offload events. A UDP
//! datagram from a client whose allocation moved to another worker (RFC 8016) goes there
//! ([`super::mobility`]), looked for only when this shard holds no allocation for it.

use std::net::SocketAddr;
use std::time::Instant;

use stun::attributes::{ATTR_MESSAGE_INTEGRITY, ATTR_MESSAGE_INTEGRITY_SHA256};
use stun::message::{CLASS_INDICATION, CLASS_REQUEST, METHOD_BINDING, METHOD_SEND, Message};

use super::handoff::Handoffs;
use super::limiter::SourceLimiter;
use super::mobility::Moves;
use super::offload::WorkerOffload;
use super::relay::RelayTable;
use super::tcp_relay::{TcpRelays, is_tcp_slot};
use crate::stun::codec::{PacketKind, decode_into, packet_kind};
use crate::stun::rfc5780::Addresses;
use crate::stun::{Malformed, Responder};
use crate::turn::{Answer, Bound, Event, FiveTuple, Manager, PortChoice, ToPeer, Transport};

/// One shard: an allocation manager, the relay sockets of its allocations, the rate limit
/// of unauthenticated requests, and the data it hands to rturn's own relays this turn. (Its
/// TCP/TLS clients are in [`super::conns`].)
pub(super) struct Shard {
    pub(super) manager: Manager,
    pub(super) relays: RelayTable,
    pub(super) limiter: SourceLimiter,
    pub(super) handoffs: Handoffs,
    /// The kernel's channel maps; `None` while the offload is off.
    pub(super) offload: Option<WorkerOffload>,
    /// `[stun] only`: every TURN request is refused with 403.
    pub(super) stun_only: bool,
    /// RFC 5780's four addresses (`[stun] other-address`), if configured.
    pub(super) rfc5780: Option<Addresses>,
    /// Datagrams of clients whose allocation moved to another worker (RFC 8016).
    pub(super) moves: Moves,
    /// Its TCP allocations' listeners and connects (RFC 6062).
    pub(super) tcp: TcpRelays,
}

impl Shard {
    /// Does what the manager asked for since the last call: closes relay sockets, gives up
    /// reserved ports, puts channels into the kernel's maps and takes them out. Called after
    /// every input that may end an allocation, bind a channel or change a permission.
    pub(super) fn settle(&mut self) {
        while let Some(event) = self.manager.poll_event() {
            match (&event, &mut self.offload) {
                (Event::OffloadInsert(_) | Event::OffloadRemove(_), Some(offload)) => {
                    offload.apply(&mut self.manager, &event);
                }
                (Event::Close(bound), _) if is_tcp_slot(bound.slot) => self.tcp.close(*bound),
                _ => self.relays.handle_event(event),
            }
        }
        self.moves.settle(&mut self.manager);
    }

    /// Reads what the kernel relayed into the counters, when due or `force`d.
    pub(super) fn read_offload(&mut self, now: Instant, force: bool) {
        if let Some(offload) = &mut self.offload {
            offload.read(&mut self.manager, now, force);
        }
    }

    /// A readiness event for one of its TCP allocations' listeners or connects (RFC 6062);
    /// `true` when it is to be served again.
    pub(super) fn serve_tcp_relay(&mut self, slot: usize, now: Instant) -> bool {
        self.tcp.serve(slot, &mut self.manager, now)
    }

    /// Sends a client's `data` where the manager routed it: out of a relay socket, or handed
    /// to one of rturn's own relays. False when it went nowhere.
    fn send_to_peer(&mut self, to: ToPeer, data: &[u8]) -> bool {
        match to {
            ToPeer::Out { slot, peer } => self.relays.send_to(slot, data, peer),
            ToPeer::Handoff { to, from } => self.handoffs.push(from, to, data),
        }
    }

    /// Answers a TURN request into `reply`, binding the relay sockets an Allocate needs.
    fn request(&mut self, now: Instant, tuple: FiveTuple, req: &Message, reply: &mut Vec<u8>) {
        reply.clear();
        match self.manager.handle_request(now, tuple, req) {
            Answer::Reply(answer) => reply.extend_from_slice(answer),
            Answer::Later => self.tcp.handle_orders(&mut self.manager, now, reply),
            Answer::Bind(wanted) => {
                let mut bound: Vec<Bound> = Vec::with_capacity(wanted.len());
                for (ip, choice) in wanted {
                    let relay = match choice {
                        PortChoice::Tcp => self.tcp.bind(ip),
                        choice => self.relays.bind(ip, choice),
                    };
                    match relay {
                        Some(relay) => bound.push(relay),
                        None => break,
                    }
                }
                let answer = self.manager.allocate_bound(now, tuple, req, &bound);
                reply.extend_from_slice(answer);
            }
        }
        self.settle();
    }
}

/// What became of one packet from a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Handled {
    /// An answer is in [`Dispatcher::reply`].
    Reply,
    /// Data went to a peer.
    Relayed,
    /// Well-formed but nothing to do (no allocation, no permission, a response...).
    Ignored,
    /// Not a usable packet.
    Malformed(Malformed),
    /// An unauthenticated request past its source's token bucket: not answered.
    RateLimited,
}

/// Per-socket (or per-connection) scratch space for handling client packets.
pub(super) struct Dispatcher {
    request: Message,
    responder: Responder,
    /// The answer to send back, valid after [`Handled::Reply`].
    pub(super) reply: Vec<u8>,
    /// After [`Handled::Reply`] to a UDP Binding under RFC 5780: the local address the
    /// answer leaves from and its destination, when either is not the request's own.
    pub(super) route: Option<(SocketAddr, SocketAddr)>,
}

impl Dispatcher {
    pub(super) fn new() -> Self {
        Self {
            request: Message::new(),
            responder: Responder::new(),
            reply: Vec::with_capacity(256),
            route: None,
        }
    }

    /// Handles one datagram or stream frame from the client of `tuple`.
    pub(super) fn handle(
        &mut self,
        shard: &mut Shard,
        now: Instant,
        tuple: FiveTuple,
        packet: &[u8],
    ) -> Handled {
        // RFC 8016: moves other workers made first, so no datagram from a 5-tuple that just
        // changed hands reaches the allocation that held it before.
        if tuple.transport == Transport::Udp && shard.moves.catch_up(&mut shard.manager, now) {
            shard.settle();
        }
        match packet_kind(packet) {
            PacketKind::ChannelData => return channel_data(shard, now, &tuple, packet),
            PacketKind::Other => return Handled::Malformed(Malformed::NotStun),
            PacketKind::Stun => {}
        }
        self.route = None;
        if let Err(e) = decode_into(packet, &mut self.request) {
            return Handled::Malformed(e);
        }
        let req = &self.request;
        let source = tuple.client.ip();
        match (req.typ.class, req.typ.method) {
            (CLASS_REQUEST, METHOD_BINDING) => {
                if !shard.limiter.allow(source, now) {
                    return Handled::RateLimited;
                }
                let (client, server) = (tuple.client, tuple.server);
                let answer = match tuple.transport {
                    Transport::Udp => {
                        let addresses = shard.rfc5780.as_ref();
                        let (answer, from, to) =
                            self.responder.answer_udp(req, client, server, addresses);
                        if (from, to) != (server, client) {
                            self.route = Some((from, to));
                        }
                        answer
                    }
                    _ => self.responder.answer(req, client),
                };
                self.reply.clear();
                self.reply.extend_from_slice(answer);
                Handled::Reply
            }
            (CLASS_REQUEST, _) if shard.stun_only => {
                if !shard.limiter.allow(source, now) {
                    return Handled::RateLimited;
                }
                // RFC 8656 §6: 403, "cannot be performed due to administrative or similar
                // restrictions": the method is known, this server is told not to serve it.
                let answer = self.responder.refuse(req, 403);
                self.reply.clear();
                self.reply.extend_from_slice(answer);
                Handled::Reply
            }
            (CLASS_REQUEST, _) => {
                // Without MESSAGE-INTEGRITY the answer is a 401 (or 420): no need to build it
                // when the source may not have it. Checked before a ticket is opened or the
                // request handed to another worker, so neither escapes this worker's limiter.
                let signed = req.contains(ATTR_MESSAGE_INTEGRITY)
                    || req.contains(ATTR_MESSAGE_INTEGRITY_SHA256);
                if !signed && !shard.limiter.allow(source, now) {
                    return Handled::RateLimited;
                }
                // A client whose allocation another worker holds is served there.
                if (shard.moves).divert_request(&shard.manager, tuple, req, packet) {
                    return Handled::Relayed;
                }
                shard.request(now, tuple, req, &mut self.reply);
                if self.reply.is_empty() {
                    return Handled::Ignored;
                }
                // Signed but not valid (stale nonce, wrong key...): unauthenticated too.
                if signed
                    && !shard.manager.answered_authenticated()
                    && !shard.limiter.allow(source, now)
                {
                    return Handled::RateLimited;
                }
                Handled::Reply
            }
            (CLASS_INDICATION, METHOD_SEND) if shard.stun_only => Handled::Ignored,
            (CLASS_INDICATION, METHOD_SEND) => {
                let sent = (shard.manager.handle_send(now, tuple, req))
                    .is_some_and(|(to, data)| shard.send_to_peer(to, data));
                if sent || shard.moves.divert_data(&shard.manager, tuple, packet) {
                    Handled::Relayed
                } else {
                    Handled::Ignored
                }
            }
            _ => Handled::Ignored,
        }
    }
}

/// ChannelData from a client (RFC 8656 §12.4): header checked, payload sent to the bound peer
/// straight from the receive buffer. Over UDP the padding may be absent.
fn channel_data(shard: &mut Shard, now: Instant, tuple: &FiveTuple, packet: &[u8]) -> Handled {
    let (channel, payload) = match crate::stun::channel_data::parse(packet) {
        Ok(cd) => (cd.channel, cd.payload),
        Err(e) => return Handled::Malformed(e),
    };
    let len = payload.len();
    let sent = (shard.manager.channel_route(now, tuple, channel, len))
        .is_some_and(|to| shard.send_to_peer(to, payload));
    if sent || shard.moves.divert_data(&shard.manager, *tuple, packet) {
        Handled::Relayed
    } else {
        Handled::Ignored
    }
}
