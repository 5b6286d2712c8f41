//! End-to-end attest benchmarks (not a test: numbers go to docs/performance.md).
//!
//! ```text
//! cargo bench --bench attest                  # every scenario
//! cargo bench --bench attest -- large         # one scenario: large | large-small | commits | verify
//! ```
//!
//! Each scenario runs in its own child process so that its peak RSS (VmHWM) is its own.
//! Data is generated once under `target/bench-data/` (or `MAKOTO_BENCH_DIR`).
//!
//! - `large`: 4 files of 256 MiB (1 GiB) added by 4 commits. Attest throughput (a whole run
//!   into a fresh warehouse: tables created, files hashed, statements signed, rows written) is
//!   compared with single-thread SHA-256 of the same bytes (read in 8 MiB chunks) measured in
//!   the same process, both from the page cache; best of 3 each. `hash_stage_MBps` is the
//!   hashing stage alone (`FileHasher::hash_all` over the same files).
//! - `large-small`: the same with 4 files of 64 MiB, to show peak RSS does not follow file size.
//! - `commits`: 10,000 commits each adding a 1 KiB file (every tenth also removes one);
//!   commits attested per second, then the time to attest 10 more commits on top.
//! - `verify`: `makoto verify` of that table, log-only and deep (attested first, untimed).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use makoto_core::keys::{Signer, SigningKeyPair};
use makoto_delta::{
    AttestOptions, AttestationStore, Attestor, Location, SourceTable, StorageOptions,
};
use sha2::{Digest, Sha256};

fn data_dir() -> PathBuf {
    std::env::var_os("MAKOTO_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data"))
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn prepare(name: &str, make: impl FnOnce(&Path) -> anyhow::Result<()>) -> PathBuf {
    let dir = data_dir().join(name);
    let done = dir.join(".complete");
    if !done.exists() {
        let _ = std::fs::remove_dir_all(&dir);
        make(&dir).unwrap();
        std::fs::write(&done, "").unwrap();
    }
    dir
}

/// One attest run of `table` into `warehouse`: (seconds, bytes hashed, versions attested).
fn attest_into(
    rt: &tokio::runtime::Runtime,
    table: &Path,
    warehouse: &Path,
    signer: &Arc<dyn Signer>,
) -> (f64, u64, usize) {
    let storage = StorageOptions::default();
    rt.block_on(async {
        let source = SourceTable::open(
            Location::existing(table.to_str().unwrap()).unwrap(),
            &storage,
        )
        .unwrap();
        let store = AttestationStore::create(
            Location::create(warehouse.to_str().unwrap()).unwrap(),
            storage,
        )
        .await
        .unwrap();
        let start = Instant::now();
        let s = Attestor::new(
            source,
            store,
            Some(Arc::clone(signer)),
            AttestOptions::default(),
        )
        .run()
        .await
        .unwrap();
        (
            start.elapsed().as_secs_f64(),
            s.bytes_hashed,
            s.attested.len(),
        )
    })
}

fn sha256_single_thread(files: &[PathBuf]) -> (f64, u64) {
    let start = Instant::now();
    let mut buf = vec![0u8; 8 << 20];
    let mut total = 0u64;
    for f in files {
        let mut h = Sha256::new();
        let mut file = std::fs::File::open(f).unwrap();
        loop {
            let n = file.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            total += n as u64;
        }
        std::hint::black_box(h.finalize());
    }
    (start.elapsed().as_secs_f64(), total)
}

fn large(name: &str, files: usize, size: u64) -> serde_json::Value {
    let dir = prepare(name, |d| {
        makoto_testkit::synthetic::large_files_table(d, files, size)
    });
    let paths: Vec<PathBuf> = (0..files)
        .map(|i| dir.join(format!("part-{i:05}.parquet")))
        .collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let key: Arc<dyn Signer> = Arc::new(SigningKeyPair::from_seed(&[7; 32]));
    sha256_single_thread(&paths); // warm the page cache
    let mut base = f64::MAX;
    let mut att = f64::MAX;
    let mut bytes = 0;
    for _ in 0..3 {
        let (t, b) = sha256_single_thread(&paths);
        base = base.min(t);
        bytes = b;
        let wh = tempfile::tempdir().unwrap();
        let (t, hashed, _) = attest_into(&rt, &dir, wh.path(), &key);
        assert_eq!(hashed, bytes);
        att = att.min(t);
    }
    // The hashing stage alone, through the same object store, for the breakdown.
    let mut hash_only = f64::MAX;
    for _ in 0..3 {
        let store = makoto_delta::Location::existing(dir.to_str().unwrap())
            .unwrap()
            .object_store(&StorageOptions::default())
            .unwrap();
        let hasher =
            makoto_delta::hashing::FileHasher::new(store, AttestOptions::default().parallelism);
        let reqs: Vec<_> = (0..files)
            .map(|i| makoto_delta::hashing::HashRequest {
                path: format!("part-{i:05}.parquet"),
                expected_size: Some(size),
            })
            .collect();
        let start = Instant::now();
        let r = rt.block_on(hasher.hash_all(reqs, Arc::new(|_| {})));
        hash_only = hash_only.min(start.elapsed().as_secs_f64());
        assert!(r.values().all(|h| h.is_ok()));
    }
    let mb = bytes as f64 / 1e6;
    serde_json::json!({
        "scenario": name,
        "files": files,
        "bytes": bytes,
        "sha256_single_thread_MBps": (mb / base).round(),
        "attest_MBps": (mb / att).round(),
        "speedup": ((base / att) * 100.0).round() / 100.0,
        "attest_seconds": (att * 1000.0).round() / 1000.0,
        "hash_stage_MBps": (mb / hash_only).round(),
        "peak_rss_MiB": peak_rss_mib().round(),
    })
}

