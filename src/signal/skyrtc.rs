//! The SkyRTC dialect of the signaling protocol (served on `/skyrtc`, documented in
//! README.md): `{"eventName":E,"data":{…}}` frames, as the SkyRTC client of the articles
//! rturn grew from speaks them. Pure: text in, text out.
//!
//! It is a translation at the edges of a session, nothing more: [`Dialect::incoming`] turns
//! what a SkyRTC client sends into the `/ws` message it means (then parsed, limited and
//! routed exactly as a `/ws` client's), and [`Dialect::outgoing`] turns every message the
//! hub queues for that client (`peers`, `new_peer`, a relayed `offer`, an `error`, …) into
//! its SkyRTC event. So rooms, limits, tokens and the cluster know one protocol, and peers
//! of both dialects meet in one room: each gets the other's messages in its own shape.
//!
//! The mapping (SkyRTC ⇄ `/ws`):
//! - `__join {room}` → `join` (a missing, null or empty room is `__default`);
//!   `peers` → `_peers {connections, you, room, iceServers}`; `new_peer` / `remove_peer`
//!   → `_new_peer` / `_remove_peer {socketId}`.
//! - `__offer` / `__answer {socketId, sdp}` ⇄ `offer` / `answer {to, sdp}`: SkyRTC carries
//!   the session description (`{type, sdp}`), `/ws` its SDP text; the receiver gets
//!   `{sdp: {type, sdp}, socketId: SENDER}`.
//! - `__ice_candidate {socketId, label, candidate}` ⇄ `candidate {to, candidate: {candidate,
//!   sdpMLineIndex, sdpMid?, usernameFragment?}}`; the receiver gets `{label, sdpMLineIndex,
//!   candidate, socketId}` (and `sdpMid`, `usernameFragment` when known): `sdpMLineIndex`
//!   is what today's browsers need to build an `RTCIceCandidate` from it.
//! - `__leave` → `leave`, `__ping` → `ping` ⇄ `_pong`, `error` → `_error {code, message}`.
//! - Any other member of an offer's, answer's or candidate's `data` rides along as a
//!   member of the `/ws` message, and back (`type`, `to` and `from` are the server's).

use std::borrow::Cow;

use serde_json::{Map, Value, json};

use super::protocol::{ErrorCode, SignalError, shown};

/// The room a `__join` without one enters, as the SkyRTC server has it.
pub const DEFAULT_ROOM: &str = "__default";

/// Which protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    /// rturn's own (`/ws`): `{"type":…}` frames.
    #[default]
    Ws,
    /// SkyRTC's (`/skyrtc`): `{"eventName":…,"data":{…}}` frames.
    SkyRtc,
}

impl Dialect {
    /// A client's text frame as the `/ws` message it means (a `/ws` client's as it is).
    pub fn incoming(self, text: &str) -> Result<Cow<'_, str>, SignalError> {
        match self {
            Dialect::Ws => Ok(Cow::Borrowed(text)),
            Dialect::SkyRtc => incoming(text).map(Cow::Owned),
        }
    }

    /// A message queued for the client (in the `/ws` shape) as the client's dialect has it.
    pub fn outgoing(self, text: String) -> String {
        match self {
            Dialect::Ws => text,
            Dialect::SkyRtc => outgoing(&text).unwrap_or(text),
        }
    }
}

/// Members of a relayed message the server owns: never taken from a client's `data`.
const RESERVED: [&str; 3] = ["type", "to", "from"];

fn bad(message: impl Into<String>) -> SignalError {
    SignalError::new(ErrorCode::BadMessage, message)
}

