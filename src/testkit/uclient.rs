//! coturn's load client, `turnutils_uclient`, run against a server and its output judged:
//! every message back, and no error but the one the client makes for itself and recovers
//! from.

use std::process::Command;

use super::peer::EchoPeer;
use super::server::Server;

/// One `turnutils_uclient` run against `server` through `peer`, `clients` × `messages`,
/// with `flags` as given (`-W SECRET` authenticates as bob with the REST secret, else as
/// alice/wonderland); returns everything it printed.
pub fn uclient_run(
    server: &Server,
    peer: &EchoPeer,
    flags: &[&str],
    clients: usize,
    messages: usize,
) -> String {
    let port = if flags.contains(&"-S") {
        server.tls[0].port()
    } else if flags.contains(&"-t") {
        server.tcp[0].port()
    } else {
        server.udp[0].port()
    };
    let auth: &[&str] = if flags.contains(&"-W") {
        &["-u", "bob"]
    } else {
        &["-u", "alice", "-w", "wonderland"]
    };
    let out = Command::new("timeout")
        .arg("60")
        .arg("turnutils_uclient")
        .args(flags)
        .args(auth)
        .args(["-p", &port.to_string(), "-e", "127.0.0.1"])
        .args(["-r", &peer.port.to_string()])
        .args(["-m", &clients.to_string(), "-n", &messages.to_string()])
        .args(["-l", "170", "-z", "5", "-X", "127.0.0.1"])
        .output()
        .expect("turnutils_uclient is missing: install coturn (scripts/test.sh does)");
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

/// Asserts that `text`, what a turnutils_uclient run printed, lost nothing: every one of
/// `clients` × `messages` messages sent and received. `summary` says what ran, on failure.
pub fn assert_all_arrived(
    text: &str,
    clients: usize,
    messages: usize,
    summary: impl Fn() -> String,
) {
    assert!(
        text.contains("Total lost packets 0 (0.000000%)"),
        "{}",
        summary()
    );
    let expected = clients * messages;
    assert!(
        text.contains(&format!(
            "tot_send_msgs={expected}, tot_recv_msgs={expected}"
        )),
        "expected {expected} messages each way; {}",
        summary()
    );
}

/// Asserts that `text` reports no error, but for the 437 the client brings on itself and
/// recovers from: each client first allocates on a "probe" socket that it closes without a
/// deallocation, so the allocation lives on, and when the kernel hands that port to a later
/// socket of the same run, that socket's Allocate meets the live allocation: 437 (Allocation
/// Mismatch, RFC 8656 §7.2, as coturn answers too). uclient then says "trying allocate
/// again", opens a new socket and goes on.
pub fn assert_no_errors(text: &str, summary: impl Fn() -> String) {
    let recovered = text.contains("trying allocate again 437");
    let errors: Vec<&str> = (text.lines())
        .filter(|line| line.contains("error"))
        .filter(|line| !(recovered && line.ends_with("error 437 ()")))
        .collect();
    assert!(errors.is_empty(), "errors {errors:?}; {}", summary());
}

#[cfg(test)]
mod tests {
    use super::assert_no_errors;

    const RECOVERED: &str = "0: : error 437 ()\n0: : error 437 ()\n\
                             0: : trying allocate again 437...\n7: : Total connect time is 7\n";

    #[test]
    fn a_437_the_client_recovers_from_passes() {
        assert_no_errors(RECOVERED, String::new);
    }

    #[test]
    #[should_panic(expected = "errors")]
    fn a_437_without_the_retry_fails() {
        assert_no_errors("0: : error 437 ()\n", String::new);
    }

    #[test]
    #[should_panic(expected = "channel bind: error 403")]
    fn any_other_error_fails_even_beside_a_recovered_437() {
        assert_no_errors(
            &format!("{RECOVERED}1: : channel bind: error 403 (Forbidden)\n"),
            String::new,
        );
    }
}
