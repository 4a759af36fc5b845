//! Fuzz target `transport_sequence`: see `meshd_crypto::fuzzing::transport_sequence` for what it exercises
//! and asserts. Its corpus (`fuzz/corpus/transport_sequence`) is replayed by `cargo test`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    crypto::fuzzing::transport_sequence(data);
});
