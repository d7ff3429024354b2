//! Converting a coturn `turnserver.conf` to an rturn `turnserver.toml`. (Being written.)

/// The result of a conversion.
#[derive(Debug, Default)]
pub struct Conversion {
    /// The rturn configuration, as TOML text with comments.
    pub toml: String,
    /// Each coturn option that was not converted, with the reason ("line 12: `cli-password`: …").
    pub skipped: Vec<String>,
}

/// Converts coturn configuration text.
pub fn convert(_text: &str) -> Conversion {
    Conversion::default()
}
