//! SIGHUP: applying a new configuration to the running server. Everything that can change in
//! place does (credentials, peer rules, quotas, lifetimes, signaling limits, origins, the
//! admin token, the `[ice]` list, the certificate); what only a restart applies is compared
//! with the configuration the server started with, named in the log line and in `/healthz`,
//! and keeps its running value.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use super::auth_store::AuthStore;
use super::ports::Pools;
use super::turn_parts::turn_parts;
use super::workers::Workers;
use super::{systemd, tls};
use crate::auth::Auth;
use crate::config::Config;
use crate::http::{IceServers, Site, origin};
use crate::signal::hub::Hub;
use crate::turn::own_relays::LiveRelays;
use crate::turn::quota::Quotas;

/// The `[ice]` list in force: a reload builds a new one from the new settings and the
/// addresses bound at start.
pub(super) struct IceHolder(RwLock<Arc<IceServers>>);

impl IceHolder {
    /// Holds `ice` until the next reload.
    pub(super) fn new(ice: IceServers) -> Self {
        Self(RwLock::new(Arc::new(ice)))
    }

    /// The list in force.
    pub(super) fn load(&self) -> Arc<IceServers> {
        Arc::clone(&self.0.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn replace(&self, config: &Config, auth: Arc<Auth>) {
        let ice = self.load().reloaded(config, auth);
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(ice);
    }
}

/// The HTTP side a reload reaches into.
pub(super) struct HttpLive {
    pub(super) hub: Arc<Hub>,
    pub(super) ice: Arc<IceHolder>,
    pub(super) site: Arc<Site>,
    /// The bound `listen.http` and `listen.https` addresses, for this server's own origins.
    pub(super) http: Option<SocketAddr>,
    pub(super) https: Option<SocketAddr>,
}

/// What a reload reaches into.
pub(super) struct Live<'a> {
    pub(super) workers: &'a Arc<Workers>,
    pub(super) quotas: &'a Arc<Quotas>,
    /// The credentials in force: the file's, merged with what `[auth] redis` held last.
    pub(super) auth: &'a Arc<AuthStore>,
    /// The relay port pools, which the new peer rules ask which relay ports are live.
    pub(super) pools: &'a Arc<Pools>,
    pub(super) http: Option<&'a HttpLive>,
    pub(super) certs: Option<&'a Arc<tls::CertStore>>,
    pub(super) admin: &'a AdminToken,
    /// The configuration the server started with (what restart-only keys still run on).
    pub(super) started: &'a Config,
}

/// The config keys whose change only a restart applies, compared as written in the file.
pub(super) fn restart_required(started: &Config, new: &Config) -> Vec<&'static str> {
    fn differ<T: std::fmt::Debug>(a: &T, b: &T) -> bool {
        format!("{a:?}") != format!("{b:?}")
    }
    // Each key with the field it is read into.
    macro_rules! keys {
        ($($key:literal => $($field:ident).+,)*) => {
            [$(($key, differ(&started.$($field).+, &new.$($field).+)),)*]
        };
    }
    let keys = keys![
        "listen.udp" => listen.udp,
        "listen.tcp" => listen.tcp,
        "listen.tls" => listen.tls,
        "listen.http" => listen.http,
        "listen.https" => listen.https,
        "listen.proxy-protocol-from" => listen.proxy_protocol_from,
        "listen.proxy-protocol-listeners" => listen.proxy_protocol_listeners,
        "relay.relay-ip" => relay.relay_ip,
        "relay.external-ip" => relay.external_ip,
        "relay.min-port" => relay.min_port,
        "relay.max-port" => relay.max_port,
        "relay.offload" => relay.offload,
        "server.workers" => server.workers,
        "server.tcp-idle-timeout" => server.tcp_idle_timeout,
        "server.max-tcp-connections" => server.max_tcp_connections,
        "server.max-tcp-connections-per-ip" => server.max_tcp_connections_per_ip,
        "server.tcp-allocation-timeout" => server.tcp_allocation_timeout,
        "server.tls-handshake-timeout" => server.tls_handshake_timeout,
        "server.max-tcp-queued-bytes" => server.max_tcp_queued_bytes,
        "server.http-header-timeout" => server.http_header_timeout,
        "server.http-idle-timeout" => server.http_idle_timeout,
        "server.max-http-connections" => server.max_http_connections,
        "server.max-http-connections-per-ip" => server.max_http_connections_per_ip,
        "stun.only" => stun.only,
        "stun.other-address" => stun.other_address,
        "admin.listen" => admin.listen,
        "auth.redis" => auth.redis,
        "auth.redis-refresh" => auth.redis_refresh,
        "cluster.redis" => cluster.redis,
        "cluster.node-id" => cluster.node_id,
        "cluster.presence-ttl" => cluster.presence_ttl,
    ];
    // A changed certificate path reloads in place; only adding or removing [tls] restarts.
    let tls = ("tls", started.tls.is_some() != new.tls.is_some());
    (keys.into_iter().chain([tls]))
        .filter(|(_, changed)| *changed)
        .map(|(key, _)| key)
        .collect()
}

