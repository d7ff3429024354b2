//! A stream that gives back bytes already read from it: the shared `turns:`/HTTPS port
//! ([`super::shared_tls`]) reads a connection's first plaintext bytes to tell STUN from HTTP,
//! and hands an HTTP connection to hyper as [`Rewind`], which reads those bytes again first.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// `inner`, with `prefix` read before anything of it.
#[derive(Debug)]
pub(super) struct Rewind<S> {
    prefix: Vec<u8>,
    /// How much of `prefix` was read back.
    at: usize,
    inner: S,
}

impl<S> Rewind<S> {
    /// `inner`, reading `prefix` first.
    pub(super) fn new(prefix: Vec<u8>, inner: S) -> Self {
        Self {
            prefix,
            at: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let left = this.prefix.get(this.at..).unwrap_or_default();
        if !left.is_empty() {
            let n = left.len().min(buf.remaining());
            buf.put_slice(&left[..n]);
            this.at += n;
            if this.at == this.prefix.len() {
                this.prefix = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn reads_the_prefix_then_the_stream_and_writes_through() {
        let (client, server) = tokio::io::duplex(64);
        let mut rewound = Rewind::new(b"GET ".to_vec(), server);
        let mut client = client;
        client.write_all(b"/healthz").await.unwrap();
        drop(client.shutdown().await);
        // Small reads split the prefix; nothing is lost or repeated.
        let mut first = [0u8; 3];
        rewound.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"GET");
        let mut rest = String::new();
        rewound.read_to_string(&mut rest).await.unwrap();
        assert_eq!(rest, " /healthz");
        let (mut other, end) = tokio::io::duplex(8);
        let mut rewound = Rewind::new(Vec::new(), end);
        rewound.write_all(b"ok").await.unwrap();
        let mut written = [0u8; 2];
        other.read_exact(&mut written).await.unwrap();
        assert_eq!(&written, b"ok");
    }
}
