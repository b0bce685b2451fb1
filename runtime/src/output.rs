//! How records look when printed: Spark's format (`(hello,3)`, `Some(1)`, `None`), not Rust's `Debug`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::rc::Rc;
use std::sync::Arc;

/// A record that `print` can show. Implemented for the standard types; implement it (usually through
/// `Display`) for your own record types.
pub trait Show {
    /// Appends the record to `out`, in Spark's format.
    fn show(&self, out: &mut String);

    /// The record as `print` shows it, in a new `String`.
    fn to_shown(&self) -> String {
        let mut s = String::new();
        self.show(&mut s);
        s
    }
}

macro_rules! show_display {
    ($($t:ty),*) => {$(
        impl Show for $t {
            fn show(&self, out: &mut String) {
                let _ = write!(out, "{self}");
            }
        }
    )*};
}

show_display!(
    u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64, bool, char, str,
    String
);
show_display!(crate::Time);

impl<T: Show + ?Sized> Show for &T {
    fn show(&self, out: &mut String) {
        (**self).show(out)
    }
}

impl<T: Show + ?Sized> Show for Box<T> {
    fn show(&self, out: &mut String) {
        (**self).show(out)
    }
}

impl<T: Show + ?Sized> Show for Arc<T> {
    fn show(&self, out: &mut String) {
        (**self).show(out)
    }
}

impl<T: Show + ?Sized> Show for Rc<T> {
    fn show(&self, out: &mut String) {
        (**self).show(out)
    }
}

impl<T: Show> Show for Option<T> {
    fn show(&self, out: &mut String) {
        match self {
            Some(v) => {
                out.push_str("Some(");
                v.show(out);
                out.push(')');
            }
            None => out.push_str("None"),
        }
    }
}

fn show_seq<'a, T: Show + 'a>(
    items: impl Iterator<Item = &'a T>,
    open: &str,
    close: &str,
    out: &mut String,
) {
    out.push_str(open);
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        item.show(out);
    }
    out.push_str(close);
}

impl<T: Show> Show for Vec<T> {
    fn show(&self, out: &mut String) {
        show_seq(self.iter(), "[", "]", out)
    }
}

impl<T: Show> Show for [T] {
    fn show(&self, out: &mut String) {
        show_seq(self.iter(), "[", "]", out)
    }
}

impl<K: Show, V: Show, S> Show for HashMap<K, V, S> {
    fn show(&self, out: &mut String) {
        show_map(self.iter(), out)
    }
}

impl<K: Show, V: Show> Show for BTreeMap<K, V> {
    fn show(&self, out: &mut String) {
        show_map(self.iter(), out)
    }
}

fn show_map<'a, K: Show + 'a, V: Show + 'a>(
    entries: impl Iterator<Item = (&'a K, &'a V)>,
    out: &mut String,
) {
    out.push('{');
    for (i, (k, v)) in entries.enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        k.show(out);
        out.push_str(" -> ");
        v.show(out);
    }
    out.push('}');
}

impl Show for () {
    fn show(&self, out: &mut String) {
        out.push_str("()")
    }
}

macro_rules! show_tuple {
    ($first:ident $($rest:ident)*) => {
        impl<$first: Show, $($rest: Show),*> Show for ($first, $($rest,)*) {
            #[allow(non_snake_case)]
            fn show(&self, out: &mut String) {
                let ($first, $($rest,)*) = self;
                out.push('(');
                $first.show(out);
                $(out.push(','); $rest.show(out);)*
                out.push(')');
            }
        }
    };
}

show_tuple!(A);
show_tuple!(A B);
show_tuple!(A B C);
show_tuple!(A B C D);
show_tuple!(A B C D E);
show_tuple!(A B C D E F);
show_tuple!(A B C D E F G);
show_tuple!(A B C D E F G H);

