//! Fuzz target `response`: see `meshd_crypto::fuzzing::response` for what it exercises
//! and asserts. Its corpus (`fuzz/corpus/response`) is replayed by `cargo test`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    crypto::fuzzing::response(data);
});
