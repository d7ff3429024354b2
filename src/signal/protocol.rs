//! The signaling protocol's JSON messages (documented in README.md): parsing what clients
//! send, and building what the server sends. Pure: text in, text out.
//!
//! Relayed messages (`offer`, `answer`, `candidate`) are kept as the client's own JSON object,
//! so every field reaches the other peer untouched; only `from` is added.

use serde_json::{Map, Value, json};

/// A server-assigned peer ID: 128 random bits from the OS CSPRNG, as 32 hex digits.
pub type PeerId = String;

/// A fresh, unguessable peer ID.
pub fn new_peer_id() -> PeerId {
    let bits: u128 = crate::random::os_random();
    format!("{bits:032x}")
}

/// What a client asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    /// Enter a room (leaving the current one, if any).
    Join {
        /// The room name.
        room: String,
    },
    /// Leave the current room.
    Leave,
    /// Application-level keepalive; answered with `pong`.
    Ping,
    /// An `offer`, `answer` or `candidate` for another peer: the whole object, as sent.
    Relay {
        /// The recipient.
        to: PeerId,
        /// The message, forwarded with `from` added.
        body: Map<String, Value>,
    },
}

/// Error codes on the wire (`{"type":"error","code":…}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Not JSON, not an object, or a field missing or of the wrong type.
    BadMessage,
    /// A `type` the server does not know.
    UnknownType,
    /// A relay before `join`.
    NotJoined,
    /// The room has `max-peers-per-room` peers already.
    RoomFull,
    /// The recipient is not in the sender's room.
    UnknownPeer,
    /// Too many messages, or joins from one address, too fast.
    RateLimited,
    /// The token does not allow this.
    Unauthorized,
    /// Larger than `max-message-size`.
    TooLarge,
    /// The recipient is on another node and the link to the other nodes is down.
    Unavailable,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadMessage => "bad_message",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::NotJoined => "not_joined",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::UnknownPeer => "unknown_peer",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::Unavailable => "unavailable",
        }
    }
}

/// A refused message: its code and a human explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalError {
    /// The wire code.
    pub code: ErrorCode,
    /// What was wrong, for the developer reading the console.
    pub message: String,
}

impl SignalError {
    /// An error with a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The error as the JSON frame sent to the client.
    pub fn to_json(&self) -> String {
        json!({"type": "error", "code": self.code.as_str(), "message": self.message}).to_string()
    }
}

/// Longest room name accepted.
pub const MAX_ROOM_LEN: usize = 256;

/// Parses one text frame from a client.
pub fn parse(text: &str) -> Result<ClientMessage, SignalError> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| SignalError::new(ErrorCode::BadMessage, format!("not JSON: {e}")))?;
    let Value::Object(body) = value else {
        return Err(SignalError::new(
            ErrorCode::BadMessage,
            "expected a JSON object",
        ));
    };
    let kind = match body.get("type") {
        Some(Value::String(kind)) => kind.as_str(),
        _ => {
            return Err(SignalError::new(
                ErrorCode::BadMessage,
                "missing \"type\" (a string)",
            ));
        }
    };
    match kind {
        "join" => match body.get("room") {
            Some(Value::String(room)) if !room.is_empty() && room.len() <= MAX_ROOM_LEN => {
                Ok(ClientMessage::Join { room: room.clone() })
            }
            _ => Err(SignalError::new(
                ErrorCode::BadMessage,
                format!("join needs \"room\": a string of 1 to {MAX_ROOM_LEN} bytes"),
            )),
        },
        "leave" => Ok(ClientMessage::Leave),
        "ping" => Ok(ClientMessage::Ping),
        "offer" | "answer" | "candidate" => match body.get("to") {
            Some(Value::String(to)) => Ok(ClientMessage::Relay {
                to: to.clone(),
                body,
            }),
            _ => Err(SignalError::new(
                ErrorCode::BadMessage,
                format!("{kind} needs \"to\": a peer id"),
            )),
        },
        other => Err(SignalError::new(
            ErrorCode::UnknownType,
            format!(
                "unknown type {other:?}; expected join, leave, ping, offer, answer or candidate"
            ),
        )),
    }
}

/// The reply to `join`.
pub fn peers(you: &str, room: &str, peers: &[PeerId], ice_servers: &Value) -> String {
    json!({"type": "peers", "you": you, "room": room, "peers": peers, "iceServers": ice_servers})
        .to_string()
}

/// Announces a newcomer to the room.
pub fn new_peer(id: &str) -> String {
    json!({"type": "new_peer", "id": id}).to_string()
}

/// Announces a departure to the room.
pub fn remove_peer(id: &str) -> String {
    json!({"type": "remove_peer", "id": id}).to_string()
}

/// The answer to `ping`.
pub fn pong() -> String {
    json!({"type": "pong"}).to_string()
}

