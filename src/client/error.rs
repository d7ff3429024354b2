//! [`ClientError`]: what can go wrong building a request or reading a packet.

/// Why a request could not be built or a packet not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// An attribute could not be encoded (a text attribute over its RFC 8489 limit, say).
    #[error("cannot encode {0}")]
    Encode(&'static str),
    /// ChannelData carries at most 65535 bytes.
    #[error("ChannelData payload over 65535 bytes")]
    TooLong,
    /// The bytes are not a well-formed STUN message or ChannelData.
    #[error("malformed packet: {0}")]
    Malformed(#[from] crate::stun::Malformed),
    /// A STUN message, but not a response (a request or an indication where a response was
    /// expected), or an error response without ERROR-CODE.
    #[error("{0}")]
    NotResponse(&'static str),
}
