//! Black-box, with a client we did not write: two RTCPeerConnections in headless Chromium,
//! configured with `turn:127.0.0.1:PORT` and `iceTransportPolicy: "relay"`, open a data
//! channel to each other through the built binary, over UDP and over TCP.
//!
//! The page (`tests/browser/relay.html`) passes only if a message and its echo arrive and
//! `getStats()` shows a relay/relay selected pair whose relay protocol is the transport under
//! test, so a direct host path cannot make it pass. The driver (`tests/browser/relay.mjs`)
//! runs Debian's `/usr/bin/chromium` through `playwright-core`; `scripts/test.sh` installs
//! both. A missing browser fails the test rather than skipping it.
//!
//! The same browser then drives rturn's own pages, served by its HTTP listener: two video-room
//! pages (`/room/demo`) that signal over `/ws` and connect through the relay
//! (`tests/browser/room.mjs`), and the trickle-ICE page (`/`) gathering a relay candidate with
//! the servers from `/api/ice-servers` (`tests/browser/trickle.mjs`); and, on one TLS port
//! shared by `turns:` and HTTPS, the room page over HTTPS and `wss:` gathering a relay
//! candidate from that port's `turns:` URL (`tests/browser/shared_port.mjs`). Two pages
//! of an app written against the SkyRTC client signal over `/skyrtc` and connect through
//! the relay (`tests/browser/skyrtc.mjs`).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::Command;

use rturn::testkit::*;

/// Relays on loopback at the shipped peer rules (the browser's peer is the other allocation,
/// one of this server's own live relay endpoints on 127.0.0.1) and the
/// credentials the page uses.
const RELAY: &str = "[relay]\nrelay-ip = \"127.0.0.1\"\n\
                     [auth.users]\nalice = \"wonderland\"\n";

const CHROMIUM: &str = "/usr/bin/chromium";

#[test]
fn browser_data_channel_over_turn_udp() {
    data_channel_through_rturn("udp");
}

#[test]
fn browser_data_channel_over_turn_tcp() {
    data_channel_through_rturn("tcp");
}

#[test]
fn browser_data_channel_over_turns() {
    data_channel_through_rturn("tls");
}

fn data_channel_through_rturn(transport: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let chromium = std::env::var("RTURN_CHROMIUM").unwrap_or_else(|_| CHROMIUM.into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: run scripts/test.sh (it installs Debian's chromium)"
    );
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "tests/browser/node_modules is missing: run scripts/test.sh \
         (it runs npm ci --prefix tests/browser)"
    );

    // turns: needs a certificate, made now; relay.mjs tells Chromium to accept it.
    let certs = tempfile::tempdir().unwrap();
    let config = match transport {
        "tls" => format!(
            "{RELAY}{}",
            test_certificate(certs.path())
        )
        .replace("[relay]", "[listen]\nudp = [\"127.0.0.1:0\"]\ntcp = [\"127.0.0.1:0\"]\ntls = [\"127.0.0.1:0\"]\n[relay]"),
        _ => loopback_config(RELAY),
    };
    let config = match transport {
        "tls" => format!("realm = \"test.local\"\n{config}"),
        _ => config,
    };
    let mut server = Server::start(&config);
    let port = match transport {
        "udp" => server.udp[0].port(),
        "tls" => server.tls[0].port(),
        _ => server.tcp[0].port(),
    };
    // relay.mjs gives up by itself after 30 s, so this cannot hang.
    let out = Command::new("node")
        .arg(dir.join("relay.mjs"))
        .args([port.to_string().as_str(), transport])
        .env("RTURN_CHROMIUM", &chromium)
        .output()
        .expect("node is missing: install Node.js, then run scripts/test.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "no data channel through rturn over {transport} ({}):\n{stdout}\n{stderr}\nrturn log:\n{}",
        out.status,
        server.log()
    );
    assert!(stdout.contains("\"ok\":true"), "{stdout}");

    // The server saw the traffic: data was relayed, and the browser reached it over the
    // transport under test (one TCP connection per peer, none for UDP).
    assert!(server.terminate().success());
    let stopped = server.wait_line(|l| l.contains("stopped"));
    assert!(count(&stopped, "relayed") > 0, "{stopped}");
    let tcp_accepted = count(&stopped, "tcp_accepted");
    match transport {
        "udp" => assert_eq!(tcp_accepted, 0, "{stopped}"),
        _ => assert!(tcp_accepted >= 2, "{stopped}"),
    }
}

