//! Converting a coturn `turnserver.conf` to an rturn `turnserver.toml` (`rturn import-coturn`).
//!
//! Lines are read the way coturn reads them (`read_config_file` and `parse_arg_string` in its
//! `mainrelay.c`): one option per line; the name ends at the first space, tab or `=`, and any run
//! of those separates it from the value; a value in double quotes loses them; `#` starts a
//! comment only at the start of a line (so a secret may contain `#`); a bare name is a flag, and
//! a flag's value may switch it off (`0`, `no`, `false`, `off`). A leading `--` is accepted too.
//!
//! # Layout
//!
//! - here: reading a file, and `OPTIONS`, each coturn option rturn has with the handler that
//!   stores its typed value in an `Importer`;
//! - `line`: one option line as coturn reads it, and why a line was skipped;
//! - `unsupported`: the options rturn has no counterpart for, each with the reason;
//! - `finish`: settles what spans several options (listen addresses, relay-ip, external-ip,
//!   which credentials count, peer ranges) and writes the TOML;
//! - `serving`: what rturn serves beyond TURN: `[listen] http` (for `/metrics` and `/healthz`,
//!   from coturn's `prometheus` options), `[relay] alternate-server`, and certificate paths
//!   the service cannot read;
//! - `stun`: `[stun]`, from `stun-only` and the RFC 5780 options;
//! - `toml_text`: writing TOML text (sections, quoted strings and keys, lists, durations);
//! - `ranges`: coturn's `A-B` address ranges as exact CIDR blocks.
//!
//! Every line ends up either converted or in [`Conversion::skipped`], which the top of the TOML
//! repeats, split into what needs attention and what needs nothing.

use std::net::{IpAddr, SocketAddr};

use line::{Line, Skip, Skipped, attention, note};
use ranges::Range;
use unsupported::ADDRESS_FAMILY;

use crate::config::DEFAULT_PORT;

mod finish;
mod line;
mod ranges;
mod redis_userdb;
mod relay;
mod serving;
mod stun;
#[cfg(test)]
mod tests;
mod toml_text;
mod unsupported;

/// The result of a conversion.
#[derive(Debug, Default)]
pub struct Conversion {
    /// The rturn configuration, as TOML text with comments.
    pub toml: String,
    /// Each coturn option that was not converted, with the reason, in file order
    /// ("line 12: cli-password: rturn has no telnet CLI"); what the file lacks but rturn needs
    /// comes last, without a line ("realm: not set. …").
    pub skipped: Vec<String>,
}

/// Converts coturn configuration text. Never fails: what cannot be converted is skipped, with
/// the reason, and the TOML always passes [`crate::Config::from_toml`].
pub fn convert(text: &str) -> Conversion {
    let mut importer = Importer::default();
    for (index, raw) in text.lines().enumerate() {
        if let Some(line) = Line::parse(index + 1, raw) {
            importer.handle(&line);
        }
    }
    importer.finish()
}

/// What coturn's bare `stale-nonce` means.
const COTURN_STALE_NONCE: u64 = 600;
const PORT: &str = "a port number";

/// A value and the line it came from.
struct At<T> {
    line: usize,
    value: T,
}

impl<T> At<T> {
    fn new(line: usize, value: T) -> Self {
        At { line, value }
    }
}

/// One `allowed-peer-ip` or `denied-peer-ip` line.
struct Peers {
    line: usize,
    text: String,
    ranges: Vec<Range>,
}

