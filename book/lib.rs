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

#[doc = include_str!("src/storage.md")]
pub mod storage {}

#[doc = include_str!("src/outputs.md")]
pub mod outputs {}

#[doc = include_str!("src/monitoring.md")]
pub mod monitoring {}

#[doc = include_str!("src/production.md")]
pub mod production {}

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

    /// The fenced block of `chapter` whose info string is `language` (the first one).
    fn block<'a>(chapter: &'a str, language: &str) -> &'a str {
        let fence = format!("```{language}\n");
        let start = chapter
            .find(&fence)
            .unwrap_or_else(|| panic!("a ```{language} block"))
            + fence.len();
        let end = chapter[start..].find("```").expect("a closing fence") + start;
        &chapter[start..end]
    }

    const PRODUCTION: &str = include_str!("src/production.md");

    /// The production chapter's systemd unit passes `systemd-analyze verify` with nothing to say
    /// (verify exits 0 even on unknown keys; its complaints go to standard error). The binary it
    /// starts is not installed here, so the unit is verified with `/bin/true` in its place.
    #[test]
    fn the_systemd_unit_verifies() {
        let unit = block(PRODUCTION, "ini");
        let found = std::process::Command::new("systemd-analyze")
            .arg("--version")
            .output()
            .is_ok();
        if !found {
            assert!(
                std::env::var("STREAMC_REQUIRE_SERVICES").is_err(),
                "systemd-analyze is missing but STREAMC_REQUIRE_SERVICES asks for every check"
            );
            eprintln!("systemd-analyze is not installed: the unit is not verified");
            return;
        }
        let dir = std::env::temp_dir().join(format!("streamc-book-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("streamc-word-count.service");
        std::fs::write(
            &path,
            unit.replace("/usr/local/bin/kafka_direct_word_count", "/bin/true"),
        )
        .unwrap();
        let output = std::process::Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
            .unwrap();
        let complaints = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{complaints}");
        assert!(
            complaints.trim().is_empty(),
            "systemd-analyze: {complaints}"
        );
        // A graceful stop must end before systemd's SIGKILL.
        assert!(unit.contains("--graceful-stop-timeout 60s") && unit.contains("TimeoutStopSec=90"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The StatefulSet waits longer than the graceful stop, probes the health endpoints on the port
    /// the UI binds, and keeps the checkpoint directory on a claimed volume.
    #[test]
    fn the_kubernetes_manifest_fits_the_app() {
        let manifest = block(PRODUCTION, "yaml");
        let number_after = |key: &str| -> u64 {
            let at = manifest
                .find(key)
                .unwrap_or_else(|| panic!("`{key}` in the manifest"));
            manifest[at + key.len()..]
                .trim_start()
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .unwrap_or_else(|_| panic!("a number after `{key}`"))
        };
        assert!(
            number_after("terminationGracePeriodSeconds:")
                > number_after("--graceful-stop-timeout=")
        );
        for needed in [
            "kind: StatefulSet",
            "--ui=0.0.0.0:4040",
            "containerPort: 4040",
            "path: /readyz",
            "path: /healthz",
            "--checkpoint=/var/lib/streamc/checkpoints",
            "mountPath: /var/lib/streamc}",
            "volumeClaimTemplates:",
            "name: checkpoints",
        ] {
            assert!(manifest.contains(needed), "the manifest lacks `{needed}`");
        }
    }

    /// Every key the engine refuses is in the chapter's table, so the table cannot fall behind.
    #[test]
    fn every_owned_kafka_key_is_documented() {
        for (key, _) in streamc::kafka_client::ENGINE_OWNED {
            assert!(
                PRODUCTION.contains(&format!("`{key}`")),
                "the production chapter does not list `{key}`"
            );
        }
    }
}
