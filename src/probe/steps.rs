//! What each [`Check`] does on the wire: one function per step, each returning the detail
//! of a pass or the reason of a failure, never waiting past its deadline.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use rustls::ClientConfig;

use super::conn::{Conn, resolve};
use super::credentials::Credentials;
use super::http;
use super::plan::{Endpoint, Web};
use super::turn::{TurnConn, describe, relayed_address};
use crate::client::data::channel_data_into;
use crate::client::{Inbound, Request};

/// A peer rturn refuses by default: the cloud metadata address (link-local). Only a
/// CreatePermission naming it is sent; nothing is ever sent to it.
pub const FORBIDDEN_PEER: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)), 80);

/// The channel B binds to reach A.
const CHANNEL: u16 = 0x4000;

/// What every step needs.
pub struct Context {
    /// Who to authenticate as.
    pub credentials: Credentials,
    /// The TLS client settings for `turns:` and `https:`.
    pub tls: Arc<ClientConfig>,
    /// `?token=…` for `/api/ice-servers`, when the server wants one.
    pub token: Option<String>,
}

fn session(ep: &Endpoint, cx: &Context, deadline: Instant) -> Result<TurnConn, String> {
    let addr = resolve(&ep.host, ep.port).map_err(|e| format!("{}: {e}", ep.host))?;
    let conn = Conn::connect(addr, ep.transport, &ep.host, &cx.tls, deadline)
        .map_err(|e| format!("connect: {e}"))?;
    let c = &cx.credentials;
    Ok(TurnConn::new(conn, &c.username, &c.password))
}

/// Binding: the mapped address.
pub fn binding(ep: &Endpoint, cx: &Context, deadline: Instant) -> Result<String, String> {
    let mut turn = session(ep, cx, deadline)?;
    let response = turn.request(&Request::binding(), deadline)?;
    if !response.is_success() {
        return Err(describe(&response));
    }
    let mapped = (response.mapped).ok_or("success without XOR-MAPPED-ADDRESS")?;
    Ok(format!("mapped {mapped}"))
}

/// An allocation made on a fresh connection; [`release`] deletes it.
struct Allocation {
    turn: TurnConn,
    relay: SocketAddr,
    /// LIFETIME granted, in seconds.
    lifetime: u32,
}

fn allocate_on(ep: &Endpoint, cx: &Context, deadline: Instant) -> Result<Allocation, String> {
    let mut turn = session(ep, cx, deadline)?;
    let response = turn.request(&Request::allocate(), deadline)?;
    let relay = relayed_address(&response).map_err(|e| format!("Allocate: {e}"))?;
    let lifetime = response.lifetime.unwrap_or_default();
    Ok(Allocation {
        turn,
        relay,
        lifetime,
    })
}

/// Deletes the allocation (Refresh with lifetime 0); best effort, its answer is not awaited
/// past `deadline`.
fn release(mut a: Allocation, deadline: Instant) {
    let _ = a.turn.request(&Request::refresh(0), deadline);
}

/// Allocate: the relayed address and lifetime; the allocation is deleted again.
pub fn allocate(ep: &Endpoint, cx: &Context, deadline: Instant) -> Result<String, String> {
    let a = allocate_on(ep, cx, deadline)?;
    let detail = format!("relayed {}, lifetime {} s", a.relay, a.lifetime);
    release(a, deadline);
    Ok(detail)
}

/// Two allocations A and B: each permits the other's relayed address; A sends to B with a
/// Send indication, B to A over a bound channel; each must receive the other's bytes from
/// the other's relayed address.
pub fn relay(ep: &Endpoint, cx: &Context, deadline: Instant) -> Result<String, String> {
    let mut a = allocate_on(ep, cx, deadline).map_err(|e| format!("A: {e}"))?;
    let mut b = allocate_on(ep, cx, deadline).map_err(|e| format!("B: {e}"))?;
    let result = relay_between(&mut a, &mut b, deadline);
    release(a, deadline);
    release(b, deadline);
    result
}

