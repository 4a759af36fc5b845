//! Fuzz target `session`: see `meshd_crypto::fuzzing::session` for what it exercises
//! and asserts. Its corpus (`fuzz/corpus/session`) is replayed by `cargo test`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    crypto::fuzzing::session(data);
});
