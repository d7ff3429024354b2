//! What rturn nodes keep in Redis and say to each other there. Pure: names, messages and the
//! Lua scripts; `link.rs` sends them.
//!
//! - `rturn:node:<node>`: a node's presence, a string with a TTL of ¾ `presence-ttl`,
//!   refreshed every ¼. A node is a session of one process (`<node-id>/<random>`), new on
//!   every connect, so whatever an earlier session left behind dies with its presence key.
//! - `rturn:id:<node-id>`: which session holds a `node-id` (same TTL as presence): a second
//!   process with the same `node-id` is refused instead of mistaking the first's peers for
//!   its own.
//! - `rturn:epoch`: a random value set once, without TTL. When it changes, Redis lost its
//!   data (a restart without persistence), and every node must register its peers again.
//! - `rturn:room:<namespace length>:<namespace>:<room>`: a hash, peer → node, of a room's
//!   members on every node. Scripts drop members whose node has no presence key; the hash
//!   expires 4 × `presence-ttl` after the last node with a peer in it stopped refreshing it.
//! - Channel `rturn:events`: joins and leaves, to every node.
//! - Channel `rturn:to:<node-id>`: offers, answers and candidates for peers on that node.

use serde::{Deserialize, Serialize};

use crate::signal::rooms::RoomKey;

/// The channel every node hears membership events on.
pub const EVENTS: &str = "rturn:events";

/// The prefix of presence keys; a node's key is this plus its name.
pub const PRESENCE_PREFIX: &str = "rturn:node:";

/// A node's presence key.
pub fn presence_key(node: &str) -> String {
    format!("{PRESENCE_PREFIX}{node}")
}

/// The key naming the session that holds `node_id`.
pub fn claim_key(node_id: &str) -> String {
    format!("rturn:id:{node_id}")
}

/// The key whose change tells that Redis lost its data.
pub const EPOCH: &str = "rturn:epoch";

/// The channel node session `node` receives relayed messages on: its `node-id`'s, which
/// outlives sessions, so a relay sent just as a node reconnects still arrives (a `node-id`
/// is held by one process at a time: [`ALIVE`]).
pub fn inbox(node: &str) -> String {
    let node_id = node.rsplit_once('/').map_or(node, |(id, _)| id);
    format!("rturn:to:{node_id}")
}

/// A room's membership hash. The namespace's length keeps `("a:b", "c")` and `("a", "b:c")`
/// apart.
pub fn room_key((namespace, room): &RoomKey) -> String {
    format!("rturn:room:{}:{namespace}:{room}", namespace.len())
}

/// A node session's name: the operator's `node-id` and 64 random bits.
pub fn session_name(node_id: &str) -> String {
    let bits: u64 = crate::random::os_random();
    format!("{node_id}/{bits:016x}")
}

/// A Redis address without its password, for logs and errors.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://***@{host}"),
        None => url.to_owned(),
    }
}

/// A membership event on [`EVENTS`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "e", rename_all = "snake_case")]
pub enum Event {
    /// `peer` on `node` entered the room.
    Joined {
        /// The node session the peer is connected to.
        node: String,
        /// The namespace.
        ns: String,
        /// The room.
        room: String,
        /// The peer.
        peer: String,
    },
    /// `peer` left the room (or disconnected).
    Left {
        /// The node session the peer was connected to.
        node: String,
        /// The peer.
        peer: String,
    },
}

impl Event {
    /// The event as published.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// An event from the channel; `None` for anything else (counted as malformed).
    pub fn parse(text: &[u8]) -> Option<Self> {
        serde_json::from_slice(text).ok()
    }

    /// The node that sent it.
    pub fn node(&self) -> &str {
        match self {
            Event::Joined { node, .. } | Event::Left { node, .. } => node,
        }
    }
}

/// A relayed message on a node's inbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The namespace the sender is in.
    pub ns: String,
    /// The room the sender is in; the recipient must still be in it.
    pub room: String,
    /// The recipient.
    pub to: String,
    /// The message as the recipient gets it.
    pub text: String,
}

impl Envelope {
    /// The envelope as published.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// An envelope from the inbox; `None` for anything else.
    pub fn parse(text: &[u8]) -> Option<Self> {
        serde_json::from_slice(text).ok()
    }
}

