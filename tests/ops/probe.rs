//! Black-box: `rturn probe` against a running rturn (every step passes, with the targets
//! given as URLs or taken from the config; a wrong password fails it with 401; REST
//! credentials minted from the config's secret work; default peer rules refuse the link-local
//! peer and the relay step says why relaying between two relays fails) and against coturn,
//! the server it must work with alike.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use rturn::testkit::*;

fn probe(config: Option<&std::path::Path>, args: &[&str]) -> Output {
    let mut command = rturn();
    if let Some(path) = config {
        command.arg("-c").arg(path);
    }
    command
        .arg("probe")
        .args(args)
        .args(["--timeout", "5s"])
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The report line of the step whose name starts with `step`.
fn line<'a>(report: &'a str, step: &str) -> &'a str {
    (report.lines().find(|l| l.starts_with(step)))
        .unwrap_or_else(|| panic!("no {step} line in:\n{report}"))
}

fn urls(server: &Server) -> Vec<String> {
    let mut urls = vec![
        format!("turn:{}", server.udp[0]),
        format!("turn:{}?transport=tcp", server.tcp[0]),
    ];
    urls.extend(server.tls.first().map(|a| format!("turns:{a}")));
    urls.extend(server.http.map(|a| format!("http://{a}")));
    urls.extend(server.https.map(|a| format!("https://{a}")));
    urls
}

const USERS: &str = "[auth.users]\nalice = \"wonderland\"\n";

#[test]
fn every_step_passes_against_rturn_with_loopback_peers_allowed() {
    let certs = tempfile::tempdir().unwrap();
    let config = loopback_config(&format!(
        "tls = [\"127.0.0.1:0\"]\nhttp = \"127.0.0.1:0\"\nhttps = \"127.0.0.1:0\"\n\
         [relay]\nrelay-ip = \"127.0.0.1\"\nallow-loopback-peers = true\n{USERS}{}",
        test_certificate(certs.path())
    ));
    let server = Server::start(&config);
    let ca = certs.path().join("cert.pem");

    // URLs given; the TLS certificate verified against the test CA.
    let urls = urls(&server);
    let mut args: Vec<&str> = urls.iter().map(String::as_str).collect();
    args.extend(["--ca-file", ca.to_str().unwrap()]);
    let out = probe(Some(&server.config_path), &args);
    let report = stdout(&out);
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report.contains("probing as alice (from auth.users)"),
        "{report}"
    );
    for step in [
        "binding UDP",
        "binding TCP",
        "binding TLS",
        "allocate UDP",
        "allocate TCP",
        "allocate TLS",
        "relay A<->B",
        "forbidden peer",
        "healthz",
        "ice-servers",
    ] {
        let l = line(&report, step);
        assert!(l.contains(" ok ") && !l.contains(" FAIL "), "{report}");
    }
    assert!(
        line(&report, "healthz https://").contains(" ok "),
        "{report}"
    );
    assert!(
        line(&report, "ice-servers https://").contains(" ok "),
        "{report}"
    );
    assert!(line(&report, "allocate TLS").contains("relayed 127.0.0.1:"));
    assert!(line(&report, "forbidden peer").contains("403"), "{report}");
    assert!(
        report.contains("verdict: PASS (12 passed, 0 failed, 0 skipped)"),
        "{report}"
    );

    // No URL: the targets are the config's [listen] addresses (here the bound ports).
    let bound = config
        .replace(
            "udp = [\"127.0.0.1:0\"]",
            &format!("udp = [\"{}\"]", server.udp[0]),
        )
        .replace(
            "tcp = [\"127.0.0.1:0\"]",
            &format!("tcp = [\"{}\"]", server.tcp[0]),
        )
        .replace(
            "tls = [\"127.0.0.1:0\"]",
            &format!("tls = [\"{}\"]", server.tls[0]),
        )
        .replace(
            "https = \"127.0.0.1:0\"",
            &format!("https = \"{}\"", server.https.unwrap()),
        )
        .replace(
            "http = \"127.0.0.1:0\"",
            &format!("http = \"{}\"", server.http_addr()),
        );
    let (_dir, path) = write_config(&bound);
    let out = probe(Some(&path), &["--insecure"]);
    let report = stdout(&out);
    assert!(out.status.success(), "{report}");
    assert!(
        report.contains("verdict: PASS (12 passed, 0 failed, 0 skipped)"),
        "{report}"
    );

    // An unverifiable certificate fails the TLS steps, and the probe.
    let out = probe(
        Some(&server.config_path),
        &[&format!("turns:{}", server.tls[0])],
    );
    let report = stdout(&out);
    assert!(!out.status.success(), "{report}");
    assert!(line(&report, "binding TLS").contains("FAIL"), "{report}");
}

