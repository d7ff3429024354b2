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
const CLI: &str = "rturn has no telnet CLI; its admin API ([admin] token) lists and kicks \
                   sessions and drains";
const WEB_ADMIN: &str = "rturn has no web admin pages; its admin API ([admin] token) lists and \
                         kicks sessions and drains";
const USERNAME_LABELS: &str =
    "rturn's /metrics (on listen.http) has no per-user labels, only aggregate counters";
const PROMETHEUS_PATH: &str = "rturn serves Prometheus text at /metrics on listen.http (and \
                               listen.https); point the scraper there";
const PROMETHEUS_TLS: &str = "rturn serves /metrics over HTTPS on listen.https, with the [tls] \
                              certificate; this file serves it over HTTP on listen.http";
const SYSTEMD: &str = "use systemd for this (see systemd/rturn.service)";
const TLS_TUNING: &str = "rturn's TLS (rustls) chooses its own ciphers and key exchange";
const OLD_TLS: &str = "already so: rturn speaks TLS 1.2 and 1.3 only";
const TLS_1_2: &str = "rturn still accepts TLS 1.2 (it speaks TLS 1.2 and 1.3)";
const CA_FILE: &str = "with it, coturn demands of every TLS client a client certificate signed \
                       by this CA; rturn never asks for one (TURN credentials still apply). If \
                       the file holds your certificate's intermediate chain, put the chain in \
                       [tls] cert instead (fullchain.pem)";
const PKEY_PWD: &str =
    "rturn reads unencrypted keys only: decrypt it (openssl pkey -in KEY -out PLAIN)";
const RAW_KEYS: &str = "rturn uses X.509 certificates only";
const FINGERPRINT: &str = "rturn adds FINGERPRINT to a response when the request has one";
const SOFTWARE: &str = "already the default: rturn sends no SOFTWARE attribute";
const SEND_SOFTWARE: &str = "rturn sends no SOFTWARE attribute";
const LOOPBACK: &str =
    "already the default: rturn refuses loopback peers unless allow-loopback-peers";
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
const ALTERNATE: &str = "rturn has one alternate server for every transport: [relay] \
                         alternate-server (from alternate-server), named in a 300 only while \
                         rturn is full or draining";
const AUX: &str = "rturn has no auxiliary servers: list the addresses in [listen] instead";
const SELF_BALANCE: &str =
    "rturn has no auxiliary servers (it spreads UDP over cores with SO_REUSEPORT)";
const RFC5780_TLS: &str = "rturn serves RFC 5780 over UDP only ([stun] other-address)";
const BACKWARD: &str =
    "already so: rturn answers RFC 5389 Binding requests only, with XOR-MAPPED-ADDRESS";
const DEVICE: &str =
    "rturn cannot bind to a network device: give its addresses in listening-ip/relay-ip";
const ALLOCATE_TIMEOUT: &str = "rturn has no allocation-setup timeout";
const DATABASE: &str = "rturn has no database backends: move the users to [auth.users] or \
                        use TURN REST secrets ([auth] static-auth-secret)";
const STATS: &str = "rturn keeps no statistics database";
const NO_DATABASE: &str = "rturn has no database backends, so there is nothing to read";
const UDP_RELAY: &str = "rturn always offers UDP relays and cannot turn them off (TCP ones, \
                         RFC 6062, only with [relay] tcp-allocations = false)";
const SERVER_RELAY: &str = "not supported: it skips the permission checks (non-standard)";
const PROXY: &str = "rturn reads the PROXY protocol (v1 and v2) on its own TCP, TLS and HTTP \
                     listeners rather than on an extra port, and only from the networks in \
                     [listen] proxy-protocol-from (coturn trusts any sender on this port): \
                     list your load balancers' addresses there";
const ACME: &str =
    "rturn does not redirect ACME challenges: use certbot's standalone or webroot mode";
const HTTP: &str = "rturn closes connections that do not speak STUN/TURN";
const ENGINE: &str = "coturn's internal network-engine choice";
const NOTHING: &str = "nothing to convert";
const DTLS: &str = "rturn has no DTLS: those clients must use turns: (TLS over TCP)";
const CPUS: &str = "rturn counts the cores itself; [server] workers sets how many workers run";
const DRAIN: &str = "rturn's drain (SIGUSR1) ends when the last allocation ends, or after \
                     [server] drain-timeout";
const INVALID: &str = "already so: rturn drops what is not STUN/TURN without an answer and \
                       counts it in /metrics (rturn_packets_total, outcome malformed)";
const UDP_TUNING: &str = "rturn batches UDP with recvmmsg/sendmmsg on its own";
const MULTIPLEX: &str = "rturn gives each allocation its own relay port (RFC 8656)";
const STATELESS_NONCE: &str = "already so: rturn's nonces are stateless, keyed by [auth] \
                               nonce-secret (random at start when unset)";
