//! Peers and helpers around a running server: coturn's echo peer, the `turn` crate's client
//! (a client we did not write), deterministic noise, a free one-port relay range.

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::server::TIMEOUT;

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
        // turnutils_peer listens on `port` and `port + 1`, and uclient binds a channel to
        // `port + 1` whatever its flags: neither may be one of the server's listeners (the
        // peer rules refuse those, 403), nor taken before turnutils_peer binds it.
        let port = super::net::quiet_ports(2, 10_000..20_000);
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
        // Both of its ports echo: uclient binds a channel to the second (its RTCP peer) even
        // with `-c`.
        for port in [port, port + 1] {
            loop {
                probe.send_to(b"ping", ("127.0.0.1", port)).expect("send");
                // A late echo of the other port is no answer from this one.
                if let Ok((_, from)) = probe.recv_from(&mut buf)
                    && from.port() == port
                {
                    break;
                }
                assert!(Instant::now() < deadline, "turnutils_peer did not start");
            }
        }
        peer
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

/// `[relay]` keys for a range of exactly one relay port, free when the test starts
/// ([`super::net::quiet_ports`]: no other socket of a parallel test lands on it by chance).
pub fn one_port_range() -> (u16, String) {
    let port = super::net::quiet_ports(1, 20_000..32_000);
    (port, format!("min-port = {port}\nmax-port = {port}\n"))
}
