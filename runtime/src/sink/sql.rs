//! The SQL sink: batches into SQLite, MySQL/MariaDB or PostgreSQL (chosen by URL), exactly once.
//!
//! Each partition of a batch is one transaction: it first claims the batch in the progress table
//! `streamc_progress (pipeline, output_name, part, batch_ms)` — an `UPDATE ... WHERE batch_ms < this`
//! that changes no row when the batch is already committed — then writes the rows with multi-row,
//! parameterized statements, then commits. A batch replayed after a crash, or retried after a commit
//! whose answer was lost, finds its claim committed and is skipped. SQL text holds only identifiers,
//! checked when the table is declared, and placeholders; every value is bound.

use super::{
    io_runtime, DeadLetter, OutputFailed, PartitionId, SinkError, SinkSettings, SinkStats,
};
use crate::shuffle::Partitions;
use sqlx::any::{AnyArguments, AnyPoolOptions};
use sqlx::{AnyPool, Arguments, AssertSqlSafe};
use std::fmt::{self, Write as _};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Duration;

/// A column's type, mapped to each database's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SqlType {
    /// Text of at most this many characters (`VARCHAR(n)`; SQLite checks the length too).
    Text(u32),
    /// A 64-bit integer.
    BigInt,
    /// A 64-bit float.
    Double,
    /// A boolean (`BOOLEAN`).
    Bool,
}

/// A value bound to a statement.
#[derive(Clone, Debug, PartialEq)]
pub enum SqlValue {
    /// A signed integer: from the signed types, and from unsigned ones up to 32 bits.
    Int(i64),
    /// Unsigned values are stored as `BIGINT`; above `i64::MAX` the record is refused.
    UInt(u64),
    /// A float, from `f32` or `f64`.
    Float(f64),
    /// Text; a value longer than its column is refused by the database.
    Text(String),
    /// A boolean.
    Bool(bool),
}

impl fmt::Display for SqlValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SqlValue::Int(v) => write!(f, "{v}"),
            SqlValue::UInt(v) => write!(f, "{v}"),
            SqlValue::Float(v) => write!(f, "{v}"),
            SqlValue::Text(v) => write!(f, "{v:?}"),
            SqlValue::Bool(v) => write!(f, "{v}"),
        }
    }
}

/// A record field that can be stored in a column.
pub trait IntoSqlValue {
    /// Converts the field into the value bound for its column.
    fn into_sql_value(self) -> SqlValue;
}

macro_rules! into_sql {
    ($variant:ident as $target:ty: $($t:ty),*) => {$(
        impl IntoSqlValue for $t {
            fn into_sql_value(self) -> SqlValue {
                SqlValue::$variant(self as $target)
            }
        }
    )*};
}
into_sql!(Int as i64: i8, i16, i32, i64, u8, u16, u32, isize);
into_sql!(UInt as u64: u64, usize);
into_sql!(Float as f64: f32, f64);

impl IntoSqlValue for bool {
    fn into_sql_value(self) -> SqlValue {
        SqlValue::Bool(self)
    }
}

impl IntoSqlValue for String {
    fn into_sql_value(self) -> SqlValue {
        SqlValue::Text(self)
    }
}

impl IntoSqlValue for &str {
    fn into_sql_value(self) -> SqlValue {
        SqlValue::Text(self.to_string())
    }
}

impl IntoSqlValue for &String {
    fn into_sql_value(self) -> SqlValue {
        SqlValue::Text(self.clone())
    }
}

impl IntoSqlValue for std::sync::Arc<str> {
    fn into_sql_value(self) -> SqlValue {
        SqlValue::Text(self.to_string())
    }
}

impl IntoSqlValue for crate::Time {
    fn into_sql_value(self) -> SqlValue {
        SqlValue::UInt(self.millis())
    }
}

/// A record that is one table row: a tuple whose fields are the table's columns, in order.
pub trait IntoRow {
    /// Appends the record's fields to `row`, one value per column, in the order of the columns.
    fn into_row(self, row: &mut Vec<SqlValue>);
}

macro_rules! tuple_row {
    ($($name:ident),+) => {
        impl<$($name: IntoSqlValue),+> IntoRow for ($($name,)+) {
            #[allow(non_snake_case)]
            fn into_row(self, row: &mut Vec<SqlValue>) {
                let ($($name,)+) = self;
                $(row.push($name.into_sql_value());)+
            }
        }
    };
}
tuple_row!(A);
tuple_row!(A, B);
tuple_row!(A, B, C);
tuple_row!(A, B, C, D);
tuple_row!(A, B, C, D, E);
tuple_row!(A, B, C, D, E, F);
tuple_row!(A, B, C, D, E, F, G);
tuple_row!(A, B, C, D, E, F, G, H);

impl IntoRow for Vec<SqlValue> {
    fn into_row(self, row: &mut Vec<SqlValue>) {
        row.extend(self);
    }
}

/// What a `save_to_sql` output writes: the table, its columns, and how rows land.
///
/// ```ignore
/// SqlTable::new("wordcount")
///     .column("word", SqlType::Text(255))
///     .column("count", SqlType::BigInt)
///     .key(["word"])                 // upsert by word (without a key: append)
///     .updated_time("updated_time")  // set to the batch time on every write
/// ```
#[derive(Clone, Debug)]
pub struct SqlTable {
    name: String,
    output: Option<String>,
    columns: Vec<(String, SqlType)>,
    key: Vec<String>,
    accumulate: Vec<String>,
    updated_time: Option<String>,
    create: bool,
    dead_letter: Option<PathBuf>,
    rows_per_statement: Option<usize>,
}

