//! The check that asks this machine rather than the file: whether `relay.relay-ip` is one
//! of its addresses. Run by `--check-config` and at start (not by [`Config::from_toml`],
//! which stays pure). Uses [`Config`]; the parent uses nothing from here.

use std::io;
use std::net::{SocketAddr, UdpSocket};

use super::Config;
use super::error::KeyError;

impl Config {
    /// Binds a UDP socket on each `relay.relay-ip` (port 0, closed at once): an address that
    /// is not this machine's would start a server whose every Allocate answers 508.
    pub fn check_relay_addresses(&self) -> Result<(), KeyError> {
        for &ip in &self.relay.relay_ip {
            if let Err(e) = UdpSocket::bind(SocketAddr::new(ip, 0)) {
                let why = match e.kind() {
                    io::ErrorKind::AddrNotAvailable => {
                        format!("{ip} is not an address of this machine")
                    }
                    _ => format!("cannot bind a relay socket on {ip}"),
                };
                return Err(KeyError::new(
                    "relay.relay-ip",
                    format!(
                        "{why} (binding a UDP socket on it: {e}), so every Allocate would fail \
                         with 508; give an address of this machine (`ip -brief address`), and \
                         behind NAT the public one in relay.external-ip"
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Config;

    /// Binding says whether relay-ip is this machine's; 192.0.2.1 (documentation) is not.
    #[test]
    fn relay_ip_must_be_an_address_of_this_machine() {
        let local = Config::from_toml(
            "realm = \"r\"\n[listen]\nudp = [\"127.0.0.1:3478\"]\ntcp = []\n\
             [relay]\nrelay-ip = \"127.0.0.1\"\n",
        )
        .unwrap();
        local.check_relay_addresses().unwrap();
        let foreign = Config::from_toml(
            "realm = \"r\"\n[listen]\nudp = [\"127.0.0.1:3478\"]\ntcp = []\n\
             [relay]\nrelay-ip = \"192.0.2.1\"\n",
        )
        .unwrap();
        let e = foreign.check_relay_addresses().unwrap_err();
        assert_eq!(e.key, "relay.relay-ip");
        assert!(e.message.contains("not an address of this machine"), "{e}");
    }
}
