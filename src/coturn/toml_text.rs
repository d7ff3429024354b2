//! Writing TOML text: lines, sections, quoted strings and keys, lists and durations the way
//! rturn's config reads them. A leaf: it knows nothing of coturn.

use std::time::Duration;

use ipnet::IpNet;

/// TOML text being written.
#[derive(Default)]
pub(super) struct Toml(pub(super) String);

impl Toml {
    pub(super) fn line(&mut self, text: impl AsRef<str>) {
        self.0.push_str(text.as_ref());
        self.0.push('\n');
    }

    pub(super) fn section(&mut self, name: &str) {
        self.line(format!("\n[{name}]"));
    }

    /// A section with `body`, unless the body is empty.
    pub(super) fn table(&mut self, name: &str, body: Toml) {
        if !body.0.is_empty() {
            self.section(name);
            self.0.push_str(&body.0);
        }
    }
}

/// A TOML basic string: every character kept, quotes, backslashes and controls escaped.
pub(super) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML key: bare when TOML allows it, else quoted.
pub(super) fn key(s: &str) -> String {
    let bare = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if bare { s.to_owned() } else { quote(s) }
}

/// A TOML list of strings.
pub(super) fn list<T: ToString>(items: impl IntoIterator<Item = T>) -> String {
    let items: Vec<String> = items.into_iter().map(|i| quote(&i.to_string())).collect();
    format!("[{}]", items.join(", "))
}

/// A number of seconds as a human duration string (`"10m"`).
pub(super) fn duration(seconds: u64) -> String {
    quote(&humantime::format_duration(Duration::from_secs(seconds)).to_string())
}

/// A peer list key, each block of ranges under the comment that says where it came from.
pub(super) fn write_peer_list(out: &mut Toml, key: &str, entries: &[(String, Vec<IpNet>)]) {
    if entries.is_empty() {
        return;
    }
    out.line(format!("{key} = ["));
    for (comment, nets) in entries {
        out.line(format!("    # {comment}"));
        for net in nets {
            out.line(format!("    \"{net}\","));
        }
    }
    out.line("]");
}