impl SqlTable {
    /// A table named `name` (letters, digits and `_`, or `schema.table`) with no columns yet:
    /// created if missing, and rows appended, unless the builder methods say otherwise.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            output: None,
            columns: Vec::new(),
            key: Vec::new(),
            accumulate: Vec::new(),
            updated_time: None,
            create: true,
            dead_letter: None,
            rows_per_statement: None,
        }
    }

    /// The next column: record fields map to columns in order.
    pub fn column(mut self, name: impl Into<String>, ty: SqlType) -> Self {
        self.columns.push((name.into(), ty));
        self
    }

    /// Upsert by these columns (the table's primary key): a row whose key exists replaces its values.
    pub fn key<S: Into<String>>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        self.key = columns.into_iter().map(Into::into).collect();
        self
    }

    /// On upsert, add these (numeric) columns to the stored values instead of replacing them: for
    /// per-batch deltas such as counts of one batch.
    pub fn accumulate<S: Into<String>>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        self.accumulate = columns.into_iter().map(Into::into).collect();
        self
    }

    /// A timestamp column set to the batch time on every insert and update.
    pub fn updated_time(mut self, column: impl Into<String>) -> Self {
        self.updated_time = Some(column.into());
        self
    }

    /// Create the table if it does not exist (the default) or expect it.
    pub fn create_table(mut self, create: bool) -> Self {
        self.create = create;
        self
    }

    /// Records the database refuses go to this file (see [`DeadLetter`]) and the rest is committed;
    /// without one, a refused record fails the batch and names the record.
    pub fn dead_letter(mut self, path: impl Into<PathBuf>) -> Self {
        self.dead_letter = Some(path.into());
        self
    }

    /// Rows per `INSERT` statement (default: 1000, fewer for wide rows).
    pub fn rows_per_statement(mut self, rows: usize) -> Self {
        self.rows_per_statement = Some(rows.max(1));
        self
    }

    /// The name progress is recorded under and `--sink NAME=URL` overrides (default: the table name).
    pub fn output_name(mut self, name: impl Into<String>) -> Self {
        self.output = Some(name.into());
        self
    }

    /// The output's name: the `output_name`, else the table name. Progress is recorded under it,
    /// and it is the `NAME` of `--sink NAME=URL`.
    pub fn name(&self) -> &str {
        self.output.as_deref().unwrap_or(&self.name)
    }

    /// Checks names and modes; the message says what to change.
    fn validate(&self) -> Result<(), String> {
        check_identifier(&self.name, true)?;
        if self.columns.is_empty() {
            return Err(format!(
                "table `{}` has no columns: add `.column(\"name\", SqlType::...)` for each record field",
                self.name
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for name in self
            .columns
            .iter()
            .map(|(n, _)| n)
            .chain(self.updated_time.iter())
        {
            check_identifier(name, false)?;
            if !seen.insert(name.to_ascii_lowercase()) {
                return Err(format!("column `{name}` is declared twice"));
            }
        }
        let is_column = |c: &String| self.columns.iter().any(|(n, _)| n == c);
        for k in &self.key {
            if !is_column(k) {
                return Err(format!(
                    "key column `{k}` is not one of the declared columns"
                ));
            }
        }
        for a in &self.accumulate {
            let numeric = self
                .columns
                .iter()
                .any(|(n, t)| n == a && matches!(t, SqlType::BigInt | SqlType::Double));
            if !numeric || self.key.contains(a) {
                return Err(format!(
                    "`accumulate` column `{a}` must be a declared BigInt or Double column outside the key"
                ));
            }
        }
        if !self.accumulate.is_empty() && self.key.is_empty() {
            return Err("`accumulate` needs a `key` to know which rows to add to".into());
        }
        Ok(())
    }
}

/// Table and column names: letters, digits and `_`, not starting with a digit (a table may be
/// `schema.table`). Anything else is refused rather than quoted, so a name can never carry SQL.
fn check_identifier(name: &str, dotted: bool) -> Result<(), String> {
    let parts: Vec<&str> = if dotted {
        name.split('.').collect()
    } else {
        vec![name]
    };
    let ok = parts.len() <= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 64
                && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !p.starts_with(|c: char| c.is_ascii_digit())
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid SQL name: use letters, digits and `_` (not starting with a digit)"
        ))
    }
}

/// Text that compares byte for byte on MySQL/MariaDB, whatever the server's or database's default.
const MYSQL_BINARY_TEXT: &str = "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin";

/// The database behind a URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite, for `sqlite:` URLs.
    Sqlite,
    /// MySQL or MariaDB, for `mysql:` and `mariadb:` URLs.
    MySql,
    /// PostgreSQL, for `postgres:` and `postgresql:` URLs.
    Postgres,
}

impl Dialect {
    /// The database a URL's scheme names. Any other scheme is an error, whose message shows the URL
    /// without its password.
    pub fn of(url: &str) -> Result<Dialect, String> {
        let scheme = url.split(':').next().unwrap_or_default();
        match scheme {
            "sqlite" => Ok(Dialect::Sqlite),
            "mysql" | "mariadb" => Ok(Dialect::MySql),
            "postgres" | "postgresql" => Ok(Dialect::Postgres),
            _ => Err(format!(
                "unsupported database URL `{}`: use sqlite://FILE, mysql://USER@HOST/DB or postgres://USER@HOST/DB",
                crate::secret::redact_url(url)
            )),
        }
    }

    fn placeholder(self, n: usize, out: &mut String) {
        match self {
            Dialect::Postgres => {
                let _ = write!(out, "${n}");
            }
            Dialect::Sqlite | Dialect::MySql => out.push('?'),
        }
    }

    fn timestamp_placeholder(self, n: usize, out: &mut String) {
        match self {
            Dialect::Postgres => {
                let _ = write!(out, "CAST(${n} AS TIMESTAMP)");
            }
            Dialect::Sqlite | Dialect::MySql => out.push('?'),
        }
    }

    fn column_type(self, name: &str, ty: SqlType) -> String {
        match (self, ty) {
            (Dialect::Sqlite, SqlType::Text(n)) => format!("TEXT CHECK (length({name}) <= {n})"),
            // The usual default collations ignore case and accents: `Hello` and `hello` would be
            // one key and an upsert would merge them. A binary one keeps distinct strings apart.
            (Dialect::MySql, SqlType::Text(n)) => format!("VARCHAR({n}) {MYSQL_BINARY_TEXT}"),
            (Dialect::Postgres, SqlType::Text(n)) => format!("VARCHAR({n})"),
            (_, SqlType::BigInt) => "BIGINT".into(),
            (Dialect::Sqlite, SqlType::Double) => "REAL".into(),
            (Dialect::MySql, SqlType::Double) => "DOUBLE".into(),
            (Dialect::Postgres, SqlType::Double) => "DOUBLE PRECISION".into(),
            (_, SqlType::Bool) => "BOOLEAN".into(),
        }
    }

