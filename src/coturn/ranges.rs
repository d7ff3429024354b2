//! Address ranges as coturn writes them (`A-B`) and the CIDR blocks rturn takes instead.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// An inclusive range of addresses of one family, as integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Range {
    pub(super) v6: bool,
    pub(super) lo: u128,
    pub(super) hi: u128,
}

pub(super) const LOOPBACK: [Range; 2] = [
    Range {
        v6: false,
        lo: 0x7f00_0000,
        hi: 0x7fff_ffff,
    },
    Range {
        v6: true,
        lo: 1,
        hi: 1,
    },
];
pub(super) const MULTICAST: [Range; 2] = [
    Range {
        v6: false,
        lo: 0xe000_0000,
        hi: 0xefff_ffff,
    },
    Range {
        v6: true,
        lo: 0xff << 120,
        hi: u128::MAX,
    },
];

impl Range {
    /// coturn's `A` or `A-B`; a CIDR block is taken too.
    pub(super) fn parse(text: &str) -> Result<Range, String> {
        let text = text.trim();
        if let Ok(net) = text.parse::<IpNet>() {
            let (lo, hi) = (bits(net.network()), bits(net.broadcast()));
            return Ok(Range {
                v6: net.addr().is_ipv6(),
                lo,
                hi,
            });
        }
        let (a, b) = text.split_once('-').unwrap_or((text, text));
        let ip = |s: &str| {
            let s = s.trim();
            s.parse::<IpAddr>()
                .map_err(|_| format!("{s:?} is not an IP address"))
        };
        let (a, b) = (ip(a)?, ip(b)?);
        if a.is_ipv4() != b.is_ipv4() {
            return Err("the two ends of the range differ in IP family".into());
        }
        let (lo, hi) = (bits(a), bits(b));
        if lo > hi {
            return Err(format!("the range ends ({b}) before it starts ({a})"));
        }
        Ok(Range {
            v6: a.is_ipv6(),
            lo,
            hi,
        })
    }

    fn width(self) -> u32 {
        if self.v6 { 128 } else { 32 }
    }

    /// The fewest CIDR blocks covering exactly this range: from the bottom, each time the
    /// largest block that starts aligned here and does not pass the end.
    pub(super) fn cidrs(self) -> Vec<IpNet> {
        let mut nets = Vec::new();
        let mut lo = self.lo;
        loop {
            let span = self.hi - lo; // addresses left, minus one
            let fits = match span.checked_add(1) {
                Some(count) => 127 - count.leading_zeros(),
                None => 128,
            };
            let size_bits = fits.min(lo.trailing_zeros()).min(self.width());
            let prefix = (self.width() - size_bits) as u8;
            nets.extend(IpNet::new(address(self.v6, lo), prefix).ok());
            match 1u128
                .checked_shl(size_bits)
                .and_then(|size| lo.checked_add(size))
            {
                Some(next) if next <= self.hi => lo = next,
                _ => return nets,
            }
        }
    }

    /// This range without `hole`: none, one or two ranges.
    fn minus(self, hole: Range) -> Vec<Range> {
        if hole.v6 != self.v6 || hole.hi < self.lo || hole.lo > self.hi {
            return vec![self];
        }
        let mut left = Vec::new();
        if hole.lo > self.lo {
            left.push(Range {
                hi: hole.lo - 1,
                ..self
            });
        }
        if hole.hi < self.hi {
            left.push(Range {
                lo: hole.hi + 1,
                ..self
            });
        }
        left
    }
}

pub(super) fn minus_all(ranges: Vec<Range>, holes: &[Range]) -> Vec<Range> {
    holes.iter().fold(ranges, |ranges, &hole| {
        ranges.into_iter().flat_map(|r| r.minus(hole)).collect()
    })
}

pub(super) fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn address(v6: bool, n: u128) -> IpAddr {
    if v6 {
        Ipv6Addr::from(n).into()
    } else {
        Ipv4Addr::from(n as u32).into()
    }
}
