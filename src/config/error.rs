//! What is wrong with a configuration: [`KeyError`] (the key and what is wrong with it, from
//! parsing or validation) and [`ConfigError`] (the file, when it cannot be read or a key is
//! wrong), with the "permission denied" hint that says who must read the file and how.
//! A leaf: every section file uses it, it uses none of them.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// What is wrong with a configuration, and which key it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    /// Dotted key path, e.g. `listen.udp` or `auth.users.alice`; empty for the whole file.
    pub key: String,
    /// What is wrong, and where possible how to fix it.
    pub message: String,
    /// 1-based line in the TOML text, when known.
    pub line: Option<usize>,
}

impl KeyError {
    /// An error about `key`, without a line (validation knows keys, not lines).
    pub(super) fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
            line: None,
        }
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)?;
        if let Some(line) = self.line {
            write!(f, " (line {line})")?;
        }
        Ok(())
    }
}

impl std::error::Error for KeyError {}

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("{}: cannot read the file: {}", path.display(), read_error(path, error))]
    Read {
        /// The file.
        path: PathBuf,
        /// Why (in the message, not a chained source: printed once).
        error: std::io::Error,
    },
    /// The file was read but a key is wrong.
    #[error("{}: {error}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Which key and what is wrong.
        error: KeyError,
    },
}

/// `e` as said once, with what to do when it is "permission denied": which user needs to
/// read `path`, and how to let it.
pub fn read_error(path: &Path, e: &io::Error) -> String {
    if e.kind() != io::ErrorKind::PermissionDenied {
        return e.to_string();
    }
    let uid = nix::unistd::getuid();
    let user = nix::unistd::User::from_uid(uid).ok().flatten().map_or_else(
        || format!("uid {uid}"),
        |u| format!("user {} (uid {uid})", u.name),
    );
    format!(
        "permission denied: rturn runs as {user}, which cannot read it. Let that user read the \
         file and search its directories (e.g. `chgrp GROUP {path} && chmod 0640 {path}` with \
         a group the user is in: systemd/rturn.service runs as user and group rturn); under \
         systemd a file can also be handed over with LoadCredential=NAME:{path} and read from \
         $CREDENTIALS_DIRECTORY/NAME",
        path = path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Said once, naming who must read the file and how.
    #[test]
    fn permission_denied_says_who_and_how() {
        let e = ConfigError::Read {
            path: PathBuf::from("/etc/rturn/turnserver.toml"),
            error: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        }
        .to_string();
        assert_eq!(e.matches("ermission denied").count(), 1, "{e}");
        assert!(e.contains(&format!("uid {}", nix::unistd::getuid())), "{e}");
        assert!(e.contains("chmod") && e.contains("LoadCredential"), "{e}");
        // The group to give the file to under the shipped unit (User=rturn, Group=rturn).
        assert!(e.contains("runs as user and group rturn"), "{e}");
    }
}
