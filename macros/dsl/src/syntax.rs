//! The surface syntax of a `stream!` block: an `app` header, then `let` bindings and output statements.
//!
//! ```text
//! app word_count { batch: 1s, workers: 2 }
//! let lines = socket_text_stream("localhost", 9999);
//! let counts = lines.flat_map(|l: &str| l.split(' ')).map(|w| (w.to_string(), 1u64)).reduce_by_key(|a, b| a + b);
//! counts.print();
//! ```

use crate::diagnostic::Diagnostic;
use crate::duration::parse_duration;
use proc_macro2::TokenStream;
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{braced, Expr, Ident, Token, Type};

/// A parsed `stream!` block.
pub struct PipelineSyntax {
    pub app: AppHeader,
    pub statements: Vec<Statement>,
}

/// `app NAME { batch: 1s, workers: 2 }`.
pub struct AppHeader {
    pub name: Ident,
    pub batch_millis: u64,
    pub workers: usize,
    /// `checkpoint: "dir"`: where state and progress are saved.
    pub checkpoint: Option<String>,
    /// `checkpoint_every: 10s`.
    pub checkpoint_every_millis: Option<u64>,
}

/// One statement of the block.
pub enum Statement {
    /// `let NAME = chain;` or `let NAME: Type = broadcast(expr);`
    Let {
        name: Ident,
        ty: Option<Type>,
        init: Box<Expr>,
    },
    /// `chain.output(...);`
    Output(Expr),
}

/// The header keys and what they take.
pub const APP_KEYS: &[(&str, &str)] = &[
    ("batch", "a duration such as `1s`"),
    ("workers", "a positive whole number"),
    (
        "checkpoint",
        "a directory as a string, e.g. `\"checkpoints/app\"`",
    ),
    (
        "checkpoint_every",
        "a duration, a multiple of the batch interval",
    ),
];

/// Default number of workers (Spark's `local[2]`).
pub const DEFAULT_WORKERS: usize = 2;

pub fn parse(tokens: TokenStream) -> Result<PipelineSyntax, Diagnostic> {
    let parsed = (|input: ParseStream| parse_block(input)).parse2(tokens);
    match parsed {
        Ok(result) => result,
        Err(e) => Err(Diagnostic::error(e.span(), e.to_string())),
    }
}

struct Setting {
    key: Ident,
    value: Expr,
}

impl Parse for Setting {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let key: Ident = input.parse()?;
        input.parse::<Token![:]>()?;
        let value: Expr = input.parse()?;
        Ok(Setting { key, value })
    }
}

fn parse_block(input: ParseStream) -> syn::Result<Result<PipelineSyntax, Diagnostic>> {
    let header_start = input.span();
    let keyword: Option<Ident> =
        if input.peek(Ident) && input.fork().parse::<Ident>().is_ok_and(|i| i == "app") {
            Some(input.parse()?)
        } else {
            None
        };
    if keyword.is_none() {
        input.parse::<TokenStream>()?;
        return Ok(Err(Diagnostic::error(
            header_start,
            "a stream! block starts with its `app` header",
        )
        .help(
            "begin with `app my_app { batch: 1s }` (batch interval, optional `workers: N`)",
        )));
    }
    let name: Ident = input.parse()?;
    let content;
    braced!(content in input);
    let settings: Punctuated<Setting, Token![,]> =
        content.parse_terminated(Setting::parse, Token![,])?;
    let header = match check_header(name, &settings) {
        Ok(h) => h,
        Err(d) => {
            // Report the header problem alone; the statements are not looked at.
            input.parse::<TokenStream>()?;
            return Ok(Err(d));
        }
    };
    let stmts = syn::Block::parse_within(input)?;
    let mut statements = Vec::new();
    for stmt in stmts {
        match statement(stmt) {
            Ok(s) => statements.push(s),
            Err(d) => return Ok(Err(d)),
        }
    }
    Ok(Ok(PipelineSyntax {
        app: header,
        statements,
    }))
}

