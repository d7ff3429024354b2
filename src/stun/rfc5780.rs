//! RFC 5780 NAT behaviour discovery on the STUN side, sans-IO: the four addresses a server
//! with a second address answers from, and what a Binding request asks of them.
//!
//! Owned here: which of the four addresses a request arrived on, which one its answer leaves
//! from (CHANGE-REQUEST), where it goes (RESPONSE-PORT), what OTHER-ADDRESS says, and how
//! much PADDING the answer may carry. The responder ([`super::binding`]) builds the answer
//! from a [`Plan`]; the worker ([`crate::server`]) only sends it from the socket named.

use std::net::SocketAddr;

use stun::attributes::{ATTR_CHANGE_REQUEST, ATTR_PADDING, ATTR_RESPONSE_PORT, AttrType};
use stun::message::Message;

/// CHANGE-REQUEST's "change IP" flag (RFC 5780 §7.2).
const CHANGE_IP: u32 = 0x4;
/// CHANGE-REQUEST's "change port" flag.
const CHANGE_PORT: u32 = 0x2;

/// The primary address (a `listen.udp` address) and `[stun] other-address`, which differs
/// from it in both IP and port. Together they name the four addresses of RFC 5780 §4.1:
/// every combination of the two IPs and the two ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    primary: SocketAddr,
    other: SocketAddr,
}

impl Addresses {
    /// The pair, or `None` unless they are of one family and differ in both IP and port.
    pub fn new(primary: SocketAddr, other: SocketAddr) -> Option<Self> {
        let usable = primary.is_ipv4() == other.is_ipv4()
            && primary.ip() != other.ip()
            && primary.port() != other.port();
        usable.then_some(Self { primary, other })
    }

    /// The four addresses: primary, primary IP with the other port, the other IP with the
    /// primary port, other.
    pub fn all(&self) -> [SocketAddr; 4] {
        let (p, o) = (self.primary, self.other);
        [
            p,
            SocketAddr::new(p.ip(), o.port()),
            SocketAddr::new(o.ip(), p.port()),
            o,
        ]
    }

    /// From `local` (one of the four), the address that differs in IP when `ip` and in port
    /// when `port`; `None` when `local` is not one of the four.
    pub fn flip(&self, local: SocketAddr, ip: bool, port: bool) -> Option<SocketAddr> {
        let (p, o) = (self.primary, self.other);
        let primary_ip = match local.ip() {
            a if a == p.ip() => true,
            a if a == o.ip() => false,
            _ => return None,
        };
        let primary_port = match local.port() {
            a if a == p.port() => true,
            a if a == o.port() => false,
            _ => return None,
        };
        let ip = if primary_ip != ip { p.ip() } else { o.ip() };
        let port = if primary_port != port {
            p.port()
        } else {
            o.port()
        };
        Some(SocketAddr::new(ip, port))
    }
}

/// What to answer a Binding request with, on one of the four addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// A success response sent from `from` (RESPONSE-ORIGIN) to `to`, carrying
    /// OTHER-ADDRESS `other`, and PADDING of up to `padding` bytes when it is not 0.
    Answer {
        /// The local address the answer leaves from.
        from: SocketAddr,
        /// Where it goes: the source, or the source's IP at RESPONSE-PORT.
        to: SocketAddr,
        /// OTHER-ADDRESS: the address that differs from the arrival in IP and port.
        other: SocketAddr,
        /// The request's PADDING length, 0 without one.
        padding: usize,
    },
    /// An error response with this code, sent back the way the request came.
    Error(u16),
}

/// The attributes RFC 5780 adds to a Binding request; comprehension-required, so understood
/// only where [`plan`] applies.
pub const REQUEST_ATTRIBUTES: [AttrType; 3] =
    [ATTR_CHANGE_REQUEST, ATTR_RESPONSE_PORT, ATTR_PADDING];

/// The raw value of `typ` in `m`, without copying it.
fn value(m: &Message, typ: AttrType) -> Option<&[u8]> {
    (m.attributes.0.iter())
        .find(|a| a.typ == typ)
        .map(|a| &a.value[..])
}

/// Decides how a Binding request from `source` that arrived over UDP on `local`, one of
/// `addresses`' four, is answered. A malformed CHANGE-REQUEST or RESPONSE-PORT is a 400
/// (RFC 8489 §6.3.1). `None` when `local` is not one of the four (answer it as plain STUN).
pub fn plan(
    request: &Message,
    source: SocketAddr,
    local: SocketAddr,
    addresses: &Addresses,
) -> Option<Plan> {
    let other = addresses.flip(local, true, true)?;
    let (mut change_ip, mut change_port) = (false, false);
    if let Some(v) = value(request, ATTR_CHANGE_REQUEST) {
        let Ok(bytes) = <[u8; 4]>::try_from(v) else {
            return Some(Plan::Error(400));
        };
        let flags = u32::from_be_bytes(bytes);
        change_ip = flags & CHANGE_IP != 0;
        change_port = flags & CHANGE_PORT != 0;
    }
    let mut to = source;
    if let Some(v) = value(request, ATTR_RESPONSE_PORT) {
        // RFC 5780 §7.5: a 16-bit port, then 2 bytes of padding.
        match v {
            [hi, lo, _, _] if [*hi, *lo] != [0, 0] => {
                to.set_port(u16::from_be_bytes([*hi, *lo]));
            }
            _ => return Some(Plan::Error(400)),
        }
    }
    let from = addresses.flip(local, change_ip, change_port)?;
    let padding = value(request, ATTR_PADDING).map_or(0, <[u8]>::len);
    Some(Plan::Answer {
        from,
        to,
        other,
        padding,
    })
}