/// The value of `key=N` in a log line.
fn count(line: &str, key: &str) -> u64 {
    let value = line
        .split_whitespace()
        .find_map(|field| field.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in: {line}"));
    value.parse().unwrap()
}

/// The config for the page tests: TURN on UDP and TCP, the HTTP listener, and TURN REST
/// credentials, which `/api/ice-servers` and the join reply hand to the pages. The peer
/// rules are the shipped ones (no `allow-loopback-peers`): two relays of this server reach
/// each other because each peer is one of the server's own live relay endpoints.
const PAGES: &str = "realm = \"test.local\"\n\
                     [listen]\nudp = [\"127.0.0.1:0\"]\ntcp = [\"127.0.0.1:0\"]\n\
                     http = \"127.0.0.1:0\"\n\
                     [relay]\nrelay-ip = \"127.0.0.1\"\n\
                     [auth]\nstatic-auth-secret = \"test-secret\"\n\
                     [signal]\nheartbeat-interval = \"5s\"\n";

/// Two browser contexts open `/room/demo?policy=relay`, find each other through `/ws`,
/// connect through the TURN relay with the credentials from the join reply (each page lists
/// the other as `connected` with a relay/relay selected pair and plays its fake camera) and
/// chat both ways over the data channel. See `tests/browser/room.mjs`.
#[test]
fn browser_room_pages_connect_through_the_relay() {
    let mut server = Server::start(PAGES);
    run_page_script(&[&server], "room.mjs", "room.png");

    // At the shipped peer rules, each relay reached the other as one of the server's own
    // live relay endpoints, handed over in process, and no peer was refused.
    let handed = server.metric("rturn_relay_handoff_total{result=\"delivered\"}");
    assert!(handed > 0.0, "no data handed between the two relays");
    assert_eq!(
        server.metric("rturn_requests_refused_total{code=\"403\"}"),
        0.0
    );
    // The media and the chat went through rturn's relay, not around it.
    assert!(server.terminate().success());
    let stopped = server.wait_line(|l| l.contains("stopped"));
    assert!(count(&stopped, "relayed") > 0, "{stopped}");
}

/// The room test with its two pages on two nodes of a cluster sharing one Redis (and the
/// TURN secret): each page signals through its own node, the rooms meet through Redis, and
/// each page relays through its own node's TURN server.
#[test]
fn browser_room_pages_on_two_nodes_meet_through_redis() {
    let redis = rturn::testkit::redis::Redis::start();
    let cluster = |id: &str| {
        format!(
            "{}[cluster]\nredis = \"{}\"\nnode-id = \"{id}\"\npresence-ttl = \"2s\"\n",
            // Each page relays through its own node: the other node's relay is another
            // process's port, not one of this server's own, so loopback peers are allowed.
            PAGES.replace(
                "relay-ip = \"127.0.0.1\"\n",
                "relay-ip = \"127.0.0.1\"\nallow-loopback-peers = true\n"
            ),
            redis.url()
        )
    };
    let mut a = Server::start(&cluster("a"));
    let mut b = Server::start(&cluster("b"));
    run_page_script(&[&a, &b], "room.mjs", "room-two-nodes.png");

    // Signaling crossed nodes both ways, and both TURN servers relayed media.
    for server in [&a, &b] {
        assert!(server.metric("rturn_cluster_relayed_total{direction=\"out\"}") > 0.0);
        assert!(server.metric("rturn_cluster_relayed_total{direction=\"in\"}") > 0.0);
    }
    for server in [&mut a, &mut b] {
        assert!(server.terminate().success());
        let stopped = server.wait_line(|l| l.contains("stopped"));
        assert!(count(&stopped, "relayed") > 0, "{stopped}");
    }
}

/// On a server whose operator denies the relay address as a peer (`denied-peer-ip`), two
/// relay-only room pages cannot reach each other (each relay refuses the other's address
/// with 403): page A marks the peer failed and says why, naming the peer rules and 403,
/// instead of a bare "failed". See `tests/browser/room_refused.mjs`.
#[test]
fn browser_room_page_says_why_a_relay_only_connection_failed() {
    let config = PAGES.replace(
        "relay-ip = \"127.0.0.1\"\n",
        "relay-ip = \"127.0.0.1\"\ndenied-peer-ip = [\"127.0.0.1\"]\n",
    );
    let server = Server::start(&config);
    run_page_script(&[&server], "room_refused.mjs", "room-refused.png");
    // The refusals the page explains were the server's peer rules.
    assert!(server.metric("rturn_requests_refused_total{code=\"403\"}") > 0.0);
}

/// The trickle-ICE page at `/` loads its servers from `/api/ice-servers`, and with policy
/// "relay" gathers a relay candidate on 127.0.0.1 for each of the TURN URLs (UDP and TCP to
/// the server) and says so in its verdict. See `tests/browser/trickle.mjs`.
#[test]
fn browser_trickle_page_gathers_a_relay_candidate() {
    let mut server = Server::start(PAGES);
    run_page_script(&[&server], "trickle.mjs", "trickle.png");

    // The browser reached the TURN server over TCP too (the tcp URL of the API).
    assert!(server.terminate().success());
    let stopped = server.wait_line(|l| l.contains("stopped"));
    assert!(count(&stopped, "tcp_accepted") > 0, "{stopped}");
}

/// An app written against the articles' SkyRTC client (`tests/browser/skyrtc.html`) works
/// on rturn by its server URL alone: two pages signal over `/skyrtc` in SkyRTC's dialect,
/// build each relayed candidate with `new RTCIceCandidate(data)` (which today's Chromium
/// accepts because rturn adds `sdpMLineIndex` beside `label`), and open a data channel
/// through the TURN relay, relay/relay on both sides. See `tests/browser/skyrtc.mjs`.
#[test]
fn browser_skyrtc_app_connects_through_rturn() {
    let mut server = Server::start(PAGES);
    run_page_script(&[&server], "skyrtc.mjs", "skyrtc.png");
    assert!(server.metric("rturn_signal_messages_relayed_total") >= 4.0);
    assert!(server.terminate().success());
    let stopped = server.wait_line(|l| l.contains("stopped"));
    assert!(count(&stopped, "relayed") > 0, "{stopped}");
}

/// Runs `tests/browser/SCRIPT HTTP_PORT…` against `servers` (one per page, for the room
/// script) and fails with its JSON, its stderr and rturn's logs unless it passed. With `RTURN_SCREENSHOTS=DIR` in the environment
/// the script also saves `DIR/SHOT` (how `web/screenshots/` is made).
fn run_page_script(servers: &[&Server], script: &str, shot: &str) {
    let (dir, chromium) = browser();
    let mut node = Command::new("node");
    node.arg(dir.join(script)).env("RTURN_CHROMIUM", &chromium);
    for server in servers {
        node.arg(server.http_addr().port().to_string());
    }
    if let Some(shots) = std::env::var_os("RTURN_SCREENSHOTS") {
        node.arg("--screenshot").arg(Path::new(&shots).join(shot));
    }
    // The scripts give up by themselves (within a minute), so this cannot hang.
    let out = node
        .output()
        .expect("node is missing: install Node.js, then run scripts/test.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} failed ({}):\n{stdout}\n{stderr}\nrturn logs:\n{}",
        out.status,
        servers
            .iter()
            .map(|s| s.log())
            .collect::<Vec<_>>()
            .join("\n----\n")
    );
    assert!(stdout.contains("\"ok\":true"), "{stdout}");
}

/// The test directory and the Chromium to drive; panics (never skips) when either the
/// browser or playwright-core is missing.
fn browser() -> (PathBuf, String) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let chromium = std::env::var("RTURN_CHROMIUM").unwrap_or_else(|_| CHROMIUM.into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: run scripts/test.sh (it installs Debian's chromium)"
    );
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "tests/browser/node_modules is missing: run scripts/test.sh \
         (it runs npm ci --prefix tests/browser)"
    );
    (dir, chromium)
}

