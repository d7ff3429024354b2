//! A [`StreamConn`] over real loopback sockets, driven by a small mio loop as a worker
//! would drive it; the client is a plain std socket (or rustls over one, in a thread).
//! Every loop is bounded in turns and in time; time passed to the connection is virtual.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener};
use std::time::Duration;

use mio::{Events, Poll};

use super::inbuf::READ_BUDGET;
use super::*;

/// How long any wait in these tests may take before it fails.
const PATIENCE: Duration = Duration::from_secs(5);

fn limits() -> Limits {
    Limits {
        timeouts: Timeouts {
            idle: Duration::from_secs(60),
            allocation: Duration::from_secs(30),
            handshake: Duration::from_secs(10),
        },
        max_queued_bytes: 65_536,
    }
}

/// A STUN Binding request with a body of `body` zero bytes (framing looks at the header
/// only), transaction id `id`.
fn stun(body: u16, id: u8) -> Vec<u8> {
    let mut m = vec![0x00, 0x01];
    m.extend_from_slice(&body.to_be_bytes());
    m.extend_from_slice(&0x2112_A442u32.to_be_bytes());
    m.extend_from_slice(&[id; 12]);
    m.resize(20 + usize::from(body), 0);
    m
}

/// A ChannelData message as a stream carries it: padded to 4.
fn channel_data(channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut m = crate::stun::channel_data::header(channel, payload.len()).to_vec();
    m.extend_from_slice(payload);
    m.resize(m.len().next_multiple_of(4), 0);
    m
}

/// One server connection and the loop around it.
struct Harness {
    poll: Poll,
    events: Events,
    conn: StreamConn,
    /// The virtual clock passed to the connection.
    clock: Instant,
    /// Messages delivered, in order.
    got: Vec<Vec<u8>>,
    /// Answer each message with itself.
    echo: bool,
    /// The last read ran out of budget.
    more: bool,
    closed: Option<Close>,
}

impl Harness {
    fn new(
        server: std::net::TcpStream,
        tls: Option<Arc<rustls::ServerConfig>>,
        limits: Limits,
    ) -> Self {
        let clock = Instant::now();
        let client_addr = server.peer_addr().unwrap();
        Self::serving(
            StreamConn::new(server, client_addr, tls, &limits, clock).unwrap(),
            clock,
        )
    }

    /// A harness around `conn`, made at `clock`.
    fn serving(mut conn: StreamConn, clock: Instant) -> Self {
        let poll = Poll::new().unwrap();
        conn.register(poll.registry(), Token(7)).unwrap();
        Self {
            poll,
            events: Events::with_capacity(16),
            conn,
            clock,
            got: Vec::new(),
            echo: false,
            more: false,
            closed: None,
        }
    }

    /// A plain TCP connection and its client end.
    fn plain(limits: Limits) -> (Self, std::net::TcpStream) {
        let (server, client) = connected();
        (Self::new(server, None, limits), client)
    }

    /// One turn of the loop: poll briefly, then read and write as the events say.
    fn turn(&mut self) {
        if self.closed.is_some() {
            return;
        }
        let wait = if self.more {
            Duration::ZERO
        } else {
            Duration::from_millis(10)
        };
        self.poll.poll(&mut self.events, Some(wait)).unwrap();
        let (mut readable, mut writable) = (self.more, false);
        for event in self.events.iter() {
            assert_eq!(event.token(), Token(7));
            readable |= event.is_readable() || event.is_read_closed() || event.is_error();
            writable |= event.is_writable();
        }
        let registry = self.poll.registry();
        if writable && let Err(close) = self.conn.flush(registry, self.clock) {
            self.closed = Some(close);
            return;
        }
        if readable {
            let (got, echo) = (&mut self.got, self.echo);
            let read = self.conn.read(registry, self.clock, |message, out| {
                got.push(message.to_vec());
                if echo {
                    let _ = out.queue(&[message]);
                }
            });
            match read {
                Ok(outcome) => self.more = outcome == ReadOutcome::MoreToRead,
                Err(close) => self.closed = Some(close),
            }
        }
    }

