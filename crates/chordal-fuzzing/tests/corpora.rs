//! Replays every committed fuzz corpus (`fuzz/corpus/TARGET/*`, minimized
//! with `cargo fuzz cmin`) through the targets' entry points: a change
//! that breaks an input the fuzzer once found interesting fails here,
//! without fuzzing in CI.

use std::path::PathBuf;

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

#[test]
fn every_committed_corpus_file_passes_its_target() {
    for (name, target) in chordal_fuzzing::TARGETS {
        let dir = corpus_dir(name);
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e} (corpora are committed)", dir.display()));
        let mut fed = 0usize;
        for entry in entries {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| target(&data));
            assert!(outcome.is_ok(), "{name}: {} fails", path.display());
            fed += 1;
        }
        assert!(fed >= 5, "{name}: only {fed} corpus files");
    }
}