    /// A query listing the unique keys of `table` (`[schema.]name`) as rows of (key, column), with
    /// the values to bind. The primary key counts: it is unique too.
    fn unique_keys_query(self, table: &str) -> (String, Vec<String>) {
        let (schema, name) = match table.split_once('.') {
            Some((schema, name)) => (Some(schema), name),
            None => (None, table),
        };
        match self {
            Dialect::MySql => {
                let schema_is = if schema.is_some() { "?" } else { "DATABASE()" };
                let sql = format!(
                    "SELECT CAST(INDEX_NAME AS CHAR), CAST(COLUMN_NAME AS CHAR) \
                     FROM information_schema.STATISTICS \
                     WHERE TABLE_SCHEMA = {schema_is} AND TABLE_NAME = ? AND NON_UNIQUE = 0"
                );
                let binds = schema.into_iter().chain([name]).map(str::to_string);
                (sql, binds.collect())
            }
            // Partial unique indexes do not count: an upsert's conflict target cannot use them.
            Dialect::Postgres => (
                "SELECT CAST(i.indexrelid AS TEXT), CAST(a.attname AS TEXT) FROM pg_index i \
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
                 WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indpred IS NULL"
                    .to_string(),
                vec![table.to_string()],
            ),
            // An INTEGER PRIMARY KEY is the rowid and has no index of its own: read it from the
            // table's columns.
            Dialect::Sqlite => (
                "SELECT il.name, ii.name FROM pragma_index_list(?1, ?2) AS il, \
                 pragma_index_info(il.name, ?2) AS ii WHERE il.\"unique\" = 1 AND il.partial = 0 \
                 UNION ALL SELECT 'primary key', name FROM pragma_table_info(?1, ?2) WHERE pk > 0"
                    .to_string(),
                vec![name.to_string(), schema.unwrap_or("main").to_string()],
            ),
        }
    }

    /// The statement that gives `table` the unique key an upsert by `key` needs.
    fn add_unique_key(self, table: &str, key: &[String]) -> String {
        let columns = key.join(", ");
        match self {
            Dialect::MySql => format!("ALTER TABLE {table} ADD UNIQUE KEY ({columns})"),
            Dialect::Postgres => format!("ALTER TABLE {table} ADD UNIQUE ({columns})"),
            Dialect::Sqlite => {
                let index = format!("{}_{}_key", table.replace('.', "_"), key.join("_"));
                let (schema, name) = match table.split_once('.') {
                    Some((schema, name)) => (format!("{schema}."), name),
                    None => (String::new(), table),
                };
                format!("CREATE UNIQUE INDEX {schema}{index} ON {name} ({columns})")
            }
        }
    }

    fn timestamp_type(self) -> &'static str {
        match self {
            Dialect::Sqlite => "TEXT",
            Dialect::MySql => "DATETIME(3)",
            Dialect::Postgres => "TIMESTAMP(3)",
        }
    }
}

/// The statements of one table, built once.
#[derive(Debug)]
struct Statements {
    dialect: Dialect,
    create_table: Option<String>,
    create_progress: String,
    ensure_progress: String,
    claim: String,
    /// Columns per row, the timestamp included.
    width: usize,
    rows_per_statement: usize,
    /// Row-count → the INSERT for that many rows (the full chunk and the last, shorter one).
    insert: Mutex<std::collections::HashMap<usize, String>>,
}