    /// Turns the loop until `done`, or fails after [`PATIENCE`].
    fn until(&mut self, what: &str, done: impl Fn(&Self) -> bool) {
        let start = std::time::Instant::now();
        while !done(self) {
            assert!(start.elapsed() < PATIENCE, "gave up waiting for {what}");
            self.turn();
        }
    }

    /// Turns the loop until the connection closes; why.
    fn until_closed(&mut self) -> Close {
        self.until("the close", |h| h.closed.is_some());
        self.closed.unwrap()
    }
}

/// A connected pair over loopback: (server end, client end).
fn connected() -> (std::net::TcpStream, std::net::TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    let (server, _) = listener.accept().unwrap();
    (server, client)
}

/// A connected pair whose buffers are small on both sides, so a client that stops
/// reading fills them soon.
fn small_buffers() -> (std::net::TcpStream, std::net::TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket
        .connect(&listener.local_addr().unwrap().into())
        .unwrap();
    let client: std::net::TcpStream = socket.into();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    let (server, _) = listener.accept().unwrap();
    socket2::SockRef::from(&server)
        .set_send_buffer_size(4096)
        .unwrap();
    (server, client)
}

#[test]
fn the_connection_knows_its_five_tuple() {
    let (h, client) = Harness::plain(limits());
    let tuple = h.conn.tuple();
    assert_eq!(tuple.transport, Transport::Tcp);
    assert_eq!(tuple.client, client.local_addr().unwrap());
    assert_eq!(tuple.server, client.peer_addr().unwrap());
    assert_eq!(
        (h.conn.peer_addr(), h.conn.local_addr()),
        (tuple.client, tuple.server)
    );
    assert!(!h.conn.is_handshaking());
}

#[test]
fn frames_split_across_reads_come_out_whole() {
    let (mut h, mut client) = Harness::plain(limits());
    let frame = channel_data(0x4000, &[7; 1001]);
    // Cut in the header, in the payload and in the padding; each piece is read before
    // the next is sent.
    for piece in [&frame[..2], &frame[2..500], &frame[500..1006]] {
        let held = h.conn.inbuf.held() + piece.len();
        client.write_all(piece).unwrap();
        h.until("the piece to be read", |h| h.conn.inbuf.held() == held);
        assert!(h.got.is_empty());
    }
    client.write_all(&frame[1006..]).unwrap();
    h.until("the frame", |h| !h.got.is_empty());
    assert_eq!(
        h.got,
        vec![frame[..1005].to_vec()],
        "the padding is not part of the message"
    );
    assert_eq!(h.conn.inbuf.held(), 0);
    assert_eq!(h.closed, None);
}

#[test]
fn several_frames_in_one_read_come_out_in_order() {
    let (mut h, mut client) = Harness::plain(limits());
    let frames = [
        stun(0, 1),
        channel_data(0x4001, b"abc"),
        stun(8, 2),
        channel_data(0x4002, &[]),
        channel_data(0x7fff, &[9; 1500]),
    ];
    client.write_all(&frames.concat()).unwrap();
    h.until("five frames", |h| h.got.len() == 5);
    assert_eq!(h.got[0], frames[0]);
    assert_eq!(h.got[1], b"\x40\x01\x00\x03abc");
    assert_eq!(h.got[2], frames[2]);
    assert_eq!(h.got[3], b"\x40\x02\x00\x00");
    assert_eq!(h.got[4], &frames[4][..1504]);
}