#[test]
fn a_wrong_password_fails_with_401() {
    let server = Server::start(&loopback_config(&format!(
        "[relay]\nrelay-ip = \"127.0.0.1\"\nallow-loopback-peers = true\n{USERS}"
    )));
    let urls = urls(&server);
    let mut args: Vec<&str> = urls.iter().map(String::as_str).collect();
    args.extend(["--user", "alice", "--password", "not-wonderland"]);
    let out = probe(None, &args);
    let report = stdout(&out);
    assert!(!out.status.success(), "{report}");
    for step in ["allocate UDP", "allocate TCP"] {
        let l = line(&report, step);
        assert!(l.contains("FAIL") && l.contains("401"), "{report}");
    }
    assert!(
        line(&report, "binding UDP").contains(" ok "),
        "Binding needs no password"
    );
    assert!(line(&report, "healthz").contains("skip"), "{report}");
    assert!(report.contains("verdict: FAIL"), "{report}");

    // Nobody there: every step fails within its timeout, and so does the probe.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = probe(
        None,
        &[
            &format!("turn:{closed}?transport=tcp"),
            "--user",
            "alice",
            "--password",
            "wonderland",
        ],
    );
    let report = stdout(&out);
    assert!(!out.status.success(), "{report}");
    assert!(line(&report, "binding TCP").contains(" FAIL "), "{report}");
    assert!(line(&report, "allocate TCP").contains(" FAIL "), "{report}");
}

#[test]
fn default_peer_rules_refuse_the_link_local_peer_and_let_own_relays_meet() {
    // No users: the probe mints TURN REST credentials from the secret.
    let server = Server::start(&loopback_config(
        "[relay]\nrelay-ip = \"127.0.0.1\"\n[auth]\nstatic-auth-secret = \"probe-test-secret\"\n",
    ));
    let out = probe(
        Some(&server.config_path),
        &[&format!("turn:{}", server.udp[0])],
    );
    let report = stdout(&out);
    assert!(
        report.contains(":rturn-probe (from static-auth-secret)"),
        "{report}"
    );
    assert!(line(&report, "allocate UDP").contains(" ok "), "{report}");
    let forbidden = line(&report, "forbidden peer");
    assert!(
        forbidden.contains(" ok ") && forbidden.contains("403"),
        "{report}"
    );
    // The two relay addresses are loopback, but rturn's own live relay endpoints: allowed.
    assert!(line(&report, "relay A<->B").contains(" ok "), "{report}");
    assert!(out.status.success(), "{report}");
}

#[test]
fn a_relay_refused_by_the_operator_fails_the_probe_and_says_why() {
    let server = Server::start(&loopback_config(
        "[relay]\nrelay-ip = \"127.0.0.1\"\ndenied-peer-ip = [\"127.0.0.1\"]\n\
         [auth]\nstatic-auth-secret = \"probe-test-secret\"\n",
    ));
    let out = probe(
        Some(&server.config_path),
        &[&format!("turn:{}", server.udp[0])],
    );
    let report = stdout(&out);
    let relay = line(&report, "relay A<->B");
    assert!(
        relay.contains("FAIL") && relay.contains("403") && relay.contains("peer rules"),
        "{report}"
    );
    assert!(!out.status.success(), "a failed relay fails the probe");
}

/// coturn, killed when dropped.
struct Coturn(Child);

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn coturn_passes_the_turn_steps() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new("turnserver")
        .args([
            "-n",
            "--listening-ip=127.0.0.1",
            &format!("--listening-port={port}"),
        ])
        .args([
            "--relay-ip=127.0.0.1",
            "--min-port=44000",
            "--max-port=44999",
        ])
        .args([
            "--realm=probe.test",
            "--lt-cred-mech",
            "--user=alice:wonderland",
        ])
        .args([
            "--allow-loopback-peers",
            "--denied-peer-ip=169.254.0.0-169.254.255.255",
        ])
        .args(["--no-cli", "--no-tls", "--no-dtls", "--no-stdout-log"])
        .arg("--log-file=/dev/null")
        .arg(format!("--pidfile={}", dir.path().join("pid").display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("turnserver (Debian's coturn; scripts/test.sh installs it)");
    let _coturn = Coturn(child);
    let up = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(up, "coturn did not come up on port {port}");

    let (udp, tcp) = (
        format!("turn:127.0.0.1:{port}"),
        format!("turn:127.0.0.1:{port}?transport=tcp"),
    );
    let out = probe(
        None,
        &[&udp, &tcp, "--user", "alice", "--password", "wonderland"],
    );
    let report = stdout(&out);
    for step in [
        "binding UDP",
        "binding TCP",
        "allocate UDP",
        "allocate TCP",
        "relay A<->B",
        "forbidden peer",
    ] {
        assert!(line(&report, step).contains(" ok "), "{report}");
    }
    for step in ["binding TLS", "allocate TLS", "healthz", "ice-servers"] {
        assert!(line(&report, step).contains(" skip "), "{report}");
    }
    assert!(out.status.success(), "{report}");

    let out = probe(None, &[&udp, "--user", "alice", "--password", "wrong"]);
    let report = stdout(&out);
    assert!(!out.status.success(), "{report}");
    assert!(line(&report, "allocate UDP").contains("401"), "{report}");
}

#[test]
fn help_lists_probe_and_a_bad_url_is_refused_by_name() {
    let out = rturn().arg("--help").output().unwrap();
    let help = stdout(&out);
    assert!(
        help.contains("probe") && help.contains("end to end"),
        "{help}"
    );
    let out = rturn().args(["probe", "--help"]).output().unwrap();
    let help = stdout(&out);
    for word in ["turns:", "--user", "--insecure", "--ca-file", "--timeout"] {
        assert!(help.contains(word), "{word}: {help}");
    }
    let out = probe(
        None,
        &["turn:h?transport=sctp", "--user", "a", "--password", "b"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("turn:h?transport=sctp"), "{stderr}");
}
