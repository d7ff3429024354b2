//! Users and REST secrets kept in Redis, in coturn's `redis-userdb` schema, so a fleet's
//! existing store works unchanged: a long-term user is the string key
//! `turn/realm/<realm>/user/<name>/key` holding the hex MD5 key (MD5 of
//! "name:realm:password", as `turnadmin -k` prints it), and the REST secrets are the members
//! of the set `turn/realm/<realm>/secret`.
//!
//! Pure: the key names to ask for, what Redis answered turned into [`RedisCreds`] (bounded
//! in count and size, bad values skipped), and the merge with the file's credentials.
//! The polling task that talks to Redis is `server::redis_auth`.

use std::collections::BTreeMap;

use super::AuthSettings;

/// At most this many users are read from Redis; more are left out (and counted).
pub const MAX_USERS: usize = 100_000;
/// At most this many REST secrets are read from Redis.
pub const MAX_SECRETS: usize = 64;
/// A user name or a secret longer than this (bytes) is skipped.
pub const MAX_VALUE_BYTES: usize = 512;

/// What Redis holds for one realm, ready to merge with the file's credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisCreds {
    /// Name to `0x` + 32 lowercase hex digits (the MD5 key, as `[auth.users]` spells it).
    pub users: BTreeMap<String, String>,
    /// REST secrets, sorted (a Redis set has no order).
    pub secrets: Vec<String>,
    /// Entries left out: malformed keys or values, over the size or count bounds.
    pub skipped: usize,
}

/// `realm` with Redis glob characters escaped, so a realm like `a*b` matches only itself.
fn glob_escape(realm: &str) -> String {
    let mut out = String::with_capacity(realm.len());
    for c in realm.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The SCAN `MATCH` pattern of the realm's user keys.
pub fn user_pattern(realm: &str) -> String {
    format!("turn/realm/{}/user/*/key", glob_escape(realm))
}

/// The set holding the realm's REST secrets.
pub fn secret_key(realm: &str) -> String {
    format!("turn/realm/{realm}/secret")
}

/// The user name in a key `turn/realm/<realm>/user/<name>/key`, if it is one of this realm.
pub fn user_name<'k>(realm: &str, key: &'k str) -> Option<&'k str> {
    let rest = key.strip_prefix("turn/realm/")?.strip_prefix(realm)?;
    let name = rest.strip_prefix("/user/")?.strip_suffix("/key")?;
    (!name.is_empty() && name.len() <= MAX_VALUE_BYTES).then_some(name)
}

/// A stored key as `0x` + 32 lowercase hex digits; coturn's `turnadmin` writes lowercase hex,
/// and surrounding whitespace is forgiven.
fn stored_key(value: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(value).ok()?.trim();
    (text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| format!("0x{}", text.to_ascii_lowercase()))
}

/// Turns what Redis answered into credentials: `users` are (key name, value) pairs from the
/// user keys (a value `None` is a key deleted between SCAN and GET), `secrets` the members of
/// the secret set. Keys of another realm, bad values and entries over the bounds are skipped.
pub fn parse(
    realm: &str,
    users: impl IntoIterator<Item = (String, Option<Vec<u8>>)>,
    secrets: impl IntoIterator<Item = Vec<u8>>,
) -> RedisCreds {
    let mut creds = RedisCreds::default();
    for (key, value) in users {
        let Some(value) = value else { continue };
        let parsed = user_name(realm, &key).zip(stored_key(&value));
        match parsed {
            Some((name, key)) if creds.users.len() < MAX_USERS => {
                creds.users.insert(name.to_owned(), key);
            }
            _ => creds.skipped += 1,
        }
    }
    for secret in secrets {
        match String::from_utf8(secret) {
            Ok(s) if !s.is_empty() && s.len() <= MAX_VALUE_BYTES => creds.secrets.push(s),
            _ => creds.skipped += 1,
        }
    }
    creds.secrets.sort();
    creds.secrets.dedup();
    if creds.secrets.len() > MAX_SECRETS {
        creds.skipped += creds.secrets.len() - MAX_SECRETS;
        creds.secrets.truncate(MAX_SECRETS);
    }
    creds
}

