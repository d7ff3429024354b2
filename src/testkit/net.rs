//! STUN and TURN over real sockets for the black-box tests: requests built (with
//! [`crate::client`], or attribute by attribute for the tests that must send what a careful
//! client never would) and responses read with the `stun` crate,
//! blocking UDP and TCP clients with the test timeout, and the stream helpers.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Mutex;

use stun::agent::TransactionId;
use stun::attributes::AttrType;
use stun::fingerprint::FINGERPRINT;
use stun::message::{CLASS_REQUEST, Getter, Message, MessageType, Setter};
use stun::xoraddr::XorMappedAddress;

use super::server::TIMEOUT;
use crate::client::{Request, Session};

/// A Binding request with a fresh transaction ID; `attrs` are added before FINGERPRINT.
pub fn binding_request(attrs: &[(u16, &[u8])], fingerprint: bool) -> Message {
    let mut req = Request::binding();
    for (typ, value) in attrs {
        req = req.attr(AttrType(*typ), value);
    }
    if !fingerprint {
        req = req.without_fingerprint();
    }
    (req.build(TransactionId::new(), None)).expect("binding request builds")
}

/// Long-term credentials and the nonce a TURN request is signed with.
pub struct Signer<'a> {
    /// USERNAME.
    pub user: &'a str,
    /// REALM.
    pub realm: &'a str,
    /// The password the long-term key is made with.
    pub pass: &'a str,
    /// NONCE, from the server's last 401 or 438.
    pub nonce: &'a str,
}

/// Alice of the black-box tests' configs (`alice = "wonderland"` in realm `test.local`),
/// signing with `nonce`.
pub fn alice(nonce: &str) -> Signer<'_> {
    Signer {
        user: "alice",
        realm: "test.local",
        pass: "wonderland",
        nonce,
    }
}

/// A TURN request of `method` with what `add` adds, then USERNAME, REALM, NONCE and
/// MESSAGE-INTEGRITY when `signer` is given (by [`Session::sign`]), and FINGERPRINT last.
pub fn turn_request(
    method: stun::message::Method,
    signer: Option<Signer<'_>>,
    add: impl FnOnce(&mut Message),
) -> Message {
    let mut m = Message::new();
    m.typ = MessageType::new(method, CLASS_REQUEST);
    m.new_transaction_id().expect("transaction id");
    m.write_header();
    add(&mut m);
    if let Some(s) = signer {
        let session = Session::new(s.user, s.pass, s.realm, s.nonce);
        session.sign(&mut m).expect("credentials encode");
    }
    FINGERPRINT.add_to(&mut m).expect("fingerprint");
    m
}

/// The ERROR-CODE of a response, if it has one.
pub fn error_code(m: &Message) -> Option<u16> {
    let mut attr = stun::error_code::ErrorCodeAttribute::default();
    attr.get_from(m).ok()?;
    Some(attr.code.0)
}

/// Decodes a response and checks it answers `request`.
pub fn decode_response(request: &Message, bytes: &[u8]) -> Message {
    let mut m = Message::new();
    m.unmarshal_binary(bytes).expect("response decodes");
    assert_eq!(
        m.transaction_id, request.transaction_id,
        "transaction ID echoed"
    );
    m
}

/// The XOR-MAPPED-ADDRESS of a response.
pub fn mapped_address(m: &Message) -> SocketAddr {
    let mut a = XorMappedAddress::default();
    a.get_from(m).expect("XOR-MAPPED-ADDRESS");
    SocketAddr::new(a.ip, a.port)
}

/// A UDP client socket on the same loopback family as `server`.
pub fn udp_client(server: SocketAddr) -> UdpSocket {
    let local = if server.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    };
    let s = UdpSocket::bind(local).expect("bind client");
    s.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    s.connect(server).expect("connect");
    s
}

