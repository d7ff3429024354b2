//! Black-box: RFC 8016 mobility (`[relay] mobility`). A client that changes address (a new
//! local socket, so a new source port the kernel may hash to another of the two workers)
//! keeps its allocation with a Refresh carrying its MOBILITY-TICKET: relaying goes on both
//! ways, ChannelData and Send/Data indications, with the kernel fast path on and off (its
//! channel leaves the kernel's maps and comes back with the new client address), and the old
//! address reaches nothing. Forged tickets, another user's credentials and mobility off are
//! refused as RFC 8016 says; a reload turns it on. Over TCP the new connection is handed to
//! the allocation's worker when another one accepted it. And coturn's own client,
//! `turnutils_uclient -M`, which allocates and then moves every client to a new socket (UDP
//! and TCP), loses nothing.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use rturn::client::Request;
use rturn::testkit::*;
use rturn::turn::ticket::ATTR_MOBILITY_TICKET;

/// Moves of one client at least, and at most: it moves on until one of them landed on the
/// other worker than its allocation's (each does with even odds).
const MOVES: usize = 8;
const MAX_MOVES: usize = 40;
/// How long a packet that must not arrive is waited for.
const SILENCE: Duration = Duration::from_millis(300);
const CHANNEL: u16 = 0x4000;

/// Two workers, loopback relays and peers, `/metrics`, alice and bob; `relay` adds
/// `[relay]` lines (mobility, offload).
fn config(relay: &str) -> String {
    loopback_config(&format!(
        "[server]\nworkers = 2\n[relay]\nrelay-ip = \"127.0.0.1\"\nallow-loopback-peers = true\n\
         {relay}\n[auth.users]\nalice = \"wonderland\"\nbob = \"builder\"\n"
    ))
    .replace("tcp = [", "http = \"127.0.0.1:0\"\ntcp = [")
}

fn mobile_allocate(server: &Server, user: &str, pass: &str) -> Result<RawTurn, u16> {
    let ask = Request::allocate().attr(ATTR_MOBILITY_TICKET, &[]);
    RawTurn::try_allocate_with(server.udp[0], user, pass, &ask).map_err(|m| {
        rturn::client::Response::from_message(&m)
            .map(|r| r.code())
            .unwrap_or(0)
    })
}

/// A client with a channel and a permission to a peer socket of its own.
struct Moving {
    client: RawTurn,
    peer: UdpSocket,
    relay: SocketAddr,
}

impl Moving {
    fn start(server: &Server) -> Moving {
        let mut client = mobile_allocate(server, "alice", "wonderland").expect("allocated");
        assert_eq!(client.ticket.as_ref().map(Vec::len), Some(32), "a ticket");
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(TIMEOUT)).unwrap();
        let peer_addr = peer.local_addr().unwrap();
        assert_eq!(client.channel_bind(CHANNEL, peer_addr), 0);
        assert_eq!(client.create_permission(peer_addr), 0);
        let relay = client.relays[0];
        Moving {
            client,
            peer,
            relay,
        }
    }

    /// ChannelData and a Send indication to the peer, and back as ChannelData and a Data
    /// indication, each delivered intact from and to the relay.
    fn round_trip(&mut self, tag: &str, log: impl Fn() -> String) {
        let peer_addr = self.peer.local_addr().unwrap();
        let mut buf = [0u8; 1500];
        for (i, indication) in [(0, false), (1, true)] {
            let out = format!("{tag}: to the peer {i}");
            if indication {
                self.client.send_indication(peer_addr, out.as_bytes());
            } else {
                self.client.channel_data(CHANNEL, out.as_bytes());
            }
            let (n, from) = self.peer.recv_from(&mut buf).expect("the peer receives");
            assert_eq!((&buf[..n], from), (out.as_bytes(), self.relay), "{tag}");
        }
        let back = format!("{tag}: to the client");
        self.peer.send_to(back.as_bytes(), self.relay).unwrap();
        let want = Relayed::Channel {
            channel: CHANNEL,
            data: back.into_bytes(),
        };
        assert_eq!(
            self.client.next_relayed(TIMEOUT),
            Some(want),
            "{tag}; log:\n{}",
            log()
        );
    }

    /// The client moves to a new socket and refreshes with its ticket; returns the old socket.
    fn moves(&mut self) -> UdpSocket {
        let ticket = self.client.ticket.clone().expect("a ticket");
        let old = self.client.new_socket();
        assert_eq!(self.client.refresh_with_ticket(&ticket), 0, "moved");
        assert_eq!(
            self.client.ticket.as_ref(),
            Some(&ticket),
            "the same ticket"
        );
        old
    }
}

