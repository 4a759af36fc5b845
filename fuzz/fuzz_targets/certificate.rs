//! Fuzz target `certificate`: see `meshd_crypto::fuzzing::certificate` for what it exercises
//! and asserts. Its corpus (`fuzz/corpus/certificate`) is replayed by `cargo test`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    crypto::fuzzing::certificate(data);
});
