//! The PROXY protocol at the listeners' doors (`[listen] proxy-protocol-from`): who a
//! connection's real client is, read in the connection's own task, never in an accept loop.
//!
//! - From a trusted load balancer the header is required: it is read (parsed by
//!   [`crate::proxy_protocol`]) and consumed exactly, byte for byte, so what follows it (a
//!   STUN message, a TLS ClientHello, an HTTP request) stays in the socket for whoever
//!   serves the connection next. No header, a malformed one, or none complete within the
//!   timeout (`tls-handshake-timeout`): the connection is refused. The specification asks
//!   receivers not to guess whether a header is there; guessing would also let a load
//!   balancer set up without it pass every client off as itself, under one per-IP cap.
//! - From any other address a header is not believed: a connection that starts with one is
//!   refused; any other is served as it is, as the client it comes from (its first bytes are
//!   peeked, not read).
//!
//! Every outcome is counted for `/metrics` ([`ProxyStats`]). The listeners call
//! [`Policy::client`]; the per-IP caps are theirs to apply, to the address it returns.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use ipnet::IpNet;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::config::{ListenConfig, ProxyListener};
use crate::metrics::{Counted, Family, Report};
use crate::proxy_protocol::{self, Invalid, MAX_HEADER, Sniff, Source};

static PROXY_HEADERS: Family = Family::counter(
    "proxy_protocol_total",
    "PROXY protocol on the TCP, TLS, HTTP and HTTPS listeners, by outcome: a v1 or v2 header \
     accepted from a trusted load balancer, or the connection refused: a header from an \
     untrusted address, no header or a malformed one from a trusted address, or none within \
     tls-handshake-timeout.",
);

/// How a connection's header went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    V1,
    V2,
    Untrusted,
    Missing,
    Malformed,
    Timeout,
}

impl Outcome {
    const ALL: [Outcome; 6] = [
        Outcome::V1,
        Outcome::V2,
        Outcome::Untrusted,
        Outcome::Missing,
        Outcome::Malformed,
        Outcome::Timeout,
    ];

    fn label(self) -> &'static str {
        match self {
            Outcome::V1 => "accepted_v1",
            Outcome::V2 => "accepted_v2",
            Outcome::Untrusted => "refused_untrusted",
            Outcome::Missing => "refused_missing",
            Outcome::Malformed => "refused_malformed",
            Outcome::Timeout => "refused_timeout",
        }
    }
}

/// What every listener's PROXY protocol step counted.
#[derive(Debug, Default)]
pub(super) struct ProxyStats([AtomicU64; Outcome::ALL.len()]);

impl ProxyStats {
    fn count(&self, outcome: Outcome) {
        self.0[outcome as usize].fetch_add(1, Relaxed);
    }
}

impl Counted for ProxyStats {
    fn report(&self, report: &mut Report) {
        let counts = Outcome::ALL.map(|o| (o.label(), self.0[o as usize].load(Relaxed)));
        report.each(&PROXY_HEADERS, "outcome", counts);
    }
}

/// One listener's PROXY protocol rules.
#[derive(Debug)]
pub(super) struct Policy {
    trusted: Box<[IpNet]>,
    timeout: Duration,
    stats: Arc<ProxyStats>,
}

/// Why a connection was refused: the log's words.
enum Refused {
    Untrusted,
    Header(Invalid),
    Closed,
}

/// How long to wait before peeking again at an untrusted connection whose first bytes could
/// still begin a signature.
const SNIFF_PAUSE: Duration = Duration::from_millis(10);

impl Policy {
    /// The rules for a listener of `kind`, or `None` when PROXY protocol is off for it;
    /// `timeout`: how long a header may take.
    pub(super) fn for_listener(
        listen: &ListenConfig,
        kind: ProxyListener,
        timeout: Duration,
        stats: &Arc<ProxyStats>,
    ) -> Option<Arc<Self>> {
        let trusted = listen.proxy_protocol_for(kind)?;
        Some(Arc::new(Self {
            trusted: trusted.into(),
            timeout,
            stats: Arc::clone(stats),
        }))
    }

