//! Black-box: TLS. The HTTP routes over HTTPS with a certificate made at test time (verified
//! properly, against that certificate as the only root), the `turns:` URL they hand out, and
//! certificate errors that name the file and the key.

use std::sync::Arc;

use rturn::testkit::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn tls_config(dir: &std::path::Path) -> String {
    format!(
        "realm = \"t\"\n[listen]\nudp = [\"127.0.0.1:0\"]\ntcp = [\"127.0.0.1:0\"]\n\
         tls = [\"127.0.0.1:0\"]\nhttps = \"127.0.0.1:0\"\n[relay]\nrelay-ip = \"127.0.0.1\"\n\
         [auth]\nstatic-auth-secret = \"tls-test-secret\"\n{}",
        test_certificate(dir)
    )
}

/// GET `path` over HTTPS, trusting only the certificate in `dir`.
async fn https_get(addr: std::net::SocketAddr, dir: &std::path::Path, path: &str) -> String {
    let mut tls = tls_connect(addr, dir).await.expect("TLS handshake");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tls.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test(flavor = "multi_thread")]
async fn https_serves_the_ice_api_with_a_turns_url() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&tls_config(dir.path()));
    let https = server.https.expect("https address in the log");
    let response = tokio::time::timeout(TIMEOUT, https_get(https, dir.path(), "/api/ice-servers"))
        .await
        .expect("in time");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let turns = format!("turns:127.0.0.1:{}?transport=tcp", server.tls[0].port());
    assert!(response.contains(&turns), "no {turns} in {response}");
}

#[test]
fn check_config_names_a_bad_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let config = tls_config(dir.path()).replace("cert.pem", "missing.pem");
    let stderr = check_config_fails(&config);
    assert!(
        stderr.contains("missing.pem") && stderr.contains("tls.cert"),
        "{stderr}"
    );

    let config = tls_config(dir.path());
    std::fs::write(dir.path().join("key.pem"), "not a key").unwrap();
    let stderr = check_config_fails(&config);
    assert!(
        stderr.contains("key.pem") && stderr.contains("tls.key"),
        "{stderr}"
    );
}

/// A TLS client connection trusting only the certificate in `dir`.
async fn tls_connect(
    addr: std::net::SocketAddr,
    dir: &std::path::Path,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(dir.join("cert.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// A STUN Binding over an open TLS stream; returns the response's length.
async fn binding_over(
    stream: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
) -> usize {
    let request = binding_request(&[], true);
    stream.write_all(&request.raw).await.unwrap();
    let mut header = [0u8; 20];
    stream.read_exact(&mut header).await.unwrap();
    let len = u16::from_be_bytes([header[2], header[3]]) as usize;
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await.unwrap();
    let response = decode_response(&request, &[header.to_vec(), body].concat());
    assert_eq!(response.typ, stun::message::BINDING_SUCCESS);
    20 + len
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_swaps_the_certificate_for_new_connections_only() {
    let (old, new) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = tls_config(old.path());
    test_certificate(new.path());
    let (_cfg_dir, path) = write_config(&config);
    let mut server = Server::start_file(_cfg_dir, &path);
    let turns = server.tls[0];

    let mut before = tls_connect(turns, old.path())
        .await
        .expect("old certificate");
    binding_over(&mut before).await;

    // Renewal: new files in place, then a reload.
    for file in ["cert.pem", "key.pem"] {
        std::fs::copy(new.path().join(file), old.path().join(file)).unwrap();
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.pid() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    tokio::task::block_in_place(|| server.wait_line(|l| l.contains("configuration reloaded")));

    let mut after = tls_connect(turns, new.path())
        .await
        .expect("new certificate served");
    binding_over(&mut after).await;
    // (The old files were overwritten, so trust the old certificate from the first
    // connection's point of view: a client that only knows it is now refused.)
    let old_only = tempfile::tempdir().unwrap();
    let old_cert = before.get_ref().1.peer_certificates().unwrap()[0].clone();
    std::fs::write(old_only.path().join("cert.pem"), pem_of(&old_cert)).unwrap();
    assert!(
        tls_connect(turns, old_only.path()).await.is_err(),
        "the old certificate is still served"
    );
    // The connection made before the swap is still up and served.
    binding_over(&mut before).await;
}

/// PEM text of a DER certificate.
fn pem_of(cert: &CertificateDer<'_>) -> String {
    use base64::Engine;
    let b64 = base64::prelude::BASE64_STANDARD.encode(cert.as_ref());
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

/// Runs `--check-config` on `config`, expects exit status 1, returns stderr.
fn check_config_fails(config: &str) -> String {
    let (_dir, path) = write_config(config);
    let out = rturn()
        .arg("-c")
        .arg(&path)
        .arg("--check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    String::from_utf8_lossy(&out.stderr).into_owned()
}
