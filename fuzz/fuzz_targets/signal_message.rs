//! Untrusted WebSocket text frame → signaling message parser. Whatever the text: no panic;
//! an error has a message and serialises to an `error` frame that names its code; what parses
//! parses the same again from its own re-serialisation (the parser is a function of the JSON
//! value, not of spelling); a join's room is within bounds; a relayed message reaches the
//! other peer as the sender's bytes with `"from":…,` spliced in: the sender's object, every
//! field kept, with exactly the server's `from`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rturn::signal::protocol::{self, ClientMessage, MAX_ROOM_LEN};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    // Text frames are UTF-8 (tungstenite refuses others before we see them).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = protocol::parse(text);
    let value: Option<Value> = serde_json::from_str(text).ok();
    match &parsed {
        Err(e) => {
            assert!(!e.message.is_empty(), "an error without a message");
            let frame: Value = serde_json::from_str(&e.to_json()).expect("error frame is JSON");
            assert_eq!(frame["type"], "error");
            assert_eq!(frame["code"], e.code.as_str());
            assert_eq!(frame["message"], e.message.as_str());
        }
        Ok(message) => {
            let value = value.as_ref().expect("parsed, so it is JSON");
            let kind = value["type"].as_str().expect("parsed, so it has a type");
            match message {
                ClientMessage::Join { room } => {
                    assert_eq!(kind, "join");
                    assert!(!room.is_empty() && room.len() <= MAX_ROOM_LEN);
                    assert_eq!(value["room"], room.as_str());
                }
                ClientMessage::Leave => assert_eq!(kind, "leave"),
                ClientMessage::Ping => assert_eq!(kind, "ping"),
                ClientMessage::Relay { to } => {
                    assert!(["offer", "answer", "candidate"].contains(&kind));
                    assert_eq!(value["to"], to.as_str());
                    assert!(value.get("from").is_none(), "a client's own from is refused");
                    let out = protocol::relayed(text, "sender");
                    assert_eq!(out.len(), text.len() + r#""from":"sender","#.len());
                    let delivered: Value = serde_json::from_str(&out).expect("relayed is JSON");
                    let mut expected = value.as_object().expect("an object").clone();
                    expected.insert("from".into(), "sender".into());
                    assert_eq!(delivered, Value::Object(expected));
                }
            }
        }
    }
    // Same JSON value, same answer.
    if let Some(value) = value {
        let again = protocol::parse(&value.to_string());
        match (&parsed, &again) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Err(a), Err(b)) => assert_eq!(a.code, b.code),
            _ => panic!("{parsed:?} became {again:?} after re-serialising"),
        }
    }
});
