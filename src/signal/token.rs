//! Signaling tokens: `EXPIRY:MAC`, where MAC is the hex HMAC-SHA256 of `EXPIRY:ROOM` under
//! `token-secret` and ROOM is empty for a token valid in any room. Minted by `rturn token`
//! (or by the application's backend, with the same formula) and checked on `/ws` and
//! `/api/ice-servers`. Stateless: nothing is stored per token.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not `EXPIRY:MAC` with a decimal expiry and 64 hex digits.
    #[error("malformed token")]
    Malformed,
    /// The MAC does not match (wrong secret, or another room).
    #[error("token not valid")]
    BadMac,
    /// Past its expiry.
    #[error("token expired")]
    Expired,
}

fn mac(secret: &[u8], expiry: u64, room: &str) -> HmacSha256 {
    // HMAC takes keys of any length.
    let mut mac = HmacSha256::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(format!("{expiry}:{room}").as_bytes());
    mac
}

/// A token valid until `expiry` (unix seconds) for `room`, or any room when `None`.
pub fn mint(secret: &[u8], expiry: u64, room: Option<&str>) -> String {
    let tag = mac(secret, expiry, room.unwrap_or(""))
        .finalize()
        .into_bytes();
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    format!("{expiry}:{hex}")
}

/// Checks `token` at unix time `now` for `room` (`None`: a token valid in any room).
pub fn verify(secret: &[u8], token: &str, room: Option<&str>, now: u64) -> Result<(), TokenError> {
    let (expiry, hex) = token.split_once(':').ok_or(TokenError::Malformed)?;
    // One spelling per token: `u64::from_str` and `from_str_radix` also take a leading '+'.
    if !expiry.bytes().all(|b| b.is_ascii_digit())
        || hex.len() != 64
        || !hex.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(TokenError::Malformed);
    }
    let expiry: u64 = expiry.parse().map_err(|_| TokenError::Malformed)?;
    let mut given = [0u8; 32];
    for (i, byte) in given.iter_mut().enumerate() {
        let pair = hex.get(2 * i..2 * i + 2).ok_or(TokenError::Malformed)?;
        *byte = u8::from_str_radix(pair, 16).map_err(|_| TokenError::Malformed)?;
    }
    let expected = mac(secret, expiry, room.unwrap_or(""))
        .finalize()
        .into_bytes();
    if !bool::from(expected.as_slice().ct_eq(&given)) {
        return Err(TokenError::BadMac);
    }
    if expiry < now {
        return Err(TokenError::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef";

    #[test]
    fn minted_tokens_verify_until_expiry() {
        let t = mint(SECRET, 1000, None);
        assert_eq!(verify(SECRET, &t, None, 999), Ok(()));
        assert_eq!(verify(SECRET, &t, None, 1000), Ok(()));
        assert_eq!(verify(SECRET, &t, None, 1001), Err(TokenError::Expired));
        assert_eq!(
            verify(b"another secret!!", &t, None, 0),
            Err(TokenError::BadMac)
        );
    }

    #[test]
    fn room_tokens_are_bound_to_their_room() {
        let t = mint(SECRET, 1000, Some("demo"));
        assert_eq!(verify(SECRET, &t, Some("demo"), 0), Ok(()));
        assert_eq!(
            verify(SECRET, &t, Some("other"), 0),
            Err(TokenError::BadMac)
        );
        assert_eq!(verify(SECRET, &t, None, 0), Err(TokenError::BadMac));
    }

    #[test]
    fn tampering_is_refused() {
        let t = mint(SECRET, 1000, None);
        let later = t.replacen("1000", "9999", 1);
        assert_eq!(verify(SECRET, &later, None, 0), Err(TokenError::BadMac));
        for bad in [
            "",
            "1000",
            "x:y",
            "1000:zz",
            &t[..t.len() - 1],
            &format!("{t}0"),
        ] {
            assert_eq!(
                verify(SECRET, bad, None, 0),
                Err(TokenError::Malformed),
                "{bad:?}"
            );
        }
    }

    /// `u64::from_str` and `u8::from_str_radix` take a leading '+': "+1000" and "+f" would
    /// verify as another spelling of a minted token.
    #[test]
    fn a_token_has_one_spelling() {
        let t = mint(SECRET, 1000, None);
        assert_eq!(verify(SECRET, &t, None, 0), Ok(()));
        assert_eq!(
            verify(SECRET, &format!("+{t}"), None, 0),
            Err(TokenError::Malformed)
        );
        let (expiry, t) = (1000..)
            .map(|e| (e, mint(SECRET, e, None)))
            .find(|(_, t)| {
                t.split_once(':')
                    .is_some_and(|(_, mac)| mac.starts_with('0'))
            })
            .unwrap();
        let plus = t.replacen(":0", ":+", 1);
        assert_eq!(
            verify(SECRET, &plus, None, expiry),
            Err(TokenError::Malformed)
        );
        let upper = t.to_ascii_uppercase();
        assert_eq!(
            verify(SECRET, &upper, None, expiry),
            Ok(()),
            "hex in either case"
        );
    }
}