#[test]
fn a_read_stops_at_its_budget_and_says_more_may_wait() {
    // A large receive buffer, so the whole flood waits in the kernel before the first read.
    let listener =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    listener.set_recv_buffer_size(1 << 20).unwrap();
    listener
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    listener.listen(1).unwrap();
    let listener: TcpListener = listener.into();
    let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    let mut h = Harness::new(server, None, limits());
    let frame = channel_data(0x4000, &[1; 1200]);
    let count = 3 * READ_BUDGET / frame.len();
    let flood = frame.repeat(count);
    let writer = std::thread::spawn(move || {
        client.write_all(&flood).unwrap();
        client
    });
    let _client = writer.join().unwrap();
    let registry = h.poll.registry();
    let mut got = 0;
    let first = h.conn.read(registry, h.clock, |_, _| got += 1).unwrap();
    assert_eq!(first, ReadOutcome::MoreToRead);
    assert!(got < count, "one read took everything");
    let start = std::time::Instant::now();
    while got < count {
        assert!(start.elapsed() < PATIENCE);
        h.conn.read(registry, h.clock, |_, _| got += 1).unwrap();
    }
    assert_eq!(got, count);
}

#[test]
fn replies_go_back_on_the_same_connection() {
    let (mut h, mut client) = Harness::plain(limits());
    h.echo = true;
    let request = stun(4, 3);
    client.write_all(&request).unwrap();
    let mut answer = vec![0; request.len()];
    h.until("the request", |h| !h.got.is_empty());
    client.read_exact(&mut answer).unwrap();
    assert_eq!(answer, request);
    assert!(!h.conn.wants_flush());
}

#[test]
fn queued_channel_data_is_padded_to_four() {
    let (mut h, mut client) = Harness::plain(limits());
    let header = crate::stun::channel_data::header(0x4005, 5);
    h.conn.queue(&[&header, b"hello"]).unwrap();
    h.conn
        .queue(&[&header[..2], &header[2..], b"HELLO"])
        .unwrap();
    assert_eq!(h.conn.queued(), 24);
    h.conn.flush(h.poll.registry(), h.clock).unwrap();
    let mut wire = [0; 24];
    client.read_exact(&mut wire).unwrap();
    assert_eq!(&wire[..12], b"\x40\x05\x00\x05hello\0\0\0");
    assert_eq!(&wire[12..], b"\x40\x05\x00\x05HELLO\0\0\0");
}

#[test]
fn a_reader_that_stops_reading_overflows_the_byte_bound() {
    let (server, mut client) = small_buffers();
    let limits = limits();
    let mut h = Harness::new(server, None, limits);
    let header = crate::stun::channel_data::header(0x4000, 1200);
    let payload = [3; 1200];
    // At first the client reads, and the data flows.
    for _ in 0..100 {
        h.conn.queue(&[&header, &payload]).unwrap();
        h.conn.flush(h.poll.registry(), h.clock).unwrap();
        let mut frame = [0; 1204];
        client.read_exact(&mut frame).unwrap();
        assert_eq!(frame[..4], header);
    }
    // Then it stops: the queue grows to its bound and no further.
    let mut queued = 0;
    let overflowed = (0..10_000).find(|_| {
        let refused = h.conn.queue(&[&header, &payload]).is_err();
        h.conn
            .flush(h.poll.registry(), h.clock)
            .unwrap_or_else(|c| assert_eq!(c, Close::Overflow));
        assert!(h.conn.queued() <= limits.max_queued_bytes + 1204);
        queued = queued.max(h.conn.queued());
        refused
    });
    assert!(overflowed.is_some(), "never overflowed");
    assert!(
        queued > limits.max_queued_bytes - 1204,
        "overflowed early: {queued}"
    );
    assert!(h.conn.writable, "WRITABLE is registered while bytes wait");
    // For good: nothing more is taken, and the loop is told to close.
    assert_eq!(h.conn.queue(&[b"late"]), Err(Overflow));
    assert_eq!(
        h.conn.flush(h.poll.registry(), h.clock),
        Err(Close::Overflow)
    );
}

#[test]
fn replies_to_a_client_that_reads_none_overflow() {
    let (server, mut client) = small_buffers();
    let mut h = Harness::new(server, None, limits());
    h.echo = true;
    let request = stun(1000, 4);
    for sent in 1..=1000 {
        client.write_all(&request).unwrap();
        h.until("the request or the close", |h| {
            h.got.len() == sent || h.closed.is_some()
        });
        if h.closed.is_some() {
            break;
        }
    }
    assert_eq!(h.closed, Some(Close::Overflow));
    // At most the bound and the socket buffers were answered.
    assert!(h.got.len() < 2 * 65_536 / 1020 + 100, "{}", h.got.len());
}

