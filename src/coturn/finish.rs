//! The second step: what spans several options (listen addresses, relay-ip, external-ip,
//! which credentials count), written as TOML (`toml_text`) under a header that
//! lists what was not converted; `[relay]` is `relay.rs`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::line::{Skip, Skipped, attention, note};
use super::toml_text::{Toml, duration, key, list, quote};
use super::{At, Conversion, Importer, clean};
use crate::config::{DEFAULT_PORT, MIN_SECRET_LEN, PLACEHOLDER_SECRET};

/// coturn's TLS port, where rturn has no default.
const COTURN_TLS_PORT: u16 = 5349;
/// What rturn uses when the coturn file leaves something rturn requires unknown.
pub(super) const PLACEHOLDER_REALM: &str = "example.org";
pub(super) const PLACEHOLDER_RELAY_IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// The same on a public listener, where rturn refuses a loopback relay-ip: a documentation
/// address (RFC 5737) that `--check-config` refuses as "not an address of this machine".
pub(super) const PUBLIC_PLACEHOLDER_RELAY_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

impl Importer {
    /// Settles what depends on several options and writes the TOML.
    pub(super) fn finish(mut self) -> Conversion {
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
        let needs_relay = !users.is_empty()
            || !secrets.is_empty()
            || self.redis_userdb.is_some()
            || !self.external_ips.is_empty();
        let relay_ips = self.relay_ips(needs_relay, public);
        let mut relay = Toml::default();
        self.relay(&mut relay, &relay_ips);
        out.table("relay", relay);
        self.stun(&mut out);
        self.auth(&mut out, &users, &secrets);

        let mut body = out.0;
        if let Err(e) = crate::Config::from_toml(&body) {
            // A bug in this converter; say so rather than hand out a file rturn refuses.
            let why =
                format!("the converted file does not pass rturn's checks ({e}); fix it by hand");
            self.skip(None, "rturn", attention(why));
            body.insert_str(
                0,
                "# CHANGE ME: see the first item under \"Needs attention\".\n",
            );
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
            Some(r)
                if r.value.trim().is_empty()
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
        let udp = if self.no_udp.is_some() {
            vec![]
        } else {
            addrs(port)
        };
        let mut tcp = if self.no_tcp.is_some() {
            vec![]
        } else {
            addrs(port)
        };
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
                "coturn serves TLS (and, before 4.17, DTLS) on port {tls_port} when it finds a \
                 certificate (cert/pkey, or its default turn_server_cert.pem); none is named \
                 here, so there is no TLS listener: add [tls] cert/key and listen.tls for turns:"
            ))),
        };
        if let Some(skip) = no_tls {
            self.no_tls_listener(skip);
        }
        if self.cert.is_some() && self.pkey.is_some() && !self.no_dtls {
            let why = format!(
                "coturn before 4.17 also served TURN over DTLS on UDP port {tls_port} with \
                 this certificate (4.17 and later only with dtls); rturn has no DTLS, so those \
                 clients must use turns: (TLS over TCP)"
            );
            self.skip(None, "dtls", attention(why));
        }
        out.section("listen");
        out.line(format!("udp = {}", list(&udp)));
        out.line(format!("tcp = {}", list(&tcp)));
        if !tls.is_empty() {
            out.line(format!("tls = {}", list(&tls)));
        }
        let http = self.http(out, &[tcp.as_slice(), &tls].concat());
        if let Some((cert, key)) = files {
            out.section("tls");
            if self.unreadable_files() {
                out.line("# CHANGE ME: rturn's service cannot read /etc/letsencrypt (see above).");
            }
            out.line(format!("cert = {}", quote(&cert)));
            out.line(format!("key = {}", quote(&key)));
        }
        [udp, tcp, tls, http.into_iter().collect()].concat()
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
        let short = format!(
            "is shorter than {MIN_SECRET_LEN} characters, which rturn refuses on a public \
             address: choose a longer one"
        );
        let weak = |secret: &str, measured: bool| {
            if secret == PLACEHOLDER_SECRET {
                Some(placeholder.to_owned())
            } else if measured && secret.chars().count() < MIN_SECRET_LEN {
                Some(short.clone())
            } else {
                None
            }
        };
        // coturn's static-auth-secret switches use-auth-secret on, and with it coturn checks
        // TURN REST credentials only (get_user_key returns before the user= lines).
        let rest = self.use_auth_secret.is_some() || !self.secrets.is_empty();
        let mut users: BTreeMap<String, At<String>> = BTreeMap::new();
        for At { line, value } in std::mem::take(&mut self.users) {
            let (name, password) = value;
            if self.stun_only.is_some() {
                self.skip(Some(line), "user", note(stun_only));
            } else if let Some(why) =
                weak(&password, !password.starts_with("0x")).filter(|_| public)
            {
                self.skip(Some(line), "user", attention(format!("the password {why}")));
            } else if let Some(old) = users.insert(name, At::new(line, password)) {
                let why = format!("the same user is given again on line {line}, which counts");
                self.skip(Some(old.line), "user", note(why));
            }
        }
        let mut secrets: Vec<At<String>> = Vec::new();
        for secret in std::mem::take(&mut self.secrets) {
            let line = Some(secret.line);
            if self.stun_only.is_some() {
                self.skip(line, "static-auth-secret", note(stun_only));
            } else if let Some(why) = weak(&secret.value, true).filter(|_| public) {
                let why = format!("the secret {why}");
                self.skip(line, "static-auth-secret", attention(why));
            } else if let Some(first) = secrets.iter().find(|s| s.value == secret.value) {
                let why = format!("the same secret as line {}", first.line);
                self.skip(line, "static-auth-secret", note(why));
            } else {
                secrets.push(secret);
            }
        }
        if rest && !users.is_empty() {
            let lines: Vec<String> = users.values().map(|u| u.line.to_string()).collect();
            let why = format!(
                "with use-auth-secret or static-auth-secret coturn took TURN REST credentials \
                 only and refused these users (line {}); rturn accepts both: remove them from \
                 [auth.users] to refuse them here too",
                lines.join(", ")
            );
            self.skip(None, "user", attention(why));
        }
        // The flags are converted by what they switch on; report them when that is nothing.
        let database = "coturn read them from its database; add them to";
        let no_redis = self.redis_userdb.is_none();
        let flags = [
            (
                self.use_auth_secret,
                "use-auth-secret",
                secrets.is_empty() && no_redis,
            ),
            (
                self.lt_cred_mech,
                "lt-cred-mech",
                users.is_empty() && secrets.is_empty() && no_redis,
            ),
        ];
        for (line, option, nothing) in flags {
            if line.is_none() {
                continue;
            } else if self.stun_only.is_some() {
                self.skip(line, option, note(stun_only));
            } else if nothing && option == "use-auth-secret" {
                let why = format!("no static-auth-secret: {database} [auth] static-auth-secret");
                self.skip(line, option, attention(why));
            } else if nothing {
                self.skip(
                    line,
                    option,
                    attention(format!("no user= lines: {database} [auth.users]")),
                );
            }
        }
        (users, secrets.into_iter().map(|s| s.value).collect())
    }

    /// relay-ip as given, else (when needed) what coturn would have relayed from.
    /// On a `public` listener, loopback addresses are left out (rturn refuses them there).
    fn relay_ips(&mut self, needed: bool, public: bool) -> Vec<(IpAddr, &'static str)> {
        let mut given: Vec<_> = self.relay_ips.iter().map(|r| (r.value, "")).collect();
        if public {
            let loopback: Vec<(usize, IpAddr)> = (self.relay_ips.iter())
                .filter(|r| r.value.is_loopback())
                .map(|r| (r.line, r.value))
                .collect();
            for (line, ip) in loopback {
                let why = format!(
                    "{ip} is loopback, which rturn refuses beside a public listener (clients \
                     would get relay addresses nobody else can reach): give this machine's own \
                     address"
                );
                self.skip(Some(line), "relay-ip", attention(why));
            }
            given.retain(|(ip, _)| !ip.is_loopback());
        }
        if !given.is_empty() || !needed {
            return given;
        }
        let unusable =
            |ip: &IpAddr| ip.is_unspecified() || ip.is_multicast() || (public && ip.is_loopback());
        let concrete = |ip: &IpAddr| !unusable(ip);
        let one_per_family = |ips: Vec<IpAddr>, why: &'static str| {
            let v4 = ips.iter().copied().find(IpAddr::is_ipv4);
            let v6 = ips.iter().copied().find(IpAddr::is_ipv6);
            [v4, v6]
                .into_iter()
                .flatten()
                .map(|ip| (ip, why))
                .collect::<Vec<_>>()
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
        let (placeholder, what) = if public {
            (
                PUBLIC_PLACEHOLDER_RELAY_IP,
                "a documentation address rturn refuses to start with",
            )
        } else {
            (PLACEHOLDER_RELAY_IP, "which only relays on this machine")
        };
        let why = format!(
            "not set, and no listening-ip or external-ip names an address of this machine; \
             set to {placeholder}, {what}: CHANGE ME"
        );
        self.skip(None, "relay-ip", attention(why));
        vec![(
            placeholder,
            "# CHANGE ME: this machine's address (relay-ip was not set in the coturn file).",
        )]
    }

    /// `[auth]` and `[auth.users]`.
    fn auth(&mut self, out: &mut Toml, users: &BTreeMap<String, At<String>>, secrets: &[String]) {
        let mut auth = Toml::default();
        if !secrets.is_empty() {
            auth.line(format!("static-auth-secret = {}", list(secrets)));
        }
        if let Some(separator) = &self.rest_separator {
            auth.line(format!(
                "rest-separator = {}",
                quote(&separator.value.to_string())
            ));
        }
        if let Some(nonce) = &self.nonce_lifetime {
            auth.line(format!("nonce-lifetime = {}", duration(nonce.value)));
        }
        if let Some(url) = &self.redis_userdb {
            auth.line(format!("redis = {}", quote(&url.value)));
        }
        out.table("auth", auth);
        let mut table = Toml::default();
        for (name, password) in users {
            table.line(format!("{} = {}", key(name), quote(&password.value)));
        }
        out.table("auth.users", table);
    }
}

/// The comment at the top: where the file came from and what was not converted.
fn header(skipped: &[Skipped], differences: &[String]) -> String {
    let mut out = Toml::default();
    out.line(
        "# rturn configuration converted from a coturn turnserver.conf by `rturn import-coturn`.",
    );
    out.line("# Every rturn option is documented in conf/turnserver.toml of the rturn sources.");
    out.line("# Check this file with: rturn -c FILE --check-config");
    for (title, attention) in [
        (
            "Needs attention (behaves differently from coturn until you act):",
            true,
        ),
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
