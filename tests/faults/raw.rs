//! A bare TURN client that does only what a test tells it: Allocate (with the 401 round
//! trip of long-term credentials) and Refresh, over UDP or TCP, and nothing on its own — no
//! refresh timer, no Refresh 0 on drop. That is what a client that vanishes looks like; the
//! `turn` crate's client, which refreshes by itself, cannot play it.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use rturn::client::{Client, Request, Response};
use rturn::testkit::*;
use stun::message::Message;

/// How the client reaches the server.
pub(crate) enum Link {
    Udp(UdpSocket),
    Tcp(TcpStream),
}

/// One client 5-tuple with long-term credentials.
pub(crate) struct RawClient {
    pub(crate) link: Link,
    client: Client,
}

impl RawClient {
    /// A client on a fresh UDP socket.
    pub(crate) fn udp(server: SocketAddr, user: &str, pass: &str) -> Self {
        Self::new(Link::Udp(udp_client(server)), user, pass)
    }

    /// A client on a fresh TCP connection.
    pub(crate) fn tcp(server: SocketAddr, user: &str, pass: &str) -> Self {
        Self::new(Link::Tcp(tcp_client(server)), user, pass)
    }

    fn new(link: Link, user: &str, pass: &str) -> Self {
        Self {
            link,
            client: Client::new(user, pass),
        }
    }

    /// Allocates a UDP relay; `lifetime` is asked for when given. Returns the relayed
    /// address and the lifetime granted, or the error code.
    pub(crate) fn allocate(
        &mut self,
        lifetime: Option<Duration>,
    ) -> Result<(SocketAddr, Duration), u16> {
        let mut req = Request::allocate();
        if let Some(l) = lifetime {
            req = req.lifetime(u32::try_from(l.as_secs()).expect("a short lifetime"));
        }
        let response = self.request(&req)?;
        let relayed = response.relayed_address().expect("XOR-RELAYED-ADDRESS");
        Ok((relayed, Self::lifetime_of(&response)))
    }

    /// Refreshes the allocation for `lifetime` (0 deletes it); returns the lifetime granted.
    pub(crate) fn refresh(&mut self, lifetime: Duration) -> Result<Duration, u16> {
        let secs = u32::try_from(lifetime.as_secs()).expect("a short lifetime");
        let response = self.request(&Request::refresh(secs))?;
        Ok(Self::lifetime_of(&response))
    }

    /// The LIFETIME of a success response.
    fn lifetime_of(response: &Response) -> Duration {
        Duration::from_secs(response.lifetime.expect("LIFETIME").into())
    }

    /// Sends `bytes` as they are (half a message, say).
    pub(crate) fn send_raw(&mut self, bytes: &[u8]) {
        match &mut self.link {
            Link::Udp(s) => {
                s.send(bytes).expect("send");
            }
            Link::Tcp(s) => s.write_all(bytes).expect("write"),
        }
    }

    /// `req`, authenticated once the server has named its realm and nonce (a 401 or 438 is
    /// answered once more with fresh ones; the same ones again mean the credentials were
    /// refused). The success response, or the error code.
    fn request(&mut self, req: &Request) -> Result<Response, u16> {
        for _ in 0..3 {
            let request = self.client.request(req).expect("request builds");
            let response = Response::from_message(&self.exchange(&request)).expect("a response");
            let Some(code) = response.error_code() else {
                return Ok(response);
            };
            if !(code == 401 || code == 438) || !self.client.handle_challenge(&response) {
                return Err(code);
            }
        }
        panic!("no answer after three rounds of credentials");
    }

    fn exchange(&mut self, request: &Message) -> Message {
        match &mut self.link {
            Link::Udp(s) => udp_exchange(s, request),
            Link::Tcp(s) => tcp_exchange(s, request),
        }
    }
}
