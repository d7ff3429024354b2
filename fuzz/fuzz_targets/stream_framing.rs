//! Untrusted TCP/TLS byte stream → frame splitter. Whatever the bytes: no panic, every frame
//! lies inside the buffer, and splitting stops at the first error or incomplete frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rturn::stun::{Frame, next_frame};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    // Each frame is at least 4 bytes, so this ends; the bound is belt and braces.
    for _ in 0..=data.len() {
        match next_frame(rest) {
            Ok(Some(frame)) => {
                assert!(
                    frame.len() >= 4 && frame.len() <= rest.len(),
                    "{frame:?} in {}",
                    rest.len()
                );
                if let Frame::ChannelData(_) = frame {
                    assert!(
                        frame.len() % 4 == 0,
                        "stream ChannelData is padded: {frame:?}"
                    );
                }
                rest = &rest[frame.len()..];
            }
            Ok(None) | Err(_) => return,
        }
    }
    panic!("more frames than bytes");
});
