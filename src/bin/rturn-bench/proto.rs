//! TURN requests as a client builds them (with `rturn::client`, the sans-IO client), and one
//! request/response transaction over UDP.
//!
//! Only what RFC 8656 (and RFC 5766 before it) asks of every server: the first Allocate goes
//! without credentials and the 401 brings REALM and NONCE (RFC 8489 §9.2.3); later requests
//! carry USERNAME, REALM, NONCE and MESSAGE-INTEGRITY (HMAC-SHA1, which coturn 4.6 and rturn
//! both accept); a 438 brings a fresh nonce to retry with once. Responses are matched by
//! transaction ID, and a request is retransmitted after a fixed timeout (RFC 8489 §6.2.1 uses
//! a growing RTO; on loopback a fixed one is simpler and just as good).

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use rturn::client::{self, ClientError, Response};
use rturn::stun::codec::decode_into;
use stun::agent::TransactionId;
use stun::message::{Message, Method};
use tokio::net::UdpSocket;
use tokio::time::{Instant, timeout_at};

/// Wait this long for a response before sending the request again.
pub(crate) const RTO: Duration = Duration::from_millis(500);
/// Retransmissions after the first send; then the transaction has failed.
pub(crate) const RETRANSMITS: u32 = 3;
/// Packets that are not the awaited response (late answers to an earlier retransmission)
/// tolerated per wait, on top of the time limit.
const MAX_STRAY: usize = 64;
/// The peer of every permission and channel: the discard port, never sent to.
pub(crate) const DISCARD_PEER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9);
/// The first channel number (RFC 8656 §12).
pub(crate) const CHANNEL: u16 = 0x4000;
/// Big enough for any STUN response a TURN server sends.
const RECV_BUF: usize = 2048;

/// The request of a workload step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Step {
    /// Opening the client's socket.
    Socket,
    /// Allocate without credentials, expecting 401.
    Challenge,
    /// Authenticated Allocate.
    Allocate,
    /// CreatePermission.
    Permission,
    /// ChannelBind.
    ChannelBind,
    /// Refresh (LIFETIME 0 deletes the allocation).
    Refresh,
    /// STUN Binding.
    Binding,
    /// Opening a signaling WebSocket (TCP connect and HTTP upgrade).
    WsConnect,
    /// Joining a signaling room.
    Join,
    /// Exchanging offers, answers and candidates through the signaling relay.
    Signal,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Socket => "socket",
            Step::Challenge => "allocate (unauthenticated)",
            Step::Allocate => "allocate",
            Step::Permission => "create-permission",
            Step::ChannelBind => "channel-bind",
            Step::Refresh => "refresh",
            Step::Binding => "binding",
            Step::WsConnect => "websocket connect",
            Step::Join => "join",
            Step::Signal => "signal",
        })
    }
}

/// How a step failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Kind {
    /// No response after every retransmission.
    Timeout,
    /// An error response with this code (or a success where a 401 was expected: 200).
    Code(u16),
    /// A socket error.
    Io(io::ErrorKind),
    /// A response that does not make sense.
    Protocol(&'static str),
}

/// One failed step, counted by kind in the summary on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Failure {
    pub(crate) step: Step,
    pub(crate) kind: Kind,
}

impl Failure {
    pub(crate) fn new(step: Step, kind: Kind) -> Failure {
        Failure { step, kind }
    }

    fn io(step: Step, e: &io::Error) -> Failure {
        Failure::new(step, Kind::Io(e.kind()))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Kind::Timeout => write!(f, "{}: timeout", self.step),
            Kind::Code(code) => write!(f, "{}: error {code}", self.step),
            Kind::Io(kind) => write!(f, "{}: {kind}", self.step),
            Kind::Protocol(what) => write!(f, "{}: {what}", self.step),
        }
    }
}

/// What a workload asks the server for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Request {
    /// Allocate a UDP relay.
    Allocate,
    /// Permission for one peer.
    Permission(SocketAddr),
    /// Bind a channel number to a peer.
    ChannelBind(u16, SocketAddr),
    /// Refresh with this LIFETIME.
    Refresh(u32),
}

impl Request {
    fn step(self) -> Step {
        match self {
            Request::Allocate => Step::Allocate,
            Request::Permission(_) => Step::Permission,
            Request::ChannelBind(..) => Step::ChannelBind,
            Request::Refresh(_) => Step::Refresh,
        }
    }

    /// This request as the sans-IO client builds it.
    fn to_client(self) -> client::Request {
        match self {
            Request::Allocate => client::Request::allocate(),
            Request::Permission(peer) => client::Request::create_permission(&[peer]),
            Request::ChannelBind(channel, peer) => client::Request::channel_bind(channel, peer),
            Request::Refresh(lifetime) => client::Request::refresh(lifetime),
        }
    }
}