impl Statements {
    fn new(dialect: Dialect, table: &SqlTable) -> Statements {
        let width = table.columns.len() + usize::from(table.updated_time.is_some());
        let create_table = table.create.then(|| {
            let mut sql = format!("CREATE TABLE IF NOT EXISTS {} (", table.name);
            for (i, (name, ty)) in table.columns.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                let _ = write!(sql, "{name} {} NOT NULL", dialect.column_type(name, *ty));
            }
            if let Some(ts) = &table.updated_time {
                let _ = write!(sql, ", {ts} {}", dialect.timestamp_type());
            }
            if !table.key.is_empty() {
                let _ = write!(sql, ", PRIMARY KEY ({})", table.key.join(", "));
            }
            sql.push(')');
            sql
        });
        // Outputs `Totals` and `totals` must not share a progress row: one would skip the other's
        // batches.
        let name_type = match dialect {
            Dialect::MySql => format!("VARCHAR(190) {MYSQL_BINARY_TEXT}"),
            Dialect::Sqlite | Dialect::Postgres => "VARCHAR(190)".to_string(),
        };
        let create_progress = format!(
            "CREATE TABLE IF NOT EXISTS streamc_progress (pipeline {name_type} NOT NULL, \
             output_name {name_type} NOT NULL, part INTEGER NOT NULL, batch_ms BIGINT NOT NULL, \
             PRIMARY KEY (pipeline, output_name, part))"
        );
        let mut ensure_progress = match dialect {
            Dialect::Sqlite => "INSERT OR IGNORE INTO",
            Dialect::MySql => "INSERT IGNORE INTO",
            Dialect::Postgres => "INSERT INTO",
        }
        .to_string();
        ensure_progress
            .push_str(" streamc_progress (pipeline, output_name, part, batch_ms) VALUES (");
        for n in 1..=3 {
            dialect.placeholder(n, &mut ensure_progress);
            ensure_progress.push_str(", ");
        }
        ensure_progress.push_str("-1)");
        if dialect == Dialect::Postgres {
            ensure_progress.push_str(" ON CONFLICT DO NOTHING");
        }
        let mut claim = String::from("UPDATE streamc_progress SET batch_ms = ");
        dialect.placeholder(1, &mut claim);
        claim.push_str(" WHERE pipeline = ");
        dialect.placeholder(2, &mut claim);
        claim.push_str(" AND output_name = ");
        dialect.placeholder(3, &mut claim);
        claim.push_str(" AND part = ");
        dialect.placeholder(4, &mut claim);
        claim.push_str(" AND batch_ms < ");
        dialect.placeholder(5, &mut claim);
        // Stay under every database's bound on parameters per statement (SQLite's is the lowest).
        let rows_per_statement = table
            .rows_per_statement
            .unwrap_or(1000)
            .min((30_000 / width.max(1)).max(1));
        Statements {
            dialect,
            create_table,
            create_progress,
            ensure_progress,
            claim,
            width,
            rows_per_statement,
            insert: Mutex::new(Default::default()),
        }
    }

    /// `INSERT INTO t (...) VALUES (...), ... [upsert clause]` for `rows` rows.
    fn insert(&self, table: &SqlTable, rows: usize) -> String {
        let mut cache = self.insert.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sql) = cache.get(&rows) {
            return sql.clone();
        }
        let d = self.dialect;
        let names: Vec<&str> = table
            .columns
            .iter()
            .map(|(n, _)| n.as_str())
            .chain(table.updated_time.as_deref())
            .collect();
        let mut sql = format!("INSERT INTO {} ({}) VALUES ", table.name, names.join(", "));
        let mut n = 0;
        for r in 0..rows {
            sql.push_str(if r == 0 { "(" } else { ", (" });
            for c in 0..self.width {
                if c > 0 {
                    sql.push_str(", ");
                }
                n += 1;
                if c == table.columns.len() {
                    d.timestamp_placeholder(n, &mut sql);
                } else {
                    d.placeholder(n, &mut sql);
                }
            }
            sql.push(')');
        }
        if !table.key.is_empty() {
            let updates: Vec<String> = names
                .iter()
                .filter(|c| !table.key.iter().any(|k| k == *c))
                .map(|c| {
                    let add = table.accumulate.iter().any(|a| a == c);
                    match (d, add) {
                        (Dialect::MySql, false) => format!("{c} = VALUES({c})"),
                        (Dialect::MySql, true) => format!("{c} = {c} + VALUES({c})"),
                        (_, false) => format!("{c} = excluded.{c}"),
                        (_, true) => format!("{c} = {}.{c} + excluded.{c}", table.name),
                    }
                })
                .collect();
            match (d, updates.is_empty()) {
                (Dialect::MySql, true) => {
                    let _ = write!(sql, " ON DUPLICATE KEY UPDATE {0} = {0}", table.key[0]);
                }
                (Dialect::MySql, false) => {
                    let _ = write!(sql, " ON DUPLICATE KEY UPDATE {}", updates.join(", "));
                }
                (_, true) => {
                    let _ = write!(sql, " ON CONFLICT ({}) DO NOTHING", table.key.join(", "));
                }
                (_, false) => {
                    let _ = write!(
                        sql,
                        " ON CONFLICT ({}) DO UPDATE SET {}",
                        table.key.join(", "),
                        updates.join(", ")
                    );
                }
            }
        }
        cache.insert(rows, sql.clone());
        sql
    }
}

/// One row, converted and checked.
struct Row {
    values: Vec<SqlValue>,
}

impl fmt::Display for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(")?;
        for (i, v) in self.values.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{v}")?;
        }
        f.write_str(")")
    }
}

/// An open SQL sink: the table, its statements and a lazily connecting pool.
pub struct SqlSink {
    table: SqlTable,
    statements: Statements,
    pool: AnyPool,
    url: String,
    pipeline: String,
    /// Whether the tables exist; an async lock, so partitions wait for one creation instead of racing
    /// (PostgreSQL fails concurrent `CREATE TABLE IF NOT EXISTS` of one table).
    prepared: tokio::sync::Mutex<bool>,
    dead_letter: Option<DeadLetter>,
    /// An abort ends a write in flight.
    stop: crate::stop::StopSignal,
}

impl fmt::Debug for SqlSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlSink")
            .field("table", &self.table.name)
            .field("url", &crate::secret::redact_url(&self.url))
            .finish()
    }
}

impl SqlSink {
    /// Checks the table declaration and prepares a pool; nothing connects until the first batch.
    pub fn open(
        url: &str,
        table: SqlTable,
        settings: &SinkSettings,
        workers: usize,
    ) -> Result<SqlSink, SinkError> {
        table
            .validate()
            .map_err(|e| SinkError::Fatal(format!("table `{}`: {e}", table.name)))?;
        let dialect = Dialect::of(url).map_err(SinkError::Fatal)?;
        sqlx::any::install_default_drivers();
        let url = match dialect {
            // A missing database file is created, as a server database would already exist.
            Dialect::Sqlite if !url.contains('?') && !url.contains(":memory:") => {
                format!("{url}?mode=rwc")
            }
            _ => url.to_string(),
        };
        let connections = match dialect {
            // SQLite has one writer at a time; more connections would only wait for the lock.
            Dialect::Sqlite => 1,
            _ => workers.max(1) as u32 + 1,
        };
        let runtime = io_runtime()?;
        let pool = {
            let _guard = runtime.enter();
            AnyPoolOptions::new()
                .max_connections(connections)
                .min_connections(0)
                .idle_timeout(settings.idle_timeout)
                .acquire_timeout(Duration::from_secs(5))
                .connect_lazy(&url)
                .map_err(|e| {
                    SinkError::Fatal(format!(
                        "bad database URL `{}`: {e}",
                        crate::secret::redact_url(&url)
                    ))
                })?
        };
        Ok(SqlSink {
            statements: Statements::new(dialect, &table),
            dead_letter: table.dead_letter.clone().map(DeadLetter::file),
            table,
            pool,
            url,
            pipeline: settings.pipeline.clone(),
            stop: settings.stop.clone(),
            prepared: tokio::sync::Mutex::new(false),
        })
    }

    /// The database the sink's URL names, which decides the SQL it writes.
    pub fn dialect(&self) -> Dialect {
        self.statements.dialect
    }

