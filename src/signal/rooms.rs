//! The room registry: who is connected, in which namespace and room, and what each event
//! means for everyone else. Pure: every call returns the messages to deliver, as
//! `(recipient, text)` pairs; `ws.rs` does the delivering.
//!
//! With a cluster, a room also holds *remote* peers: peers connected to other nodes, known
//! from the cluster's events ([`Rooms::remote_joined`], [`Rooms::remote_left`]) and its
//! periodic membership lists ([`Rooms::sync_room`]). Only rooms with a local peer are kept;
//! announcements go to local peers only, and a relay to a remote peer names its node.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::protocol::{self, ErrorCode, PeerId, SignalError};

/// Messages to send: recipient and JSON text.
pub type Deliveries = Vec<(PeerId, String)>;

/// A room is named within a namespace (`/ws/<namespace>`); rooms of different namespaces
/// never meet.
pub type RoomKey = (String, String);

/// The cluster's name for one running node (see `cluster::wire`).
pub type NodeId = String;

/// Where a relayed message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relayed {
    /// The recipient.
    pub to: PeerId,
    /// `None`: a local peer; otherwise the node it is connected to.
    pub node: Option<NodeId>,
    /// The message as the recipient gets it.
    pub text: String,
}

#[derive(Debug)]
struct Peer {
    namespace: String,
    room: Option<String>,
}

/// Every connected peer and every non-empty room.
#[derive(Debug)]
pub struct Rooms {
    max_peers: usize,
    rooms: HashMap<RoomKey, Vec<PeerId>>,
    peers: HashMap<PeerId, Peer>,
    /// Peers on other nodes, in rooms that have a local peer: room and node.
    remote: HashMap<PeerId, (RoomKey, NodeId)>,
}

impl Rooms {
    /// An empty registry whose rooms hold at most `max_peers` peers.
    pub fn new(max_peers: usize) -> Self {
        Self {
            max_peers,
            rooms: HashMap::new(),
            peers: HashMap::new(),
            remote: HashMap::new(),
        }
    }

    /// Changes the room size limit (config reload).
    pub fn set_max_peers(&mut self, max_peers: usize) {
        self.max_peers = max_peers;
    }

    /// A new connection in `namespace` (`""` for plain `/ws`).
    pub fn connect(&mut self, id: PeerId, namespace: &str) {
        self.peers.insert(
            id,
            Peer {
                namespace: namespace.to_owned(),
                room: None,
            },
        );
    }

    /// `id` joins `room`, leaving its current room first. The joiner gets `peers` (with
    /// `ice_servers`), the room's others `new_peer`, the old room's others `remove_peer`.
    pub fn join(
        &mut self,
        id: &str,
        room: &str,
        ice_servers: &Value,
    ) -> Result<Deliveries, SignalError> {
        self.join_inner(id, room, ice_servers, true)
    }

    /// `id` joins `room` as the cluster admitted it (the room-wide limit was checked there):
    /// `remote` is the room's membership on other nodes, which replaces what this node knew.
    pub fn join_admitted(
        &mut self,
        id: &str,
        room: &str,
        ice_servers: &Value,
        remote: &[(PeerId, NodeId)],
    ) -> Result<Deliveries, SignalError> {
        let Some(namespace) = self.peers.get(id).map(|p| p.namespace.clone()) else {
            return Err(SignalError::new(ErrorCode::NotJoined, "not connected"));
        };
        let key = (namespace, room.to_owned());
        let mut out = self.leave(id);
        // The room exists from now on for the joiner about to enter it.
        self.rooms.entry(key.clone()).or_default();
        out.extend(self.sync_room(&key, remote, true));
        out.extend(self.join_inner(id, room, ice_servers, false)?);
        Ok(out)
    }

