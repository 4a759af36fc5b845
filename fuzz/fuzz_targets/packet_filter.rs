//! Fuzz target `packet_filter`: see `meshd_crypto::fuzzing::packet_filter` for what it exercises
//! and asserts. Its corpus (`fuzz/corpus/packet_filter`) is replayed by `cargo test`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    crypto::fuzzing::packet_filter(data);
});
