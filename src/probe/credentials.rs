//! [`Credentials`]: who `rturn probe` authenticates as. Given on the command line, else the
//! config file's first `[auth.users]` entry with a plain password, else a TURN REST credential
//! minted from its first `static-auth-secret` (what `/api/ice-servers` would hand out). Pure:
//! the time is passed in.

use crate::auth::{Auth, AuthSettings};
use crate::config::AuthConfig;

/// The REST user part of minted credentials (`EXPIRY:rturn-probe`), so the server's logs
/// and quotas name the probe.
pub const REST_USER: &str = "rturn-probe";

/// How long minted REST credentials stay valid: long enough for one probe.
const REST_TTL_SECS: u64 = 600;

/// A username and password for long-term credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// USERNAME.
    pub username: String,
    /// The password (the key is MD5(username:realm:password)).
    pub password: String,
    /// Where they came from, for the report: "command line", "auth.users", "static-auth-secret".
    pub source: &'static str,
}

/// Chooses the credentials: `user` and `password` from the command line if both are given,
/// else from `auth` (the config file's `[auth]`), minting REST credentials at `now_unix`.
/// An error names what is missing.
pub fn choose(
    user: Option<&str>,
    password: Option<&str>,
    auth: Option<&AuthConfig>,
    now_unix: u64,
) -> Result<Credentials, String> {
    match (user, password) {
        (Some(u), Some(p)) => {
            return Ok(Credentials {
                username: u.to_owned(),
                password: p.to_owned(),
                source: "command line",
            });
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err("--user and --password go together".to_owned());
        }
        (None, None) => {}
    }
    let Some(auth) = auth else {
        return Err("no credentials: give --user and --password, or -c FILE".to_owned());
    };
    // A `0x…` password is coturn's stored key, not a password anyone can type.
    let plain = (auth.users.iter()).find(|(_, pass)| !is_key(pass));
    if let Some((username, password)) = plain {
        return Ok(Credentials {
            username: username.clone(),
            password: password.clone(),
            source: "auth.users",
        });
    }
    let minter = Auth::new(AuthSettings {
        secrets: auth.static_auth_secret.clone(),
        rest_separator: auth.rest_separator,
        ..Default::default()
    });
    match minter.mint_rest(Some(REST_USER), now_unix, REST_TTL_SECS) {
        Some((username, password)) => Ok(Credentials {
            username,
            password,
            source: "static-auth-secret",
        }),
        None if auth.users.is_empty() => Err(
            "no credentials: the config has no [auth.users] and no static-auth-secret; \
             give --user and --password"
                .to_owned(),
        ),
        None => Err(
            "no credentials: every [auth.users] password is stored as a 0x key; \
             give --user and --password"
                .to_owned(),
        ),
    }
}

fn is_key(password: &str) -> bool {
    password
        .strip_prefix("0x")
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(text: &str) -> AuthConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn the_command_line_wins() {
        let a = auth("users = { alice = \"pw\" }");
        let c = choose(Some("bob"), Some("x"), Some(&a), 0).unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("bob", "x"));
        assert_eq!(c.source, "command line");
        assert!(choose(Some("bob"), None, Some(&a), 0).is_err());
        assert!(choose(None, Some("x"), Some(&a), 0).is_err());
        assert!(choose(None, None, None, 0).unwrap_err().contains("--user"));
    }

    #[test]
    fn then_the_first_user_with_a_plain_password() {
        let a = auth(
            "users = { aa = \"0x0123456789abcdef0123456789abcdef\", bob = \"b\", carol = \"c\" }\n\
             static-auth-secret = \"s\"",
        );
        let c = choose(None, None, Some(&a), 0).unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("bob", "b"));
        assert_eq!(c.source, "auth.users");
    }

    #[test]
    fn then_rest_credentials_minted_from_the_secret() {
        let a = auth("static-auth-secret = [\"first\", \"second\"]\nrest-separator = \"-\"");
        let c = choose(None, None, Some(&a), 1000).unwrap();
        assert_eq!(c.username, format!("1600-{REST_USER}"));
        assert_eq!(c.source, "static-auth-secret");
        // A server with the same secrets (rotated: the first one second) accepts them.
        let server = Auth::new(AuthSettings {
            secrets: vec!["second".to_owned(), "first".to_owned()],
            rest_separator: '-',
            ..Default::default()
        });
        let key = crate::auth::long_term_key(&c.username, server.realm(), &c.password);
        assert!(server.keys_for(&c.username, 1000).unwrap().contains(&key));
    }

    #[test]
    fn nothing_to_use_is_an_error_that_says_what_to_give() {
        let none = choose(None, None, Some(&auth("")), 0).unwrap_err();
        assert!(none.contains("static-auth-secret"), "{none}");
        let keys = auth("users = { aa = \"0x0123456789abcdef0123456789abcdef\" }");
        let e = choose(None, None, Some(&keys), 0).unwrap_err();
        assert!(e.contains("0x key"), "{e}");
    }
}
