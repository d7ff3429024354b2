//! The HTTP listener (axum on the same runtime): the signaling WebSocket (`/ws`, and
//! `/skyrtc` in SkyRTC's dialect), the ICE-servers API, the pages, and health. `/ws`,
//! `/skyrtc` and `/api/ice-servers` are guarded alike (origin and token rules), so the API
//! never turns rturn into an open relay.

pub(crate) mod admin;
mod ice;
pub mod origin;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;

pub use ice::IceServers;

use crate::signal::hub::Hub;
use crate::signal::refusals::Refusal;
use crate::signal::session;
use crate::signal::skyrtc::Dialect;
use crate::signal::token;

/// The client's address, for both the plain and the TLS listener (each request carries it
/// as `ConnectInfo<ClientAddr>`, see `server::http_conn`).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// What the handlers share.
#[derive(Clone)]
pub struct HttpState {
    /// The signaling hub.
    pub hub: Arc<Hub>,
    /// Stops WebSocket tasks on shutdown.
    pub shutdown: CancellationToken,
    /// The `/api/ice-servers` body, fresh credentials each call.
    pub ice: Arc<dyn Fn(std::net::IpAddr) -> serde_json::Value + Send + Sync>,
    /// The `/metrics` body (gathered from the workers, so awaited).
    pub metrics:
        Arc<dyn Fn() -> std::pin::Pin<Box<dyn Future<Output = String> + Send>> + Send + Sync>,
    /// This server's own origins and the settings waiting for a restart (a reload sets both).
    pub site: Arc<Site>,
}

/// What a reload changes on the HTTP side besides the hub's settings.
#[derive(Debug, Default)]
pub struct Site {
    own_origins: std::sync::RwLock<Arc<Vec<String>>>,
    restart_required: std::sync::RwLock<Arc<Vec<String>>>,
    /// Whether the kernel relays bound channels (`relay.offload`), and why not; set at start.
    offload: std::sync::OnceLock<(bool, Option<String>)>,
}

impl Site {
    /// The origins of this server's own pages ([`origin::own_origins`]).
    pub fn set_own_origins(&self, origins: Vec<String>) {
        *self.own_origins.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(origins);
    }

    /// The config keys changed since start that only a restart applies (for `/healthz`).
    pub fn set_restart_required(&self, keys: Vec<String>) {
        *self
            .restart_required
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
    }

    /// Whether the kernel relays bound UDP channels by itself, and if not, why (for
    /// `/healthz`). Set once, at start: the first call wins.
    pub fn set_offload(&self, active: bool, reason: Option<String>) {
        let _ = self.offload.set((active, reason));
    }

    fn own_origins(&self) -> Arc<Vec<String>> {
        Arc::clone(&self.own_origins.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn restart_required(&self) -> Arc<Vec<String>> {
        Arc::clone(
            &self
                .restart_required
                .read()
                .unwrap_or_else(|e| e.into_inner()),
        )
    }
}

/// All routes.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { Html(include_str!("../../web/index.html")) }),
        )
        .route(
            "/room/{name}",
            get(|| async { Html(include_str!("../../web/room.html")) }),
        )
        .route("/static/{file}", get(asset))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/ice-servers", get(ice_servers))
        .route("/ws", get(signal_ws::<false>))
        .route("/ws/{namespace}", get(signal_ws::<false>))
        .route("/skyrtc", get(signal_ws::<true>))
        .route("/skyrtc/{namespace}", get(signal_ws::<true>))
        .with_state(state)
}

async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "app.css" => (include_str!("../../web/app.css"), "text/css; charset=utf-8"),
        "trickle.js" => (
            include_str!("../../web/trickle.js"),
            "text/javascript; charset=utf-8",
        ),
        "room.js" => (
            include_str!("../../web/room.js"),
            "text/javascript; charset=utf-8",
        ),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

