//! The `petrel.toml` loader on arbitrary text. Checks, besides "no panic": every error has a
//! location inside the text and renders; an accepted config passes (or cleanly fails) the module
//! option checks and its effective form (`check-config` output) parses back to the same config.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use petrel::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let c = match Config::parse(text, Path::new("fuzz.toml")) {
        Ok(c) => c,
        Err(e) => {
            let at = e
                .location()
                .expect("parse and validation errors have a location");
            let lines = text.split('\n').count();
            assert!(
                at.line >= 1 && at.line <= lines.max(1),
                "{at:?} outside the text"
            );
            assert!(e.to_string().starts_with("fuzz.toml:"));
            return;
        }
    };
    let _ = petrel::modules::check(&c).map_err(|e| e.to_string());
    let _ = petrel::modules::c2s_options(&c).map_err(|e| e.to_string());
    let effective = c.to_toml();
    let back = Config::parse(&effective, Path::new("fuzz.toml"))
        .unwrap_or_else(|e| panic!("effective config does not parse: {e}\n{effective}"));
    assert_eq!(back.general, c.general);
    assert_eq!(back.auth, c.auth);
    assert_eq!(back.listen, c.listen);
    assert_eq!(back.shards, c.shards);
    assert_eq!(back.modules, c.modules);
});
