//! The `/admin` API, off unless `[admin] token` is set: status, sessions, kick, drain. Every
//! request needs `Authorization: Bearer TOKEN` (compared in constant time). The token is read
//! per request, so a reload that rotates it refuses the old one at once, and one that removes
//! it closes the API.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde_json::json;
use subtle::ConstantTimeEq;
use tokio::sync::mpsc;

use crate::server::Control;
use crate::server::reload::AdminToken;
use crate::server::workers::Workers;

#[derive(Clone)]
struct AdminState {
    token: Arc<AdminToken>,
    workers: Arc<Workers>,
    control: mpsc::Sender<Control>,
    started: Instant,
}

/// The admin routes, to merge into an HTTP router; they answer 404 while no token is set.
pub(crate) fn router(
    token: Arc<AdminToken>,
    workers: Arc<Workers>,
    control: mpsc::Sender<Control>,
) -> Router {
    let state = AdminState {
        token,
        workers,
        control,
        started: Instant::now(),
    };
    Router::new()
        .route("/admin/status", get(status))
        .route("/admin/sessions", get(sessions).delete(kick_user))
        .route("/admin/sessions/{id}", delete(kick_one))
        .route("/admin/drain", post(drain))
        .with_state(state)
}

/// `None` when the request carries the token, else the 401 to answer with (404 while the
/// API is off, as if it did not exist).
fn refusal(state: &AdminState, headers: &HeaderMap) -> Option<Response> {
    let Some(token) = state.token.get() else {
        return Some(
            (
                StatusCode::NOT_FOUND,
                "the admin API is off: set [admin] token in the server's config to turn it on\n",
            )
                .into_response(),
        );
    };
    let given = (headers.get(header::AUTHORIZATION))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
        None
    } else {
        let why = "admin token required: send the [admin] token of the server's config as \
                   Authorization: Bearer TOKEN\n";
        Some((StatusCode::UNAUTHORIZED, why).into_response())
    }
}

fn json_response(value: serde_json::Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

async fn status(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    if let Some(refused) = refusal(&state, &headers) {
        return refused;
    }
    let shards = state.workers.count();
    let snapshot = state.workers.snapshot().await;
    let (allocations, draining) = (snapshot.allocations(), snapshot.draining);
    json_response(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": state.started.elapsed().as_secs(),
        "allocations": allocations,
        "draining": draining,
        "shards": shards,
    }))
}

async fn sessions(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    if let Some(refused) = refusal(&state, &headers) {
        return refused;
    }
    let all = state.workers.sessions().await;
    json_response(json!({ "sessions": all }))
}

async fn kick(state: &AdminState, id: Option<&str>, user: Option<&str>) -> Response {
    let kicked = state.workers.kick(id, user).await;
    if kicked == 0 {
        return (StatusCode::NOT_FOUND, "no such session\n").into_response();
    }
    json_response(json!({ "kicked": kicked }))
}

async fn kick_one(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(refused) = refusal(&state, &headers) {
        return refused;
    }
    kick(&state, Some(&id), None).await
}

async fn kick_user(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(refused) = refusal(&state, &headers) {
        return refused;
    }
    let Some(user) = query.get("user") else {
        return (StatusCode::BAD_REQUEST, "give ?user=NAME\n").into_response();
    };
    kick(&state, None, Some(user)).await
}

async fn drain(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    if let Some(refused) = refusal(&state, &headers) {
        return refused;
    }
    match state.control.send(Control::Drain).await {
        Ok(()) => json_response(json!({ "draining": true })),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response(),
    }
}
