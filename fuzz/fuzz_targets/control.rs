//! Fuzzes the control-socket messages (requests a client sends a
//! supervisor, replies it sends back): decoding must never panic, and what
//! decodes must encode again.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pyro_core::fuzz_control(data);
});
