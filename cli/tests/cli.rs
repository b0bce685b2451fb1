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
fn check_quiet_prints_nothing_for_a_valid_pipeline() {
    let out = streamc(&["check", "--quiet", "examples/word_count.rs"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_verbose_adds_the_time_it_took() {
    let out = streamc(&["check", "--verbose", "examples/word_count.rs"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ok: app `word_count`"), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let timing = stderr
        .lines()
        .find_map(|l| l.strip_prefix("checked in "))
        .and_then(|rest| rest.strip_suffix(" ms"))
        .and_then(|ms| ms.parse::<f64>().ok());
    assert!(timing.is_some(), "`checked in N ms` on stderr: {stderr}");
    // Without --verbose, no timing.
    let plain = streamc(&["check", "examples/word_count.rs"]);
    assert!(!String::from_utf8_lossy(&plain.stderr).contains("checked in"));
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

#[test]
fn graph_draws_sources_shuffles_state_and_outputs() {
    let out = streamc(&["graph", "examples/top3_hot_product.rs"]);
    assert!(out.status.success());
    let mermaid = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "flowchart LR",
        "title: top3_hot_product (batch 1s, 2 workers)",
        "n0[(\"click_logs: socket_text_stream\")]",
        "[[\"product_counts: reduce_by_key_and_window [1min / 10s]<br/>state\"]]",
        "n3[/\"top3: transform<br/>whole batch\"/]",
        "n4>\"print\"]",
        "n2 --> n3",
    ] {
        assert!(mermaid.contains(expected), "{expected} in:\n{mermaid}");
    }
    let out = streamc(&["graph", "--format", "dot", "examples/word_count.rs"]);
    let dot = String::from_utf8_lossy(&out.stdout);
    assert!(dot.starts_with("digraph word_count {"), "{dot}");
    assert!(
        dot.contains("n3 [shape=hexagon, label=\"counts: reduce_by_key\\nshuffle\"];"),
        "{dot}"
    );
    assert!(dot.contains("n3 -> n4;"), "{dot}");
}

#[test]
fn exit_codes_separate_pipeline_errors_from_bad_invocations() {
    assert_eq!(
        streamc(&["check", "tests/ui/unknown_operator.rs"])
            .status
            .code(),
        Some(1)
    );
    assert_eq!(
        streamc(&["check", "no/such/file.rs"]).status.code(),
        Some(2)
    );
    assert_eq!(
        streamc(&["graph", "--format", "png", "examples/word_count.rs"])
            .status
            .code(),
        Some(2)
    );
    let out = streamc(&["new", "Bad Name"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a valid project name"));
    // Colour only when asked or on a terminal (here: a pipe).
    let plain = streamc(&["check", "tests/ui/unknown_operator.rs"]);
    assert!(!String::from_utf8_lossy(&plain.stderr).contains('\x1b'));
    let coloured = streamc(&["--color", "always", "check", "tests/ui/unknown_operator.rs"]);
    assert!(String::from_utf8_lossy(&coloured.stderr).contains("\x1b[1;31merror\x1b[0m"));
}

/// `streamc check` on every invalid pipeline of the trybuild suite says what the macro says: each
/// `error:`/`warning:` message of a `.stderr` snapshot appears in the CLI's output.
#[test]
fn check_says_what_the_macro_says_for_every_ui_case() {
    let ui = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/ui");
    let mut cases = 0;
    for entry in std::fs::read_dir(&ui).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let snapshot = std::fs::read_to_string(path.with_extension("stderr")).unwrap();
        let relative = format!("tests/ui/{}", path.file_name().unwrap().to_string_lossy());
        let out = streamc(&["check", &relative]);
        let said = String::from_utf8_lossy(&out.stderr);
        for line in snapshot.lines() {
            let Some(message) = line
                .strip_prefix("error: ")
                .or_else(|| line.strip_prefix("warning: "))
            else {
                continue;
            };
            // The macro reports warnings through a deprecated constant; the text after it is ours.
            let message = message
                .split_once("streamc_warning_")
                .and_then(|(_, rest)| rest.split_once("`: "))
                .map(|(_, text)| text)
                .unwrap_or(message);
            assert!(
                said.contains(message),
                "{relative}: the CLI must say `{message}`; it said:\n{said}"
            );
        }
        cases += 1;
    }
    assert!(cases >= 18, "{cases} UI cases");
}

#[test]
fn operators_lists_every_source_and_operator_and_writes_the_books_reference() {
    let out = streamc(&["operators"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for name in streamc_dsl::ops::source_names().chain(streamc_dsl::ops::operator_names()) {
        assert!(text.contains(name), "`{name}` missing from:\n{text}");
    }
    let out = streamc(&["operators", "--markdown"]);
    assert!(out.status.success());
    let page = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../book/src/operators.md"),
    )
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), page);
}
