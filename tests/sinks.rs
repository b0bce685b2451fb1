//! File output: `save_as_text_files` writes one directory per batch in Spark's layout, atomically.

use std::path::Path;
use streamc::prelude::*;

fn batches() -> Vec<Vec<String>> {
    vec![vec!["a b a".into(), "c".into()], vec![], vec!["b".into()]]
}

fn prefix() -> String {
    std::env::temp_dir()
        .join(format!("streamc-sinks-{}", std::process::id()))
        .join("counts")
        .to_string_lossy()
        .into_owned()
}

stream! {
    app saved { batch: 1s, workers: 2 }
    let lines = queue_stream::<String>(crate::batches());
    let counts = lines.flat_map(|l| l.split(' ')).map(|w| (w.to_string(), 1u64)).reduce_by_key(|a, b| a + b);
    counts.save_as_text_files(crate::prefix(), "txt");
}

fn lines_in(dir: &Path) -> Vec<String> {
    let mut parts: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    parts.sort();
    assert!(
        parts.iter().all(|p| p
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("part-")),
        "{parts:?}"
    );
    let mut lines: Vec<String> = parts
        .iter()
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    lines.sort();
    lines
}

#[test]
fn save_as_text_files_writes_one_directory_per_batch_in_sparks_layout() {
    let root = Path::new(&prefix()).parent().unwrap().to_path_buf();
    let _ = std::fs::remove_dir_all(&root);
    let mut driver = saved::app().test_driver().unwrap();
    let infos = driver.run_batches(3);
    assert!(infos.iter().all(|i| i.failure.is_none()), "{infos:?}");
    let mut dirs: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    assert_eq!(
        dirs,
        vec!["counts-1000.txt", "counts-2000.txt", "counts-3000.txt"],
        "no temporary directory is left behind"
    );
    assert_eq!(
        lines_in(&root.join("counts-1000.txt")),
        vec!["(a,2)", "(b,1)", "(c,1)"]
    );
    assert_eq!(
        lines_in(&root.join("counts-2000.txt")),
        Vec::<String>::new(),
        "an empty batch still gets its directory"
    );
    assert_eq!(lines_in(&root.join("counts-3000.txt")), vec!["(b,1)"]);
    // A batch written again (a replay after a crash) replaces its directory with the same content.
    streamc::output::write_batch_dir(&root.join("counts-3000.txt"), &[vec![("b", 1u64)]]).unwrap();
    assert_eq!(lines_in(&root.join("counts-3000.txt")), vec!["(b,1)"]);
    std::fs::remove_dir_all(&root).ok();
}

fn unwritable_prefix() -> String {
    let file = std::env::temp_dir().join(format!("streamc-sinks-file-{}", std::process::id()));
    std::fs::write(&file, "a file, not a directory").unwrap();
    file.join("counts").to_string_lossy().into_owned()
}

stream! {
    app unwritable { batch: 1s, workers: 1 }
    let lines = queue_stream::<String>(crate::batches());
    lines.map(|l| l.clone()).save_as_text_files(crate::unwritable_prefix());
}

#[test]
fn an_unwritable_destination_fails_the_batch_with_the_reason() {
    let mut driver = unwritable::app().test_driver().unwrap();
    let info = driver.run_batch();
    let failure = info.failure.expect("the batch must fail");
    assert!(
        failure.contains("save_as_text_files: cannot write") && failure.contains("counts-1000"),
        "{failure}"
    );
}