fn check_header(
    name: Ident,
    settings: &Punctuated<Setting, Token![,]>,
) -> Result<AppHeader, Diagnostic> {
    let mut batch: Option<u64> = None;
    let mut workers: Option<usize> = None;
    let mut checkpoint: Option<String> = None;
    let mut checkpoint_every: Option<(u64, &Expr)> = None;
    let mut seen: Vec<String> = Vec::new();
    for setting in settings {
        let key = setting.key.to_string();
        if seen.contains(&key) {
            return Err(
                Diagnostic::at(&setting.key, format!("`{key}` is set twice"))
                    .help("keep one of them"),
            );
        }
        seen.push(key.clone());
        match key.as_str() {
            "batch" => batch = Some(parse_duration(&setting.value)?),
            "workers" => workers = Some(parse_workers(&setting.value)?),
            "checkpoint" => match &setting.value {
                Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(dir), .. }) if !dir.value().is_empty() => {
                    check_storage_scheme(dir)?;
                    checkpoint = Some(dir.value())
                }
                other => {
                    return Err(Diagnostic::at(other, "`checkpoint` takes a directory as a string")
                        .help("for example `checkpoint: \"checkpoints/word_count\"`; `--checkpoint DIR` overrides it at run time"))
                }
            },
            "checkpoint_every" => checkpoint_every = Some((parse_duration(&setting.value)?, &setting.value)),
            other => {
                let valid: Vec<String> = APP_KEYS
                    .iter()
                    .map(|(k, what)| format!("`{k}` ({what})"))
                    .collect();
                let mut d = Diagnostic::at(&setting.key, format!("unknown app setting `{other}`"));
                d = match crate::diagnostic::nearest(other, APP_KEYS.iter().map(|(k, _)| *k)) {
                    Some(near) => d.help(format!(
                        "did you mean `{near}`? valid settings: {}",
                        valid.join(", ")
                    )),
                    None => d.help(format!("valid settings: {}", valid.join(", "))),
                };
                return Err(d);
            }
        }
    }
    let Some(batch_millis) = batch else {
        return Err(
            Diagnostic::at(&name, format!("app `{name}` has no batch interval")).help(format!(
                "add it to the header: `app {name} {{ batch: 1s }}`"
            )),
        );
    };
    if let Some((every, expr)) = checkpoint_every {
        if every % batch_millis != 0 {
            return Err(Diagnostic::at(expr, format!("`checkpoint_every` ({every} ms) is not a multiple of the batch interval ({batch_millis} ms)"))
                .help("checkpoints are written after whole batches; use a multiple of the batch interval"));
        }
    }
    Ok(AppHeader {
        name,
        batch_millis,
        workers: workers.unwrap_or(DEFAULT_WORKERS),
        checkpoint,
        checkpoint_every_millis: checkpoint_every.map(|(ms, _)| ms),
    })
}

fn parse_workers(value: &Expr) -> Result<usize, Diagnostic> {
    let bad = || {
        Diagnostic::at(value, "`workers` must be a positive whole number")
            .help("for example `workers: 2`")
    };
    let syn::Expr::Lit(syn::ExprLit {
        lit: syn::Lit::Int(int),
        ..
    }) = value
    else {
        return Err(bad());
    };
    let n: usize = int.base10_parse().map_err(|_| bad())?;
    if n == 0 {
        return Err(
            Diagnostic::at(value, "`workers: 0` leaves no thread to process batches").help(
                "use at least `workers: 1`; receivers run on their own threads, so 1 is enough",
            ),
        );
    }
    Ok(n)
}

fn statement(stmt: syn::Stmt) -> Result<Statement, Diagnostic> {
    let shape_help =
        "write `let name = stream...;` or an output statement such as `counts.print();`";
    match stmt {
        syn::Stmt::Local(local) => {
            let (name, ty) = match &local.pat {
                syn::Pat::Ident(p) if p.by_ref.is_none() && p.mutability.is_none() && p.subpat.is_none() => (p.ident.clone(), None),
                syn::Pat::Type(t) => match &*t.pat {
                    syn::Pat::Ident(p) => (p.ident.clone(), Some((*t.ty).clone())),
                    other => return Err(Diagnostic::at(other, "expected a plain name").help(shape_help)),
                },
                other => return Err(Diagnostic::at(other, "expected a plain name").help(shape_help)),
            };
            let Some(init) = local.init else {
                return Err(Diagnostic::at(&name, format!("`{name}` has no value")).help(shape_help));
            };
            if let Some((_, diverge)) = init.diverge {
                return Err(Diagnostic::at(&diverge, "`let ... else` is not part of the pipeline language").help(shape_help));
            }
            Ok(Statement::Let { name, ty, init: init.expr })
        }
        syn::Stmt::Expr(expr, Some(_)) => Ok(Statement::Output(expr)),
        syn::Stmt::Expr(expr, None) => Err(Diagnostic::at(&expr, "missing `;` after this statement").help(shape_help)),
        syn::Stmt::Item(item) => Err(Diagnostic::at(&item, "items cannot be declared inside stream!")
            .help("declare functions, types and `use` lines outside the stream! block; closures can call them")),
        syn::Stmt::Macro(m) => Err(Diagnostic::at(&m.mac.path, "macro calls are not pipeline statements").help(shape_help)),
    }
}

/// URL schemes the runtime's storage layer opens (`streamc::store::Location::parse`): a checkpoint
/// on any other is refused here, at the user's string, instead of when the app starts.
const STORAGE_SCHEMES: &[&str] = &["file", "s3", "s3a", "gs", "az", "azure", "abfs", "abfss"];

fn check_storage_scheme(dir: &syn::LitStr) -> Result<(), Diagnostic> {
    let value = dir.value();
    match value.split_once("://") {
        Some((scheme, _)) if !STORAGE_SCHEMES.contains(&scheme) => Err(Diagnostic::at(
            dir,
            format!("`{scheme}://` is not a storage streamc knows"),
        )
        .help("use a local path, `file://`, `s3://BUCKET/PREFIX` (also for S3-compatible servers such as MinIO or Ceph), `gs://` or `az://`")),
        _ => Ok(()),
    }
}
