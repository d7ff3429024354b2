//! Which peer addresses a client may relay to.
//!
//! A TURN relay is an open door into whatever network the server sits in, so CreatePermission,
//! ChannelBind and Send to a forbidden peer are refused with 403 and nothing is sent (see the
//! Security Considerations of RFC 8656). The rules, in order:
//!
//! 1. An IPv6 address that disguises an IPv4 one ([`embedded_ipv4`]) is judged by *both*
//!    addresses; either being forbidden forbids it. This closes the coturn loopback bypasses via
//!    `::ffff:127.0.0.1` and friends.
//! 2. `denied-peer-ip` refuses ([`Denied::Configured`]).
//! 3. `allowed-peer-ip` admits, overriding the default classes, but never the unspecified
//!    address (`0.0.0.0/8`, `::`) and never the server's own listeners.
//! 4. The classes in [`DEFAULT_DENIED`] are refused (loopback is admitted with
//!    `allow-loopback-peers`), except rturn's own live relay endpoints ([`OwnRelays`]),
//!    whose data is handed over inside the process.
//! 5. Everything else is allowed.
//!
//! These defaults are stricter than coturn 4.6, which relays to `169.254.169.254` (cloud
//! metadata), multicast and private peers unless the operator denies them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::own_relays::OwnRelays;

/// Why a peer address was refused. Every reason maps to 403 Forbidden on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// `0.0.0.0/8` or `::`: "this host", which reaches the server itself. Never allowed.
    #[error("unspecified address")]
    Unspecified,
    /// `127.0.0.0/8` or `::1`, unless `allow-loopback-peers`.
    #[error("loopback address")]
    Loopback,
    /// RFC 1918 private IPv4, IPv6 unique-local `fc00::/7` and local-use NAT64 `64:ff9b:1::/48`.
    #[error("private address")]
    Private,
    /// `100.64.0.0/10`, carrier-grade NAT (RFC 6598).
    #[error("shared address space")]
    SharedAddressSpace,
    /// `169.254.0.0/16` (including the cloud metadata service) or `fe80::/10`.
    #[error("link-local address")]
    LinkLocal,
    /// `fec0::/10`, deprecated IPv6 site-local.
    #[error("site-local address")]
    SiteLocal,
    /// `198.18.0.0/15`, network benchmarking (RFC 2544).
    #[error("benchmarking address")]
    Benchmarking,
    /// `192.0.0.0/24` IETF protocol assignments or `240.0.0.0/4`.
    #[error("reserved address")]
    Reserved,
    /// `100::/64`, IPv6 discard-only (RFC 6666).
    #[error("discard-only address")]
    Discard,
    /// `224.0.0.0/4` or `ff00::/8`.
    #[error("multicast address")]
    Multicast,
    /// `255.255.255.255`.
    #[error("broadcast address")]
    Broadcast,
    /// Matched `denied-peer-ip`.
    #[error("denied by configuration")]
    Configured,
    /// One of the server's own client-facing listeners.
    #[error("the server's own listener")]
    OwnListener,
    /// Port 0 is not a destination.
    #[error("port 0")]
    PortZero,
}

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8) -> IpNet {
    IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len))
}

const fn v6(bits: u128, len: u8) -> IpNet {
    IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::from_bits(bits), len))
}

/// The classes refused by default; the first match gives the reason.
///
/// The documentation ranges (`192.0.2.0/24`, `198.51.100.0/24`, `203.0.113.0/24`,
/// `2001:db8::/32`) are deliberately absent: tests and examples use them as public peers.
pub const DEFAULT_DENIED: &[(IpNet, Denied)] = &[
    (v4(0, 0, 0, 0, 8), Denied::Unspecified),
    (v4(10, 0, 0, 0, 8), Denied::Private),
    (v4(100, 64, 0, 0, 10), Denied::SharedAddressSpace),
    (v4(127, 0, 0, 0, 8), Denied::Loopback),
    (v4(169, 254, 0, 0, 16), Denied::LinkLocal),
    (v4(172, 16, 0, 0, 12), Denied::Private),
    (v4(192, 0, 0, 0, 24), Denied::Reserved),
    (v4(192, 168, 0, 0, 16), Denied::Private),
    (v4(198, 18, 0, 0, 15), Denied::Benchmarking),
    (v4(224, 0, 0, 0, 4), Denied::Multicast),
    // Before 240/4, which contains it.
    (v4(255, 255, 255, 255, 32), Denied::Broadcast),
    (v4(240, 0, 0, 0, 4), Denied::Reserved),
    (v6(0, 128), Denied::Unspecified),
    (v6(1, 128), Denied::Loopback),
    (v6(0x0100 << 112, 64), Denied::Discard),
    (v6(0x0064_ff9b_0001 << 80, 48), Denied::Private),
    (v6(0xfc00 << 112, 7), Denied::Private),
    (v6(0xfe80 << 112, 10), Denied::LinkLocal),
    (v6(0xfec0 << 112, 10), Denied::SiteLocal),
    (v6(0xff00 << 112, 8), Denied::Multicast),
];

