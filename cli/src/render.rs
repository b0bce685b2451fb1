//! Diagnostics rendered like rustc's: `error: message`, ` --> file:line:col`, the source line, a caret.

use std::fmt::Write as _;
use std::path::Path;
use streamc_dsl::graph::{Graph, NodeKind};
use streamc_dsl::{Diagnostic, Level};

/// ANSI styles, used only when the output is a terminal (or `--color always`).
#[derive(Clone, Copy)]
pub struct Paint(pub bool);

impl Paint {
    fn wrap(self, code: &str, text: &str) -> String {
        if self.0 {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    pub fn error(self, text: &str) -> String {
        self.wrap("1;31", text)
    }

    pub fn warning(self, text: &str) -> String {
        self.wrap("1;33", text)
    }

    pub fn accent(self, text: &str) -> String {
        self.wrap("1;34", text)
    }

    pub fn ok(self, text: &str) -> String {
        self.wrap("1;32", text)
    }
}

pub fn diagnostic(file: &Path, source: &str, d: &Diagnostic, paint: Paint) -> String {
    let level = match d.level {
        Level::Error => paint.error("error"),
        Level::Warning => paint.warning("warning"),
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
        "{gutter}{} {}:{}:{}",
        paint.accent("-->"),
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
    let caret = "^".repeat(width);
    let caret = match d.level {
        Level::Error => paint.error(&caret),
        Level::Warning => paint.warning(&caret),
    };
    let _ = writeln!(out, "{gutter} | {}{caret}", " ".repeat(start.column));
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