/// Applies `new` to the running server (see the module docs).
pub(super) async fn reload(
    new: &Config,
    live: &Live<'_>,
    own: &[SocketAddr],
    nonce_secret: &[u8],
    draining: bool,
) {
    systemd::reloading();
    let restart = restart_required(live.started, new);
    // Restart-only keys keep their running values in everything built below: the relay
    // addresses feed the peer rules, the ICE host and this server's own origins.
    let mut effective = new.clone();
    effective.relay.relay_ip = live.started.relay.relay_ip.clone();
    effective.relay.external_ip = live.started.relay.external_ip.clone();
    let new = &effective;
    let nonce_secret = match &new.auth.nonce_secret {
        Some(secret) => secret.as_bytes().to_vec(),
        None => nonce_secret.to_vec(),
    };
    let live_relays: Arc<dyn LiveRelays> = Arc::clone(live.pools) as Arc<dyn LiveRelays>;
    let mut parts = turn_parts(new, own.to_vec(), &nonce_secret, live_relays);
    // Split among the shards that run, which a changed server.workers does not change.
    let shards = live.workers.count() as u64;
    parts.config.bps_capacity = new.relay.bps_capacity.div_ceil(shards);
    let rate = (
        new.server.unauthenticated_rate,
        new.server.unauthenticated_burst,
    );
    let draining = draining.then_some(new.relay.alternate_server);
    // The file's new users and secrets with Redis's last read (not awaiting its next one).
    let _turn = live.auth.applying().await;
    let auth = live.auth.set_file(parts.auth_settings.clone());
    (live.workers)
        .reload(&parts.config, &auth, &parts.rules, draining, rate)
        .await;
    live.quotas
        .set_limits(super::turn_parts::quota_limits(&new.relay));
    live.admin.set(new.admin.token.as_deref());
    if let Some(http) = live.http {
        http.hub.set_config(new.signal.clone());
        http.ice.replace(new, Arc::clone(&parts.auth));
        http.site
            .set_own_origins(origin::own_origins(new, http.http, http.https));
        http.site
            .set_restart_required(restart.iter().map(|k| (*k).to_owned()).collect());
    }
    if let (Some(store), Some(tls_config)) = (live.certs, &new.tls) {
        match tls::load(tls_config) {
            Ok(cert) => store.replace(cert),
            Err(e) => tracing::error!("certificate not reloaded, the old one stays: {e}"),
        }
    }
    if restart.is_empty() {
        tracing::info!("configuration reloaded");
    } else {
        tracing::warn!(
            "configuration reloaded; restart required for {} (changed since start, running \
             on the old values until then)",
            restart.join(", ")
        );
    }
    systemd::ready();
}

/// The admin token in force: `None` while the API is off.
#[derive(Debug, Default)]
pub(crate) struct AdminToken(RwLock<Option<Arc<str>>>);

impl AdminToken {
    /// The token from `[admin] token`.
    pub(crate) fn new(token: Option<&str>) -> Self {
        Self(RwLock::new(token.map(Arc::from)))
    }

    /// Replaces the token (a reload); `None` turns the API off.
    pub(crate) fn set(&self, token: Option<&str>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = token.map(Arc::from);
    }

    pub(crate) fn get(&self) -> Option<Arc<str>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::from_toml(&format!("realm = \"r\"\n{text}")).expect("config")
    }

    #[test]
    fn only_restart_only_keys_are_named() {
        let base = "[listen]\nudp = [\"127.0.0.1:3478\"]\n";
        let started = config(base);
        let same = config(&format!(
            "{base}[ice]\npublic-host = \"x.example\"\ncredential-ttl = \"5m\"\n\
             [admin]\ntoken = \"0123456789abcdef\"\n[signal]\nmax-peers-per-room = 3\n"
        ));
        assert_eq!(restart_required(&started, &same), Vec::<&str>::new());
        let moved = config(
            "[listen]\nudp = [\"127.0.0.1:3479\"]\nhttp = \"127.0.0.1:8080\"\n\
             [server]\nworkers = 3\n",
        );
        assert_eq!(
            restart_required(&started, &moved),
            ["listen.udp", "listen.http", "server.workers"]
        );
    }

    #[test]
    fn the_stun_keys_take_a_restart() {
        let base = "[listen]\nudp = [\"127.0.0.1:3478\"]\n";
        let started = config(base);
        let changed = config(&format!(
            "{base}[stun]\nonly = true\nother-address = \"127.0.0.2:3479\"\n"
        ));
        assert_eq!(
            restart_required(&started, &changed),
            ["stun.only", "stun.other-address"]
        );
    }

    #[test]
    fn the_auth_redis_keys_take_a_restart() {
        let base =
            "[listen]\nudp = [\"127.0.0.1:3478\"]\ntcp = []\n[relay]\nrelay-ip = \"127.0.0.1\"\n";
        let started = config(base);
        let changed = config(&format!(
            "{base}[auth]\nredis = \"redis://127.0.0.1:6379\"\nredis-refresh = \"5s\"\n"
        ));
        assert_eq!(
            restart_required(&started, &changed),
            ["auth.redis", "auth.redis-refresh"]
        );
    }
}
