//! Replays every committed fuzz corpus input through its target body on the
//! stable toolchain, and runs a bounded deterministic mutation pass over the
//! seeds, so CI exercises the fuzz targets without cargo-fuzz.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::HashSet;
use std::path::PathBuf;

use crypto::fuzzing::{run, seeds, TARGETS};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

#[test]
fn committed_corpora_replay_without_panics() {
    if std::env::var_os("MESHD_REGENERATE_CORPUS").is_some() {
        for (i, (target, data)) in seeds().into_iter().enumerate() {
            std::fs::create_dir_all(corpus_dir(target)).unwrap();
            std::fs::write(corpus_dir(target).join(format!("seed-{i}")), data).unwrap();
        }
    }
    for target in TARGETS {
        let dir = corpus_dir(target);
        let entries: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        assert!(!entries.is_empty(), "{}: empty corpus", dir.display());
        for p in entries {
            let data = std::fs::read(&p).unwrap();
            run(target, &data);
        }
    }
}

#[test]
fn seeds_are_committed_to_the_corpora() {
    for (target, data) in seeds() {
        let found: HashSet<Vec<u8>> = std::fs::read_dir(corpus_dir(target))
            .unwrap()
            .map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .collect();
        assert!(found.contains(&data), "a seed for '{target}' is missing from fuzz/corpus; regenerate with MESHD_REGENERATE_CORPUS=1");
    }
}

/// Bit flips, byte sets, truncations and extensions of every seed: a small,
/// deterministic, bounded fuzzing pass (300 mutants per seed; a longer one
/// with `MESHD_FUZZ_MUTANTS=N`, and another sequence with
/// `MESHD_FUZZ_SEED=S`, both bounded by what they say).
#[test]
fn mutated_seeds_never_panic() {
    let env = |k: &str, default: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let mutants = env("MESHD_FUZZ_MUTANTS", 300);
    let mut r = ChaCha20Rng::seed_from_u64(env("MESHD_FUZZ_SEED", 0xf022));
    for (target, seed) in seeds() {
        for _ in 0..mutants {
            let mut d = seed.clone();
            for _ in 0..1 + r.next_u32() % 4 {
                if d.is_empty() {
                    break;
                }
                let i = r.next_u32() as usize % d.len();
                match r.next_u32() % 5 {
                    0 => d[i] ^= 1 << (r.next_u32() % 8),
                    1 => d[i] = r.next_u32() as u8,
                    2 => d.truncate(i),
                    3 => d.extend_from_slice(&[r.next_u32() as u8; 7]),
                    _ => d[i] = [0, 1, 2, 3, 4, 0xff][r.next_u32() as usize % 6],
                }
            }
            run(target, &d);
        }
    }
    let per_target = |t: &str| seeds().iter().filter(|(x, _)| *x == t).count() as u64 * mutants;
    for t in TARGETS {
        eprintln!("{t}: {} mutants, none panicked", per_target(t));
    }
}
