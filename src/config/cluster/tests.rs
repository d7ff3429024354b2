//! `[cluster]` through the whole file: off by default, every key checked.

use std::time::Duration;

use crate::config::Config;
use crate::config::tests::{MINIMAL, err};

#[test]
fn cluster_is_off_by_default_and_its_keys_are_validated() {
    let c = Config::from_toml(MINIMAL).unwrap();
    assert_eq!(c.cluster.redis, None);
    assert_eq!(c.cluster.presence_ttl, Duration::from_secs(10));
    let c = Config::from_toml(
        "realm = \"r\"\n[cluster]\nredis = \"redis://:pw@127.0.0.1:6380/2\"\n\
         node-id = \"turn-1\"\npresence-ttl = \"30s\"\n",
    )
    .unwrap();
    assert_eq!(c.cluster.node_id.as_deref(), Some("turn-1"));
    assert_eq!(c.cluster.presence_ttl, Duration::from_secs(30));
    let cases = [
        ("redis = \"http://127.0.0.1:6379\"", "cluster.redis"),
        ("redis = \"127.0.0.1:6379\"", "cluster.redis"),
        ("node-id = \"\"", "cluster.node-id"),
        ("node-id = \"turn 1\"", "cluster.node-id"),
        // "/" would let node "a" take node "a/b"'s peers for its own.
        ("node-id = \"a/b\"", "cluster.node-id"),
        ("presence-ttl = \"500ms\"", "cluster.presence-ttl"),
        ("redis-url = \"redis://h\"", "cluster.redis-url"),
    ];
    for (text, key) in cases {
        let text = format!("realm = \"r\"\n[cluster]\n{text}\n");
        assert_eq!(err(&text).key, key, "for {text:?}");
    }
    // The password never reaches an error message.
    let e = err("realm = \"r\"\n[cluster]\nredis = \"tcp://u:secret@h\"\n");
    assert!(!e.message.contains("secret"), "{e}");
}
