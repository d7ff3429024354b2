//! The cluster half of the registry: peers on other nodes, and local joins that await the
//! cluster's answer.
//!
//! A join through the cluster takes a Redis round trip, and the world moves meanwhile:
//! other nodes' peers join, leave and (having seen the joiner in Redis) send it offers. So
//! the room is kept from [`Rooms::begin_join`] on, events for it are applied as they come,
//! messages to the joiner are held until its `peers` reply is out, and the membership list
//! the cluster answered with only adds peers that did not leave in the meantime.

use serde_json::Value;

use super::{Deliveries, LocalRoom, NodeId, PeerId, Pending, RoomKey, Rooms};
use crate::signal::protocol::{self, ErrorCode, SignalError};

/// Messages held for one pending joiner at most; a sender that floods a peer before it is
/// in loses the excess, as it would to a slow reader.
const MAX_HELD: usize = 64;

impl Rooms {
    /// `id` joins `room` as the cluster admitted it (the room-wide limit was checked there):
    /// `remote` is the room's membership on other nodes when the cluster admitted it. Events
    /// heard since are newer, so the list only adds, and not whoever left meanwhile; the next
    /// sync removes what it still lacks.
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
        let remote: Vec<(PeerId, NodeId)> = (remote.iter())
            .filter(|(peer, _)| !self.left_since_pending(id, peer))
            .cloned()
            .collect();
        out.extend(self.sync_room(&key, &remote, false));
        out.extend(self.join_inner(id, room, ice_servers, false)?);
        Ok(out)
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
        if !self.pending.is_empty() {
            (self.left_while_pending).push_back((self.leaves_numbered, id.to_owned()));
            self.leaves_numbered += 1;
        }
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

    /// A message from another node for local peer `to` in `key`: `None` unless `to` is
    /// there (the same-room rule holds across nodes too), else what to deliver now. A peer
    /// whose join into `key` is pending gets it after its `peers` reply: held until then.
    pub fn deliver_remote(&mut self, key: &RoomKey, to: &str, text: String) -> Option<Deliveries> {
        let peer = self.peers.get(to)?;
        if peer.namespace == key.0 && peer.room.as_deref() == Some(key.1.as_str()) {
            return Some(vec![(to.to_owned(), text)]);
        }
        let pending = self.pending.get_mut(to).filter(|p| p.key == *key)?;
        if pending.held.len() < MAX_HELD {
            pending.held.push(text);
        }
        Some(Deliveries::new())
    }

    /// `id` is about to ask the cluster to let it into `key`. Until [`Rooms::end_join`], the
    /// room is kept (so events for it are recorded) and messages to `id` in it are held.
    pub fn begin_join(&mut self, id: &str, key: &RoomKey) {
        self.rooms.entry(key.clone()).or_default();
        self.pending.insert(
            id.to_owned(),
            Pending {
                key: key.clone(),
                since: self.leaves_numbered,
                held: Vec::new(),
            },
        );
    }

    /// The pending join of `id` is over, whatever came of it: the messages held for it if
    /// it is now in the room (to send after its `peers` reply), nothing otherwise.
    pub fn end_join(&mut self, id: &str) -> Deliveries {
        let Some(pending) = self.pending.remove(id) else {
            return Deliveries::new();
        };
        // Only leaves numbered since the oldest join still pending matter any more.
        let oldest = self.pending.values().map(|p| p.since).min();
        let oldest = oldest.unwrap_or(self.leaves_numbered);
        while (self.left_while_pending.front()).is_some_and(|(n, _)| *n < oldest) {
            self.left_while_pending.pop_front();
        }
        self.forget_if_no_local(&pending.key);
        if self.membership(id).as_ref() != Some(&pending.key) {
            return Deliveries::new();
        }
        (pending.held.into_iter())
            .map(|text| (id.to_owned(), text))
            .collect()
    }

    /// Whether remote `peer` left after local `id`'s join began.
    fn left_since_pending(&self, id: &str, peer: &str) -> bool {
        let Some(since) = self.pending.get(id).map(|p| p.since) else {
            return false;
        };
        (self.left_while_pending.iter()).any(|(n, left)| *n >= since && left == peer)
    }

