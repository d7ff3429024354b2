//! Signaling tokens: `EXPIRY:MAC`, where MAC is the hex HMAC-SHA256 under `token-secret` of
//! `EXPIRY:ROOM` for the root namespace (`/ws`) or `EXPIRY/NAMESPACE:ROOM` for `/ws/NAMESPACE`,
//! ROOM empty for a token valid in any room of its namespace. Minted by `rturn token` (or by
//! the application's backend, with the same formula) and checked on `/ws` and
//! `/api/ice-servers` by [`check`], whose refusal says what was wrong and how to mint a good
//! token. Stateless: nothing is stored per token.
//!
//! The two forms cannot be confused: the expiry is digits only, followed by `:` in one and
//! `/` in the other, and a namespace holding `:` never verifies (it would make
//! `E/a:b:room` ambiguous). EXPIRY is canonical decimal (no sign, no leading zero), so a
//! token has one spelling.

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

/// The text a token signs: see the module docs.
fn signed_text(expiry: u64, namespace: &str, room: &str) -> String {
    if namespace.is_empty() {
        format!("{expiry}:{room}")
    } else {
        format!("{expiry}/{namespace}:{room}")
    }
}

fn mac(secret: &[u8], expiry: u64, namespace: &str, room: &str) -> HmacSha256 {
    // HMAC takes keys of any length.
    let mut mac = HmacSha256::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(signed_text(expiry, namespace, room).as_bytes());
    mac
}

/// Whether tokens can name `namespace` (`""` is `/ws` itself): not with a `:` in it.
pub fn valid_namespace(namespace: &str) -> bool {
    !namespace.contains(':')
}

/// A token valid until `expiry` (unix seconds) in `namespace` (`""`: plain `/ws`) for
/// `room`, or any room of the namespace when `None`; `None` for a namespace tokens cannot
/// name ([`valid_namespace`]).
pub fn mint(secret: &[u8], expiry: u64, namespace: &str, room: Option<&str>) -> Option<String> {
    if !valid_namespace(namespace) {
        return None;
    }
    let tag = mac(secret, expiry, namespace, room.unwrap_or(""))
        .finalize()
        .into_bytes();
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    Some(format!("{expiry}:{hex}"))
}

/// Checks `token` at unix time `now` for `room` (`None`: a token valid in any room) in
/// `namespace` (`""`: plain `/ws`).
pub fn verify(
    secret: &[u8],
    token: &str,
    namespace: &str,
    room: Option<&str>,
    now: u64,
) -> Result<(), TokenError> {
    let (expiry, hex) = token.split_once(':').ok_or(TokenError::Malformed)?;
    // One spelling per token: `u64::from_str` and `from_str_radix` also take a leading '+',
    // and "0100" would parse as the 100 the MAC was made over.
    let canonical = expiry == "0" || !expiry.starts_with('0');
    if !expiry.bytes().all(|b| b.is_ascii_digit())
        || !canonical
        || hex.len() != 64
        || !hex.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(TokenError::Malformed);
    }
    if !valid_namespace(namespace) {
        return Err(TokenError::BadMac);
    }
    let expiry: u64 = expiry.parse().map_err(|_| TokenError::Malformed)?;
    let mut given = [0u8; 32];
    for (i, byte) in given.iter_mut().enumerate() {
        let pair = hex.get(2 * i..2 * i + 2).ok_or(TokenError::Malformed)?;
        *byte = u8::from_str_radix(pair, 16).map_err(|_| TokenError::Malformed)?;
    }
    let expected = mac(secret, expiry, namespace, room.unwrap_or(""))
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

/// How to get a token, said in every refusal (the client reads it in the 401's body).
const MINT: &str = "mint one with `rturn -c FILE token` (add --room R for one room, \
                    --namespace NS for /ws/NS) or in your backend with the server's \
                    [signal] token-secret";

