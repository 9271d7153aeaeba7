//! Fuzzes the MCP transport guard with arbitrary client input: it must
//! never panic, pass every line within the limit as it came, and replace
//! every longer one with a short line.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pyro_mcp::fuzz_guard(data);
});
