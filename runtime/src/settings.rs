//! Settings declared once: each one is a [`Setting`] (its flag, its config-file key, its help, how
//! its value is read and where it goes), and one table of them gives both the app's command line and
//! the keys its `--config` file accepts. A connector's settings live beside its options struct, in
//! its own module; the configuration composes the tables.
//!
//! A flag's value is text (`--batch 500ms`); a file's is TOML (`batch = "500ms"`). Both are read
//! by the same [`SettingValue`] and applied by the same function, so a flag and its key cannot
//! disagree about what they accept. A boolean setting is a switch: `--wal` turns it on,
//! `--wal=false` off, whatever the file said.

use std::path::PathBuf;
use std::time::Duration;

/// One setting of an options struct `T`: what it is, and how it is applied.
pub struct Setting<T: 'static> {
    /// Its flag, key and help.
    pub info: SettingInfo,
    /// Reads a value and puts it in place; errors name the flag or key (see [`Raw`]).
    pub apply: fn(&mut T, Raw<'_>) -> Result<(), String>,
}

/// A setting's flag, config-file key and help.
pub struct SettingInfo {
    /// The table of the config file it is in (`"receiver"` for `[receiver]`), or `""` for the top
    /// level.
    pub section: &'static str,
    /// Its key in that table.
    pub key: &'static str,
    /// Its flag, without the dashes.
    pub flag: &'static str,
    /// The flag's placeholder in `--help` (`DURATION`, `N`, `NAME=URL`).
    pub value_name: &'static str,
    /// The `--help` text.
    pub help: &'static str,
    /// A boolean: the bare flag means `true`.
    pub switch: bool,
    /// `NAME=VALUE` per entry, repeatable on the command line; a table of entries in the file.
    pub entries: bool,
}

impl SettingInfo {
    /// Its command-line argument.
    pub fn arg(&self) -> clap::Arg {
        let arg = clap::Arg::new(self.flag)
            .long(self.flag)
            .value_name(self.value_name)
            .help(self.help);
        if self.switch {
            arg.num_args(0..=1)
                .require_equals(true)
                .default_missing_value("true")
        } else if self.entries {
            arg.action(clap::ArgAction::Append)
        } else {
            arg
        }
    }

    /// A value given by its flag.
    pub fn flag_value<'a>(&self, text: &'a str) -> Raw<'a> {
        Raw {
            name: format!("--{}", self.flag),
            value: RawValue::Flag(text),
        }
    }

    /// A value given under its key in the config file.
    pub fn file_value<'a>(&self, value: &'a toml::Value) -> Raw<'a> {
        let path = if self.section.is_empty() {
            self.key.to_string()
        } else {
            format!("{}.{}", self.section, self.key)
        };
        Raw {
            name: format!("`{path}`"),
            value: RawValue::File(value),
        }
    }
}

/// A value as given: flag text or a TOML value, with the name to blame in errors.
pub struct Raw<'a> {
    /// `--batch` for a flag, `` `batch` `` for a file key.
    pub name: String,
    /// The value.
    pub value: RawValue<'a>,
}

