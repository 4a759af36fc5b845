//! Fuzz target `control`: see `meshd_crypto::fuzzing::control` for what it exercises
//! and asserts. Its corpus (`fuzz/corpus/control`) is replayed by `cargo test`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    crypto::fuzzing::control(data);
});
