//! Untrusted configuration text → `Config::from_toml` (parse and validation). Whatever the
//! text: no panic; an error names a key or a line (or both) and says what is wrong; a
//! config that loads validates again and resolves its external IPs. The coturn importer
//! (`rturn import-coturn`) never panics on the same text either, and what it writes loads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rturn::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_toml(text) {
        Ok(config) => {
            assert_eq!(config.validate(), Ok(()));
            config
                .external_ips()
                .expect("validated external IPs resolve");
            let _ = config.workers();
            let _ = config.public_listen_address();
        }
        Err(e) => {
            assert!(!e.message.is_empty(), "{e:?} says nothing");
            assert!(!e.key.is_empty() || e.line.is_some(), "{e:?} names nothing");
            if let Some(line) = e.line {
                assert!(line >= 1 && line <= text.lines().count() + 1, "{e:?}");
            }
            assert!(!e.to_string().is_empty());
        }
    }
    let converted = rturn::coturn::convert(text);
    if let Err(e) = Config::from_toml(&converted.toml) {
        panic!(
            "import-coturn wrote a config that does not load: {e}\n{}",
            converted.toml
        );
    }
});
