//! The coturn options rturn has no counterpart for, each with the reason it is skipped.

use super::line::{Line, Skip};

/// How a skipped option is reported.
#[derive(Clone, Copy)]
pub(super) enum Treat {
    /// A flag; switched off by its value it is coturn's default and needs no report.
    Flag,
    /// A flag that, switched on, makes coturn behave in a way rturn does not.
    FlagAttention,
    /// An option with a value that changes nothing rturn does.
    Value,
    /// An option with a value whose effect is lost.
    ValueAttention,
}

use Treat::{Flag, FlagAttention, Value, ValueAttention};

/// Skips `line` if it names one of [`UNSUPPORTED`]; `None` when it does not.
pub(super) fn skip(line: &Line<'_>) -> Option<Result<(), Skip>> {
    let (_, treat, why) = UNSUPPORTED.iter().find(|(name, ..)| *name == line.name)?;
    if matches!(treat, Flag | FlagAttention) {
        match line.flag() {
            Ok(true) => {}
            Ok(false) => return Some(Ok(())),
            Err(skip) => return Some(Err(skip)),
        }
    }
    Some(Err(Skip {
        attention: matches!(treat, FlagAttention | ValueAttention),
        reason: (*why).to_owned(),
    }))
}

const LOGGING: &str = "rturn logs to stderr (journald under systemd); use -v/-q for more or less";
const CLI: &str = "rturn has no telnet CLI";
const WEB_ADMIN: &str = "rturn has no web admin interface";
const PROMETHEUS: &str = "/metrics is not served by this version yet";
const SYSTEMD: &str = "use systemd for this (see systemd/rturn.service)";
const TLS_TUNING: &str = "rturn's TLS (rustls) chooses its own ciphers and key exchange";
const OLD_TLS: &str = "already so: rturn speaks TLS 1.2 and 1.3 only";
const TLS_1_2: &str = "rturn still accepts TLS 1.2 (it speaks TLS 1.2 and 1.3)";
const CA_FILE: &str = "rturn does not verify client certificates";
const PKEY_PWD: &str =
    "rturn reads unencrypted keys only: decrypt it (openssl pkey -in KEY -out PLAIN)";
const RAW_KEYS: &str = "rturn uses X.509 certificates only";
const FINGERPRINT: &str = "rturn adds FINGERPRINT to a response when the request has one";
const SOFTWARE: &str = "already the default: rturn sends no SOFTWARE attribute";
const LOOPBACK: &str =
    "already the default: rturn refuses loopback peers unless allow-loopback-peers";
const MOBILITY: &str = "rturn does not implement TURN mobility (RFC 8016)";
const SECURE_STUN: &str = "rturn answers STUN Binding requests without credentials";
const NO_STUN: &str = "rturn always answers STUN Binding requests";
const NO_AUTH: &str = "rturn has no anonymous TURN: allocations need credentials \
                       ([auth.users] or static-auth-secret); without any, it serves STUN only";
/// Also used by `allocation-default-address-family` other than `ipv4`.
pub(super) const ADDRESS_FAMILY: &str =
    "rturn relays over IPv4 unless the client asks for IPv6 (RFC 6156), like coturn's default";
const ORIGIN: &str = "rturn does not check the ORIGIN attribute";
const OAUTH: &str = "rturn has no OAuth third-party authorization (RFC 7635)";
const SERVER_NAME: &str = "only used by coturn's OAuth, which rturn does not implement";
const ALTERNATE: &str = "rturn does not redirect clients to other servers (300 Try Alternate)";
const AUX: &str = "rturn has no auxiliary servers: list the addresses in [listen] instead";
const SELF_BALANCE: &str =
    "rturn has no auxiliary servers (it spreads UDP over cores with SO_REUSEPORT)";
const RFC5780: &str = "rturn does not implement RFC 5780 NAT behaviour discovery";
const BACKWARD: &str =
    "already so: rturn answers RFC 5389 Binding requests only, with XOR-MAPPED-ADDRESS";
const DEVICE: &str =
    "rturn cannot bind to a network device: give its addresses in listening-ip/relay-ip";
const ALLOCATE_TIMEOUT: &str = "rturn has no allocation-setup timeout";
const DATABASE: &str = "rturn has no database backends: move the users to [auth.users] or \
                        use TURN REST secrets ([auth] static-auth-secret)";
const STATS: &str = "rturn keeps no statistics database";
const NO_DATABASE: &str = "rturn has no database backends, so there is nothing to read";
const TCP_RELAY: &str = "already so: rturn has no TCP relays (RFC 6062)";
const UDP_RELAY: &str =
    "rturn relays over UDP only (no RFC 6062 TCP relays) and cannot turn that off";
const SERVER_RELAY: &str = "not supported: it skips the permission checks (non-standard)";
const PROXY: &str = "rturn does not accept the PROXY protocol from load balancers";
const ACME: &str =
    "rturn does not redirect ACME challenges: use certbot's standalone or webroot mode";
const HTTP: &str = "rturn closes connections that do not speak STUN/TURN";
const ENGINE: &str = "coturn's internal network-engine choice";
const NOTHING: &str = "nothing to convert";