/// Writes partitions as `part-NNNNN` files of the directory or object store prefix `dir`
/// ([`write_batch_dir`] locally; on a store every part is one object, then an empty `_SUCCESS`
/// says the batch is complete). Written again after a crash, the same names get the same content.
pub fn write_batch_at<T: Show>(
    dir: &str,
    parts: &[Vec<T>],
    storage: &crate::store::StorageOptions,
) -> Result<(), BatchWriteError> {
    use crate::store::{Location, Put};
    let unavailable = |e: String| BatchWriteError::Unavailable(format!("cannot write {dir}: {e}"));
    let location = Location::parse(dir).map_err(BatchWriteError::BadLocation)?;
    let Some(path) = location.local_path() else {
        let store = crate::store::open(&location, storage).map_err(BatchWriteError::BadLocation)?;
        for (i, part) in parts.iter().enumerate() {
            let mut text = String::new();
            for record in part {
                record.show(&mut text);
                text.push('\n');
            }
            store
                .put(&format!("part-{i:05}"), text.into_bytes(), Put::Overwrite)
                .map_err(|e| unavailable(e.to_string()))?;
        }
        return store
            .put("_SUCCESS", Vec::new(), Put::Overwrite)
            .map(|_| ())
            .map_err(|e| unavailable(e.to_string()));
    };
    write_batch_dir(path, parts).map_err(|e| unavailable(e.to_string()))
}

/// Why a batch's files were not written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchWriteError {
    /// The location cannot be used at all (a scheme this build does not know): retrying is useless.
    BadLocation(String),
    /// The disk or the store failed: worth retrying.
    Unavailable(String),
}

/// Writes partitions as `dir/part-NNNNN` text files, atomically: into a temporary sibling directory,
/// fsynced, then renamed over `dir` (an earlier copy of the same batch is replaced).
pub fn write_batch_dir<T: Show>(dir: &std::path::Path, parts: &[Vec<T>]) -> std::io::Result<()> {
    use std::io::Write as _;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(parent)?;
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    for (i, part) in parts.iter().enumerate() {
        let mut text = String::new();
        for record in part {
            record.show(&mut text);
            text.push('\n');
        }
        let mut file = std::fs::File::create(tmp.join(format!("part-{i:05}")))?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
    }
    // A replay's copy replaces the earlier one: moved aside rather than deleted first, so the batch's
    // directory is missing only between two renames, never while a whole copy is being removed.
    let old = parent.join(format!(".{name}.old-{}", std::process::id()));
    let replacing = dir.exists();
    if replacing {
        let _ = std::fs::remove_dir_all(&old);
        std::fs::rename(dir, &old)?;
    }
    std::fs::rename(&tmp, dir)?;
    std::fs::File::open(parent)?.sync_all()?;
    if replacing {
        std::fs::remove_dir_all(&old)?;
    }
    Ok(())
}

/// Spark's `print` block: a dashed line, `Time: <ms> ms`, a dashed line, the first `n` records, `...` if
/// there are more, and a blank line.
pub fn format_print<'a, T: Show + 'a>(
    time: crate::Time,
    records: impl Iterator<Item = &'a T>,
    n: usize,
) -> String {
    const RULE: &str = "-------------------------------------------";
    let mut out = format!("{RULE}\nTime: {time}\n{RULE}\n");
    let mut records = records.peekable();
    for record in records.by_ref().take(n) {
        record.show(&mut out);
        out.push('\n');
    }
    if records.peek().is_some() {
        out.push_str("...\n");
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Time;

    #[test]
    fn tuples_and_options_look_like_spark() {
        assert_eq!(("hello", 3u64).to_shown(), "(hello,3)");
        assert_eq!(
            ("u1".to_string(), ("click", Some(true))).to_shown(),
            "(u1,(click,Some(true)))"
        );
        assert_eq!(Option::<i32>::None.to_shown(), "None");
        assert_eq!(vec![1, 2].to_shown(), "[1, 2]");
    }

    #[test]
    fn print_block_matches_spark() {
        let records = [("a", 1), ("b", 2), ("c", 3)];
        let text = format_print(Time(1548490585000), records.iter(), 2);
        assert_eq!(
            text,
            "-------------------------------------------\nTime: 1548490585000 ms\n\
             -------------------------------------------\n(a,1)\n(b,2)\n...\n\n"
        );
        let empty: Vec<(u8, u8)> = Vec::new();
        assert!(format_print(Time(1000), empty.iter(), 10).ends_with("-\n\n"));
    }
}