#[test]
fn a_slow_reader_catches_up_through_writable_events() {
    let (server, mut client) = small_buffers();
    let mut h = Harness::new(server, None, limits());
    let mut want = Vec::new();
    for i in 0..40u16 {
        let frame = channel_data(0x4000 + i, &[i as u8; 1000]);
        h.conn.queue(&[&frame]).unwrap();
        want.extend_from_slice(&frame);
    }
    h.conn.flush(h.poll.registry(), h.clock).unwrap();
    assert!(
        h.conn.wants_flush() && h.conn.writable,
        "the socket took only part"
    );
    let mut wire = vec![0; want.len()];
    let reader = std::thread::spawn(move || {
        client.read_exact(&mut wire).unwrap();
        wire
    });
    h.until("the queue to drain", |h| !h.conn.wants_flush());
    assert!(!h.conn.writable, "WRITABLE is dropped once nothing waits");
    assert_eq!(reader.join().unwrap(), want);
}

#[test]
fn a_clean_close_after_a_request_still_gets_the_answer() {
    let (mut h, mut client) = Harness::plain(limits());
    h.echo = true;
    let request = stun(0, 5);
    client.write_all(&request).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(h.until_closed(), Close::PeerClosed { mid_frame: false });
    assert_eq!(h.got, vec![request.clone()]);
    let mut answer = vec![0; request.len()];
    client.read_exact(&mut answer).unwrap();
    assert_eq!(answer, request);
}

#[test]
fn a_close_mid_frame_is_broken() {
    let (mut h, mut client) = Harness::plain(limits());
    client.write_all(&stun(100, 6)[..50]).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(h.until_closed(), Close::PeerClosed { mid_frame: true });
    assert!(h.got.is_empty());
}

#[test]
fn a_reset_is_an_io_error() {
    let (mut h, client) = Harness::plain(limits());
    socket2::SockRef::from(&client)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(client);
    assert_eq!(h.until_closed(), Close::Io { mid_frame: false });
}

#[test]
fn bytes_that_are_not_stun_close_the_stream_after_the_frames_before_them() {
    let (mut h, mut client) = Harness::plain(limits());
    let mut wire = stun(0, 8);
    // A TLS ClientHello sent to the plain port.
    wire.extend_from_slice(&[0x16, 0x03, 0x01, 0x00, 0xc8]);
    client.write_all(&wire).unwrap();
    assert_eq!(h.until_closed(), Close::Malformed);
    assert_eq!(h.got, vec![stun(0, 8)]);
}

#[test]
fn reads_move_the_idle_deadline_and_timers_close_as_configured() {
    let limits = Limits {
        timeouts: Timeouts {
            idle: Duration::from_secs(5),
            ..limits().timeouts
        },
        ..limits()
    };
    let (mut h, mut client) = Harness::plain(limits);
    let t0 = h.clock;
    assert_eq!(h.conn.deadline(), t0 + Duration::from_secs(5));
    h.clock = t0 + Duration::from_secs(3);
    client.write_all(&stun(0, 9)).unwrap();
    h.until("the request", |h| !h.got.is_empty());
    assert_eq!(
        h.conn.deadline(),
        t0 + Duration::from_secs(8),
        "idle from the read"
    );
    assert_eq!(
        h.conn.on_timeout(t0 + Duration::from_secs(7), || false),
        None
    );
    // With an allocation, silence is fine; without one it closes.
    assert_eq!(
        h.conn.on_timeout(t0 + Duration::from_secs(8), || true),
        None
    );
    assert_eq!(
        h.conn.on_timeout(t0 + Duration::from_secs(13), || false),
        Some(Close::IdleTimeout)
    );
    // However chatty, no allocation by the allocation timeout closes it.
    let (mut h, mut client) = Harness::plain(limits);
    let t0 = h.clock;
    for s in 1..30 {
        h.clock = t0 + Duration::from_secs(s);
        client.write_all(&stun(0, s as u8)).unwrap();
        h.until("the request", |h| h.got.len() == s as usize);
        assert_eq!(h.conn.on_timeout(h.clock, || false), None);
    }
    assert_eq!(h.conn.deadline(), t0 + Duration::from_secs(30));
    assert_eq!(
        h.conn.on_timeout(t0 + Duration::from_secs(30), || false),
        Some(Close::AllocationTimeout)
    );
}