/// The token rules of a request to `/ws`, `/ws/NAMESPACE` or `/api/ice-servers`, given its
/// `?token=` and `&room=` (`namespace` `""`: plain `/ws`): `Ok(None)` for a token good in
/// any room, `Ok(Some(room))` for a room token, else the text of the 401, which says what
/// was wrong and how to get it right.
pub fn check(
    secret: &[u8],
    token: Option<&str>,
    room: Option<&str>,
    namespace: &str,
    now: u64,
) -> Result<Option<String>, String> {
    let Some(token) = token else {
        return Err(format!(
            "a token is required: this server has [signal] token-secret set, so connect with \
             ?token=EXPIRY:MAC (and &room=R for a token bound to room R); {MINT}\n"
        ));
    };
    // A token good in any room works with or without `room`; a room token only with its room.
    let any = verify(secret, token, namespace, None, now);
    let result = match (any, room) {
        (Ok(()), _) => return Ok(None),
        (Err(TokenError::BadMac), Some(room)) => {
            verify(secret, token, namespace, Some(room), now).map(|()| Some(room.to_owned()))
        }
        (Err(error), _) => Err(error),
    };
    let place = match namespace {
        "" => "the root namespace (/ws, /skyrtc)",
        _ => "this namespace",
    };
    result.map_err(|error| match (error, room) {
        (TokenError::Malformed, _) => format!(
            "malformed token: it is EXPIRY:MAC, a decimal expiry and 64 hex digits, as \
             `rturn token` prints it; {MINT}\n"
        ),
        (TokenError::Expired, _) => format!("token expired: {MINT}\n"),
        (TokenError::BadMac, None) => format!(
            "token not valid for {place}: a token minted for one room (--room R) also needs \
             &room=R in the URL; otherwise it was minted for another namespace or with \
             another token-secret: {MINT}\n"
        ),
        (TokenError::BadMac, Some(_)) => format!(
            "token not valid for the room in &room= under {place}: it was minted for another \
             room or namespace, or with another token-secret: {MINT}\n"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef";

    fn mint_root(expiry: u64, room: Option<&str>) -> String {
        mint(SECRET, expiry, "", room).unwrap()
    }

    /// One token for room R of /ws opened R under /ws/tenant-a and /ws/tenant-b too.
    #[test]
    fn tokens_are_bound_to_their_namespace() {
        for room in [None, Some("r")] {
            let root = mint_root(1000, room);
            let a = mint(SECRET, 1000, "tenant-a", room).unwrap();
            assert_eq!(verify(SECRET, &root, "", room, 0), Ok(()));
            assert_eq!(verify(SECRET, &a, "tenant-a", room, 0), Ok(()));
            for (token, ns) in [(&root, "tenant-a"), (&a, ""), (&a, "tenant-b")] {
                assert_eq!(
                    verify(SECRET, token, ns, room, 0),
                    Err(TokenError::BadMac),
                    "{ns:?} {room:?}"
                );
            }
        }
        // Root room "ns:r" and namespace "ns" room "r" sign different texts; a namespace
        // with ':' cannot be named at all.
        let root = mint_root(1000, Some("ns:r"));
        assert_eq!(
            verify(SECRET, &root, "ns", Some("r"), 0),
            Err(TokenError::BadMac)
        );
        assert_eq!(mint(SECRET, 1000, "a:b", None), None);
        assert_eq!(signed_text(7, "ns", "r"), "7/ns:r");
        assert_eq!(signed_text(7, "", "r"), "7:r");
    }

    /// Every refusal says what was wrong and how to mint a good token.
    #[test]
    fn refusals_name_the_fix() {
        let check = |token: Option<&str>, room: Option<&str>, ns: &str| {
            check(SECRET, token, room, ns, 500).unwrap_err()
        };
        for text in [
            check(None, None, ""),
            check(Some("garbage"), None, ""),
            check(Some(&mint_root(100, None)), None, ""),
            check(Some(&mint_root(1000, Some("r"))), None, ""),
            check(Some(&mint_root(1000, Some("r"))), Some("s"), ""),
        ] {
            assert!(text.contains("rturn -c FILE token"), "{text}");
            assert!(text.contains("token-secret"), "{text}");
            assert!(text.ends_with('\n'), "{text}");
        }
        assert!(check(None, None, "").starts_with("a token is required"));
        assert!(check(Some("1:x"), None, "").starts_with("malformed token"));
        assert!(
            check(Some(&mint_root(100, Some("r"))), Some("r"), "").starts_with("token expired")
        );
        // A room token presented without its room: the message says to add &room=.
        let room_token = mint_root(1000, Some("r"));
        let text = check(Some(&room_token), None, "");
        assert!(text.contains("&room=R"), "{text}");
        assert!(check(Some(&room_token), None, "ns").contains("this namespace"));
        // With the wrong room, it says so.
        assert!(check(Some(&room_token), Some("s"), "").contains("another room"));
    }

    #[test]
    fn check_returns_the_room_a_token_is_bound_to() {
        let any = mint_root(1000, None);
        assert_eq!(check(SECRET, Some(&any), None, "", 0), Ok(None));
        assert_eq!(check(SECRET, Some(&any), Some("r"), "", 0), Ok(None));
        let room = mint_root(1000, Some("r"));
        assert_eq!(
            check(SECRET, Some(&room), Some("r"), "", 0),
            Ok(Some("r".to_owned()))
        );
    }

    /// "01000" parsed to the 1000 the MAC was made over and verified: another spelling.
    #[test]
    fn leading_zeros_in_the_expiry_are_refused() {
        let t = mint_root(1000, None);
        for spelling in [format!("0{t}"), format!("00{t}")] {
            assert_eq!(
                verify(SECRET, &spelling, "", None, 0),
                Err(TokenError::Malformed),
                "{spelling}"
            );
        }
        let zero = mint_root(0, None);
        assert_eq!(verify(SECRET, &zero, "", None, 0), Ok(()));
    }

    #[test]
    fn minted_tokens_verify_until_expiry() {
        let t = mint_root(1000, None);
        assert_eq!(verify(SECRET, &t, "", None, 999), Ok(()));
        assert_eq!(verify(SECRET, &t, "", None, 1000), Ok(()));
        assert_eq!(verify(SECRET, &t, "", None, 1001), Err(TokenError::Expired));
        assert_eq!(
            verify(b"another secret!!", &t, "", None, 0),
            Err(TokenError::BadMac)
        );
    }

    #[test]
    fn room_tokens_are_bound_to_their_room() {
        let t = mint_root(1000, Some("demo"));
        assert_eq!(verify(SECRET, &t, "", Some("demo"), 0), Ok(()));
        assert_eq!(
            verify(SECRET, &t, "", Some("other"), 0),
            Err(TokenError::BadMac)
        );
        assert_eq!(verify(SECRET, &t, "", None, 0), Err(TokenError::BadMac));
    }

    #[test]
    fn tampering_is_refused() {
        let t = mint_root(1000, None);
        let later = t.replacen("1000", "9999", 1);
        assert_eq!(verify(SECRET, &later, "", None, 0), Err(TokenError::BadMac));
        for bad in [
            "",
            "1000",
            "x:y",
            "1000:zz",
            &t[..t.len() - 1],
            &format!("{t}0"),
        ] {
            assert_eq!(
                verify(SECRET, bad, "", None, 0),
                Err(TokenError::Malformed),
                "{bad:?}"
            );
        }
    }

    /// `u64::from_str` and `u8::from_str_radix` take a leading '+': "+1000" and "+f" would
    /// verify as another spelling of a minted token.
    #[test]
    fn a_token_has_one_spelling() {
        let t = mint_root(1000, None);
        assert_eq!(verify(SECRET, &t, "", None, 0), Ok(()));
        assert_eq!(
            verify(SECRET, &format!("+{t}"), "", None, 0),
            Err(TokenError::Malformed)
        );
        let (expiry, t) = (1000..)
            .map(|e| (e, mint_root(e, None)))
            .find(|(_, t)| {
                t.split_once(':')
                    .is_some_and(|(_, mac)| mac.starts_with('0'))
            })
            .unwrap();
        let plus = t.replacen(":0", ":+", 1);
        assert_eq!(
            verify(SECRET, &plus, "", None, expiry),
            Err(TokenError::Malformed)
        );
        let upper = t.to_ascii_uppercase();
        assert_eq!(
            verify(SECRET, &upper, "", None, expiry),
            Ok(()),
            "hex in either case"
        );
    }
}
