//! Users, REST secrets and nonces: which credentials count, MD5 keys, short and placeholder
//! secrets on public listeners, quoting, user databases, stun-only, RFC 5780.

use std::net::IpAddr;
use std::time::Duration;

use super::{attention_lines, run, skip, skipped};
use crate::coturn::finish::PLACEHOLDER_RELAY_IP;
use crate::coturn::toml_text::{key, quote};

#[test]
fn users_plain_and_md5_keys() {
    let text = "realm=north.gov\nlt-cred-mech\nrelay-ip=192.0.2.1\n\
                user=ninefingers:0xbc807ee29df3c9ffa736523fb2c4e8ee\nuser=alice:wonderland-16-chars\n\
                user=bob:0x1234\nuser=carol\nuser=alice:looking-glass-16chars\nuser=:nobody\n\
                user=al ice:spaced-out-16-chars\n";
    let (config, c) = run(text);
    let users = &config.auth.users;
    assert_eq!(users["ninefingers"], "0xbc807ee29df3c9ffa736523fb2c4e8ee");
    assert_eq!(
        users["alice"], "looking-glass-16chars",
        "the last one counts"
    );
    assert_eq!(users["al ice"], "spaced-out-16-chars");
    assert_eq!(users.len(), 3);
    assert!(c.toml.contains("\"al ice\" = \"spaced-out-16-chars\""));
    assert!(skip(&c, "line 5: user: ").contains("again on line 8"));
    assert!(skip(&c, "line 6: user: ").contains("32 hex digits"));
    assert!(skip(&c, "line 7: user: ").contains("name:password"));
    assert!(skip(&c, "line 9: user: ").contains("empty"));
    assert!(
        !skipped(&c, "line 2"),
        "lt-cred-mech with users is converted"
    );
    // Passwords never appear in what is reported.
    assert!(
        !c.skipped
            .iter()
            .any(|s| s.contains("wonderland") || s.contains("0x1234"))
    );
}

/// rturn refuses secrets shorter than 16 characters and a loopback relay-ip beside a public
/// listener; the converter leaves them out and says so, so the file still passes.
#[test]
fn short_secrets_and_loopback_relay_ips_are_left_out_on_public_listeners() {
    let text = "realm=r\nrelay-ip=127.0.0.1\nrelay-ip=2001:db8::9\nuser=alice:short\n\
                user=bob:0xbc807ee29df3c9ffa736523fb2c4e8ee\nuse-auth-secret\n\
                static-auth-secret=tiny\n";
    let (config, c) = run(text);
    assert_eq!(
        config.relay.relay_ip,
        ["2001:db8::9".parse::<IpAddr>().unwrap()]
    );
    assert!(skip(&c, "line 2: relay-ip: ").contains("loopback"));
    assert_eq!(config.auth.users.keys().collect::<Vec<_>>(), ["bob"]);
    assert!(skip(&c, "line 4: user: ").contains("shorter than 16"));
    assert!(config.auth.static_auth_secret.is_empty());
    assert!(skip(&c, "line 7: static-auth-secret: ").contains("shorter than 16"));
    // On loopback listeners they stay.
    let (config, _) = run(&format!("{text}listening-ip=127.0.0.1\n"));
    assert_eq!(config.auth.users["alice"], "short");
    assert_eq!(config.auth.static_auth_secret, ["tiny"]);
    assert_eq!(config.relay.relay_ip[0], PLACEHOLDER_RELAY_IP);
}

#[test]
fn rest_secrets_separator_and_nonce() {
    let text = "realm=r\nrelay-ip=192.0.2.1\nuse-auth-secret\nstatic-auth-secret=first-secret-16ch\n\
                static-auth-secret=second-secret-16c\nstatic-auth-secret=first-secret-16ch\nrest-api-separator=-\n\
                stale-nonce\n";
    let (config, c) = run(text);
    assert_eq!(
        config.auth.static_auth_secret,
        ["first-secret-16ch", "second-secret-16c"]
    );
    assert_eq!(config.auth.rest_separator, '-');
    assert_eq!(config.auth.nonce_lifetime, Duration::from_secs(600));
    assert!(skip(&c, "line 6: static-auth-secret: ").contains("same secret as line 4"));
    assert!(!c.skipped.iter().any(|s| s.contains("first")));

    let (config, _) = run("realm=r\nstale-nonce=120\n");
    assert_eq!(config.auth.nonce_lifetime, Duration::from_secs(120));
    let (config, c) = run("realm=r\nstale-nonce=5\n");
    assert_eq!(config.auth.nonce_lifetime, Duration::from_secs(600));
    assert!(skip(&c, "line 2: stale-nonce: ").contains("10s"));
    let (_, c) = run("realm=r\nstale-nonce=0\n");
    assert!(skip(&c, "line 2: stale-nonce: ").contains("always expire"));
}