/// The IPv4 address an IPv6 address disguises, if any.
///
/// IPv4-mapped `::ffff:0:0/96`; SIIT IPv4-translated `::ffff:0:0:0/96` (RFC 2765);
/// IPv4-compatible `::/96` (except `::` and `::1`); NAT64 `64:ff9b::/96` and the local-use
/// `64:ff9b:1::/48` (last 32 bits, as in a /96 inside it); 6to4 `2002::/16` (bits 16..48);
/// Teredo `2001::/32` (client address, last 32 bits inverted); and, for any other prefix, an
/// ISATAP interface identifier ([`isatap_ipv4`]).
pub fn embedded_ipv4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(ip);
    let last32 = bits as u32;
    if let Some(mapped) = ip.to_ipv4_mapped() {
        Some(mapped)
    } else if bits >> 32 == 0xffff_0000 {
        Some(Ipv4Addr::from(last32))
    } else if bits >> 32 == 0 {
        (bits > 1).then_some(Ipv4Addr::from(last32))
    } else if bits >> 32 == 0x0064_ff9b_0000_0000_0000_0000 || bits >> 80 == 0x0064_ff9b_0001 {
        Some(Ipv4Addr::from(last32))
    } else if bits >> 112 == 0x2002 {
        Some(Ipv4Addr::from((bits >> 80) as u32))
    } else if bits >> 96 == 0x2001_0000 {
        Some(Ipv4Addr::from(!last32))
    } else {
        isatap_ipv4(ip)
    }
}

/// The IPv4 address in an ISATAP interface identifier (RFC 5214 §6.1): `…:0000:5efe:a.b.c.d`,
/// or `…:0200:5efe:a.b.c.d` for a global IPv4 address, under any /64 prefix. The
/// universal/local and group bits are ignored, so every spelling a host's ISATAP interface
/// would route to `a.b.c.d` is caught.
pub fn isatap_ipv4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(ip);
    let iid_high = (bits >> 32) as u32;
    (iid_high & 0xfcff_ffff == 0x0000_5efe).then_some(Ipv4Addr::from(bits as u32))
}

/// The address itself and the IPv4 addresses it disguises, embedded first. An address can
/// carry two (a 6to4 prefix with an ISATAP interface identifier); both are judged.
fn candidates(ip: IpAddr) -> [Option<IpAddr>; 3] {
    let (embedded, isatap) = match ip {
        IpAddr::V4(_) => (None, None),
        IpAddr::V6(v6) => (
            embedded_ipv4(v6).map(IpAddr::V4),
            isatap_ipv4(v6).map(IpAddr::V4),
        ),
    };
    [embedded, isatap, Some(ip)]
}

/// The default class of one address, ignoring disguises.
fn default_class(ip: IpAddr) -> Option<Denied> {
    DEFAULT_DENIED
        .iter()
        .find(|(net, _)| net.contains(&ip))
        .map(|&(_, why)| why)
}

/// Peer address policy: immutable after construction, queried per Send indication.
/// `Default` is the strict policy with no operator lists and no listeners.
#[derive(Debug, Clone, Default)]
pub struct PeerRules {
    allow_loopback: bool,
    allowed: Box<[IpNet]>,
    denied: Box<[IpNet]>,
    own: Box<[SocketAddr]>,
    /// The relay addresses (`relay-ip` and `external-ip`) and which of their ports are live
    /// relay endpoints: a peer there is allowed whatever its address class (two clients of
    /// this server relaying to each other), unless the operator denied it.
    relays: OwnRelays,
}