#[cfg(test)]
mod tests {
    use super::super::binding::tests::{addr, request};
    use super::*;

    fn pair() -> Addresses {
        let primary = "127.0.0.1:3478".parse().unwrap();
        let other = "127.0.0.2:3479".parse().unwrap();
        Addresses::new(primary, other).unwrap()
    }

    #[test]
    fn the_pair_must_differ_in_ip_and_port_and_share_a_family() {
        let p = addr("127.0.0.1:3478");
        assert!(Addresses::new(p, addr("127.0.0.1:3479")).is_none());
        assert!(Addresses::new(p, addr("127.0.0.2:3478")).is_none());
        assert!(Addresses::new(p, addr("[::1]:3479")).is_none());
        assert_eq!(
            pair().all(),
            [
                p,
                addr("127.0.0.1:3479"),
                addr("127.0.0.2:3478"),
                addr("127.0.0.2:3479")
            ]
        );
    }

    #[test]
    fn flip_changes_ip_port_or_both_from_each_of_the_four() {
        let a = pair();
        for local in a.all() {
            assert_eq!(a.flip(local, false, false), Some(local));
            let both = a.flip(local, true, true).unwrap();
            assert!(both.ip() != local.ip() && both.port() != local.port());
            let ip = a.flip(local, true, false).unwrap();
            assert!(ip.ip() != local.ip() && ip.port() == local.port());
            let port = a.flip(local, false, true).unwrap();
            assert!(port.ip() == local.ip() && port.port() != local.port());
            assert!(a.all().contains(&both) && a.all().contains(&ip));
        }
        assert_eq!(a.flip(addr("127.0.0.3:3478"), true, true), None);
        assert_eq!(a.flip(addr("127.0.0.1:9"), true, true), None);
    }

    #[test]
    fn plain_binding_answers_from_the_arrival_with_other_address() {
        let source = addr("198.51.100.7:5000");
        let plan = plan(&request(&[]), source, addr("127.0.0.1:3478"), &pair());
        assert_eq!(
            plan,
            Some(Plan::Answer {
                from: addr("127.0.0.1:3478"),
                to: source,
                other: addr("127.0.0.2:3479"),
                padding: 0
            })
        );
        // On the other IP's primary port, OTHER-ADDRESS is the primary IP's other port.
        let Some(Plan::Answer { other, .. }) =
            super::plan(&request(&[]), source, addr("127.0.0.2:3478"), &pair())
        else {
            panic!("an answer");
        };
        assert_eq!(other, addr("127.0.0.1:3479"));
    }

    #[test]
    fn change_request_picks_the_socket_and_response_port_the_destination() {
        let source = addr("198.51.100.7:5000");
        let local = addr("127.0.0.1:3478");
        let cases: [(u8, &str); 4] = [
            (0, "127.0.0.1:3478"),
            (2, "127.0.0.1:3479"),
            (4, "127.0.0.2:3478"),
            (6, "127.0.0.2:3479"),
        ];
        for (flags, from) in cases {
            let req = request(&[(ATTR_CHANGE_REQUEST, &[0, 0, 0, flags])]);
            let Some(Plan::Answer { from: got, to, .. }) = plan(&req, source, local, &pair())
            else {
                panic!("an answer for flags {flags}");
            };
            assert_eq!((got, to), (addr(from), source), "flags {flags}");
        }
        let req = request(&[
            (ATTR_RESPONSE_PORT, &[0x13, 0x88, 0, 0]),
            (ATTR_PADDING, &[0; 40]),
        ]);
        let Some(Plan::Answer { to, padding, .. }) = plan(&req, source, local, &pair()) else {
            panic!("an answer");
        };
        assert_eq!((to, padding), (addr("198.51.100.7:5000"), 40));
        let req = request(&[(ATTR_RESPONSE_PORT, &[0x1f, 0x90, 0, 0])]);
        let Some(Plan::Answer { to, .. }) = plan(&req, source, local, &pair()) else {
            panic!("an answer");
        };
        assert_eq!(to, addr("198.51.100.7:8080"));
    }

    #[test]
    fn malformed_attributes_get_400_and_strangers_get_none() {
        let source = addr("198.51.100.7:5000");
        let local = addr("127.0.0.1:3478");
        for req in [
            request(&[(ATTR_CHANGE_REQUEST, &[0, 0, 6])]),
            request(&[(ATTR_RESPONSE_PORT, &[0, 0, 0, 0])]),
            request(&[(ATTR_RESPONSE_PORT, &[0x13])]),
        ] {
            assert_eq!(plan(&req, source, local, &pair()), Some(Plan::Error(400)));
        }
        assert_eq!(
            plan(&request(&[]), source, addr("127.0.0.1:5000"), &pair()),
            None
        );
    }
}