fn moves_keep_relaying(offload: &str) {
    let server = Server::start(&config(&format!(
        "mobility = true\noffload = \"{offload}\""
    )));
    let log = || server.log();
    let mut moving = Moving::start(&server);
    moving.round_trip("before", log);
    let kernel = sample(&server.metrics(), "rturn_offload_channels");
    if offload == "auto" && sample(&server.metrics(), "rturn_offload_active") == 1.0 {
        assert_eq!(kernel, 1.0, "the channel is in the kernel");
    }
    let forwarded = || {
        let name = "rturn_mobility_forwarded_total{result=\"forwarded\"}";
        sample(&server.metrics(), name)
    };
    let mut moves = 0;
    while moves < MOVES || (forwarded() == 0.0 && moves < MAX_MOVES) {
        let round = moves;
        moves += 1;
        let old = moving.moves();
        moving.round_trip(&format!("move {round}"), log);
        // The old address reaches nothing: its ChannelData goes nowhere, and nothing comes
        // back to it.
        let frame = rturn::client::channel_data(CHANNEL, b"from the old address").unwrap();
        old.send(&frame).unwrap();
        moving.peer.set_read_timeout(Some(SILENCE)).unwrap();
        let mut buf = [0u8; 1500];
        assert!(
            moving.peer.recv_from(&mut buf).is_err(),
            "move {round}: old address relayed"
        );
        moving.peer.set_read_timeout(Some(TIMEOUT)).unwrap();
        old.set_read_timeout(Some(SILENCE)).unwrap();
        assert!(
            old.recv(&mut buf).is_err(),
            "move {round}: old address answered"
        );
    }
    // The channel is in the kernel as often as before the moves (with the new address).
    assert_eq!(sample(&server.metrics(), "rturn_offload_channels"), kernel);
    let moved = sample(&server.metrics(), "rturn_allocations_moved_total");
    assert_eq!(moved, moves as f64);
    assert!(forwarded() > 0.0, "no move crossed workers in {moves}");
    let live = "rturn_allocations{transport=\"udp\"}";
    assert_eq!(sample(&server.metrics(), live), 1.0);
}

#[test]
fn a_client_that_changes_address_keeps_relaying_with_the_offload() {
    moves_keep_relaying("auto");
}

#[test]
fn a_client_that_changes_address_keeps_relaying_without_the_offload() {
    moves_keep_relaying("off");
}

#[test]
fn forged_tickets_other_users_and_dead_allocations_are_refused() {
    let server = Server::start(&config("mobility = true"));
    let mut alice = mobile_allocate(&server, "alice", "wonderland").unwrap();
    let ticket = alice.ticket.clone().unwrap();
    for _ in 0..4 {
        // Fresh sockets, so some land on the other worker.
        let mut garbled = ticket.clone();
        garbled[7] ^= 1;
        let mut eve = RawTurn::login(server.udp[0], "alice", "wonderland");
        assert_eq!(eve.refresh_with_ticket(&garbled), 400);
        assert_eq!(eve.refresh_with_ticket(b"not a ticket"), 400);
        let mut bob = RawTurn::login(server.udp[0], "bob", "builder");
        assert_eq!(bob.refresh_with_ticket(&ticket), 441);
    }
    // Still alice's, where it was.
    assert_eq!(alice.request(&Request::refresh(600)).code(), 0);
    assert_eq!(alice.request(&Request::refresh(0)).code(), 0);
    for _ in 0..4 {
        let mut late = RawTurn::login(server.udp[0], "alice", "wonderland");
        assert_eq!(late.refresh_with_ticket(&ticket), 437);
    }
}

#[test]
fn mobility_off_refuses_tickets_and_a_reload_turns_it_on() {
    let mut server = Server::start(&config(""));
    assert_eq!(
        mobile_allocate(&server, "alice", "wonderland").err(),
        Some(405)
    );
    let mut plain = RawTurn::allocate(server.udp[0], "alice", "wonderland", false);
    assert_eq!(plain.refresh_with_ticket(&[b'A'; 32]), 405);
    // A reload turns it on for new requests.
    std::fs::write(&server.config_path, config("mobility = true")).unwrap();
    kill(Pid::from_raw(server.pid() as i32), Signal::SIGHUP).unwrap();
    server.wait_line(|l| l.contains("configuration reloaded"));
    let mut moving = Moving::start(&server);
    let log = || server.log();
    moving.moves();
    moving.round_trip("after the reload", log);
}

/// turnutils_uclient with `flags` and `-M` against `server`: what it printed.
fn uclient_mobile(server: &Server, flags: &[&str]) -> String {
    let peer = EchoPeer::start();
    let flags = [flags, &["-M"]].concat();
    uclient_run(server, &peer, &flags, 10, 40)
}

