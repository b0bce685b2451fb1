//! Projects: `streamc new` writes one from a template; `streamc build` builds one, or turns a single
//! `.stream` file into one in a cache directory (all such crates share one target directory, so a second
//! pipeline builds incrementally).

use crate::templates::{self, Template};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use streamc_dsl::graph::NodeKind;

/// Where the streamc runtime is: `--streamc-path`, `STREAMC_PATH`, or the repository this CLI was built
/// from.
pub fn runtime_path(explicit: Option<&Path>) -> Result<PathBuf> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => match std::env::var_os("STREAMC_PATH") {
            Some(p) => PathBuf::from(p),
            None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../runtime"),
        },
    };
    let path = path
        .canonicalize()
        .with_context(|| format!("the streamc runtime is not at {}", path.display()))?;
    if !path.join("Cargo.toml").exists() {
        bail!(
            "{} is not the streamc runtime crate (no Cargo.toml); pass --streamc-path REPO/runtime",
            path.display()
        );
    }
    Ok(path)
}

/// The dependency line for the runtime with `features`.
fn dependency(runtime: &Path, features: &[&str]) -> String {
    let features: Vec<String> = features.iter().map(|f| format!("\"{f}\"")).collect();
    format!(
        "streamc = {{ path = \"{}\", default-features = false, features = [{}] }}",
        runtime.display(),
        features.join(", ")
    )
}

/// Dev-dependencies a template's test uses, pinned like the runtime's own.
fn dev_dependencies(features: &[&str]) -> String {
    let mut lines = Vec::new();
    if features.contains(&"kafka") {
        lines.push(
            "rdkafka = { version = \"0.39\", default-features = false, features = [\"libz\"] }",
        );
    }
    if features.contains(&"sql") {
        lines.push("sqlx = { version = \"0.9\", default-features = false, features = [\"runtime-tokio\", \"any\", \"sqlite-bundled\", \"mysql\", \"postgres\"] }");
        lines.push("tokio = { version = \"1\", features = [\"rt-multi-thread\"] }");
    }
    lines.join("\n")
}

fn cargo_toml(package: &str, runtime: &Path, features: &[&str]) -> String {
    format!(
        "[package]\nname = \"{package}\"\nversion = \"0.1.0\"\nedition = \"2021\"\npublish = false\n\n\
         [dependencies]\n{}\n\n[dev-dependencies]\n{}\n\n\
         # A project of its own, also when created inside another workspace.\n[workspace]\n\n\
         [profile.release]\ndebug = \"line-tables-only\"\n",
        dependency(runtime, features),
        dev_dependencies(features)
    )
}

/// The repository's lock file, so a new project resolves to the versions streamc is tested with and
/// builds offline from the local registry cache.
fn copy_lock(runtime: &Path, dir: &Path) -> Result<()> {
    let lock = runtime.join("../Cargo.lock");
    if lock.exists() {
        std::fs::copy(&lock, dir.join("Cargo.lock"))
            .with_context(|| format!("cannot copy {}", lock.display()))?;
    }
    Ok(())
}

fn fill(text: &str, name: &str, template: &Template) -> String {
    text.replace("{{name}}", name)
        .replace("{{about}}", template.about)
        .replace("{{run}}", template.run)
}

/// `streamc new NAME --template T`: writes the project into `dir`, returns the files written.
pub fn new_project(dir: &Path, template: &Template, runtime: &Path) -> Result<Vec<PathBuf>> {
    let package = dir
        .file_name()
        .and_then(|n| n.to_str())
        .context("the project path has no name")?;
    let valid = !package.is_empty()
        && package
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        && package.starts_with(|c: char| c.is_ascii_lowercase());
    if !valid {
        bail!("`{package}` is not a valid project name: use lowercase letters, digits, `-` and `_`, starting with a letter");
    }
    if dir.exists()
        && dir
            .read_dir()
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        bail!("{} already exists and is not empty", dir.display());
    }
    // The app is a Rust module: `-` is not allowed there.
    let app = package.replace('-', "_");
    let pipeline =
        fill(templates::PIPELINE_HEADER, &app, template) + &fill(template.pipeline, &app, template);
    let features = pipeline_features(&pipeline)?;
    let files: Vec<(&str, String)> = vec![
        ("Cargo.toml", cargo_toml(package, runtime, &features)),
        ("src/main.rs", fill(templates::MAIN, &app, template)),
        ("src/pipeline.rs", pipeline),
        ("streamc.toml", fill(template.config, &app, template)),
        ("README.md", fill(templates::README, package, template)),
        ("tests/pipeline.rs", fill(template.test, &app, template)),
        (".gitignore", "/target\n/checkpoints\n*.db\n".to_string()),
    ];
    let mut written = Vec::new();
    for (name, contents) in files {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, contents)
            .with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    copy_lock(runtime, dir)?;
    Ok(written)
}