/// Everything read so far.
#[derive(Default)]
struct Importer {
    realm: Option<At<String>>,
    port: Option<At<u16>>,
    tls_port: Option<At<u16>>,
    listening_ips: Vec<At<IpAddr>>,
    no_udp: Option<usize>,
    no_tcp: Option<usize>,
    no_tls: Option<usize>,
    no_dtls: bool,
    cert: Option<At<String>>,
    pkey: Option<At<String>>,
    relay_ips: Vec<At<IpAddr>>,
    external_ips: Vec<At<(IpAddr, Option<IpAddr>)>>,
    min_port: Option<At<u16>>,
    max_port: Option<At<u16>>,
    lt_cred_mech: Option<usize>,
    use_auth_secret: Option<usize>,
    stun_only: Option<usize>,
    /// RFC 5780: `rfc5780`, `no-rfc5780` (the lines that set them) and `alt-listening-port`.
    rfc5780: Option<usize>,
    no_rfc5780: Option<usize>,
    alt_port: Option<At<u16>>,
    users: Vec<At<(String, String)>>,
    secrets: Vec<At<String>>,
    rest_separator: Option<At<char>>,
    nonce_lifetime: Option<At<u64>>,
    /// `redis-userdb` as an `[auth] redis` URL.
    redis_userdb: Option<At<String>>,
    allowed: Vec<Peers>,
    denied: Vec<Peers>,
    allow_loopback: bool,
    /// `mobility` (RFC 8016) and `no-tcp-relay` (RFC 6062): the lines that set them.
    mobility: Option<usize>,
    no_tcp_relay: Option<usize>,
    no_multicast: bool,
    max_lifetime: Option<At<u64>>,
    channel_lifetime: Option<At<u64>>,
    permission_lifetime: Option<At<u64>>,
    user_quota: Option<At<usize>>,
    total_quota: Option<At<usize>>,
    max_bps: Option<At<usize>>,
    bps_capacity: Option<At<usize>>,
    workers: Option<At<usize>>,
    /// `prometheus`: the line that switched it on.
    prometheus: Option<usize>,
    prometheus_port: Option<At<u16>>,
    prometheus_address: Option<At<IpAddr>>,
    alternates: Vec<At<SocketAddr>>,
    skipped: Vec<Skipped>,
}

