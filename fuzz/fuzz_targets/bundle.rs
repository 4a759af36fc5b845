//! Fuzz target `bundle`: see `meshd_crypto::fuzzing::bundle` for what it exercises
//! and asserts. Its corpus (`fuzz/corpus/bundle`) is replayed by `cargo test`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    crypto::fuzzing::bundle(data);
});
