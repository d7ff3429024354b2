//! Black-box: `rturn import-coturn` on coturn's own example file, on every option that file
//! documents, and a round trip: a coturn configuration converted, served by rturn (with
//! `/healthz` and `/metrics` on its HTTP listener), and used by coturn's `turnutils_uclient`
//! through coturn's echo peer with nothing lost. And what coturn does with a secret alone
//! (REST credentials only), shown on coturn itself.

use std::path::Path;
use std::process::{Command, Output};

use rturn::testkit::*;

/// The example configuration shipped by Debian's coturn package (scripts/test.sh installs it).
const EXAMPLE: &str = "/usr/share/doc/coturn/examples/etc/turnserver.conf";

fn example() -> String {
    std::fs::read_to_string(EXAMPLE).unwrap_or_else(|e| {
        panic!("{EXAMPLE}: {e}: install coturn (scripts/test.sh does) to run this test")
    })
}

fn import(path: &Path) -> Output {
    rturn().arg("import-coturn").arg(path).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[test]
fn coturn_example_converts_to_a_valid_config() {
    let source = example();
    let out = import(Path::new(EXAMPLE));
    let (toml, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");

    let (_dir, path) = write_config(&toml);
    let check = rturn()
        .arg("-c")
        .arg(&path)
        .arg("--check-config")
        .output()
        .unwrap();
    assert!(check.status.success(), "{}\n{toml}", text(&check.stderr));

    // Every report names the file, and each "line N: NAME:" is true of the file.
    let lines: Vec<&str> = source.lines().collect();
    let mut numbered = 0;
    for report in stderr.lines() {
        let report = report
            .strip_prefix(&format!("{EXAMPLE}: "))
            .unwrap_or_else(|| panic!("report without the file name: {report}"));
        let Some(rest) = report.strip_prefix("line ") else {
            continue;
        };
        let (number, rest) = rest.split_once(": ").unwrap();
        let name = rest.split(": ").next().unwrap();
        let line = lines[number.parse::<usize>().unwrap() - 1].trim_start();
        assert!(
            line.trim_start_matches('-').starts_with(name),
            "{report} / {line:?}"
        );
        numbered += 1;
    }
    // coturn's example switches on a few options; each is reported where it is.
    let active: Vec<(usize, &str)> = (1..)
        .zip(&lines)
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|(n, l)| (n, *l))
        .collect();
    assert!(!active.is_empty() && numbered >= 1, "{stderr}");
    for (n, line) in &active {
        let name = line.split(['=', ' ', '\t']).next().unwrap();
        assert!(
            stderr.contains(&format!("{EXAMPLE}: line {n}: {name}: ")),
            "line {n} ({line}) is not reported:\n{stderr}"
        );
    }
    // What needs attention is also at the top of the TOML.
    assert!(toml.starts_with("# rturn configuration converted from a coturn"));
}

#[test]
fn every_option_the_example_documents_is_known() {
    // The example documents each option in a commented-out line ("#realm=mycompany.org");
    // switch all of them on at once.
    let source = example();
    let mut options = 0;
    let uncommented: String = source
        .lines()
        .map(|line| match line.strip_prefix('#') {
            Some(option) if is_option(option) => {
                options += 1;
                format!("{option}\n")
            }
            _ => format!("{line}\n"),
        })
        .collect();
    assert!(options > 80, "only {options} options found in {EXAMPLE}");
    let c = rturn::coturn::convert(&uncommented);
    rturn::Config::from_toml(&c.toml).unwrap_or_else(|e| panic!("{e}\n{}", c.toml));
    let unknown: Vec<&String> = c.skipped.iter().filter(|s| s.contains("unknown")).collect();
    assert!(unknown.is_empty(), "{unknown:#?}");
    assert!(c.skipped.iter().all(|s| !s.contains("does not pass")));
}

/// Whether a commented-out line is an option: a name, then nothing, `=...` or ` "..."`.
fn is_option(text: &str) -> bool {
    let name_len = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .unwrap_or(text.len());
    let rest = &text[name_len..];
    name_len > 1
        && text.starts_with(|c: char| c.is_ascii_alphabetic())
        && (rest.is_empty() || rest.starts_with('=') || rest.starts_with(" \""))
}

#[test]
fn converted_config_relays_for_turnutils_uclient() {
    let port = free_port();
    let coturn = format!(
        "# a coturn server for tests\nlistening-ip=127.0.0.1\nlistening-port={port}\n\
         relay-ip=127.0.0.1\nmin-port=42000\nmax-port=42999\nrealm=import.test\nlt-cred-mech\n\
         user=alice:wonderland\nallow-loopback-peers\nno-tls\nno-dtls\nfingerprint\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("turnserver.conf");
    std::fs::write(&path, &coturn).unwrap();
    let out = import(&path);
    let (toml, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    // Converted lines are silent; the rest is reported with its line.
    let file = path.display();
    assert!(
        stderr.contains(&format!("{file}: line 12: no-dtls: ")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{file}: line 13: fingerprint: ")),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 2, "{stderr}");

    // /healthz and /metrics on loopback, on rturn's usual port; a free one here.
    let http = "http = \"127.0.0.1:8080\"\n";
    assert!(toml.contains(http), "{toml}");
    let server = Server::start(&toml.replace(http, "http = \"127.0.0.1:0\"\n"));
    let want = vec![format!("127.0.0.1:{port}").parse().unwrap()];
    assert_eq!((&server.udp, &server.tcp), (&want, &want), "{toml}");
    assert!(http_body(server.http_addr(), "/healthz").contains("\"status\":\"ok\""));
    assert!(!server.metrics().is_empty(), "/metrics is served");
    let peer = EchoPeer::start();
    uclient(&server, &peer, &[]);
    uclient(&server, &peer, &["-t"]);
}

/// Runs turnutils_uclient as alice against `server` and checks every message came back.
fn uclient(server: &Server, peer: &EchoPeer, flags: &[&str]) {
    let (clients, messages) = (4, 40);
    let flags = [flags, &["-c"]].concat();
    let text = uclient_run(server, peer, &flags, clients, messages);
    let summary = || format!("uclient {flags:?}:\n{text}\nserver log:\n{}", server.log());
    assert_all_arrived(&text, clients, messages, summary);
    assert_no_errors(&text, summary);
}

/// coturn's static-auth-secret needs no use-auth-secret, and with it coturn refuses its
/// user= lines: shown on coturn itself, and the importer carries the secret and says so.
#[test]
fn a_secret_alone_is_how_coturn_authenticates_and_the_import_says_so() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let secret = "coturn-rest-secret-0123";
    let conf = format!(
        "listening-ip=127.0.0.1\nlistening-port={port}\nrelay-ip=127.0.0.1\n\
         min-port=43000\nmax-port=43999\nrealm=import.test\nstatic-auth-secret={secret}\n\
         user=alice:wonderland\nallow-loopback-peers\nno-tls\nno-dtls\nno-cli\n\
         log-file=/dev/null\npidfile={}\n",
        dir.path().join("pid").display()
    );
    let path = dir.path().join("turnserver.conf");
    std::fs::write(&path, &conf).unwrap();
    let child = Command::new("turnserver")
        .arg("-c")
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("turnserver (Debian's coturn; scripts/test.sh installs it)");
    let _coturn = Coturn(child);
    let up = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(up, "coturn did not come up on port {port}");
    let uclient = |credentials: &[&str]| {
        let out = Command::new("timeout")
            .arg("30")
            .arg("turnutils_uclient")
            .args(["-y", "-n", "5", "-m", "1", "-p", &port.to_string()])
            .args(credentials)
            .arg("127.0.0.1")
            .output()
            .expect("turnutils_uclient (coturn)");
        text(&out.stdout) + &text(&out.stderr)
    };
    let rest = uclient(&["-W", secret, "-u", "bob"]);
    assert!(rest.contains("Total lost packets 0 (0.000000%)"), "{rest}");
    let user = uclient(&["-u", "alice", "-w", "wonderland"]);
    assert!(!user.contains("Total lost packets 0"), "{user}");

    let out = import(&path);
    let (toml, stderr) = (text(&out.stdout), text(&out.stderr));
    let config = rturn::Config::from_toml(&toml).unwrap();
    assert_eq!(config.auth.static_auth_secret, [secret]);
    assert!(
        stderr.contains("user: with use-auth-secret or static-auth-secret coturn"),
        "{stderr}"
    );
}

/// coturn, killed when dropped.
struct Coturn(std::process::Child);

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
