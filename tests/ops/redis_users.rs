//! `[auth] redis`: users and REST secrets in a real redis-server, in coturn's
//! `redis-userdb` schema (`turn/realm/<realm>/user/<name>/key`, `turn/realm/<realm>/secret`),
//! read every `redis-refresh` and applied without a reload; the file's users work alongside,
//! and a Redis outage keeps the last credentials read.

use std::net::SocketAddr;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rturn::auth::{Auth, AuthSettings, long_term_key};
use rturn::client::Request;
use rturn::testkit::redis::Redis;
use rturn::testkit::*;

const REALM: &str = "test.local";
const CAROL: &str = "turn/realm/test.local/user/carol/key";
const SECRETS: &str = "turn/realm/test.local/secret";
const REDIS_SECRET: &str = "redis-secret-0123456789";
/// Long enough for several refreshes of 500 ms on a loaded machine.
const WITHIN: Duration = Duration::from_secs(15);

/// The hex key `turnadmin -k` prints for `user` and `password` in the test realm.
fn hex_key(user: &str, password: &str) -> String {
    (long_term_key(user, REALM, password).iter())
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `user` may allocate now; the allocation is deleted again, so no live one is left
/// on a closed socket's port for a later socket the kernel gives that port (437, 441).
fn allocates(server: SocketAddr, user: &str, password: &str) -> bool {
    let Ok(mut client) = RawTurn::try_allocate(server, user, password, false) else {
        return false;
    };
    assert_eq!(client.request(&Request::refresh(0)).code(), 0, "deleted");
    true
}

/// Polls `check` until it holds, for at most [`WITHIN`].
fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + WITHIN;
    while !check() {
        assert!(Instant::now() < deadline, "not within {WITHIN:?}: {what}");
        sleep(Duration::from_millis(200));
    }
}

/// A REST username for `user`, valid ten minutes, and its password under `secret`.
fn rest(secret: &str, user: &str) -> (String, String) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let auth = Auth::new(AuthSettings {
        realm: REALM.into(),
        secrets: vec![secret.to_owned()],
        ..AuthSettings::default()
    });
    auth.mint_rest(Some(user), now, 600).unwrap()
}

#[test]
fn users_and_secrets_in_redis_follow_changes_without_a_reload_and_survive_an_outage() {
    let mut redis = Redis::start();
    redis.command(&["SET", CAROL, &hex_key("carol", "first-password")]);
    redis.command(&["SADD", SECRETS, REDIS_SECRET]);
    let mut server = Server::start(&loopback_config(&format!(
        "http = \"127.0.0.1:0\"\n[relay]\nrelay-ip = \"127.0.0.1\"\n\
         [auth]\nredis = \"{}\"\nredis-refresh = \"500ms\"\n\
         [auth.users]\nalice = \"alice-password-0123\"\n",
        redis.url()
    )));
    let turn = server.udp[0];
    eventually("carol from Redis allocates", || {
        allocates(turn, "carol", "first-password")
    });
    assert!(allocates(turn, "alice", "alice-password-0123"), "file user");
    assert!(!allocates(turn, "carol", "wrong-password"));
    let (user, password) = rest(REDIS_SECRET, "dave");
    assert!(allocates(turn, &user, &password), "REST secret from Redis");
    let (user, password) = rest("not-the-secret-0123456789", "dave");
    assert!(!allocates(turn, &user, &password));
    assert_eq!(server.metric("rturn_auth_redis_users"), 1.0);
    assert_eq!(server.metric("rturn_auth_redis_secrets"), 1.0);

    // A new key replaces the old password, with no SIGHUP.
    redis.command(&["SET", CAROL, &hex_key("carol", "second-password")]);
    eventually("the new password works", || {
        allocates(turn, "carol", "second-password")
    });
    assert!(!allocates(turn, "carol", "first-password"));

    // A reload (the file's half) keeps Redis's users: carol works right after it.
    let hup = nix::sys::signal::Signal::SIGHUP;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(server.pid() as i32), hup).unwrap();
    server.wait_line(|l| l.contains("configuration reloaded"));
    assert!(allocates(turn, "carol", "second-password"));
    assert!(allocates(turn, "alice", "alice-password-0123"));

    // Redis gone: the credentials read last stay, and the outage is logged once.
    redis.stop();
    eventually("the outage is counted", || {
        server.metric("rturn_auth_redis_errors_total") >= 3.0
    });
    assert!(allocates(turn, "carol", "second-password"));
    let (user, password) = rest(REDIS_SECRET, "erin");
    assert!(allocates(turn, &user, &password));
    let warnings = server
        .log()
        .matches("cannot read users and secrets")
        .count();
    assert_eq!(warnings, 1, "one warning per outage:\n{}", server.log());

    // Back, empty: carol and the secret are deleted, alice (the file's) stays.
    redis.restart();
    server.wait_line(|l| l.contains("read from Redis again"));
    eventually("a deleted user is refused", || {
        !allocates(turn, "carol", "second-password")
    });
    let (user, password) = rest(REDIS_SECRET, "frank");
    assert!(!allocates(turn, &user, &password), "deleted secret");
    assert!(allocates(turn, "alice", "alice-password-0123"));
}
