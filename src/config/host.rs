//! The checks that ask this machine rather than the file: whether `relay.relay-ip` is one
//! of its addresses, and who the process runs as when a file cannot be read. Run by
//! `--check-config` and at start (not by [`Config::from_toml`], which stays pure).

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;

use super::{Config, KeyError};

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

/// `e` as said once, with what to do when it is "permission denied": which user needs to
/// read `path`, and how to let it.
pub fn read_error(path: &Path, e: &io::Error) -> String {
    if e.kind() != io::ErrorKind::PermissionDenied {
        return e.to_string();
    }
    let uid = nix::unistd::getuid();
    let user = nix::unistd::User::from_uid(uid).ok().flatten().map_or_else(
        || format!("uid {uid}"),
        |u| format!("user {} (uid {uid})", u.name),
    );
    format!(
        "permission denied: rturn runs as {user}, which cannot read it. Let that user read the \
         file and search its directories (e.g. `chgrp GROUP {path} && chmod 0640 {path}` with \
         a group the user is in); under systemd with DynamicUser=yes (systemd/rturn.service) \
         hand it over instead with LoadCredential=NAME:{path} and read it from \
         $CREDENTIALS_DIRECTORY/NAME",
        path = path.display()
    )
}