fn commits() -> serde_json::Value {
    const N: u64 = 10_000;
    let dir = prepare("commits-10000", |d| {
        makoto_testkit::synthetic::many_commits_table(d, N, 1024)
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let key: Arc<dyn Signer> = Arc::new(SigningKeyPair::from_seed(&[7; 32]));
    // Attest a copy (the incremental step below adds commits to it).
    let work = tempfile::tempdir().unwrap();
    let table = work.path().join("t");
    makoto_testkit::copy_dir(&dir, &table).unwrap();
    let wh = work.path().join("wh");
    let (t, _, n) = attest_into(&rt, &table, &wh, &key);
    assert_eq!(n as u64, N + 1);

    // Incremental: 10 more commits attested on top of the 10,001.
    for v in N + 1..=N + 10 {
        let name = format!("extra-{v}.parquet");
        std::fs::write(table.join(&name), vec![1u8; 1024]).unwrap();
        std::fs::write(
            table.join(format!("_delta_log/{v:020}.json")),
            format!(
                "{{\"commitInfo\":{{\"timestamp\":{v},\"operation\":\"WRITE\"}}}}\n{{\"add\":{{\"path\":\"{name}\",\"partitionValues\":{{}},\"size\":1024,\"modificationTime\":{v},\"dataChange\":true}}}}\n"
            ),
        )
        .unwrap();
    }
    let (inc, _, m) = attest_into(&rt, &table, &wh, &key);
    assert_eq!(m, 10);
    serde_json::json!({
        "scenario": "commits",
        "commits": N + 1,
        "seconds": (t * 1000.0).round() / 1000.0,
        "commits_per_second": (n as f64 / t).round(),
        "incremental_10_commits_ms": (inc * 1000.0).round(),
        "peak_rss_MiB": peak_rss_mib().round(),
    })
}

/// `makoto verify` (log-only and deep) of the 10,001-commit table: best of 3 each.
fn verify() -> serde_json::Value {
    const N: u64 = 10_000;
    let dir = prepare("commits-10000", |d| {
        makoto_testkit::synthetic::many_commits_table(d, N, 1024)
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let key = Arc::new(SigningKeyPair::from_seed(&[7; 32]));
    let signer: Arc<dyn Signer> = Arc::clone(&key) as Arc<dyn Signer>;
    let work = tempfile::tempdir().unwrap();
    let wh = work.path().join("wh");
    attest_into(&rt, &dir, &wh, &signer);
    let trust = makoto_core::verify::TrustedKeys::new(vec![key.public_key().clone()]);
    let run = |mode: makoto_delta::VerifyMode| {
        rt.block_on(async {
            let storage = StorageOptions::default();
            let source =
                SourceTable::open(Location::existing(dir.to_str().unwrap()).unwrap(), &storage)
                    .unwrap();
            let store = AttestationStore::open_existing(
                Location::existing(wh.to_str().unwrap()).unwrap(),
                storage,
            )
            .await
            .unwrap();
            let start = Instant::now();
            let r = makoto_delta::Verifier::new(
                &source,
                &store,
                &trust,
                makoto_delta::VerifyOptions {
                    mode,
                    ..Default::default()
                },
            )
            .run()
            .await
            .unwrap();
            assert!(r.verified, "{:?}", r.findings);
            start.elapsed().as_secs_f64()
        })
    };
    let best = |mode| (0..3).map(|_| run(mode)).fold(f64::MAX, f64::min);
    let log_only = best(makoto_delta::VerifyMode::LogOnly);
    let deep = best(makoto_delta::VerifyMode::Deep);
    serde_json::json!({
        "scenario": "verify",
        "commits": N + 1,
        "log_only_seconds": (log_only * 1000.0).round() / 1000.0,
        "deep_seconds": (deep * 1000.0).round() / 1000.0,
        "peak_rss_MiB": peak_rss_mib().round(),
    })
}

fn run_scenario(name: &str) -> serde_json::Value {
    match name {
        "large" => large("large", 4, 256 << 20),
        "large-small" => large("large-small", 4, 64 << 20),
        "commits" => commits(),
        "verify" => verify(),
        other => panic!("unknown scenario {other}"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if let Some(pos) = args.iter().position(|a| a == "--child") {
        let name = &args[pos + 1];
        println!("{}", run_scenario(name));
        return;
    }
    let all = ["large", "large-small", "commits", "verify"];
    let chosen: Vec<&str> = all
        .iter()
        .copied()
        .filter(|s| args.is_empty() || args.iter().any(|a| a == s))
        .collect();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "attest benchmarks ({cores} cores, data in {})",
        data_dir().display()
    );
    for s in chosen {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--child", s])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{s}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
}
