//! Converting a coturn `turnserver.conf` to an rturn `turnserver.toml` (`rturn import-coturn`).
//!
//! Lines are read the way coturn reads them (`read_config_file` and `parse_arg_string` in its
//! `mainrelay.c`): one option per line; the name ends at the first space, tab or `=`, and any run
//! of those separates it from the value; a value in double quotes loses them; `#` starts a
//! comment only at the start of a line (so a secret may contain `#`); a bare name is a flag, and
//! a flag's value may switch it off (`0`, `no`, `false`, `off`). A leading `--` is accepted too.
//!
//! Each line goes through [`OPTIONS`] (an option and the handler that stores its typed value)
//! or [`UNSUPPORTED`] (options rturn has no counterpart for, with the reason). Then
//! [`Importer::finish`] settles what spans several options (listen addresses, relay-ip,
//! external-ip, peer ranges, which credentials count) and writes the TOML. Every line ends up
//! either converted or in [`Conversion::skipped`], which the top of the TOML repeats, split into
//! what needs attention and what needs nothing.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;

use crate::config::{DEFAULT_PORT, PLACEHOLDER_SECRET};

#[cfg(test)]
mod tests;

/// The result of a conversion.
#[derive(Debug, Default)]
pub struct Conversion {
    /// The rturn configuration, as TOML text with comments.
    pub toml: String,
    /// Each coturn option that was not converted, with the reason ("line 12: `cli-password`: …").
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

/// coturn's defaults where rturn has none of its own.
const COTURN_TLS_PORT: u16 = 5349;
const COTURN_STALE_NONCE: u64 = 600;
/// What rturn uses when the coturn file leaves something rturn requires unknown.
const PLACEHOLDER_REALM: &str = "example.org";
const PLACEHOLDER_RELAY_IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// rturn's default allocation lifetime; a shorter maximum must shorten it too.
const RTURN_ALLOCATION_LIFETIME: u64 = 600;

/// One option line: `name=value`, `name value` or a bare `name`.
struct Line<'a> {
    number: usize,
    name: &'a str,
    value: &'a str,
}

impl<'a> Line<'a> {
    fn parse(number: usize, raw: &'a str) -> Option<Self> {
        let s = raw.trim();
        if s.is_empty() || s.starts_with('#') {
            return None;
        }
        let s = s.strip_prefix("--").unwrap_or(s);
        let separators = [' ', '\t', '='];
        let (name, value) = match s.find(separators) {
            Some(at) => (&s[..at], s[at..].trim_start_matches(separators)),
            None => (s, ""),
        };
        let value = match value.strip_prefix('"') {
            Some(v) => v.strip_suffix('"').unwrap_or(v),
            None => value,
        };
        Some(Line {
            number,
            name,
            value,
        })
    }

    /// A flag's value, as coturn's `get_bool_value` reads it; a bare flag is on.
    fn flag(&self) -> Result<bool, Skip> {
        let v = self.value;
        match v.chars().next() {
            None => Ok(true),
            Some('0' | 'n' | 'N' | 'f' | 'F') => Ok(false),
            Some('1'..='9' | 'y' | 'Y' | 't' | 'T') => Ok(true),
            _ if v.eq_ignore_ascii_case("off") => Ok(false),
            _ if v.eq_ignore_ascii_case("on") => Ok(true),
            _ => Err(attention(format!(
                "{v:?} is not on/off, yes/no, true/false or 1/0"
            ))),
        }
    }

    fn text(&self) -> Result<&'a str, Skip> {
        match self.value {
            "" => Err(attention("needs a value")),
            v => Ok(v),
        }
    }

    fn number<T: FromStr>(&self, what: &str) -> Result<T, Skip> {
        let v = self.text()?;
        v.trim()
            .parse()
            .map_err(|_| attention(format!("{v:?} is not {what}")))
    }

    fn seconds(&self) -> Result<u64, Skip> {
        match self.number("a number of seconds")? {
            0 => Err(attention("must be at least 1 second")),
            n => Ok(n),
        }
    }

    fn ip(&self) -> Result<IpAddr, Skip> {
        self.number("an IP address")
    }
}

/// Why a line was not converted; `attention` when the result behaves differently from coturn.
struct Skip {
    attention: bool,
    reason: String,
}

fn attention(reason: impl Into<String>) -> Skip {
    Skip {
        attention: true,
        reason: reason.into(),
    }
}

fn note(reason: impl Into<String>) -> Skip {
    Skip {
        attention: false,
        reason: reason.into(),
    }
}

/// One entry of [`Conversion::skipped`]; `line` is `None` for what the file lacks.
struct Skipped {
    line: Option<usize>,
    option: String,
    skip: Skip,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        write!(f, "{}: {}", self.option, self.skip.reason)
    }
}

