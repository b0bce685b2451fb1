//! The user guide, compiled. Every chapter of `book/src` is included here as documentation, so
//! `cargo test` builds each of its Rust examples (as `no_run` doctests where running one would start
//! an app) and a chapter cannot show code that no longer compiles. A fragment is completed by hidden
//! lines (`# ` in the chapter), which mdBook leaves out of the page.

#[doc = include_str!("src/introduction.md")]
pub mod introduction {}

#[doc = include_str!("src/getting-started.md")]
pub mod getting_started {}

#[doc = include_str!("src/language.md")]
pub mod language {}

#[doc = include_str!("src/running.md")]
pub mod running {}

#[doc = include_str!("src/sources.md")]
pub mod sources {}

#[doc = include_str!("src/kafka.md")]
pub mod kafka {}

#[doc = include_str!("src/wal.md")]
pub mod wal {}

#[doc = include_str!("src/rate.md")]
pub mod rate {}

#[doc = include_str!("src/state.md")]
pub mod state {}

#[doc = include_str!("src/windows.md")]
pub mod windows {}

#[doc = include_str!("src/checkpoints.md")]
pub mod checkpoints {}

#[doc = include_str!("src/outputs.md")]
pub mod outputs {}

#[doc = include_str!("src/monitoring.md")]
pub mod monitoring {}

#[doc = include_str!("src/operators.md")]
pub mod operators {}

#[doc = include_str!("src/cli.md")]
pub mod cli {}

#[doc = include_str!("src/performance.md")]
pub mod performance {}

#[doc = include_str!("src/contributing.md")]
pub mod contributing {}

#[cfg(test)]
mod tests {
    /// The contributors' recipe names files by path; each one it names must exist, so that a move
    /// or a rename updates the recipe too.
    #[test]
    fn every_file_the_contributor_recipe_names_exists() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let chapter = include_str!("src/contributing.md");
        let mut named = 0;
        for span in chapter.split('`').skip(1).step_by(2) {
            let is_path = span.contains('/')
                && !span.contains(['<', ' ', '*'])
                && [".rs", ".md", ".toml"]
                    .iter()
                    .any(|ext| span.ends_with(ext));
            if is_path {
                named += 1;
                assert!(
                    root.join(span).exists(),
                    "the recipe names `{span}`, which does not exist"
                );
            }
        }
        assert!(
            named >= 10,
            "the recipe names files by path ({named} found)"
        );
    }
}
