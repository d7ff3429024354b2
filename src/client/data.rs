//! The data path as a client sees it: ChannelData framing (RFC 8656 §12.4) and [`Inbound`],
//! what arrives on a client's socket: a response, a Data indication or ChannelData.

use std::net::SocketAddr;

use stun::attributes::{ATTR_DATA, ATTR_XOR_PEER_ADDRESS};
use stun::message::{CLASS_INDICATION, METHOD_DATA, Message};

use super::error::ClientError;
use super::response::Response;
use crate::stun::channel_data;
use crate::stun::codec::{Malformed, PacketKind, decode_into, packet_kind};
use crate::turn::attrs::decode_xor_address;

/// A ChannelData message of `data` on `channel`, unpadded (as sent over UDP).
pub fn channel_data(channel: u16, data: &[u8]) -> Result<Vec<u8>, ClientError> {
    let mut out = Vec::with_capacity(channel_data::HEADER_LEN + data.len());
    channel_data_into(&mut out, channel, data, false)?;
    Ok(out)
}

/// Appends a ChannelData message of `data` on `channel` to `out`; with `pad`, zeros up to a
/// multiple of four bytes, as a stream needs (RFC 8656 §12.5).
pub fn channel_data_into(
    out: &mut Vec<u8>,
    channel: u16,
    data: &[u8],
    pad: bool,
) -> Result<(), ClientError> {
    if u16::try_from(data.len()).is_err() {
        return Err(ClientError::TooLong);
    }
    out.extend_from_slice(&channel_data::header(channel, data.len()));
    out.extend_from_slice(data);
    if pad {
        out.resize(out.len() + (4 - data.len() % 4) % 4, 0);
    }
    Ok(())
}

/// What a client's socket received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// A response to one of its requests.
    Response(Response),
    /// A Data indication: `data` from `peer` (RFC 8656 §10.4).
    Data {
        /// The peer that sent it (XOR-PEER-ADDRESS).
        peer: SocketAddr,
        /// The application data.
        data: Vec<u8>,
    },
    /// ChannelData: `data` from the peer bound to `channel`.
    ChannelData {
        /// The channel number.
        channel: u16,
        /// The application data.
        data: Vec<u8>,
    },
}

/// Reads one datagram (or one stream frame) a TURN server sent a client.
pub fn parse_inbound(packet: &[u8]) -> Result<Inbound, ClientError> {
    if packet_kind(packet) == PacketKind::ChannelData {
        let cd = channel_data::parse(packet)?;
        return Ok(Inbound::ChannelData {
            channel: cd.channel,
            data: cd.payload.to_vec(),
        });
    }
    let mut msg = Message::new();
    decode_into(packet, &mut msg)?;
    if msg.typ.class != CLASS_INDICATION {
        return Response::from_message(&msg).map(Inbound::Response);
    }
    if msg.typ.method != METHOD_DATA {
        return Err(ClientError::NotResponse(
            "an indication other than Data: not a response",
        ));
    }
    let bad = ClientError::Malformed(Malformed::BadAttribute);
    let peer = (msg.get(ATTR_XOR_PEER_ADDRESS).ok())
        .and_then(|v| decode_xor_address(&v, &msg.transaction_id.0))
        .ok_or(bad)?;
    let data = msg.get(ATTR_DATA).map_err(|_| bad)?;
    Ok(Inbound::Data { peer, data })
}