/// Joins a room, atomically against the room-wide limit.
/// KEYS: the new room, the old room (or `""`). ARGV: peer, node, max peers, presence prefix,
/// events channel, joined event, left event (or `""`), room TTL in ms.
/// Returns `{"ok", peer1, node1, …}` with the other live members, or `{"full", count}`.
pub const JOIN: &str = r#"
local room, old = KEYS[1], KEYS[2]
local peer, node, max, prefix = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local live = {'ok'}
local count = 0
local all = redis.call('HGETALL', room)
for i = 1, #all, 2 do
  local p, n = all[i], all[i + 1]
  if p ~= peer then
    if n == node or redis.call('EXISTS', prefix .. n) == 1 then
      count = count + 1
      live[#live + 1] = p
      live[#live + 1] = n
    else
      redis.call('HDEL', room, p)
    end
  end
end
if count >= max then
  return {'full', tostring(count)}
end
if old ~= '' and old ~= room then
  if redis.call('HDEL', old, peer) == 1 and ARGV[7] ~= '' then
    redis.call('PUBLISH', ARGV[5], ARGV[7])
  end
end
redis.call('HSET', room, peer, node)
redis.call('PEXPIRE', room, ARGV[8])
redis.call('PUBLISH', ARGV[5], ARGV[6])
return live
"#;

/// The live members of a room on other nodes, and this node's entries made right: every
/// local peer is in, and an entry of this session for a peer that is neither in the room
/// locally nor joining it (left while a reconnect re-registered it, say) is out. Drops
/// members of dead nodes and keeps the room from expiring.
/// KEYS: the room. ARGV: presence prefix, room TTL in ms, this session, the number of local
/// peers, the local peers, then the peers joining.
/// Returns `{peer1, node1, …}` of the other nodes' live members.
pub const MEMBERS: &str = r#"
local room, prefix, ttl, me = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local nlocal = tonumber(ARGV[4])
local here, joining = {}, {}
for i = 5, 4 + nlocal do here[ARGV[i]] = true end
for i = 5 + nlocal, #ARGV do joining[ARGV[i]] = true end
local live, seen = {}, {}
local all = redis.call('HGETALL', room)
for i = 1, #all, 2 do
  local p, n = all[i], all[i + 1]
  if n == me then
    if here[p] or joining[p] then
      seen[p] = true
    else
      redis.call('HDEL', room, p)
    end
  elseif redis.call('EXISTS', prefix .. n) == 1 then
    live[#live + 1] = p
    live[#live + 1] = n
  else
    redis.call('HDEL', room, p)
  end
end
for p in pairs(here) do
  if not seen[p] then
    redis.call('HSET', room, p, me)
  end
end
if #live > 0 or nlocal > 0 then
  redis.call('PEXPIRE', room, ttl)
end
return live
"#;

/// Refreshes a session's presence and its hold on its `node-id`.
/// KEYS: presence key, claim key, [`EPOCH`]. ARGV: session, presence TTL in ms, a fresh
/// epoch, the previous session of this process (or `""`), which may hand its claim over.
/// Returns `{"taken", holder}` when another session holds the `node-id`, else
/// `{"ok", "1" if the presence key existed before else "0", epoch}`.
pub const ALIVE: &str = r#"
local claim = redis.call('GET', KEYS[2])
if claim and claim ~= ARGV[1] and claim ~= ARGV[4] then
  return {'taken', claim}
end
local had = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[1], '1', 'PX', ARGV[2])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('SET', KEYS[3], ARGV[3], 'NX')
return {'ok', tostring(had), redis.call('GET', KEYS[3])}
"#;

/// A session's goodbye: its presence goes, and its `node-id` claim if it still holds it.
/// KEYS: presence key, claim key. ARGV: session.
pub const BYE: &str = r#"
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
return redis.call('DEL', KEYS[1])
"#;

/// `{peer1, node1, peer2, node2, …}` from a script as pairs.
pub fn pairs(flat: &[String]) -> Vec<(String, String)> {
    flat.chunks_exact(2)
        .map(|pair| (pair[0].clone(), pair[1].clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_keys_keep_namespaces_apart() {
        let a = room_key(&("a:b".into(), "c".into()));
        let b = room_key(&("a".into(), "b:c".into()));
        assert_ne!(a, b);
        assert_eq!(
            room_key(&(String::new(), "demo".into())),
            "rturn:room:0::demo"
        );
    }

    #[test]
    fn events_round_trip_and_junk_is_none() {
        let joined = Event::Joined {
            node: "n/1".into(),
            ns: String::new(),
            room: "r".into(),
            peer: "p".into(),
        };
        assert_eq!(Event::parse(joined.to_json().as_bytes()), Some(joined));
        assert_eq!(Event::parse(b"{\"e\":\"exploded\"}"), None);
        assert_eq!(Event::parse(b"\xff"), None);
        assert_eq!(Envelope::parse(b"[]"), None);
    }

    /// A relayed message crosses nodes as the same bytes: the envelope carries the text as
    /// a JSON string, which gives back exactly what went in, escapes and numbers as spelt.
    #[test]
    fn envelopes_carry_the_text_byte_for_byte() {
        let text = "{\"from\":\"ab\", \"type\":\"offer\",\"to\":\"cd\",\"n\":9e15,\
                    \"s\":\"\\u00e9\\r\\n\u{2028}\\\"\",\"f\":1.50 }\n";
        let envelope = Envelope {
            ns: "tenant".into(),
            room: "r".into(),
            to: "cd".into(),
            text: text.into(),
        };
        let again = Envelope::parse(envelope.to_json().as_bytes()).unwrap();
        assert_eq!(again.text.as_bytes(), text.as_bytes());
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("redis://u:pw@h:6379/0"), "redis://***@h:6379/0");
        assert_eq!(redact("redis://h:6379"), "redis://h:6379");
    }

    #[test]
    fn sessions_are_unique() {
        let a = session_name("edge-1");
        assert!(a.starts_with("edge-1/"));
        assert_ne!(a, session_name("edge-1"));
        assert_eq!(inbox(&a), inbox(&session_name("edge-1")));
        assert_ne!(inbox(&a), inbox(&session_name("edge-12")));
        assert_eq!(
            pairs(&["p".into(), "n".into(), "odd".into()]),
            [("p".into(), "n".into())]
        );
    }
}
