//! Duration literals of the DSL: `500ms`, `1s`, `1.5s`, `10min` (or `10m`), `2h`, `1d`: a number with
//! a unit suffix, read by `streamc-duration`, as the apps' flags and config files are.

use crate::diagnostic::Diagnostic;
use streamc_duration::{millis_of, DurationError, UNITS_HELP};
use syn::{Expr, Lit};

pub use streamc_duration::{format_millis, UNITS};

/// A duration literal in whole milliseconds.
pub fn parse_duration(expr: &Expr) -> Result<u64, Diagnostic> {
    let malformed = |shown: String| {
        Diagnostic::at(expr, format!("malformed duration `{shown}`")).help(format!(
            "write a number followed by {UNITS_HELP}, for example `500ms`, `1s` or `10min`"
        ))
    };
    let Expr::Lit(lit) = expr else {
        return Err(malformed(quote::quote!(#expr).to_string()));
    };
    let (digits, suffix, shown) = match &lit.lit {
        Lit::Int(i) => (
            i.base10_digits().to_string(),
            i.suffix().to_string(),
            i.to_string(),
        ),
        Lit::Float(f) => (
            f.base10_digits().to_string(),
            f.suffix().to_string(),
            f.to_string(),
        ),
        other => return Err(malformed(quote::quote!(#other).to_string())),
    };
    let millis =
        match millis_of(&digits, &suffix) {
            Ok(millis) => millis,
            Err(DurationError::Malformed) => return Err(malformed(shown)),
            Err(DurationError::NotWholeMillis) => return Err(Diagnostic::at(
                expr,
                format!("duration `{shown}` is not a whole number of milliseconds"),
            )
            .help(
                "batch intervals and windows are counted in milliseconds; use for example `1500ms`",
            )),
        };
    if millis == 0 {
        return Err(Diagnostic::at(expr, format!("duration `{shown}` is zero"))
            .help("batch intervals, windows, slides and timeouts must be longer than zero, for example `1s`"));
    }
    Ok(millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<u64, String> {
        let expr: Expr = syn::parse_str(text).map_err(|e| e.to_string())?;
        parse_duration(&expr).map_err(|d| d.message)
    }

    #[test]
    fn units() {
        assert_eq!(parse("500ms"), Ok(500));
        assert_eq!(parse("1s"), Ok(1000));
        assert_eq!(parse("1.5s"), Ok(1500));
        assert_eq!(parse("10min"), Ok(600_000));
        assert_eq!(parse("2h"), Ok(7_200_000));
        assert_eq!(parse("10m"), Ok(600_000), "Spark's minutes");
        assert_eq!(parse("1d"), Ok(86_400_000));
    }

    #[test]
    fn formats_in_the_largest_whole_unit() {
        assert_eq!(format_millis(1000), "1s");
        assert_eq!(format_millis(1500), "1500ms");
        assert_eq!(format_millis(600_000), "10min");
        assert_eq!(format_millis(7_200_000), "2h");
    }

    #[test]
    fn malformed() {
        assert!(parse("1sec")
            .unwrap_err()
            .contains("malformed duration `1sec`"));
        assert!(parse("10").unwrap_err().contains("malformed"));
        assert!(parse("0s").unwrap_err().contains("zero"));
        assert!(parse("0.5ms").unwrap_err().contains("whole number"));
    }
}
