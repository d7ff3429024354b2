//! Black-box: the command line and config errors as an operator sees them.

use rturn::testkit::*;

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

/// Loopback listeners (nothing public), for the cases that are about something else.
const LOCAL: &str = "realm = \"r\"\n[listen]\nudp = [\"127.0.0.1:0\"]\ntcp = []\n";

/// A relay-ip that is not this machine's started silently and answered every Allocate with
/// 508; now --check-config and a start both refuse it, naming the key and saying why.
#[test]
fn relay_ip_not_of_this_machine_is_refused() {
    let config = format!("{LOCAL}[relay]\nrelay-ip = \"192.0.2.1\"\n");
    let (stderr, file) = rejected(&config);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with(&format!(
            "Error: {file}: relay.relay-ip: 192.0.2.1 is not an address of this machine"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("508") && stderr.contains("external-ip"),
        "{stderr}"
    );

    let (_dir, path) = write_config(&config);
    let out = rturn().arg("-c").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "a start must fail too");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("relay.relay-ip: 192.0.2.1 is not an address"),
        "{stderr}"
    );
}

#[test]
fn loopback_relay_ip_beside_a_public_listener_is_refused() {
    let (stderr, file) = rejected(
        "realm = \"r\"\n[listen]\nudp = [\"0.0.0.0:3478\"]\ntcp = []\n\
         [relay]\nrelay-ip = \"127.0.0.1\"\n",
    );
    assert!(
        stderr.starts_with(&format!(
            "Error: {file}: relay.relay-ip: 127.0.0.1 is loopback"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("0.0.0.0:3478") && stderr.contains("relay.external-ip"),
        "{stderr}"
    );
}

#[test]
fn a_digit_rest_separator_is_refused() {
    let (stderr, file) = rejected(&format!(
        "{LOCAL}[relay]\nrelay-ip = \"127.0.0.1\"\n[auth]\nstatic-auth-secret = \"s\"\nrest-separator = \"7\"\n"
    ));
    assert!(
        stderr.starts_with(&format!("Error: {file}: auth.rest-separator: ")),
        "{stderr}"
    );
}

/// On a public listener a one-character secret or password passed while token-secret,
/// admin.token and nonce-secret needed 16 characters: one rule for all of them now.
#[test]
fn short_secrets_are_refused_on_a_public_listener() {
    // Validation comes first, so the relay address need not be this machine's here.
    let public = "realm = \"r\"\n[listen]\nudp = [\"0.0.0.0:3478\"]\ntcp = []\n\
                  [relay]\nrelay-ip = \"10.0.0.5\"\n";
    for (auth, key) in [
        (
            "[auth]\nstatic-auth-secret = \"x\"\n",
            "auth.static-auth-secret[0]",
        ),
        ("[auth.users]\nalice = \"y\"\n", "auth.users.alice"),
    ] {
        let (stderr, file) = rejected(&format!("{public}{auth}"));
        assert!(
            stderr.starts_with(&format!(
                "Error: {file}: {key}: must be at least 16 characters"
            )),
            "{stderr}"
        );
    }
}

/// "Permission denied" was printed twice and said nothing about the fix; now once, naming
/// the user that must read the file and how (the systemd unit runs as the user rturn).
/// Run as root, the check runs rturn as nobody, for whom the mode means something.
#[test]
fn permission_denied_is_said_once_with_who_and_how() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let root = nix::unistd::getuid().is_root();
    let uid = if root {
        65534
    } else {
        nix::unistd::getuid().as_raw()
    };
    let run = |path: &std::path::Path| {
        let mut command = rturn();
        command.arg("-c").arg(path).arg("--check-config");
        if root {
            command.uid(65534).gid(65534);
        }
        let out = command.output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8(out.stderr).unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();

    // The config file itself.
    let config = dir.path().join("turnserver.toml");
    std::fs::write(&config, LOCAL).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o000)).unwrap();
    let stderr = run(&config);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert_eq!(
        stderr.to_lowercase().matches("permission denied").count(),
        1,
        "said once: {stderr}"
    );
    assert!(
        stderr.starts_with(&format!(
            "Error: {}: cannot read the file",
            config.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("uid {uid}")), "{stderr}");
    assert!(
        stderr.contains("chmod") && stderr.contains("LoadCredential="),
        "{stderr}"
    );

    // A key the config points at.
    let tls = test_certificate(dir.path());
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&config, format!("{LOCAL}{tls}")).unwrap();
    for pem in ["cert.pem", "key.pem"] {
        std::fs::set_permissions(dir.path().join(pem), std::fs::Permissions::from_mode(0o644))
            .unwrap();
    }
    let key = dir.path().join("key.pem");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o000)).unwrap();
    let stderr = run(&config);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert_eq!(
        stderr.to_lowercase().matches("permission denied").count(),
        1,
        "said once: {stderr}"
    );
    assert!(
        stderr.contains(&format!("{} (tls.key)", key.display())),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("uid {uid}")), "{stderr}");
    assert!(stderr.contains("LoadCredential="), "{stderr}");
}

/// `rturn token` on a server that asks for no token: where `token-secret` goes.
#[test]
fn token_without_a_token_secret_says_where_it_goes() {
    let (_dir, path) = write_config(LOCAL);
    let out = rturn().arg("-c").arg(&path).arg("token").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with(&format!("Error: {}: ", path.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("under [signal]") && stderr.contains("token-secret = "),
        "{stderr}"
    );
}
