//! `[admin]`: the `/admin` API, off unless a token is set; its checks.

use std::net::SocketAddr;

use serde::Deserialize;

use super::error::KeyError;
use super::secret::MIN_SECRET_LEN;

/// `[admin]`: the `/admin` API. Off unless `token` is set; every key defaults to unset.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AdminConfig {
    /// Bearer token every `/admin` request must carry; unset: no admin API at all.
    pub token: Option<String>,
    /// Serve `/admin` on this address instead of the HTTP listener (`/metrics` stays there).
    pub listen: Option<SocketAddr>,
}

impl AdminConfig {
    /// The rules within `[admin]`.
    pub(super) fn validate(&self) -> Result<(), KeyError> {
        if (self.token.as_deref()).is_some_and(|t| t.len() < MIN_SECRET_LEN) {
            return Err(KeyError::new(
                "admin.token",
                format!("must be at least {MIN_SECRET_LEN} characters"),
            ));
        }
        if self.listen.is_some() && self.token.is_none() {
            return Err(KeyError::new(
                "admin.listen",
                "the admin API is off without admin.token; set a token too",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::AdminConfig;

    fn admin(text: &str) -> AdminConfig {
        toml::from_str(text).expect("an [admin] section")
    }

    #[test]
    fn off_by_default_and_a_token_needs_16_characters() {
        let off = admin("");
        assert!(off.token.is_none() && off.listen.is_none());
        assert_eq!(off.validate(), Ok(()));
        let short = admin("token = \"fifteen chars!!\"");
        assert_eq!(
            short.validate().map_err(|e| e.key),
            Err("admin.token".into())
        );
        admin("token = \"sixteen chars!!!\"").validate().unwrap();
    }

    #[test]
    fn a_listener_of_its_own_needs_a_token() {
        let e = admin("listen = \"127.0.0.1:9000\"").validate().unwrap_err();
        assert_eq!(e.key, "admin.listen");
        admin("listen = \"127.0.0.1:9000\"\ntoken = \"sixteen chars!!!\"")
            .validate()
            .unwrap();
    }
}
