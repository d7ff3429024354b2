//! Black-box: TLS. The HTTP routes over HTTPS with a certificate made at test time (verified
//! properly, against that certificate as the only root), the `turns:` URL they hand out, and
//! certificate errors that name the file and the key.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::sync::Arc;

use common::*;
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
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
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
    let (_cfg_dir, path) = write_config(&config);
    let out = rturn()
        .arg("-c")
        .arg(&path)
        .arg("--check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("missing.pem") && stderr.contains("tls.cert"),
        "{stderr}"
    );

    let config = tls_config(dir.path());
    std::fs::write(dir.path().join("key.pem"), "not a key").unwrap();
    let (_cfg_dir, path) = write_config(&config);
    let out = rturn()
        .arg("-c")
        .arg(&path)
        .arg("--check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("key.pem") && stderr.contains("tls.key"),
        "{stderr}"
    );
}
