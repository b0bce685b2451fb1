//! `streamc check` and `streamc expand` as a user runs them: on the examples, and on the invalid pipelines
//! of the UI suite (the same rules and messages as the macro).

use std::path::PathBuf;
use std::process::Command;

fn streamc(args: &[&str]) -> std::process::Output {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    Command::new(env!("CARGO_BIN_EXE_streamc"))
        .args(args)
        .current_dir(repo)
        .output()
        .unwrap()
}

#[test]
fn check_accepts_the_word_count_example_and_summarizes_it() {
    let out = streamc(&["check", "examples/word_count.rs"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ok: app `word_count`: batch 1000 ms, 2 workers; sources: lines (socket_text_stream); outputs: counts.print"), "{stdout}");
}

#[test]
fn check_reports_errors_like_rustc_with_the_macro_messages() {
    let out = streamc(&["check", "tests/ui/unknown_operator.rs"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error: unknown operator `reduce_by_kye`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("--> tests/ui/unknown_operator.rs:6:55"),
        "{stderr}"
    );
    assert!(stderr.contains("^^^^^^^^^^^^^"), "{stderr}");
    assert!(
        stderr.contains("help: did you mean `reduce_by_key`?"),
        "{stderr}"
    );
    let snapshot = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/ui/unknown_operator.stderr"),
    )
    .unwrap();
    assert!(
        snapshot.contains("error: unknown operator `reduce_by_kye`"),
        "the macro says the same"
    );
}

#[test]
fn check_prints_warnings_and_still_succeeds() {
    let out = streamc(&["check", "tests/ui/unused_stream.rs"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("warning: stream `lengths` never reaches an output operation"));
}

#[test]
fn expand_prints_formatted_fused_code() {
    let out = streamc(&["expand", "examples/word_count.rs"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let code = String::from_utf8_lossy(&out.stdout);
    assert!(code.contains("pub mod word_count {"), "{code}");
    assert!(
        code.contains("::streamc::__private::exec::reduce_by_key("),
        "{code}"
    );
    assert!(
        code.contains("for record in ::streamc::__private::exec::op::flat_map("),
        "fused loop: {code}"
    );
    assert!(!code.contains("Box<dyn"), "no dynamic dispatch per record");
}

#[test]
fn missing_files_and_files_without_pipelines_are_clear_errors() {
    let out = streamc(&["check", "does/not/exist.rs"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read does/not/exist.rs"));
    let out = streamc(&["check", "cli/src/render.rs"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("contains no stream! block"));
}
