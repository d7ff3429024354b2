use serde_json::{Value, json};

use super::*;
use crate::signal::protocol::{self, ClientMessage};

/// What a SkyRTC client's frame means, as the `/ws` message (parsed back to JSON).
fn inward(frame: Value) -> Value {
    let frame = frame.to_string();
    let text = Dialect::SkyRtc.incoming(&frame).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The error a SkyRTC client's frame gets.
fn refused(text: &str) -> SignalError {
    Dialect::SkyRtc.incoming(text).unwrap_err()
}

/// What a SkyRTC client receives for a `/ws`-shaped message.
fn outward(message: Value) -> Value {
    let text = Dialect::SkyRtc.outgoing(message.to_string());
    serde_json::from_str(&text).unwrap()
}

const SDP: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n";

#[test]
fn ws_passes_through_both_ways() {
    let text = r#"{"type":"offer","to":"b","sdp":"x","n":1.50}"#;
    assert_eq!(Dialect::Ws.incoming(text).unwrap(), text);
    assert_eq!(Dialect::Ws.outgoing(text.to_owned()), text);
}

#[test]
fn join_defaults_to_the_default_room() {
    for frame in [
        json!({"eventName": "__join"}),
        json!({"eventName": "__join", "data": {}}),
        json!({"eventName": "__join", "data": {"room": ""}}),
        json!({"eventName": "__join", "data": {"room": null}}),
    ] {
        assert_eq!(
            inward(frame.clone()),
            json!({"type": "join", "room": "__default"}),
            "{frame}"
        );
    }
    let text = inward(json!({"eventName": "__join", "data": {"room": "demo"}})).to_string();
    assert_eq!(
        protocol::parse(&text).unwrap(),
        ClientMessage::Join {
            room: "demo".into()
        }
    );
    assert_eq!(
        inward(json!({"eventName": "__leave"})),
        json!({"type": "leave"})
    );
    assert_eq!(
        inward(json!({"eventName": "__ping"})),
        json!({"type": "ping"})
    );
}

#[test]
fn offers_and_answers_carry_the_sdp_text() {
    for (event, kind) in [("__offer", "offer"), ("__answer", "answer")] {
        let description = json!({"type": kind, "sdp": SDP});
        let ws = inward(json!({"eventName": event, "data": {"socketId": "b", "sdp": description}}));
        assert_eq!(ws, json!({"type": kind, "to": "b", "sdp": SDP}));
        assert_eq!(
            protocol::parse(&ws.to_string()).unwrap(),
            ClientMessage::Relay { to: "b".into() }
        );
        // The bare text is accepted too, and other members ride along.
        let ws =
            inward(json!({"eventName": event, "data": {"socketId": "b", "sdp": SDP, "x": [1]}}));
        assert_eq!(ws, json!({"type": kind, "to": "b", "sdp": SDP, "x": [1]}));
    }
}

#[test]
fn candidates_carry_label_as_sdp_mline_index() {
    let ws = inward(json!({"eventName": "__ice_candidate",
        "data": {"socketId": "b", "label": 1, "candidate": "candidate:1 1 udp 1 10.0.0.1 9 typ host"}}));
    assert_eq!(
        ws,
        json!({"type": "candidate", "to": "b",
            "candidate": {"candidate": "candidate:1 1 udp 1 10.0.0.1 9 typ host", "sdpMLineIndex": 1}})
    );
    // An sdpMid or usernameFragment goes into the candidate; sdpMid alone is enough.
    let ws = inward(json!({"eventName": "__ice_candidate",
        "data": {"socketId": "b", "sdpMid": "0", "usernameFragment": "u", "candidate": ""}}));
    assert_eq!(
        ws["candidate"],
        json!({"candidate": "", "sdpMid": "0", "usernameFragment": "u"})
    );
}

#[test]
fn bad_frames_have_their_codes_and_say_why() {
    for (text, code, says) in [
        ("not json", ErrorCode::BadMessage, "not JSON"),
        ("[1]", ErrorCode::BadMessage, "eventName"),
        (
            r#"{"type":"join","room":"r"}"#,
            ErrorCode::BadMessage,
            "eventName",
        ),
        (r#"{"eventName":5}"#, ErrorCode::BadMessage, "eventName"),
        (
            r#"{"eventName":"__join","data":"r"}"#,
            ErrorCode::BadMessage,
            "data",
        ),
        (
            r#"{"eventName":"__join","data":{"room":7}}"#,
            ErrorCode::BadMessage,
            "room",
        ),
        (
            r#"{"eventName":"__dance"}"#,
            ErrorCode::UnknownType,
            "__dance",
        ),
        (
            r#"{"eventName":"__offer","data":{"sdp":"x"}}"#,
            ErrorCode::BadMessage,
            "socketId",
        ),
        (
            r#"{"eventName":"__offer","data":{"socketId":"b"}}"#,
            ErrorCode::BadMessage,
            "sdp",
        ),
        (
            r#"{"eventName":"__answer","data":{"socketId":"b","sdp":{"type":"answer"}}}"#,
            ErrorCode::BadMessage,
            "sdp",
        ),
        (
            r#"{"eventName":"__offer","data":{"socketId":"b","sdp":"x","from":"c"}}"#,
            ErrorCode::BadMessage,
            "server",
        ),
        (
            r#"{"eventName":"__offer","data":{"socketId":"b","sdp":"x","to":"c"}}"#,
            ErrorCode::BadMessage,
            "server",
        ),
        (
            r#"{"eventName":"__ice_candidate","data":{"socketId":"b","label":0}}"#,
            ErrorCode::BadMessage,
            "candidate",
        ),
        (
            r#"{"eventName":"__ice_candidate","data":{"socketId":"b","candidate":"c"}}"#,
            ErrorCode::BadMessage,
            "label",
        ),
        (
            r#"{"eventName":"__ice_candidate","data":{"socketId":"b","candidate":"c","label":"0"}}"#,
            ErrorCode::BadMessage,
            "label",
        ),
        (
            r#"{"eventName":"__ice_candidate","data":{"socketId":"b","candidate":"c","label":-1}}"#,
            ErrorCode::BadMessage,
            "label",
        ),
        (
            r#"{"eventName":"__ice_candidate","data":{"socketId":"b","candidate":"c","label":0,"sdpMid":1}}"#,
            ErrorCode::BadMessage,
            "sdpMid",
        ),
    ] {
        let e = refused(text);
        assert_eq!(e.code, code, "{text}: {e:?}");
        assert!(e.message.contains(says), "{text}: {}", e.message);
    }
    // The reply stays small whatever the input.
    let e = refused(&format!(r#"{{"eventName":"{}"}}"#, "é".repeat(10_000)));
    assert!(e.to_json().len() < 300, "{}", e.to_json());
}

#[test]
fn server_messages_become_events() {
    let got = outward(
        json!({"type": "peers", "you": "me", "room": "r", "peers": ["a", "b"], "iceServers": []}),
    );
    assert_eq!(
        got,
        json!({"eventName": "_peers",
            "data": {"connections": ["a", "b"], "you": "me", "room": "r", "iceServers": []}})
    );
    assert_eq!(
        outward(json!({"type": "new_peer", "id": "a"})),
        json!({"eventName": "_new_peer", "data": {"socketId": "a"}})
    );
    assert_eq!(
        outward(json!({"type": "remove_peer", "id": "a"})),
        json!({"eventName": "_remove_peer", "data": {"socketId": "a"}})
    );
    assert_eq!(
        outward(json!({"type": "pong"})),
        json!({"eventName": "_pong", "data": {}})
    );
    let error = SignalError::new(ErrorCode::UnknownPeer, "no peer \"x\"").to_json();
    assert_eq!(
        Dialect::SkyRtc.outgoing(error),
        json!({"eventName": "_error", "data": {"code": "unknown_peer", "message": "no peer \"x\""}})
            .to_string()
    );
}

#[test]
fn relayed_offers_carry_the_description_and_the_sender() {
    let relayed = protocol::relayed(
        &json!({"type": "answer", "to": "b", "sdp": SDP, "x": 1}).to_string(),
        "a",
    );
    assert_eq!(
        outward(serde_json::from_str(&relayed).unwrap()),
        json!({"eventName": "_answer",
            "data": {"sdp": {"type": "answer", "sdp": SDP}, "socketId": "a", "x": 1}})
    );
    // A sender's own socketId does not pass for the server's.
    let got =
        outward(json!({"type": "offer", "from": "a", "to": "b", "sdp": SDP, "socketId": "z"}));
    assert_eq!(got["data"]["socketId"], "a");
}

#[test]
fn relayed_candidates_carry_sdp_mline_index_beside_label() {
    let got = outward(json!({"type": "candidate", "from": "a", "to": "b",
        "candidate": {"candidate": "candidate:1", "sdpMLineIndex": 0, "sdpMid": "0", "usernameFragment": null}}));
    assert_eq!(
        got,
        json!({"eventName": "_ice_candidate", "data": {"candidate": "candidate:1",
            "label": 0, "sdpMLineIndex": 0, "sdpMid": "0", "socketId": "a"}})
    );
}

/// A SkyRTC client's offer, answer and candidate reach a SkyRTC peer as the original
/// server sent them, plus `sdpMLineIndex`.
#[test]
fn skyrtc_to_skyrtc_round_trips() {
    let cases = [
        (
            json!({"eventName": "__offer", "data": {"socketId": "b", "sdp": {"type": "offer", "sdp": SDP}}}),
            json!({"eventName": "_offer", "data": {"sdp": {"type": "offer", "sdp": SDP}, "socketId": "a"}}),
        ),
        (
            json!({"eventName": "__answer", "data": {"socketId": "b", "sdp": {"type": "answer", "sdp": SDP}}}),
            json!({"eventName": "_answer", "data": {"sdp": {"type": "answer", "sdp": SDP}, "socketId": "a"}}),
        ),
        (
            json!({"eventName": "__ice_candidate", "data": {"socketId": "b", "label": 2, "candidate": "candidate:9"}}),
            json!({"eventName": "_ice_candidate",
                "data": {"label": 2, "sdpMLineIndex": 2, "candidate": "candidate:9", "socketId": "a"}}),
        ),
    ];
    for (sent, received) in cases {
        let text = sent.to_string();
        let ws = Dialect::SkyRtc.incoming(&text).unwrap();
        let relayed = protocol::relayed(&ws, "a");
        let got: Value = serde_json::from_str(&Dialect::SkyRtc.outgoing(relayed)).unwrap();
        assert_eq!(got, received, "{sent}");
    }
}

#[test]
fn what_has_no_event_goes_as_it_is() {
    for text in [
        "not json",
        r#"{"type":"other"}"#,
        r#"{"no":"type"}"#,
        r#"{"type":"offer","sdp":"x"}"#,
    ] {
        assert_eq!(Dialect::SkyRtc.outgoing(text.to_owned()), text);
    }
}

mod properties {
    use super::super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any text gets a `/ws` message the core parses, or a coded error.
        #[test]
        fn any_text_translates_or_is_refused(text in ".{0,64}") {
            match Dialect::SkyRtc.incoming(&text) {
                Ok(ws) => { let _ = crate::signal::protocol::parse(&ws); }
                Err(e) => prop_assert!(!e.message.is_empty()),
            }
        }

        #[test]
        fn any_room_joins_itself(room in ".{1,64}") {
            let frame = json!({"eventName": "__join", "data": {"room": room}}).to_string();
            let ws = Dialect::SkyRtc.incoming(&frame).unwrap();
            prop_assert_eq!(
                crate::signal::protocol::parse(&ws).unwrap(),
                crate::signal::protocol::ClientMessage::Join { room }
            );
        }

        /// Whatever a relayed message holds, the SkyRTC peer gets JSON naming its sender.
        #[test]
        fn relays_always_name_their_sender(
            kind in prop::sample::select(vec!["offer", "answer", "candidate"]),
            sdp in ".{0,16}",
            extra in ".{0,8}",
        ) {
            let text = json!({"type": kind, "from": "a", "to": "b", "sdp": sdp, "candidate": extra})
                .to_string();
            let got: Value = serde_json::from_str(&Dialect::SkyRtc.outgoing(text)).unwrap();
            prop_assert_eq!(&got["data"]["socketId"], "a");
        }
    }
}