const NONCE_SECRET: &str = "not carried over: to share nonces between servers, set the same \
                            [auth] nonce-secret (at least 16 characters) on each";
const RATELIMIT: &str = "rturn limits unauthenticated requests per source address \
                         ([server] unauthenticated-rate and unauthenticated-burst), 401s included";
const REASON: &str = "rturn's error responses carry the code without a reason phrase";
const RFC3489: &str = "rturn answers RFC 5389 Binding requests only (no classic STUN)";
const MAPPED: &str = "rturn sends XOR-MAPPED-ADDRESS only, without the deprecated MAPPED-ADDRESS";
const OLD_CHANNELS: &str = "already so: rturn takes channel numbers 0x4000-0x7FFF";
const OLD_TLS_ON: &str = "rturn speaks TLS 1.2 and 1.3 only, never TLS 1.0 or 1.1";

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
    ("prometheus-username-labels", FlagAttention, USERNAME_LABELS),
    ("prometheus-path", ValueAttention, PROMETHEUS_PATH),
    ("prometheus-tls", FlagAttention, PROMETHEUS_TLS),
    ("prometheus-cert", ValueAttention, PROMETHEUS_TLS),
    ("prometheus-key", ValueAttention, PROMETHEUS_TLS),
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
    ("software-attribute", FlagAttention, SEND_SOFTWARE),
    ("no-loopback-peers", Flag, LOOPBACK),
    ("secure-stun", FlagAttention, SECURE_STUN),
    ("no-stun", FlagAttention, NO_STUN),
    ("no-auth", FlagAttention, NO_AUTH),
    ("keep-address-family", FlagAttention, ADDRESS_FAMILY),
    ("check-origin-consistency", Flag, ORIGIN),
    ("oauth", FlagAttention, OAUTH),
    ("server-name", Value, SERVER_NAME),
    ("tls-alternate-server", ValueAttention, ALTERNATE),
    ("udp-alternate-server", ValueAttention, ALTERNATE),
    ("tcp-alternate-server", ValueAttention, ALTERNATE),
    ("aux-server", ValueAttention, AUX),
    ("udp-self-balance", Flag, SELF_BALANCE),
    ("alt-tls-listening-port", Value, RFC5780_TLS),
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
    ("redis-statsdb", Value, STATS),
    ("secret-key-file", Value, NO_DATABASE),
    ("no-auth-pings", Flag, NO_DATABASE),
    ("no-dynamic-ip-list", Flag, NO_DATABASE),
    ("no-dynamic-realms", Flag, NO_DATABASE),
    ("no-udp-relay", FlagAttention, UDP_RELAY),
    ("server-relay", FlagAttention, SERVER_RELAY),
    ("tcp-proxy-port", ValueAttention, PROXY),
    ("acme-redirect", ValueAttention, ACME),
    ("respond-http-unsupported", Flag, HTTP),
    ("ne", Value, ENGINE),
    ("version", Flag, NOTHING),
    ("cli", Flag, CLI),
    ("log-min-level", Value, LOGGING),
    ("dtls", FlagAttention, DTLS),
    ("tlsv1", FlagAttention, OLD_TLS_ON),
    ("tlsv1_1", FlagAttention, OLD_TLS_ON),
    ("cpus", Value, CPUS),
    ("drain-min-allocations", ValueAttention, DRAIN),
    ("drop-invalid-packets", Flag, INVALID),
    ("drop-invalid-packets-log", Flag, LOGGING),
    ("sock-buf-size", Value, UDP_TUNING),
    ("udp-gso", Flag, UDP_TUNING),
    ("udp-recvmmsg", Flag, UDP_TUNING),
    ("udp-recvmmsg-log", Flag, UDP_TUNING),
    ("udp-sendmmsg-log", Flag, UDP_TUNING),
    ("multiplex-peer", Flag, MULTIPLEX),
    ("multiplex-peer-port", Value, MULTIPLEX),
    ("multiplex-peer-max-peers", Value, MULTIPLEX),
    ("stateless-nonce", Flag, STATELESS_NONCE),
    ("stateless-nonce-secret", ValueAttention, NONCE_SECRET),
    ("unauthorized-ratelimit", Flag, RATELIMIT),
    ("unauthorized-ratelimit-rps", Value, RATELIMIT),
    ("include-reason-string", Flag, REASON),
    ("rfc3489-compatibility", FlagAttention, RFC3489),
    ("stun-backward-compatibility", FlagAttention, MAPPED),
    ("rfc5766-channel-numbers", Flag, OLD_CHANNELS),
];
