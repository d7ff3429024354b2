//! Reading and writing the TURN attributes of RFC 8656 §18 on `stun` crate messages.
//!
//! `turn::proto` has types for most of these, but not for everything we need: EVEN-PORT keeps
//! its R bit private, every getter returns only the *first* instance of an attribute while
//! CreatePermission may carry several XOR-PEER-ADDRESS, and ADDITIONAL-ADDRESS-FAMILY /
//! ADDRESS-ERROR-CODE (RFC 8656 §18.11, §18.12) are missing. So the few reads are done here,
//! directly on the decoded attribute list, bounds-checked.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use stun::attributes::*;
use stun::message::{MAGIC_COOKIE, Message};

/// ADDITIONAL-ADDRESS-FAMILY (RFC 8656 §18.11).
pub const ATTR_ADDITIONAL_ADDRESS_FAMILY: AttrType = AttrType(0x8000);
/// ADDRESS-ERROR-CODE (RFC 8656 §18.12).
pub const ATTR_ADDRESS_ERROR_CODE: AttrType = AttrType(0x8001);
/// Address family value for IPv4 in REQUESTED-ADDRESS-FAMILY and friends.
pub const FAMILY_IPV4: u8 = 0x01;
/// Address family value for IPv6.
pub const FAMILY_IPV6: u8 = 0x02;
/// IANA protocol number for UDP, the only REQUESTED-TRANSPORT served.
pub const PROTO_UDP: u8 = 17;

/// Comprehension-required attributes TURN requests may carry (RFC 8489 §14, RFC 8656 §18).
pub const KNOWN_TURN_ATTRIBUTES: &[AttrType] = &[
    ATTR_USERNAME,
    ATTR_MESSAGE_INTEGRITY,
    ATTR_MESSAGE_INTEGRITY_SHA256,
    ATTR_ERROR_CODE,
    ATTR_REALM,
    ATTR_NONCE,
    ATTR_PASSWORD_ALGORITHM,
    ATTR_USER_HASH,
    ATTR_CHANNEL_NUMBER,
    ATTR_LIFETIME,
    ATTR_XOR_PEER_ADDRESS,
    ATTR_DATA,
    ATTR_REQUESTED_ADDRESS_FAMILY,
    ATTR_EVEN_PORT,
    ATTR_REQUESTED_TRANSPORT,
    ATTR_DONT_FRAGMENT,
    ATTR_RESERVATION_TOKEN,
    stun::attributes::ATTR_CONNECTION_ID,
];

/// An attribute whose value has the wrong size or content (answered with 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadAttribute;

/// The value of the first attribute of type `typ`.
pub fn value(msg: &Message, typ: AttrType) -> Option<&[u8]> {
    msg.attributes
        .0
        .iter()
        .find(|a| a.typ == typ)
        .map(|a| a.value.as_slice())
}

/// A 4-byte attribute's first byte (REQUESTED-TRANSPORT, *-ADDRESS-FAMILY).
pub fn first_byte(msg: &Message, typ: AttrType) -> Option<Result<u8, BadAttribute>> {
    value(msg, typ).map(|v| {
        if v.len() == 4 {
            Ok(v[0])
        } else {
            Err(BadAttribute)
        }
    })
}

