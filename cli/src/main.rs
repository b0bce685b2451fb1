//! `streamc`: checks and expands `stream!` pipelines without compiling them.

mod render;
mod scan;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "streamc",
    version,
    about = "The streamc pipeline compiler: validate and expand stream! pipelines"
)]
struct Cli {
    /// Print nothing but errors.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate every stream! block in FILE (a Rust file or a `.stream` file) with the macro's own rules.
    Check {
        /// The file to check.
        file: PathBuf,
    },
    /// Print the Rust code every stream! block in FILE expands to, formatted.
    Expand {
        /// The file to expand.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Ok(false): the pipeline has errors (already reported).
fn run(cli: &Cli) -> Result<bool> {
    match &cli.command {
        Command::Check { file } => check(file, cli.quiet),
        Command::Expand { file } => expand(file),
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

fn check(file: &Path, quiet: bool) -> Result<bool> {
    let (source, blocks) = read(file)?;
    let mut errors = 0usize;
    let mut warnings = 0usize;
    for block in blocks {
        match streamc_dsl::check(block.tokens) {
            Ok(graph) => {
                for d in &graph.warnings.0 {
                    warnings += 1;
                    eprint!("{}", render::diagnostic(file, &source, d));
                }
                if !quiet {
                    println!("{}", render::summary(&graph));
                }
            }
            Err(diagnostics) => {
                for d in &diagnostics.0 {
                    if d.level == streamc_dsl::Level::Error {
                        errors += 1;
                    } else {
                        warnings += 1;
                    }
                    eprint!("{}", render::diagnostic(file, &source, d));
                }
            }
        }
    }
    if errors > 0 {
        eprintln!(
            "error: {} has {errors} error{}",
            file.display(),
            if errors == 1 { "" } else { "s" }
        );
    } else if !quiet && warnings > 0 {
        eprintln!(
            "warning: {warnings} warning{}",
            if warnings == 1 { "" } else { "s" }
        );
    }
    Ok(errors == 0)
}

fn expand(file: &Path) -> Result<bool> {
    let (source, blocks) = read(file)?;
    let mut ok = true;
    for block in blocks {
        match streamc_dsl::check(block.tokens) {
            Ok(graph) => {
                let tokens = streamc_dsl::codegen::generate(&graph);
                let parsed: syn::File = syn::parse2(tokens)
                    .context("the generated code does not parse (a streamc bug)")?;
                print!("{}", prettyplease::unparse(&parsed));
            }
            Err(diagnostics) => {
                ok = false;
                for d in &diagnostics.0 {
                    eprint!("{}", render::diagnostic(file, &source, d));
                }
            }
        }
    }
    Ok(ok)
}
