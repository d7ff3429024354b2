//! The admin view of a manager's allocations: list them, delete them by ID or user.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::FiveTuple;
use super::manager::Manager;

/// One allocation as the admin API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Session {
    /// ID for `DELETE /admin/sessions/<id>`.
    pub id: String,
    /// The user it authenticated as.
    pub user: String,
    /// The client transport.
    pub transport: super::Transport,
    /// The client's address.
    pub client: SocketAddr,
    /// Relayed addresses (as bound).
    pub relays: Vec<SocketAddr>,
    /// Seconds since it was created.
    pub age_secs: u64,
    /// Packets and bytes client → peers.
    pub to_peer: (u64, u64),
    /// Packets and bytes peers → client.
    pub to_client: (u64, u64),
    /// Peer IPs with a permission.
    pub permissions: Vec<IpAddr>,
    /// Channels bound.
    pub channels: usize,
}

impl Manager {
    /// Every allocation, for the admin API.
    pub fn sessions(&self, now: Instant) -> Vec<Session> {
        (self.allocations.iter())
            .map(|(tuple, a)| {
                // A TCP allocation's bytes are counted where its pairs are spliced.
                let [tcp_to_peer, tcp_to_client] =
                    (a.tcp.as_ref()).map_or([(0, 0); 2], |l| l.relayed());
                let add = |(p, b): (u64, u64), (q, c): (u64, u64)| (p + q, b + c);
                Session {
                    id: format!("{:016x}", a.id),
                    user: a.username.clone(),
                    transport: tuple.transport,
                    client: tuple.client,
                    relays: a.relays.iter().map(|r| r.addr).collect(),
                    age_secs: now.saturating_duration_since(a.created).as_secs(),
                    to_peer: add(a.to_peer, tcp_to_peer),
                    to_client: add(a.to_client, tcp_to_client),
                    permissions: a.permissions.keys().copied().collect(),
                    channels: a.channels.len(),
                }
            })
            .collect()
    }

    /// Deletes the allocations whose admin ID is `id` or whose user is `user`; returns how
    /// many went. A TCP client's connection stays open but has no allocation any more.
    pub fn kick(&mut self, id: Option<&str>, user: Option<&str>) -> usize {
        let doomed: Vec<FiveTuple> = (self.allocations.iter())
            .filter(|(_, a)| {
                id.is_some_and(|id| format!("{:016x}", a.id) == id)
                    || user.is_some_and(|u| a.username == u)
            })
            .map(|(t, _)| *t)
            .collect();
        for tuple in &doomed {
            tracing::info!(client = %tuple.client, "allocation deleted by an operator");
            self.delete_allocation(*tuple);
        }
        doomed.len()
    }
}