/// A SkyRTC client's frame as the `/ws` message it means.
fn incoming(text: &str) -> Result<String, SignalError> {
    let value: Value = serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let Value::Object(mut frame) = value else {
        return Err(bad(
            "expected a JSON object: {\"eventName\":…,\"data\":{…}}",
        ));
    };
    let event = match frame.remove("eventName") {
        Some(Value::String(event)) => event,
        _ => return Err(bad("missing \"eventName\" (a string)")),
    };
    let mut data = match frame.remove("data") {
        Some(Value::Object(data)) => data,
        None | Some(Value::Null) => Map::new(),
        Some(_) => return Err(bad(format!("{} needs \"data\": an object", shown(&event)))),
    };
    let message = match event.as_str() {
        "__join" => {
            let room = match data.remove("room") {
                None | Some(Value::Null) => DEFAULT_ROOM.to_owned(),
                Some(Value::String(room)) if room.is_empty() => DEFAULT_ROOM.to_owned(),
                Some(Value::String(room)) => room,
                Some(_) => return Err(bad("__join's \"room\" must be a string")),
            };
            json!({"type": "join", "room": room})
        }
        "__leave" => json!({"type": "leave"}),
        "__ping" => json!({"type": "ping"}),
        "__offer" => relay(&event, "offer", data, |data, out| {
            out.insert("sdp".into(), sdp_text(&event, data.remove("sdp"))?);
            Ok(())
        })?,
        "__answer" => relay(&event, "answer", data, |data, out| {
            out.insert("sdp".into(), sdp_text(&event, data.remove("sdp"))?);
            Ok(())
        })?,
        "__ice_candidate" => relay(&event, "candidate", data, |data, out| {
            out.insert("candidate".into(), candidate_object(data)?);
            Ok(())
        })?,
        other => {
            return Err(SignalError::new(
                ErrorCode::UnknownType,
                format!(
                    "unknown eventName {}; expected __join, __offer, __answer, \
                     __ice_candidate, __leave or __ping",
                    shown(other)
                ),
            ));
        }
    };
    Ok(message.to_string())
}

/// A `/ws` relay of `kind` to `data.socketId`: `fill` moves the dialect's own fields from
/// `data` into it, every other member of `data` rides along.
fn relay(
    event: &str,
    kind: &str,
    mut data: Map<String, Value>,
    fill: impl FnOnce(&mut Map<String, Value>, &mut Map<String, Value>) -> Result<(), SignalError>,
) -> Result<Value, SignalError> {
    let to = match data.remove("socketId") {
        Some(Value::String(to)) => to,
        _ => {
            return Err(bad(format!(
                "{event} needs \"socketId\": the id of a peer in your room"
            )));
        }
    };
    let mut out = Map::new();
    out.insert("type".into(), kind.into());
    out.insert("to".into(), to.into());
    fill(&mut data, &mut out)?;
    for (name, value) in data {
        if RESERVED.contains(&name.as_str()) {
            return Err(bad(format!(
                "{event} must not carry {}: the server sets it",
                shown(&name)
            )));
        }
        out.insert(name, value);
    }
    Ok(Value::Object(out))
}

/// The SDP text of a SkyRTC `sdp`: a session description `{type, sdp}`, or its text.
fn sdp_text(event: &str, sdp: Option<Value>) -> Result<Value, SignalError> {
    match sdp {
        Some(Value::String(text)) => Ok(text.into()),
        Some(Value::Object(mut description)) => match description.remove("sdp") {
            Some(Value::String(text)) => Ok(text.into()),
            _ => Err(bad(format!(
                "{event}'s \"sdp\" has no \"sdp\" text: send the session description"
            ))),
        },
        _ => Err(bad(format!(
            "{event} needs \"sdp\": the session description ({{type, sdp}})"
        ))),
    }
}

/// The `/ws` candidate (`RTCIceCandidateInit`) of a SkyRTC `__ice_candidate`'s `data`:
/// `candidate`, and `label` as `sdpMLineIndex` (an `sdpMLineIndex`, `sdpMid` or
/// `usernameFragment` of `data` too).
fn candidate_object(data: &mut Map<String, Value>) -> Result<Value, SignalError> {
    let candidate = match data.remove("candidate") {
        Some(Value::String(candidate)) => candidate,
        _ => {
            return Err(bad(
                "__ice_candidate needs \"candidate\": the candidate line (a string)",
            ));
        }
    };
    let index = |value: Option<Value>, name: &str| match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.as_u64().is_some_and(|i| i <= u64::from(u16::MAX)) => {
            Ok(Some(Value::Number(n)))
        }
        Some(_) => Err(bad(format!(
            "__ice_candidate's \"{name}\" must be the candidate's sdpMLineIndex (0 to 65535)"
        ))),
    };
    let label = index(data.remove("label"), "label")?;
    let line = index(data.remove("sdpMLineIndex"), "sdpMLineIndex")?;
    let mut out = Map::new();
    out.insert("candidate".into(), candidate.into());
    if let Some(line) = label.or(line) {
        out.insert("sdpMLineIndex".into(), line);
    }
    for name in ["sdpMid", "usernameFragment"] {
        match data.remove(name) {
            None | Some(Value::Null) => {}
            Some(Value::String(value)) => {
                out.insert(name.into(), value.into());
            }
            Some(_) => {
                return Err(bad(format!(
                    "__ice_candidate's \"{name}\" must be a string"
                )));
            }
        }
    }
    if !out.contains_key("sdpMLineIndex") && !out.contains_key("sdpMid") {
        return Err(bad(
            "__ice_candidate needs \"label\": the candidate's sdpMLineIndex",
        ));
    }
    Ok(Value::Object(out))
}