impl PeerRules {
    /// `allow_loopback`: config `allow-loopback-peers`; `allowed` / `denied`: config
    /// `allowed-peer-ip` / `denied-peer-ip` (single addresses as /32 or /128 nets); `own`: the
    /// server's client-facing UDP/TCP listening addresses.
    ///
    /// An operator net inside `::ffff:0:0/96` also applies to the IPv4 addresses it maps.
    pub fn new(
        allow_loopback: bool,
        allowed: Vec<IpNet>,
        denied: Vec<IpNet>,
        own: Vec<SocketAddr>,
    ) -> Self {
        Self {
            allow_loopback,
            allowed: with_unmapped(allowed),
            denied: with_unmapped(denied),
            own: own.into_boxed_slice(),
            relays: OwnRelays::default(),
        }
    }

    /// These rules, also allowing rturn's own live relay endpoints ([`OwnRelays`]: a port
    /// of a `relay-ip` or `external-ip` address held for an allocation now). Every other
    /// address of those hosts stays refused as before.
    pub fn with_own_relays(mut self, relays: OwnRelays) -> Self {
        self.relays = relays;
        self
    }

    /// Whether `addr` is one of rturn's own relay endpoints, live now.
    pub fn is_own_relay(&self, addr: SocketAddr) -> bool {
        self.relays.resolve(addr).is_some()
    }

    /// The bound relay address `addr` names, when it is one of rturn's own relay endpoints,
    /// live now, and the operator did not deny it: data for it is handed over inside the
    /// process.
    pub fn own_relay(&self, addr: SocketAddr) -> Option<SocketAddr> {
        let bound = self.relays.resolve(addr)?;
        (self.allows_ip(addr.ip()) != Err(Denied::Configured)).then_some(bound)
    }

    /// Whether an RFC 6062 Connect may reach `peer`: the plain rules ([`Self::allows_ip`],
    /// then port 0 and the server's own listeners), or, unless the operator denied its IP,
    /// one of rturn's own live TCP relay listeners at its bound relay address. Not the other
    /// relay endpoints [`Self::allows_addr`] admits: a Connect goes through the kernel to
    /// whatever listens there, and only a TCP relay's listener is ours.
    pub fn allows_connect(&self, peer: SocketAddr) -> Result<(), Denied> {
        match self.allows_ip(peer.ip()) {
            Err(Denied::Configured) => Err(Denied::Configured),
            Err(_) if self.relays.is_tcp_listener(peer) => Ok(()),
            Err(denied) => Err(denied),
            Ok(()) => self.allows_addr(peer),
        }
    }

    /// Whether `ip` is one of the relay addresses (bound or advertised), whose live ports
    /// may be peers.
    pub fn is_relay_ip(&self, ip: IpAddr) -> bool {
        self.relays.is_relay_ip(ip)
    }

    /// Whether a permission may be installed for the peer at `peer` (CreatePermission): its
    /// IP passes [`Self::allows_ip`], or `peer` is one of rturn's own live relay endpoints and
    /// the operator did not deny its IP. The permission is per IP; data to other ports of a
    /// relay address is still refused per packet ([`Self::allows_addr`]).
    pub fn allows_permission(&self, peer: SocketAddr) -> Result<(), Denied> {
        match self.allows_ip(peer.ip()) {
            Err(Denied::Configured) => Err(Denied::Configured),
            Err(_) if self.is_own_relay(peer) => Ok(()),
            other => other,
        }
    }

    /// Whether a permission for this peer IP may be installed (CreatePermission).
    pub fn allows_ip(&self, ip: IpAddr) -> Result<(), Denied> {
        let candidates = candidates(ip);
        let denied = |c: &IpAddr| self.denied.iter().any(|net| net.contains(c));
        if candidates.iter().flatten().any(denied) {
            return Err(Denied::Configured);
        }
        candidates.iter().flatten().try_for_each(|&c| self.judge(c))
    }

    /// Whether data may be sent to this peer address (ChannelBind, Send): [`Self::allows_ip`]
    /// (or one of rturn's own live relay endpoints, unless denied by the operator), then port
    /// 0 and the server's own listeners are refused.
    pub fn allows_addr(&self, addr: SocketAddr) -> Result<(), Denied> {
        match self.allows_ip(addr.ip()) {
            Err(Denied::Configured) => return Err(Denied::Configured),
            Err(_) if self.is_own_relay(addr) => return Ok(()),
            other => other?,
        }
        if addr.port() == 0 {
            return Err(Denied::PortZero);
        }
        if self.own.iter().any(|&own| hits_listener(own, addr)) {
            return Err(Denied::OwnListener);
        }
        Ok(())
    }

