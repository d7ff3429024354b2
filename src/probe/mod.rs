//! `rturn probe`: checks a running STUN/TURN server end to end, as an operator would with
//! coturn's `turnutils_uclient` and the trickle-ICE page, and works against any TURN server.
//!
//! - [`target`]: the URLs probed (`stun:`, `turn:`, `turns:`, `http(s)://`), or the config
//!   file's `[listen]` addresses (pure).
//! - [`credentials`]: who to authenticate as: the command line, `[auth.users]`, or REST
//!   credentials minted from `static-auth-secret` (pure).
//! - [`plan`]: the steps as data, one row per step, skipped where no target applies (pure).
//! - [`report`]: one line per step and the verdict (pure).
//! - [`steps`]: what each step sends and expects; [`turn`]: a TURN session on a
//!   [`conn::Conn`] (blocking UDP, TCP or TLS socket, every wait bounded); [`http`]: GET over
//!   HTTP(S); [`tls`]: the certificate rules (verified, or `--insecure`).
//!
//! [`run`] ties them together: it needs no change to the server's configuration.

pub mod conn;
pub mod credentials;
pub mod http;
pub mod plan;
pub mod report;
pub mod steps;
pub mod target;
pub mod tls;
pub mod turn;

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::Config;
use plan::Check;
use report::{Outcome, StepResult};

/// What the command line asks of the probe.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// The URLs to probe; empty: the config's `[listen]` addresses.
    pub urls: Vec<String>,
    /// USERNAME to use instead of the config's.
    pub user: Option<String>,
    /// Its password.
    pub password: Option<String>,
    /// Accept any TLS certificate.
    pub insecure: bool,
    /// Trust the CA certificates in this PEM file instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// The longest one step may take.
    pub timeout: Duration,
}

/// Runs every step against the targets, writing one line per step and the verdict to `out`
/// as it goes. `Ok(true)` if every step that applied passed; `Err` if the probe cannot start
/// (a bad URL, no target, no credentials).
pub fn run(
    config: Option<&Config>,
    options: &ProbeOptions,
    out: &mut impl Write,
) -> Result<bool, String> {
    let targets = if options.urls.is_empty() {
        let config = config.ok_or("no URL given and no config file to take [listen] from")?;
        target::from_listen(&config.listen)
    } else {
        (options.urls.iter())
            .map(|u| target::parse_url(u).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let credentials = credentials::choose(
        options.user.as_deref(),
        options.password.as_deref(),
        config.map(|c| &c.auth),
        now,
    )?;
    let token = (config.and_then(|c| c.signal.token_secret.as_deref()))
        .and_then(|secret| crate::signal::token::mint(secret.as_bytes(), now + 600, "", None));
    let cx = steps::Context {
        tls: tls::client_config(options.insecure, options.ca_file.as_deref())?,
        credentials,
        token,
    };
    let write = |out: &mut dyn Write, line: &str| {
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(|e| format!("cannot write the report: {e}"))
    };
    write(
        out,
        &format!(
            "probing as {} (from {})",
            cx.credentials.username, cx.credentials.source
        ),
    )?;
    let mut results = Vec::new();
    for check in plan::plan(&targets) {
        let result = run_check(&check, &cx, options.timeout);
        write(out, &report::line(&result))?;
        results.push(result);
    }
    let (verdict, ok) = report::verdict(&results);
    write(out, &verdict)?;
    Ok(ok)
}

/// Runs one check within `timeout`.
fn run_check(check: &Check, cx: &steps::Context, timeout: Duration) -> StepResult {
    let start = Instant::now();
    let deadline = start + timeout;
    let result = match check {
        Check::Binding(e) => steps::binding(e, cx, deadline),
        Check::Allocate(e) => steps::allocate(e, cx, deadline),
        Check::Relay(e) => steps::relay(e, cx, deadline),
        Check::ForbiddenPeer(e) => steps::forbidden_peer(e, cx, deadline),
        Check::Healthz(w) => steps::healthz(w, cx, deadline),
        Check::IceServers(w) => steps::ice_servers(w, cx, deadline),
        Check::Skipped { why, .. } => {
            return StepResult {
                name: check.name(),
                outcome: Outcome::Skip(why.clone()),
                elapsed: Duration::ZERO,
            };
        }
    };
    StepResult {
        name: check.name(),
        outcome: match result {
            Ok(detail) => Outcome::Pass(detail),
            Err(why) => Outcome::Fail(why),
        },
        elapsed: start.elapsed(),
    }
}
