//! Fuzz target `policy_filter`: see `meshd_crypto::fuzzing::policy_filter` for what it exercises
//! and asserts. Its corpus (`fuzz/corpus/policy_filter`) is replayed by `cargo test`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    crypto::fuzzing::policy_filter(data);
});