/// Where a value comes from.
pub enum RawValue<'a> {
    /// A flag's text.
    Flag(&'a str),
    /// A config file's value.
    File(&'a toml::Value),
}

impl<'a> Raw<'a> {
    /// The value read as a `V`.
    pub fn get<V: SettingValue>(&self) -> Result<V, String> {
        match self.value {
            RawValue::Flag(text) => V::from_text(text),
            RawValue::File(value) => V::from_toml(value),
        }
        .map_err(|e| format!("{}: {e}", self.name))
    }

    /// The value read as a whole number of at least 1.
    pub fn positive<V: SettingValue + PartialEq + From<u8>>(&self) -> Result<V, String> {
        let value: V = self.get()?;
        if value == V::from(0) {
            return Err(format!("{} must be at least 1", self.name));
        }
        Ok(value)
    }

    /// `NAME=VALUE` entries: one from a flag, every `NAME = VALUE` of the file's table, each value
    /// named for its errors.
    pub fn entries(&self) -> Result<Vec<(String, Raw<'a>)>, String> {
        let entry = |name: &str, value: RawValue<'a>| Raw {
            name: format!("{} `{name}`", self.name),
            value,
        };
        match self.value {
            RawValue::Flag(text) => {
                let (name, value) = text.split_once('=').ok_or_else(|| {
                    format!("{} expects {}, got `{text}`", self.name, "NAME=VALUE")
                })?;
                Ok(vec![(name.to_string(), entry(name, RawValue::Flag(value)))])
            }
            RawValue::File(toml::Value::Table(table)) => Ok(table
                .iter()
                .map(|(name, value)| (name.clone(), entry(name, RawValue::File(value))))
                .collect()),
            RawValue::File(other) => {
                Err(format!("{}: {}", self.name, invalid_type("a table", other)))
            }
        }
    }

    /// The value, refused with the name in front when `check` refuses it.
    pub fn checked<V: SettingValue + Copy>(
        &self,
        check: impl FnOnce(V) -> Result<(), String>,
    ) -> Result<V, String> {
        let value = self.get()?;
        check(value).map_err(|e| format!("{}: {e}", self.name))?;
        Ok(value)
    }

    /// Per-name tables with several fields: a flag's `NAME=VALUE` sets `fields[0]`; the file's
    /// `[table.NAME]` may hold any of `fields`. Each value comes with its name and field.
    fn entry_fields(
        &self,
        fields: &[&'static str],
    ) -> Result<Vec<(String, &'static str, Raw<'a>)>, String> {
        match self.value {
            RawValue::Flag(_) => Ok(self
                .entries()?
                .into_iter()
                .map(|(name, value)| (name, fields[0], value))
                .collect()),
            RawValue::File(toml::Value::Table(table)) => {
                let mut found = Vec::new();
                for (name, value) in table {
                    let toml::Value::Table(inner) = value else {
                        return Err(format!(
                            "{}: `{name}` must be a table with {}",
                            self.name,
                            quoted(fields)
                        ));
                    };
                    for (key, value) in inner {
                        let Some(field) = fields.iter().find(|f| **f == key.as_str()) else {
                            return Err(format!(
                                "{}.{name}: unknown field `{key}`, expected {}",
                                self.name,
                                quoted(fields)
                            ));
                        };
                        found.push((
                            name.clone(),
                            *field,
                            Raw {
                                name: format!("{}.{name}.{field}", self.name.trim_end_matches('`'))
                                    + "`",
                                value: RawValue::File(value),
                            },
                        ));
                    }
                }
                Ok(found)
            }
            RawValue::File(other) => {
                Err(format!("{}: {}", self.name, invalid_type("a table", other)))
            }
        }
    }

    /// A per-name table of `field` and client properties (`[sources.NAME] address = ...` and
    /// `[sources.NAME.properties]`; a flag's `NAME=VALUE` sets the field): each value into `values`,
    /// each properties table, flattened, into `properties`.
    pub fn insert_with_properties(
        &self,
        field: &'static str,
        values: &mut std::collections::BTreeMap<String, String>,
        properties: &mut std::collections::BTreeMap<
            String,
            std::collections::BTreeMap<String, String>,
        >,
    ) -> Result<(), String> {
        for (name, found, value) in self.entry_fields(&[field, "properties"])? {
            if found == field {
                values.insert(name, value.get()?);
            } else {
                properties
                    .entry(name)
                    .or_default()
                    .extend(value.properties()?);
            }
        }
        Ok(())
    }

    /// `KEY=VALUE` properties: one from a flag, or every key of a file's table, nested tables
    /// flattened into dotted keys (`ssl.ca.location = "..."` is TOML for `ssl = { ca = ... }`).
    /// Strings, numbers and booleans are taken as their text.
    pub fn properties(&self) -> Result<Vec<(String, String)>, String> {
        fn flatten(
            prefix: &str,
            table: &toml::Table,
            name: &str,
            out: &mut Vec<(String, String)>,
        ) -> Result<(), String> {
            for (key, value) in table {
                let key = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                let text = match value {
                    toml::Value::Table(inner) => {
                        flatten(&key, inner, name, out)?;
                        continue;
                    }
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Float(f) => f.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    other => {
                        return Err(format!(
                            "{name}: `{key}`: {}",
                            invalid_type("a string, number or boolean", other)
                        ))
                    }
                };
                out.push((key, text));
            }
            Ok(())
        }
        match self.value {
            RawValue::Flag(text) => {
                let (key, value) = text
                    .split_once('=')
                    .ok_or_else(|| format!("{} expects KEY=VALUE, got `{text}`", self.name))?;
                Ok(vec![(key.trim().to_string(), value.to_string())])
            }
            RawValue::File(toml::Value::Table(table)) => {
                let mut out = Vec::new();
                flatten("", table, &self.name, &mut out)?;
                Ok(out)
            }
            RawValue::File(other) => {
                Err(format!("{}: {}", self.name, invalid_type("a table", other)))
            }
        }
    }
}

fn quoted(fields: &[&str]) -> String {
    let quoted: Vec<String> = fields.iter().map(|f| format!("`{f}`")).collect();
    quoted.join(" or ")
}

/// A type a setting can hold, read from flag text or from TOML.
pub trait SettingValue: Sized {
    /// Reads flag text.
    fn from_text(text: &str) -> Result<Self, String>;
    /// Reads a config file's value.
    fn from_toml(value: &toml::Value) -> Result<Self, String>;
}

/// Worded as serde words it, which the file's other errors (unknown keys, syntax) come from.
fn invalid_type(expected: &str, found: &toml::Value) -> String {
    let found = match found {
        toml::Value::String(s) => format!("string {s:?}"),
        toml::Value::Integer(n) => format!("integer `{n}`"),
        toml::Value::Float(f) => format!("floating point `{f}`"),
        toml::Value::Boolean(b) => format!("boolean `{b}`"),
        toml::Value::Datetime(d) => format!("datetime `{d}`"),
        toml::Value::Array(_) => "sequence".to_string(),
        toml::Value::Table(_) => "map".to_string(),
    };
    format!("invalid type: {found}, expected {expected}")
}

macro_rules! whole_number {
    ($($ty:ty),*) => {$(
        impl SettingValue for $ty {
            fn from_text(text: &str) -> Result<Self, String> {
                text.trim().parse().map_err(|_| {
                    format!("`{text}` is not a whole number from {} to {}", <$ty>::MIN, <$ty>::MAX)
                })
            }

            fn from_toml(value: &toml::Value) -> Result<Self, String> {
                match value {
                    toml::Value::Integer(n) => <$ty>::try_from(*n).map_err(|_| {
                        format!("{n} is out of range ({} to {})", <$ty>::MIN, <$ty>::MAX)
                    }),
                    other => Err(invalid_type("a whole number", other)),
                }
            }
        }
    )*};
}

whole_number!(u32, u64, usize, i64);

impl SettingValue for f64 {
    fn from_text(text: &str) -> Result<Self, String> {
        text.trim()
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .ok_or_else(|| format!("`{text}` is not a number"))
    }

    fn from_toml(value: &toml::Value) -> Result<Self, String> {
        match value {
            toml::Value::Float(n) if n.is_finite() => Ok(*n),
            toml::Value::Integer(n) => Ok(*n as f64),
            other => Err(invalid_type("a number", other)),
        }
    }
}

impl SettingValue for bool {
    fn from_text(text: &str) -> Result<Self, String> {
        match text.trim() {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(format!("`{other}` is neither true nor false")),
        }
    }

    fn from_toml(value: &toml::Value) -> Result<Self, String> {
        match value {
            toml::Value::Boolean(b) => Ok(*b),
            other => Err(invalid_type("true or false", other)),
        }
    }
}

impl SettingValue for String {
    fn from_text(text: &str) -> Result<Self, String> {
        Ok(text.to_string())
    }

    fn from_toml(value: &toml::Value) -> Result<Self, String> {
        match value {
            toml::Value::String(s) => Ok(s.clone()),
            other => Err(invalid_type("a string", other)),
        }
    }
}

impl SettingValue for PathBuf {
    fn from_text(text: &str) -> Result<Self, String> {
        Ok(PathBuf::from(text))
    }

    fn from_toml(value: &toml::Value) -> Result<Self, String> {
        String::from_toml(value).map(PathBuf::from)
    }
}

/// Spark's time strings: `500ms`, `1.5s`, `10min` (or `10m`), `2h`, `1d`, as the `stream!`
/// language writes them.
impl SettingValue for Duration {
    fn from_text(text: &str) -> Result<Self, String> {
        parse_duration(text)
    }

    fn from_toml(value: &toml::Value) -> Result<Self, String> {
        match value {
            toml::Value::String(s) => parse_duration(s),
            other => Err(invalid_type("a duration such as \"500ms\"", other)),
        }
    }
}

/// `HOST:PORT`, or a bare port on the loopback interface (monitoring stays local unless asked).
impl SettingValue for std::net::SocketAddr {
    fn from_text(text: &str) -> Result<Self, String> {
        parse_ui_address(text)
    }

    fn from_toml(value: &toml::Value) -> Result<Self, String> {
        match value {
            toml::Value::String(s) => parse_ui_address(s),
            toml::Value::Integer(port) => {
                let port = u16::try_from(*port).map_err(|_| format!("{port} is not a port"))?;
                Ok(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
            }
            other => Err(invalid_type("an address such as \"127.0.0.1:4040\"", other)),
        }
    }
}

/// `HOST:PORT`, or a bare port on the loopback interface.
pub fn parse_ui_address(text: &str) -> Result<std::net::SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    }
    use std::net::ToSocketAddrs;
    text.to_socket_addrs()
        .map_err(|e| format!("`{text}` is not an address (HOST:PORT or PORT): {e}"))?
        .next()
        .ok_or_else(|| format!("`{text}` resolves to no address"))
}

