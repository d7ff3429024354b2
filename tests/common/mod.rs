//! Test harness: runs the built `rturn` binary on port 0 and reads the addresses it bound
//! from its log, so tests need no fixed ports and no sleeps.

#![allow(dead_code, unreachable_pub)]

pub mod redis;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stun::attributes::AttrType;
use stun::fingerprint::FINGERPRINT;
use stun::message::{BINDING_REQUEST, Getter, Message, Setter};
use stun::xoraddr::XorMappedAddress;

/// How long anything in a test may take before it counts as hung.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A running rturn process, killed when dropped.
pub struct Server {
    child: Child,
    pub udp: Vec<SocketAddr>,
    pub tcp: Vec<SocketAddr>,
    pub tls: Vec<SocketAddr>,
    pub https: Option<SocketAddr>,
    /// The plain HTTP listener (`listen.http`: /ws, /api, /metrics), when configured.
    pub http: Option<SocketAddr>,
    /// The config file it runs on (tests may rewrite it and send SIGHUP).
    pub config_path: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
    lines: Receiver<String>,
    _dir: tempfile::TempDir,
}

/// A config listening on loopback port 0 for UDP and TCP; `extra` is appended verbatim.
pub fn loopback_config(extra: &str) -> String {
    format!(
        "realm = \"test.local\"\n[listen]\nudp = [\"127.0.0.1:0\"]\ntcp = [\"127.0.0.1:0\"]\n{extra}"
    )
}

/// Writes `config` to a temporary file.
pub fn write_config(config: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("turnserver.toml");
    std::fs::write(&path, config).expect("write config");
    (dir, path)
}

/// A self-signed certificate for 127.0.0.1 and localhost, made now, written as PEM files
/// into `dir`; returns the `[tls]` config section pointing at them.
pub fn test_certificate(dir: &std::path::Path) -> String {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let cert = rcgen::generate_simple_self_signed(names).expect("certificate");
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).expect("write cert");
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).expect("write key");
    format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert_path.display(),
        key_path.display()
    )
}

/// The rturn binary under test.
pub fn rturn() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rturn"))
}

impl Server {
    /// Starts rturn with `config` and waits until it reports ready.
    pub fn start(config: &str) -> Server {
        let (dir, path) = write_config(config);
        Server::start_file(dir, &path)
    }

    /// Starts rturn on the config file at `path` (kept alive by `dir`), so a test can change
    /// the file and send SIGHUP.
    pub fn start_file(dir: tempfile::TempDir, path: &std::path::Path) -> Server {
        Server::start_command(rturn(), dir, path)
    }

    /// Starts rturn with `config` under a descriptor limit of `nofile` (soft and hard), with
    /// util-linux's `prlimit`, which then becomes rturn (same process).
    pub fn start_with_nofile(config: &str, nofile: u32) -> Server {
        let (dir, path) = write_config(config);
        let mut command = Command::new("prlimit");
        command
            .arg(format!("--nofile={nofile}:{nofile}"))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_rturn"));
        Server::start_command(command, dir, &path)
    }

