//! `streamc`: scaffolds, validates, draws, expands and builds `stream!` pipelines.
//!
//! Exit codes: 0 success; 1 the pipeline has errors or its build failed (reported above); 2 the command
//! could not run (bad arguments, unreadable files, no cargo).

mod draw;
mod project;
mod render;
mod scan;
mod templates;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use render::Paint;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "streamc",
    version,
    about = "The streamc pipeline compiler: scaffold, validate, draw, expand and build stream! pipelines"
)]
struct Cli {
    /// Print nothing but errors.
    #[arg(long, short, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Say more (timings; cargo's full output when building).
    #[arg(long, short, global = true)]
    verbose: bool,
    /// Colour: auto (only on a terminal), always or never.
    #[arg(long, global = true, value_enum, default_value_t = Color::Auto)]
    color: Color,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Subcommand)]
enum Command {
    /// Create a Cargo project with a pipeline, a config file, a README and a test.
    #[command(after_help = format!("Templates:\n{}", project::templates_help()))]
    New {
        /// The project directory to create (its last component names the package and the app).
        name: PathBuf,
        /// What the pipeline does.
        #[arg(long, short, default_value = "word-count", value_parser = template_names())]
        template: String,
        /// The streamc runtime crate to depend on (default: $STREAMC_PATH, else this CLI's repository).
        #[arg(long, value_name = "DIR")]
        streamc_path: Option<PathBuf>,
    },
    /// Build a project or a single `.stream` file into a binary (release unless --debug).
    Build {
        /// A project directory, or a `.stream` file (the body of a stream! block, after `use` lines).
        #[arg(default_value = ".")]
        path: PathBuf,
        /// Build without optimizations (faster to compile).
        #[arg(long)]
        debug: bool,
        /// Copy the binary here.
        #[arg(long, short, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Where `.stream` builds keep their generated crates and shared target directory (default:
        /// $STREAMC_CACHE_DIR, else ~/.cache/streamc).
        #[arg(long, value_name = "DIR")]
        cache_dir: Option<PathBuf>,
        /// The streamc runtime crate `.stream` builds depend on.
        #[arg(long, value_name = "DIR")]
        streamc_path: Option<PathBuf>,
    },
    /// Validate every stream! block in FILE with the macro's own rules, without compiling.
    Check {
        /// A Rust file or a `.stream` file.
        file: PathBuf,
    },
    /// Print the Rust code every stream! block in FILE expands to, formatted.
    Expand {
        /// A Rust file or a `.stream` file.
        file: PathBuf,
    },
    /// List every source, transformation and output of the language, from the compiler's table.
    Operators {
        /// Print the book's operator reference (book/src/operators.md) in Markdown instead.
        #[arg(long)]
        markdown: bool,
    },
    /// Draw the pipeline: sources, stages, shuffles, state and outputs.
    Graph {
        /// A Rust file or a `.stream` file.
        file: PathBuf,
        /// Mermaid (for Markdown) or Graphviz dot.
        #[arg(long, short, value_enum, default_value_t = draw::Format::Mermaid)]
        format: draw::Format,
    },
}

fn template_names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(templates::TEMPLATES.iter().map(|t| t.name))
}

struct Ui {
    quiet: bool,
    verbose: bool,
    paint: Paint,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let paint = Paint(match cli.color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    });
    let ui = Ui {
        quiet: cli.quiet,
        verbose: cli.verbose,
        paint,
    };
    match run(&cli.command, &ui) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("{}: {e:#}", paint.error("error"));
            ExitCode::from(2)
        }
    }
}

/// Ok(false): the pipeline has errors or did not build (already reported).
fn run(command: &Command, ui: &Ui) -> Result<bool> {
    match command {
        Command::Check { file } => check(file, ui),
        Command::Expand { file } => expand(file, ui),
        Command::Graph { file, format } => graph(file, *format, ui),
        Command::Operators { markdown } => {
            if *markdown {
                print!("{}", streamc_dsl::ops::reference::markdown());
            } else {
                print!("{}", streamc_dsl::ops::reference::text());
            }
            Ok(true)
        }
        Command::New {
            name,
            template,
            streamc_path,
        } => new(name, template, streamc_path.as_deref(), ui),
        Command::Build {
            path,
            debug,
            out,
            cache_dir,
            streamc_path,
        } => build(
            path,
            !debug,
            out.as_deref(),
            cache_dir.as_deref(),
            streamc_path.as_deref(),
            ui,
        ),
    }
}

fn read(file: &Path) -> Result<(String, Vec<scan::Block>)> {
    let source =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let blocks = scan::blocks(file, &source)?;
    if blocks.is_empty() {
        anyhow::bail!("{} contains no stream! block", file.display());
    }
    Ok((source, blocks))
}

/// Every block of `file`, validated; diagnostics are printed. `None` if any block has errors.
fn validated(file: &Path, ui: &Ui) -> Result<Option<Vec<streamc_dsl::graph::Graph>>> {
    let (source, blocks) = read(file)?;
    let (mut errors, mut warnings) = (0usize, 0usize);
    let mut graphs = Vec::new();
    for block in blocks {
        match streamc_dsl::check(block.tokens) {
            Ok(graph) => {
                for d in &graph.warnings.0 {
                    warnings += 1;
                    if !ui.quiet {
                        eprint!("{}", render::diagnostic(file, &source, d, ui.paint));
                    }
                }
                graphs.push(graph);
            }
            Err(diagnostics) => {
                for d in &diagnostics.0 {
                    if d.level == streamc_dsl::Level::Error {
                        errors += 1;
                    } else {
                        warnings += 1;
                    }
                    eprint!("{}", render::diagnostic(file, &source, d, ui.paint));
                }
            }
        }
    }
    if errors > 0 {
        eprintln!(
            "{}: {} has {errors} error{}",
            ui.paint.error("error"),
            file.display(),
            if errors == 1 { "" } else { "s" }
        );
        return Ok(None);
    }
    if !ui.quiet && warnings > 0 {
        eprintln!(
            "{}: {warnings} warning{}",
            ui.paint.warning("warning"),
            if warnings == 1 { "" } else { "s" }
        );
    }
    Ok(Some(graphs))
}