/// A crate generated for a `.stream` file: `use` lines and the block become `src/main.rs`.
pub fn stream_crate(
    file: &Path,
    source: &str,
    app: &str,
    features: &[&str],
    cache: &Path,
    runtime: &Path,
) -> Result<PathBuf> {
    let dir = cache.join("pipelines").join(app);
    std::fs::create_dir_all(dir.join("src"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let (uses, body) = split_use_lines(source);
    let main = format!(
        "// Generated by `streamc build` from {}; edit that file, not this one.\n\
         #[allow(unused_imports)]\nuse streamc::prelude::*;\n{uses}\nstream! {{\n{body}\n}}\n\n\
         fn main() -> std::process::ExitCode {{\n    {app}::app().main()\n}}\n",
        file.display()
    );
    write_if_changed(&dir.join("src/main.rs"), &main)?;
    write_if_changed(&dir.join("Cargo.toml"), &cargo_toml(app, runtime, features))?;
    if !dir.join("Cargo.lock").exists() {
        copy_lock(runtime, &dir)?;
    }
    Ok(dir)
}

/// Rewriting an unchanged file would make cargo rebuild it.
fn write_if_changed(path: &Path, contents: &str) -> Result<()> {
    if std::fs::read_to_string(path).ok().as_deref() == Some(contents) {
        return Ok(());
    }
    std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))
}

/// The leading `use ...;` lines of a `.stream` file, and the rest.
fn split_use_lines(source: &str) -> (String, String) {
    let mut uses = String::new();
    let mut rest = String::new();
    let mut in_body = false;
    let mut in_use = false;
    for line in source.lines() {
        let trimmed = line.trim_start();
        if !in_body && (in_use || trimmed.starts_with("use ")) {
            uses.push_str(line);
            uses.push('\n');
            in_use = !trimmed.trim_end().ends_with(';');
            continue;
        }
        if !in_body && (trimmed.is_empty() || trimmed.starts_with("//")) {
            continue;
        }
        in_body = true;
        rest.push_str(line);
        rest.push('\n');
    }
    (uses, rest)
}

/// The runtime features the `stream!` blocks of a pipeline file need.
fn pipeline_features(source: &str) -> Result<Vec<&'static str>> {
    let mut all = Vec::new();
    for block in crate::scan::blocks(Path::new("pipeline.rs"), source)? {
        let graph = streamc_dsl::check(block.tokens)
            .map_err(|_| anyhow::anyhow!("a template's pipeline does not check"))?;
        all.extend(features(&graph));
    }
    all.sort_unstable();
    all.dedup();
    Ok(all)
}

/// The runtime features a pipeline needs: those its sources and operators declare in the table.
pub fn features(graph: &streamc_dsl::graph::Graph) -> Vec<&'static str> {
    let mut features: Vec<&'static str> = graph
        .nodes
        .iter()
        .filter_map(|n| match &n.kind {
            NodeKind::Source { def, .. } => def.feature,
            NodeKind::Op { op, .. } => op.feature,
        })
        .collect();
    features.sort_unstable();
    features.dedup();
    features
}

/// Runs `cargo build` for the project at `dir` (cargo's progress goes to the terminal) and returns the
/// binary it built.
pub fn cargo_build(
    dir: &Path,
    release: bool,
    target_dir: Option<&Path>,
    quiet: bool,
    verbose: bool,
) -> Result<Option<PathBuf>> {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command
        .arg("build")
        .arg("--manifest-path")
        .arg(dir.join("Cargo.toml"))
        .arg("--message-format=json-render-diagnostics")
        .stdout(Stdio::piped());
    if release {
        command.arg("--release");
    }
    if quiet {
        command.arg("--quiet");
    }
    if verbose {
        command.arg("--verbose");
    }
    if let Some(target) = target_dir {
        command.env("CARGO_TARGET_DIR", target);
    }
    let output = command
        .spawn()
        .context("cannot run cargo")?
        .wait_with_output()
        .context("cargo did not finish")?;
    if !output.status.success() {
        return Ok(None);
    }
    let mut binary = None;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        // {"reason":"compiler-artifact", ..., "executable":"/path/to/bin", ...}
        if !line.contains("\"reason\":\"compiler-artifact\"") {
            continue;
        }
        if let Some(path) = json_string_field(line, "executable") {
            binary = Some(PathBuf::from(path));
        }
    }
    Ok(binary)
}

/// A string field of one line of cargo's JSON output (paths, which cargo escapes only for `"` and `\`).
fn json_string_field(line: &str, field: &str) -> Option<String> {
    let start = line.find(&format!("\"{field}\":\""))? + field.len() + 4;
    let mut value = String::new();
    let mut chars = line[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(value),
            '\\' => value.push(chars.next()?),
            c => value.push(c),
        }
    }
    None
}

pub fn templates_help() -> String {
    templates::TEMPLATES
        .iter()
        .map(|t| format!("  {:<12} {}", t.name, t.about))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn use_lines_are_split_from_the_block() {
        let (uses, body) = split_use_lines("// a pipeline\nuse std::time::{\n    Duration};\nuse x::y;\n\napp a { batch: 1s }\nlet l = q();\n");
        assert_eq!(uses, "use std::time::{\n    Duration};\nuse x::y;\n");
        assert_eq!(body, "app a { batch: 1s }\nlet l = q();\n");
    }

    #[test]
    fn executables_are_found_in_cargo_json() {
        let line = r#"{"reason":"compiler-artifact","package_id":"x","executable":"/tmp/a b/target/release/wc","fresh":false}"#;
        assert_eq!(
            json_string_field(line, "executable").as_deref(),
            Some("/tmp/a b/target/release/wc")
        );
        assert_eq!(
            json_string_field(r#"{"executable":null}"#, "executable"),
            None
        );
    }
}