fn relay_between(
    a: &mut Allocation,
    b: &mut Allocation,
    deadline: Instant,
) -> Result<String, String> {
    let (a_relay, b_relay) = (a.relay, b.relay);
    for (who, from, to) in [("A", &mut *a, b_relay), ("B", &mut *b, a_relay)] {
        let response = from
            .turn
            .request(&Request::create_permission(&[to]), deadline)?;
        match response.error_code() {
            None => {}
            Some(403) => {
                return Err(format!(
                    "{who}: CreatePermission for {to}: {}: the server's peer rules refuse its \
                     own relay addresses (allow-loopback-peers, or the relay-ip's address \
                     class; clients behind this server cannot relay to each other)",
                    describe(&response)
                ));
            }
            Some(_) => {
                return Err(format!(
                    "{who}: CreatePermission for {to}: {}",
                    describe(&response)
                ));
            }
        }
    }
    let ab = b"rturn probe: A to B".as_slice();
    let send = Request::send(b.relay, ab).build(stun::agent::TransactionId::new(), None);
    let send = send.map_err(|e| e.to_string())?;
    a.turn.send(&send.raw)?;
    expect(&mut b.turn, a.relay, ab, deadline).map_err(|e| format!("A to B: {e}"))?;

    let response = b
        .turn
        .request(&Request::channel_bind(CHANNEL, a.relay), deadline)?;
    if !response.is_success() {
        return Err(format!(
            "B: ChannelBind to {}: {}",
            a.relay,
            describe(&response)
        ));
    }
    let ba = b"rturn probe: B to A".as_slice();
    let mut frame = Vec::new();
    channel_data_into(&mut frame, CHANNEL, ba, b.turn.is_stream()).map_err(|e| e.to_string())?;
    b.turn.send(&frame)?;
    expect(&mut a.turn, b.relay, ba, deadline).map_err(|e| format!("B to A: {e}"))?;
    Ok(format!(
        "A {} and B {} relayed to each other (Send indication, ChannelData)",
        a.relay, b.relay
    ))
}

/// Waits for a Data indication of `data` from `peer` (the receiver has no channel bound).
fn expect(
    turn: &mut TurnConn,
    peer: SocketAddr,
    data: &[u8],
    deadline: Instant,
) -> Result<(), String> {
    loop {
        match turn.recv_relayed(deadline)? {
            Inbound::Data { peer: p, data: d } if p == peer && d == data => return Ok(()),
            Inbound::Data { peer: p, .. } => {
                return Err(format!("data from {p}, expected it from {peer}"));
            }
            _ => {}
        }
    }
}

/// CreatePermission for [`FORBIDDEN_PEER`] must be refused with 403.
pub fn forbidden_peer(ep: &Endpoint, cx: &Context, deadline: Instant) -> Result<String, String> {
    let mut a = allocate_on(ep, cx, deadline)?;
    let response = a
        .turn
        .request(&Request::create_permission(&[FORBIDDEN_PEER]), deadline);
    release(a, deadline);
    let response = response?;
    match response.error_code() {
        Some(403) => Ok(format!(
            "CreatePermission for {}: {}",
            FORBIDDEN_PEER.ip(),
            describe(&response)
        )),
        None => Err(format!(
            "CreatePermission for {} succeeded: the server relays to link-local addresses \
             (cloud metadata); deny them (coturn: denied-peer-ip)",
            FORBIDDEN_PEER.ip()
        )),
        Some(_) => Err(format!(
            "CreatePermission for {}: {}, expected 403",
            FORBIDDEN_PEER.ip(),
            describe(&response)
        )),
    }
}

/// `/healthz` answers 200.
pub fn healthz(web: &Web, cx: &Context, deadline: Instant) -> Result<String, String> {
    let (status, body) = http::get(web, "/healthz", &cx.tls, deadline)?;
    let first = body.lines().next().unwrap_or_default().trim();
    match status {
        200 => Ok(format!("200 {first}")),
        _ => Err(format!("{status} {first}")),
    }
}

/// `/api/ice-servers` answers 200 with a non-empty `iceServers` list.
pub fn ice_servers(web: &Web, cx: &Context, deadline: Instant) -> Result<String, String> {
    let path = match &cx.token {
        Some(token) => format!("/api/ice-servers?token={token}"),
        None => "/api/ice-servers".to_owned(),
    };
    let (status, body) = http::get(web, &path, &cx.tls, deadline)?;
    if status != 200 {
        let first = body.lines().next().unwrap_or_default().trim();
        return Err(format!("{status} {first}"));
    }
    let json: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| format!("200 but not JSON: {e}"))?;
    let servers =
        (json.get("iceServers").and_then(|s| s.as_array())).ok_or("200 but no iceServers list")?;
    let urls: Vec<&str> = (servers.iter())
        .filter_map(|s| s.get("urls").and_then(|u| u.as_array()))
        .flatten()
        .filter_map(|u| u.as_str())
        .collect();
    if urls.is_empty() {
        return Err("200 but iceServers has no URL".to_owned());
    }
    Ok(format!("{} URLs: {}", urls.len(), urls.join(" ")))
}