    /// Writes one batch partition in one transaction, once. Returns whether it was written (`false`:
    /// the database already held it).
    fn write(&self, at: PartitionId, rows: &[Row], stats: &SinkStats) -> Result<bool, SinkError> {
        let attempt = async {
            self.prepare().await?;
            match self.write_rows(at, rows, false).await? {
                // A statement was refused: find which rows, one at a time.
                Written::Refused => self.write_rows(at, rows, true).await,
                done => Ok(done),
            }
        };
        let attempt = async {
            match attempt.await {
                // The pool retries a refused connection until its timeout and then says only
                // that it timed out: one direct attempt tells the operator why.
                Err(SinkError::Unavailable(reason)) if reason == NO_CONNECTION => {
                    Err(SinkError::Unavailable(self.why_no_connection().await))
                }
                other => other,
            }
        };
        let written = self
            .stop
            .block_on_unless_aborted(io_runtime()?, attempt)
            .ok_or_else(|| {
                SinkError::Unavailable("the app is stopping without finishing".into())
            })??;
        match written {
            Written::Committed { refused } => {
                let ok = (rows.len() - refused) as u64;
                stats.records.fetch_add(ok, Ordering::Relaxed);
                stats
                    .dead_lettered
                    .fetch_add(refused as u64, Ordering::Relaxed);
                Ok(true)
            }
            Written::Skipped => {
                stats.skipped.fetch_add(1, Ordering::Relaxed);
                Ok(false)
            }
            Written::Refused => Err(SinkError::Fatal(
                "rows were refused but none could be singled out".into(),
            )),
        }
    }

    /// What a direct connection attempt says, once the pool could not connect.
    async fn why_no_connection(&self) -> String {
        use sqlx::Connection as _;
        let attempt = sqlx::AnyConnection::connect(&self.url);
        match tokio::time::timeout(Duration::from_secs(5), attempt).await {
            Ok(Ok(connection)) => {
                let _ = connection.close().await;
                format!("{NO_CONNECTION} (a direct connection then succeeded)")
            }
            Ok(Err(e)) => format!("{NO_CONNECTION}: {e}"),
            Err(_) => format!("{NO_CONNECTION}: connecting takes longer than 5 s"),
        }
    }

    async fn prepare(&self) -> Result<(), SinkError> {
        let mut prepared = self.prepared.lock().await;
        if *prepared {
            return Ok(());
        }
        if let Some(create) = &self.statements.create_table {
            self.execute_alone(create).await?;
        }
        self.check_unique_key().await?;
        self.execute_alone(&self.statements.create_progress).await?;
        *prepared = true;
        Ok(())
    }

