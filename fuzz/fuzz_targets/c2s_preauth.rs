//! A fresh c2s stream (TLS off, loopback peer so PLAIN is offered) fed arbitrary bytes from the
//! first one: stream header, features, SASL (PLAIN can succeed with alice's password; SCRAM runs up
//! to the proof), in-band registration, bind, stanzas, timeouts. The driver answers every event
//! (`petrel_fuzz::c2s::Driver`) and checks: no panic, nobody authenticates without the password,
//! `from` is stamped, no event after `Closed`, and the server's output stays well-formed XML.
//!
//! Control byte: seeds the read split and the driver's choices.
#![no_main]

use libfuzzer_sys::fuzz_target;
use petrel_fuzz::c2s::Driver;
use petrel_fuzz::{control, Chunks};

fuzz_target!(|data: &[u8]| {
    let Some((c, stream)) = control(data) else {
        return;
    };
    let mut d = Driver::new(c);
    for read in Chunks::new(c, stream) {
        d.input(read);
        if d.closed {
            break;
        }
    }
    d.finish();
});
