use streamc::prelude::*;

// Every error of the pipeline at once, none of them cascading: `counts` is built on the failed
// `words`, and `main` uses the app module, which still exists.
stream! {
    app several { batch: 1s }
    let lines = socket_text_stream("localhost", 9999);
    let words = lines.flat_mapp(|line: &str| line.split(' '));
    let counts = words.map(|w| (w.to_string(), 1u64)).reduce_by_key(|a, b| a + b);
    let lines = socket_text_stream("localhost", 9998);
    counts.print();
    let sizes = lines.map(|line: &str| line.len() as u64).window(5s, 10s);
    sizes.print();
}

fn main() -> std::process::ExitCode {
    several::app().main()
}