/// Parses `500ms`, `1s`, `1.5s`, `10min` (or `10m`), `2h`, `1d`, as the `stream!` language does.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    streamc_duration::parse_millis(text)
        .map(Duration::from_millis)
        .map_err(|e| format!("`{}` is {e}", text.trim()))
}

/// Declares a [`Setting`] of options struct `$target`: its place in the file, its flag, and how
/// it is applied: a body applying `raw` (a [`Raw`]) to `target`, or, for a plain field, `=> field`,
/// `=> Some(field)`, `=> positive field` (at least 1), `=> Some(positive field)` or
/// `=> checked(check) field` (refused when `check` refuses it).
macro_rules! setting {
    (
        $target:ty {
            $(section: $section:literal,)?
            key: $key:literal,
            flag: $flag:literal,
            value: $value_name:literal,
            $(switch: $switch:literal,)?
            $(entries: $entries:literal,)?
            help: $help:expr $(,)?
        }
        |$t:ident, $raw:ident| $body:expr
    ) => {
        $crate::settings::Setting::<$target> {
            info: $crate::settings::SettingInfo {
                section: $crate::settings::section(&[$($section)?]),
                key: $key,
                flag: $flag,
                value_name: $value_name,
                help: $help,
                switch: false $(|| $switch)?,
                entries: false $(|| $entries)?,
            },
            apply: {
                fn apply($t: &mut $target, $raw: $crate::settings::Raw<'_>) -> Result<(), String> {
                    $body
                }
                apply
            },
        }
    };
    ($target:ty { $($fields:tt)* } => Some(positive $($field:ident).+)) => {
        setting!($target { $($fields)* } |t, raw| {
            t.$($field).+ = Some(raw.positive()?);
            Ok(())
        })
    };
    ($target:ty { $($fields:tt)* } => Some($($field:ident).+)) => {
        setting!($target { $($fields)* } |t, raw| {
            t.$($field).+ = Some(raw.get()?);
            Ok(())
        })
    };
    ($target:ty { $($fields:tt)* } => checked($check:path) $($field:ident).+) => {
        setting!($target { $($fields)* } |t, raw| {
            t.$($field).+ = raw.checked($check)?;
            Ok(())
        })
    };
    ($target:ty { $($fields:tt)* } => positive $($field:ident).+) => {
        setting!($target { $($fields)* } |t, raw| {
            t.$($field).+ = raw.positive()?;
            Ok(())
        })
    };
    ($target:ty { $($fields:tt)* } => $($field:ident).+) => {
        setting!($target { $($fields)* } |t, raw| {
            t.$($field).+ = raw.get()?;
            Ok(())
        })
    };
}

