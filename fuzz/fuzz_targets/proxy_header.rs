//! Untrusted bytes at the start of a connection from a load balancer → PROXY protocol
//! header. Whatever the bytes: no panic, a header never claims more bytes than it was given
//! or more than the bound, and a prefix of a complete header is never invalid.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rturn::proxy_protocol::{MAX_HEADER, parse};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(header)) = parse(data) {
        assert!(header.len <= data.len() && header.len <= MAX_HEADER, "{header:?}");
        for n in 0..header.len {
            assert_eq!(parse(&data[..n]), Ok(None), "prefix of {n} bytes");
        }
    }
});
