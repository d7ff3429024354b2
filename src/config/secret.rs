//! How long a secret must be, and the shipped placeholder that must not reach a public
//! listener: shared by `[auth]`, `[signal]` and `[admin]`. A leaf beside `error.rs`.

use std::net::SocketAddr;

use super::error::KeyError;

/// The password the shipped `conf/turnserver.toml` carries; refused on public addresses.
pub const PLACEHOLDER_SECRET: &str = "change-me";
/// The shortest secret rturn accepts where it guards anything reachable from elsewhere:
/// `token-secret`, `admin.token` and `nonce-secret` always, `static-auth-secret` and user
/// passwords once a listener is not on loopback (a REST secret or password is guessed
/// offline from one captured request).
pub const MIN_SECRET_LEN: usize = 16;

/// The shipped secret, or any shorter than [`MIN_SECRET_LEN`] (when `measured`: not for an
/// MD5 key), is fine on loopback; anywhere else it is an open relay waiting to happen.
pub(super) fn check_secret(
    key: &str,
    secret: &str,
    public: Option<SocketAddr>,
    measured: bool,
) -> Result<(), KeyError> {
    let Some(addr) = public else {
        return Ok(());
    };
    if secret == PLACEHOLDER_SECRET {
        return Err(KeyError::new(
            key,
            format!(
                "still the shipped placeholder {PLACEHOLDER_SECRET:?}; set a real secret before listening on {addr}"
            ),
        ));
    }
    if measured && secret.chars().count() < MIN_SECRET_LEN {
        return Err(KeyError::new(
            key,
            format!(
                "must be at least {MIN_SECRET_LEN} characters while rturn listens on {addr}, \
                 like every other secret (a short one is guessed offline from one captured \
                 request); loopback-only listeners accept shorter ones"
            ),
        ));
    }
    Ok(())
}