/// The file's credentials with Redis's added: a user in both keeps the file's password (the
/// file is what the operator of this node wrote), and the file's secrets come first, so the
/// first of them still mints `/api/ice` credentials; Redis's secrets verify too.
pub fn merge(file: &AuthSettings, redis: Option<&RedisCreds>) -> AuthSettings {
    let mut merged = file.clone();
    if let Some(redis) = redis {
        for (name, key) in &redis.users {
            merged
                .users
                .entry(name.clone())
                .or_insert_with(|| key.clone());
        }
        for secret in &redis.secrets {
            if !merged.secrets.contains(secret) {
                merged.secrets.push(secret.clone());
            }
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdef0123456789ABCDEF";

    fn user(realm: &str, name: &str, value: &str) -> (String, Option<Vec<u8>>) {
        (
            format!("turn/realm/{realm}/user/{name}/key"),
            Some(value.as_bytes().to_vec()),
        )
    }

    #[test]
    fn reads_coturn_user_keys_and_secrets() {
        let creds = parse(
            "example.org",
            [
                user("example.org", "alice", KEY),
                user("example.org", "bob", &format!(" {KEY}\n")),
            ],
            [b"s2".to_vec(), b"s1".to_vec(), b"s1".to_vec()],
        );
        let key = format!("0x{}", KEY.to_ascii_lowercase());
        assert_eq!(creds.users.get("alice"), Some(&key));
        assert_eq!(creds.users.get("bob"), Some(&key));
        assert_eq!(creds.secrets, ["s1", "s2"]);
        assert_eq!(creds.skipped, 0);
    }

    #[test]
    fn skips_bad_values_other_realms_and_deleted_keys() {
        let creds = parse(
            "r",
            [
                user("r", "short", "abcd"),
                user("r", "nothex", &"z".repeat(32)),
                user("other", "alice", KEY),
                user("r", "", KEY),
                user("r", &"n".repeat(MAX_VALUE_BYTES + 1), KEY),
                ("turn/realm/r/user/gone/key".to_owned(), None),
                ("turn/realm/r/user/bin/key".to_owned(), Some(vec![0xff; 32])),
            ],
            [Vec::new(), vec![0xff], vec![b'x'; MAX_VALUE_BYTES + 1]],
        );
        assert!(creds.users.is_empty(), "{creds:?}");
        assert!(creds.secrets.is_empty());
        assert_eq!(creds.skipped, 9);
    }

    #[test]
    fn bounds_the_number_of_secrets() {
        let secrets = (0..MAX_SECRETS + 3).map(|i| format!("secret-{i:03}").into_bytes());
        let creds = parse("r", [], secrets);
        assert_eq!(creds.secrets.len(), MAX_SECRETS);
        assert_eq!(creds.skipped, 3);
    }

    #[test]
    fn names_keys_like_coturn_and_escapes_globs() {
        assert_eq!(user_pattern("a.org"), "turn/realm/a.org/user/*/key");
        assert_eq!(user_pattern("a*[b]"), "turn/realm/a\\*\\[b\\]/user/*/key");
        assert_eq!(secret_key("a.org"), "turn/realm/a.org/secret");
        assert_eq!(user_name("a", "turn/realm/a/user/x/y/key"), Some("x/y"));
        assert_eq!(user_name("a", "turn/realm/ab/user/x/key"), None);
    }

    #[test]
    fn the_file_wins_and_its_secrets_come_first() {
        let mut file = AuthSettings::default();
        file.users.insert("alice".into(), "file-password".into());
        file.secrets.push("file-secret".into());
        let mut redis = RedisCreds::default();
        redis.users.insert("alice".into(), format!("0x{KEY}"));
        redis.users.insert("carol".into(), format!("0x{KEY}"));
        redis.secrets = vec!["file-secret".into(), "redis-secret".into()];
        let merged = merge(&file, Some(&redis));
        assert_eq!(merged.users["alice"], "file-password");
        assert_eq!(merged.users["carol"], format!("0x{KEY}"));
        assert_eq!(merged.secrets, ["file-secret", "redis-secret"]);
        assert_eq!(merge(&file, None).users.len(), 1);
    }
}
