//! A c2s stream logged in (PLAIN as alice) and bound by a script, then fed arbitrary bytes: stanzas,
//! XEP-0198 `<enable/>`, `<r/>`, `<a/>`, `<resume/>`, pings, stream restarts, close. Routed stanzas
//! are delivered back now and then so the outbound queue and the stream management buffer fill. The
//! same checks as `c2s_preauth` (see `petrel_fuzz::c2s::Driver`).
//!
//! Control byte: bit 0 enables stream management in the script; the byte seeds the read split and
//! the driver's choices.
#![no_main]

use libfuzzer_sys::fuzz_target;
use petrel_fuzz::c2s::Driver;
use petrel_fuzz::{control, Chunks};

fuzz_target!(|data: &[u8]| {
    let Some((c, stream)) = control(data) else {
        return;
    };
    let mut d = Driver::new(c);
    d.login(c & 1 != 0);
    for read in Chunks::new(c, stream) {
        d.input(read);
        if d.closed {
            break;
        }
    }
    d.finish();
});