/// A relayed message: the sender's object with `from` set.
pub fn relayed(mut body: Map<String, Value>, from: &str) -> String {
    body.insert("from".to_owned(), Value::String(from.to_owned()));
    Value::Object(body).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> ErrorCode {
        parse(text).unwrap_err().code
    }

    #[test]
    fn parses_every_type() {
        assert_eq!(
            parse(r#"{"type":"join","room":"demo"}"#).unwrap(),
            ClientMessage::Join {
                room: "demo".into()
            }
        );
        assert_eq!(parse(r#"{"type":"leave"}"#).unwrap(), ClientMessage::Leave);
        assert_eq!(parse(r#"{"type":"ping"}"#).unwrap(), ClientMessage::Ping);
        for kind in ["offer", "answer", "candidate"] {
            let text = format!(r#"{{"type":"{kind}","to":"abc","sdp":"v=0"}}"#);
            let ClientMessage::Relay { to, body } = parse(&text).unwrap() else {
                panic!("not a relay");
            };
            assert_eq!(to, "abc");
            assert_eq!(body["sdp"], "v=0");
        }
    }

    #[test]
    fn bad_messages_have_their_codes() {
        assert_eq!(code("not json"), ErrorCode::BadMessage);
        assert_eq!(code("[1,2]"), ErrorCode::BadMessage);
        assert_eq!(code(r#"{"room":"x"}"#), ErrorCode::BadMessage);
        assert_eq!(code(r#"{"type":5}"#), ErrorCode::BadMessage);
        assert_eq!(code(r#"{"type":"join"}"#), ErrorCode::BadMessage);
        assert_eq!(code(r#"{"type":"join","room":""}"#), ErrorCode::BadMessage);
        assert_eq!(code(r#"{"type":"join","room":7}"#), ErrorCode::BadMessage);
        assert_eq!(code(r#"{"type":"offer","sdp":"x"}"#), ErrorCode::BadMessage);
        assert_eq!(code(r#"{"type":"dance"}"#), ErrorCode::UnknownType);
        let long = format!(
            r#"{{"type":"join","room":"{}"}}"#,
            "r".repeat(MAX_ROOM_LEN + 1)
        );
        assert_eq!(code(&long), ErrorCode::BadMessage);
    }

    #[test]
    fn relayed_keeps_every_field_and_adds_from() {
        let sdp = "a".repeat(2000);
        let text = format!(
            r#"{{"type":"offer","to":"b","sdp":"{sdp}","nested":{{"x":[1,2,{{"y":null}}]}},"n":1.5}}"#
        );
        let ClientMessage::Relay { body, .. } = parse(&text).unwrap() else {
            panic!("not a relay");
        };
        let out: Value = serde_json::from_str(&relayed(body, "a")).unwrap();
        let original: Value = serde_json::from_str(&text).unwrap();
        let mut expected = original.as_object().unwrap().clone();
        expected.insert("from".into(), "a".into());
        assert_eq!(out, Value::Object(expected));
    }

    /// Found by fuzz/signal_message: without serde_json's `float_roundtrip`, a number with
    /// more digits than an f64 holds was parsed 1 ULP off, so the recipient got a different
    /// number than the one the server parsed and re-serialised.
    #[test]
    fn relayed_numbers_arrive_as_parsed() {
        let text = r#"{"type":"offer","to":"0123ef","":[0.101111111111111111110,{"11x":null}]}"#;
        let ClientMessage::Relay { body, .. } = parse(text).unwrap() else {
            panic!("not a relay");
        };
        let exact: f64 = "0.101111111111111111110".parse().unwrap();
        assert_eq!(
            body[""][0].as_f64(),
            Some(exact),
            "parsed to the nearest f64"
        );
        let out: Value = serde_json::from_str(&relayed(body, "a")).unwrap();
        assert_eq!(
            out[""][0].as_f64(),
            Some(exact),
            "and delivered as that number"
        );
    }

    #[test]
    fn peer_ids_are_long_and_distinct() {
        let a = new_peer_id();
        let b = new_peer_id();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }

    #[test]
    fn server_messages_are_well_formed() {
        let v: Value = serde_json::from_str(&peers("me", "r", &["x".into()], &json!([]))).unwrap();
        assert_eq!(v["type"], "peers");
        assert_eq!(v["peers"][0], "x");
        let e = SignalError::new(ErrorCode::RoomFull, "full").to_json();
        let v: Value = serde_json::from_str(&e).unwrap();
        assert_eq!(
            (v["type"].as_str(), v["code"].as_str()),
            (Some("error"), Some("room_full"))
        );
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        /// JSON values a client might put in a relayed message's own fields.
        fn json_value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                ".{0,12}".prop_map(Value::from),
            ];
            leaf.prop_recursive(3, 16, 4, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                    proptest::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        proptest! {
            #[test]
            fn serialised_joins_parse_to_their_room(room in ".{1,64}") {
                let text = json!({"type": "join", "room": room}).to_string();
                prop_assert_eq!(parse(&text).unwrap(), ClientMessage::Join { room });
            }

            /// A relayed message parses to its whole object, and what the recipient gets is
            /// that object with `from`, parsing as the same kind of message again.
            #[test]
            fn serialised_relays_parse_to_their_object(
                kind in prop::sample::select(vec!["offer", "answer", "candidate"]),
                to in "[0-9a-f]{32}",
                fields in proptest::collection::btree_map("[a-z]{1,8}", json_value(), 0..5),
            ) {
                let mut body: Map<String, Value> = fields.into_iter().collect();
                body.insert("type".into(), kind.into());
                body.insert("to".into(), to.clone().into());
                let text = Value::Object(body.clone()).to_string();
                let parsed = parse(&text).unwrap();
                prop_assert_eq!(&parsed, &ClientMessage::Relay { to: to.clone(), body: body.clone() });
                let out = relayed(body.clone(), "sender");
                let ClientMessage::Relay { to: again, body: got } = parse(&out).unwrap() else {
                    panic!("{out} is not a relay");
                };
                body.insert("from".into(), "sender".into());
                prop_assert_eq!((again, got), (to, body));
            }

            #[test]
            fn any_text_gets_a_message_or_a_coded_error(text in ".{0,64}") {
                if let Err(e) = parse(&text) {
                    prop_assert!(!e.message.is_empty());
                    let frame: Value = serde_json::from_str(&e.to_json()).unwrap();
                    prop_assert_eq!(frame["code"].as_str(), Some(e.code.as_str()));
                }
            }
        }
    }
}