    /// Starts `command` (rturn, or something that becomes rturn) with `-c path`.
    fn start_command(
        mut command: Command,
        dir: tempfile::TempDir,
        path: &std::path::Path,
    ) -> Server {
        let mut child = command
            .arg("-c")
            .arg(path)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rturn");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, lines) = channel();
        let log2 = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log2.lock().expect("log").push(line.clone());
                let _ = tx.send(line);
            }
        });
        let mut server = Server {
            child,
            udp: Vec::new(),
            tcp: Vec::new(),
            tls: Vec::new(),
            https: None,
            http: None,
            config_path: path.to_owned(),
            log,
            lines,
            _dir: dir,
        };
        loop {
            let line = server.wait_line(|_| true);
            if let Some(addr) = bound(&line, "udp") {
                server.udp.push(addr);
            } else if let Some(addr) = bound(&line, "tcp") {
                server.tcp.push(addr);
            } else if let Some(addr) = bound(&line, "tls") {
                server.tls.push(addr);
            } else if let Some(addr) = bound(&line, "https") {
                server.https = Some(addr);
            } else if let Some(addr) = bound(&line, "http") {
                server.http = Some(addr);
            } else if line.contains(" ready") {
                // " ready", not "ready": a failed bind's "Address already in use" is no start.
                return server;
            }
        }
    }

    /// Waits for the next log line matching `pred`; panics after [`TIMEOUT`] or on exit.
    pub fn wait_line(&mut self, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if pred(&line) => return line,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => panic!("timed out; log:\n{}", self.log()),
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("rturn exited; log:\n{}", self.log())
                }
            }
        }
    }

    /// Everything rturn has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log").join("\n")
    }

    /// The process ID, for signals.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (up to [`TIMEOUT`]) for rturn to exit by itself.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "rturn did not exit; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("kill");
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "rturn ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// The plain HTTP listener's address; panics when the config has no `listen.http`.
    pub fn http_addr(&self) -> SocketAddr {
        (self.http).unwrap_or_else(|| panic!("no listen.http in the log:\n{}", self.log()))
    }

    /// One scrape of `/metrics` on the HTTP listener.
    pub fn metrics(&self) -> Vec<(String, f64)> {
        scrape(self.http_addr())
    }

    /// The value of the `/metrics` sample `name` (labels included, as printed), 0 if absent.
    pub fn metric(&self, name: &str) -> f64 {
        sample(&self.metrics(), name)
    }
}

/// GET `path` over plain HTTP/1.1; the body of a 200, or panics.
pub fn http_body(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).expect("http connect");
    stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("http request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("http response");
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "GET {path}: {response}"
    );
    let (_, body) = response.split_once("\r\n\r\n").expect("a body");
    body.to_owned()
}