#[test]
fn an_unanswered_write_closes_after_the_idle_timeout() {
    let (server, _client) = small_buffers();
    let mut h = Harness::new(server, None, limits());
    let t0 = h.clock;
    for _ in 0..50 {
        h.conn.queue(&[&[0; 1000]]).unwrap();
    }
    h.conn.flush(h.poll.registry(), t0).unwrap();
    assert!(h.conn.wants_flush());
    // The client reads nothing: no progress in a minute closes it, allocation or not.
    h.conn
        .flush(h.poll.registry(), t0 + Duration::from_secs(30))
        .unwrap();
    assert_eq!(
        h.conn.deadline(),
        t0 + Duration::from_secs(30),
        "allocation check first"
    );
    assert_eq!(
        h.conn.on_timeout(t0 + Duration::from_secs(30), || true),
        None
    );
    assert_eq!(h.conn.deadline(), t0 + Duration::from_secs(60));
    assert_eq!(
        h.conn.on_timeout(t0 + Duration::from_secs(60), || true),
        Some(Close::WriteTimeout)
    );
}

mod tls;

/// RFC 6062: after the message whose handler stops framing (a ConnectionBind), the bytes
/// that followed it, in the same read or later, come out raw, and raw bytes go back
/// unpadded.
#[test]
fn a_connection_stops_framing_and_carries_raw_bytes() {
    let (mut h, mut client) = Harness::plain(limits());
    let bind = stun(0, 1);
    let mut first = bind.clone();
    first.extend_from_slice(b"not STUN");
    client.write_all(&first).unwrap();
    let start = std::time::Instant::now();
    let mut framed = Vec::new();
    while framed.is_empty() {
        assert!(start.elapsed() < PATIENCE, "no message");
        let registry = h.poll.registry();
        let read = h.conn.read(registry, h.clock, |message, out| {
            framed.push(message.to_vec());
            out.stop_framing();
        });
        assert!(read.is_ok(), "{read:?}");
    }
    assert_eq!(framed, [bind]);
    let mut raw = Vec::new();
    let mut read_raw = |h: &mut Harness, want: usize| {
        let start = std::time::Instant::now();
        while raw.len() < want {
            assert!(start.elapsed() < PATIENCE, "only {raw:?}");
            let read = h
                .conn
                .read_raw(h.clock, 1 << 20, |b| raw.extend_from_slice(b));
            assert!(read.is_ok(), "{read:?}");
        }
    };
    read_raw(&mut h, 8);
    client.write_all(b"\x00\x01 more").unwrap();
    read_raw(&mut h, 14);
    assert_eq!(raw, b"not STUN\x00\x01 more");
    // Back to the client as they are: no padding.
    h.conn.queue_raw(b"abc");
    h.conn.flush(h.poll.registry(), h.clock).unwrap();
    let mut back = [0u8; 3];
    client.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"abc");
    // The client's end is the end of the raw stream.
    client.shutdown(Shutdown::Write).unwrap();
    let start = std::time::Instant::now();
    loop {
        assert!(start.elapsed() < PATIENCE, "no end");
        match h.conn.read_raw(h.clock, 1 << 20, |_| {}) {
            Ok(_) => continue,
            Err(close) => break assert_eq!(close, Close::PeerClosed { mid_frame: false }),
        }
    }
}