/// One TLS port for `turns:`, HTTPS and WSS: the room page served over HTTPS on the port
/// `listen.tls` and `listen.https` share joins its room over `wss:` there, and Chromium
/// gathers a relay candidate over TLS from the `turns:` URL `/api/ice-servers` lists for that
/// same port. See `tests/browser/shared_port.mjs`.
#[test]
fn browser_turns_and_wss_room_on_one_port() {
    let (dir, chromium) = browser();
    let certs = tempfile::tempdir().unwrap();
    let port = {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        free.local_addr().unwrap().port()
    };
    let listen = format!("tls = [\"127.0.0.1:{port}\"]\nhttps = \"127.0.0.1:{port}\"\n[relay]");
    let config =
        format!("{PAGES}{}", test_certificate(certs.path())).replacen("[relay]", &listen, 1);
    let server = Server::start(&config);
    assert_eq!(server.https.map(|a| a.port()), Some(port), "one port");
    // The script gives up by itself (within a minute), so this cannot hang.
    let out = Command::new("node")
        .arg(dir.join("shared_port.mjs"))
        .arg(port.to_string())
        .env("RTURN_CHROMIUM", &chromium)
        .output()
        .expect("node is missing: install Node.js, then run scripts/test.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("\"ok\":true"),
        "shared_port.mjs failed ({}):\n{stdout}\n{stderr}\nrturn log:\n{}",
        out.status,
        server.log()
    );
    // Both sides came through the one port: Chromium's turns: offers no ALPN (told by its
    // first bytes, and handed to the workers as TURN), the page and its WebSocket offer
    // http/1.1.
    let outcome = |o: &str| {
        server.metric(&format!(
            "rturn_shared_tls_connections_total{{outcome=\"{o}\"}}"
        ))
    };
    assert!(outcome("turn_first_bytes") >= 1.0, "{}", server.log());
    assert!(outcome("http_alpn") >= 2.0, "{}", server.log());
    let accepted = server.metric("rturn_tcp_connections_total{event=\"accepted\"}");
    assert!(accepted >= 1.0);
}
