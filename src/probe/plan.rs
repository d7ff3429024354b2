//! The probe's steps as data: [`plan`] turns the targets into the [`Check`]s to run, in
//! report order, with a skipped row for every step no target applies to. Pure.

use super::target::{Target, Transport};

/// A STUN/TURN server to reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The host as given (a name, or an address).
    pub host: String,
    /// The port.
    pub port: u16,
    /// UDP, TCP or TLS.
    pub transport: Transport,
}

/// An HTTP(S) listener to reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Web {
    /// The host as given.
    pub host: String,
    /// The port.
    pub port: u16,
    /// HTTPS.
    pub tls: bool,
}

/// One step of the probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// A Binding request: the server answers with the client's mapped address.
    Binding(Endpoint),
    /// An authenticated Allocate of a UDP relay, deleted again.
    Allocate(Endpoint),
    /// Two allocations relaying to each other, both ways.
    Relay(Endpoint),
    /// CreatePermission for a link-local peer (cloud metadata), which must get 403.
    ForbiddenPeer(Endpoint),
    /// `GET /healthz` answers 200.
    Healthz(Web),
    /// `GET /api/ice-servers` answers 200 with an `iceServers` list.
    IceServers(Web),
    /// A step no target applies to.
    Skipped {
        /// The step's name.
        name: String,
        /// Why it does not apply.
        why: String,
    },
}

impl Check {
    /// The name in the report, with the address probed.
    pub fn name(&self) -> String {
        let turn = |step: &str, e: &Endpoint| {
            format!(
                "{step} {} {}",
                e.transport.name(),
                authority(&e.host, e.port)
            )
        };
        let web = |step: &str, w: &Web| {
            let scheme = if w.tls { "https" } else { "http" };
            format!("{step} {scheme}://{}", authority(&w.host, w.port))
        };
        match self {
            Check::Binding(e) => turn("binding", e),
            Check::Allocate(e) => turn("allocate", e),
            Check::Relay(e) => turn("relay A<->B", e),
            Check::ForbiddenPeer(e) => turn("forbidden peer", e),
            Check::Healthz(w) => web("healthz", w),
            Check::IceServers(w) => web("ice-servers", w),
            Check::Skipped { name, .. } => name.clone(),
        }
    }
}

/// `host:port`, an IPv6 address in brackets.
pub fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The checks for `targets`: Binding on every STUN/TURN target, Allocate on every TURN one,
/// by transport (UDP, TCP, TLS); the relay and forbidden-peer steps on the first TURN target
/// (UDP preferred); `/healthz` and `/api/ice-servers` on every HTTP(S) target. A transport,
/// or HTTP, with no target gets a skipped row instead.
pub fn plan(targets: &[Target]) -> Vec<Check> {
    let endpoints: Vec<(Endpoint, bool)> = (targets.iter())
        .filter_map(|t| match t {
            Target::Turn {
                host,
                port,
                transport,
                turn,
            } => Some((
                Endpoint {
                    host: host.clone(),
                    port: *port,
                    transport: *transport,
                },
                *turn,
            )),
            Target::Http { .. } => None,
        })
        .collect();
    let mut checks = Vec::new();
    for (step, turn_only) in [("binding", false), ("allocate", true)] {
        for transport in [Transport::Udp, Transport::Tcp, Transport::Tls] {
            let found: Vec<&Endpoint> = (endpoints.iter())
                .filter(|(e, turn)| e.transport == transport && (*turn || !turn_only))
                .map(|(e, _)| e)
                .collect();
            if found.is_empty() {
                checks.push(skipped(
                    format!("{step} {}", transport.name()),
                    format!("no {} target", scheme(transport, turn_only)),
                ));
            }
            for e in found {
                checks.push(if turn_only {
                    Check::Allocate(e.clone())
                } else {
                    Check::Binding(e.clone())
                });
            }
        }
    }
    let relay = (endpoints.iter().filter(|(_, turn)| *turn))
        .min_by_key(|(e, _)| e.transport != Transport::Udp)
        .map(|(e, _)| e);
    match relay {
        Some(e) => {
            checks.push(Check::Relay(e.clone()));
            checks.push(Check::ForbiddenPeer(e.clone()));
        }
        None => {
            checks.push(skipped(
                "relay A<->B".to_owned(),
                "no turn: target".to_owned(),
            ));
            checks.push(skipped(
                "forbidden peer".to_owned(),
                "no turn: target".to_owned(),
            ));
        }
    }
    let webs: Vec<Web> = (targets.iter())
        .filter_map(|t| match t {
            Target::Http { host, port, tls } => Some(Web {
                host: host.clone(),
                port: *port,
                tls: *tls,
            }),
            Target::Turn { .. } => None,
        })
        .collect();
    if webs.is_empty() {
        let why = "no http(s) target".to_owned();
        checks.push(skipped("healthz".to_owned(), why.clone()));
        checks.push(skipped("ice-servers".to_owned(), why));
    }
    for w in webs {
        checks.push(Check::Healthz(w.clone()));
        checks.push(Check::IceServers(w));
    }
    checks
}

fn skipped(name: String, why: String) -> Check {
    Check::Skipped { name, why }
}

fn scheme(transport: Transport, turn_only: bool) -> &'static str {
    match (transport, turn_only) {
        (Transport::Udp, false) => "stun:/turn: (udp)",
        (Transport::Udp, true) => "turn: (udp)",
        (Transport::Tcp, _) => "turn:?transport=tcp",
        (Transport::Tls, _) => "turns:",
    }
}

#[cfg(test)]
mod tests {
    use super::super::target::parse_url;
    use super::*;

    fn names(urls: &[&str]) -> Vec<String> {
        let targets: Vec<Target> = urls.iter().map(|u| parse_url(u).unwrap()).collect();
        plan(&targets).iter().map(Check::name).collect()
    }

    #[test]
    fn every_step_has_a_row_run_or_skipped() {
        assert_eq!(
            names(&[
                "turn:127.0.0.1:3478",
                "turn:[::1]:9?transport=tcp",
                "http://h:80"
            ]),
            [
                "binding UDP 127.0.0.1:3478",
                "binding TCP [::1]:9",
                "binding TLS",
                "allocate UDP 127.0.0.1:3478",
                "allocate TCP [::1]:9",
                "allocate TLS",
                "relay A<->B UDP 127.0.0.1:3478",
                "forbidden peer UDP 127.0.0.1:3478",
                "healthz http://h:80",
                "ice-servers http://h:80",
            ]
        );
    }

    #[test]
    fn stun_urls_get_binding_only_and_the_relay_prefers_udp() {
        let targets: Vec<Target> = ["turns:h", "stun:h", "turn:h:1"]
            .iter()
            .map(|u| parse_url(u).unwrap())
            .collect();
        let checks = plan(&targets);
        let allocate_udp = (checks.iter())
            .filter(|c| matches!(c, Check::Allocate(e) if e.transport == Transport::Udp))
            .count();
        assert_eq!(allocate_udp, 1, "turn:h:1 only, not stun:h");
        assert!(checks.contains(&Check::Relay(Endpoint {
            host: "h".to_owned(),
            port: 1,
            transport: Transport::Udp
        })));
        assert_eq!(names(&["stun:h"])[3], "allocate UDP");
        assert!(names(&["stun:h"]).contains(&"relay A<->B".to_owned()));
    }
}
