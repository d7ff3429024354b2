//! `[stun]` from coturn's options: `stun-only` (Binding only, TURN refused), and RFC 5780
//! (`rfc5780`, `no-rfc5780`, `alt-listening-port`): coturn discovered NAT behaviour whenever
//! it listened on two addresses of one family, answering from the second at
//! `alt-listening-port` (default: listening-port + 1); rturn's counterpart is
//! `other-address`, that second IP at that port.

use std::net::{IpAddr, SocketAddr};

use super::Importer;
use super::line::{attention, note};
use super::toml_text::{Toml, quote};
use crate::config::DEFAULT_PORT;

impl Importer {
    /// `[stun]`: `only` from `stun-only`, `other-address` from the RFC 5780 options.
    pub(super) fn stun(&mut self, out: &mut Toml) {
        let mut stun = Toml::default();
        if let Some(line) = self.stun_only {
            stun.line(format!(
                "only = true # stun-only (line {line}): Binding only, TURN requests get 403"
            ));
        }
        if let Some(other) = self.other_address() {
            stun.line(format!(
                "other-address = {} # RFC 5780: the second listening-ip at alt-listening-port",
                quote(&other.to_string())
            ));
        }
        out.table("stun", stun);
    }

    /// RFC 5780's second address as coturn would have used it, reporting the options that
    /// do not lead to one.
    fn other_address(&mut self) -> Option<SocketAddr> {
        let alt_line = self.alt_port.as_ref().map(|a| a.line);
        if let Some(line) = self.no_rfc5780 {
            self.skip(
                Some(line),
                "no-rfc5780",
                note("already the default: rturn does RFC 5780 only with [stun] other-address"),
            );
            if alt_line.is_some() {
                self.skip(alt_line, "alt-listening-port", note("unused: no-rfc5780"));
            }
            return None;
        }
        // coturn pairs the first two listener addresses of one family.
        let ips: Vec<IpAddr> = self.listening_ips.iter().map(|a| a.value).collect();
        let pair = [true, false].into_iter().find_map(|v4| {
            let mut family = ips.iter().filter(|ip| ip.is_ipv4() == v4);
            Some((*family.next()?, *family.next()?))
        });
        let port = self.port.as_ref().map_or(DEFAULT_PORT, |p| p.value);
        let alt = match &self.alt_port {
            Some(a) if a.value != 0 => Some(a.value),
            _ => port.checked_add(1),
        };
        match (pair, alt, self.no_udp) {
            (Some((primary, other)), Some(alt), None)
                if !primary.is_unspecified() && !other.is_unspecified() && alt != port =>
            {
                Some(SocketAddr::new(other, alt))
            }
            _ => {
                let why = "unused: RFC 5780 needs two listening-ip of one family and UDP; \
                           set [stun] other-address to a second address of this machine";
                if let Some(line) = self.rfc5780 {
                    self.skip(Some(line), "rfc5780", attention(why));
                }
                if alt_line.is_some() {
                    self.skip(alt_line, "alt-listening-port", note(why));
                }
                None
            }
        }
    }
}