/// One scrape of `/metrics` at `http`: every sample as (name with labels, value).
pub fn scrape(http: SocketAddr) -> Vec<(String, f64)> {
    (http_body(http, "/metrics").lines())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The value of sample `name` (with its labels, as printed), 0 if absent: counters keyed by
/// a label value appear only once they moved.
pub fn sample(samples: &[(String, f64)], name: &str) -> f64 {
    samples.iter().find(|(n, _)| n == name).map_or(0.0, |s| s.1)
}

fn bound(line: &str, proto: &str) -> Option<SocketAddr> {
    let rest = line.split(&format!("listening on {proto} ")).nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

/// A Binding request with a fresh transaction ID; `attrs` are added before FINGERPRINT.
pub fn binding_request(attrs: &[(u16, &[u8])], fingerprint: bool) -> Message {
    let mut m = Message::new();
    m.typ = BINDING_REQUEST;
    m.new_transaction_id().expect("transaction id");
    m.write_header();
    for (typ, value) in attrs {
        m.add(AttrType(*typ), value);
    }
    if fingerprint {
        FINGERPRINT.add_to(&mut m).expect("fingerprint");
    }
    m
}

/// Long-term credentials and the nonce a TURN request is signed with.
pub struct Signer<'a> {
    pub user: &'a str,
    pub realm: &'a str,
    pub pass: &'a str,
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
/// MESSAGE-INTEGRITY when `signer` is given, and FINGERPRINT last.
pub fn turn_request(
    method: stun::message::Method,
    signer: Option<Signer<'_>>,
    add: impl FnOnce(&mut Message),
) -> Message {
    use stun::attributes::{ATTR_NONCE, ATTR_REALM, ATTR_USERNAME};
    use stun::integrity::MessageIntegrity;
    use stun::message::{CLASS_REQUEST, MessageType};
    use stun::textattrs::TextAttribute;
    let mut m = Message::new();
    m.typ = MessageType::new(method, CLASS_REQUEST);
    m.new_transaction_id().expect("transaction id");
    m.write_header();
    add(&mut m);
    if let Some(s) = signer {
        for (typ, text) in [
            (ATTR_USERNAME, s.user),
            (ATTR_REALM, s.realm),
            (ATTR_NONCE, s.nonce),
        ] {
            (TextAttribute::new(typ, text.to_owned()).add_to(&mut m)).expect("text attribute");
        }
        MessageIntegrity::new_long_term_integrity(s.user.into(), s.realm.into(), s.pass.into())
            .add_to(&mut m)
            .expect("integrity");
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

/// A TCP connection to `server` with read timeouts.
pub fn tcp_client(server: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&server, TIMEOUT).expect("connect");
    s.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    s
}

/// Reads one STUN message framed by its header from a stream.
pub fn read_stun(stream: &mut TcpStream) -> Vec<u8> {
    let mut header = [0u8; 20];
    stream.read_exact(&mut header).expect("response header");
    let len = u16::from_be_bytes([header[2], header[3]]) as usize;
    let mut msg = header.to_vec();
    msg.resize(20 + len, 0);
    stream.read_exact(&mut msg[20..]).expect("response body");
    msg
}

/// Sends `request` over TCP and returns the decoded response.
pub fn tcp_exchange(stream: &mut TcpStream, request: &Message) -> Message {
    stream.write_all(&request.raw).expect("write");
    let bytes = read_stun(stream);
    decode_response(request, &bytes)
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

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// coturn's UDP echo peer, `turnutils_peer`, on a free loopback port; killed on drop.
pub struct EchoPeer {
    child: Child,
    /// Its UDP port on 127.0.0.1.
    pub port: u16,
}

impl EchoPeer {
    /// Starts it and waits until it echoes.
    pub fn start() -> EchoPeer {
        let port = UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("turnutils_peer")
            .args(["-L", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("turnutils_peer is missing: install coturn (scripts/test.sh does)");
        // Owned at once, so a failed start below still kills it.
        let peer = EchoPeer { child, port };
        let probe = UdpSocket::bind("127.0.0.1:0").expect("probe socket");
        probe
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let deadline = Instant::now() + TIMEOUT;
        let mut buf = [0u8; 16];
        loop {
            probe.send_to(b"ping", ("127.0.0.1", port)).expect("send");
            if probe.recv(&mut buf).is_ok() {
                return peer;
            }
            assert!(Instant::now() < deadline, "turnutils_peer did not start");
        }
    }
}

impl Drop for EchoPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A listening `turn` crate client (webrtc-rs) for the TURN server at `server` in realm
/// "test.local", sending from `socket`.
pub async fn turn_client(
    server: SocketAddr,
    socket: std::sync::Arc<tokio::net::UdpSocket>,
    user: &str,
    pass: &str,
) -> turn::client::Client {
    let client = turn::client::Client::new(turn::client::ClientConfig {
        stun_serv_addr: server.to_string(),
        turn_serv_addr: server.to_string(),
        username: user.to_owned(),
        password: pass.to_owned(),
        realm: "test.local".to_owned(),
        software: String::new(),
        rto_in_ms: 0,
        conn: socket,
        vnet: None,
    })
    .await
    .expect("turn client");
    client.listen().await.expect("turn client listens");
    client
}

/// `[relay]` keys for a range of exactly one relay port, free when the test starts. It is
/// taken below Linux's ephemeral range (32768 and up) and the default relay range (49152 and
/// up), so no other socket of a parallel test lands on it by chance.
pub fn one_port_range() -> (u16, String) {
    let seed = std::process::id() as usize
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .subsec_nanos() as usize;
    let port = (0..10_000)
        .map(|i| 20_000 + ((seed + i * 7919) % 12_000) as u16)
        .find(|&p| UdpSocket::bind(("127.0.0.1", p)).is_ok())
        .expect("a free port in 20000..32000");
    (port, format!("min-port = {port}\nmax-port = {port}\n"))
}