/// A value and the line it came from.
struct At<T> {
    line: usize,
    value: T,
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
    users: Vec<At<(String, String)>>,
    secrets: Vec<At<String>>,
    rest_separator: Option<At<char>>,
    nonce_lifetime: Option<At<u64>>,
    allowed: Vec<Peers>,
    denied: Vec<Peers>,
    allow_loopback: bool,
    no_multicast: bool,
    max_lifetime: Option<At<u64>>,
    channel_lifetime: Option<At<u64>>,
    permission_lifetime: Option<At<u64>>,
    user_quota: Option<At<usize>>,
    total_quota: Option<At<usize>>,
    workers: Option<At<usize>>,
    skipped: Vec<Skipped>,
}

type Handler = fn(&mut Importer, &Line<'_>) -> Result<(), Skip>;

/// coturn options that become rturn settings.
const OPTIONS: &[(&str, Handler)] = &[
    ("listening-port", |c, l| {
        once(&mut c.skipped, &mut c.port, l, l.number("a port number")?)
    }),
    ("tls-listening-port", |c, l| {
        once(&mut c.skipped, &mut c.tls_port, l, l.number("a port number")?)
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
        once(&mut c.skipped, &mut c.min_port, l, l.number("a port number")?)
    }),
    ("max-port", |c, l| {
        once(&mut c.skipped, &mut c.max_port, l, l.number("a port number")?)
    }),
    ("realm", |c, l| {
        once(&mut c.skipped, &mut c.realm, l, l.text()?.to_owned())
    }),
    ("lt-cred-mech", |c, l| set_flag(&mut c.lt_cred_mech, l)),
    ("use-auth-secret", |c, l| set_flag(&mut c.use_auth_secret, l)),
    ("static-auth-secret", |c, l| {
        let value = l.text()?.to_owned();
        c.secrets.push(At {
            line: l.number,
            value,
        });
        Ok(())
    }),
    ("user", Importer::user),
    ("rest-api-separator", |c, l| {
        let first = l.text()?.chars().next().unwrap_or(':');
        once(&mut c.skipped, &mut c.rest_separator, l, first)
    }),
    ("stale-nonce", Importer::stale_nonce),
    ("stun-only", |c, l| set_flag(&mut c.stun_only, l)),
    ("allowed-peer-ip", |c, l| peers(&mut c.allowed, l)),
    ("denied-peer-ip", |c, l| peers(&mut c.denied, l)),
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
    ("allocation-default-address-family", |_, l| match l.text()? {
        "ipv4" => Err(note("already so: rturn relays over IPv4 unless the client asks")),
        _ => Err(attention(ADDRESS_FAMILY)),
    }),
];

/// coturn options rturn has nothing for.
struct Unsupported {
    names: &'static [&'static str],
    /// A flag switched off by its value is coturn's default, and needs no note.
    flag: bool,
    attention: bool,
    why: &'static str,
}

const fn flags(names: &'static [&'static str], attention: bool, why: &'static str) -> Unsupported {
    Unsupported {
        names,
        flag: true,
        attention,
        why,
    }
}

const fn values(names: &'static [&'static str], attention: bool, why: &'static str) -> Unsupported {
    Unsupported {
        names,
        flag: false,
        attention,
        why,
    }
}

const NOTE: bool = false;
const ATTENTION: bool = true;
const LOGGING: &str = "rturn logs to stderr (journald under systemd); use -v/-q for more or less";
const CLI: &str = "rturn has no telnet CLI";
const WEB_ADMIN: &str = "rturn has no web admin interface";
const PROMETHEUS: &str = "/metrics is not served by this version yet";
const SYSTEMD: &str = "use systemd for this (see systemd/rturn.service)";
const TLS_TUNING: &str = "rturn's TLS (rustls, TLS 1.2 and 1.3) chooses its own ciphers and key exchange";
const RFC5780: &str = "rturn does not implement RFC 5780 NAT behaviour discovery";
const DATABASE: &str = "rturn has no database backends: move the users to [auth.users] or use \
                        TURN REST secrets ([auth] static-auth-secret)";
const NO_DATABASE: &str = "rturn has no database backends, so there is nothing to read";
const ADDRESS_FAMILY: &str = "rturn relays over IPv4 unless the client asks for IPv6 \
                              (RFC 6156), like coturn's default";

