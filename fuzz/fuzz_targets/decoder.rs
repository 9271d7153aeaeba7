//! Fuzzes the frame decoder with arbitrary bytes from an untrusted guest.
//! Run: `cargo +nightly fuzz run decoder` (from the repository root).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pyro_protocol::fuzz_decode(data);
});