    /// Rules 3 and 4 for one candidate address.
    fn judge(&self, ip: IpAddr) -> Result<(), Denied> {
        match default_class(ip) {
            None => Ok(()),
            Some(Denied::Unspecified) => Err(Denied::Unspecified),
            Some(_) if self.allowed.iter().any(|net| net.contains(&ip)) => Ok(()),
            Some(Denied::Loopback) if self.allow_loopback => Ok(()),
            Some(why) => Err(why),
        }
    }
}

/// The nets, plus the IPv4 equivalent of each one inside `::ffff:0:0/96`.
fn with_unmapped(mut nets: Vec<IpNet>) -> Box<[IpNet]> {
    let unmapped: Vec<IpNet> = nets
        .iter()
        .filter_map(|net| match net {
            IpNet::V6(n) if n.prefix_len() >= 96 => {
                let v4 = n.network().to_ipv4_mapped()?;
                Ipv4Net::new(v4, n.prefix_len() - 96).ok().map(IpNet::V4)
            }
            _ => None,
        })
        .collect();
    nets.extend(unmapped);
    nets.into_boxed_slice()
}

/// Whether sending to `peer` would land on the listener `own`.
///
/// We do not know every address of the host, so a wildcard listener refuses its port on every
/// address of its family. Our IPv6 listeners are `IPV6_V6ONLY`, so `[::]:P` covers only IPv6
/// peers, while `0.0.0.0:P` covers IPv4 peers and IPv6 ones that disguise IPv4.
fn hits_listener(own: SocketAddr, peer: SocketAddr) -> bool {
    if own.port() != peer.port() {
        return false;
    }
    let peer_ips = candidates(peer.ip());
    match own.ip() {
        IpAddr::V6(ip) if ip.is_unspecified() => peer.is_ipv6(),
        IpAddr::V4(ip) if ip.is_unspecified() => peer_ips.iter().flatten().any(IpAddr::is_ipv4),
        own_ip => {
            let own_ips = candidates(own_ip);
            peer_ips
                .iter()
                .flatten()
                .any(|p| own_ips.iter().flatten().any(|o| o == p))
        }
    }
}

#[cfg(test)]
mod own_relay_tests;

#[cfg(test)]
mod tests {
    use super::Denied::*;
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn rules(allow_loopback: bool, allowed: &[&str], denied: &[&str], own: &[&str]) -> PeerRules {
        let nets = |list: &[&str]| list.iter().map(|s| net(s)).collect();
        let own = own.iter().map(|s| s.parse().unwrap()).collect();
        PeerRules::new(allow_loopback, nets(allowed), nets(denied), own)
    }

    fn strict() -> PeerRules {
        rules(false, &[], &[], &[])
    }

    #[test]
    fn default_classes_and_their_boundaries() {
        let denied = [
            (Unspecified, "0.0.0.0 0.255.255.255 ::"),
            (Loopback, "127.0.0.1 127.255.255.255 ::1"),
            (
                Private,
                "10.0.0.0 10.255.255.255 172.16.0.0 172.31.255.255 192.168.1.1",
            ),
            (Private, "fc00::1 fdff:ffff::1 64:ff9b:1::808:808"),
            (SharedAddressSpace, "100.64.0.0 100.127.255.255"),
            (
                LinkLocal,
                "169.254.0.0 169.254.169.254 169.254.255.255 fe80::1 febf::1",
            ),
            (SiteLocal, "fec0::1 feff::1"),
            (Benchmarking, "198.18.0.0 198.19.255.255"),
            (Reserved, "192.0.0.0 192.0.0.255 240.0.0.0 255.255.255.254"),
            (Discard, "100::1 100::ffff:ffff:ffff:ffff"),
            (Multicast, "224.0.0.1 239.255.255.255 ff02::1"),
            (Broadcast, "255.255.255.255"),
        ];
        // Just outside every IPv4 range; documentation ranges stand in for public peers.
        let allowed = "1.0.0.0 9.255.255.255 11.0.0.0 100.63.255.255 100.128.0.0 \
            126.255.255.255 128.0.0.0 169.253.255.255 169.255.0.0 172.15.255.255 172.32.0.0 \
            191.255.255.255 192.0.1.0 192.167.255.255 192.169.0.0 198.17.255.255 198.20.0.0 \
            223.255.255.255 192.0.2.1 198.51.100.7 203.0.113.9 8.8.8.8 \
            100:0:0:1::1 fe00::1 2001:db8::1 2606:4700::1111 64:ff9b:2::1";
        let rules = strict();
        for (why, addrs) in denied {
            for addr in addrs.split_whitespace() {
                assert_eq!(rules.allows_ip(ip(addr)), Err(why), "{addr}");
            }
        }
        for addr in allowed.split_whitespace() {
            assert_eq!(rules.allows_ip(ip(addr)), Ok(()), "{addr}");
        }
    }

