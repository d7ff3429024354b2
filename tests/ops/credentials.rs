//! Black-box: `rturn credentials` signs with the config file's secret (nothing secret on the
//! command line), still takes `--secret`, RTURN_SECRET and `--secret -` (stdin), and says
//! what to do when there is no secret.

use std::io::Write;
use std::process::{Output, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use rturn::auth::{Auth, AuthSettings, long_term_key};
use rturn::testkit::*;

const FIRST: &str = "first-secret-0123456789";
const SECOND: &str = "second-secret-0123456789";

fn config(auth: &str) -> String {
    format!(
        "realm = \"r\"\n[listen]\nudp = [\"127.0.0.1:0\"]\ntcp = []\n\
         [relay]\nrelay-ip = [\"127.0.0.1\"]\n[auth]\n{auth}"
    )
}

fn credentials(args: &[&str], env: Option<&str>, stdin: Option<&str>) -> Output {
    let mut command = rturn();
    command
        .arg("credentials")
        .args(args)
        .env_remove("RTURN_SECRET");
    if let Some(secret) = env {
        command.env("RTURN_SECRET", secret);
    }
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

/// The printed username and password, checked against what a server with only `secret`
/// (and `separator`) accepts.
fn signed_with(out: &Output, secret: &str, separator: char) -> String {
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let field = |name: &str| {
        (stdout.lines())
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} in {stdout}"))
            .to_owned()
    };
    let (username, password) = (field("username"), field("password"));
    let server = Auth::new(AuthSettings {
        realm: "r".into(),
        secrets: vec![secret.to_owned()],
        rest_separator: separator,
        ..Default::default()
    });
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let keys = server.keys_for(&username, now).unwrap();
    assert!(
        keys.contains(&long_term_key(&username, "r", &password)),
        "{username} / {password} is not signed with {secret:?}"
    );
    assert!(stdout.contains("\"iceServers\""), "{stdout}");
    username
}

#[test]
fn credentials_sign_with_the_config_files_first_secret() {
    let (_dir, path) = write_config(&config(&format!(
        "static-auth-secret = [\"{FIRST}\", \"{SECOND}\"]\nrest-separator = \"_\"\n"
    )));
    let path = path.to_str().unwrap();
    let out = credentials(&["-c", path, "--user", "alice"], None, None);
    let username = signed_with(&out, FIRST, '_');
    assert!(
        username.ends_with("_alice"),
        "the file's separator: {username}"
    );
    // -c may come after the subcommand's own flags too.
    let out = credentials(&["--ttl", "1h", "-c", path], None, None);
    signed_with(&out, FIRST, '_');
}

#[test]
fn credentials_take_the_secret_from_the_environment_stdin_or_the_command_line() {
    let out = credentials(&["--user", "bob"], Some(SECOND), None);
    assert!(signed_with(&out, SECOND, ':').ends_with(":bob"));
    let out = credentials(&["--secret", "-"], None, Some(&format!("{SECOND}\n")));
    signed_with(&out, SECOND, ':');
    let out = credentials(&["--secret", SECOND], None, None);
    signed_with(&out, SECOND, ':');
    // A given secret wins over the file's; the file still gives the separator.
    let (_dir, path) = write_config(&config(&format!(
        "static-auth-secret = \"{FIRST}\"\nrest-separator = \"_\"\n"
    )));
    let out = credentials(
        &["-c", path.to_str().unwrap(), "--user", "c"],
        Some(SECOND),
        None,
    );
    assert!(signed_with(&out, SECOND, '_').ends_with("_c"));
}

#[test]
fn credentials_without_a_secret_say_where_to_put_one() {
    let (_dir, path) = write_config(&config("[auth.users]\nalice = \"a-long-password-here\"\n"));
    let out = credentials(&["-c", path.to_str().unwrap()], None, None);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with(&format!("Error: {}: ", path.display())),
        "names the file: {stderr}"
    );
    for fix in ["[auth] static-auth-secret", "RTURN_SECRET", "--secret -"] {
        assert!(stderr.contains(fix), "{fix}: {stderr}");
    }
    let out = credentials(&["--secret", "-"], None, Some(""));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("stdin is empty"));
}

#[test]
fn credentials_help_says_where_the_secret_comes_from() {
    let out = rturn().args(["credentials", "--help"]).output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for said in [
        "static-auth-secret",
        "RTURN_SECRET",
        "stdin",
        "-c FILE",
        "ps",
    ] {
        assert!(help.contains(said), "{said}: {help}");
    }
    // The environment's value is never shown.
    let out = rturn()
        .args(["credentials", "--help"])
        .env("RTURN_SECRET", "do-not-print-me")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("do-not-print-me"));
}
