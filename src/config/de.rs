//! The value forms shared by several sections, as serde `deserialize_with` helpers: human
//! durations (`"30s"`, `"10m"`, `"1h 30m"`, at most ten years), lists that also take one
//! value, and addresses or CIDR ranges. A leaf: it uses no other config file.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

/// The longest duration any key takes. Every duration is added to the clock somewhere
/// (`Instant + Duration` panics on overflow), so a typo such as "600000000000y" must be a
/// config error, not a crash at the first allocation.
const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Durations are human strings such as `"30s"`, `"10m"` or `"1h 30m"`.
pub(super) fn human_duration<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(de)?;
    let duration = humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "invalid duration {text:?}: {e} (write it like \"30s\", \"10m\" or \"1h\")"
        ))
    })?;
    if duration > MAX_DURATION {
        return Err(serde::de::Error::custom(format!(
            "duration {text:?} is longer than 10 years (\"3650d\")"
        )));
    }
    Ok(duration)
}

/// A list key that also takes a single value: `key = "a"` means `key = ["a"]`.
pub(super) fn one_or_many<'de, D, T>(de: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: fmt::Display,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let items = match OneOrMany::deserialize(de) {
        Ok(OneOrMany::One(s)) => vec![s],
        Ok(OneOrMany::Many(v)) => v,
        Err(_) => {
            return Err(serde::de::Error::custom(
                "expected a string or a list of strings",
            ));
        }
    };
    items
        .iter()
        .map(|item| {
            item.parse::<T>()
                .map_err(|e| serde::de::Error::custom(format!("{item:?}: {e}")))
        })
        .collect()
}

/// Addresses or CIDR ranges: "10.0.0.1" means "10.0.0.1/32".
pub(super) fn ip_nets<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<IpNet>, D::Error> {
    let items = Vec::<String>::deserialize(de)?;
    items
        .iter()
        .map(|item| {
            item.parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    serde::de::Error::custom(format!(
                        "{item:?} is not an address or CIDR range (e.g. \"10.0.0.0/8\")"
                    ))
                })
        })
        .collect()
}