    /// Every room with a local peer or a pending join, with those peers (for re-registering
    /// after a reconnect and for the periodic membership sync).
    pub fn local_rooms(&self) -> Vec<LocalRoom> {
        (self.rooms.iter())
            .map(|(key, members)| LocalRoom {
                key: key.clone(),
                peers: (members.iter())
                    .filter(|p| self.peers.contains_key(*p))
                    .cloned()
                    .collect(),
                joining: (self.pending.iter())
                    .filter(|(_, p)| p.key == *key)
                    .map(|(id, _)| id.clone())
                    .collect(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{body, kinds, setup};
    use super::*;
    use serde_json::json;

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
            r.relay("a", "z", &body("z")).unwrap_err().code,
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
        let relayed = r.relay("a", "d", &body("d")).unwrap();
        assert_eq!(
            relayed.node.as_deref(),
            Some("n3/2"),
            "routed to the node's newest session"
        );
        // A local peer of another room cannot reach x's remote peers.
        r.join("c", "y", &json!([])).unwrap();
        assert_eq!(
            r.relay("c", "b", &body("b")).unwrap_err().code,
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
            Some(vec![("a".into(), "t".into())])
        );
        assert_eq!(
            r.deliver_remote(&key("y"), "a", "t".into()),
            None,
            "same room only"
        );
    }

    #[test]
    fn a_pending_join_records_events_and_holds_messages_until_its_peers_reply() {
        let mut r = setup(16, &[("a", "")]);
        let n = |p: &str| (p.to_owned(), "n2/1".to_owned());
        r.begin_join("a", &key("x"));
        // While the cluster answers: d joins x elsewhere, b (in the answer) leaves, and d,
        // which saw a in Redis already, sends it an offer.
        assert!(r.remote_joined("n2/1", &key("x"), "d").is_empty());
        assert!(r.remote_left("b").is_empty());
        assert_eq!(
            r.deliver_remote(&key("x"), "a", "offer from d".into()),
            Some(vec![])
        );
        assert_eq!(r.deliver_remote(&key("y"), "a", "other room".into()), None);
        let mut out = r
            .join_admitted("a", "x", &json!([]), &[n("b"), n("c")])
            .unwrap();
        out.extend(r.end_join("a"));
        assert_eq!(
            kinds(&out[..1]),
            [("a".into(), "peers".into())],
            "nothing before the peers reply"
        );
        let reply: Value = serde_json::from_str(&out[0].1).unwrap();
        let mut listed: Vec<String> = serde_json::from_value(reply["peers"].clone()).unwrap();
        listed.sort();
        assert_eq!(listed, ["c", "d"], "d from its event, not b who left");
        assert_eq!(out[1], ("a".into(), "offer from d".into()));
        assert_eq!(out.len(), 2);
        assert!(r.left_while_pending.is_empty() && r.pending.is_empty());
    }

    #[test]
    fn only_leaves_during_a_join_filter_its_list_and_none_are_kept_after() {
        let mut r = setup(16, &[("a", ""), ("e", "")]);
        let n = |p: &str| (p.to_owned(), "n2/1".to_owned());
        r.begin_join("a", &key("x"));
        assert!(r.remote_left("b").is_empty());
        // e's join starts after b left x: b is in z now, and e's list of z has it.
        r.begin_join("e", &key("z"));
        r.join_admitted("a", "x", &json!([]), &[n("b")]).unwrap();
        r.end_join("a");
        assert_eq!(
            r.left_while_pending.len(),
            0,
            "nothing older than e's join is kept"
        );
        let out = r.join_admitted("e", "z", &json!([]), &[n("b")]).unwrap();
        let reply: Value = serde_json::from_str(&out[0].1).unwrap();
        assert_eq!(reply["peers"], json!(["b"]));
        r.end_join("e");
        assert!(r.remote_left("c").is_empty());
        assert!(
            r.left_while_pending.is_empty(),
            "no join pending, nothing kept"
        );
    }

    #[test]
    fn a_refused_pending_join_leaves_nothing_behind() {
        let mut r = setup(16, &[("a", "")]);
        r.begin_join("a", &key("x"));
        assert!(r.remote_joined("n2/1", &key("x"), "d").is_empty());
        assert_eq!(r.deliver_remote(&key("x"), "a", "t".into()), Some(vec![]));
        assert!(r.end_join("a").is_empty(), "held messages are dropped");
        assert_eq!(r.room_count(), 0);
        assert!(r.local_rooms().is_empty());
        assert_eq!(r.deliver_remote(&key("x"), "a", "t".into()), None);
    }

    #[test]
    fn a_joiners_older_list_never_removes_and_sync_lists_the_joining() {
        let mut r = setup(16, &[("a", ""), ("e", "")]);
        let n = |p: &str| (p.to_owned(), "n2/1".to_owned());
        r.join_admitted("a", "x", &json!([]), &[n("b")]).unwrap();
        r.begin_join("e", &key("x"));
        let rooms = r.local_rooms();
        assert_eq!(rooms.len(), 1);
        assert_eq!(
            (rooms[0].peers.clone(), rooms[0].joining.clone()),
            (vec!["a".to_owned()], vec!["e".to_owned()])
        );
        // The list e got predates b's join: b stays, nobody is told it left.
        let out = r.join_admitted("e", "x", &json!([]), &[]).unwrap();
        assert_eq!(
            kinds(&out),
            [
                ("a".into(), "new_peer".into()),
                ("e".into(), "peers".into())
            ]
        );
        assert!(r.end_join("e").is_empty());
        assert_eq!(
            r.relay("e", "b", &body("b")).unwrap().node.as_deref(),
            Some("n2/1")
        );
    }
}