    /// An upsert needs a unique key on exactly its key columns. A table made elsewhere (the seed's
    /// `wordcount`, with only an auto-increment `id` as its key) may lack it, and then MySQL's
    /// `ON DUPLICATE KEY UPDATE` silently appends a row per write while PostgreSQL and SQLite refuse
    /// the statement with an obscure error: so refuse before writing anything, saying what to do.
    async fn check_unique_key(&self) -> Result<(), SinkError> {
        if self.table.key.is_empty() {
            return Ok(());
        }
        let dialect = self.statements.dialect;
        let (sql, binds) = dialect.unique_keys_query(&self.table.name);
        let mut args = AnyArguments::default();
        for value in binds {
            bind(&mut args, &SqlValue::Text(value))?;
        }
        let rows: Vec<(String, String)> = sqlx::query_as_with(AssertSqlSafe(sql), args)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| classify(e, None))?;
        let mut keys: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
            Default::default();
        for (key, column) in rows {
            keys.entry(key).or_default().insert(column.to_lowercase());
        }
        let wanted: std::collections::BTreeSet<String> =
            self.table.key.iter().map(|c| c.to_lowercase()).collect();
        if keys.values().any(|columns| *columns == wanted) {
            return Ok(());
        }
        let key = self.table.key.join(", ");
        let without = match dialect {
            Dialect::MySql => "MySQL would append a row on every write instead of updating one",
            Dialect::Postgres | Dialect::Sqlite => "the database refuses such upserts",
        };
        Err(SinkError::Fatal(format!(
            "table `{table}` has no unique key on ({key}), which upserts by `.key([...])` need \
             ({without}). Add one (after removing any duplicate rows): `{add}`; or write in append \
             mode, a `SqlTable` without `.key(...)`, which inserts a row per record",
            table = self.table.name,
            add = dialect.add_unique_key(&self.table.name, &self.table.key),
        )))
    }

    async fn execute_alone(&self, sql: &str) -> Result<(), SinkError> {
        sqlx::query(AssertSqlSafe(sql.to_string()))
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(|e| classify(e, None))
    }

    /// One transaction: claim the batch, write the rows (all at once, or `one_by_one` to find and set
    /// aside refused rows), commit.
    async fn write_rows(
        &self,
        at: PartitionId,
        rows: &[Row],
        one_by_one: bool,
    ) -> Result<Written, SinkError> {
        let name = self.table.name().to_string();
        let mut tx = self.pool.begin().await.map_err(|e| classify(e, None))?;
        let mut args = AnyArguments::default();
        bind(&mut args, &SqlValue::Text(self.pipeline.clone()))?;
        bind(&mut args, &SqlValue::Text(name.clone()))?;
        bind(&mut args, &SqlValue::Int(at.partition as i64))?;
        sqlx::query_with(AssertSqlSafe(self.statements.ensure_progress.clone()), args)
            .execute(&mut *tx)
            .await
            .map_err(|e| classify(e, None))?;
        let batch = at.batch.millis() as i64;
        let mut args = AnyArguments::default();
        bind(&mut args, &SqlValue::Int(batch))?;
        bind(&mut args, &SqlValue::Text(self.pipeline.clone()))?;
        bind(&mut args, &SqlValue::Text(name))?;
        bind(&mut args, &SqlValue::Int(at.partition as i64))?;
        bind(&mut args, &SqlValue::Int(batch))?;
        let claimed = sqlx::query_with(AssertSqlSafe(self.statements.claim.clone()), args)
            .execute(&mut *tx)
            .await
            .map_err(|e| classify(e, None))?
            .rows_affected();
        if claimed == 0 {
            let _ = tx.rollback().await;
            return Ok(Written::Skipped);
        }
        let stamp = self
            .table
            .updated_time
            .as_ref()
            .map(|_| SqlValue::Text(format_timestamp(at.batch.millis())));
        let mut refused: Vec<(String, String)> = Vec::new();
        if one_by_one {
            for row in rows {
                sqlx::query("SAVEPOINT streamc_row")
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| classify(e, None))?;
                match self
                    .insert(&mut tx, std::slice::from_ref(row), &stamp)
                    .await
                {
                    Ok(()) => {
                        sqlx::query("RELEASE SAVEPOINT streamc_row")
                            .execute(&mut *tx)
                            .await
                            .map_err(|e| classify(e, None))?;
                    }
                    Err(SinkError::Rejected { reason, .. }) => {
                        sqlx::query("ROLLBACK TO SAVEPOINT streamc_row")
                            .execute(&mut *tx)
                            .await
                            .map_err(|e| classify(e, None))?;
                        refused.push((row.to_string(), reason));
                    }
                    Err(other) => return Err(other),
                }
            }
        } else {
            for chunk in self.chunks(rows) {
                match self.insert(&mut tx, chunk, &stamp).await {
                    Ok(()) => {}
                    Err(SinkError::Rejected { .. }) => {
                        let _ = tx.rollback().await;
                        return Ok(Written::Refused);
                    }
                    Err(other) => return Err(other),
                }
            }
        }
        if let Some((record, reason)) = refused.first() {
            match &self.dead_letter {
                Some(dead_letter) => {
                    dead_letter.write(at, &refused).map_err(|e| {
                        SinkError::Unavailable(format!(
                            "cannot write the dead-letter file {}: {e}",
                            dead_letter.path().display()
                        ))
                    })?;
                    super::failpoint("sql.after_dead_letter");
                }
                None => {
                    let _ = tx.rollback().await;
                    return Err(SinkError::Rejected {
                        record: record.clone(),
                        reason: format!(
                            "{reason} ({} of {} rows refused; configure `.dead_letter(path)` to set them aside)",
                            refused.len(),
                            rows.len()
                        ),
                    });
                }
            }
        }
        super::failpoint("sql.before_commit");
        tx.commit().await.map_err(|e| classify(e, None))?;
        super::failpoint("sql.after_commit");
        Ok(Written::Committed {
            refused: refused.len(),
        })
    }

    /// Rows in statement-sized chunks; an upsert chunk never holds a key twice (PostgreSQL refuses a
    /// statement that updates one row twice), so a later duplicate starts a new chunk and wins.
    fn chunks<'r>(&self, rows: &'r [Row]) -> Vec<&'r [Row]> {
        let max = self.statements.rows_per_statement;
        if self.table.key.is_empty() {
            return rows.chunks(max).collect();
        }
        let key_at: Vec<usize> = self
            .table
            .key
            .iter()
            .filter_map(|k| self.table.columns.iter().position(|(n, _)| n == k))
            .collect();
        let mut chunks = Vec::new();
        let mut start = 0;
        // Hashes of the keys in the current statement: equal keys always collide, so a repeat is never
        // missed; a rare collision of different keys only starts a statement early.
        let mut keys = std::collections::HashSet::new();
        for (i, row) in rows.iter().enumerate() {
            let key = key_hash(row, &key_at);
            if i - start == max || !keys.insert(key) {
                chunks.push(&rows[start..i]);
                start = i;
                keys.clear();
                keys.insert(key);
            }
        }
        if start < rows.len() {
            chunks.push(&rows[start..]);
        }
        chunks
    }

    async fn insert(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        rows: &[Row],
        stamp: &Option<SqlValue>,
    ) -> Result<(), SinkError> {
        let sql = self.statements.insert(&self.table, rows.len());
        let mut args = AnyArguments::default();
        for row in rows {
            for value in &row.values {
                bind(&mut args, value).map_err(|e| match e {
                    SinkError::Rejected { reason, .. } => SinkError::Rejected {
                        record: row.to_string(),
                        reason,
                    },
                    other => other,
                })?;
            }
            if let Some(stamp) = stamp {
                bind(&mut args, stamp)?;
            }
        }
        let record = (rows.len() == 1).then(|| rows[0].to_string());
        sqlx::query_with(AssertSqlSafe(sql), args)
            .execute(&mut **tx)
            .await
            .map(|_| ())
            .map_err(|e| classify(e, record))
    }
}

impl super::OpenSink for SqlSink {}

/// A hash of a row's key columns, without allocating.
fn key_hash(row: &Row, key_at: &[usize]) -> u64 {
    use std::hash::{BuildHasher, Hash, Hasher};
    let mut h = foldhash::fast::FixedState::default().build_hasher();
    for &c in key_at {
        match row.values.get(c) {
            Some(SqlValue::Int(v)) => (0u8, v).hash(&mut h),
            Some(SqlValue::UInt(v)) => (1u8, v).hash(&mut h),
            Some(SqlValue::Float(v)) => (2u8, v.to_bits()).hash(&mut h),
            Some(SqlValue::Text(v)) => (3u8, v).hash(&mut h),
            Some(SqlValue::Bool(v)) => (4u8, v).hash(&mut h),
            None => 5u8.hash(&mut h),
        }
    }
    h.finish()
}

enum Written {
    Committed { refused: usize },
    Skipped,
    Refused,
}

fn bind(args: &mut AnyArguments, value: &SqlValue) -> Result<(), SinkError> {
    let added = match value {
        SqlValue::Int(v) => args.add(*v),
        SqlValue::UInt(v) => match i64::try_from(*v) {
            Ok(v) => args.add(v),
            Err(_) => {
                return Err(SinkError::Rejected {
                    record: String::new(),
                    reason: format!("{v} does not fit a BIGINT column"),
                })
            }
        },
        SqlValue::Float(v) => args.add(*v),
        SqlValue::Text(v) => args.add(v.clone()),
        SqlValue::Bool(v) => args.add(*v),
    };
    added.map_err(|e| SinkError::Fatal(format!("cannot bind {value}: {e}")))
}

