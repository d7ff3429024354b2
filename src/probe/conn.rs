//! [`Conn`]: one blocking connection to a STUN/TURN server over UDP, TCP or TLS, sending
//! whole messages and receiving one datagram or one stream frame at a time, every wait
//! bounded by a deadline. The probe's only socket code for STUN/TURN; TLS through rustls.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::sync::Arc;
use std::time::Instant;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use super::target::Transport;
use crate::stun::framing::{MAX_FRAME_LEN, next_frame};

/// A connected socket to the server.
pub enum Conn {
    /// A UDP socket connected to the server.
    Udp(UdpSocket),
    /// A TCP stream and what was read past the last frame.
    Tcp(TcpStream, Vec<u8>),
    /// A TLS stream and what was read past the last frame.
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>, Vec<u8>),
}

/// `host:port` resolved; the first address.
pub fn resolve(host: &str, port: u16) -> io::Result<SocketAddr> {
    (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{host}: no address")))
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "no answer before the timeout")
}

/// Time left until `deadline`, an error once it has passed.
fn left(deadline: Instant) -> io::Result<std::time::Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(timed_out());
    }
    Ok(left)
}

impl Conn {
    /// Connects to `server` over `transport`; for TLS, `host` is the name the certificate
    /// must carry and `tls` the client settings.
    pub fn connect(
        server: SocketAddr,
        transport: Transport,
        host: &str,
        tls: &Arc<ClientConfig>,
        deadline: Instant,
    ) -> io::Result<Conn> {
        match transport {
            Transport::Udp => {
                let local: SocketAddr = if server.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    ([0u16; 8], 0).into()
                };
                let socket = UdpSocket::bind(local)?;
                socket.connect(server)?;
                Ok(Conn::Udp(socket))
            }
            Transport::Tcp => Ok(Conn::Tcp(tcp(server, deadline)?, Vec::new())),
            Transport::Tls => {
                let name = ServerName::try_from(host.to_owned())
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                let conn = ClientConnection::new(Arc::clone(tls), name)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                let mut stream = StreamOwned::new(conn, tcp(server, deadline)?);
                while stream.conn.is_handshaking() {
                    stream.sock.set_read_timeout(Some(left(deadline)?))?;
                    (stream.conn.complete_io(&mut stream.sock)).map_err(timeout_kind)?;
                }
                Ok(Conn::Tls(Box::new(stream), Vec::new()))
            }
        }
    }

    /// Whether messages travel as datagrams (and so may be lost and need sending again).
    pub fn is_datagram(&self) -> bool {
        matches!(self, Conn::Udp(_))
    }

    /// Sends one message.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Conn::Udp(s) => s.send(bytes).map(drop),
            Conn::Tcp(s, _) => s.write_all(bytes),
            Conn::Tls(s, _) => s.write_all(bytes).and_then(|()| s.flush()),
        }
    }

    /// The next datagram or stream frame, waiting until `deadline` at most.
    pub fn recv(&mut self, deadline: Instant) -> io::Result<Vec<u8>> {
        match self {
            Conn::Udp(s) => {
                s.set_read_timeout(Some(left(deadline)?))?;
                let mut buf = vec![0; MAX_FRAME_LEN];
                let n = s.recv(&mut buf).map_err(timeout_kind)?;
                buf.truncate(n);
                Ok(buf)
            }
            Conn::Tcp(s, buf) => {
                let mut reader: &TcpStream = s;
                frame(buf, deadline, s, &mut reader)
            }
            Conn::Tls(s, buf) => {
                let socket = s.sock.try_clone()?;
                frame(buf, deadline, &socket, &mut **s)
            }
        }
    }
}

/// A TCP connection, made before `deadline`.
fn tcp(server: SocketAddr, deadline: Instant) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&server, left(deadline)?)?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A read that timed out is reported as such whatever the platform calls it.
fn timeout_kind(e: io::Error) -> io::Error {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => timed_out(),
        _ => e,
    }
}

/// Reads from `reader` (over `socket`, whose read timeout bounds each read) until `buf`
/// holds a whole frame, and takes it.
fn frame(
    buf: &mut Vec<u8>,
    deadline: Instant,
    socket: &TcpStream,
    reader: &mut impl Read,
) -> io::Result<Vec<u8>> {
    loop {
        match next_frame(buf) {
            Ok(Some(f)) => {
                let rest = buf.split_off(f.len());
                return Ok(std::mem::replace(buf, rest));
            }
            Ok(None) => {}
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
        }
        let mut chunk = [0; 4096];
        socket.set_read_timeout(Some(left(deadline)?))?;
        let n = reader.read(&mut chunk).map_err(timeout_kind)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
