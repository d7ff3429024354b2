//! Black-box: the command line and config errors as an operator sees them.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::*;

#[test]
fn check_config_accepts_the_shipped_config() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/turnserver.toml");
    let out = rturn()
        .args(["-c", path, "--check-config"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
}

fn rejected(config: &str) -> (String, String) {
    let (_dir, path) = write_config(config);
    let out = rturn()
        .arg("--config")
        .arg(&path)
        .arg("--check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "bad config must exit 1");
    let stderr = String::from_utf8(out.stderr).unwrap();
    (stderr, path.display().to_string())
}

#[test]
fn unknown_key_is_one_line_naming_file_and_key() {
    let (stderr, file) = rejected("realm = \"r\"\n[listen]\nudp = []\ntpc = [\"127.0.0.1:1\"]\n");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with(&format!("Error: {file}: listen.tpc: ")),
        "{stderr}"
    );
    assert!(stderr.contains("unknown field"), "{stderr}");
}

#[test]
fn bad_value_is_one_line_naming_file_and_key() {
    let (stderr, file) = rejected("realm = \"r\"\n[relay]\nmin-port = 9000\nmax-port = 8000\n");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with(&format!("Error: {file}: relay.min-port: ")),
        "{stderr}"
    );
}

#[test]
fn missing_default_config_says_where_it_looked() {
    if std::path::Path::new("/etc/rturn/turnserver.toml").exists() {
        return; // this machine has a real installation; the message cannot appear
    }
    let out = rturn().output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/etc/rturn/turnserver.toml"), "{stderr}");
    assert!(stderr.contains("-c FILE"), "{stderr}");
}

#[test]
fn bind_failure_names_address_and_key() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let (_dir, path) = write_config(&format!(
        "realm = \"r\"\n[listen]\nudp = [\"{addr}\"]\ntcp = []\n"
    ));
    let out = rturn().arg("-c").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot bind udp {addr} (listen.udp)")),
        "{stderr}"
    );
    assert_eq!(stderr.matches("os error").count(), 1, "said once: {stderr}");
}

#[test]
fn version_and_help() {
    let out = rturn().arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
    let out = rturn().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("--check-config") && help.contains("--config"),
        "{help}"
    );
}

#[test]
fn json_logs_are_one_object_per_line() {
    let (_dir, path) = write_config("realm = \"r\"\n[listen]\nudp = [\"127.0.0.1:0\"]\ntcp = []\n");
    let mut child = rturn()
        .args(["--log-format", "json", "-c"])
        .arg(&path)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let line = std::io::BufRead::lines(std::io::BufReader::new(stderr))
        .next()
        .unwrap()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert!(
        v["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("listening on udp"),
        "{line}"
    );
}

#[test]
fn a_second_rturn_on_a_running_ones_udp_port_is_refused() {
    // SO_REUSEPORT would let it join the first one's socket group and take some of its
    // clients; it must fail to start instead, naming the address.
    let first = Server::start(&loopback_config(""));
    let udp = first.udp[0];
    let (_dir, path) = write_config(&format!(
        "realm = \"r\"\n[listen]\nudp = [\"{udp}\"]\ntcp = []\n"
    ));
    let mut second = (rturn().arg("-c").arg(&path))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + TIMEOUT;
    while second.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            second.kill().unwrap();
            panic!("a second rturn started on {udp} beside the first");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = second.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot bind udp {udp} (listen.udp)"))
            && stderr.contains("in use"),
        "{stderr}"
    );
    // The first one still answers.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(TIMEOUT)).unwrap();
    socket
        .send_to(&binding_request(&[], false).raw, udp)
        .unwrap();
    let mut buf = [0; 512];
    let (n, from) = socket.recv_from(&mut buf).unwrap();
    assert!(n >= 20 && from == udp, "{n} bytes from {from}");
}
