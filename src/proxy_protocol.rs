//! The PROXY protocol header a load balancer puts before a TCP connection's first byte to
//! say whose connection it is (HAProxy's `proxy-protocol.txt`, versions 1 and 2). Pure: a
//! byte slice in, the header (or "not complete yet", or why it is invalid) out; the
//! listeners read it (`server::proxy`) and decide whom to believe.
//!
//! - Version 1 is one text line, `PROXY TCP4|TCP6|UNKNOWN … \r\n`, at most [`V1_MAX`] bytes.
//! - Version 2 is a 16-byte binary head (the [`V2_SIGNATURE`], version and command, family
//!   and transport, the length of what follows) and an address block; the TLVs after the
//!   addresses are skipped. Its length is bounded by [`V2_MAX_BODY`], well above what
//!   HAProxy, nginx and the cloud load balancers send.
//!
//! What the header says the source is: a TCP address ([`Source::Claimed`]), or, for a v2
//! `LOCAL` command (a health check of the load balancer itself), a v2 `AF_UNSPEC` family or
//! a v1 `UNKNOWN` line, the connection's own address ([`Source::Own`]), as the
//! specification asks. A v2 header for a UNIX socket or a datagram is invalid here: it cannot
//! describe the TCP client this connection serves.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The longest v1 line, `\r\n` included (the specification's bound).
pub const V1_MAX: usize = 107;
/// The 12 bytes every v2 header starts with.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest address block and TLVs after a v2 head taken (the spec allows 65 535).
pub const V2_MAX_BODY: usize = 1024;
/// The v2 head: signature, version and command, family and transport, length.
const V2_HEAD: usize = 16;
/// The longest header of either version.
pub const MAX_HEADER: usize = V2_HEAD + V2_MAX_BODY;
/// What a v1 line starts with.
const V1_PREFIX: &[u8] = b"PROXY ";

/// Whose connection the header says this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The client's address as the load balancer saw it.
    Claimed(SocketAddr),
    /// No client address (v2 `LOCAL` or `AF_UNSPEC`, v1 `UNKNOWN`): use the connection's own.
    Own,
}

/// A complete header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// 1 or 2.
    pub version: u8,
    /// Whose connection it is.
    pub source: Source,
    /// Its length in bytes: the connection's own data starts after it.
    pub len: usize,
}

/// Why bytes are not a PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// They do not start with either version's signature.
    Missing,
    /// They start like one, but break its rules (the reason).
    Malformed(&'static str),
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalid::Missing => f.write_str("no PROXY protocol header"),
            Invalid::Malformed(why) => write!(f, "malformed PROXY protocol header: {why}"),
        }
    }
}

/// Parses the header at the start of `buf`: `Ok(None)` while `buf` is a valid beginning of
/// one (so every byte of it belongs to the header: reading them all never reads past it).
pub fn parse(buf: &[u8]) -> Result<Option<Header>, Invalid> {
    match sniff(buf) {
        Sniff::Undecided => Ok(None),
        Sniff::Neither => Err(Invalid::Missing),
        Sniff::V1 => parse_v1(buf),
        Sniff::V2 => parse_v2(buf),
    }
}

/// What the first bytes of a connection look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniff {
    /// A v1 line (`PROXY `).
    V1,
    /// A v2 header (its 12-byte signature).
    V2,
    /// Too few bytes to tell (a beginning of either signature, or nothing).
    Undecided,
    /// Neither: the connection's own protocol.
    Neither,
}

/// Tells from the first bytes whether a connection starts with a PROXY header.
pub fn sniff(buf: &[u8]) -> Sniff {
    let matches = |sig: &[u8]| {
        let n = buf.len().min(sig.len());
        buf[..n] == sig[..n]
    };
    match (matches(V1_PREFIX), matches(&V2_SIGNATURE)) {
        (false, false) => Sniff::Neither,
        (true, _) if buf.len() >= V1_PREFIX.len() => Sniff::V1,
        (_, true) if buf.len() >= V2_SIGNATURE.len() => Sniff::V2,
        _ => Sniff::Undecided,
    }
}

fn parse_v1(buf: &[u8]) -> Result<Option<Header>, Invalid> {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(end) = window.iter().position(|&b| b == b'\n') else {
        if window.len() == V1_MAX {
            return Err(Invalid::Malformed("v1 line longer than 107 bytes"));
        }
        if window.contains(&b'\r') && window.last() != Some(&b'\r') {
            return Err(Invalid::Malformed("v1 line with a CR inside"));
        }
        return Ok(None);
    };
    let Some(line) = window[..end].strip_suffix(b"\r") else {
        return Err(Invalid::Malformed("v1 line not ended by CRLF"));
    };
    let line = std::str::from_utf8(line).map_err(|_| Invalid::Malformed("v1 line not ASCII"))?;
    let source = v1_source(line)?;
    Ok(Some(Header {
        version: 1,
        source,
        len: end + 1,
    }))
}