pub(crate) use setting;

/// The section a [`setting!`] names, or the top level.
#[doc(hidden)]
pub const fn section(named: &[&'static str]) -> &'static str {
    match named {
        [section, ..] => section,
        [] => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag(text: &str) -> Raw<'_> {
        Raw {
            name: "--flag".into(),
            value: RawValue::Flag(text),
        }
    }

    #[test]
    fn a_flag_and_a_key_read_the_same_values_and_name_themselves_in_errors() {
        let file = toml::Value::String("1m".into());
        let key = Raw {
            name: "`key`".into(),
            value: RawValue::File(&file),
        };
        assert_eq!(key.get::<Duration>(), Ok(Duration::from_secs(60)));
        assert_eq!(flag("1m").get::<Duration>(), Ok(Duration::from_secs(60)));
        let four = toml::Value::String("four".into());
        let wrong = Raw {
            name: "`workers`".into(),
            value: RawValue::File(&four),
        };
        let err = wrong.get::<usize>().unwrap_err();
        assert!(err.starts_with("`workers`: invalid type"), "{err}");
        assert_eq!(
            flag("0").positive::<u64>().unwrap_err(),
            "--flag must be at least 1"
        );
        assert!(flag("maybe").get::<bool>().unwrap_err().contains("maybe"));
        let entries = flag("a=b").entries().unwrap();
        assert_eq!(entries[0].0, "a");
        assert_eq!(entries[0].1.get::<String>(), Ok("b".to_string()));
        assert!(flag("ab").entries().is_err());
    }

    #[test]
    fn per_name_tables_take_their_field_and_flattened_properties() {
        let file: toml::Value = toml::from_str(
            "[events]\naddress = \"b:9092\"\n[events.properties]\nssl.ca.location = \"/ca.pem\"\n\
             \"socket.timeout.ms\" = 5000\nenable.ssl.certificate.verification = false\n",
        )
        .unwrap();
        let raw = Raw {
            name: "`sources`".into(),
            value: RawValue::File(&file),
        };
        let (mut values, mut properties) = (Default::default(), Default::default());
        raw.insert_with_properties("address", &mut values, &mut properties)
            .unwrap();
        assert_eq!(values["events"], "b:9092");
        let events: Vec<(&str, &str)> = properties["events"]
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            events,
            [
                ("enable.ssl.certificate.verification", "false"),
                ("socket.timeout.ms", "5000"),
                ("ssl.ca.location", "/ca.pem"),
            ]
        );
        let typo: toml::Value = toml::from_str("[events]\nadress = \"x\"\n").unwrap();
        let err = Raw {
            name: "`sources`".into(),
            value: RawValue::File(&typo),
        }
        .insert_with_properties("address", &mut values, &mut properties)
        .unwrap_err();
        assert!(err.contains("unknown field `adress`"), "{err}");
        assert_eq!(
            flag("security.protocol=ssl").properties(),
            Ok(vec![("security.protocol".into(), "ssl".into())])
        );
        assert!(flag("no-equals").properties().is_err());
    }
}
