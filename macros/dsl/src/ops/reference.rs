//! The book's operator reference (`book/src/operators.md`), written from the table so that it
//! cannot drift from what the compiler accepts. `cargo test` fails when the committed page differs;
//! `streamc operators --markdown > book/src/operators.md` rewrites it.

use super::{CheckpointRule, Operator, Shape, StateUse, FAMILIES, SOURCES};
use std::fmt::Write;

/// The whole reference page, in Markdown.
pub fn markdown() -> String {
    let mut page = String::from(
        "# Operator reference\n\n\
         <!-- Generated from the operator table (macros/dsl/src/ops); do not edit by hand: run\n     \
         `streamc operators --markdown > book/src/operators.md`. -->\n\n\
         Every source, transformation and output the `stream!` language knows, as the compiler's\n\
         operator table declares it. *Spark* is Spark Streaming's name for the same operation;\n\
         *needs* lists what an app using it needs beyond the defaults.\n",
    );
    page.push_str(
        "\n## Sources\n\n| source | records | Spark | needs |\n| --- | --- | --- | --- |\n",
    );
    for source in SOURCES {
        let _ = writeln!(
            page,
            "| `{}` | {} | {} | {} |",
            cell(source.signature),
            source.records,
            spark(source.spark),
            needs(source.feature, &[]),
        );
    }
    page.push('\n');
    for source in SOURCES {
        let _ = writeln!(page, "- `{}`: {}", source.name, source.summary);
    }
    for (family, operators) in FAMILIES {
        let _ = write!(
            page,
            "\n## {family}\n\n| operator | gives | Spark | needs |\n| --- | --- | --- | --- |\n"
        );
        for op in *operators {
            let _ = writeln!(
                page,
                "| `.{}` | {} | {} | {} |",
                cell(op.signature),
                cell(op.summary),
                spark(op.spark),
                needs(op.feature, &requirements(op)),
            );
        }
    }
    page
}

/// The same, as plain text for a terminal: each signature and what it gives.
pub fn text() -> String {
    let mut text = String::from("Sources\n");
    for source in SOURCES {
        let _ = writeln!(text, "  {}\n      {}", source.signature, source.summary);
    }
    for (family, operators) in FAMILIES {
        let _ = writeln!(text, "\n{family}");
        for op in *operators {
            let _ = writeln!(text, "  .{}\n      {}", op.signature, op.summary);
            let needs = needs(op.feature, &requirements(op));
            if !needs.is_empty() {
                let _ = writeln!(text, "      needs {needs}");
            }
        }
    }
    text
}

/// What an operator asks of the app, in words.
fn requirements(op: &Operator) -> Vec<String> {
    let mut needs: Vec<String> = Vec::new();
    match op.checkpoint {
        CheckpointRule::Always => needs.push("a checkpoint directory".into()),
        CheckpointRule::WithInverse => needs.push("a checkpoint directory, with an inverse".into()),
        CheckpointRule::Never => {}
    }
    if op.state == StateUse::Window {
        needs.push("durations that are multiples of the batch interval".into());
    }
    if let Shape::Stateful { initial: true, .. } = op.shape {
        needs.push("optionally `initial = pairs`".into());
    }
    if op.partitions {
        needs.push("optionally `partitions = n` (Spark's numPartitions)".into());
    }
    if let Some(of) = op.result_of {
        needs.push(format!("to follow `{of}` directly"));
    }
    needs
}

fn needs(feature: Option<&str>, rest: &[String]) -> String {
    let mut all = rest.to_vec();
    if let Some(feature) = feature {
        all.push(format!("the `{feature}` feature"));
    }
    all.join("; ")
}

fn spark(name: Option<&str>) -> String {
    name.map(|n| format!("`{n}`")).unwrap_or_default()
}

/// Table cells cannot hold a bare `|`: closures are written `\|a, b\|` inside code spans.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}
