//! Durations as streamc writes them, in whole milliseconds: a number and a unit, `500ms`, `1.5s`,
//! `10min` (or Spark's `10m`), `2h`, `1d`. The `stream!` language reads its literals with it and the
//! apps read their flags and config files with it, so both accept exactly the same durations.

use std::fmt;

/// Units and how many milliseconds each is. `m` is Spark's spelling of `min`.
pub const UNITS: &[(&str, u64)] = &[
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("min", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
];

/// The units as a user is told about them.
pub const UNITS_HELP: &str = "ms, s, min (or m), h or d";

/// Why a duration was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DurationError {
    /// Not a number followed by a known unit.
    Malformed,
    /// Not a whole number of milliseconds (`0.5ms`), or too large.
    NotWholeMillis,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurationError::Malformed => write!(
                f,
                "not a duration: write a number followed by {UNITS_HELP}, such as 500ms, 1s or 10min"
            ),
            DurationError::NotWholeMillis => f.write_str("not a whole number of milliseconds"),
        }
    }
}

impl std::error::Error for DurationError {}

/// The milliseconds of `number` (decimal digits, maybe with a fraction) of `unit`.
pub fn millis_of(number: &str, unit: &str) -> Result<u64, DurationError> {
    let (_, per_unit) = UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .ok_or(DurationError::Malformed)?;
    if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(DurationError::Malformed);
    }
    let value: f64 = number.parse().map_err(|_| DurationError::Malformed)?;
    let millis = value * *per_unit as f64;
    if !millis.is_finite() || millis.fract() != 0.0 || millis > u64::MAX as f64 {
        return Err(DurationError::NotWholeMillis);
    }
    Ok(millis as u64)
}

/// Reads `text` (`500ms`, `1.5s`, `10m`; spaces around it or before the unit are allowed).
pub fn parse_millis(text: &str) -> Result<u64, DurationError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    millis_of(number, unit.trim())
}

/// Milliseconds written the way a user would: `1s`, `500ms`, `10min`, `2h`, `1d`.
pub fn format_millis(millis: u64) -> String {
    const SHOWN: [(&str, u64); 4] = [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("min", 60_000),
        ("s", 1_000),
    ];
    SHOWN
        .iter()
        .find(|(_, per)| millis > 0 && millis.is_multiple_of(*per))
        .map(|(unit, per)| format!("{}{unit}", millis / per))
        .unwrap_or_else(|| format!("{millis}ms"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparks_units_and_ours_read_the_same() {
        assert_eq!(parse_millis("500ms"), Ok(500));
        assert_eq!(parse_millis("1.5s"), Ok(1_500));
        assert_eq!(parse_millis("10min"), Ok(600_000));
        assert_eq!(parse_millis("10m"), Ok(600_000));
        assert_eq!(parse_millis(" 2 h "), Ok(7_200_000));
        assert_eq!(parse_millis("1d"), Ok(86_400_000));
        assert_eq!(parse_millis("0s"), Ok(0));
    }

    #[test]
    fn malformed_and_fractional_durations_are_refused() {
        for bad in ["", "s", "10", "10 parsecs", "1e3s", "-1s", "1.2.3s", "ms10"] {
            assert_eq!(parse_millis(bad), Err(DurationError::Malformed), "{bad:?}");
        }
        assert_eq!(parse_millis("0.5ms"), Err(DurationError::NotWholeMillis));
        assert!(DurationError::Malformed.to_string().contains("min (or m)"));
    }

    #[test]
    fn formats_in_the_largest_whole_unit() {
        assert_eq!(format_millis(1_000), "1s");
        assert_eq!(format_millis(1_500), "1500ms");
        assert_eq!(format_millis(600_000), "10min");
        assert_eq!(format_millis(7_200_000), "2h");
        assert_eq!(format_millis(172_800_000), "2d");
        assert_eq!(format_millis(0), "0ms");
    }
}