type Handler = fn(&mut Importer, &Line<'_>) -> Result<(), Skip>;

/// coturn options that become rturn settings.
const OPTIONS: &[(&str, Handler)] = &[
    ("listening-port", |c, l| {
        once(&mut c.skipped, &mut c.port, l, l.number(PORT)?)
    }),
    ("tls-listening-port", |c, l| {
        once(&mut c.skipped, &mut c.tls_port, l, l.number(PORT)?)
    }),
    ("listening-ip", Importer::listening_ip),
    ("no-udp", |c, l| set_flag(&mut c.no_udp, l)),
    ("no-tcp", |c, l| set_flag(&mut c.no_tcp, l)),
    ("no-tls", |c, l| set_flag(&mut c.no_tls, l)),
    ("no-dtls", |c, l| {
        c.no_dtls = l.flag()?;
        match c.no_dtls {
            true => Err(note("already so: rturn has no DTLS")),
            false => Ok(()),
        }
    }),
    ("cert", |c, l| {
        once(&mut c.skipped, &mut c.cert, l, l.text()?.to_owned())
    }),
    ("pkey", |c, l| {
        once(&mut c.skipped, &mut c.pkey, l, l.text()?.to_owned())
    }),
    ("relay-ip", Importer::relay_ip),
    ("external-ip", Importer::external_ip),
    ("min-port", |c, l| {
        once(&mut c.skipped, &mut c.min_port, l, l.number(PORT)?)
    }),
    ("max-port", |c, l| {
        once(&mut c.skipped, &mut c.max_port, l, l.number(PORT)?)
    }),
    ("realm", |c, l| {
        once(&mut c.skipped, &mut c.realm, l, l.text()?.to_owned())
    }),
    ("lt-cred-mech", |c, l| set_flag(&mut c.lt_cred_mech, l)),
    ("use-auth-secret", |c, l| {
        set_flag(&mut c.use_auth_secret, l)
    }),
    ("static-auth-secret", |c, l| {
        let value = l.text()?.to_owned();
        c.secrets.push(At::new(l.number, value));
        Ok(())
    }),
    ("user", Importer::user),
    ("rest-api-separator", |c, l| {
        let first = l.text()?.chars().next().unwrap_or(':');
        once(&mut c.skipped, &mut c.rest_separator, l, first)
    }),
    ("stale-nonce", Importer::stale_nonce),
    ("redis-userdb", |c, l| {
        let url = redis_userdb::to_url(l.text()?)?;
        once(&mut c.skipped, &mut c.redis_userdb, l, url)
    }),
    ("stun-only", |c, l| set_flag(&mut c.stun_only, l)),
    ("rfc5780", |c, l| set_flag(&mut c.rfc5780, l)),
    ("no-rfc5780", |c, l| set_flag(&mut c.no_rfc5780, l)),
    ("alt-listening-port", |c, l| {
        once(&mut c.skipped, &mut c.alt_port, l, l.number(PORT)?)
    }),
    ("response-origin-only-with-rfc5780", |_, l| {
        match l.flag()? {
            true => Err(note(
                "already so: rturn sends RESPONSE-ORIGIN only with [stun] other-address",
            )),
            false => Err(attention(
                "rturn sends RESPONSE-ORIGIN only with [stun] other-address (RFC 5780)",
            )),
        }
    }),
    ("allowed-peer-ip", |c, l| peers(&mut c.allowed, l)),
    ("denied-peer-ip", |c, l| peers(&mut c.denied, l)),
    ("mobility", |c, l| set_flag(&mut c.mobility, l)),
    ("no-tcp-relay", |c, l| set_flag(&mut c.no_tcp_relay, l)),
    ("allow-loopback-peers", |c, l| {
        c.allow_loopback = l.flag()?;
        Ok(())
    }),
    ("no-multicast-peers", |c, l| {
        c.no_multicast = l.flag()?;
        match c.no_multicast {
            true => Err(note("already the default: rturn never relays to multicast")),
            false => Ok(()),
        }
    }),
    ("user-quota", |c, l| {
        once(&mut c.skipped, &mut c.user_quota, l, l.number("a number")?)
    }),
    ("total-quota", |c, l| {
        once(&mut c.skipped, &mut c.total_quota, l, l.number("a number")?)
    }),
    ("max-bps", |c, l| {
        let bps = bytes_per_second(l)?;
        once(&mut c.skipped, &mut c.max_bps, l, bps)
    }),
    ("bps-capacity", |c, l| {
        let bps = bytes_per_second(l)?;
        once(&mut c.skipped, &mut c.bps_capacity, l, bps)
    }),
    ("max-allocate-lifetime", |c, l| {
        once(&mut c.skipped, &mut c.max_lifetime, l, l.seconds()?)
    }),
    ("channel-lifetime", |c, l| {
        once(&mut c.skipped, &mut c.channel_lifetime, l, l.seconds()?)
    }),
    ("permission-lifetime", |c, l| {
        once(&mut c.skipped, &mut c.permission_lifetime, l, l.seconds()?)
    }),
    ("relay-threads", |c, l| match l.number("a number")? {
        0 => Err(note(
            "0 is coturn's single-threaded mode; rturn runs one worker per core \
             ([server] workers = 1 is the closest)",
        )),
        n if n > 1024 => Err(attention("rturn runs at most 1024 workers")),
        n => once(&mut c.skipped, &mut c.workers, l, n),
    }),
    ("prometheus", |c, l| set_flag(&mut c.prometheus, l)),
    ("prometheus-port", |c, l| {
        let port = l.number(PORT)?;
        once(&mut c.skipped, &mut c.prometheus_port, l, port)
    }),
    ("prometheus-address", |c, l| {
        let ip = l.ip()?;
        once(&mut c.skipped, &mut c.prometheus_address, l, ip)
    }),
    ("alternate-server", |c, l| {
        let addr = l.address(DEFAULT_PORT)?;
        c.alternates.push(At::new(l.number, addr));
        Ok(())
    }),
    ("allocation-default-address-family", |_, l| {
        match l.text()? {
            "ipv4" => Err(note(
                "already so: rturn relays over IPv4 unless the client asks",
            )),
            _ => Err(attention(ADDRESS_FAMILY)),
        }
    }),
];

/// max-bps and bps-capacity: 0 (no limit) or at least what rturn accepts.
fn bytes_per_second(line: &Line<'_>) -> Result<usize, Skip> {
    match line.number("a number of bytes per second")? {
        n @ (0 | 1000..) => Ok(n),
        _ => Err(attention(
            "rturn takes 0 (no limit) or at least 1000 bytes per second",
        )),
    }
}

/// A single-valued option: the last one counts, as in coturn; earlier ones are reported.
fn once<T>(
    skipped: &mut Vec<Skipped>,
    slot: &mut Option<At<T>>,
    line: &Line<'_>,
    value: T,
) -> Result<(), Skip> {
    let new = At::new(line.number, value);
    if let Some(old) = slot.replace(new) {
        let why = format!(
            "given again on line {}, which counts (as in coturn)",
            line.number
        );
        skipped.push(Skipped {
            line: Some(old.line),
            option: clean(line.name),
            skip: note(why),
        });
    }
    Ok(())
}

fn set_flag(slot: &mut Option<usize>, line: &Line<'_>) -> Result<(), Skip> {
    *slot = line.flag()?.then_some(line.number);
    Ok(())
}

fn peers(list: &mut Vec<Peers>, line: &Line<'_>) -> Result<(), Skip> {
    let text = line.text()?;
    let range = Range::parse(text).map_err(attention)?;
    list.push(Peers {
        line: line.number,
        text: text.to_owned(),
        ranges: vec![range],
    });
    Ok(())
}

impl Importer {
    fn handle(&mut self, line: &Line<'_>) {
        let result = if let Some((_, handler)) = OPTIONS.iter().find(|(n, _)| *n == line.name) {
            handler(self, line)
        } else if let Some(result) = unsupported::skip(line) {
            result
        } else {
            Err(unknown(line.name))
        };
        if let Err(skip) = result {
            self.skip(Some(line.number), line.name, skip);
        }
    }

    fn skip(&mut self, line: Option<usize>, option: &str, skip: Skip) {
        let option = clean(option);
        self.skipped.push(Skipped { line, option, skip });
    }

    fn listening_ip(&mut self, line: &Line<'_>) -> Result<(), Skip> {
        let ip = line.ip()?;
        if let Some(first) = self.listening_ips.iter().find(|a| a.value == ip) {
            return Err(note(format!(
                "{ip} is already listed on line {}",
                first.line
            )));
        }
        self.listening_ips.push(At::new(line.number, ip));
        Ok(())
    }

    fn relay_ip(&mut self, line: &Line<'_>) -> Result<(), Skip> {
        let ip = line.ip()?;
        if ip.is_unspecified() || ip.is_multicast() {
            return Err(attention(format!(
                "{ip} cannot be a relay address; give this machine's address"
            )));
        }
        if let Some(first) = self
            .relay_ips
            .iter()
            .find(|r| r.value.is_ipv4() == ip.is_ipv4())
        {
            return Err(attention(format!(
                "rturn relays from one IPv4 and one IPv6 address; {} (line {}) is kept",
                first.value, first.line
            )));
        }
        self.relay_ips.push(At::new(line.number, ip));
        Ok(())
    }

    fn external_ip(&mut self, line: &Line<'_>) -> Result<(), Skip> {
        let text = line.text()?;
        let parse = |s: &str| {
            let s = s.trim();
            s.parse::<IpAddr>()
                .map_err(|_| attention(format!("{s:?} is not an IP address")))
        };
        let (public, private) = match text.split_once('/') {
            Some((public, private)) => (parse(public)?, Some(parse(private)?)),
            None => (parse(text)?, None),
        };
        if public.is_unspecified() {
            return Err(attention("the public address cannot be unspecified"));
        }
        if private.is_some_and(|p| p.is_ipv4() != public.is_ipv4()) {
            return Err(attention(
                "the public and private addresses differ in IP family",
            ));
        }
        self.external_ips
            .push(At::new(line.number, (public, private)));
        Ok(())
    }

    fn user(&mut self, line: &Line<'_>) -> Result<(), Skip> {
        let Some((name, password)) = line.text()?.split_once(':') else {
            return Err(attention("not in the form name:password"));
        };
        if name.is_empty() || password.is_empty() {
            return Err(attention("the user name or the password is empty"));
        }
        if let Some(hex) = password.strip_prefix("0x")
            && (hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(attention(
                "a 0x key must be 32 hex digits (the MD5 key turnadmin -k prints); \
                 rturn cannot use this one",
            ));
        }
        let value = (name.to_owned(), password.to_owned());
        self.users.push(At::new(line.number, value));
        Ok(())
    }

    fn stale_nonce(&mut self, line: &Line<'_>) -> Result<(), Skip> {
        let seconds = match line.value {
            "" => COTURN_STALE_NONCE,
            _ => line.number("a number of seconds")?,
        };
        match seconds {
            0 => Err(note(
                "rturn's nonces always expire, after nonce-lifetime (default \"10m\")",
            )),
            1..10 => Err(attention(
                "rturn's shortest nonce-lifetime is 10s; its default \"10m\" is kept",
            )),
            _ => once(&mut self.skipped, &mut self.nonce_lifetime, line, seconds),
        }
    }
}

/// An option coturn does not have. coturn's names are case-sensitive, so a known name in
/// other letters (`ca-file` for `CA-file`) is a line coturn ignored: say which it meant.
fn unknown(name: &str) -> Skip {
    let names = OPTIONS.iter().map(|(n, _)| *n);
    let names = names.chain(unsupported::UNSUPPORTED.iter().map(|(n, ..)| *n));
    let Some(meant) = names.into_iter().find(|n| n.eq_ignore_ascii_case(name)) else {
        return attention("unknown coturn option");
    };
    let what = match unsupported::UNSUPPORTED.iter().find(|(n, ..)| *n == meant) {
        Some((_, _, why)) => format!("; about {meant}: {why}"),
        None => format!(": if {meant} was meant, write it so and convert again"),
    };
    attention(format!(
        "not a coturn option, so coturn ignored this line (its option names are \
         case-sensitive: this is {meant} in other letters){what}"
    ))
}

/// File text fit for a comment line: control characters become `?`.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() && c != '\t' { '?' } else { c })
        .collect()
}