/// Option name, how it is reported, why.
pub(super) const UNSUPPORTED: &[(&str, Treat, &str)] = &[
    ("verbose", Flag, LOGGING),
    ("Verbose", Flag, LOGGING),
    ("syslog", Flag, LOGGING),
    ("simple-log", Flag, LOGGING),
    ("no-stdout-log", Flag, LOGGING),
    ("new-log-timestamp", Flag, LOGGING),
    ("log-binding", Flag, LOGGING),
    ("log-file", Value, LOGGING),
    ("syslog-facility", Value, LOGGING),
    ("new-log-timestamp-format", Value, LOGGING),
    ("no-cli", Flag, CLI),
    ("cli-ip", Value, CLI),
    ("cli-port", Value, CLI),
    ("cli-password", Value, CLI),
    ("cli-max-output-sessions", Value, CLI),
    ("web-admin", Flag, WEB_ADMIN),
    ("web-admin-listen-on-workers", Flag, WEB_ADMIN),
    ("web-admin-ip", Value, WEB_ADMIN),
    ("web-admin-port", Value, WEB_ADMIN),
    ("prometheus", FlagAttention, PROMETHEUS),
    ("prometheus-username-labels", FlagAttention, PROMETHEUS),
    ("prometheus-port", ValueAttention, PROMETHEUS),
    ("prometheus-address", ValueAttention, PROMETHEUS),
    ("daemon", Flag, SYSTEMD),
    ("pidfile", Value, SYSTEMD),
    ("proc-user", Value, SYSTEMD),
    ("proc-group", Value, SYSTEMD),
    ("dh566", Flag, TLS_TUNING),
    ("dh1066", Flag, TLS_TUNING),
    ("dh-file", Value, TLS_TUNING),
    ("cipher-list", Value, TLS_TUNING),
    ("ec-curve-name", Value, TLS_TUNING),
    ("no-tlsv1", Flag, OLD_TLS),
    ("no-tlsv1_1", Flag, OLD_TLS),
    ("no-sslv2", Flag, OLD_TLS),
    ("no-sslv3", Flag, OLD_TLS),
    ("no-tlsv1_2", FlagAttention, TLS_1_2),
    ("CA-file", ValueAttention, CA_FILE),
    ("pkey-pwd", ValueAttention, PKEY_PWD),
    ("raw-public-keys", FlagAttention, RAW_KEYS),
    ("fingerprint", Flag, FINGERPRINT),
    ("no-software-attribute", Flag, SOFTWARE),
    ("software-attribute", Flag, SOFTWARE),
    ("no-loopback-peers", Flag, LOOPBACK),
    ("mobility", FlagAttention, MOBILITY),
    ("secure-stun", FlagAttention, SECURE_STUN),
    ("no-stun", FlagAttention, NO_STUN),
    ("no-auth", FlagAttention, NO_AUTH),
    ("keep-address-family", FlagAttention, ADDRESS_FAMILY),
    ("check-origin-consistency", Flag, ORIGIN),
    ("oauth", FlagAttention, OAUTH),
    ("server-name", Value, SERVER_NAME),
    ("alternate-server", ValueAttention, ALTERNATE),
    ("tls-alternate-server", ValueAttention, ALTERNATE),
    ("aux-server", ValueAttention, AUX),
    ("udp-self-balance", Flag, SELF_BALANCE),
    ("rfc5780", Flag, RFC5780),
    ("no-rfc5780", Flag, RFC5780),
    ("response-origin-only-with-rfc5780", Flag, RFC5780),
    ("alt-listening-port", Value, RFC5780),
    ("alt-tls-listening-port", Value, RFC5780),
    ("no-stun-backward-compatibility", Flag, BACKWARD),
    ("listening-device", ValueAttention, DEVICE),
    ("relay-device", ValueAttention, DEVICE),
    ("max-allocate-timeout", Value, ALLOCATE_TIMEOUT),
    ("userdb", ValueAttention, DATABASE),
    ("db", ValueAttention, DATABASE),
    ("psql-userdb", ValueAttention, DATABASE),
    ("sql-userdb", ValueAttention, DATABASE),
    ("mysql-userdb", ValueAttention, DATABASE),
    ("mongo-userdb", ValueAttention, DATABASE),
    ("redis-userdb", ValueAttention, DATABASE),
    ("redis-statsdb", Value, STATS),
    ("secret-key-file", Value, NO_DATABASE),
    ("no-auth-pings", Flag, NO_DATABASE),
    ("no-dynamic-ip-list", Flag, NO_DATABASE),
    ("no-dynamic-realms", Flag, NO_DATABASE),
    ("no-tcp-relay", Flag, TCP_RELAY),
    ("no-udp-relay", FlagAttention, UDP_RELAY),
    ("server-relay", FlagAttention, SERVER_RELAY),
    ("tcp-proxy-port", ValueAttention, PROXY),
    ("acme-redirect", ValueAttention, ACME),
    ("respond-http-unsupported", Flag, HTTP),
    ("ne", Value, ENGINE),
    ("version", Flag, NOTHING),
];
