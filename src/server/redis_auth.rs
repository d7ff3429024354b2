//! `[auth] redis`: the task that reads users and REST secrets from Redis every
//! `redis-refresh` (coturn's `redis-userdb` schema, parsed by [`crate::auth::redis`]) and,
//! when they changed, hands every worker the new merged credentials, without a reload.
//! Redis unreachable: the last good set stays, one warning per outage, counted in
//! `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;

use super::auth_store::AuthStore;
use super::workers::Workers;
use crate::auth::redis::{MAX_USERS, RedisCreds, parse, secret_key, user_pattern};
use crate::metrics::{Counted, Family, Report};

/// Each Redis call (connect, SCAN page, MGET, SMEMBERS) gets this long.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// A whole read (a SCAN over a large keyspace is many calls) gets this long.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Keys asked for per SCAN page and per MGET.
const PAGE: usize = 500;

static ERRORS: Family = Family::counter(
    "auth_redis_errors_total",
    "Reads of users and secrets from [auth] redis that failed (the last good set stays).",
);
static LAST_OK: Family = Family::gauge(
    "auth_redis_last_success_seconds",
    "Unix time of the last successful read of [auth] redis (0: none yet).",
);
static USERS: Family = Family::gauge(
    "auth_redis_users",
    "Users read from [auth] redis in the last successful read.",
);
static SECRETS: Family = Family::gauge(
    "auth_redis_secrets",
    "REST secrets read from [auth] redis in the last successful read.",
);
static SKIPPED: Family = Family::gauge(
    "auth_redis_skipped",
    "Entries of [auth] redis left out in the last read (malformed or over the bounds).",
);

/// What `/metrics` shows of the polling.
#[derive(Debug, Default)]
pub(crate) struct RedisAuthStatus {
    errors: AtomicU64,
    last_ok: AtomicU64,
    users: AtomicU64,
    secrets: AtomicU64,
    skipped: AtomicU64,
}

impl Counted for RedisAuthStatus {
    fn report(&self, report: &mut Report) {
        report.value(&ERRORS, self.errors.load(Ordering::Relaxed));
        report.value(&LAST_OK, self.last_ok.load(Ordering::Relaxed));
        report.value(&USERS, self.users.load(Ordering::Relaxed));
        report.value(&SECRETS, self.secrets.load(Ordering::Relaxed));
        report.value(&SKIPPED, self.skipped.load(Ordering::Relaxed));
    }
}

/// What the polling task needs.
pub(super) struct Poller {
    pub(super) client: redis::Client,
    /// The address without its password, for logs.
    pub(super) shown: String,
    pub(super) realm: String,
    pub(super) every: Duration,
    pub(super) store: Arc<AuthStore>,
    pub(super) workers: Arc<Workers>,
    pub(super) status: Arc<RedisAuthStatus>,
}

impl Poller {
    /// Reads Redis now and then every `every` until `shutdown`.
    pub(super) async fn run(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut conn: Option<redis::aio::MultiplexedConnection> = None;
        let failing = AtomicBool::new(false);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let read = tokio::time::timeout(READ_TIMEOUT, self.read(&mut conn));
            // A read under way does not hold up shutdown.
            let read = tokio::select! {
                _ = shutdown.cancelled() => return,
                read = read => read,
            };
            let read = read.unwrap_or_else(|_| Err(format!("no full read in {READ_TIMEOUT:?}")));
            match read {
                Ok(creds) => {
                    if failing.swap(false, Ordering::Relaxed) {
                        tracing::info!(redis = %self.shown, "users and secrets read from Redis again");
                    }
                    self.apply(creds).await;
                }
                Err(e) => {
                    conn = None;
                    self.status.errors.fetch_add(1, Ordering::Relaxed);
                    if !failing.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            redis = %self.shown,
                            "cannot read users and secrets from Redis ({e}); the last ones read stay in force"
                        );
                    }
                }
            }
        }
    }

    async fn apply(&self, creds: RedisCreds) {
        let s = &self.status;
        s.users.store(creds.users.len() as u64, Ordering::Relaxed);
        s.secrets
            .store(creds.secrets.len() as u64, Ordering::Relaxed);
        s.skipped.store(creds.skipped as u64, Ordering::Relaxed);
        let now = SystemTime::now().duration_since(UNIX_EPOCH);
        s.last_ok
            .store(now.map_or(0, |d| d.as_secs()), Ordering::Relaxed);
        let (users, secrets) = (creds.users.len(), creds.secrets.len());
        let _turn = self.store.applying().await;
        if let Some(auth) = self.store.set_redis(creds) {
            self.workers.set_auth(&auth).await;
            tracing::info!(users, secrets, "credentials from Redis applied");
        }
    }

    /// One full read: SCAN the user keys, MGET them, SMEMBERS the secrets.
    async fn read(
        &self,
        conn: &mut Option<redis::aio::MultiplexedConnection>,
    ) -> Result<RedisCreds, String> {
        let conn = match conn {
            Some(conn) => conn,
            None => {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(CALL_TIMEOUT))
                    .set_response_timeout(Some(CALL_TIMEOUT));
                let fresh = timed(
                    self.client
                        .get_multiplexed_async_connection_with_config(&config),
                )
                .await?;
                conn.insert(fresh)
            }
        };
        let pattern = user_pattern(&self.realm);
        let mut names: Vec<String> = Vec::new();
        let mut cursor: u64 = 0;
        // Bounded: stop once past the cap (parse() counts what is left out).
        loop {
            let (next, page): (u64, Vec<String>) = timed(
                redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(PAGE)
                    .query_async(conn),
            )
            .await?;
            names.extend(page);
            cursor = next;
            if cursor == 0 || names.len() > MAX_USERS {
                break;
            }
        }
        names.sort();
        names.dedup();
        names.truncate(MAX_USERS + 1);
        let mut users = Vec::with_capacity(names.len());
        for chunk in names.chunks(PAGE) {
            let values: Vec<Option<Vec<u8>>> =
                timed(redis::cmd("MGET").arg(chunk).query_async(conn)).await?;
            users.extend(chunk.iter().cloned().zip(values));
        }
        let secrets: Vec<Vec<u8>> = timed(
            redis::cmd("SMEMBERS")
                .arg(secret_key(&self.realm))
                .query_async(conn),
        )
        .await?;
        Ok(parse(&self.realm, users, secrets))
    }
}

/// A Redis call with [`CALL_TIMEOUT`].
async fn timed<T>(
    call: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer in {CALL_TIMEOUT:?}")),
    }
}

/// Starts the polling when `[auth] redis` is set; its status is for `/metrics`.
pub(super) fn spawn(
    config: &crate::config::Config,
    store: &Arc<AuthStore>,
    workers: &Arc<Workers>,
    tasks: &tokio_util::task::TaskTracker,
    shutdown: &CancellationToken,
) -> Option<Arc<RedisAuthStatus>> {
    let url = config.auth.redis.as_deref()?;
    let shown = crate::signal::cluster::wire::redact(url);
    let client = match redis::Client::open(url) {
        Ok(client) => client,
        // validate() opened it already; this cannot happen.
        Err(e) => {
            tracing::error!("auth.redis {shown}: {e}; only the file's credentials are used");
            return None;
        }
    };
    let status = Arc::new(RedisAuthStatus::default());
    let poller = Poller {
        client,
        shown,
        realm: config.realm.clone(),
        every: config.auth.redis_refresh,
        store: Arc::clone(store),
        workers: Arc::clone(workers),
        status: Arc::clone(&status),
    };
    tasks.spawn(poller.run(shutdown.clone()));
    Some(status)
}
