//! One line of a coturn file as coturn reads it (the name, the value, a flag's on/off), and
//! why a line was not converted ([`Skip`], [`Skipped`]). A leaf: the reader, the unsupported
//! table and `finish` all use it; it uses none of them.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// One option line: `name=value`, `name value` or a bare `name`.
pub(super) struct Line<'a> {
    pub(super) number: usize,
    pub(super) name: &'a str,
    pub(super) value: &'a str,
}

impl<'a> Line<'a> {
    pub(super) fn parse(number: usize, raw: &'a str) -> Option<Self> {
        let s = raw.trim();
        if s.is_empty() || s.starts_with('#') {
            return None;
        }
        let s = s.strip_prefix("--").unwrap_or(s);
        let separators = [' ', '\t', '='];
        let (name, value) = match s.find(separators) {
            Some(at) => (&s[..at], s[at..].trim_start_matches(separators)),
            None => (s, ""),
        };
        let value = match value.strip_prefix('"') {
            Some(v) => v.strip_suffix('"').unwrap_or(v),
            None => value,
        };
        Some(Line {
            number,
            name,
            value,
        })
    }

    /// A flag's value, as coturn's `get_bool_value` reads it; a bare flag is on.
    pub(super) fn flag(&self) -> Result<bool, Skip> {
        let v = self.value;
        match v.chars().next() {
            None => Ok(true),
            Some('0' | 'n' | 'N' | 'f' | 'F') => Ok(false),
            Some('1'..='9' | 'y' | 'Y' | 't' | 'T') => Ok(true),
            _ if v.eq_ignore_ascii_case("off") => Ok(false),
            _ if v.eq_ignore_ascii_case("on") => Ok(true),
            _ => Err(attention(format!(
                "{v:?} is not on/off, yes/no, true/false or 1/0"
            ))),
        }
    }

    pub(super) fn text(&self) -> Result<&'a str, Skip> {
        match self.value {
            "" => Err(attention("needs a value")),
            v => Ok(v),
        }
    }

    pub(super) fn number<T: FromStr>(&self, what: &str) -> Result<T, Skip> {
        let v = self.text()?;
        v.trim()
            .parse()
            .map_err(|_| attention(format!("{v:?} is not {what}")))
    }

    pub(super) fn seconds(&self) -> Result<u64, Skip> {
        match self.number("a number of seconds")? {
            0 => Err(attention("must be at least 1 second")),
            n => Ok(n),
        }
    }

    pub(super) fn ip(&self) -> Result<IpAddr, Skip> {
        self.number("an IP address")
    }

    /// `IP`, `IP:PORT` or `[IPv6]:PORT`, as coturn's alternate-server takes it; without a
    /// port, `default_port`.
    pub(super) fn address(&self, default_port: u16) -> Result<SocketAddr, Skip> {
        let v = self.text()?.trim();
        if let Ok(addr) = v.parse() {
            return Ok(addr);
        }
        let bare = v.strip_prefix('[').and_then(|v| v.strip_suffix(']'));
        match bare.unwrap_or(v).parse::<IpAddr>() {
            Ok(ip) => Ok(SocketAddr::new(ip, default_port)),
            Err(_) => Err(attention(format!(
                "{v:?} is not an address (IP, IP:PORT or [IPv6]:PORT)"
            ))),
        }
    }
}

/// Why a line was not converted; `attention` when the result behaves differently from coturn.
pub(super) struct Skip {
    pub(super) attention: bool,
    pub(super) reason: String,
}

pub(super) fn attention(reason: impl Into<String>) -> Skip {
    Skip {
        attention: true,
        reason: reason.into(),
    }
}

pub(super) fn note(reason: impl Into<String>) -> Skip {
    Skip {
        attention: false,
        reason: reason.into(),
    }
}

/// One entry of [`Conversion::skipped`]; `line` is `None` for what the file lacks.
pub(super) struct Skipped {
    pub(super) line: Option<usize>,
    pub(super) option: String,
    pub(super) skip: Skip,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        write!(f, "{}: {}", self.option, self.skip.reason)
    }
}