    fn join_inner(
        &mut self,
        id: &str,
        room: &str,
        ice_servers: &Value,
        check_limit: bool,
    ) -> Result<Deliveries, SignalError> {
        let Some(peer) = self.peers.get(id) else {
            return Err(SignalError::new(ErrorCode::NotJoined, "not connected"));
        };
        let key = (peer.namespace.clone(), room.to_owned());
        let mut out = Deliveries::new();
        if peer.room.as_deref() == Some(room) {
            // Joining the room one is in: just tell the joiner who is there again.
            let others = self.others(&key, id);
            out.push((
                id.to_owned(),
                protocol::peers(id, room, &others, ice_servers),
            ));
            return Ok(out);
        }
        let members = self.rooms.get(&key).map_or(0, Vec::len);
        if check_limit && members >= self.max_peers {
            return Err(SignalError::new(
                ErrorCode::RoomFull,
                format!("room {room:?} has {members} peers, the most it holds"),
            ));
        }
        out.extend(self.leave(id));
        let others = self.others(&key, id);
        for other in self.local_members(&key, id) {
            out.push((other, protocol::new_peer(id)));
        }
        out.push((
            id.to_owned(),
            protocol::peers(id, room, &others, ice_servers),
        ));
        self.rooms.entry(key).or_default().push(id.to_owned());
        if let Some(peer) = self.peers.get_mut(id) {
            peer.room = Some(room.to_owned());
        }
        Ok(out)
    }

    /// `id` leaves its room; the others get `remove_peer`. An empty room is deleted.
    pub fn leave(&mut self, id: &str) -> Deliveries {
        let Some(peer) = self.peers.get_mut(id) else {
            return Deliveries::new();
        };
        let Some(room) = peer.room.take() else {
            return Deliveries::new();
        };
        let key = (peer.namespace.clone(), room);
        let out = self.remove_member(&key, id);
        self.forget_if_no_local(&key);
        out
    }

    /// Takes `id` out of the room's member list and announces it to the local members.
    fn remove_member(&mut self, key: &RoomKey, id: &str) -> Deliveries {
        let Some(members) = self.rooms.get_mut(key) else {
            return Deliveries::new();
        };
        members.retain(|m| m != id);
        if members.is_empty() {
            self.rooms.remove(key);
            return Deliveries::new();
        }
        self.local_members(key, id)
            .into_iter()
            .map(|other| (other, protocol::remove_peer(id)))
            .collect()
    }

    /// A room whose last local peer left is not tracked any more: its remote peers go.
    fn forget_if_no_local(&mut self, key: &RoomKey) {
        let has_local = self
            .rooms
            .get(key)
            .is_some_and(|m| m.iter().any(|p| self.peers.contains_key(p)));
        if has_local {
            return;
        }
        if let Some(members) = self.rooms.remove(key) {
            for peer in members {
                self.remote.remove(&peer);
            }
        }
    }

    /// A peer on `node` joined `key` (a cluster event). Announced with `new_peer` when the
    /// room has local peers and did not know it yet; a peer that moved rooms leaves the old.
    pub fn remote_joined(&mut self, node: &str, key: &RoomKey, id: &str) -> Deliveries {
        if self.peers.contains_key(id) {
            return Deliveries::new();
        }
        let mut out = Deliveries::new();
        if let Some((known, known_node)) = self.remote.get_mut(id) {
            if known == key {
                // The same peer through a node's new session: route to the new one.
                node.clone_into(known_node);
                return out;
            }
            out.extend(self.remote_left(id));
        }
        if !self.rooms.contains_key(key) {
            return out;
        }
        for other in self.local_members(key, id) {
            out.push((other, protocol::new_peer(id)));
        }
        if let Some(members) = self.rooms.get_mut(key) {
            members.push(id.to_owned());
        }
        self.remote
            .insert(id.to_owned(), (key.clone(), node.to_owned()));
        out
    }

    /// A remote peer left its room or its node died: `remove_peer` to the local members.
    pub fn remote_left(&mut self, id: &str) -> Deliveries {
        let Some((key, _)) = self.remote.remove(id) else {
            return Deliveries::new();
        };
        let out = self.remove_member(&key, id);
        self.forget_if_no_local(&key);
        out
    }