/// `req` with a fresh transaction ID, signed with `session` if given, and FINGERPRINT.
fn build(
    req: &client::Request,
    session: Option<&client::Session>,
    step: Step,
) -> Result<Message, Failure> {
    req.build(TransactionId::new(), session)
        .map_err(|e| Failure::new(step, Kind::Protocol(protocol_error(e))))
}

fn protocol_error(e: ClientError) -> &'static str {
    match e {
        ClientError::Encode(_) | ClientError::TooLong => "cannot encode the request",
        ClientError::Malformed(_) => "malformed response",
        ClientError::NotResponse(what) => what,
    }
}

/// Long-term credentials as given on the command line.
#[derive(Debug, Clone)]
pub(crate) struct Credentials {
    pub(crate) user: String,
    pub(crate) pass: String,
}

/// What the 401 taught us: realm, nonce, and the key they make with the credentials.
#[derive(Debug, Clone)]
pub(crate) struct Session(client::Session);

impl Session {
    fn new(creds: &Credentials, realm: &str, nonce: &str) -> Session {
        Session(client::Session::new(&creds.user, &creds.pass, realm, nonce))
    }
}

/// The relevant part of a response, copied out of the receive buffer.
#[derive(Debug)]
struct Reply {
    /// `None` for a success response.
    code: Option<u16>,
    realm: Option<String>,
    nonce: Option<String>,
}

/// One client: a UDP socket connected to the server, and reusable buffers.
pub(crate) struct Client {
    sock: UdpSocket,
    buf: Vec<u8>,
    msg: Message,
}

impl Client {
    /// A client on a fresh socket (see [`fresh_socket`]), connected to the server so that only
    /// the server's packets are received.
    pub(crate) async fn bind(server: SocketAddr) -> io::Result<Client> {
        Ok(Client {
            sock: fresh_socket(server).await?,
            buf: vec![0; RECV_BUF],
            msg: Message::new(),
        })
    }

    /// A client on a socket taken back from [`Client::into_socket`] (and `into_std`), to
    /// send requests on it again after a phase of raw I/O.
    pub(crate) fn from_std(sock: std::net::UdpSocket) -> io::Result<Client> {
        Ok(Client {
            sock: UdpSocket::from_std(sock)?,
            buf: vec![0; RECV_BUF],
            msg: Message::new(),
        })
    }

    /// Swaps the socket for a new one (see [`fresh_socket`]), closing the old one.
    pub(crate) async fn rebind(&mut self, server: SocketAddr) -> io::Result<()> {
        self.sock = fresh_socket(server).await?;
        Ok(())
    }

    /// The socket, to hold an allocation open without traffic.
    pub(crate) fn into_socket(self) -> UdpSocket {
        self.sock
    }

    /// Allocate without credentials; the 401 gives the realm and nonce of the session.
    pub(crate) async fn challenge(&mut self, creds: &Credentials) -> Result<Session, Failure> {
        let step = Step::Challenge;
        let m = build(&Request::Allocate.to_client(), None, step)?;
        let reply = self.transact(step, &m).await?;
        match reply {
            Reply {
                code: Some(401),
                realm: Some(realm),
                nonce: Some(nonce),
            } => Ok(Session::new(creds, &realm, &nonce)),
            Reply {
                code: Some(401), ..
            } => Err(Failure::new(
                step,
                Kind::Protocol("401 without REALM or NONCE"),
            )),
            Reply { code, .. } => Err(Failure::new(step, Kind::Code(code.unwrap_or(200)))),
        }
    }

    /// Sends `req` signed with the session's key; on 438 Stale Nonce takes the new nonce and
    /// tries once more (RFC 8489 §9.2.5).
    pub(crate) async fn authed(
        &mut self,
        creds: &Credentials,
        session: &mut Session,
        req: Request,
    ) -> Result<(), Failure> {
        let step = req.step();
        let req_client = req.to_client();
        for attempt in 0..2 {
            let m = build(&req_client, Some(&session.0), step)?;
            match self.transact(step, &m).await? {
                Reply { code: None, .. } => return Ok(()),
                Reply {
                    code: Some(438),
                    realm,
                    nonce: Some(nonce),
                } if attempt == 0 => {
                    let realm = realm.unwrap_or_else(|| session.0.realm().to_owned());
                    *session = Session::new(creds, &realm, &nonce);
                }
                Reply {
                    code: Some(code), ..
                } => return Err(Failure::new(step, Kind::Code(code))),
            }
        }
        Err(Failure::new(step, Kind::Code(438)))
    }

