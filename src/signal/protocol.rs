//! The signaling protocol's JSON messages (documented in README.md): parsing what clients
//! send, and building what the server sends. Pure: text in, text out.
//!
//! Relayed messages (`offer`, `answer`, `candidate`) go out as the client's own bytes, so
//! every field reaches the other peer untouched (numbers keep their spelling, nothing grows);
//! only `"from":ID,` is spliced in after the opening brace ([`relayed`]). A message that
//! carries its own `from` is refused, so the recipient finds exactly one, the server's.
//!
//! Error messages quote what the client sent only when it is short ([`shown`]): a reply is
//! never larger than a few hundred bytes, whatever the input.

use serde_json::{Value, json};

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
    /// An `offer`, `answer` or `candidate` for another peer, forwarded as the text it came
    /// in with `from` added ([`relayed`]).
    Relay {
        /// The recipient.
        to: PeerId,
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
    /// Every code, in the order `/metrics` renders them.
    pub const ALL: [ErrorCode; 9] = [
        ErrorCode::BadMessage,
        ErrorCode::UnknownType,
        ErrorCode::NotJoined,
        ErrorCode::RoomFull,
        ErrorCode::UnknownPeer,
        ErrorCode::RateLimited,
        ErrorCode::Unauthorized,
        ErrorCode::TooLarge,
        ErrorCode::Unavailable,
    ];

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

/// Longest client string quoted back in an error message, in characters.
const MAX_SHOWN: usize = 32;

/// A client's string as an error message quotes it: in full when short and plain (printable
/// ASCII that needs no escaping), else its plain first characters and its length, so no
/// reply grows with the input.
pub fn shown(text: &str) -> String {
    let printable = |c: char| (c.is_ascii_graphic() || c == ' ') && c != '"' && c != '\\';
    if text.len() <= MAX_SHOWN && text.chars().all(printable) {
        return format!("{text:?}");
    }
    let head: String = (text.chars())
        .take(MAX_SHOWN)
        .take_while(|&c| printable(c))
        .collect();
    format!("{head:?}… ({} bytes)", text.len())
}

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
            // Decoded keys: `"fr\u006fm"` is `from` too, as every recipient's parser sees it.
            _ if body.contains_key("from") => Err(SignalError::new(
                ErrorCode::BadMessage,
                format!("{kind} must not carry \"from\": the server adds it"),
            )),
            Some(Value::String(to)) => Ok(ClientMessage::Relay { to: to.clone() }),
            _ => Err(SignalError::new(
                ErrorCode::BadMessage,
                format!("{kind} needs \"to\": a peer id"),
            )),
        },
        other => Err(SignalError::new(
            ErrorCode::UnknownType,
            format!(
                "unknown type {}; expected join, leave, ping, offer, answer or candidate",
                shown(other)
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

/// A relayed message: the sender's `text` with `"from":"<from>",` after its opening brace.
///
/// `text` must be what [`parse`] took for a relay: a JSON object with members (`type` and
/// `to` at least) and no `from`, so the first `{` is its opening brace (only whitespace can
/// come before it) and a comma after the spliced member is always right. `from` is a
/// server-made peer ID (hex), which needs no escaping.
pub fn relayed(text: &str, from: &str) -> String {
    let (before, after) = text.split_at(text.find('{').map_or(0, |i| i + 1));
    let mut out = String::with_capacity(text.len() + FROM_OVERHEAD);
    out.push_str(before);
    out.push_str("\"from\":\"");
    out.push_str(from);
    out.push_str("\",");
    out.push_str(after);
    out
}

/// What [`relayed`] adds to a message with a server-made peer ID: `"from":"<32 hex>",`.
pub const FROM_OVERHEAD: usize = r#""from":"","#.len() + 32;

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
            assert_eq!(
                parse(&text).unwrap(),
                ClientMessage::Relay { to: "abc".into() }
            );
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
        // The server sets `from`; a client's own, however spelt, is refused.
        for text in [
            r#"{"type":"offer","to":"b","from":"c"}"#,
            r#"{"from":"c","type":"answer","to":"b"}"#,
            r#"{"type":"candidate","to":"b","fr\u006fm":"c"}"#,
            r#"{"type":"offer","to":"b","from":"c","from":"d"}"#,
        ] {
            assert_eq!(code(text), ErrorCode::BadMessage, "{text}");
        }
        // Only at the top: a nested `from` is the application's own business.
        parse(r#"{"type":"offer","to":"b","x":{"from":"c"}}"#).unwrap();
        let long = format!(
            r#"{{"type":"join","room":"{}"}}"#,
            "r".repeat(MAX_ROOM_LEN + 1)
        );
        assert_eq!(code(&long), ErrorCode::BadMessage);
    }

    #[test]
    fn relayed_is_the_senders_bytes_with_from_first() {
        let sdp = "a".repeat(2000);
        let text = format!(
            " \n{{ \"type\":\"offer\",\"to\":\"b\",\"sdp\":\"{sdp}\",\"n\":9e15,\"m\":1.50,\"u\":\"\\u00e9\"}} "
        );
        assert!(matches!(parse(&text), Ok(ClientMessage::Relay { .. })));
        let from = "0123456789abcdef0123456789abcdef";
        let out = relayed(&text, from);
        assert_eq!(out.len(), text.len() + FROM_OVERHEAD);
        let at = text.find('{').unwrap() + 1;
        assert_eq!(
            out,
            format!("{}\"from\":\"{from}\",{}", &text[..at], &text[at..])
        );
        // What the recipient parses: the sender's object with `from`, numbers as written.
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            (v["from"].as_str(), v["sdp"].as_str()),
            (Some(from), Some(sdp.as_str()))
        );
        assert!(
            out.contains("\"n\":9e15,\"m\":1.50,\"u\":\"\\u00e9\""),
            "{out}"
        );
    }

    /// The type and the recipient of a message come back in an error message at most
    /// [`MAX_SHOWN`] characters long, escaped or not: a reply does not grow with the input.
    #[test]
    fn errors_quote_client_strings_boundedly() {
        for junk in [
            "\\u0001".repeat(10_000),
            "\\\"".repeat(10_000),
            "é".repeat(10_000),
        ] {
            let text = format!(r#"{{"type":"{junk}"}}"#);
            let e = parse(&text).unwrap_err();
            assert_eq!(e.code, ErrorCode::UnknownType);
            assert!(
                e.to_json().len() < 256,
                "{} bytes: {}",
                e.to_json().len(),
                e.to_json()
            );
        }
        let e = parse(r#"{"type":"dance"}"#).unwrap_err();
        assert!(e.message.contains("\"dance\""), "{}", e.message);
        assert_eq!(shown("peer-1"), "\"peer-1\"");
        assert_eq!(
            shown(&"x".repeat(100)),
            format!("\"{}\"… (100 bytes)", "x".repeat(32))
        );
        assert_eq!(shown("a\u{1}b"), "\"a\"… (3 bytes)");
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
        use serde_json::Map;

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
                body.remove("from");
                body.insert("type".into(), kind.into());
                body.insert("to".into(), to.clone().into());
                let text = Value::Object(body.clone()).to_string();
                let parsed = parse(&text).unwrap();
                prop_assert_eq!(&parsed, &ClientMessage::Relay { to: to.clone() });
                let out = relayed(&text, "sender");
                let got: Value = serde_json::from_str(&out).unwrap();
                body.insert("from".into(), "sender".into());
                prop_assert_eq!(got, Value::Object(body));
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
