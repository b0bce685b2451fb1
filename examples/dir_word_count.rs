//! The seed's HDFSWordCount on a local directory: every batch counts the words of the files that appeared
//! in `wordcount_dir` since the previous batch. Move files in atomically (write them elsewhere, then `mv`);
//! names starting with `.` or `_` are ignored. The checkpoint remembers which files were processed, so a
//! restarted app neither skips nor repeats a file.
//!
//!     mkdir -p wordcount_dir
//!     cargo run --release --example dir_word_count
//!     # in another terminal:
//!     echo "hello world hello" > /tmp/words.txt && mv /tmp/words.txt wordcount_dir/
//!
//! `--source lines=/some/other/dir` reads another directory.

use streamc::prelude::*;

stream! {
    app dir_word_count { batch: 1s, workers: 2, checkpoint: "checkpoints/dir_word_count" }

    let lines = text_file_stream("wordcount_dir");
    let counts = lines
        .flat_map(|line: &str| line.split(' '))
        .map(|word| (word.to_string(), 1u64))
        .reduce_by_key(|a, b| a + b);
    counts.print();
}

fn main() -> std::process::ExitCode {
    dir_word_count::app().main()
}