    /// Sends `req` and waits for the response with its transaction ID, retransmitting after
    /// [`RTO`] up to [`RETRANSMITS`] times.
    async fn transact(&mut self, step: Step, req: &Message) -> Result<Reply, Failure> {
        for _ in 0..=RETRANSMITS {
            self.sock
                .send(&req.raw)
                .await
                .map_err(|e| Failure::io(step, &e))?;
            let deadline = Instant::now() + RTO;
            for _ in 0..MAX_STRAY {
                let n = match timeout_at(deadline, self.sock.recv(&mut self.buf)).await {
                    Err(_elapsed) => break,
                    Ok(Err(e)) => return Err(Failure::io(step, &e)),
                    Ok(Ok(n)) => n,
                };
                let Some(packet) = self.buf.get(..n) else {
                    continue;
                };
                if decode_into(packet, &mut self.msg).is_err()
                    || self.msg.transaction_id != req.transaction_id
                {
                    continue;
                }
                return reply(&self.msg, req.typ.method, step);
            }
        }
        Err(Failure::new(step, Kind::Timeout))
    }
}

/// A socket connected to `server`, on the next source address of the rotation (see
/// [`next_source`]) and an ephemeral port: a 5-tuple the server has most likely never seen.
async fn fresh_socket(server: SocketAddr) -> io::Result<UdpSocket> {
    if !server.ip().to_canonical().is_loopback() {
        // A server in another network namespace (`netns`): the kernel picks the source.
        let any = match server {
            SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        return bind_connected(SocketAddr::new(any, 0), server).await;
    }
    let main = match server {
        SocketAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
        SocketAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 0),
    };
    let Some(source) = next_source(server) else {
        return bind_connected(main, server).await;
    };
    match bind_connected(source, server).await {
        // Not every system routes all of 127.0.0.0/8 to the loopback interface.
        Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable => bind_connected(main, server).await,
        other => other,
    }
}

async fn bind_connected(local: SocketAddr, server: SocketAddr) -> io::Result<UdpSocket> {
    let sock = UdpSocket::bind(local).await?;
    sock.connect(server).await?;
    Ok(sock)
}

/// Source addresses handed out so far by [`next_source`].
static SOURCES: AtomicU32 = AtomicU32::new(0);
/// Where this run starts in the rotation, so that runs one after another do not retrace it.
static FIRST_SOURCE: LazyLock<u32> = LazyLock::new(|| rand::random::<u32>() % SOURCE_COUNT);
/// 127.a.b.c with a in 1..=254, b in 0..=255, c in 1..=254.
const SOURCE_COUNT: u32 = 254 * 256 * 254;

/// The next source address of a rotation over 127.1.0.1–127.254.255.254 (Linux routes all of
/// 127.0.0.0/8 to the loopback interface), with an ephemeral port; `None` for IPv6, which has
/// only ::1.
///
/// Every allocation needs a 5-tuple the server holds nothing for. coturn keeps a deleted
/// allocation's 5-tuple for about a second and answers 437 meanwhile, and allocations left by
/// an earlier run (`hold`) live on for minutes. New sockets on 127.0.0.1 alone would soon draw
/// such ports (at 10 000 cycles per second a third of the ephemeral range is remembered), so
/// each new socket takes a new source address as well, repeated only after 16 million.
pub(crate) fn next_source(server: SocketAddr) -> Option<SocketAddr> {
    if server.is_ipv6() {
        return None;
    }
    let n = SOURCES.fetch_add(1, Ordering::Relaxed) % SOURCE_COUNT;
    let n = (n + *FIRST_SOURCE) % SOURCE_COUNT;
    let a = 1 + n / (256 * 254);
    let b = (n / 254) % 256;
    let c = 1 + n % 254;
    let octet = |x: u32| u8::try_from(x).ok();
    let ip = Ipv4Addr::new(127, octet(a)?, octet(b)?, octet(c)?);
    Some(SocketAddr::new(IpAddr::V4(ip), 0))
}

/// Checks that `msg` answers a request of `method` and copies out what the caller needs.
fn reply(msg: &Message, method: Method, step: Step) -> Result<Reply, Failure> {
    if msg.typ.method != method {
        return Err(Failure::new(
            step,
            Kind::Protocol("response to another method"),
        ));
    }
    let response = Response::from_message(msg)
        .map_err(|e| Failure::new(step, Kind::Protocol(protocol_error(e))))?;
    let code = response.error_code();
    Ok(Reply {
        code,
        realm: code.and(response.realm),
        nonce: code.and(response.nonce),
    })
}