/// Sorts a database error into retry, refuse or stop. `record` names the row when one statement wrote
/// one row.
fn classify(error: sqlx::Error, record: Option<String>) -> SinkError {
    match &error {
        sqlx::Error::Database(db) => {
            use sqlx::error::ErrorKind;
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            // MySQL's SQLSTATE is often the catch-all HY000, for a lock wait timeout as for a bad
            // string value: only its error number tells them apart.
            let mysql = db
                .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                .map(|e| e.number());
            let refused_kind = matches!(
                db.kind(),
                ErrorKind::UniqueViolation
                    | ErrorKind::ForeignKeyViolation
                    | ErrorKind::NotNullViolation
                    | ErrorKind::CheckViolation
            );
            // SQLSTATE classes (MySQL and PostgreSQL): 22 data exception, 23 integrity constraint;
            // 08 connection, 40 transaction rollback (deadlock, serialization), 53 resources,
            // 57 operator intervention (shutdown). SQLite reports its own numbers: 5 busy, 6 locked,
            // 10 I/O, 13 full.
            let class = if code.len() == 5 { &code[..2] } else { "" };
            let refused = refused_kind
                || class == "22"
                || class == "23"
                || mysql.is_some_and(mysql_code_is_bad_value);
            let transient = match mysql {
                Some(number) => mysql_code_is_transient(number),
                None => {
                    matches!(class, "08" | "40" | "53" | "57")
                        || matches!(code.as_str(), "5" | "6" | "10" | "13" | "261" | "517")
                }
            };
            let reason = match mysql {
                Some(number) => format!("{} (code {code}, MySQL error {number})", db.message()),
                None => format!("{} (code {code})", db.message()),
            };
            if refused {
                SinkError::Rejected {
                    record: record.unwrap_or_default(),
                    reason,
                }
            } else if transient {
                SinkError::Unavailable(reason)
            } else {
                SinkError::Fatal(reason)
            }
        }
        sqlx::Error::Tls(_) | sqlx::Error::Io(_) if is_certificate_failure(&error) => {
            SinkError::Fatal(format!(
                "TLS to the database failed: {error}. The server's certificate could not be \
                 verified: give the CA that signed it (PostgreSQL: sslrootcert=FILE with \
                 sslmode=verify-full; MySQL/MariaDB: ssl-ca=FILE with ssl-mode=VERIFY_IDENTITY) \
                 and connect by the name the certificate carries"
            ))
        }
        sqlx::Error::PoolTimedOut => SinkError::Unavailable(NO_CONNECTION.into()),
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => SinkError::Unavailable(error.to_string()),
        _ => SinkError::Fatal(error.to_string()),
    }
}

/// What the pool's timeout is reported as, until a direct attempt says why.
const NO_CONNECTION: &str = "no database connection within 5 s";

/// A failed certificate check, which no retry fixes (unlike a connection reset mid-handshake).
fn is_certificate_failure(error: &sqlx::Error) -> bool {
    let text = error.to_string().to_ascii_lowercase();
    [
        "certificate",
        "unknownissuer",
        "notvalidforname",
        "invalid peer",
    ]
    .iter()
    .any(|sign| text.contains(sign))
}

/// MySQL/MariaDB errors that pass once the server, the network or a competing transaction does, so
/// worth a retry: disk full (1021), out of memory (1037), too many connections (1040; 1203 for a
/// user), out of resources (1041), shutdown in progress (1053), table full (1114), network read or
/// write failed or timed out (1158 to 1161), lock wait timeout (1205), deadlock (1213), read-only
/// during a failover (1290, 1836), query interrupted (1317), connection killed (1927, MariaDB),
/// server gone away and connection lost (2006, 2013: client numbers, should a proxy relay them).
/// Any other error from the server would recur on a retry.
const MYSQL_TRANSIENT: &[u16] = &[
    1021, 1037, 1040, 1041, 1053, 1114, 1158, 1159, 1160, 1161, 1203, 1205, 1213, 1290, 1317, 1836,
    1927, 2006, 2013,
];

fn mysql_code_is_transient(number: u16) -> bool {
    MYSQL_TRANSIENT.contains(&number)
}

/// MySQL/MariaDB errors about a value of the row that come with the catch-all SQLSTATE HY000 (or
/// 01000) instead of a data-exception one: data truncated (1265), invalid character string (1300),
/// incorrect string value (1366, a character the column's character set cannot hold), wrong value
/// for type (1411).
fn mysql_code_is_bad_value(number: u16) -> bool {
    matches!(number, 1265 | 1300 | 1366 | 1411)
}

/// `YYYY-MM-DD HH:MM:SS.mmm` (UTC) for a batch time.
pub fn format_timestamp(millis: u64) -> String {
    let secs = millis / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        millis % 1000
    )
}

/// `save_to_sql(url, table)`: writes a batch's partitions in parallel, each in its own transaction,
/// retrying under the app's policy; a batch that cannot be written stops the app.
/// `save_to_sql(url, table)`: the table at a database URL.
pub struct SqlDestination {
    url: String,
    table: SqlTable,
}

impl SqlDestination {
    /// The table `table` of the database at `url` (which `--sink TABLE=URL` can replace).
    pub fn new(url: impl AsRef<str>, table: SqlTable) -> Self {
        Self {
            url: url.as_ref().to_string(),
            table,
        }
    }
}

/// Each batch partition in one transaction, exactly once.
impl<T: IntoRow + Send> super::BatchDestination<T> for SqlDestination {
    fn write_batch(self, env: &super::SinkEnv<'_>, parts: Partitions<T>) -> super::OutputResult {
        write_batch(env, &self.url, self.table, parts)
    }
}