const UNSUPPORTED: &[Unsupported] = &[
    flags(
        &["verbose", "Verbose", "syslog", "simple-log", "no-stdout-log"],
        NOTE,
        LOGGING,
    ),
    flags(&["new-log-timestamp", "log-binding"], NOTE, LOGGING),
    values(
        &["log-file", "syslog-facility", "new-log-timestamp-format"],
        NOTE,
        LOGGING,
    ),
    flags(&["no-cli"], NOTE, CLI),
    values(
        &["cli-ip", "cli-port", "cli-password", "cli-max-output-sessions"],
        NOTE,
        CLI,
    ),
    flags(&["web-admin", "web-admin-listen-on-workers"], NOTE, WEB_ADMIN),
    values(&["web-admin-ip", "web-admin-port"], NOTE, WEB_ADMIN),
    flags(&["prometheus", "prometheus-username-labels"], ATTENTION, PROMETHEUS),
    values(&["prometheus-port", "prometheus-address"], ATTENTION, PROMETHEUS),
    flags(&["daemon"], NOTE, SYSTEMD),
    values(&["pidfile", "proc-user", "proc-group"], NOTE, SYSTEMD),
    flags(&["dh566", "dh1066"], NOTE, TLS_TUNING),
    values(&["dh-file", "cipher-list", "ec-curve-name"], NOTE, TLS_TUNING),
    flags(
        &["no-tlsv1", "no-tlsv1_1", "no-sslv2", "no-sslv3"],
        NOTE,
        "already so: rturn speaks TLS 1.2 and 1.3 only",
    ),
    flags(
        &["no-tlsv1_2"],
        ATTENTION,
        "rturn still accepts TLS 1.2 (it speaks TLS 1.2 and 1.3)",
    ),
    values(&["CA-file"], ATTENTION, "rturn does not verify client certificates"),
    values(
        &["pkey-pwd"],
        ATTENTION,
        "rturn reads unencrypted keys only: decrypt it (openssl pkey -in KEY -out PLAIN)",
    ),
    flags(&["raw-public-keys"], ATTENTION, "rturn uses X.509 certificates only"),
    flags(
        &["fingerprint"],
        NOTE,
        "rturn adds FINGERPRINT to a response when the request has one",
    ),
    flags(
        &["no-software-attribute"],
        NOTE,
        "already the default: rturn sends no SOFTWARE attribute",
    ),
    flags(&["software-attribute"], NOTE, "rturn sends no SOFTWARE attribute"),
    flags(
        &["no-loopback-peers"],
        NOTE,
        "already the default: rturn refuses loopback peers unless allow-loopback-peers",
    ),
    flags(&["mobility"], ATTENTION, "rturn does not implement TURN mobility (RFC 8016)"),
    flags(
        &["secure-stun"],
        ATTENTION,
        "rturn answers STUN Binding requests without credentials",
    ),
    flags(&["no-stun"], ATTENTION, "rturn always answers STUN Binding requests"),
    flags(
        &["no-auth"],
        ATTENTION,
        "rturn has no anonymous TURN: allocations need credentials ([auth.users] or \
         static-auth-secret); without any, rturn serves STUN only",
    ),
    flags(&["keep-address-family"], ATTENTION, ADDRESS_FAMILY),
    flags(
        &["check-origin-consistency"],
        NOTE,
        "rturn does not check the ORIGIN attribute",
    ),
    flags(
        &["oauth"],
        ATTENTION,
        "rturn has no OAuth third-party authorization (RFC 7635)",
    ),
    values(
        &["server-name"],
        NOTE,
        "only used by coturn's OAuth, which rturn does not implement",
    ),
    values(
        &["alternate-server", "tls-alternate-server"],
        ATTENTION,
        "rturn does not redirect clients to other servers (300 Try Alternate)",
    ),
    values(
        &["aux-server"],
        ATTENTION,
        "rturn has no auxiliary servers: list the addresses in [listen] instead",
    ),
    flags(
        &["udp-self-balance"],
        NOTE,
        "rturn has no auxiliary servers (it spreads UDP over cores with SO_REUSEPORT)",
    ),
    flags(
        &["rfc5780", "no-rfc5780", "response-origin-only-with-rfc5780"],
        NOTE,
        RFC5780,
    ),
    values(&["alt-listening-port", "alt-tls-listening-port"], NOTE, RFC5780),
    flags(
        &["no-stun-backward-compatibility"],
        NOTE,
        "already so: rturn answers RFC 5389 Binding requests only, with XOR-MAPPED-ADDRESS",
    ),
    values(
        &["listening-device", "relay-device"],
        ATTENTION,
        "rturn cannot bind to a network device: give its addresses in listening-ip/relay-ip",
    ),
    values(
        &["max-allocate-timeout"],
        NOTE,
        "rturn has no allocation-setup timeout",
    ),
    values(
        &["max-bps", "bps-capacity"],
        ATTENTION,
        "bandwidth limits are not supported yet",
    ),
    values(
        &[
            "userdb",
            "db",
            "psql-userdb",
            "sql-userdb",
            "mysql-userdb",
            "mongo-userdb",
            "redis-userdb",
        ],
        ATTENTION,
        DATABASE,
    ),
    values(&["redis-statsdb"], NOTE, "rturn keeps no statistics database"),
    values(&["secret-key-file"], NOTE, NO_DATABASE),
    flags(
        &["no-auth-pings", "no-dynamic-ip-list", "no-dynamic-realms"],
        NOTE,
        NO_DATABASE,
    ),
    flags(
        &["no-tcp-relay"],
        NOTE,
        "already so: rturn has no TCP relays (RFC 6062)",
    ),
    flags(
        &["no-udp-relay"],
        ATTENTION,
        "rturn relays over UDP only (no RFC 6062 TCP relays) and cannot turn that off",
    ),
    flags(
        &["server-relay"],
        ATTENTION,
        "not supported: it skips the permission checks (non-standard)",
    ),
    values(
        &["tcp-proxy-port"],
        ATTENTION,
        "rturn does not accept the PROXY protocol from load balancers",
    ),
    values(
        &["acme-redirect"],
        ATTENTION,
        "rturn does not redirect ACME challenges: use certbot's standalone or webroot mode",
    ),
    flags(
        &["respond-http-unsupported"],
        NOTE,
        "rturn closes connections that do not speak STUN/TURN",
    ),
    values(&["ne"], NOTE, "coturn's internal network-engine choice"),
    flags(&["version"], NOTE, "nothing to convert"),
];