fn check(file: &Path, ui: &Ui) -> Result<bool> {
    let started = Instant::now();
    let Some(graphs) = validated(file, ui)? else {
        return Ok(false);
    };
    if !ui.quiet {
        for graph in &graphs {
            println!("{}", render::summary(graph));
        }
    }
    if ui.verbose {
        eprintln!("checked in {:.1} ms", started.elapsed().as_secs_f64() * 1e3);
    }
    Ok(true)
}

fn expand(file: &Path, ui: &Ui) -> Result<bool> {
    let Some(graphs) = validated(file, ui)? else {
        return Ok(false);
    };
    for graph in graphs {
        let tokens = streamc_dsl::codegen::generate(&graph);
        let parsed: syn::File =
            syn::parse2(tokens).context("the generated code does not parse (a streamc bug)")?;
        print!("{}", prettyplease::unparse(&parsed));
    }
    Ok(true)
}

fn graph(file: &Path, format: draw::Format, ui: &Ui) -> Result<bool> {
    let Some(graphs) = validated(file, ui)? else {
        return Ok(false);
    };
    for graph in graphs {
        print!("{}", draw::render(&graph, format));
    }
    Ok(true)
}

fn new(name: &Path, template: &str, streamc_path: Option<&Path>, ui: &Ui) -> Result<bool> {
    let template = templates::find(template).context("unknown template")?;
    let runtime = project::runtime_path(streamc_path)?;
    let files = project::new_project(name, template, &runtime)?;
    if !ui.quiet {
        println!(
            "{} `{}` from the {} template ({}):",
            ui.paint.ok("created"),
            name.display(),
            template.name,
            template.about
        );
        for file in &files {
            println!("  {}", file.display());
        }
        println!(
            "next:\n  cd {}\n  cargo test          # the pipeline, fed by its test\n  cargo run           # or: streamc build",
            name.display()
        );
    }
    Ok(true)
}

fn cache_dir(explicit: Option<&Path>) -> PathBuf {
    if let Some(dir) = explicit {
        return dir.to_path_buf();
    }
    if let Some(dir) = std::env::var_os("STREAMC_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    match std::env::var_os("XDG_CACHE_HOME").or_else(|| {
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").into_os_string())
    }) {
        Some(base) => PathBuf::from(base).join("streamc"),
        None => std::env::temp_dir().join("streamc-cache"),
    }
}

fn build(
    path: &Path,
    release: bool,
    out: Option<&Path>,
    cache: Option<&Path>,
    streamc_path: Option<&Path>,
    ui: &Ui,
) -> Result<bool> {
    let started = Instant::now();
    let is_stream_file = path.extension().is_some_and(|e| e == "stream");
    let (project_dir, target_dir, pipeline_file) = if is_stream_file {
        let Some(graphs) = validated(path, ui)? else {
            return Ok(false);
        };
        let graph = &graphs[0];
        let source = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let cache = cache_dir(cache);
        let runtime = project::runtime_path(streamc_path)?;
        let dir = project::stream_crate(
            &path.canonicalize()?,
            &source,
            &graph.app.name.to_string(),
            &project::features(graph),
            &cache,
            &runtime,
        )?;
        // One target directory for every generated crate (yours, if CARGO_TARGET_DIR is set).
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| cache.join("target"));
        (dir, Some(target), path.to_path_buf())
    } else {
        let dir = if path.is_file() {
            path.parent().unwrap_or(Path::new(".")).to_path_buf()
        } else {
            path.to_path_buf()
        };
        if !dir.join("Cargo.toml").exists() {
            anyhow::bail!(
                "{} is neither a Cargo project nor a .stream file",
                path.display()
            );
        }
        let pipeline = ["src/pipeline.rs", "src/main.rs"]
            .iter()
            .map(|f| dir.join(f))
            .find(|f| f.exists())
            .with_context(|| format!("{} has no src/pipeline.rs or src/main.rs", dir.display()))?;
        // Validate first: the macro would say the same, but only after the dependencies compiled.
        if validated(&pipeline, ui)?.is_none() {
            return Ok(false);
        }
        (dir, None, pipeline)
    };
    if !ui.quiet {
        eprintln!(
            "{} {} ({})",
            ui.paint.accent("building"),
            pipeline_file.display(),
            if release { "release" } else { "debug" }
        );
    }
    let Some(binary) = project::cargo_build(
        &project_dir,
        release,
        target_dir.as_deref(),
        ui.quiet,
        ui.verbose,
    )?
    else {
        eprintln!(
            "{}: the build failed (cargo's messages above)",
            ui.paint.error("error")
        );
        return Ok(false);
    };
    let binary = match out {
        Some(out) => {
            std::fs::copy(&binary, out)
                .with_context(|| format!("cannot copy the binary to {}", out.display()))?;
            out.to_path_buf()
        }
        None => binary,
    };
    if !ui.quiet {
        let (_, blocks) = read(&pipeline_file)?;
        for block in blocks {
            if let Ok(graph) = streamc_dsl::check(block.tokens) {
                println!("{}", render::summary(&graph));
            }
        }
        println!(
            "{} {} in {:.1} s",
            ui.paint.ok("built"),
            binary.display(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(true)
}