/// LIFETIME in seconds.
pub fn lifetime(msg: &Message) -> Option<Result<u32, BadAttribute>> {
    value(msg, ATTR_LIFETIME).map(|v| match v {
        [a, b, c, d] => Ok(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => Err(BadAttribute),
    })
}

/// CHANNEL-NUMBER.
pub fn channel_number(msg: &Message) -> Option<Result<u16, BadAttribute>> {
    value(msg, ATTR_CHANNEL_NUMBER).map(|v| match v {
        [a, b, _, _] => Ok(u16::from_be_bytes([*a, *b])),
        _ => Err(BadAttribute),
    })
}

/// EVEN-PORT: `Some(Ok(reserve_next))`.
pub fn even_port(msg: &Message) -> Option<Result<bool, BadAttribute>> {
    value(msg, ATTR_EVEN_PORT).map(|v| match v {
        [flags] => Ok(flags & 0x80 != 0),
        _ => Err(BadAttribute),
    })
}

/// RESERVATION-TOKEN (8 bytes).
pub fn reservation_token(msg: &Message) -> Option<Result<[u8; 8], BadAttribute>> {
    value(msg, ATTR_RESERVATION_TOKEN).map(|v| v.try_into().map_err(|_| BadAttribute))
}

/// Every XOR-PEER-ADDRESS, in order; `Err` if any is malformed.
pub fn peer_addresses(msg: &Message, out: &mut Vec<SocketAddr>) -> Result<(), BadAttribute> {
    out.clear();
    for attr in msg
        .attributes
        .0
        .iter()
        .filter(|a| a.typ == ATTR_XOR_PEER_ADDRESS)
    {
        out.push(decode_xor_address(&attr.value, &msg.transaction_id.0).ok_or(BadAttribute)?);
    }
    Ok(())
}

/// The first XOR-PEER-ADDRESS (ChannelBind's and Connect's one peer); `None` if there is none
/// or any is malformed. `scratch` holds them all meanwhile.
pub fn first_peer(msg: &Message, scratch: &mut Vec<SocketAddr>) -> Option<SocketAddr> {
    peer_addresses(msg, scratch).ok()?;
    scratch.first().copied()
}

/// Decodes an XOR-*-ADDRESS value (RFC 8489 §14.2).
pub fn decode_xor_address(v: &[u8], transaction_id: &[u8; 12]) -> Option<SocketAddr> {
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let port = u16::from_be_bytes([*v.get(2)?, *v.get(3)?]) ^ (MAGIC_COOKIE >> 16) as u16;
    let ip = match (*v.get(1)?, v.len()) {
        (FAMILY_IPV4, 8) => {
            let mut b = [0u8; 4];
            for (i, byte) in b.iter_mut().enumerate() {
                *byte = v[4 + i] ^ cookie[i];
            }
            IpAddr::V4(Ipv4Addr::from(b))
        }
        (FAMILY_IPV6, 20) => {
            let mut key = [0u8; 16];
            key[..4].copy_from_slice(&cookie);
            key[4..].copy_from_slice(transaction_id);
            let mut b = [0u8; 16];
            for (i, byte) in b.iter_mut().enumerate() {
                *byte = v[4 + i] ^ key[i];
            }
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The address family code of `ip`.
pub fn family_of(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        FAMILY_IPV4
    } else {
        FAMILY_IPV6
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stun::message::BINDING_REQUEST;
    use stun::xoraddr::XorMappedAddress;

    #[test]
    fn xor_addresses_round_trip_through_the_stun_crate() {
        for addr in ["192.0.2.1:32853", "[2001:db8::1]:9", "127.0.0.1:0"] {
            let addr: SocketAddr = addr.parse().unwrap();
            let mut m = Message::new();
            m.typ = BINDING_REQUEST;
            m.new_transaction_id().unwrap();
            m.write_header();
            XorMappedAddress {
                ip: addr.ip(),
                port: addr.port(),
            }
            .add_to_as(&mut m, ATTR_XOR_PEER_ADDRESS)
            .unwrap();
            XorMappedAddress {
                ip: addr.ip(),
                port: 7,
            }
            .add_to_as(&mut m, ATTR_XOR_PEER_ADDRESS)
            .unwrap();
            let mut peers = Vec::new();
            peer_addresses(&m, &mut peers).unwrap();
            assert_eq!(peers, [addr, SocketAddr::new(addr.ip(), 7)]);
        }
    }

    #[test]
    fn malformed_values_are_rejected() {
        let tid = [0u8; 12];
        assert_eq!(decode_xor_address(&[], &tid), None);
        assert_eq!(decode_xor_address(&[0, 1, 0, 0, 1, 2, 3], &tid), None);
        assert_eq!(decode_xor_address(&[0, 2, 0, 0, 1, 2, 3, 4], &tid), None);
        assert_eq!(decode_xor_address(&[0, 3, 0, 0, 1, 2, 3, 4], &tid), None);
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;
        use stun::agent::TransactionId;
        use stun::message::BINDING_REQUEST;
        use stun::xoraddr::XorMappedAddress;

        proptest! {
            /// Whatever the address and transaction ID, the stun crate's encoding decodes
            /// back to the same address.
            #[test]
            fn xor_addresses_round_trip(ip in any::<IpAddr>(), port in any::<u16>(), tid in any::<[u8; 12]>()) {
                // (A SocketAddr's IPv6 scope and flow label do not travel.)
                let addr = SocketAddr::new(ip, port);
                let mut m = Message::new();
                m.typ = BINDING_REQUEST;
                m.transaction_id = TransactionId(tid);
                m.write_header();
                let xor = XorMappedAddress { ip: addr.ip(), port: addr.port() };
                xor.add_to_as(&mut m, ATTR_XOR_PEER_ADDRESS).unwrap();
                let value = value(&m, ATTR_XOR_PEER_ADDRESS).unwrap();
                prop_assert_eq!(decode_xor_address(value, &tid), Some(addr));
            }

            /// Any value decodes only when it has a family's exact length.
            #[test]
            fn arbitrary_values_decode_only_at_their_length(
                v in proptest::collection::vec(any::<u8>(), 0..24),
                tid in any::<[u8; 12]>(),
            ) {
                match decode_xor_address(&v, &tid) {
                    Some(addr) if addr.is_ipv4() => prop_assert_eq!((v[1], v.len()), (FAMILY_IPV4, 8)),
                    Some(_) => prop_assert_eq!((v[1], v.len()), (FAMILY_IPV6, 20)),
                    None => prop_assert!(
                        !matches!((v.get(1), v.len()), (Some(&FAMILY_IPV4), 8) | (Some(&FAMILY_IPV6), 20))
                    ),
                }
            }
        }
    }
}