    /// Makes the remote members of `key` exactly `remote` (the cluster's list of live peers
    /// on other nodes), announcing the difference. `removals: false` only adds, for the grace
    /// period after a reconnect while other nodes re-register their peers.
    pub fn sync_room(
        &mut self,
        key: &RoomKey,
        remote: &[(PeerId, NodeId)],
        removals: bool,
    ) -> Deliveries {
        let mut out = Deliveries::new();
        if removals {
            let gone: Vec<PeerId> = self
                .rooms
                .get(key)
                .map(|m| {
                    m.iter()
                        .filter(|p| self.remote.contains_key(*p))
                        .filter(|p| !remote.iter().any(|(r, _)| r == *p))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            for id in gone {
                self.remote.remove(&id);
                out.extend(self.remove_member(key, &id));
            }
        }
        for (id, node) in remote {
            out.extend(self.remote_joined(node, key, id));
        }
        out
    }

    /// A message from another node for local peer `to` in `key`: its text, if `to` is still
    /// there (the same-room rule holds across nodes too).
    pub fn deliver_remote(
        &self,
        key: &RoomKey,
        to: &str,
        text: String,
    ) -> Option<(PeerId, String)> {
        let peer = self.peers.get(to)?;
        (peer.namespace == key.0 && peer.room.as_deref() == Some(key.1.as_str()))
            .then(|| (to.to_owned(), text))
    }

    /// Every room with a local peer, with its local peers (for re-registering after a
    /// reconnect and for the periodic membership sync).
    pub fn local_rooms(&self) -> Vec<(RoomKey, Vec<PeerId>)> {
        self.rooms
            .iter()
            .map(|(key, members)| {
                let local = members
                    .iter()
                    .filter(|p| self.peers.contains_key(*p))
                    .cloned()
                    .collect();
                (key.clone(), local)
            })
            .collect()
    }

    /// The namespace and room of local peer `id`.
    pub fn membership(&self, id: &str) -> Option<RoomKey> {
        let peer = self.peers.get(id)?;
        Some((peer.namespace.clone(), peer.room.clone()?))
    }

    /// The connection of `id` ended (closed, or failed the heartbeat).
    pub fn disconnect(&mut self, id: &str) -> Deliveries {
        let out = self.leave(id);
        self.peers.remove(id);
        out
    }

    /// An `offer`/`answer`/`candidate` from `from` to `to`: delivered only within a room.
    pub fn relay(
        &self,
        from: &str,
        to: &str,
        body: Map<String, Value>,
    ) -> Result<Relayed, SignalError> {
        let sender = self
            .peers
            .get(from)
            .and_then(|p| p.room.as_ref().map(|r| (p, r)));
        let Some((sender, room)) = sender else {
            return Err(SignalError::new(ErrorCode::NotJoined, "join a room first"));
        };
        let local = self.peers.get(to).is_some_and(|p| {
            p.namespace == sender.namespace && p.room.as_ref() == Some(room) && to != from
        });
        let node = match self.remote.get(to) {
            _ if local => None,
            Some(((ns, r), node)) if *ns == sender.namespace && r == room => Some(node.clone()),
            _ => {
                return Err(SignalError::new(
                    ErrorCode::UnknownPeer,
                    format!("no peer {to:?} in room {room:?}"),
                ));
            }
        };
        Ok(Relayed {
            to: to.to_owned(),
            node,
            text: protocol::relayed(body, from),
        })
    }

    /// The room `id` is in, if any.
    pub fn room_of(&self, id: &str) -> Option<&str> {
        self.peers.get(id)?.room.as_deref()
    }

    /// Connected peers (local ones).
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Non-empty rooms.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// The room's local members other than `id`: who gets announcements.
    fn local_members(&self, key: &RoomKey, id: &str) -> Vec<PeerId> {
        self.rooms
            .get(key)
            .map(|m| {
                m.iter()
                    .filter(|p| *p != id && self.peers.contains_key(*p))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    fn others(&self, key: &RoomKey, id: &str) -> Vec<PeerId> {
        self.rooms
            .get(key)
            .map(|m| m.iter().filter(|p| *p != id).cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn setup(max: usize, peers: &[(&str, &str)]) -> Rooms {
        let mut r = Rooms::new(max);
        for (id, ns) in peers {
            r.connect((*id).to_owned(), ns);
        }
        r
    }

    fn kinds(out: &Deliveries) -> Vec<(String, String)> {
        out.iter()
            .map(|(to, text)| {
                let v: Value = serde_json::from_str(text).unwrap();
                (to.clone(), v["type"].as_str().unwrap().to_owned())
            })
            .collect()
    }

    fn body(to: &str) -> Map<String, Value> {
        json!({"type": "offer", "to": to, "sdp": "v=0"})
            .as_object()
            .unwrap()
            .clone()
    }

    #[test]
    fn join_announces_and_lists() {
        let mut r = setup(16, &[("a", ""), ("b", ""), ("c", "")]);
        let ice = json!([{"urls": ["stun:h:1"]}]);
        let out = r.join("a", "demo", &ice).unwrap();
        assert_eq!(kinds(&out), [("a".into(), "peers".into())]);
        let out = r.join("b", "demo", &ice).unwrap();
        assert_eq!(
            kinds(&out),
            [
                ("a".into(), "new_peer".into()),
                ("b".into(), "peers".into())
            ]
        );
        let reply: Value = serde_json::from_str(&out[1].1).unwrap();
        assert_eq!(reply["peers"], json!(["a"]));
        assert_eq!(reply["you"], "b");
        assert_eq!(reply["iceServers"], ice);
        r.join("c", "other", &ice).unwrap();
        assert_eq!(r.room_count(), 2);
    }

    #[test]
    fn rooms_are_limited() {
        let mut r = setup(2, &[("a", ""), ("b", ""), ("c", "")]);
        r.join("a", "x", &json!([])).unwrap();
        r.join("b", "x", &json!([])).unwrap();
        assert_eq!(
            r.join("c", "x", &json!([])).unwrap_err().code,
            ErrorCode::RoomFull
        );
        assert_eq!(r.room_of("c"), None);
        // Rejoining one's own room never counts against the limit.
        r.join("b", "x", &json!([])).unwrap();
    }

    #[test]
    fn relay_only_within_a_room() {
        let mut r = setup(16, &[("a", ""), ("b", ""), ("c", "")]);
        assert_eq!(
            r.relay("a", "b", body("b")).unwrap_err().code,
            ErrorCode::NotJoined
        );
        r.join("a", "x", &json!([])).unwrap();
        r.join("b", "x", &json!([])).unwrap();
        r.join("c", "y", &json!([])).unwrap();
        let relayed = r.relay("a", "b", body("b")).unwrap();
        assert_eq!((relayed.to.as_str(), relayed.node), ("b", None));
        let v: Value = serde_json::from_str(&relayed.text).unwrap();
        assert_eq!(
            (v["from"].as_str(), v["sdp"].as_str()),
            (Some("a"), Some("v=0"))
        );
        assert_eq!(
            r.relay("a", "c", body("c")).unwrap_err().code,
            ErrorCode::UnknownPeer
        );
        assert_eq!(
            r.relay("a", "zz", body("zz")).unwrap_err().code,
            ErrorCode::UnknownPeer
        );
        assert_eq!(
            r.relay("a", "a", body("a")).unwrap_err().code,
            ErrorCode::UnknownPeer
        );
    }

    #[test]
    fn namespaces_never_meet() {
        let mut r = setup(16, &[("a", "ns1"), ("b", "ns2")]);
        r.join("a", "x", &json!([])).unwrap();
        let out = r.join("b", "x", &json!([])).unwrap();
        assert_eq!(kinds(&out), [("b".into(), "peers".into())]);
        assert_eq!(
            r.relay("a", "b", body("b")).unwrap_err().code,
            ErrorCode::UnknownPeer
        );
        assert_eq!(r.room_count(), 2);
    }

    #[test]
    fn leaving_announces_and_empty_rooms_go() {
        let mut r = setup(16, &[("a", ""), ("b", "")]);
        r.join("a", "x", &json!([])).unwrap();
        r.join("b", "x", &json!([])).unwrap();
        assert_eq!(kinds(&r.leave("a")), [("b".into(), "remove_peer".into())]);
        assert!(r.leave("a").is_empty(), "leaving twice announces nothing");
        assert!(r.disconnect("b").is_empty());
        assert_eq!((r.room_count(), r.peer_count()), (0, 1));
    }

    #[test]
    fn joining_another_room_leaves_the_first() {
        let mut r = setup(16, &[("a", ""), ("b", "")]);
        r.join("a", "x", &json!([])).unwrap();
        r.join("b", "x", &json!([])).unwrap();
        let out = r.join("b", "y", &json!([])).unwrap();
        assert_eq!(
            kinds(&out),
            [
                ("a".into(), "remove_peer".into()),
                ("b".into(), "peers".into())
            ]
        );
        assert_eq!(r.room_of("b"), Some("y"));
        assert_eq!(kinds(&r.disconnect("b")), []);
        assert_eq!(r.room_count(), 1);
    }

    fn key(room: &str) -> RoomKey {
        (String::new(), room.to_owned())
    }

    #[test]
    fn remote_peers_are_listed_announced_and_relayed_to_via_their_node() {
        let mut r = setup(16, &[("a", ""), ("c", "")]);
        let remote = [("b".to_owned(), "n2/1".to_owned())];
        let out = r.join_admitted("a", "x", &json!([]), &remote).unwrap();
        let reply: Value = serde_json::from_str(&out[0].1).unwrap();
        assert_eq!(reply["peers"], json!(["b"]));
        // Events about a room without local peers are not kept.
        assert!(r.remote_joined("n2/1", &key("y"), "z").is_empty());
        assert_eq!(
            r.relay("a", "z", body("z")).unwrap_err().code,
            ErrorCode::UnknownPeer
        );
        // A newcomer elsewhere is announced to local members only, and only once.
        assert_eq!(
            kinds(&r.remote_joined("n3/1", &key("x"), "d")),
            [("a".into(), "new_peer".into())]
        );
        assert!(
            r.remote_joined("n3/2", &key("x"), "d").is_empty(),
            "a new session of d's node"
        );
        let relayed = r.relay("a", "d", body("d")).unwrap();
        assert_eq!(
            relayed.node.as_deref(),
            Some("n3/2"),
            "routed to the node's newest session"
        );
        // A local peer of another room cannot reach x's remote peers.
        r.join("c", "y", &json!([])).unwrap();
        assert_eq!(
            r.relay("c", "b", body("b")).unwrap_err().code,
            ErrorCode::UnknownPeer
        );
        assert_eq!(
            kinds(&r.remote_left("b")),
            [("a".into(), "remove_peer".into())]
        );
        assert!(r.remote_left("b").is_empty());
        assert_eq!(r.peer_count(), 2, "remote peers are not this node's peers");
    }

    #[test]
    fn sync_announces_the_difference_and_grace_only_adds() {
        let mut r = setup(16, &[("a", "")]);
        let n = |p: &str| (p.to_owned(), "n2/1".to_owned());
        r.join_admitted("a", "x", &json!([]), &[n("b"), n("c")])
            .unwrap();
        assert!(
            r.sync_room(&key("x"), &[n("c")], false).is_empty(),
            "grace: nothing removed"
        );
        let out = r.sync_room(&key("x"), &[n("c"), n("d")], true);
        let mut got = kinds(&out);
        got.sort();
        assert_eq!(
            got,
            [
                ("a".into(), "new_peer".into()),
                ("a".into(), "remove_peer".into())
            ]
        );
        let listed: Value =
            serde_json::from_str(&r.join("a", "x", &json!([])).unwrap()[0].1).unwrap();
        assert_eq!(listed["peers"], json!(["c", "d"]));
        // Syncing a room this node has left creates nothing.
        assert!(r.sync_room(&key("gone"), &[n("e")], true).is_empty());
        assert_eq!(r.room_count(), 1);
    }

    #[test]
    fn the_last_local_peer_leaving_forgets_the_room() {
        let mut r = setup(16, &[("a", "")]);
        r.join_admitted("a", "x", &json!([]), &[("b".into(), "n2/1".into())])
            .unwrap();
        assert!(
            r.leave("a").is_empty(),
            "remote peers are told by their own node"
        );
        assert_eq!(r.room_count(), 0);
        assert!(
            r.remote_left("b").is_empty(),
            "b is forgotten with the room"
        );
        assert!(r.local_rooms().is_empty());
        // A remote peer that moves to another room leaves the first one.
        r.join_admitted("a", "x", &json!([]), &[("b".into(), "n2/1".into())])
            .unwrap();
        assert_eq!(
            kinds(&r.remote_joined("n2/1", &key("y"), "b")),
            [("a".into(), "remove_peer".into())]
        );
        assert_eq!(
            r.deliver_remote(&key("x"), "a", "t".into()),
            Some(("a".into(), "t".into()))
        );
        assert_eq!(
            r.deliver_remote(&key("y"), "a", "t".into()),
            None,
            "same room only"
        );
    }
}
