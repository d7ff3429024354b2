//! `[auth]` through the whole file: secret forms, MD5 keys, the REST separator, and the
//! secret lengths and placeholder a public listener refuses.

use crate::config::Config;
use crate::config::tests::{LOCAL, PUBLIC, err};

#[test]
fn secret_may_be_one_string_or_a_list() {
    let one = Config::from_toml(&format!("{LOCAL}[auth]\nstatic-auth-secret = \"s1\"\n"));
    assert_eq!(one.unwrap().auth.static_auth_secret, ["s1"]);
    let many = format!("{LOCAL}[auth]\nstatic-auth-secret = [\"s1\", \"s2\"]\n");
    let many = Config::from_toml(&many).unwrap();
    assert_eq!(many.auth.static_auth_secret, ["s1", "s2"]);
    let bad = err("realm = \"r\"\n[auth]\nstatic-auth-secret = 5\n");
    assert_eq!(bad.key, "auth.static-auth-secret");
}

#[test]
fn placeholder_secret_only_allowed_on_loopback() {
    let local = "realm = \"r\"\n[listen]\nudp = [\"127.0.0.1:3478\"]\ntcp = []\n\
                 [relay]\nrelay-ip = \"127.0.0.1\"\n[auth.users]\nalice = \"change-me\"\n";
    Config::from_toml(local).unwrap();
    let public = "realm = \"r\"\n[auth.users]\nalice = \"change-me\"\n";
    let e = err(public);
    assert_eq!(e.key, "auth.users.alice");
    assert!(e.message.contains("0.0.0.0:3478"), "{e}");
    let secret = "realm = \"r\"\n[auth]\nstatic-auth-secret = [\"change-me\"]\n";
    assert_eq!(err(secret).key, "auth.static-auth-secret[0]");
}

#[test]
fn md5_keys_are_accepted() {
    let text = "realm = \"r\"\n[relay]\nrelay-ip = \"10.0.0.5\"\n[auth.users]\nbob = \"0x0123456789abcdef0123456789ABCDEF\"\n";
    Config::from_toml(text).unwrap();
}

/// Every secret that guards a public listener needs 16 characters: static-auth-secret
/// and user passwords now too, like token-secret, admin.token and nonce-secret.
#[test]
fn secrets_on_a_public_listener_need_16_characters() {
    let cases = [
        (
            "[auth]\nstatic-auth-secret = \"x\"\n",
            "auth.static-auth-secret[0]",
        ),
        (
            "[auth]\nstatic-auth-secret = [\"0123456789abcdef\", \"short\"]\n",
            "auth.static-auth-secret[1]",
        ),
        ("[auth.users]\nalice = \"p\"\n", "auth.users.alice"),
        (
            "[auth.users]\nalice = \"fifteen chars!!\"\n",
            "auth.users.alice",
        ),
    ];
    for (section, key) in cases {
        let e = err(&format!("{PUBLIC}{section}"));
        assert_eq!(e.key, key, "{section}");
        assert!(e.message.contains("16 characters"), "{e}");
        assert!(e.message.contains("0.0.0.0:3478"), "{e}");
        // The same on loopback listeners is fine (the shipped config, the tests).
        Config::from_toml(&format!("{LOCAL}{section}")).unwrap();
    }
    for good in [
        "[auth]\nstatic-auth-secret = \"0123456789abcdef\"\n",
        "[auth.users]\nalice = \"sixteen chars!!!\"\n",
        "[auth.users]\nbob = \"0x0123456789abcdef0123456789abcdef\"\n",
    ] {
        Config::from_toml(&format!("{PUBLIC}{good}")).unwrap();
    }
}

/// A digit separator breaks every REST username: "1700000000" + "5" + "alice" reads as
/// one longer expiry.
#[test]
fn rest_separator_must_not_be_part_of_an_expiry() {
    for sep in ["5", "0", " ", "\\t"] {
        let e = err(&format!("{LOCAL}[auth]\nrest-separator = \"{sep}\"\n"));
        assert_eq!(e.key, "auth.rest-separator", "{sep:?}");
    }
    for sep in [":", "-", "_", "."] {
        Config::from_toml(&format!("{LOCAL}[auth]\nrest-separator = \"{sep}\"\n")).unwrap();
    }
}

#[test]
fn redis_userdb_is_checked_by_name() {
    let ok = format!(
        "{LOCAL}[auth]\nredis = \"redis://:pw@127.0.0.1:6379/2\"\nredis-refresh = \"1s\"\n"
    );
    let ok = Config::from_toml(&ok).unwrap();
    assert_eq!(
        ok.auth.redis.as_deref(),
        Some("redis://:pw@127.0.0.1:6379/2")
    );
    assert_eq!(ok.auth.redis_refresh, std::time::Duration::from_secs(1));
    let bad = err(&format!("{LOCAL}[auth]\nredis = \"http://:hunter2@x\"\n"));
    assert_eq!(bad.key, "auth.redis");
    assert!(!bad.message.contains("hunter2"), "{bad}");
    for refresh in ["100ms", "10m"] {
        let e = err(&format!(
            "{LOCAL}[auth]\nredis = \"redis://127.0.0.1\"\nredis-refresh = \"{refresh}\"\n"
        ));
        assert_eq!(e.key, "auth.redis-refresh");
    }
}
