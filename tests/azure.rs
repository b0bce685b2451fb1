//! The storage layer on Azure Blob Storage's emulator (Azurite) on loopback: conditional creates and
//! replaces, listings, ranges, renames; checkpoints that resume, and a second app refused by the
//! lease. `cargo test` without Azurite skips this and says so; `.ci/run` runs it.

mod support;

use std::time::Duration;
use streamc::store::{open, Location, Put, StorageOptions, StoreError};

mod counter {
    use streamc::prelude::*;
    stream! {
        app counter { batch: 1s, checkpoint: "target/streamc-test/azure-counter", checkpoint_every: 1s }
        let words = queue_stream::<String>(vec![vec!["a".into(), "b".into()], vec!["a".into()], vec!["a".into()]]);
        let totals = words.map(|w| (w.clone(), 1u64)).update_state_by_key(|new: &[u64], old: Option<u64>| Some(old.unwrap_or(0) + new.len() as u64));
        totals.collect();
    }
}

#[test]
fn checkpoints_and_fencing_work_on_azure_blob_storage() {
    let Some(azure) = support::AzureServer::start("the Azure storage test") else {
        return;
    };
    // The only test of this binary: the environment is set once, before any client exists.
    for (key, value) in azure.env() {
        std::env::set_var(key, value);
    }
    let container = azure.container("streamc");
    let options = StorageOptions::default();
    let store = open(
        &Location::parse(&format!("{container}/prims")).unwrap(),
        &options,
    )
    .unwrap();
    let first = store.put("a", b"first".to_vec(), Put::Create).unwrap();
    assert!(
        matches!(
            store.put("a", b"again".to_vec(), Put::Create),
            Err(StoreError::Exists(_))
        ),
        "a second create is refused"
    );
    store
        .put(
            "a",
            b"second".to_vec(),
            Put::Replace(first.clone().unwrap()),
        )
        .unwrap();
    assert!(
        matches!(
            store.put("a", b"third".to_vec(), Put::Replace(first.unwrap())),
            Err(StoreError::Changed(_))
        ),
        "a replace at a stale version is refused"
    );
    store
        .put("dir/b", b"0123456789".to_vec(), Put::Overwrite)
        .unwrap();
    assert_eq!(store.get_range("dir/b", 3, 4).unwrap(), b"3456");
    let names: Vec<String> = store
        .list("")
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, vec!["a".to_string()]);
    store.rename("a", "c").unwrap();
    assert_eq!(store.get("c").unwrap().bytes, b"second");
    assert_eq!(store.remove_all("dir").unwrap(), 1);

    let location = Location::parse(&format!("{container}/counter")).unwrap();
    let at = |c: &mut streamc::AppConfig| {
        c.checkpoint_dir = Some(location.clone());
        c.storage.lease = Duration::from_secs(1);
    };
    let mut first = counter::counter::app().configure(at).test_driver().unwrap();
    first.run_batches(2);
    // A second app on the same location while the first holds it is refused by the lease.
    let refused = counter::counter::app().configure(at).test_driver().err();
    assert!(
        matches!(&refused, Some(streamc::RunError::Checkpoint(m)) if m.contains("in use by another running app")),
        "{refused:?}"
    );
    drop(first);
    let mut resumed = counter::counter::app().configure(at).test_driver().unwrap();
    resumed.run_batch();
    let (time, totals) = resumed
        .take::<(String, u64)>("totals")
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(
        time.millis(),
        3000,
        "resumed after the checkpoint of batch 2"
    );
    let mut totals = totals;
    totals.sort();
    assert_eq!(totals, vec![("a".to_string(), 3), ("b".to_string(), 1)]);
}
