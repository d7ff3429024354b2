//! systemd's notify protocol (`Type=notify`): READY after every socket is bound, RELOADING
//! and READY around a reload, STOPPING on the way out, and watchdog pings when `WatchdogSec`
//! is set. Without systemd (no NOTIFY_SOCKET) every call is a no-op.

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!("systemd notify failed: {e}");
    }
}

/// Every socket is bound and served.
pub(super) fn ready() {
    send(&[NotifyState::Ready, NotifyState::Status("serving")]);
}

/// A reload starts; [`ready`] ends it.
pub(super) fn reloading() {
    let mut states = vec![NotifyState::Reloading];
    // systemd ≥ 253 wants the reload stamped with CLOCK_MONOTONIC.
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    send(&states);
}

/// Shutting down.
pub(super) fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// Pings the watchdog at half its interval until `shutdown`, if systemd asked for it.
pub(super) async fn watchdog(shutdown: CancellationToken) {
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return;
    };
    let mut tick = tokio::time::interval(interval / 2);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => send(&[NotifyState::Watchdog]),
        }
    }
}