/// A message in the `/ws` shape as the SkyRTC event it is; `None` for one it has no event
/// for (sent as it is).
fn outgoing(text: &str) -> Option<String> {
    let Ok(Value::Object(mut message)) = serde_json::from_str::<Value>(text) else {
        return None;
    };
    let kind = match message.remove("type") {
        Some(Value::String(kind)) => kind,
        _ => return None,
    };
    let (event, data) = match kind.as_str() {
        "peers" => ("_peers", peers(message)),
        "new_peer" => ("_new_peer", json!({"socketId": message.remove("id")?})),
        "remove_peer" => ("_remove_peer", json!({"socketId": message.remove("id")?})),
        "pong" => ("_pong", json!({})),
        "error" => ("_error", Value::Object(message)),
        "offer" => ("_offer", description(&kind, message)?),
        "answer" => ("_answer", description(&kind, message)?),
        "candidate" => ("_ice_candidate", ice_candidate(message)?),
        _ => return None,
    };
    Some(json!({"eventName": event, "data": data}).to_string())
}

/// `peers {you, room, peers, iceServers}` as `_peers {connections, you, room, iceServers}`.
fn peers(mut message: Map<String, Value>) -> Value {
    let connections = message.remove("peers").unwrap_or_else(|| json!([]));
    message.insert("connections".into(), connections);
    Value::Object(message)
}

/// A relayed `offer` / `answer` (`{from, to, sdp, …}`) as SkyRTC's `{sdp: {type, sdp},
/// socketId, …}`.
fn description(kind: &str, mut message: Map<String, Value>) -> Option<Value> {
    let from = message.remove("from")?;
    message.remove("to");
    let sdp = match message.remove("sdp") {
        Some(Value::String(text)) => json!({"type": kind, "sdp": text}),
        Some(other) => other,
        None => Value::Null,
    };
    message.insert("sdp".into(), sdp);
    message.insert("socketId".into(), from);
    Some(Value::Object(message))
}

/// A relayed `candidate` (`{from, to, candidate: {candidate, sdpMLineIndex, sdpMid}, …}`)
/// as SkyRTC's `{label, candidate, socketId, …}`, with `sdpMLineIndex` (and `sdpMid`,
/// `usernameFragment` when known) beside `label`, so `new RTCIceCandidate(data)` works.
fn ice_candidate(mut message: Map<String, Value>) -> Option<Value> {
    let from = message.remove("from")?;
    message.remove("to");
    let (line, fields) = match message.remove("candidate") {
        Some(Value::Object(mut init)) => {
            let line = init.remove("candidate").unwrap_or_else(|| "".into());
            (line, init)
        }
        Some(Value::String(line)) => (line.into(), Map::new()),
        _ => ("".into(), Map::new()),
    };
    let index = (fields.get("sdpMLineIndex").cloned())
        .or_else(|| message.remove("sdpMLineIndex"))
        .or_else(|| message.remove("label"))
        .unwrap_or(Value::Null);
    for name in ["sdpMid", "usernameFragment"] {
        if let Some(value) = fields.get(name).filter(|v| !v.is_null()) {
            message.insert(name.into(), value.clone());
        }
    }
    message.insert("candidate".into(), line);
    message.insert("label".into(), index.clone());
    message.insert("sdpMLineIndex".into(), index);
    message.insert("socketId".into(), from);
    Some(Value::Object(message))
}

#[cfg(test)]
#[path = "skyrtc_tests.rs"]
mod tests;
