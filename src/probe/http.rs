//! A minimal blocking HTTP/1.1 GET over TCP or TLS, for `/healthz` and `/api/ice-servers`:
//! `Connection: close`, the whole answer read until the server closes, bounded in time and
//! size. No chunked decoding is needed: rturn's answers to these two carry a length.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Instant;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use super::conn::resolve;
use super::plan::{Web, authority};

/// The most of an answer read.
const MAX_ANSWER: u64 = 1 << 20;

/// GETs `path_and_query` from `web`: the status code and the body.
pub fn get(
    web: &Web,
    path_and_query: &str,
    tls: &Arc<ClientConfig>,
    deadline: Instant,
) -> Result<(u16, String), String> {
    let addr = resolve(&web.host, web.port).map_err(|e| e.to_string())?;
    let left = || {
        let left = deadline.saturating_duration_since(Instant::now());
        (!left.is_zero())
            .then_some(left)
            .ok_or_else(|| "no answer before the timeout".to_owned())
    };
    let tcp = TcpStream::connect_timeout(&addr, left()?).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(left()?))
        .map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(left()?))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "GET {path_and_query} HTTP/1.1\r\nHost: {}\r\nUser-Agent: rturn-probe\r\n\
         Connection: close\r\n\r\n",
        authority(&web.host, web.port)
    );
    let mut answer = Vec::new();
    let io = |e: std::io::Error| e.to_string();
    if web.tls {
        let name = ServerName::try_from(web.host.clone()).map_err(|e| e.to_string())?;
        let conn = ClientConnection::new(Arc::clone(tls), name).map_err(|e| e.to_string())?;
        let mut stream = StreamOwned::new(conn, tcp);
        stream.write_all(request.as_bytes()).map_err(io)?;
        read_all(&mut stream, &mut answer).map_err(io)?;
    } else {
        let mut stream = tcp;
        stream.write_all(request.as_bytes()).map_err(io)?;
        read_all(&mut stream, &mut answer).map_err(io)?;
    }
    parse_answer(&answer)
}

/// Reads until the end, tolerating a TLS peer that closes without close_notify.
fn read_all(stream: &mut impl Read, answer: &mut Vec<u8>) -> std::io::Result<()> {
    match stream.take(MAX_ANSWER).read_to_end(answer) {
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !answer.is_empty() => Ok(()),
        other => other.map(drop),
    }
}

/// The status code and body of an HTTP/1.x answer.
fn parse_answer(answer: &[u8]) -> Result<(u16, String), String> {
    let text = String::from_utf8_lossy(answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| "not an HTTP answer".to_owned())?;
    let status = (head.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .filter(|_| head.starts_with("HTTP/1."))
        .ok_or_else(|| "not an HTTP answer".to_owned())?;
    Ok((status, body.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_and_garbage_is_refused() {
        let ok = parse_answer(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n").unwrap();
        assert_eq!(ok, (200, "ok\n".to_owned()));
        assert_eq!(parse_answer(b"HTTP/1.1 403 x\r\n\r\n").unwrap().0, 403);
        assert!(parse_answer(b"SSH-2.0\r\n\r\n").is_err());
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\n").is_err());
    }
}