    /// Whether `peer` is a trusted load balancer (which must send a header).
    pub(super) fn trusts(&self, peer: SocketAddr) -> bool {
        let ip: IpAddr = peer.ip().to_canonical();
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The real client of a connection from `peer`: the header's source from a trusted
    /// load balancer (its own address for LOCAL or UNKNOWN), `peer` itself from anyone
    /// else. `None`: refused (counted and logged); close the connection. Bounded in time by
    /// the timeout and in bytes by [`MAX_HEADER`]; what follows the header stays unread.
    pub(super) async fn client(
        &self,
        stream: &mut TcpStream,
        peer: SocketAddr,
    ) -> Option<SocketAddr> {
        let trusted = self.trusts(peer);
        let step = async {
            if trusted {
                self.read_header(stream, peer).await
            } else {
                refuse_header(stream).await.map(|()| peer)
            }
        };
        let refused = match tokio::time::timeout(self.timeout, step).await {
            Ok(Ok(client)) => return Some(client),
            // Not spoken yet: its own protocol's timers take over.
            Err(_) if !trusted => return Some(peer),
            Err(_) => {
                self.stats.count(Outcome::Timeout);
                tracing::debug!(%peer, "no PROXY protocol header in time: refused");
                return None;
            }
            Ok(Err(refused)) => refused,
        };
        match refused {
            Refused::Untrusted => {
                self.stats.count(Outcome::Untrusted);
                tracing::debug!(
                    %peer,
                    "PROXY protocol header from an address outside proxy-protocol-from: refused"
                );
            }
            Refused::Header(why) => {
                let outcome = match why {
                    Invalid::Missing => Outcome::Missing,
                    Invalid::Malformed(_) => Outcome::Malformed,
                };
                self.stats.count(outcome);
                tracing::debug!(%peer, "{why} from a trusted load balancer: refused");
            }
            Refused::Closed => {}
        }
        None
    }

    /// Reads exactly the header: peeks at what arrived, consumes what belongs to the
    /// header (all of it while incomplete, up to its end once complete), until it is
    /// complete; counts it.
    async fn read_header(
        &self,
        stream: &mut TcpStream,
        peer: SocketAddr,
    ) -> Result<SocketAddr, Refused> {
        let mut buf = [0u8; MAX_HEADER];
        let mut have = 0;
        while have < MAX_HEADER {
            let n = stream
                .peek(&mut buf[have..])
                .await
                .map_err(|_| Refused::Closed)?;
            if n == 0 {
                return Err(Refused::Closed);
            }
            let seen = have + n;
            let (header, upto) = match proxy_protocol::parse(&buf[..seen]) {
                Ok(Some(header)) => (Some(header), header.len),
                Ok(None) => (None, seen),
                Err(why) => return Err(Refused::Header(why)),
            };
            stream
                .read_exact(&mut buf[have..upto])
                .await
                .map_err(|_| Refused::Closed)?;
            have = upto;
            if let Some(header) = header {
                let version = if header.version == 1 {
                    Outcome::V1
                } else {
                    Outcome::V2
                };
                self.stats.count(version);
                return Ok(match header.source {
                    Source::Claimed(client) => client,
                    Source::Own => peer,
                });
            }
        }
        // parse() refuses a header before it passes MAX_HEADER; this is belt and braces.
        Err(Refused::Header(Invalid::Malformed("too long")))
    }
}

/// Refuses a connection that starts with a header; leaves every byte in the socket.
async fn refuse_header(stream: &TcpStream) -> Result<(), Refused> {
    let mut buf = [0u8; proxy_protocol::V2_SIGNATURE.len()];
    loop {
        let n = stream.peek(&mut buf).await.map_err(|_| Refused::Closed)?;
        match proxy_protocol::sniff(&buf[..n]) {
            Sniff::V1 | Sniff::V2 => return Err(Refused::Untrusted),
            // Closed before a byte: whoever serves it sees the end.
            _ if n == 0 => return Ok(()),
            Sniff::Neither => return Ok(()),
            Sniff::Undecided => tokio::time::sleep(SNIFF_PAUSE).await,
        }
    }
}

#[cfg(test)]
mod tests;