#[test]
fn uclient_moves_its_clients_and_loses_nothing() {
    let mut moved = 0.0;
    // A server per run: the allocations a finished uclient left behind stay until they
    // expire, and a later run's socket may get one of their ports (a move onto such a
    // 5-tuple is tested on its own below).
    for flags in [&["-c"][..], &[], &["-t", "-c"]] {
        let server = Server::start(&config("mobility = true"));
        let text = uclient_mobile(&server, flags);
        let summary = || {
            format!(
                "uclient -M {flags:?}:\n{text}\nserver log:\n{}",
                server.log()
            )
        };
        assert_all_arrived(&text, 10, 40, summary);
        moved += sample(&server.metrics(), "rturn_allocations_moved_total");
    }
    // Every client (and each RTCP twin without -c) moved once per run.
    assert!(moved >= 30.0, "moved {moved}");
}

#[test]
fn uclient_asking_for_mobility_is_refused_when_it_is_off() {
    let server = Server::start(&config(""));
    let text = uclient_mobile(&server, &["-c"]);
    assert!(!text.contains("Total lost packets 0"), "{text}");
    let refused = sample(
        &server.metrics(),
        "rturn_requests_refused_total{code=\"405\"}",
    );
    assert!(refused >= 1.0, "{text}\n{}", server.log());
}

/// A Refresh with `ticket` over a new TCP connection, signed as alice: its error code (0
/// for a success) and the ticket it gave.
fn tcp_refresh_with_ticket(stream: &mut std::net::TcpStream, ticket: &[u8]) -> (u16, Vec<u8>) {
    use stun::attributes::ATTR_LIFETIME;
    use stun::message::METHOD_REFRESH;
    let add = |m: &mut stun::message::Message| {
        m.add(ATTR_LIFETIME, &600u32.to_be_bytes());
        m.add(ATTR_MOBILITY_TICKET, ticket);
    };
    let challenge = tcp_exchange(stream, &turn_request(METHOD_REFRESH, None, add));
    assert_eq!(error_code(&challenge), Some(401));
    let nonce = rturn::client::Response::from_message(&challenge)
        .unwrap()
        .nonce
        .expect("a nonce");
    let signed = turn_request(METHOD_REFRESH, Some(alice(&nonce)), add);
    let answer = tcp_exchange(stream, &signed);
    let next = rturn::turn::attrs::value(&answer, ATTR_MOBILITY_TICKET).unwrap_or_default();
    (error_code(&answer).unwrap_or(0), next.to_vec())
}

/// Reads one ChannelData message from a stream: its channel and payload.
fn read_channel_data(stream: &mut std::net::TcpStream) -> (u16, Vec<u8>) {
    use std::io::Read;
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).expect("ChannelData header");
    let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    let mut payload = vec![0; len.next_multiple_of(4)];
    stream
        .read_exact(&mut payload)
        .expect("ChannelData payload");
    payload.truncate(len);
    (u16::from_be_bytes([header[0], header[1]]), payload)
}

/// Over TCP a move is served whichever worker the accept loop gives the new connection to
/// (one that does not hold the allocation hands the connection over): the allocation moves
/// from UDP to a connection, then from connection to connection, relaying each time.
#[test]
fn moves_over_tcp_are_served_whichever_worker_takes_the_connection() {
    use std::io::Write;
    let server = Server::start(&config("mobility = true"));
    let mut moving = Moving::start(&server);
    moving.round_trip("over udp", || server.log());
    let mut ticket = moving.client.ticket.clone().unwrap();
    let mut streams = Vec::new();
    let handed = || {
        let name = "rturn_mobility_forwarded_total{result=\"connection\"}";
        sample(&server.metrics(), name)
    };
    let mut round = 0;
    while round < MOVES || (handed() == 0.0 && round < MAX_MOVES) {
        round += 1;
        let mut stream = tcp_client(server.tcp[0]);
        let (code, next) = tcp_refresh_with_ticket(&mut stream, &ticket);
        assert_eq!(code, 0, "move {round}; {}", server.log());
        assert_eq!(next, ticket, "the same ticket");
        ticket = next;
        let out = format!("over tcp {round:04}");
        let mut frame = rturn::client::channel_data(CHANNEL, out.as_bytes()).unwrap();
        // Padded to four bytes, as on any stream (RFC 8656 §12.5).
        frame.resize(frame.len().next_multiple_of(4), 0);
        stream.write_all(&frame).unwrap();
        let mut buf = [0u8; 1500];
        let (n, from) = moving.peer.recv_from(&mut buf).expect("the peer receives");
        assert_eq!((&buf[..n], from), (out.as_bytes(), moving.relay));
        let back = format!("back over tcp {round:04}");
        moving.peer.send_to(back.as_bytes(), moving.relay).unwrap();
        assert_eq!(read_channel_data(&mut stream), (CHANNEL, back.into_bytes()));
        // The previous connection stays open and reaches nothing.
        streams.push(stream);
    }
    let moved = sample(&server.metrics(), "rturn_allocations_moved_total");
    assert_eq!(moved, round as f64);
    assert!(
        handed() > 0.0,
        "no connection went to the other worker in {round}"
    );
}

