use super::*;

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn claimed(buf: &[u8]) -> SocketAddr {
    match parse(buf) {
        Ok(Some(Header {
            source: Source::Claimed(a),
            len,
            ..
        })) => {
            assert_eq!(len, buf.len(), "the whole header is consumed");
            a
        }
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
    }
}

fn malformed(buf: &[u8]) -> &'static str {
    match parse(buf) {
        Err(Invalid::Malformed(why)) => why,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
    }
}

/// A v2 header: version/command, family/transport, then `body`.
fn v2(ver_cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.extend_from_slice(&[ver_cmd, fam]);
    let len = u16::try_from(body.len()).expect("short body");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn v2_inet(src: [u8; 4], sport: u16) -> Vec<u8> {
    let mut body = src.to_vec();
    body.extend_from_slice(&[192, 0, 2, 1]);
    body.extend_from_slice(&sport.to_be_bytes());
    body.extend_from_slice(&3478u16.to_be_bytes());
    body
}

#[test]
fn v1_tcp4_and_tcp6_give_the_source() {
    let line = b"PROXY TCP4 198.51.100.7 192.0.2.1 40000 3478\r\n";
    assert_eq!(claimed(line), addr("198.51.100.7:40000"));
    let line = b"PROXY TCP6 2001:db8::7 2001:db8::1 65535 443\r\n";
    assert_eq!(claimed(line), addr("[2001:db8::7]:65535"));
    // An IPv4-mapped source is the IPv4 client it stands for.
    let line = b"PROXY TCP6 ::ffff:198.51.100.7 ::1 0 443\r\n";
    assert_eq!(claimed(line), addr("198.51.100.7:0"));
}

#[test]
fn v1_unknown_means_the_connections_own_address() {
    for line in [
        &b"PROXY UNKNOWN\r\n"[..],
        b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n",
    ] {
        let header = parse(line).unwrap().unwrap();
        assert_eq!((header.source, header.len), (Source::Own, line.len()));
    }
}

#[test]
fn v1_stops_at_its_crlf_and_leaves_what_follows() {
    let mut buf = b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\n".to_vec();
    let len = buf.len();
    buf.extend_from_slice(&[0, 1, 0, 0, 0x21, 0x12]); // a STUN header begins
    let header = parse(&buf).unwrap().unwrap();
    assert_eq!(header.len, len);
    assert_eq!(header.version, 1);
}

#[test]
fn every_beginning_of_a_header_is_incomplete_not_invalid() {
    let line = b"PROXY TCP4 198.51.100.7 192.0.2.1 40000 3478\r\n";
    let binary = v2(0x21, 0x11, &v2_inet([198, 51, 100, 7], 40000));
    for header in [&line[..], &binary] {
        for n in 0..header.len() {
            assert_eq!(parse(&header[..n]), Ok(None), "{n} bytes of {header:?}");
        }
        assert!(parse(header).unwrap().is_some());
    }
}

#[test]
fn v1_bad_ports_are_refused() {
    for port in [
        "65536", "99999", "-1", "+1", "01", "1a", "", "123456", "0x10",
    ] {
        let line = format!("PROXY TCP4 10.0.0.1 10.0.0.2 {port} 3478\r\n");
        malformed(line.as_bytes());
        let line = format!("PROXY TCP4 10.0.0.1 10.0.0.2 1000 {port}\r\n");
        malformed(line.as_bytes());
    }
    assert_eq!(claimed(b"PROXY TCP4 10.0.0.1 10.0.0.2 0 0\r\n").port(), 0);
}

#[test]
fn v1_garbage_is_refused() {
    for line in [
        &b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2\n"[..], // LF without CR
        b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2\rX\r\n", // CR inside
        b"PROXY TCP4 10.0.0.1  10.0.0.2 1 2\r\n",   // two spaces
        b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2 \r\n",   // trailing space
        b"PROXY TCP4 10.0.0.1 10.0.0.2 1\r\n",      // a port missing
        b"PROXY TCP4 2001:db8::1 10.0.0.2 1 2\r\n", // family mismatch
        b"PROXY TCP6 10.0.0.1 2001:db8::2 1 2\r\n", // family mismatch
        b"PROXY TCP4 10.0.0.1 010.0.0.2 1 2\r\n",   // octal-looking octet
        b"PROXY TCP4 10.0.0.256 10.0.0.2 1 2\r\n",  // octet out of range
        b"PROXY UDP4 10.0.0.1 10.0.0.2 1 2\r\n",    // not TCP
        b"PROXY tcp4 10.0.0.1 10.0.0.2 1 2\r\n",    // case matters
        b"PROXY \r\n",                              // nothing at all
        b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2\xff\r\n", // not ASCII
    ] {
        malformed(line);
    }
}

#[test]
fn v1_is_bounded_at_107_bytes() {
    // The longest legal line (TCP6 with long addresses) is exactly 104 bytes, well inside.
    let longest = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff \
                   ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_eq!(longest.len(), 104);
    assert!(claimed(longest.as_bytes()).is_ipv6());
    let mut endless = b"PROXY UNKNOWN ".to_vec();
    endless.resize(V1_MAX - 1, b'x');
    assert_eq!(parse(&endless), Ok(None), "106 bytes may still end");
    endless.push(b'x');
    malformed(&endless);
    endless.extend_from_slice(b"\r\n");
    malformed(&endless);
}

#[test]
fn v2_proxy_inet_and_inet6_give_the_source() {
    assert_eq!(
        claimed(&v2(0x21, 0x11, &v2_inet([198, 51, 100, 7], 40000))),
        addr("198.51.100.7:40000")
    );
    let mut body = "2001:db8::7".parse::<Ipv6Addr>().unwrap().octets().to_vec();
    body.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
    body.extend_from_slice(&[0x12, 0x34, 0x01, 0xbb]);
    assert_eq!(claimed(&v2(0x21, 0x21, &body)), addr("[2001:db8::7]:4660"));
}

#[test]
fn v2_tlvs_are_skipped_within_the_length() {
    let mut body = v2_inet([203, 0, 113, 9], 5000);
    // PP2_TYPE_AUTHORITY "turn.example" and a NOOP.
    body.extend_from_slice(&[0x02, 0x00, 12]);
    body.extend_from_slice(b"turn.example");
    body.extend_from_slice(&[0x04, 0x00, 0x00]);
    let mut buf = v2(0x21, 0x11, &body);
    let len = buf.len();
    buf.extend_from_slice(&[0x16, 0x03, 0x01]); // a TLS ClientHello begins
    let header = parse(&buf).unwrap().unwrap();
    assert_eq!((header.len, header.version), (len, 2));
    assert_eq!(header.source, Source::Claimed(addr("203.0.113.9:5000")));
}

#[test]
fn v2_local_and_unspec_mean_the_connections_own_address() {
    // LOCAL ignores whatever address block it carries.
    for buf in [
        v2(0x20, 0x00, &[]),
        v2(0x20, 0x11, &v2_inet([10, 0, 0, 1], 1)),
        v2(0x21, 0x00, &[]),
    ] {
        let header = parse(&buf).unwrap().unwrap();
        assert_eq!((header.source, header.len), (Source::Own, buf.len()));
    }
}

#[test]
fn v2_unix_dgram_and_unknown_values_are_refused() {
    let unix = v2(0x21, 0x31, &[0; 216]);
    assert!(malformed(&unix).contains("UNIX"));
    malformed(&v2(0x21, 0x12, &v2_inet([10, 0, 0, 1], 1))); // DGRAM
    malformed(&v2(0x21, 0x10, &v2_inet([10, 0, 0, 1], 1))); // INET, UNSPEC transport
    malformed(&v2(0x21, 0x41, &[0; 12])); // family 4
    malformed(&v2(0x21, 0x13, &[0; 12])); // transport 3
    assert!(malformed(&v2(0x22, 0x11, &[])).contains("command"));
    assert!(malformed(&v2(0x11, 0x11, &[])).contains("version"));
    // The version byte is judged as soon as it arrives.
    assert!(malformed(&v2(0x31, 0x11, &[])[..13]).contains("version"));
}

#[test]
fn v2_address_blocks_too_short_for_their_family_are_refused() {
    malformed(&v2(0x21, 0x11, &[10, 0, 0, 1, 10, 0, 0, 2, 0, 1]));
    malformed(&v2(0x21, 0x21, &[0; 35]));
    malformed(&v2(0x21, 0x11, &[]));
}

#[test]
fn v2_length_is_bounded() {
    let mut head = v2(0x21, 0x11, &[]);
    head[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
    assert!(malformed(&head).contains("longer"));
    let mut body = v2_inet([10, 0, 0, 1], 1);
    body.resize(V2_MAX_BODY, 0);
    let biggest = v2(0x21, 0x11, &body);
    assert_eq!(biggest.len(), MAX_HEADER);
    assert!(parse(&biggest).unwrap().is_some());
    head[14..16].copy_from_slice(&((V2_MAX_BODY + 1) as u16).to_be_bytes());
    malformed(&head);
}

#[test]
fn other_protocols_are_missing_headers() {
    let stun = [0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    for buf in [
        &stun[..],
        b"GET / HTTP/1.1\r\n",
        b"PROPFIND / HTTP/1.1\r\n",
        b"PRI * HTTP/2.0\r\n",
        &[0x16, 0x03, 0x01, 0x02, 0x00],
        b"\r\n\r\nX",
        b"proxy TCP4",
    ] {
        assert_eq!(parse(buf), Err(Invalid::Missing), "{buf:?}");
        assert_eq!(sniff(buf), Sniff::Neither, "{buf:?}");
    }
}

#[test]
fn sniff_waits_for_enough_bytes_to_tell() {
    assert_eq!(sniff(b""), Sniff::Undecided);
    assert_eq!(sniff(b"PRO"), Sniff::Undecided);
    assert_eq!(sniff(b"PROXY"), Sniff::Undecided);
    assert_eq!(sniff(b"PROXY "), Sniff::V1);
    assert_eq!(sniff(b"PROXY garbage"), Sniff::V1);
    assert_eq!(sniff(&V2_SIGNATURE[..11]), Sniff::Undecided);
    assert_eq!(sniff(&V2_SIGNATURE), Sniff::V2);
    assert_eq!(sniff(b"\r\n\r\n\r"), Sniff::Neither);
}

#[test]
fn arbitrary_bytes_never_panic_and_never_claim_more_than_they_hold() {
    // A cheap stand-in for the fuzz target: every prefix of a few thousand pseudo-random
    // buffers, some of them starting with a signature.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..3000 {
        let mut buf: Vec<u8> = match round % 3 {
            0 => V2_SIGNATURE.to_vec(),
            1 => V1_PREFIX.to_vec(),
            _ => Vec::new(),
        };
        let extra = (next() % 80) as usize;
        buf.extend((0..extra).map(|_| (next() % 256) as u8));
        if round % 3 == 0 && buf.len() > 15 {
            buf[12] = 0x20 | (buf[12] & 1);
            buf[14] = 0;
            buf[15] %= 64;
        }
        for n in 0..=buf.len() {
            if let Ok(Some(header)) = parse(&buf[..n]) {
                assert!(header.len <= n, "{header:?} from {n} bytes");
            }
        }
    }
}

#[test]
fn errors_read_as_sentences() {
    assert_eq!(Invalid::Missing.to_string(), "no PROXY protocol header");
    let why = parse(b"PROXY TCP4 x y 1 2\r\n").unwrap_err().to_string();
    assert!(
        why.starts_with("malformed PROXY protocol header: v1"),
        "{why}"
    );
}
