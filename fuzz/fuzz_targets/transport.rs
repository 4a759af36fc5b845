//! Fuzz target `transport`: see `meshd_crypto::fuzzing::transport` for what it exercises
//! and asserts. Its corpus (`fuzz/corpus/transport`) is replayed by `cargo test`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    crypto::fuzzing::transport(data);
});
