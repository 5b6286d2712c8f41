//! Micro-benchmarks of the pure parts (criterion): state-tree updates, commit parsing and
//! DSSE signing.
//!
//! ```text
//! cargo bench --bench core
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use makoto_core::Sha256Digest;
use makoto_core::delta::Commit;
use makoto_core::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE};
use makoto_core::keys::SigningKeyPair;
use makoto_core::state::{FileEntry, StateTree};

fn entry(i: u64) -> FileEntry {
    FileEntry::new(
        format!(
            "date=2026-11-{:02}/part-{i:08}-c000.snappy.parquet",
            i % 28 + 1
        ),
        1_000_000 + i,
        Sha256Digest::of(&i.to_le_bytes()),
        None,
    )
}

fn state_tree(c: &mut Criterion) {
    c.bench_function("state: insert+remove one file in a 100k-file tree", |b| {
        let mut t = StateTree::from_entries((0..100_000).map(entry)).unwrap();
        let mut i = 100_000u64;
        b.iter(|| {
            t.insert(entry(i)).unwrap();
            t.remove(&entry(i - 100_000).key()).unwrap();
            i += 1;
        })
    });
    c.bench_function("state: build a 10k-file tree", |b| {
        b.iter_batched(
            || (0..10_000).map(entry).collect::<Vec<_>>(),
            |v| StateTree::from_entries(v).unwrap(),
            BatchSize::LargeInput,
        )
    });
}

fn commit_parse(c: &mut Criterion) {
    let mut text = String::from(
        r#"{"commitInfo":{"timestamp":1700000000000,"operation":"WRITE","engineInfo":"Apache-Spark/3.5.0 Delta-Lake/3.0.0"}}"#,
    );
    text.push('\n');
    for i in 0..100 {
        text.push_str(&format!(
            r#"{{"add":{{"path":"part-{i:05}.parquet","partitionValues":{{}},"size":1234,"modificationTime":1,"dataChange":true,"stats":"{{\"numRecords\":10,\"minValues\":{{\"a\":1}},\"maxValues\":{{\"a\":9}},\"nullCount\":{{\"a\":0}}}}"}}}}"#
        ));
        text.push('\n');
    }
    c.bench_function("commit: parse + digest 100 adds", |b| {
        b.iter(|| Commit::parse(1, text.as_bytes()).unwrap())
    });
}

fn sign(c: &mut Criterion) {
    let key = SigningKeyPair::from_seed(&[1; 32]);
    let payload = vec![b'x'; 3000];
    c.bench_function("dsse: sign a 3 KB statement", |b| {
        b.iter(|| Envelope::sign(IN_TOTO_PAYLOAD_TYPE, payload.clone(), &key).unwrap())
    });
}

criterion_group!(benches, state_tree, commit_parse, sign);
criterion_main!(benches);
