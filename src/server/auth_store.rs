//! The credentials in force: the file's (`[auth]`, replaced by each reload) merged with the
//! last good read of Redis (`[auth] redis`, replaced by `redis_auth`'s polling). Either side
//! changing builds one new [`Auth`] for every worker; the nonce key stays, so no client's
//! nonce goes stale.

use std::sync::{Arc, Mutex};

use crate::auth::redis::{RedisCreds, merge};
use crate::auth::{Auth, AuthSettings};

/// The two halves of the credentials and how they merge ([`merge`]: the file wins).
pub(super) struct AuthStore(Mutex<State>, tokio::sync::Mutex<()>);

struct State {
    file: AuthSettings,
    redis: Option<RedisCreds>,
}

impl AuthStore {
    /// Starts with the file's credentials and nothing from Redis yet.
    pub(super) fn new(file: AuthSettings) -> Self {
        Self(
            Mutex::new(State { file, redis: None }),
            tokio::sync::Mutex::new(()),
        )
    }

    /// Held by whoever builds merged credentials and hands them to the workers (a reload, the
    /// Redis poller) until the workers have them: so the set built last is the one applied
    /// last, and a user a reload removed cannot come back with an older Redis build.
    pub(super) async fn applying(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.1.lock().await
    }

    fn build(state: &State) -> Arc<Auth> {
        Arc::new(Auth::new(merge(&state.file, state.redis.as_ref())))
    }

    /// The merged credentials now.
    #[cfg(test)]
    fn auth(&self) -> Arc<Auth> {
        Self::build(&self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// A reload's credentials, merged with what Redis held last.
    pub(super) fn set_file(&self, file: AuthSettings) -> Arc<Auth> {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        state.file = file;
        Self::build(&state)
    }

    /// A fresh read of Redis: the new merged credentials, or `None` when nothing changed.
    pub(super) fn set_redis(&self, creds: RedisCreds) -> Option<Arc<Auth>> {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if state.redis.as_ref() == Some(&creds) {
            return None;
        }
        state.redis = Some(creds);
        Some(Self::build(&state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_users_survive_a_reload_and_only_changes_rebuild() {
        let file = AuthSettings {
            realm: "r".into(),
            nonce_secret: Some(vec![7; 32]),
            ..AuthSettings::default()
        };
        let store = AuthStore::new(file.clone());
        assert!(store.auth().keys_for("carol", 0).is_err());
        let mut creds = RedisCreds::default();
        creds
            .users
            .insert("carol".into(), format!("0x{}", "ab".repeat(16)));
        let auth = store.set_redis(creds.clone()).expect("changed");
        assert_eq!(auth.keys_for("carol", 0), Ok(vec![[0xab; 16]]));
        assert!(store.set_redis(creds).is_none(), "unchanged: no new Auth");
        let reloaded = store.set_file(file);
        assert_eq!(reloaded.keys_for("carol", 0), Ok(vec![[0xab; 16]]));
    }
}
