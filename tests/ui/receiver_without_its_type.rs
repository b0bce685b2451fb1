use streamc::prelude::*;

stream! {
    app custom { batch: 1s }
    let readings = receiver_stream(make_receiver());
    readings.print();
}

fn main() {}
