//! Diagnostics rendered like rustc's: `error: message`, ` --> file:line:col`, the source line, a caret.

use std::fmt::Write as _;
use std::path::Path;
use streamc_dsl::graph::{Graph, NodeKind};
use streamc_dsl::{Diagnostic, Level};

pub fn diagnostic(file: &Path, source: &str, d: &Diagnostic) -> String {
    let level = match d.level {
        Level::Error => "error",
        Level::Warning => "warning",
    };
    let start = d.span.start();
    let end = d.span.end();
    let mut out = format!("{level}: {}\n", d.message);
    let line_text = source
        .lines()
        .nth(start.line.saturating_sub(1))
        .unwrap_or("");
    let gutter = " ".repeat(start.line.to_string().len());
    let _ = writeln!(
        out,
        "{gutter}--> {}:{}:{}",
        file.display(),
        start.line,
        start.column + 1
    );
    let _ = writeln!(out, "{gutter} |");
    let _ = writeln!(out, "{} | {line_text}", start.line);
    let width = if end.line == start.line {
        end.column.saturating_sub(start.column).max(1)
    } else {
        1
    };
    let _ = writeln!(
        out,
        "{gutter} | {}{}",
        " ".repeat(start.column),
        "^".repeat(width)
    );
    if let Some(help) = &d.help {
        let _ = writeln!(out, "{gutter} = help: {help}");
    }
    out.push('\n');
    out
}

/// One line per app: name, batch interval, workers, sources and outputs.
pub fn summary(graph: &Graph) -> String {
    let sources: Vec<String> = graph
        .sources()
        .map(|(_, n)| match &n.kind {
            NodeKind::Source { def, name, .. } => format!("{name} ({})", def.name),
            NodeKind::Op { .. } => unreachable!("sources() yields sources"),
        })
        .collect();
    let outputs: Vec<String> = graph
        .outputs()
        .map(|(id, n)| {
            format!(
                "{}.{}",
                graph.stream_name(graph.nodes[id].inputs()[0]),
                n.label()
            )
        })
        .collect();
    format!(
        "ok: app `{}`: batch {} ms, {} worker{}; sources: {}; outputs: {}",
        graph.app.name,
        graph.app.batch_millis,
        graph.app.workers,
        if graph.app.workers == 1 { "" } else { "s" },
        sources.join(", "),
        outputs.join(", ")
    )
}
