//! `[stun]` from coturn's options: `stun-only` (Binding only, TURN refused).

use super::Importer;
use super::toml_text::Toml;

impl Importer {
    /// `[stun]`: `only` from `stun-only`.
    pub(super) fn stun(&mut self, out: &mut Toml) {
        let mut stun = Toml::default();
        if let Some(line) = self.stun_only {
            stun.line(format!(
                "only = true # stun-only (line {line}): Binding only, TURN requests get 403"
            ));
        }
        out.table("stun", stun);
    }
}