fn write_batch<T: IntoRow + Send>(
    env: &super::SinkEnv<'_>,
    url: &str,
    table: SqlTable,
    parts: Partitions<T>,
) -> Result<(), OutputFailed> {
    let name = table.name().to_string();
    let settings = env.settings;
    let url = settings
        .url(&name, url)
        .and_then(|url| settings.refuse_properties(&name, "SQL").map(|()| url))
        .map_err(|e| OutputFailed::new(&name, e))?;
    let sink = env
        .sinks
        .get_or_open(&name, || SqlSink::open(&url, table, settings, env.workers))
        .map_err(|e| OutputFailed::new(&name, e))?;
    let width = sink.table.columns.len();
    let rows_of = |_: PartitionId, records: Vec<T>| -> Result<Vec<Row>, SinkError> {
        let mut rows = Vec::with_capacity(records.len());
        for record in records {
            let mut values = Vec::with_capacity(width);
            record.into_row(&mut values);
            let row = Row { values };
            if row.values.len() != width {
                return Err(SinkError::Fatal(format!(
                    "record {row} has {} fields but table `{}` declares {width} columns",
                    row.values.len(),
                    sink.table.name
                )));
            }
            rows.push(row);
        }
        Ok(rows)
    };
    super::write_partitions(env, &name, parts, rows_of, |at, rows, stats| {
        sink.write(at, rows, stats)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word_count() -> SqlTable {
        SqlTable::new("wordcount")
            .column("word", SqlType::Text(255))
            .column("count", SqlType::BigInt)
            .key(["word"])
            .updated_time("updated_time")
    }

    #[test]
    fn upserts_per_dialect() {
        let t = word_count();
        let pg = Statements::new(Dialect::Postgres, &t);
        assert_eq!(
            pg.insert(&t, 2),
            "INSERT INTO wordcount (word, count, updated_time) VALUES ($1, $2, CAST($3 AS TIMESTAMP)), \
             ($4, $5, CAST($6 AS TIMESTAMP)) ON CONFLICT (word) DO UPDATE SET count = excluded.count, \
             updated_time = excluded.updated_time"
        );
        let my = Statements::new(Dialect::MySql, &t.clone().accumulate(["count"]));
        assert_eq!(
            my.create_table.as_deref(),
            Some(
                "CREATE TABLE IF NOT EXISTS wordcount (word VARCHAR(255) CHARACTER SET utf8mb4 \
                 COLLATE utf8mb4_bin NOT NULL, count BIGINT NOT NULL, updated_time DATETIME(3), \
                 PRIMARY KEY (word))"
            )
        );
        assert_eq!(
            my.insert(&t.clone().accumulate(["count"]), 1),
            "INSERT INTO wordcount (word, count, updated_time) VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE \
             count = count + VALUES(count), updated_time = VALUES(updated_time)"
        );
        let append = SqlTable::new("clicks").column("user", SqlType::Text(50));
        let lite = Statements::new(Dialect::Sqlite, &append);
        assert_eq!(
            lite.insert(&append, 2),
            "INSERT INTO clicks (user) VALUES (?), (?)"
        );
        assert_eq!(
            lite.create_table.as_deref(),
            Some(
                "CREATE TABLE IF NOT EXISTS clicks (user TEXT CHECK (length(user) <= 50) NOT NULL)"
            )
        );
    }

    #[test]
    fn names_that_could_carry_sql_are_refused() {
        for bad in ["word count", "x;drop", "1abc", "a\"b", ""] {
            let t = SqlTable::new("t").column(bad, SqlType::BigInt);
            assert!(t.validate().is_err(), "{bad:?}");
        }
        assert!(SqlTable::new("t; DROP TABLE x")
            .column("a", SqlType::BigInt)
            .validate()
            .is_err());
        assert!(SqlTable::new("public.t")
            .column("a", SqlType::BigInt)
            .validate()
            .is_ok());
        let e = SqlTable::new("t")
            .column("a", SqlType::Text(5))
            .key(["a"])
            .accumulate(["a"])
            .validate()
            .unwrap_err();
        assert!(e.contains("BigInt or Double"), "{e}");
    }

    #[test]
    fn statements_stay_under_the_parameter_bound() {
        let mut t = SqlTable::new("wide");
        for i in 0..100 {
            t = t.column(format!("c{i}"), SqlType::BigInt);
        }
        assert_eq!(Statements::new(Dialect::Sqlite, &t).rows_per_statement, 300);
    }

    #[test]
    fn a_repeated_key_starts_a_new_statement() {
        let sink_table = word_count();
        let rows: Vec<Row> = ["a", "b", "a", "c"]
            .iter()
            .map(|w| Row {
                values: vec![SqlValue::Text(w.to_string()), SqlValue::Int(1)],
            })
            .collect();
        let settings = SinkSettings::default();
        let sink = SqlSink::open("sqlite::memory:", sink_table, &settings, 1).unwrap();
        let sizes: Vec<usize> = sink.chunks(&rows).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, vec![2, 2]);
    }

    #[test]
    fn timestamps_and_redaction() {
        assert_eq!(format_timestamp(0), "1970-01-01 00:00:00.000");
        assert_eq!(
            format_timestamp(1_795_795_200_123),
            "2026-11-27 16:00:00.123"
        );
        assert_eq!(format_timestamp(951_782_400_000), "2000-02-29 00:00:00.000");
        assert_eq!(
            crate::secret::redact_url("postgres://app:secret@db/test"),
            "postgres://app:***@db/test"
        );
        assert_eq!(
            crate::secret::redact_url("mysql://root@127.0.0.1/test"),
            "mysql://root@127.0.0.1/test"
        );
    }

    #[test]
    fn mysql_errors_are_retried_only_when_waiting_can_help() {
        // Lock wait timeout, deadlock, gone away, lost connection, too many connections, shutdown,
        // read-only, interrupted.
        for number in [1205, 1213, 2006, 2013, 1040, 1053, 1290, 1836, 1317] {
            assert!(mysql_code_is_transient(number), "{number}");
        }
        // Incorrect string value, data too long, duplicate key, no such table, access denied,
        // syntax error, packet too large: the same statement would fail again.
        for number in [1366, 1406, 1062, 1146, 1045, 1064, 1153] {
            assert!(!mysql_code_is_transient(number), "{number}");
        }
        assert!(mysql_code_is_bad_value(1366));
        assert!(!mysql_code_is_bad_value(1205));
    }

    #[test]
    fn errors_are_sorted_by_what_helps() {
        assert!(matches!(
            classify(sqlx::Error::PoolTimedOut, None),
            SinkError::Unavailable(_)
        ));
        assert!(matches!(
            classify(sqlx::Error::RowNotFound, None),
            SinkError::Fatal(_)
        ));
    }
}