/// Unsigned Refreshes carrying a genuine ticket, from an address that lands on the worker
/// that does not hold the allocation, meet that worker's source limiter before the ticket is
/// opened or the request handed over: past the bucket nothing crosses.
#[test]
fn unsigned_ticketed_refreshes_meet_the_limiter_before_they_cross_workers() {
    use stun::attributes::ATTR_LIFETIME;
    use stun::message::METHOD_REFRESH;
    const BURST: f64 = 3.0;
    const SENT: usize = 12;
    let limited = "workers = 2\nunauthenticated-rate = 1\nunauthenticated-burst = 3\n";
    let server = Server::start(&config("mobility = true").replace("workers = 2\n", limited));
    let alice = mobile_allocate(&server, "alice", "wonderland").expect("allocated");
    let ticket = alice.ticket.clone().expect("a ticket");
    let forwarded = || {
        let name = "rturn_mobility_forwarded_total{result=\"forwarded\"}";
        sample(&server.metrics(), name)
    };
    let unsigned = turn_request(METHOD_REFRESH, None, |m| {
        m.add(ATTR_LIFETIME, &600u32.to_be_bytes());
        m.add(ATTR_MOBILITY_TICKET, &ticket);
    });
    let mut crossed = false;
    // Each socket from its own loopback address (its own bucket), until one landed on the
    // other worker.
    for i in 0..40u8 {
        let ip = format!("127.0.{}.{}", 1 + i / 200, 2 + i % 200);
        let socket = UdpSocket::bind((ip.as_str(), 0)).unwrap();
        let before = forwarded();
        for _ in 0..SENT {
            socket.send_to(&unsigned.raw, server.udp[0]).unwrap();
        }
        // Every request past the limiter is answered (401), wherever it went: wait for the
        // first answer, then until the answers stop, so a slow server's handovers are not
        // counted for the next socket.
        let mut buf = [0u8; 1500];
        socket.set_read_timeout(Some(TIMEOUT)).unwrap();
        while socket.recv(&mut buf).is_ok() {
            socket.set_read_timeout(Some(SILENCE)).unwrap();
        }
        let crossing = forwarded() - before;
        assert!(
            crossing <= BURST,
            "{crossing} of {SENT} handed over past a bucket of {BURST}; {}",
            server.log()
        );
        if crossing > 0.0 {
            crossed = true;
            break;
        }
    }
    assert!(crossed, "no address landed on the other worker");
}