    /// Every IPv6 disguise of `v4` that [`embedded_ipv4`] understands.
    fn disguises(v4: Ipv4Addr) -> [Ipv6Addr; 9] {
        let b = u128::from(v4.to_bits());
        [
            v4.to_ipv6_mapped(),
            // SIIT: ::ffff:0:a.b.c.d.
            Ipv6Addr::from_bits(0xffff_0000 << 32 | b),
            // ISATAP under public prefixes: the private (0000:5efe) and global (0200:5efe)
            // forms, and with the group bit set too (0300:5efe).
            Ipv6Addr::from_bits(0x2001_0db8_0001_0002_0000_5efe << 32 | b),
            Ipv6Addr::from_bits(0x2606_4700_0000_0000_0200_5efe << 32 | b),
            Ipv6Addr::from_bits(0x2a00_1450_0000_0000_0300_5efe << 32 | b),
            Ipv6Addr::from_bits(b),
            Ipv6Addr::from_bits(0x0064_ff9b << 96 | b),
            Ipv6Addr::from_bits(0x2002 << 112 | b << 80 | 1),
            // Teredo: server 65.54.227.120, flags 0x8000, obfuscated port 0x63bf.
            Ipv6Addr::from_bits(0x2001_0000_4136_e378_8000_63bf << 32 | u128::from(!v4.to_bits())),
        ]
    }

    #[test]
    fn disguised_forbidden_ipv4_is_forbidden() {
        for (v4, why) in [
            (Ipv4Addr::LOCALHOST, Loopback),
            (Ipv4Addr::new(10, 0, 0, 1), Private),
            (Ipv4Addr::new(169, 254, 169, 254), LinkLocal),
        ] {
            for v6 in disguises(v4) {
                assert_eq!(embedded_ipv4(v6), Some(v4), "{v6}");
                assert_eq!(strict().allows_ip(v6.into()), Err(why), "{v6}");
            }
        }
        // The constructors above agree with the textbook spellings.
        let literals = "::ffff:127.0.0.1 ::ffff:0:127.0.0.1 2001:db8:1:2:0:5efe:127.0.0.1 \
            2606:4700::200:5efe:127.0.0.1 2a00:1450::300:5efe:127.0.0.1 ::127.0.0.1 64:ff9b::7f00:1 \
            2002:7f00:1::1 2001:0:4136:e378:8000:63bf:80ff:fffe";
        for (built, literal) in disguises(Ipv4Addr::LOCALHOST)
            .iter()
            .zip(literals.split(' '))
        {
            assert_eq!(IpAddr::V6(*built), ip(literal));
        }
        // A 6to4 prefix carrying a public IPv4 with an ISATAP identifier carrying loopback:
        // each embedded address is judged, so the loopback one refuses it.
        assert_eq!(
            strict().allows_ip(ip("2002:808:808::5efe:127.0.0.1")),
            Err(Loopback)
        );
        // ISATAP under the link-local prefix is refused both ways.
        assert!(strict().allows_ip(ip("fe80::5efe:10.0.0.1")).is_err());
    }

    #[test]
    fn disguised_public_ipv4_is_allowed() {
        for v6 in disguises(Ipv4Addr::new(8, 8, 8, 8)) {
            assert_eq!(strict().allows_ip(v6.into()), Ok(()), "{v6}");
        }
        for plain in [
            Ipv6Addr::UNSPECIFIED,
            Ipv6Addr::LOCALHOST,
            "2003::1".parse().unwrap(),
            // Near misses of SIIT and ISATAP.
            "::fffe:0:7f00:1".parse().unwrap(),
            "2003::1:5efe:7f00:1".parse().unwrap(),
            "2003::400:5efe:7f00:1".parse().unwrap(),
        ] {
            assert_eq!(embedded_ipv4(plain), None, "{plain}");
        }
    }

