//! `[relay]` from coturn's options: relay-ip and external-ip as finish.rs chose them, the
//! port range, the peer lists (with coturn's precedence rewritten into rturn's), lifetimes,
//! quotas and bandwidth, and which allocations are offered (`no-tcp-relay`, `mobility`).

use std::net::IpAddr;

use ipnet::IpNet;

use super::line::{attention, note};
use super::ranges::{LOOPBACK, MULTICAST, Range, minus_all};
use super::toml_text::{Toml, duration, list, write_peer_list};
use super::{At, Importer, Peers, clean};

/// rturn's default allocation lifetime; a shorter maximum must shorten it too.
const RTURN_ALLOCATION_LIFETIME: u64 = 600;

impl Importer {
    /// `[relay]`.
    pub(super) fn relay(&mut self, out: &mut Toml, relay_ips: &[(IpAddr, &str)]) {
        if let Some((_, comment)) = relay_ips.iter().find(|(_, c)| !c.is_empty()) {
            out.line(*comment);
        }
        if !relay_ips.is_empty() {
            out.line(format!(
                "relay-ip = {}",
                list(relay_ips.iter().map(|r| r.0))
            ));
        }
        let external = self.external(relay_ips);
        if !external.is_empty() {
            out.line(format!("external-ip = {}", list(&external)));
        }
        let min = self.min_port.as_ref().map_or(49152, |p| p.value);
        let max = self.max_port.as_ref().map_or(65535, |p| p.value);
        let ports = [
            ("min-port", self.min_port.take()),
            ("max-port", self.max_port.take()),
        ];
        for (key, port) in ports.into_iter().filter_map(|(k, p)| Some((k, p?))) {
            if min == 0 || min > max {
                let why = format!("the port range {min}-{max} is empty; rturn's default is kept");
                self.skip(Some(port.line), key, attention(why));
            } else {
                out.line(format!("{key} = {}", port.value));
            }
        }
        if self.allow_loopback {
            out.line("allow-loopback-peers = true");
        }
        if let Some(line) = self.no_tcp_relay {
            out.line(format!(
                "tcp-allocations = false # no-tcp-relay (line {line}): no RFC 6062 TCP relays"
            ));
        }
        if let Some(line) = self.mobility {
            out.line(format!(
                "mobility = true # mobility (line {line}): RFC 8016 MOBILITY-TICKET"
            ));
        }
        self.peer_lists(out);
        self.alternate(out);
        if let Some(max) = &self.max_lifetime {
            if max.value < RTURN_ALLOCATION_LIFETIME {
                out.line(format!("allocation-lifetime = {}", duration(max.value)));
            }
            out.line(format!("max-allocation-lifetime = {}", duration(max.value)));
        }
        for (key, value) in [
            ("permission-lifetime", &self.permission_lifetime),
            ("channel-lifetime", &self.channel_lifetime),
        ] {
            if let Some(v) = value {
                out.line(format!("{key} = {}", duration(v.value)));
            }
        }
        for (key, value) in [
            ("user-quota", &self.user_quota),
            ("total-quota", &self.total_quota),
            ("max-bps", &self.max_bps),
            ("bps-capacity", &self.bps_capacity),
        ] {
            if let Some(v) = value {
                out.line(format!("{key} = {}", v.value));
            }
        }
    }

    /// external-ip entries rturn can use with these relay addresses.
    fn external(&mut self, relay_ips: &[(IpAddr, &str)]) -> Vec<String> {
        let mut used: Vec<(IpAddr, usize)> = Vec::new();
        let mut entries = Vec::new();
        for At { line, value } in std::mem::take(&mut self.external_ips) {
            let (public, private) = value;
            let same_family = relay_ips
                .iter()
                .map(|r| r.0)
                .find(|r| r.is_ipv4() == public.is_ipv4());
            let bind = match private {
                Some(p) if relay_ips.iter().all(|r| r.0 != p) => {
                    let why = format!("{p} is not a relay-ip, so the mapping cannot apply");
                    self.skip(Some(line), "external-ip", attention(why));
                    continue;
                }
                Some(p) => p,
                None => match same_family {
                    Some(r) => r,
                    None => {
                        let why = "no relay-ip of the same IP family to map";
                        self.skip(Some(line), "external-ip", attention(why));
                        continue;
                    }
                },
            };
            if let Some((_, first)) = used.iter().find(|(b, _)| *b == bind) {
                let why = format!("relay address {bind} is already mapped on line {first}");
                self.skip(Some(line), "external-ip", attention(why));
                continue;
            }
            used.push((bind, line));
            entries.push(match private {
                Some(p) => format!("{public}/{p}"),
                None => public.to_string(),
            });
        }
        entries
    }

    /// allowed-peer-ip and denied-peer-ip as CIDR blocks, with coturn's precedence: coturn
    /// refuses loopback (and, with no-multicast-peers, multicast) before looking at the allowed
    /// list, and lets allowed win over denied; rturn checks denied first and lets allowed
    /// override its default refusals. So loopback/multicast leave the allowed ranges and the
    /// allowed ranges leave the denied ones, which gives the same answer for every address.
    fn peer_lists(&mut self, out: &mut Toml) {
        let mut holes = Vec::new();
        if !self.allow_loopback {
            holes.extend(LOOPBACK);
        }
        if self.no_multicast {
            holes.extend(MULTICAST);
        }
        let allowed = std::mem::take(&mut self.allowed);
        let (allowed, lines) = self.subtract(
            allowed,
            &holes,
            "allowed-peer-ip",
            &[
                "coturn refuses these peers before it reads allowed-peer-ip (loopback without \
             allow-loopback-peers, multicast with no-multicast-peers), so this had no effect",
                "without loopback/multicast, which coturn refuses regardless",
            ],
        );
        write_peer_list(out, "allowed-peer-ip", &lines);
        let denied = std::mem::take(&mut self.denied);
        let (_, lines) = self.subtract(denied, &allowed, "denied-peer-ip", &[
            "every address here is in allowed-peer-ip, which wins over denied-peer-ip in coturn",
            "minus allowed-peer-ip: coturn lets allowed win, rturn checks denied first",
        ]);
        write_peer_list(out, "denied-peer-ip", &lines);
    }

    /// Takes `holes` out of each entry; `why[0]` reports an emptied entry, `why[1]` comments
    /// a changed one. Returns every range left, and the comment and blocks of each entry.
    fn subtract(
        &mut self,
        entries: Vec<Peers>,
        holes: &[Range],
        option: &str,
        why: &[&str; 2],
    ) -> (Vec<Range>, Vec<(String, Vec<IpNet>)>) {
        let mut all = Vec::new();
        let mut lines = Vec::new();
        for entry in entries {
            let left = minus_all(entry.ranges.clone(), holes);
            if left.is_empty() {
                self.skip(Some(entry.line), option, note(why[0]));
                continue;
            }
            let mut comment = format!("line {}: {}", entry.line, clean(&entry.text));
            if left != entry.ranges {
                comment = format!("{comment} ({})", why[1]);
            }
            lines.push((comment, left.iter().flat_map(|r| r.cidrs()).collect()));
            all.extend(left);
        }
        (all, lines)
    }
}
