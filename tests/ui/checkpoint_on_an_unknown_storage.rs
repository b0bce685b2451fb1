use streamc::prelude::*;

stream! {
    app hdfs_counts { batch: 1s, checkpoint: "hdfs://namenode:8020/checkpoints/hdfs_counts" }
    let lines = socket_text_stream("localhost", 9999);
    lines.print();
}

fn main() {}
