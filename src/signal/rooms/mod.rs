//! The room registry: who is connected, in which namespace and room, and what each event
//! means for everyone else. Pure: every call returns the messages to deliver, as
//! `(recipient, text)` pairs; the hub (`hub.rs`) does the delivering.
//!
//! With a cluster, a room also holds *remote* peers: peers connected to other nodes, known
//! from the cluster's events ([`Rooms::remote_joined`], [`Rooms::remote_left`]) and its
//! periodic membership lists ([`Rooms::sync_room`]). Only rooms with a local peer (or a
//! local peer on its way in) are kept; announcements go to local peers only, and a relay to
//! a remote peer names its node. The cluster half lives in `remote.rs`.

mod remote;

use std::collections::{HashMap, VecDeque};

use serde_json::Value;

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

/// A local join awaiting the cluster.
#[derive(Debug)]
struct Pending {
    key: RoomKey,
    /// The number the next remote leave gets: leaves from this one on are newer than the
    /// membership list the join will come back with.
    since: u64,
    /// Messages from other nodes for the joiner, in order.
    held: Vec<String>,
}

/// A room as this node has it: its local peers and those on their way in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalRoom {
    /// Namespace and room.
    pub key: RoomKey,
    /// Local peers in it.
    pub peers: Vec<PeerId>,
    /// Local peers whose join into it awaits the cluster.
    pub joining: Vec<PeerId>,
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
    /// Local peers whose join awaits the cluster's answer (see [`remote`]).
    pending: HashMap<PeerId, Pending>,
    /// Remote peers that left while a join was pending, numbered: not to be added back
    /// from the (older) membership list of a join pending since before they left.
    left_while_pending: VecDeque<(u64, PeerId)>,
    /// How many remote leaves have been numbered so far.
    leaves_numbered: u64,
}

impl Rooms {
    /// An empty registry whose rooms hold at most `max_peers` peers.
    pub fn new(max_peers: usize) -> Self {
        Self {
            max_peers,
            rooms: HashMap::new(),
            peers: HashMap::new(),
            remote: HashMap::new(),
            pending: HashMap::new(),
            left_while_pending: VecDeque::new(),
            leaves_numbered: 0,
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
            if !self.is_pending(key) {
                self.rooms.remove(key);
            }
            return Deliveries::new();
        }
        self.local_members(key, id)
            .into_iter()
            .map(|other| (other, protocol::remove_peer(id)))
            .collect()
    }

    /// Whether a local join into `key` awaits the cluster.
    fn is_pending(&self, key: &RoomKey) -> bool {
        self.pending.values().any(|p| p.key == *key)
    }

    /// A room whose last local peer left is not tracked any more: its remote peers go.
    fn forget_if_no_local(&mut self, key: &RoomKey) {
        let has_local = self
            .rooms
            .get(key)
            .is_some_and(|m| m.iter().any(|p| self.peers.contains_key(p)));
        if has_local || self.is_pending(key) {
            return;
        }
        if let Some(members) = self.rooms.remove(key) {
            for peer in members {
                self.remote.remove(&peer);
            }
        }
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
        self.end_join(id);
        out
    }

    /// An `offer`/`answer`/`candidate` from `from` to `to`, as the `text` the sender sent
    /// (parsed by [`protocol::parse`] as a relay): delivered only within a room.
    pub fn relay(&self, from: &str, to: &str, text: &str) -> Result<Relayed, SignalError> {
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
                    format!("no peer {} in room {room:?}", protocol::shown(to)),
                ));
            }
        };
        Ok(Relayed {
            to: to.to_owned(),
            node,
            text: protocol::relayed(text, from),
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
        self.rooms.values().filter(|m| !m.is_empty()).count()
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

    pub(super) fn setup(max: usize, peers: &[(&str, &str)]) -> Rooms {
        let mut r = Rooms::new(max);
        for (id, ns) in peers {
            r.connect((*id).to_owned(), ns);
        }
        r
    }

    pub(super) fn kinds(out: &[(PeerId, String)]) -> Vec<(String, String)> {
        out.iter()
            .map(|(to, text)| {
                let v: Value = serde_json::from_str(text).unwrap();
                (to.clone(), v["type"].as_str().unwrap().to_owned())
            })
            .collect()
    }

    pub(super) fn body(to: &str) -> String {
        json!({"type": "offer", "to": to, "sdp": "v=0"}).to_string()
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
            r.relay("a", "b", &body("b")).unwrap_err().code,
            ErrorCode::NotJoined
        );
        r.join("a", "x", &json!([])).unwrap();
        r.join("b", "x", &json!([])).unwrap();
        r.join("c", "y", &json!([])).unwrap();
        let relayed = r.relay("a", "b", &body("b")).unwrap();
        assert_eq!((relayed.to.as_str(), relayed.node), ("b", None));
        let v: Value = serde_json::from_str(&relayed.text).unwrap();
        assert_eq!(
            (v["from"].as_str(), v["sdp"].as_str()),
            (Some("a"), Some("v=0"))
        );
        assert_eq!(
            r.relay("a", "c", &body("c")).unwrap_err().code,
            ErrorCode::UnknownPeer
        );
        assert_eq!(
            r.relay("a", "zz", &body("zz")).unwrap_err().code,
            ErrorCode::UnknownPeer
        );
        assert_eq!(
            r.relay("a", "a", &body("a")).unwrap_err().code,
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
            r.relay("a", "b", &body("b")).unwrap_err().code,
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
}
