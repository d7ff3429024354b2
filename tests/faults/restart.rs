//! Restart safety: SIGTERM in the middle of relaying, and a second run on exactly the ports
//! the first one bound (port 0 the first time), with the first run's TCP connections still
//! in TIME_WAIT.

use std::process::{Child, Command, Stdio};

use super::raw::RawClient;
use super::*;

/// How long rturn's shutdown waits for connections (`SHUTDOWN_GRACE` in src/server/mod.rs).
const GRACE: Duration = Duration::from_secs(5);

/// turnutils_uclient relaying `messages` per client, 20 ms apart, for 2 clients; `flags`
/// picks the transport.
fn uclient(port: u16, peer: &EchoPeer, flags: &[&str], messages: u32) -> Child {
    Command::new("timeout")
        .args(["60", "turnutils_uclient"])
        .args(flags)
        .args(["-u", "alice", "-w", "wonderland"])
        .args(["-p", &port.to_string(), "-e", "127.0.0.1"])
        .args(["-r", &peer.port.to_string()])
        .args(["-m", "2", "-n", &messages.to_string()])
        .args(["-l", "120", "-z", "20", "-c", "-X", "127.0.0.1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("turnutils_uclient is missing: install coturn (scripts/test.sh does)")
}

/// Local TCP ports on 127.0.0.1 with a socket in TIME_WAIT or FIN_WAIT2, from /proc/net/tcp.
fn lingering_ports() -> Vec<u16> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, state) = (fields.get(1)?, fields.get(3)?);
            let port = u16::from_str_radix(local.split(':').nth(1)?, 16).ok()?;
            matches!(*state, "06" | "05").then_some(port)
        })
        .collect()
}

/// A WebSocket on `/ws` that has joined a room.
async fn signaling_client(
    http: SocketAddr,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    use futures_util::{SinkExt, StreamExt};
    let (mut ws, _) = tokio::time::timeout(
        TIMEOUT,
        tokio_tungstenite::connect_async(format!("ws://{http}/ws")),
    )
    .await
    .expect("WebSocket handshake in time")
    .unwrap();
    let join = r#"{"type":"join","room":"shutdown"}"#;
    ws.send(tokio_tungstenite::tungstenite::Message::text(join))
        .await
        .unwrap();
    // The first frame may be the server's Ping; the answer to the join is the first text.
    let reply = tokio::time::timeout(TIMEOUT, async {
        loop {
            let frame = ws.next().await.expect("a reply").unwrap();
            if frame.is_text() {
                return frame;
            }
        }
    })
    .await
    .expect("an answer to join");
    assert!(reply.to_text().unwrap().contains("\"peers\""), "{reply:?}");
    ws
}

#[test]
fn sigterm_while_uclient_relays_exits_cleanly_within_the_grace() {
    let mut server = Server::start(&turn_config(""));
    let peer = EchoPeer::start();
    let mut udp = uclient(server.udp[0].port(), &peer, &[], 1000);
    let mut tcp = uclient(server.tcp[0].port(), &peer, &["-t"], 1000);
    let relaying = |server: &Server| {
        server.metric("rturn_allocations{transport=\"udp\"}") >= 2.0
            && server.metric("rturn_allocations{transport=\"tcp\"}") >= 2.0
            && server.metric("rturn_relayed_packets_total{direction=\"to_client\"}") >= 100.0
    };
    wait_for("both uclients relaying", TIMEOUT, || relaying(&server));
    // Beside them, open connections of the other kinds, which must not hold the exit up to
    // the grace either: a signaling client in a room, a TCP client that said nothing yet.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _ws = runtime.block_on(signaling_client(server.http_addr()));
    let _idle = tcp_client(server.tcp[0]);

    let signalled = Instant::now();
    let status = server.terminate();
    let took = signalled.elapsed();
    let _ = (udp.kill(), tcp.kill(), udp.wait(), tcp.wait());
    assert!(status.success(), "exit status {status}\n{}", server.log());
    assert!(took < GRACE, "exit took {took:?}, past the {GRACE:?} grace");
    eprintln!("SIGTERM to exit: {took:?}");
    let log = server.log();
    let stopped = log
        .lines()
        .find(|l| l.contains("stopped"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(log.contains("shutting down"), "{log}");
    // The live allocations were torn down by the shutdown, not left to the OS.
    assert!(!stopped.contains("allocations=0"), "{stopped}");
    assert!(!stopped.contains("relayed=0 "), "{stopped}");
    for bad in [
        "did not finish",
        "did not stop",
        "ERROR",
        "WARN",
        "panicked",
    ] {
        assert!(!log.contains(bad), "{bad:?} in the log:\n{log}");
    }
}

#[test]
fn a_restart_binds_at_once_on_the_ports_of_the_first_run() {
    let mut first = Server::start(&turn_config(""));
    let (udp, tcp, http) = (first.udp[0], first.tcp[0], first.http_addr());
    // Connections open when the first run stops: it closes them first, so their server ends
    // linger in TIME_WAIT on the listen ports.
    let mut held = tcp_client(tcp);
    tcp_exchange(&mut held, &binding_request(&[], true));
    let mut turn = RawClient::tcp(tcp, "alice", "wonderland");
    turn.allocate(None).expect("allocation over TCP");
    first.metric("rturn_build_info"); // an HTTP request, closed by the server
    assert!(first.terminate().success(), "{}", first.log());
    assert!(closed_by_server(&mut held), "shutdown closes connections");
    drop((held, turn));
    let lingering = lingering_ports();
    assert!(
        lingering.contains(&tcp.port()),
        "no TIME_WAIT left on {tcp}, so this test would prove nothing: {lingering:?}"
    );

    // The second run names those exact ports.
    let fixed = format!(
        "realm = \"test.local\"\n[listen]\nudp = [\"{udp}\"]\ntcp = [\"{tcp}\"]\nhttp = \"{http}\"\n"
    );
    let config = turn_config("").replace(
        "realm = \"test.local\"\n[listen]\nudp = [\"127.0.0.1:0\"]\ntcp = [\"127.0.0.1:0\"]\nhttp = \"127.0.0.1:0\"\n",
        &fixed,
    );
    assert!(config.contains(&fixed), "{config}");
    let started = Instant::now();
    let second = Server::start(&config);
    let took = started.elapsed();
    assert!(
        !second.log().contains("Error") && second.udp.len() == 1,
        "the second run did not bind:\n{}",
        second.log()
    );
    assert_eq!(
        (second.udp[0], second.tcp[0], second.http_addr()),
        (udp, tcp, http)
    );
    assert!(
        !second.log().to_lowercase().contains("in use"),
        "{}",
        second.log()
    );
    // "At once": ready well within one TIME_WAIT (60 s on Linux), with no retry loop.
    assert!(took < Duration::from_secs(5), "ready after {took:?}");

    // And it serves on them: Binding over both transports, an allocation, /metrics.
    let client = udp_client(udp);
    assert_eq!(
        mapped_address(&udp_exchange(&client, &binding_request(&[], true))),
        client.local_addr().unwrap()
    );
    tcp_exchange(&mut tcp_client(tcp), &binding_request(&[], true));
    RawClient::udp(udp, "bob", "builder")
        .allocate(None)
        .expect("an allocation on the restarted server");
    assert_eq!(second.metric("rturn_allocations{transport=\"udp\"}"), 1.0);
}
