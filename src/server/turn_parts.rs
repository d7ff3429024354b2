//! The pieces of the TURN relay every shard shares, built from the config at start and again
//! on reload: the manager's settings, credentials, peer rules and quotas.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use crate::auth::{Auth, AuthSettings};
use crate::config::Config;
use crate::turn::own_relays::{LiveRelays, OwnRelays};
use crate::turn::peer_rules::PeerRules;
use crate::turn::quota::Quotas;
use crate::turn::{RelayAddress, TurnConfig};

/// The pieces of the TURN relay every shard shares, built from the config.
pub(super) struct TurnParts {
    pub(super) config: TurnConfig,
    pub(super) auth: Arc<Auth>,
    /// What `auth` was built from (the file's credentials, before Redis's are merged in).
    pub(super) auth_settings: AuthSettings,
    pub(super) rules: Arc<PeerRules>,
    pub(super) quotas: Arc<Quotas>,
}

/// `user-quota`, `total-quota` and `max-allocations-per-ip`.
pub(super) fn quota_limits(relay: &crate::config::RelayConfig) -> crate::turn::quota::Limits {
    crate::turn::quota::Limits {
        user: relay.user_quota,
        total: relay.total_quota,
        per_client: relay.max_allocations_per_ip,
    }
}

/// The relay settings, credentials, peer rules and quotas from `config`; `own` are the
/// listen addresses peers may not be (our own ports); `live` tells which relay ports are
/// held now, so clients of this server may relay to each other (at `relay-ip` or
/// `external-ip`).
pub(super) fn turn_parts(
    config: &Config,
    own: Vec<SocketAddr>,
    nonce_secret: &[u8],
    live: Arc<dyn LiveRelays>,
) -> TurnParts {
    let relay = &config.relay;
    // validate() already checked external-ip; an error here cannot happen.
    let external = config.external_ips().unwrap_or_default();
    let relay_address = |v4: bool| {
        relay
            .relay_ip
            .iter()
            .find(|ip| ip.is_ipv4() == v4)
            .map(|&bind| RelayAddress {
                bind,
                advertise: external
                    .iter()
                    .find(|(b, _)| *b == bind)
                    .map_or(bind, |(_, public)| *public),
            })
    };
    let turn = TurnConfig {
        relay_v4: relay_address(true),
        relay_v6: relay_address(false),
        default_lifetime: relay.allocation_lifetime,
        max_lifetime: relay.max_allocation_lifetime,
        permission_lifetime: relay.permission_lifetime,
        channel_lifetime: relay.channel_lifetime,
        max_permissions: relay.max_permissions_per_allocation,
        max_channels: relay.max_channels_per_allocation,
        max_bps: relay.max_bps,
        // Each shard enforces its share, so no counter is shared across cores per packet.
        bps_capacity: relay.bps_capacity.div_ceil(config.workers().get() as u64),
        alternate_server: relay.alternate_server,
        mobility: relay.mobility,
        tcp_allocations: relay.tcp_allocations,
        ..TurnConfig::default()
    };
    // Each relay address as bound and as advertised: a peer at either with a live port is
    // one of ours.
    let own_relays = [turn.relay_v4, turn.relay_v6]
        .into_iter()
        .flatten()
        .map(|r| (r.bind, r.advertise))
        .collect();
    let auth_settings = AuthSettings {
        realm: config.realm.clone(),
        users: config.auth.users.clone(),
        secrets: config.auth.static_auth_secret.clone(),
        rest_separator: config.auth.rest_separator,
        nonce_secret: Some(nonce_secret.to_vec()),
        nonce_lifetime: config.auth.nonce_lifetime,
    };
    let auth = Auth::new(auth_settings.clone());
    // A wildcard listener means "this port on each of our addresses": spell those out, so
    // the rule refuses our own port and not that port on every host of the internet.
    let ours: Vec<IpAddr> = [
        IpAddr::from([127, 0, 0, 1]),
        IpAddr::from(Ipv6Addr::LOCALHOST),
    ]
    .into_iter()
    .chain(relay.relay_ip.iter().copied())
    .chain(external.iter().map(|(_, public)| *public))
    .collect();
    let own = own
        .into_iter()
        .flat_map(|listener| {
            let expanded: Vec<SocketAddr> = if listener.ip().is_unspecified() {
                ours.iter()
                    .filter(|ip| ip.is_ipv4() == listener.is_ipv4())
                    .map(|ip| SocketAddr::new(*ip, listener.port()))
                    .collect()
            } else {
                vec![listener]
            };
            expanded
        })
        .collect();
    let rules = PeerRules::new(
        relay.allow_loopback_peers,
        relay.allowed_peer_ip.clone(),
        relay.denied_peer_ip.clone(),
        own,
    )
    .with_own_relays(OwnRelays::new(own_relays, live));
    TurnParts {
        config: turn,
        auth: Arc::new(auth),
        auth_settings,
        rules: Arc::new(rules),
        quotas: Arc::new(Quotas::new(quota_limits(relay))),
    }
}
