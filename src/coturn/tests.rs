//! The importer's tests, grouped by what they cover; here the helpers they share.

use std::net::SocketAddr;

use ipnet::IpNet;

use super::{Conversion, convert};
use crate::Config;

mod addresses;
mod credentials;
mod peers;
mod reading;
mod serving;

/// Converts `text`, and checks the TOML passes rturn's own validation.
pub(super) fn run(text: &str) -> (Config, Conversion) {
    let c = convert(text);
    let config = Config::from_toml(&c.toml).unwrap_or_else(|e| panic!("{e}\n{}", c.toml));
    assert!(
        !c.skipped.iter().any(|s| s.contains("does not pass")),
        "{:#?}",
        c.skipped
    );
    (config, c)
}

/// The skipped entry starting with `prefix`.
pub(super) fn skip<'a>(c: &'a Conversion, prefix: &str) -> &'a str {
    c.skipped
        .iter()
        .find(|s| s.starts_with(prefix))
        .unwrap_or_else(|| panic!("nothing skipped starts with {prefix:?}: {:#?}", c.skipped))
}

pub(super) fn skipped(c: &Conversion, prefix: &str) -> bool {
    c.skipped.iter().any(|s| s.starts_with(prefix))
}

pub(super) fn addrs(list: &[&str]) -> Vec<SocketAddr> {
    list.iter().map(|a| a.parse().unwrap()).collect()
}

pub(super) fn nets(list: &[IpNet]) -> Vec<String> {
    list.iter().map(ToString::to_string).collect()
}

/// The lines under "Needs attention" in the TOML header.
pub(super) fn attention_lines(c: &Conversion) -> Vec<&str> {
    c.toml
        .lines()
        .skip_while(|l| !l.starts_with("# Needs attention"))
        .skip(1)
        .take_while(|l| l.starts_with("#   "))
        .collect()
}