/// A moving Refresh over a new TCP connection followed at once, in the same write, by more
/// data: more than 64 KiB of ChannelData, or a few frames, bytes that frame as nothing and
/// the client's half-close. When another worker took the connection, its read stops at the
/// Refresh and the rest (the bad bytes and the end of the stream too) goes with the
/// connection, so the Refresh is answered and every frame reaches the peer, in order.
#[test]
fn a_tcp_move_pipelined_with_data_and_the_end_of_the_stream_loses_nothing() {
    use std::io::Write;
    use stun::attributes::ATTR_LIFETIME;
    use stun::message::METHOD_REFRESH;
    let server = Server::start(&config("mobility = true"));
    let mut moving = Moving::start(&server);
    moving.round_trip("over udp", || server.log());
    let ticket = moving.client.ticket.clone().unwrap();
    let handed = || {
        let name = "rturn_mobility_forwarded_total{result=\"connection\"}";
        sample(&server.metrics(), name)
    };
    let add = |m: &mut stun::message::Message| {
        m.add(ATTR_LIFETIME, &600u32.to_be_bytes());
        m.add(ATTR_MOBILITY_TICKET, &ticket);
    };
    // Per way (much data; a little and the end), whether a connection was handed over.
    let mut handed_over = [false; 2];
    let mut streams = Vec::new();
    for round in 1..=MAX_MOVES {
        let (closing, frames) = if round % 2 == 0 {
            (true, 4)
        } else {
            (false, 64)
        };
        let before = handed();
        let mut stream = tcp_client(server.tcp[0]);
        // The nonce from a Refresh without the ticket, which does not move the connection:
        // the moving one comes with the data.
        let plain = |m: &mut stun::message::Message| m.add(ATTR_LIFETIME, &600u32.to_be_bytes());
        let challenge = tcp_exchange(&mut stream, &turn_request(METHOD_REFRESH, None, plain));
        let nonce = rturn::client::Response::from_message(&challenge)
            .unwrap()
            .nonce
            .expect("a nonce");
        let mut burst = turn_request(METHOD_REFRESH, Some(alice(&nonce)), add).raw;
        let payload = |i: usize| format!("{round:02} {i:03} ").repeat(200).into_bytes();
        for i in 0..frames {
            let mut frame = rturn::client::channel_data(CHANNEL, &payload(i)).unwrap();
            frame.resize(frame.len().next_multiple_of(4), 0);
            burst.extend_from_slice(&frame);
        }
        if closing {
            // Bytes that frame as nothing: the connection ends there, after what came before.
            burst.extend_from_slice(&[0xff; 20]);
        }
        assert!(closing || burst.len() > 64 << 10);
        stream.write_all(&burst).unwrap();
        if closing {
            stream.shutdown(std::net::Shutdown::Write).unwrap();
        }
        let answer = read_stun(&mut stream);
        assert_eq!(
            u16::from_be_bytes([answer[0], answer[1]]),
            0x0104,
            "move {round}: a Refresh success; {}",
            server.log()
        );
        let mut buf = [0u8; 1500];
        for i in 0..frames {
            let (n, from) = moving.peer.recv_from(&mut buf).unwrap_or_else(|e| {
                panic!("move {round}, frame {i}: {e}; {}", server.log());
            });
            assert_eq!(
                (&buf[..n], from),
                (&payload(i)[..], moving.relay),
                "{round}"
            );
        }
        streams.push(stream);
        handed_over[usize::from(closing)] |= handed() > before;
        if handed_over == [true; 2] {
            return;
        }
    }
    panic!("not both ways went to the other worker in {MAX_MOVES}: {handed_over:?}");
}

/// A client moves onto an address and port whose last client left without a word (its
/// socket closed), so a stale allocation still holds that 5-tuple: the mover takes it, and
/// the stale one, detached, is still its own client's to take with its ticket. Repeated
/// until the stale allocation and the mover's were on different workers at least once.
#[test]
fn a_client_moving_onto_a_stale_allocations_address_takes_it() {
    let server = Server::start(&config("mobility = true"));
    let forwarded = || {
        let name = "rturn_mobility_forwarded_total{result=\"forwarded\"}";
        sample(&server.metrics(), name)
    };
    let mut rounds = 0;
    while rounds < 8 || (forwarded() == 0.0 && rounds < 40) {
        rounds += 1;
        let mut stale = Moving::start(&server);
        let stale_ticket = stale.client.ticket.clone().expect("a ticket");
        // Its client goes silent: the allocation's socket closes.
        let left = stale.client.new_socket();
        let address = left.local_addr().unwrap();
        drop(left);
        let mut mover = mobile_allocate(&server, "bob", "builder").expect("allocated");
        let ticket = mover.ticket.clone().expect("a ticket");
        let Ok(reused) = UdpSocket::bind(address) else {
            // Taken by someone else meanwhile: another round, leaving nothing live behind.
            assert_eq!(mover.request(&Request::refresh(0)).code(), 0);
            stale.client.new_socket();
            assert_eq!(stale.client.refresh_with_ticket(&stale_ticket), 0);
            assert_eq!(stale.client.request(&Request::refresh(0)).code(), 0);
            continue;
        };
        mover.use_socket(reused);
        assert_eq!(
            mover.refresh_with_ticket(&ticket),
            0,
            "round {rounds}: the mover takes {address}; log:\n{}",
            server.log()
        );
        let plain = mover.request(&Request::refresh(600));
        assert_eq!(plain.code(), 0, "its allocation is there now");
        // The stale allocation's client takes it back from yet another address.
        stale.client.new_socket();
        assert_eq!(stale.client.refresh_with_ticket(&stale_ticket), 0);
        stale.round_trip("taken back", || server.log());
        // Both leave with a word: a live allocation left on a closed socket's port would
        // meet a later round's socket that the kernel gives that port (441, 437).
        assert_eq!(mover.request(&Request::refresh(0)).code(), 0);
        assert_eq!(stale.client.request(&Request::refresh(0)).code(), 0);
    }
    assert!(forwarded() > 0.0, "no round crossed workers in {rounds}");
}
