//! [`TurnConn`]: a TURN client session over one [`Conn`]: requests sent through
//! [`crate::client::Client`] (long-term credentials, one more try after a 401 or 438), their
//! responses matched by transaction ID, and what else arrives (relayed data) kept for
//! [`TurnConn::recv_relayed`]. Over UDP an unanswered request is sent again.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::conn::Conn;
use crate::client::{Client, Inbound, Request, Response, parse_inbound};

/// How long a UDP request waits before it is sent again.
const RETRANSMIT: Duration = Duration::from_millis(500);

/// Tries for one request: the first, and one per fresh challenge (401, then 438).
const TRIES: usize = 3;

/// One connection's TURN session.
pub struct TurnConn {
    conn: Conn,
    client: Client,
    relayed: VecDeque<Inbound>,
}

impl TurnConn {
    /// A session over `conn` with `username` and `password`.
    pub fn new(conn: Conn, username: &str, password: &str) -> TurnConn {
        TurnConn {
            conn,
            client: Client::new(username, password),
            relayed: VecDeque::new(),
        }
    }

    /// Sends `req` and returns its final response: after a 401 or 438 with a fresh nonce,
    /// signed again and resent; a 401 that repeats (the credentials refused) is returned.
    pub fn request(&mut self, req: &Request, deadline: Instant) -> Result<Response, String> {
        let mut last = None;
        for _ in 0..TRIES {
            let msg = self.client.request(req).map_err(|e| e.to_string())?;
            let response = self.exchange(&msg.raw, msg.transaction_id, deadline)?;
            if !self.client.handle_challenge(&response) {
                return Ok(response);
            }
            last = Some(response);
        }
        last.ok_or_else(|| "no response".to_owned())
    }

    /// Sends an indication or ChannelData (no response).
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.conn.send(bytes).map_err(|e| format!("send: {e}"))
    }

    /// Whether the connection is a stream (ChannelData is then padded).
    pub fn is_stream(&self) -> bool {
        !self.conn.is_datagram()
    }

    /// The next Data indication or ChannelData, waiting until `deadline`.
    pub fn recv_relayed(&mut self, deadline: Instant) -> Result<Inbound, String> {
        if let Some(relayed) = self.relayed.pop_front() {
            return Ok(relayed);
        }
        loop {
            let packet = self.conn.recv(deadline).map_err(|e| e.to_string())?;
            match parse_inbound(&packet) {
                Ok(Inbound::Response(_)) | Err(_) => {}
                Ok(relayed) => return Ok(relayed),
            }
        }
    }

    /// Sends `raw` and waits for the response with transaction ID `id`, sending again over
    /// UDP every [`RETRANSMIT`].
    fn exchange(
        &mut self,
        raw: &[u8],
        id: stun::agent::TransactionId,
        deadline: Instant,
    ) -> Result<Response, String> {
        self.conn.send(raw).map_err(|e| format!("send: {e}"))?;
        let mut resend = Instant::now() + RETRANSMIT;
        loop {
            let wait = if self.conn.is_datagram() {
                resend.min(deadline)
            } else {
                deadline
            };
            match self.conn.recv(wait) {
                Ok(packet) => match parse_inbound(&packet) {
                    Ok(Inbound::Response(r)) if r.transaction_id == id => return Ok(r),
                    Ok(Inbound::Response(_)) | Err(_) => {}
                    Ok(relayed) => self.relayed.push_back(relayed),
                },
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    if Instant::now() >= deadline {
                        return Err("no response before the timeout".to_owned());
                    }
                    self.conn.send(raw).map_err(|e| format!("send: {e}"))?;
                    resend = Instant::now() + RETRANSMIT;
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

/// A response in words: "401 Unauthorized", or "success"; the RFC's reason phrase where the
/// server sent none.
pub fn describe(response: &Response) -> String {
    match &response.error {
        Some((code, reason)) if reason.trim().is_empty() => match reason_phrase(*code) {
            Some(phrase) => format!("{code} {phrase}"),
            None => code.to_string(),
        },
        Some((code, reason)) => format!("{code} {}", reason.trim()),
        None => "success".to_owned(),
    }
}

/// The reason phrases of RFC 8489 §14.8 and RFC 8656 §18.
fn reason_phrase(code: u16) -> Option<&'static str> {
    Some(match code {
        300 => "Try Alternate",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        420 => "Unknown Attribute",
        437 => "Allocation Mismatch",
        438 => "Stale Nonce",
        440 => "Address Family not Supported",
        441 => "Wrong Credentials",
        442 => "Unsupported Transport Protocol",
        443 => "Peer Address Family Mismatch",
        486 => "Allocation Quota Reached",
        500 => "Server Error",
        508 => "Insufficient Capacity",
        _ => return None,
    })
}

/// The relayed address of a successful Allocate, or why there is none.
pub fn relayed_address(response: &Response) -> Result<SocketAddr, String> {
    if !response.is_success() {
        return Err(describe(response));
    }
    response
        .relayed_address()
        .ok_or_else(|| "success without XOR-RELAYED-ADDRESS".to_owned())
}
