//! Black-box, with a client we did not write: two RTCPeerConnections in headless Chromium,
//! configured with `turn:127.0.0.1:PORT` and `iceTransportPolicy: "relay"`, open a data
//! channel to each other through the built binary, over UDP and over TCP.
//!
//! The page (`tests/browser/relay.html`) passes only if a message and its echo arrive and
//! `getStats()` shows a relay/relay selected pair whose relay protocol is the transport under
//! test, so a direct host path cannot make it pass. The driver (`tests/browser/relay.mjs`)
//! runs Debian's `/usr/bin/chromium` through `playwright-core`; `scripts/test.sh` installs
//! both. A missing browser fails the test rather than skipping it.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// Relays on loopback (the browser's peer is the other allocation on 127.0.0.1) and the
/// credentials the page uses.
const RELAY: &str = "[relay]\nrelay-ip = \"127.0.0.1\"\nallow-loopback-peers = true\n\
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

    let mut server = Server::start(&loopback_config(RELAY));
    let port = match transport {
        "udp" => server.udp[0].port(),
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
