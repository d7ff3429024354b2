//! The room registry: who is connected, in which namespace and room, and what each event
//! means for everyone else. Pure: every call returns the messages to deliver, as
//! `(recipient, text)` pairs; `ws.rs` does the delivering.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::protocol::{self, ErrorCode, PeerId, SignalError};

/// Messages to send: recipient and JSON text.
pub type Deliveries = Vec<(PeerId, String)>;

/// A room is named within a namespace (`/ws/<namespace>`); rooms of different namespaces
/// never meet.
type RoomKey = (String, String);

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
}

impl Rooms {
    /// An empty registry whose rooms hold at most `max_peers` peers.
    pub fn new(max_peers: usize) -> Self {
        Self {
            max_peers,
            rooms: HashMap::new(),
            peers: HashMap::new(),
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
        if members >= self.max_peers {
            return Err(SignalError::new(
                ErrorCode::RoomFull,
                format!("room {room:?} has {members} peers, the most it holds"),
            ));
        }
        out.extend(self.leave(id));
        let others = self.others(&key, id);
        for other in &others {
            out.push((other.clone(), protocol::new_peer(id)));
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
        let mut out = Deliveries::new();
        if let Some(members) = self.rooms.get_mut(&key) {
            members.retain(|m| m != id);
            for other in members.iter() {
                out.push((other.clone(), protocol::remove_peer(id)));
            }
            if members.is_empty() {
                self.rooms.remove(&key);
            }
        }
        out
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
    ) -> Result<(PeerId, String), SignalError> {
        let sender = self
            .peers
            .get(from)
            .and_then(|p| p.room.as_ref().map(|r| (p, r)));
        let Some((sender, room)) = sender else {
            return Err(SignalError::new(ErrorCode::NotJoined, "join a room first"));
        };
        let same_room = self.peers.get(to).is_some_and(|p| {
            p.namespace == sender.namespace && p.room.as_ref() == Some(room) && to != from
        });
        if !same_room {
            return Err(SignalError::new(
                ErrorCode::UnknownPeer,
                format!("no peer {to:?} in room {room:?}"),
            ));
        }
        Ok((to.to_owned(), protocol::relayed(body, from)))
    }

    /// The room `id` is in, if any.
    pub fn room_of(&self, id: &str) -> Option<&str> {
        self.peers.get(id)?.room.as_deref()
    }

    /// Connected peers.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Non-empty rooms.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
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
        let (to, text) = r.relay("a", "b", body("b")).unwrap();
        assert_eq!(to, "b");
        let v: Value = serde_json::from_str(&text).unwrap();
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
}