    #[test]
    fn unspecified_is_never_allowed() {
        let rules = rules(true, &["0.0.0.0/0", "::/0"], &[], &[]);
        for addr in ["0.0.0.0", "0.1.2.3", "::", "::ffff:0.0.0.0", "::0.0.0.2"] {
            assert_eq!(rules.allows_ip(ip(addr)), Err(Unspecified), "{addr}");
        }
        // The catch-all allow does admit the other default classes.
        assert_eq!(rules.allows_ip(ip("10.0.0.1")), Ok(()));
        assert_eq!(rules.allows_ip(ip("fe80::1")), Ok(()));
    }

    #[test]
    fn allow_loopback_admits_only_loopback() {
        let rules = rules(true, &[], &[], &[]);
        for addr in [
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "::ffff:127.0.0.1",
            "64:ff9b::7f00:1",
        ] {
            assert_eq!(rules.allows_ip(ip(addr)), Ok(()), "{addr}");
        }
        assert_eq!(rules.allows_ip(ip("10.0.0.1")), Err(Private));
        assert_eq!(strict().allows_ip(ip("::ffff:127.0.0.1")), Err(Loopback));
    }

    #[test]
    fn operator_lists() {
        let lists = rules(false, &["10.1.0.0/16"], &["8.8.8.0/24"], &[]);
        let check = |addr| lists.allows_ip(ip(addr));
        assert_eq!(check("10.1.2.3"), Ok(()));
        assert_eq!(check("::ffff:10.1.2.3"), Ok(()));
        assert_eq!(check("10.2.0.1"), Err(Private));
        assert_eq!(check("8.8.8.8"), Err(Configured));
        assert_eq!(check("::ffff:8.8.8.8"), Err(Configured));
        assert_eq!(check("2002:808:808::1"), Err(Configured));
        assert_eq!(check("8.8.4.4"), Ok(()));

        // Deny beats allow; a mapped IPv6 net in the config covers plain IPv4 too.
        let lists = rules(
            false,
            &["10.0.0.0/8"],
            &["10.9.0.0/16", "::ffff:1.1.1.0/120"],
            &[],
        );
        assert_eq!(lists.allows_ip(ip("10.9.0.1")), Err(Configured));
        assert_eq!(lists.allows_ip(ip("10.8.0.1")), Ok(()));
        assert_eq!(lists.allows_ip(ip("1.1.1.1")), Err(Configured));
        assert_eq!(lists.allows_ip(ip("1.1.2.1")), Ok(()));
    }

    #[test]
    fn own_listeners_and_port_zero() {
        let single = rules(true, &[], &[], &["127.0.0.1:3478"]);
        let wildcard = rules(true, &["0.0.0.0/0"], &[], &["0.0.0.0:3478", "[::]:5349"]);
        for (rules, addr, want) in [
            (&single, "127.0.0.1:3478", Err(OwnListener)),
            (&single, "[::ffff:127.0.0.1]:3478", Err(OwnListener)),
            (&single, "127.0.0.1:3479", Ok(())),
            (&single, "127.0.0.2:3478", Ok(())),
            (&single, "127.0.0.1:0", Err(PortZero)),
            (&single, "10.0.0.1:3478", Err(Private)),
            (&wildcard, "127.0.0.5:3478", Err(OwnListener)),
            (&wildcard, "203.0.113.1:3478", Err(OwnListener)),
            (&wildcard, "[::ffff:203.0.113.1]:3478", Err(OwnListener)),
            (&wildcard, "[2001:db8::1]:3478", Ok(())),
            (&wildcard, "[2001:db8::1]:5349", Err(OwnListener)),
            (&wildcard, "203.0.113.1:5349", Ok(())),
            (&wildcard, "10.0.0.1:3477", Ok(())),
        ] {
            assert_eq!(rules.allows_addr(addr.parse().unwrap()), want, "{addr}");
        }
    }

    proptest! {
        #[test]
        fn mapped_ipv4_is_judged_like_ipv4(a in any::<u32>()) {
            let a = Ipv4Addr::from(a);
            for rules in [strict(), rules(true, &["10.1.0.0/16"], &["8.8.8.0/24"], &[])] {
                prop_assert_eq!(
                    rules.allows_ip(IpAddr::V4(a)),
                    rules.allows_ip(IpAddr::V6(a.to_ipv6_mapped()))
                );
            }
        }
    }
}