#[test]
fn secrets_survive_quoting_verbatim() {
    let nasty = r#"q"uo\te'd #1 \n ünï €"#;
    let text = format!(
        "realm=r\\\"x\nrelay-ip=192.0.2.1\nuse-auth-secret\nstatic-auth-secret={nasty}\n\
         user=dave:{nasty}\nrest-api-separator=\"\n"
    );
    let (config, _) = run(&text);
    assert_eq!(config.realm, r#"r\"x"#);
    assert_eq!(config.auth.static_auth_secret, [nasty]);
    assert_eq!(config.auth.users["dave"], nasty);
    // coturn strips a leading quote from a value: `rest-api-separator="` is empty to coturn.
    let (config, c) = run("realm=r\nrest-api-separator=\"\\\"\n");
    assert_eq!(config.auth.rest_separator, '\\');
    assert!(!skipped(&c, "line 2"), "{:#?}", c.skipped);
}

#[test]
fn quote_escapes_what_toml_needs() {
    for s in [
        "plain",
        "a\"b",
        "back\\slash",
        "tab\there",
        "bell\u{7}",
        "del\u{7f}",
        "é€😀",
    ] {
        let doc = format!("v = {}\n", quote(s));
        let value: toml::Table = toml::from_str(&doc).unwrap_or_else(|e| panic!("{doc}: {e}"));
        assert_eq!(value["v"].as_str(), Some(s));
    }
    assert_eq!(key("alice_1-x"), "alice_1-x");
    assert_eq!(key("a.b"), "\"a.b\"");
    assert_eq!(key(""), "\"\"");
}

/// coturn's static-auth-secret switches use-auth-secret on (checked against coturn 4.6.1:
/// turnutils_uclient -W allocates with the secret alone), and then coturn checks TURN REST
/// credentials only: its user= lines log nobody in.
#[test]
fn a_secret_alone_switches_rest_credentials_on_as_in_coturn() {
    let (config, c) = run("realm=r\nstatic-auth-secret=s3cret-0123456789\n");
    assert_eq!(config.auth.static_auth_secret, ["s3cret-0123456789"]);
    assert!(!skipped(&c, "line 2"), "{:#?}", c.skipped);

    // Users beside a secret: carried (rturn takes both), with what coturn did with them.
    let (config, c) =
        run("realm=r\nuser=alice:pw\nstatic-auth-secret=s3cret\nuser=bob:pw\nlistening-ip=::1\n");
    assert_eq!(config.auth.users.len(), 2);
    let why = skip(&c, "user: ");
    assert!(
        why.contains("line 2, 4") && why.contains("remove them"),
        "{why}"
    );
    assert!(attention_lines(&c).iter().any(|l| l.contains("user: ")));
    let (_, c) = run("realm=r\nuser=alice:pw\nuse-auth-secret\nlistening-ip=::1\n");
    assert!(skip(&c, "user: ").contains("line 2"));
    let (_, c) = run("realm=r\nuser=alice:pw\nlt-cred-mech\nlistening-ip=::1\n");
    assert!(!skipped(&c, "user: "), "{:#?}", c.skipped);

    let (_, c) = run("realm=r\nuse-auth-secret\n");
    assert!(skip(&c, "line 2: use-auth-secret: ").contains("database"));
    let (_, c) = run("realm=r\nlt-cred-mech\n");
    assert!(skip(&c, "line 2: lt-cred-mech: ").contains("[auth.users]"));
}

#[test]
fn user_databases_are_skipped() {
    let text = "realm=r\nuserdb=/var/lib/turn/turndb\npsql-userdb=\"host=db\"\n\
                mysql-userdb=\"host=db\"\nmongo-userdb=mongodb://db\n";
    let (_, c) = run(text);
    for (line, name) in [
        (2, "userdb"),
        (3, "psql-userdb"),
        (4, "mysql-userdb"),
        (5, "mongo-userdb"),
    ] {
        let s = skip(&c, &format!("line {line}: {name}: "));
        assert!(
            s.contains("no database backends") && s.contains("[auth.users]"),
            "{s}"
        );
    }
}

#[test]
fn placeholder_secrets_are_refused_on_public_addresses() {
    let text = "realm=r\nrelay-ip=192.0.2.1\nuse-auth-secret\nstatic-auth-secret=change-me\n\
                user=alice:change-me\n";
    let (config, c) = run(text);
    assert!(config.auth.users.is_empty() && config.auth.static_auth_secret.is_empty());
    assert!(skip(&c, "line 4: static-auth-secret: ").contains("placeholder"));
    assert!(skip(&c, "line 5: user: ").contains("placeholder"));
    // On loopback rturn accepts it, so it is carried over.
    let (config, _) = run(&format!("{text}listening-ip=127.0.0.1\n"));
    assert_eq!(config.auth.users["alice"], "change-me");
}

#[test]
fn stun_only_carries_no_credentials() {
    let text = "realm=r\nstun-only\nuser=alice:pw\nuse-auth-secret\nstatic-auth-secret=s\n";
    let (config, c) = run(text);
    assert!(config.auth.users.is_empty() && config.auth.static_auth_secret.is_empty());
    assert!(config.relay.relay_ip.is_empty());
    assert!(skip(&c, "line 3: user: ").contains("stun-only"));
    assert!(skip(&c, "line 5: static-auth-secret: ").contains("stun-only"));
    // Binding only: TURN requests get 403 instead of a 401 no credentials could answer.
    assert!(config.stun.only);
    assert!(c.toml.contains("only = true # stun-only (line 2)"));
}

#[test]
fn rfc5780_pairs_the_first_two_listening_ips_of_one_family() {
    let ips = "listening-ip=127.0.0.1\nlistening-ip=127.0.0.2\n";
    // On by default with two addresses of a family, as in coturn, at listening-port + 1.
    let (config, _) = run(&format!("realm=r\nlistening-port=3478\n{ips}"));
    assert_eq!(
        config.stun.other_address,
        Some("127.0.0.2:3479".parse().unwrap())
    );
    let (config, c) = run(&format!("realm=r\n{ips}alt-listening-port=4000\n"));
    assert_eq!(
        config.stun.other_address,
        Some("127.0.0.2:4000".parse().unwrap())
    );
    assert!(!skipped(&c, "line 4"), "alt-listening-port is converted");
    let (config, c) = run(&format!(
        "realm=r\n{ips}no-rfc5780\nresponse-origin-only-with-rfc5780\n"
    ));
    assert_eq!(config.stun.other_address, None);
    assert!(skip(&c, "line 4: no-rfc5780: ").contains("already the default"));
    assert!(skip(&c, "line 5: response-origin-only-with-rfc5780: ").contains("already so"));
    // One address: nothing to pair with, which the rfc5780 line hears about.
    let (config, c) = run("realm=r\nlistening-ip=127.0.0.1\nrfc5780\nalt-listening-port=4000\n");
    assert_eq!(config.stun.other_address, None);
    assert!(skip(&c, "line 3: rfc5780: ").contains("two listening-ip"));
    assert!(skip(&c, "line 4: alt-listening-port: ").contains("unused"));
}

#[test]
fn redis_userdb_becomes_auth_redis() {
    let text = "realm=r\nlt-cred-mech\nuse-auth-secret\n\
                redis-userdb=\"ip=127.0.0.1 dbname=3 password=pw port=6380\"\n";
    let (config, c) = run(text);
    assert_eq!(
        config.auth.redis.as_deref(),
        Some("redis://:pw@127.0.0.1:6380/3")
    );
    assert!(
        !config.relay.relay_ip.is_empty(),
        "credentials need a relay"
    );
    assert!(!skipped(&c, "line 2: "), "{:#?}", c.skipped);
    assert!(!skipped(&c, "line 3: "), "{:#?}", c.skipped);
    assert!(!skipped(&c, "line 4: "), "{:#?}", c.skipped);
    let (config, c) = run("realm=r\nredis-userdb=\"ip=db tls=1\"\n");
    assert!(config.auth.redis.is_none());
    assert!(skip(&c, "line 2: redis-userdb: ").contains("without TLS"));
}
