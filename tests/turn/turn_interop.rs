//! Black-box interop: coturn's own test client, `turnutils_uclient`, relays through the built
//! rturn binary to coturn's echo peer, `turnutils_peer`, and loses nothing. Every transport
//! and mode the client has for plain TURN: ChannelData, Send indications, TCP, client to
//! client, TURN REST credentials, and an `external-ip` (NAT) configuration.

use rturn::testkit::*;

const TURN_CONFIG: &str = "[relay]\nrelay-ip = \"127.0.0.1\"\nallow-loopback-peers = true\n\
                           [auth]\nstatic-auth-secret = \"rest-secret\"\n\
                           [auth.users]\nalice = \"wonderland\"\n";

/// Runs turnutils_uclient against `server` with `flags` and checks every message came back.
fn uclient(server: &Server, peer: &EchoPeer, flags: &[&str]) {
    uclient_checked(server, peer, &[flags, &["-c"]].concat());
}

/// Like [`uclient`] but with `flags` exactly as given: without `-c` the client asks for
/// RTP/RTCP pairs (EVEN-PORT with R=1, then an Allocate with the RESERVATION-TOKEN).
fn uclient_checked(server: &Server, peer: &EchoPeer, flags: &[&str]) {
    let (clients, messages) = (4, 40);
    let text = uclient_run(server, peer, flags, clients, messages);
    let summary = || format!("uclient {flags:?}:\n{text}\nserver log:\n{}", server.log());
    assert_all_arrived(&text, clients, messages, summary);
    assert_no_errors(&text, summary);
}

#[test]
fn uclient_udp_channel_data() {
    let server = Server::start(&loopback_config(TURN_CONFIG));
    uclient(&server, &EchoPeer::start(), &[]);
}

#[test]
fn uclient_udp_send_indications() {
    let server = Server::start(&loopback_config(TURN_CONFIG));
    uclient(&server, &EchoPeer::start(), &["-s"]);
}

#[test]
fn uclient_tcp_channel_data_and_send_indications() {
    let server = Server::start(&loopback_config(TURN_CONFIG));
    let peer = EchoPeer::start();
    uclient(&server, &peer, &["-t"]);
    uclient(&server, &peer, &["-t", "-s"]);
}

#[test]
fn uclient_tls() {
    let dir = tempfile::tempdir().unwrap();
    let tls = test_certificate(dir.path());
    let config = format!("{TURN_CONFIG}{tls}").replace(
        "[relay]",
        "[listen]\nudp = [\"127.0.0.1:0\"]\ntcp = [\"127.0.0.1:0\"]\ntls = [\"127.0.0.1:0\"]\n[relay]",
    );
    let server = Server::start(&format!("realm = \"test.local\"\n{config}"));
    uclient_tls_runs(&server);
}

/// `turnutils_uclient -t -S` on the TLS port shared with HTTPS (`listen.https` naming the
/// `listen.tls` address): it relays, losing nothing, and HTTPS still answers there.
#[test]
fn uclient_tls_on_the_port_shared_with_https() {
    let dir = tempfile::tempdir().unwrap();
    let tls = test_certificate(dir.path());
    let port = free_port();
    let listen = format!(
        "[listen]\nudp = [\"127.0.0.1:0\"]\ntcp = [\"127.0.0.1:0\"]\n\
         tls = [\"127.0.0.1:{port}\"]\nhttps = \"127.0.0.1:{port}\"\n[relay]"
    );
    let config = format!("{TURN_CONFIG}{tls}").replace("[relay]", &listen);
    let server = Server::start(&format!("realm = \"test.local\"\n{config}"));
    assert_eq!(Some(server.tls[0]), server.https, "one port");
    uclient_tls_runs(&server);
    let turn = |how: &str| {
        let name = format!("rturn_shared_tls_connections_total{{outcome=\"turn_{how}\"}}");
        crate::shared_tls::metric(server.tls[0], dir.path(), &name)
    };
    assert!(turn("alpn") + turn("first_bytes") >= 2.0);
}

/// A few `turnutils_uclient -t -S` runs against `server.tls[0]`; at least two must get
/// through, and those lose nothing.
fn uclient_tls_runs(server: &Server) {
    let peer = EchoPeer::start();
    // turnutils_uclient -S picks its TLS version at random for each connection, TLS 1.0 and
    // 1.1 included, which rturn refuses by design (TLS 1.2 and 1.3 only): a run whose client
    // drew an old version fails its handshake. So one client per run, a few runs, and every
    // run that got through must have lost nothing.
    let mut passed = 0;
    for _ in 0..12 {
        let out = uclient_run(server, &peer, &["-t", "-S", "-c"], 1, 40);
        if out.contains("tot_send_msgs=40, tot_recv_msgs=40") {
            assert!(out.contains("Total lost packets 0 (0.000000%)"), "{out}");
            passed += 1;
            if passed == 2 {
                return;
            }
        }
    }
    panic!(
        "no TLS run of turnutils_uclient got through; server log:\n{}",
        server.log()
    );
}

#[test]
fn uclient_client_to_client() {
    let server = Server::start(&loopback_config(TURN_CONFIG));
    let peer = EchoPeer::start();
    uclient(&server, &peer, &["-y"]);
    uclient(&server, &peer, &["-y", "-t"]);
}

#[test]
fn uclient_rtp_rtcp_pairs_at_the_default_worker_count() {
    // Each client allocates an even relay port reserving the next (EVEN-PORT R=1), then
    // claims it from a new socket with RESERVATION-TOKEN: with several workers that second
    // Allocate usually lands on another worker than the reservation, which must find it.
    let server = Server::start(&loopback_config(TURN_CONFIG));
    let peer = EchoPeer::start();
    for _ in 0..3 {
        uclient_checked(&server, &peer, &["-y"]);
    }
    uclient_checked(&server, &peer, &[]);
}

#[test]
fn uclient_rest_secret() {
    let server = Server::start(&loopback_config(TURN_CONFIG));
    uclient(&server, &EchoPeer::start(), &["-W", "rest-secret"]);
}

#[test]
fn uclient_behind_external_ip() {
    // Relays bind 127.0.0.1 and are advertised as 127.0.0.2, as a NATed server would
    // advertise its public address; peers reach the relay at its real address.
    let config = TURN_CONFIG.replace(
        "relay-ip = \"127.0.0.1\"\n",
        "relay-ip = \"127.0.0.1\"\nexternal-ip = \"127.0.0.2/127.0.0.1\"\n",
    );
    let server = Server::start(&loopback_config(&config));
    uclient(&server, &EchoPeer::start(), &[]);
}

#[test]
fn allocations_are_released_when_tcp_clients_leave() {
    // With UDP the same run leaves allocations behind (uclient does not delete them), which
    // proves the count below is real.
    let mut udp = Server::start(&loopback_config(TURN_CONFIG));
    uclient(&udp, &EchoPeer::start(), &[]);
    assert!(udp.terminate().success());
    let stopped = udp.wait_line(|l| l.contains("stopped"));
    assert!(!stopped.contains("allocations=0"), "{stopped}");

    let mut server = Server::start(&loopback_config(TURN_CONFIG));
    uclient(&server, &EchoPeer::start(), &["-t"]);
    assert!(server.terminate().success());
    let stopped = server.wait_line(|l| l.contains("stopped"));
    // Every connection closed, so every allocation went with it before shutdown.
    assert!(stopped.contains("allocations=0"), "{stopped}");
    assert!(!stopped.contains("relayed=0 "), "{stopped}");
}
