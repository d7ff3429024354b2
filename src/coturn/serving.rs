//! What the converted file serves beyond TURN, and what the service must be able to read:
//! `[listen] http` (where `/metrics` and `/healthz` are, from coturn's `prometheus` options),
//! `[relay] alternate-server` (from `alternate-server`), and certificate paths under
//! `/etc/letsencrypt`, which rturn's systemd service cannot read.

use std::net::{Ipv4Addr, SocketAddr};

use super::line::{attention, note};
use super::toml_text::{Toml, quote};
use super::{At, Importer};

/// coturn's `prometheus-port` default.
const COTURN_METRICS_PORT: u16 = 9641;
/// `listen.http` when coturn served no metrics: the port of rturn's shipped config.
const HTTP_PORT: u16 = 8080;
/// certbot's directory: `live/` and `archive/` are root's alone (mode 0700).
const LETSENCRYPT: &str = "/etc/letsencrypt/";

/// What the HTTP listener serves besides `/metrics`, for the reports.
const HTTP_ALSO: &str = "the signaling relay (/ws), the web pages and /api/ice-servers (TURN \
                         credentials for whoever asks)";

impl Importer {
    /// `listen.http`, written into `[listen]`: coturn's `prometheus` address and port, but on
    /// loopback where coturn listened on every address (listen.http serves more than
    /// metrics); 127.0.0.1:8080 when coturn served no metrics, for `/healthz` and `/metrics`.
    /// `None` (and reported) when it would take a STUN/TURN listener's TCP port.
    pub(super) fn http(&mut self, out: &mut Toml, tcp: &[SocketAddr]) -> Option<SocketAddr> {
        let port = self.prometheus_port.take();
        let address = self.prometheus_address.take();
        let Some(line) = self.prometheus else {
            for (at, option) in [
                (port.map(|p| p.line), "prometheus-port"),
                (address.map(|a| a.line), "prometheus-address"),
            ] {
                let unused = note("unused: prometheus is off, so coturn served no metrics");
                if let Some(at) = at {
                    self.skip(Some(at), option, unused);
                }
            }
            let http = SocketAddr::from((Ipv4Addr::LOCALHOST, HTTP_PORT));
            return self.write_http(out, http, tcp, None);
        };
        let port = port.map_or(COTURN_METRICS_PORT, |p| p.value);
        let http = match address {
            Some(At { value: ip, line }) if !ip.is_unspecified() => {
                if !ip.is_loopback() {
                    let why = format!(
                        "listen.http on {ip} serves /metrics and also {HTTP_ALSO}, which \
                         coturn's metrics port did not: set [signal] token-secret before \
                         exposing it"
                    );
                    self.skip(Some(line), "prometheus-address", attention(why));
                }
                SocketAddr::new(ip, port)
            }
            _ => {
                let why = format!(
                    "coturn served /metrics on every address (port {port}); listen.http \
                     serves it on 127.0.0.1:{port} only, because it also serves {HTTP_ALSO}: \
                     to scrape from another machine, set [signal] token-secret and put a \
                     reachable address in listen.http"
                );
                self.skip(Some(line), "prometheus", attention(why));
                SocketAddr::from((Ipv4Addr::LOCALHOST, port))
            }
        };
        self.write_http(out, http, tcp, Some(line))
    }

    fn write_http(
        &mut self,
        out: &mut Toml,
        http: SocketAddr,
        tcp: &[SocketAddr],
        prometheus: Option<usize>,
    ) -> Option<SocketAddr> {
        let clash = |a: &SocketAddr| {
            a.port() == http.port()
                && (a.ip() == http.ip() || a.ip().is_unspecified() || http.ip().is_unspecified())
        };
        if let Some(taken) = tcp.iter().find(|a| clash(a)) {
            let why = format!(
                "its port {} is also STUN/TURN's ({taken}), so there is no listen.http (no \
                 /metrics, no /healthz): add one on a free port",
                http.port()
            );
            let option = if prometheus.is_some() {
                "prometheus-port"
            } else {
                "http"
            };
            self.skip(prometheus, option, attention(why));
            return None;
        }
        out.line(match prometheus {
            Some(line) => {
                format!("# /metrics (Prometheus) and /healthz: from prometheus (line {line}).")
            }
            None => "# /healthz and /metrics (Prometheus text), for this machine only.".to_owned(),
        });
        out.line("# listen.http also serves the signaling relay (/ws), the web pages and");
        out.line("# /api/ice-servers (TURN credentials for whoever asks): set [signal]");
        out.line("# token-secret before opening it to other machines.");
        out.line(format!("http = {}", quote(&http.to_string())));
        Some(http)
    }

    /// `[relay] alternate-server`: the first `alternate-server`, reported because rturn
    /// sends clients there only when it is full or draining.
    pub(super) fn alternate(&mut self, out: &mut Toml) {
        let mut alternates = std::mem::take(&mut self.alternates).into_iter();
        let Some(first) = alternates.next() else {
            return;
        };
        let why = "converted to [relay] alternate-server, where rturn sends new allocations \
                   (300 Try Alternate) only while it is full or draining; coturn sent every \
                   Allocate to its alternate servers, which rturn never does. Give that server \
                   the same static-auth-secret so the credentials work there";
        self.skip(Some(first.line), "alternate-server", attention(why));
        for other in alternates {
            let why = format!(
                "rturn names one alternate server; {} (line {}) is kept",
                first.value, first.line
            );
            self.skip(Some(other.line), "alternate-server", attention(why));
        }
        out.line(format!(
            "alternate-server = {}",
            quote(&first.value.to_string())
        ));
    }

    /// Reports `cert` and `pkey` paths under `/etc/letsencrypt` (the service cannot read
    /// them); true when there is any, for a comment beside `[tls]`.
    pub(super) fn unreadable_files(&mut self) -> bool {
        let files = [
            (
                self.cert.as_ref().map(|c| (c.line, c.value.clone())),
                "cert",
            ),
            (
                self.pkey.as_ref().map(|k| (k.line, k.value.clone())),
                "pkey",
            ),
        ];
        let mut first = None;
        for (file, option) in files {
            let Some((line, path)) = file.filter(|(_, p)| p.starts_with(LETSENCRYPT)) else {
                continue;
            };
            let why = match first {
                Some(first) => format!("the same as line {first}: copy {path} too"),
                None => format!(
                    "{path} is kept, but only root may enter certbot's live/ and archive/ \
                     directories, and rturn's systemd service does not run as root, so it \
                     cannot read the file: copy the certificate and key where the service \
                     can read them, after every renewal (a certbot deploy hook; see the \
                     comments at the top of systemd/rturn.service), and point [tls] there"
                ),
            };
            self.skip(Some(line), option, attention(why));
            first.get_or_insert(line);
        }
        first.is_some()
    }
}
