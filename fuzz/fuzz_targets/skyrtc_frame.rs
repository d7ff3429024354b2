//! Untrusted WebSocket text frame on `/skyrtc` → the SkyRTC dialect's translation into the
//! `/ws` message it means, and back for the recipient. Whatever the text: no panic; an error
//! has a message and, sent back, is an `_error` event naming its code; what translates is a
//! JSON object the `/ws` parser takes for a join, leave, ping or relay (never one carrying a
//! `from`); a translated relay reaches a SkyRTC recipient as an event whose `socketId` is the
//! server's `from`, and an offer's, answer's or candidate's event has the fields its
//! receiver builds an `RTCSessionDescription` or `RTCIceCandidate` from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rturn::signal::protocol::{self, ClientMessage};
use rturn::signal::skyrtc::Dialect;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    // Text frames are UTF-8 (tungstenite refuses others before we see them).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // What the server sends a SkyRTC client, whatever it is, never panics either.
    let _ = Dialect::SkyRtc.outgoing(text.to_owned());
    let ws = match Dialect::SkyRtc.incoming(text) {
        Err(e) => {
            assert!(!e.message.is_empty(), "an error without a message");
            let event: Value = serde_json::from_str(&Dialect::SkyRtc.outgoing(e.to_json()))
                .expect("an _error event is JSON");
            assert_eq!(event["eventName"], "_error");
            assert_eq!(event["data"]["code"], e.code.as_str());
            return;
        }
        Ok(ws) => ws.into_owned(),
    };
    let value: Value = serde_json::from_str(&ws).expect("a translation is JSON");
    assert!(value.get("from").is_none(), "a client's own from passed");
    let Ok(message) = protocol::parse(&ws) else {
        // Only a room the /ws rules refuse (longer than MAX_ROOM_LEN) gets this far.
        assert_eq!(value["type"], "join");
        return;
    };
    let ClientMessage::Relay { to } = message else {
        return;
    };
    let delivered = Dialect::SkyRtc.outgoing(protocol::relayed(&ws, "sender"));
    let event: Value = serde_json::from_str(&delivered).expect("a relayed event is JSON");
    assert_eq!(event["data"]["socketId"], "sender", "{delivered}");
    assert_eq!(value["to"], to.as_str());
    match event["eventName"].as_str() {
        Some("_offer" | "_answer") => assert!(event["data"]["sdp"]["sdp"].is_string()),
        Some("_ice_candidate") => {
            let data = &event["data"];
            assert!(data["candidate"].is_string());
            assert_eq!(data["label"], data["sdpMLineIndex"]);
            assert!(!data["sdpMLineIndex"].is_null() || data["sdpMid"].is_string());
        }
        other => panic!("a relay became {other:?}: {delivered}"),
    }
});
