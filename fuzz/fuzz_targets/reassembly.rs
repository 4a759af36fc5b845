//! Fuzz target `reassembly`: see `meshd_crypto::fuzzing::reassembly` for what it exercises
//! and asserts. Its corpus (`fuzz/corpus/reassembly`) is replayed by `cargo test`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    crypto::fuzzing::reassembly(data);
});