async fn healthz(State(state): State<HttpState>) -> Response {
    let (peers, rooms) = state.hub.counts();
    let mut body = serde_json::json!({"status": "ok", "peers": peers, "rooms": rooms});
    let restart = state.site.restart_required();
    if !restart.is_empty() {
        // Still "ok": the node serves, on the settings it started with for these keys.
        body["restart_required"] = serde_json::json!(*restart);
    }
    if let Some((active, reason)) = state.site.offload.get() {
        // Informational: a server without the offload relays every packet in user space.
        body["offload"] = serde_json::json!({"active": active, "reason": reason});
    }
    if let Some(cluster) = state.hub.cluster() {
        // Degraded, not failed: local rooms keep working, so a load balancer should keep
        // sending clients here; the status tells the operator rooms do not cross nodes now.
        let status = cluster.status();
        if !status.up {
            body["status"] = "degraded".into();
        }
        body["cluster"] = serde_json::json!({
            "node": status.node_id,
            "redis": if status.up { "up" } else { "down" },
            "down_for_seconds": status.down_for,
            "error": status.error,
        });
    }
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn metrics(State(state): State<HttpState>) -> Response {
    let body = (state.metrics)().await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// Origin and token rules shared by `/ws` and `/api/ice-servers`, for `namespace` (`""`:
/// plain `/ws`). On success, the room a room-bound token allows (`None`: any room). Every
/// refusal is counted.
fn guard(
    state: &HttpState,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    namespace: &str,
) -> Result<Option<String>, (StatusCode, String)> {
    let refusals = &state.hub.refusals;
    let config = state.hub.config();
    let origin = headers
        .get(header::ORIGIN)
        .map(|o| o.to_str().unwrap_or("?"));
    if !origin::allowed(&config.allowed_origins, &state.site.own_origins(), origin) {
        refusals.refused(Refusal::Origin);
        return Err((StatusCode::FORBIDDEN, "origin not allowed\n".to_owned()));
    }
    let Some(secret) = &config.token_secret else {
        return Ok(None);
    };
    let token = query.get("token").map(String::as_str);
    let room = query.get("room").map(String::as_str);
    token::check(secret.as_bytes(), token, room, namespace, unix_now()).map_err(|why| {
        refusals.refused(Refusal::Token);
        (StatusCode::UNAUTHORIZED, why)
    })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn ice_servers(
    State(state): State<HttpState>,
    ConnectInfo(ClientAddr(peer)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    // The API belongs to no namespace; `&namespace=NS` names the one the token is for.
    let namespace = query.get("namespace").map_or("", String::as_str);
    if let Err(refusal) = guard(&state, &headers, &query, namespace) {
        return refusal.into_response();
    }
    // Every answer mints TURN credentials, as a join does: the same per-address budget.
    if !state.hub.take_join(peer.ip()) {
        let retry = [(header::RETRY_AFTER, "60")];
        return (StatusCode::TOO_MANY_REQUESTS, retry, "rate_limited\n").into_response();
    }
    let body = (state.ice)(peer.ip());
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// `/ws`, `/ws/{namespace}` and, with `SKYRTC`, `/skyrtc` and `/skyrtc/{namespace}`: the
/// signaling WebSocket, in SkyRTC's dialect on the latter (guarded and served alike, over
/// the same rooms, so the peers of both dialects meet).
async fn signal_ws<const SKYRTC: bool>(
    state: State<HttpState>,
    peer: ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    query: Query<HashMap<String, String>>,
    namespace: Option<Path<String>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let namespace = namespace.map(|Path(n)| n).unwrap_or_default();
    let dialect = if SKYRTC { Dialect::SkyRtc } else { Dialect::Ws };
    upgrade_ws(state, peer, headers, query, upgrade, namespace, dialect)
}

/// Initial WebSocket read and write buffer per client.
const WS_BUFFER: usize = 4096;

fn upgrade_ws(
    State(state): State<HttpState>,
    ConnectInfo(ClientAddr(peer)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    upgrade: WebSocketUpgrade,
    namespace: String,
    dialect: Dialect,
) -> Response {
    let only_room = match guard(&state, &headers, &query, &namespace) {
        Ok(room) => room,
        Err(refusal) => return refusal.into_response(),
    };
    let Some(slot) = state.hub.admit(peer.ip()) else {
        return (StatusCode::SERVICE_UNAVAILABLE, "too many connections\n").into_response();
    };
    let config = state.hub.config();
    // Frames up to twice the limit are read and answered with too_large; beyond that the
    // WebSocket layer closes the connection, so memory per client stays bounded.
    let frame_cap = config.max_message_size.saturating_mul(2).max(64 * 1024);
    let hub = Arc::clone(&state.hub);
    let shutdown = state.shutdown.clone();
    upgrade
        // tungstenite reserves 128 KiB per direction by default: 1.3 GB for 10 000 idle
        // clients (BENCHMARKS.md). Signaling messages are a few KiB; buffers grow for a
        // larger one and the frame cap still bounds them.
        .read_buffer_size(WS_BUFFER)
        .write_buffer_size(WS_BUFFER)
        .max_message_size(frame_cap)
        .max_frame_size(frame_cap)
        .on_upgrade(move |socket| {
            session::serve(socket, hub, namespace, only_room, dialect, slot, shutdown)
        })
}