impl Unsupported {
    fn skip(&self, line: &Line<'_>) -> Result<(), Skip> {
        if self.flag && !line.flag()? {
            return Ok(());
        }
        Err(Skip {
            attention: self.attention,
            reason: self.why.to_owned(),
        })
    }
}

/// A single-valued option: the last one counts, as in coturn; earlier ones are reported.
fn once<T>(
    skipped: &mut Vec<Skipped>,
    slot: &mut Option<At<T>>,
    line: &Line<'_>,
    value: T,
) -> Result<(), Skip> {
    let new = At {
        line: line.number,
        value,
    };
    if let Some(old) = slot.replace(new) {
        let why = format!("given again on line {}, which counts (as in coturn)", line.number);
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
        } else if let Some(u) = UNSUPPORTED.iter().find(|u| u.names.contains(&line.name)) {
            u.skip(line)
        } else {
            Err(attention("unknown coturn option"))
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
            return Err(note(format!("{ip} is already listed on line {}", first.line)));
        }
        self.listening_ips.push(At {
            line: line.number,
            value: ip,
        });
        Ok(())
    }

    fn relay_ip(&mut self, line: &Line<'_>) -> Result<(), Skip> {
        let ip = line.ip()?;
        if ip.is_unspecified() || ip.is_multicast() {
            return Err(attention(format!(
                "{ip} cannot be a relay address; give this machine's address"
            )));
        }
        if let Some(first) = self.relay_ips.iter().find(|r| r.value.is_ipv4() == ip.is_ipv4()) {
            return Err(attention(format!(
                "rturn relays from one IPv4 and one IPv6 address; {} (line {}) is kept",
                first.value, first.line
            )));
        }
        self.relay_ips.push(At {
            line: line.number,
            value: ip,
        });
        Ok(())
    }

    fn external_ip(&mut self, line: &Line<'_>) -> Result<(), Skip> {
        let text = line.text()?;
        let parse = |s: &str| {
            let s = s.trim();
            (s.parse::<IpAddr>()).map_err(|_| attention(format!("{s:?} is not an IP address")))
        };
        let (public, private) = match text.split_once('/') {
            Some((public, private)) => (parse(public)?, Some(parse(private)?)),
            None => (parse(text)?, None),
        };
        if public.is_unspecified() {
            return Err(attention("the public address cannot be unspecified"));
        }
        if private.is_some_and(|p| p.is_ipv4() != public.is_ipv4()) {
            return Err(attention("the public and private addresses differ in IP family"));
        }
        self.external_ips.push(At {
            line: line.number,
            value: (public, private),
        });
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
        self.users.push(At {
            line: line.number,
            value,
        });
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

    /// Settles what depends on several options and writes the TOML.
    fn finish(mut self) -> Conversion {
        let mut out = Toml::default();
        let mut differences = vec![
            "rturn refuses to relay to private, link-local (cloud metadata), carrier-grade NAT, \
             multicast and reserved peers, which coturn 4.6 relays to unless denied: allow what \
             your clients need with [relay] allowed-peer-ip"
                .to_owned(),
        ];
        let realm = self.realm();
        out.line(format!("realm = {}", quote(&realm.0)) + realm.1);
        if let Some(workers) = &self.workers {
            out.section("server");
            out.line(format!("workers = {}", workers.value));
        }
        let listen = self.listen(&mut out, &mut differences);
        let public = listen.iter().any(|a| !a.ip().is_loopback());
        let (users, secrets) = self.credentials(public);
        let needs_relay = !users.is_empty() || !secrets.is_empty() || !self.external_ips.is_empty();
        let relay_ips = self.relay_ips(needs_relay);
        let mut relay = Toml::default();
        self.relay(&mut relay, &relay_ips);
        out.table("relay", relay);
        self.auth(&mut out, &users, &secrets);

        let mut body = out.0;
        if let Err(e) = crate::Config::from_toml(&body) {
            // A bug in this converter; say so rather than hand out a file rturn refuses.
            let why = format!("the converted file does not pass rturn's checks ({e}); fix it by hand");
            self.skip(None, "rturn", attention(why));
            body.insert_str(0, "# CHANGE ME: see the first item under \"Needs attention\".\n");
        }
        self.skipped
            .sort_by_key(|s| (s.line.is_none(), s.line.unwrap_or(0)));
        let toml = header(&self.skipped, &differences) + &body;
        let skipped = self.skipped.iter().map(ToString::to_string).collect();
        Conversion { toml, skipped }
    }

    /// The realm, and a trailing comment when it is a placeholder.
    fn realm(&mut self) -> (String, &'static str) {
        let placeholder = (PLACEHOLDER_REALM.to_owned(), " # CHANGE ME");
        let why = format!(
            "rturn needs a realm; set to {PLACEHOLDER_REALM:?}: CHANGE ME to the realm your \
             clients use (coturn used the machine's domain name; 0x keys depend on it)"
        );
        match self.realm.take() {
            None => {
                self.skip(None, "realm", attention(format!("not set. {why}")));
                placeholder
            }
            Some(r) if r.value.trim().is_empty()
                || r.value.chars().count() >= 128
                || r.value.chars().any(char::is_control) =>
            {
                let why = format!("must be 1 to 127 printable characters. {why}");
                self.skip(Some(r.line), "realm", attention(why));
                placeholder
            }
            Some(r) => (r.value, ""),
        }
    }

    /// `[listen]` and `[tls]`; returns every listen address.
    fn listen(&mut self, out: &mut Toml, differences: &mut Vec<String>) -> Vec<SocketAddr> {
        let mut ips: Vec<IpAddr> = self.listening_ips.iter().map(|a| a.value).collect();
        let port = self.port.as_ref().map_or(DEFAULT_PORT, |p| p.value);
        if ips.is_empty() {
            ips.push(Ipv4Addr::UNSPECIFIED.into());
            differences.push(format!(
                "coturn listened on every IPv4 and IPv6 address; this file listens on 0.0.0.0 \
                 only: add \"[::]:{port}\" to listen.udp and listen.tcp to serve IPv6 too"
            ));
        }
        let addrs = |port: u16| -> Vec<SocketAddr> {
            ips.iter().map(|&ip| SocketAddr::new(ip, port)).collect()
        };
        let udp = if self.no_udp.is_some() { vec![] } else { addrs(port) };
        let mut tcp = if self.no_tcp.is_some() { vec![] } else { addrs(port) };
        if let (Some(_), Some(line)) = (self.no_udp, self.no_tcp) {
            let why = "rturn needs a UDP or TCP listener and no-udp is set too, so TCP stays";
            self.skip(Some(line), "no-tcp", attention(why));
            tcp = addrs(port);
        }
        let tls_port = self.tls_port.as_ref().map_or(COTURN_TLS_PORT, |p| p.value);
        let mut tls = Vec::new();
        let mut files = None;
        let no_tls = match (self.no_tls, &self.cert, &self.pkey) {
            (Some(_), _, _) => Some(note("no-tls is set, so there is no TLS listener")),
            (None, Some(_), Some(_)) if tcp.iter().any(|a| a.port() == tls_port) => {
                Some(attention(format!(
                    "TLS port {tls_port} is also the TCP port, so there is no TLS listener: \
                     rturn needs a port of its own for TLS"
                )))
            }
            (None, Some(cert), Some(key)) => {
                tls = addrs(tls_port);
                files = Some((cert.value.clone(), key.value.clone()));
                None
            }
            (None, Some(_), None) => Some(attention(
                "cert without pkey, so there is no TLS listener: add [tls] key by hand",
            )),
            (None, None, Some(_)) => Some(attention(
                "pkey without cert, so there is no TLS listener: add [tls] cert by hand",
            )),
            (None, None, None) => Some(attention(format!(
                "coturn serves TLS (and DTLS) on port {tls_port} when it finds a certificate \
                 (cert/pkey, or its default turn_server_cert.pem); none is named here, so \
                 there is no TLS listener: add [tls] cert/key and listen.tls for turns:"
            ))),
        };
        if let Some(skip) = no_tls {
            self.no_tls_listener(skip);
        }
        if self.cert.is_some() && self.pkey.is_some() && !self.no_dtls {
            let why = format!(
                "coturn also served TURN over DTLS on UDP port {tls_port} with this \
                 certificate; rturn has no DTLS, so those clients must use turns: (TLS over TCP)"
            );
            self.skip(None, "dtls", attention(why));
        }
        out.section("listen");
        out.line(format!("udp = {}", list(&udp)));
        out.line(format!("tcp = {}", list(&tcp)));
        if !tls.is_empty() {
            out.line(format!("tls = {}", list(&tls)));
        }
        if let Some((cert, key)) = files {
            out.section("tls");
            out.line(format!("cert = {}", quote(&cert)));
            out.line(format!("key = {}", quote(&key)));
        }
        [udp, tcp, tls].concat()
    }

    /// Reports why there is no TLS listener on the first TLS line, and the others as unused.
    fn no_tls_listener(&mut self, why: Skip) {
        let port = self.tls_port.as_ref().map(|p| p.line);
        let lines = [
            (port, "tls-listening-port"),
            (self.cert.as_ref().map(|c| c.line), "cert"),
            (self.pkey.as_ref().map(|k| k.line), "pkey"),
        ];
        let mut lines = lines.into_iter().filter_map(|(l, name)| Some((l?, name)));
        match lines.next() {
            Some((first, name)) => {
                self.skip(Some(first), name, why);
                for (line, name) in lines {
                    let unused = note(format!("unused: no TLS listener (see line {first})"));
                    self.skip(Some(line), name, unused);
                }
            }
            None if why.attention => self.skip(None, "tls", why),
            None => {}
        }
    }

    /// The users and secrets that count, reporting the others.
    fn credentials(&mut self, public: bool) -> (BTreeMap<String, At<String>>, Vec<String>) {
        let stun_only = "stun-only is set (TURN is off), so no credentials are carried over";
        let placeholder = "is rturn's placeholder, refused on a public address: choose another";
        let mut users: BTreeMap<String, At<String>> = BTreeMap::new();
        for At { line, value } in std::mem::take(&mut self.users) {
            let (name, password) = value;
            if self.stun_only.is_some() {
                self.skip(Some(line), "user", note(stun_only));
            } else if public && password == PLACEHOLDER_SECRET {
                self.skip(Some(line), "user", attention(format!("the password {placeholder}")));
            } else if let Some(old) = users.insert(name, At { line, value: password }) {
                let why = format!("the same user is given again on line {line}, which counts");
                self.skip(Some(old.line), "user", note(why));
            }
        }
        let mut secrets: Vec<At<String>> = Vec::new();
        for secret in std::mem::take(&mut self.secrets) {
            let line = Some(secret.line);
            if self.use_auth_secret.is_none() {
                let why = "coturn ignores it without use-auth-secret, so it is not carried over \
                           (copy it to [auth] static-auth-secret to accept TURN REST credentials)";
                self.skip(line, "static-auth-secret", attention(why));
            } else if self.stun_only.is_some() {
                self.skip(line, "static-auth-secret", note(stun_only));
            } else if public && secret.value == PLACEHOLDER_SECRET {
                let why = format!("the secret {placeholder}");
                self.skip(line, "static-auth-secret", attention(why));
            } else if let Some(first) = secrets.iter().find(|s| s.value == secret.value) {
                let why = format!("the same secret as line {}", first.line);
                self.skip(line, "static-auth-secret", note(why));
            } else {
                secrets.push(secret);
            }
        }
        if let Some(line) = self.use_auth_secret
            && secrets.is_empty()
            && self.stun_only.is_none()
        {
            let why = "no static-auth-secret: coturn read the secrets from its database; add \
                       them to [auth] static-auth-secret";
            self.skip(Some(line), "use-auth-secret", attention(why));
        }
        if let Some(line) = self.lt_cred_mech
            && users.is_empty()
            && self.stun_only.is_none()
        {
            let why = "no user= lines: coturn took the users from its database (userdb); add \
                       them to [auth.users]";
            self.skip(Some(line), "lt-cred-mech", attention(why));
        }
        (users, secrets.into_iter().map(|s| s.value).collect())
    }

    /// relay-ip as given, else (when needed) what coturn would have relayed from.
    fn relay_ips(&mut self, needed: bool) -> Vec<(IpAddr, &'static str)> {
        let given: Vec<_> = self.relay_ips.iter().map(|r| (r.value, "")).collect();
        if !given.is_empty() || !needed {
            return given;
        }
        let concrete = |ip: &IpAddr| !ip.is_unspecified() && !ip.is_multicast();
        let one_per_family = |ips: Vec<IpAddr>, why: &'static str| {
            let v4 = ips.iter().copied().find(IpAddr::is_ipv4);
            let v6 = ips.iter().copied().find(IpAddr::is_ipv6);
            [v4, v6].into_iter().flatten().map(|ip| (ip, why)).collect::<Vec<_>>()
        };
        let listening = self.listening_ips.iter().map(|a| a.value).filter(concrete);
        let relays = one_per_family(
            listening.collect(),
            "# From listening-ip: coturn relays from the listening addresses without relay-ip.",
        );
        if !relays.is_empty() {
            return relays;
        }
        let private = self.external_ips.iter().filter_map(|e| e.value.1);
        let relays = one_per_family(
            private.filter(concrete).collect(),
            "# From external-ip's private address.",
        );
        if !relays.is_empty() {
            return relays;
        }
        let why = format!(
            "not set, and no listening-ip or external-ip names an address of this machine; \
             set to {PLACEHOLDER_RELAY_IP}, which only relays on this machine: CHANGE ME"
        );
        self.skip(None, "relay-ip", attention(why));
        vec![(
            PLACEHOLDER_RELAY_IP,
            "# CHANGE ME: this machine's address (relay-ip was not set in the coturn file).",
        )]
    }

    /// `[relay]`.
    fn relay(&mut self, out: &mut Toml, relay_ips: &[(IpAddr, &str)]) {
        if let Some((_, comment)) = relay_ips.iter().find(|(_, c)| !c.is_empty()) {
            out.line(*comment);
        }
        if !relay_ips.is_empty() {
            out.line(format!("relay-ip = {}", list(relay_ips.iter().map(|r| r.0))));
        }
        let external = self.external(relay_ips);
        if !external.is_empty() {
            out.line(format!("external-ip = {}", list(&external)));
        }
        let min = self.min_port.as_ref().map_or(49152, |p| p.value);
        let max = self.max_port.as_ref().map_or(65535, |p| p.value);
        let ports = [("min-port", self.min_port.take()), ("max-port", self.max_port.take())];
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
        self.peer_lists(out);
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
        for (key, value) in [("user-quota", &self.user_quota), ("total-quota", &self.total_quota)] {
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
            let same_family = relay_ips.iter().map(|r| r.0).find(|r| r.is_ipv4() == public.is_ipv4());
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
        let (allowed, lines) = self.subtract(allowed, &holes, "allowed-peer-ip", &[
            "coturn refuses these peers before it reads allowed-peer-ip (loopback without \
             allow-loopback-peers, multicast with no-multicast-peers), so this had no effect",
            "without loopback/multicast, which coturn refuses regardless",
        ]);
        write_peer_list(out, "allowed-peer-ip", &lines);
        let denied = std::mem::take(&mut self.denied);
        let (_, lines) = self.subtract(denied, &allowed, "denied-peer-ip", &[
            "every address here is in allowed-peer-ip, which wins over denied-peer-ip in coturn",
            "minus allowed-peer-ip, which wins in coturn (rturn checks denied first)",
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

    /// `[auth]` and `[auth.users]`.
    fn auth(&mut self, out: &mut Toml, users: &BTreeMap<String, At<String>>, secrets: &[String]) {
        let mut auth = Toml::default();
        if let Some(line) = self.stun_only {
            auth.line(format!("# stun-only (line {line}): no credentials, so no TURN."));
        }
        if !secrets.is_empty() {
            auth.line(format!("static-auth-secret = {}", list(secrets)));
        }
        if let Some(separator) = &self.rest_separator {
            auth.line(format!("rest-separator = {}", quote(&separator.value.to_string())));
        }
        if let Some(nonce) = &self.nonce_lifetime {
            auth.line(format!("nonce-lifetime = {}", duration(nonce.value)));
        }
        out.table("auth", auth);
        let mut table = Toml::default();
        for (name, password) in users {
            table.line(format!("{} = {}", key(name), quote(&password.value)));
        }
        out.table("auth.users", table);
    }
}

fn write_peer_list(out: &mut Toml, key: &str, entries: &[(String, Vec<IpNet>)]) {
    if entries.is_empty() {
        return;
    }
    out.line(format!("{key} = ["));
    for (comment, nets) in entries {
        out.line(format!("    # {comment}"));
        for net in nets {
            out.line(format!("    \"{net}\","));
        }
    }
    out.line("]");
}

/// The comment at the top: where the file came from and what was not converted.
fn header(skipped: &[Skipped], differences: &[String]) -> String {
    let mut out = Toml::default();
    out.line("# rturn configuration converted from a coturn turnserver.conf by `rturn import-coturn`.");
    out.line("# Every rturn option is documented in conf/turnserver.toml of the rturn sources.");
    out.line("# Check this file with: rturn -c FILE --check-config");
    for (title, attention) in [
        ("Needs attention (behaves differently from coturn until you act):", true),
        ("Not converted, nothing to do:", false),
    ] {
        out.line("#");
        out.line(format!("# {title}"));
        let mut any = false;
        for s in skipped.iter().filter(|s| s.skip.attention == attention) {
            out.line(format!("#   {}", clean(&s.to_string())));
            any = true;
        }
        if !any {
            out.line("#   nothing");
        }
    }
    out.line("#");
    out.line("# Differs from coturn whatever the file says:");
    for difference in differences {
        out.line(format!("#   - {difference}"));
    }
    out.line("");
    out.0
}

/// TOML text being written.
#[derive(Default)]
struct Toml(String);

impl Toml {
    fn line(&mut self, text: impl AsRef<str>) {
        self.0.push_str(text.as_ref());
        self.0.push('\n');
    }

    fn section(&mut self, name: &str) {
        self.line(format!("\n[{name}]"));
    }

    /// A section with `body`, unless the body is empty.
    fn table(&mut self, name: &str, body: Toml) {
        if !body.0.is_empty() {
            self.section(name);
            self.0.push_str(&body.0);
        }
    }
}

/// A TOML basic string: every character kept, quotes, backslashes and controls escaped.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML key: bare when TOML allows it, else quoted.
fn key(s: &str) -> String {
    let bare = !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if bare { s.to_owned() } else { quote(s) }
}

/// A TOML list of strings.
fn list<T: ToString>(items: impl IntoIterator<Item = T>) -> String {
    let items: Vec<String> = items.into_iter().map(|i| quote(&i.to_string())).collect();
    format!("[{}]", items.join(", "))
}

fn duration(seconds: u64) -> String {
    quote(&humantime::format_duration(Duration::from_secs(seconds)).to_string())
}

/// File text fit for a comment line: control characters become `?`.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() && c != '\t' { '?' } else { c })
        .collect()
}

/// An inclusive range of addresses of one family, as integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    v6: bool,
    lo: u128,
    hi: u128,
}

const LOOPBACK: [Range; 2] = [
    Range { v6: false, lo: 0x7f00_0000, hi: 0x7fff_ffff },
    Range { v6: true, lo: 1, hi: 1 },
];
const MULTICAST: [Range; 2] = [
    Range { v6: false, lo: 0xe000_0000, hi: 0xefff_ffff },
    Range { v6: true, lo: 0xff << 120, hi: u128::MAX },
];

impl Range {
    /// coturn's `A` or `A-B`; a CIDR block is taken too.
    fn parse(text: &str) -> Result<Range, String> {
        let text = text.trim();
        if let Ok(net) = text.parse::<IpNet>() {
            let (lo, hi) = (bits(net.network()), bits(net.broadcast()));
            return Ok(Range { v6: net.addr().is_ipv6(), lo, hi });
        }
        let (a, b) = text.split_once('-').unwrap_or((text, text));
        let ip = |s: &str| {
            let s = s.trim();
            s.parse::<IpAddr>().map_err(|_| format!("{s:?} is not an IP address"))
        };
        let (a, b) = (ip(a)?, ip(b)?);
        if a.is_ipv4() != b.is_ipv4() {
            return Err("the two ends of the range differ in IP family".into());
        }
        let (lo, hi) = (bits(a), bits(b));
        if lo > hi {
            return Err(format!("the range ends ({b}) before it starts ({a})"));
        }
        Ok(Range { v6: a.is_ipv6(), lo, hi })
    }

    fn width(self) -> u32 {
        if self.v6 { 128 } else { 32 }
    }

    /// The fewest CIDR blocks covering exactly this range: from the bottom, each time the
    /// largest block that starts aligned here and does not pass the end.
    fn cidrs(self) -> Vec<IpNet> {
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
            match 1u128.checked_shl(size_bits).and_then(|size| lo.checked_add(size)) {
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
            left.push(Range { hi: hole.lo - 1, ..self });
        }
        if hole.hi < self.hi {
            left.push(Range { lo: hole.hi + 1, ..self });
        }
        left
    }
}

fn minus_all(ranges: Vec<Range>, holes: &[Range]) -> Vec<Range> {
    holes.iter().fold(ranges, |ranges, &hole| {
        ranges.into_iter().flat_map(|r| r.minus(hole)).collect()
    })
}

fn bits(ip: IpAddr) -> u128 {
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
