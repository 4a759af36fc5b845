//! Fuzz target `endpoint`: see `meshd_crypto::fuzzing::endpoint` for what it exercises
//! and asserts. Its corpus (`fuzz/corpus/endpoint`) is replayed by `cargo test`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    crypto::fuzzing::endpoint(data);
});