/// The source of a v1 line (without its CRLF): `PROXY TCP4 src dst sport dport`.
fn v1_source(line: &str) -> Result<Source, Invalid> {
    let mut fields = line.split(' ');
    let _proxy = fields.next();
    let family = fields.next().unwrap_or("");
    if family == "UNKNOWN" {
        // Whatever follows is to be ignored.
        return Ok(Source::Own);
    }
    if family != "TCP4" && family != "TCP6" {
        return Err(Invalid::Malformed("v1 protocol not TCP4, TCP6 or UNKNOWN"));
    }
    let fields: Vec<&str> = fields.collect();
    let [src, dst, sport, dport] = fields[..] else {
        return Err(Invalid::Malformed(
            "v1 line needs two addresses and two ports, single spaces",
        ));
    };
    // The destination is checked too: a line must be well formed to be believed.
    let src: IpAddr = if family == "TCP4" {
        v1_ip::<Ipv4Addr>(dst)?;
        v1_ip::<Ipv4Addr>(src)?.into()
    } else {
        v1_ip::<Ipv6Addr>(dst)?;
        v1_ip::<Ipv6Addr>(src)?.into()
    };
    let sport = v1_port(sport)?;
    v1_port(dport)?;
    Ok(Source::Claimed(SocketAddr::new(src.to_canonical(), sport)))
}

fn v1_ip<T: std::str::FromStr>(text: &str) -> Result<T, Invalid> {
    text.parse()
        .map_err(|_| Invalid::Malformed("v1 address not of its protocol's family"))
}

/// A decimal port, 0 to 65535, digits only, no leading zero.
fn v1_port(text: &str) -> Result<u16, Invalid> {
    let digits = !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit());
    if !digits || (text.len() > 1 && text.starts_with('0')) {
        return Err(Invalid::Malformed("v1 port not a decimal number"));
    }
    text.parse()
        .map_err(|_| Invalid::Malformed("v1 port above 65535"))
}

fn parse_v2(buf: &[u8]) -> Result<Option<Header>, Invalid> {
    let Some(head) = buf.get(..V2_HEAD) else {
        // The version and command byte is checked as soon as it is there.
        if let Some(&ver_cmd) = buf.get(12) {
            v2_command(ver_cmd)?;
        }
        return Ok(None);
    };
    let local = v2_command(head[12])?;
    let body_len = usize::from(u16::from_be_bytes([head[14], head[15]]));
    if body_len > V2_MAX_BODY {
        return Err(Invalid::Malformed("v2 header longer than 1040 bytes"));
    }
    let Some(body) = buf.get(V2_HEAD..V2_HEAD + body_len) else {
        return Ok(None);
    };
    let (family, transport) = (head[13] >> 4, head[13] & 0x0f);
    if transport > 2 || family > 3 {
        return Err(Invalid::Malformed("v2 family or transport unknown"));
    }
    let source = if local || family == 0 {
        Source::Own
    } else if family == 3 {
        return Err(Invalid::Malformed("v2 UNIX socket addresses are not taken"));
    } else if transport != 1 {
        return Err(Invalid::Malformed("v2 transport not STREAM"));
    } else {
        Source::Claimed(v2_address(family, body)?)
    };
    Ok(Some(Header {
        version: 2,
        source,
        len: V2_HEAD + body_len,
    }))
}

/// `true` for LOCAL, `false` for PROXY.
fn v2_command(ver_cmd: u8) -> Result<bool, Invalid> {
    match ver_cmd {
        0x20 => Ok(true),
        0x21 => Ok(false),
        _ if ver_cmd >> 4 != 2 => Err(Invalid::Malformed("v2 version not 2")),
        _ => Err(Invalid::Malformed("v2 command not LOCAL or PROXY")),
    }
}

/// The source address of an AF_INET (1) or AF_INET6 (2) block.
fn v2_address(family: u8, body: &[u8]) -> Result<SocketAddr, Invalid> {
    let short = Invalid::Malformed("v2 address block too short for its family");
    let (ip, port_at): (IpAddr, usize) = if family == 1 {
        let bytes: [u8; 4] = body.get(..4).and_then(|b| b.try_into().ok()).ok_or(short)?;
        (Ipv4Addr::from(bytes).into(), 8)
    } else {
        let bytes: [u8; 16] = body
            .get(..16)
            .and_then(|b| b.try_into().ok())
            .ok_or(short)?;
        (Ipv6Addr::from(bytes).to_canonical(), 32)
    };
    // The destination port follows the source port: the block must hold both.
    let ports = body.get(port_at..port_at + 4).ok_or(short)?;
    let port = u16::from_be_bytes([ports[0], ports[1]]);
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests;
