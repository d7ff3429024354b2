//! `[relay]` through the whole file: external-ip forms, peer ranges, and a loopback relay
//! address beside a public listener.

use crate::config::Config;
use crate::config::tests::{LOCAL, err};

#[test]
fn external_ip_forms() {
    let c = Config::from_toml(
        "realm = \"r\"\n[relay]\nrelay-ip = [\"10.0.0.5\", \"fd00::5\"]\n\
         external-ip = [\"203.0.113.7/10.0.0.5\", \"2001:db8::7\"]\n",
    )
    .unwrap();
    let pairs = c.external_ips().unwrap();
    assert_eq!(
        pairs[0],
        ("10.0.0.5".parse().unwrap(), "203.0.113.7".parse().unwrap())
    );
    assert_eq!(
        pairs[1],
        ("fd00::5".parse().unwrap(), "2001:db8::7".parse().unwrap())
    );
}

#[test]
fn peer_ranges_take_addresses_and_cidrs() {
    let c = Config::from_toml(
        "realm = \"r\"\n[relay]\nallowed-peer-ip = [\"10.1.0.0/16\", \"192.168.1.1\"]\n",
    )
    .unwrap();
    let nets: Vec<String> = c
        .relay
        .allowed_peer_ip
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(nets, ["10.1.0.0/16", "192.168.1.1/32"]);
}

#[test]
fn loopback_relay_ip_beside_a_public_listener_is_refused() {
    for (listen, relay) in [
        ("", "127.0.0.1"),
        (
            "[listen]\nudp = [\"192.0.2.7:3478\"]\ntcp = []\n",
            "127.0.0.1",
        ),
        (
            "[listen]\nudp = [\"127.0.0.1:3478\"]\ntcp = []\nhttp = \"0.0.0.0:80\"\n",
            "127.0.0.1",
        ),
        ("[listen]\nudp = [\"[::]:3478\"]\ntcp = []\n", "::1"),
    ] {
        let e = err(&format!(
            "realm = \"r\"\n{listen}[relay]\nrelay-ip = \"{relay}\"\n"
        ));
        assert_eq!(e.key, "relay.relay-ip", "{listen}");
        assert!(e.message.contains("external-ip"), "{e}");
    }
    Config::from_toml(LOCAL).unwrap();
}

#[test]
fn offload_is_auto_by_default_off_on_request_and_nothing_else() {
    use crate::config::OffloadMode;
    assert_eq!(
        Config::from_toml(LOCAL).unwrap().relay.offload,
        OffloadMode::Auto
    );
    let off = Config::from_toml(&format!("{LOCAL}offload = \"off\"\n")).unwrap();
    assert_eq!(off.relay.offload, OffloadMode::Off);
    let auto = Config::from_toml(&format!("{LOCAL}offload = \"auto\"\n")).unwrap();
    assert_eq!(auto.relay.offload, OffloadMode::Auto);
    for bad in ["\"on\"", "true", "\"xdp\""] {
        let e = err(&format!("{LOCAL}offload = {bad}\n"));
        assert!(e.key.starts_with("relay.offload"), "{bad}: {e}");
    }
}