/// Sends `request` over UDP and returns the decoded response.
pub fn udp_exchange(socket: &UdpSocket, request: &Message) -> Message {
    socket.send(&request.raw).expect("send");
    let mut buf = [0u8; 1500];
    let n = socket
        .recv(&mut buf)
        .expect("a response within the timeout");
    decode_response(request, &buf[..n])
}

/// A TCP connection to `server` from loopback address `ip` (127.0.0.0/8), with the test
/// timeout for reads.
pub fn tcp_client_from(ip: &str, server: SocketAddr) -> TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let ip: std::net::IpAddr = ip.parse().expect("ip");
    socket
        .bind(&SocketAddr::from((ip, 0)).into())
        .expect("bind");
    socket
        .connect_timeout(&server.into(), TIMEOUT)
        .expect("connect");
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    stream
}

/// A loopback port free for both UDP and TCP right now, for a config that must name the
/// same port twice (port 0 would give each key its own). See [`quiet_ports`].
pub fn free_port() -> u16 {
    quiet_ports(1, 10_000..20_000)
}

/// The first of `n` consecutive ports (the first even) in `range`, each free on 127.0.0.1
/// for UDP and TCP now and never handed out before in this process. Tests pick such ports
/// for a process started later, so the range lies below Linux's ephemeral ports (32768 and
/// up) and rturn's default relay ports (49152 and up): no socket of a test running in
/// parallel, nor a relay of its server, takes one by chance in between; and no two tests of
/// one binary get the same one.
pub fn quiet_ports(n: u16, range: std::ops::Range<u16>) -> u16 {
    static HANDED: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut handed = HANDED.lock().unwrap_or_else(|e| e.into_inner());
    let seed = std::process::id() as usize
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .subsec_nanos() as usize;
    // Every first port that leaves room for `n`, tried from a random one on, the first
    // rounded up to even.
    let span = range.len().saturating_sub(usize::from(n)) + 1;
    let free = |p: u16| {
        !handed.contains(&p)
            && UdpSocket::bind(("127.0.0.1", p)).is_ok()
            && std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
    };
    let first = (0..span)
        .map(|i| range.start as usize + (seed + i * 7919) % span)
        .map(|p| p + p % 2)
        .filter(|&p| p + usize::from(n) <= usize::from(range.end))
        .map(|p| p as u16)
        .find(|&p| (p..p + n).all(free))
        .unwrap_or_else(|| panic!("{n} free ports in {range:?}"));
    handed.extend(first..first + n);
    first
}

/// A TCP connection to `server` with read timeouts.
pub fn tcp_client(server: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&server, TIMEOUT).expect("connect");
    s.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    s
}

/// Reads one STUN message framed by its header from a stream (TCP or TLS).
pub fn read_stun(stream: &mut impl Read) -> Vec<u8> {
    let mut header = [0u8; 20];
    stream.read_exact(&mut header).expect("response header");
    let len = u16::from_be_bytes([header[2], header[3]]) as usize;
    let mut msg = header.to_vec();
    msg.resize(20 + len, 0);
    stream.read_exact(&mut msg[20..]).expect("response body");
    msg
}

/// Sends `request` over a stream (TCP or TLS) and returns the decoded response.
pub fn tcp_exchange(stream: &mut (impl Read + Write), request: &Message) -> Message {
    stream.write_all(&request.raw).expect("write");
    let bytes = read_stun(stream);
    decode_response(request, &bytes)
}

/// Whether a Binding over `stream` is answered (false: the server closed it).
pub fn binding_answered(stream: &mut (impl Read + Write)) -> bool {
    let request = binding_request(&[], true);
    if stream.write_all(&request.raw).is_err() {
        return false;
    }
    let mut header = [0u8; 20];
    if stream.read_exact(&mut header).is_err() {
        return false;
    }
    let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    stream.read_exact(&mut vec![0; len]).is_ok()
}

/// Whether the server closed `stream` (EOF or reset) within the timeout.
pub fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
        ),
    }
}
