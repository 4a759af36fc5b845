//! Fuzz target `initiation`: see `meshd_crypto::fuzzing::initiation` for what it exercises
//! and asserts. Its corpus (`fuzz/corpus/initiation`) is replayed by `cargo test`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    crypto::fuzzing::initiation(data);
});
