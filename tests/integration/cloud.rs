//! Azure Blob Storage and Google Cloud Storage, each on its emulator on 127.0.0.1 (Azurite from
//! `scripts/azurite-server`, fake-gcs-server from `scripts/gcs-server`): a table written there by
//! delta-rs and one by Python `deltalake`, attested into a warehouse on the same store through
//! the `makoto` binary with the credential variables each cloud's users already set, verified,
//! tampered with (a data file, a commit) and caught; a second run attests nothing; three runs
//! at once attest every version exactly once (the store's conditional create at work); commands
//! that only read create nothing.
//!
//! Without an emulator a test prints why and returns, unless `MAKOTO_REQUIRE_AZURE=1` /
//! `MAKOTO_REQUIRE_GCS=1` (CI), where it fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use deltalake::logstore::object_store;
use deltalake::protocol::SaveMode;
use futures::TryStreamExt;
use makoto_delta::{AttestationStore, Location, StorageOptions};
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::Value;

use crate::support::*;

#[derive(Clone, Copy, Debug)]
enum Cloud {
    Azure,
    Gcs,
}

impl Cloud {
    fn script(self) -> &'static str {
        match self {
            Cloud::Azure => "scripts/azurite-server",
            Cloud::Gcs => "scripts/gcs-server",
        }
    }

    fn required_by(self) -> &'static str {
        match self {
            Cloud::Azure => "MAKOTO_REQUIRE_AZURE",
            Cloud::Gcs => "MAKOTO_REQUIRE_GCS",
        }
    }

    fn scheme(self) -> &'static str {
        match self {
            Cloud::Azure => "az",
            Cloud::Gcs => "gs",
        }
    }
}

/// A running emulator; stopped on drop.
struct Emulator {
    cloud: Cloud,
    dir: PathBuf,
    env: Vec<(String, String)>,
}

impl Emulator {
    fn start(cloud: Cloud, dir: &Path) -> Result<Emulator, String> {
        let env = start_server(cloud.script(), dir, "MAKOTO_EMULATOR_WATCH_PID")?;
        Ok(Emulator {
            cloud,
            dir: dir.to_owned(),
            env,
        })
    }

    fn var(&self, name: &str) -> String {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{} did not print {name}", self.cloud.script()))
    }

    /// The container or bucket.
    fn bucket(&self) -> String {
        match self.cloud {
            Cloud::Azure => self.var("MAKOTO_AZURE_CONTAINER"),
            Cloud::Gcs => self.var("MAKOTO_GCS_BUCKET"),
        }
    }

    fn uri(&self, path: &str) -> String {
        format!("{}://{}/{path}", self.cloud.scheme(), self.bucket())
    }

    /// What a user exports, as docs/operations.md shows.
    fn client_env(&self) -> Vec<(&'static str, String)> {
        match self.cloud {
            Cloud::Azure => vec![
                ("AZURE_STORAGE_USE_EMULATOR", "true".to_owned()),
                (
                    "AZURITE_BLOB_STORAGE_URL",
                    self.var("AZURITE_BLOB_STORAGE_URL"),
                ),
                (
                    "AZURE_STORAGE_ACCOUNT_NAME",
                    self.var("AZURE_STORAGE_ACCOUNT_NAME"),
                ),
                (
                    "AZURE_STORAGE_ACCOUNT_KEY",
                    self.var("AZURE_STORAGE_ACCOUNT_KEY"),
                ),
            ],
            Cloud::Gcs => vec![("GOOGLE_SERVICE_ACCOUNT", self.var("GOOGLE_SERVICE_ACCOUNT"))],
        }
    }

    /// Storage options for this process (which must not change its own environment): the
    /// endpoint-override form of the same credentials.
    fn storage(&self) -> StorageOptions {
        let pairs: Vec<(&str, String)> = match self.cloud {
            Cloud::Azure => {
                let account = self.var("AZURE_STORAGE_ACCOUNT_NAME");
                vec![
                    (
                        "azure_storage_endpoint",
                        format!("{}/{account}", self.var("AZURITE_BLOB_STORAGE_URL")),
                    ),
                    ("azure_storage_account_name", account),
                    (
                        "azure_storage_account_key",
                        self.var("AZURE_STORAGE_ACCOUNT_KEY"),
                    ),
                    ("azure_allow_http", "true".to_owned()),
                ]
            }
            Cloud::Gcs => vec![("google_service_account", self.var("GOOGLE_SERVICE_ACCOUNT"))],
        };
        StorageOptions(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    fn store(&self, uri: &str) -> std::sync::Arc<dyn ObjectStore> {
        Location::existing(uri)
            .unwrap()
            .object_store(&self.storage())
            .unwrap()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        stop_server(self.cloud.script(), &self.dir);
    }
}

fn start_or_skip(cloud: Cloud, dir: &Path, test: &str) -> Option<Emulator> {
    match Emulator::start(cloud, dir) {
        Ok(e) => Some(e),
        Err(reason) if std::env::var(cloud.required_by()).as_deref() != Ok("1") => {
            println!("SKIPPED cloud::{test}: {reason}");
            None
        }
        Err(reason) => panic!("{}=1 but no emulator: {reason}", cloud.required_by()),
    }
}

/// Creates a partitioned table at `uri` with delta-rs (create, three appends, a delete):
/// versions 0–4. Returns the last version.
async fn write_with_delta_rs(uri: &str, storage: &StorageOptions) -> u64 {
    let table = Location::create(uri).unwrap().delta_table(storage).unwrap();
    let mut t = table
        .create()
        .with_columns(makoto_testkit::sample_columns())
        .with_partition_columns(["region"])
        .await
        .unwrap();
    for (ids, region) in [(0..5, "eu"), (5..9, "us"), (9..12, "eu")] {
        t = t
            .write(vec![makoto_testkit::rows(ids, region).unwrap()])
            .with_save_mode(SaveMode::Append)
            .await
            .unwrap();
    }
    let (t, _) = t.delete().with_predicate("id = 3").await.unwrap();
    t.version().unwrap()
}

/// Python `deltalake` writes a table at `uri` (two writes, a delete, an update), reaching the
/// store only through the client environment. Returns the last version, or None without a
/// Python with `deltalake` (where that is allowed).
fn write_with_python(uri: &str, env: &[(&'static str, String)]) -> Option<u64> {
    let py = crate::python::python()?;
    let script = r#"
import sys
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake
uri = sys.argv[1]
rows = lambda ids, region: pa.table({"id": pa.array(ids, pa.int64()), "region": [region] * len(ids)})
write_deltalake(uri, rows([1, 2, 3], "eu"), partition_by=["region"])
write_deltalake(uri, rows([4, 5], "us"), mode="append", partition_by=["region"])
DeltaTable(uri).delete("id = 2")
DeltaTable(uri).update({"id": "id + 10"}, predicate="region = 'us'")
print(DeltaTable(uri).version())
"#;
    let out = Command::new(py)
        .args(["-c", script, uri])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python deltalake on {uri}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).trim().parse().unwrap())
}

async fn get(store: &dyn ObjectStore, path: &str) -> Vec<u8> {
    let path = object_store::path::Path::parse(path).unwrap();
    store
        .get(&path)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec()
}

async fn put(store: &dyn ObjectStore, path: &str, bytes: Vec<u8>) {
    let path = object_store::path::Path::parse(path).unwrap();
    store.put(&path, bytes.into()).await.unwrap();
}

async fn object_names(store: &dyn ObjectStore) -> Vec<String> {
    let mut names: Vec<String> = store
        .list(None)
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    names.sort();
    names
}

fn findings(out: &ChildOutput) -> Vec<Value> {
    let report: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {} {}", out.stdout, out.stderr));
    report["findings"].as_array().unwrap().clone()
}

/// The whole cycle on one emulator.
async fn cycle(cloud: Cloud, test: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let Some(emu) = start_or_skip(cloud, &tmp.path().join("server"), test) else {
        return;
    };
    let env = emu.client_env();
    let storage = emu.storage();
    let warehouse = emu.uri("warehouse");
    let by_rust = emu.uri("lake/by_rust");
    let by_python = emu.uri("lake/by_python");
    let mut tables = vec![(
        by_rust.clone(),
        write_with_delta_rs(&by_rust, &storage).await,
    )];
    if let Some(last) = write_with_python(&by_python, &env) {
        tables.push((by_python.clone(), last));
    }
    let (key_file, pub_file) = keyfiles(tmp.path());

    let attest = |table: &str| {
        makoto_env(
            &[
                "attest",
                table,
                "--warehouse",
                &warehouse,
                "--key",
                &key_file,
                "--json",
            ],
            &env,
        )
    };
    let verify = |table: &str, extra: &[&str]| {
        let mut args = vec![
            "verify",
            table,
            "--warehouse",
            warehouse.as_str(),
            "--trust",
            pub_file.as_str(),
        ];
        args.extend_from_slice(extra);
        makoto_env(&args, &env)
    };
    for (table, last) in &tables {
        let first = attest(table);
        assert_eq!(first.code, Some(0), "{table}: {}", first.stderr);
        let summary: Value = serde_json::from_str(&first.stdout).unwrap();
        assert_eq!(
            summary["attested"].as_array().unwrap().len() as u64,
            last + 1,
            "{summary}"
        );
        assert_eq!(summary["table"], table.as_str());
        let second = attest(table);
        assert_eq!(second.code, Some(0), "{}", second.stderr);
        assert_eq!(
            serde_json::from_str::<Value>(&second.stdout).unwrap()["attested"],
            serde_json::json!([]),
            "{table}: a second run attests nothing"
        );
        let ok = verify(table, &[]);
        assert_eq!(ok.code, Some(0), "{table}: {}\n{}", ok.stdout, ok.stderr);
        assert!(ok.stdout.starts_with("VERIFIED"), "{}", ok.stdout);
        assert!(
            ok.stdout.contains("delta-rs cross-check agrees"),
            "{}",
            ok.stdout
        );
    }

    // The rows carry the digests of the bytes on the store and of each commit file, computed
    // here from the objects themselves.
    let store = AttestationStore::open_existing(Location::existing(&warehouse).unwrap(), storage)
        .await
        .unwrap();
    let table_store = emu.store(&by_rust);
    let files_table = store.load_files().await.unwrap();
    let files = store
        .file_rows(&files_table, &by_rust, 0, u64::MAX / 2)
        .await
        .unwrap();
    assert!(files.iter().any(|f| f.action.as_str() == "add"));
    for f in files.iter().filter(|f| f.action.as_str() == "add") {
        let bytes = get(table_store.as_ref(), &f.path).await;
        assert_eq!(f.sha256.unwrap().to_hex(), sha256_hex(&bytes), "{}", f.path);
    }
    let rows = store.attestation_rows(&by_rust).await.unwrap();
    assert_eq!(
        rows.iter().map(|r| r.version).collect::<Vec<_>>(),
        (0..=tables[0].1).collect::<Vec<_>>()
    );
    for r in &rows {
        let commit = get(
            table_store.as_ref(),
            &format!("_delta_log/{:020}.json", r.version),
        )
        .await;
        assert_eq!(r.commit_file_digest.to_hex(), sha256_hex(&commit));
    }

    // A data file rewritten on the store: verify names it.
    let live = files
        .iter()
        .rev()
        .find(|f| f.action.as_str() == "add")
        .unwrap()
        .path
        .clone();
    let original = get(table_store.as_ref(), &live).await;
    let mut bytes = original.clone();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    put(table_store.as_ref(), &live, bytes).await;
    let bad = verify(&by_rust, &["--json"]);
    assert_eq!(bad.code, Some(1), "{}", bad.stderr);
    assert!(
        findings(&bad)
            .iter()
            .any(|f| f["kind"] == "data-file-changed" && f["path"] == live.as_str()),
        "{}",
        bad.stdout
    );
    put(table_store.as_ref(), &live, original).await;

    // A commit rewritten on the store (one more row claimed in its stats): caught as such.
    let commit_path = "_delta_log/00000000000000000001.json";
    let commit = String::from_utf8(get(table_store.as_ref(), commit_path).await).unwrap();
    let forged = commit.replacen("\\\"numRecords\\\":5", "\\\"numRecords\\\":6", 1);
    assert_ne!(forged, commit, "commit 1 states numRecords 5: {commit}");
    put(table_store.as_ref(), commit_path, forged.into_bytes()).await;
    let bad = verify(&by_rust, &["--json"]);
    assert_eq!(bad.code, Some(1), "{}", bad.stderr);
    assert!(
        findings(&bad)
            .iter()
            .any(|f| f["kind"] == "commit-rewritten" && f["version"] == 1),
        "{}",
        bad.stdout
    );
    put(table_store.as_ref(), commit_path, commit.into_bytes()).await;
    assert_eq!(verify(&by_rust, &[]).code, Some(0));

    // Commands that only read, pointed at a mistyped warehouse, exit 2 naming it and create
    // nothing on the store.
    let bucket_store = emu.store(&format!("{}://{}", cloud.scheme(), emu.bucket()));
    let before = object_names(bucket_store.as_ref()).await;
    let typo = emu.uri("warehous");
    for args in read_only_runs(&by_rust, &typo, &key_file, &pub_file, &live, "1") {
        let out = makoto_env(&args, &env);
        let error = sole_error(&args, &out);
        assert!(error.contains(&typo), "{args:?}: {error}");
    }
    assert_eq!(
        object_names(bucket_store.as_ref()).await,
        before,
        "a read-only command wrote to the store"
    );
}

/// Three `makoto attest` processes at once on one table into one warehouse on the store: every
/// version is attested exactly once, which rests on the store refusing a second create of the
/// same commit file (Azure `If-None-Match: *`, GCS `ifGenerationMatch=0`).
async fn runs_at_once(cloud: Cloud, test: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let Some(emu) = start_or_skip(cloud, &tmp.path().join("server"), test) else {
        return;
    };
    // The primitive itself: a second create of the same object is refused.
    let probe = emu.store(&emu.uri("probe"));
    let path = object_store::path::Path::from("_delta_log/00000000000000000000.json");
    let create = || object_store::PutOptions::from(object_store::PutMode::Create);
    probe
        .put_opts(&path, b"first".to_vec().into(), create())
        .await
        .unwrap();
    let second = probe
        .put_opts(&path, b"second".to_vec().into(), create())
        .await;
    assert!(
        matches!(second, Err(object_store::Error::AlreadyExists { .. })),
        "{second:?}"
    );
    assert_eq!(get(probe.as_ref(), path.as_ref()).await, b"first");

    let table = emu.uri("lake/raced");
    let last = write_with_delta_rs(&table, &emu.storage()).await;
    let warehouse = emu.uri("raced-warehouse");
    let env = emu.client_env();
    let handles: Vec<_> = (0..3)
        .map(|i| {
            let args: Vec<String> = [
                "attest",
                &table,
                "--warehouse",
                &warehouse,
                "--batch-size",
                &(1 + i).to_string(),
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            let env = env.clone();
            std::thread::spawn(move || {
                let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                makoto_env(&refs, &env)
            })
        })
        .collect();
    for h in handles {
        let out = h.join().unwrap();
        assert_eq!(out.code, Some(0), "{}", out.stderr);
    }
    let store =
        AttestationStore::open_existing(Location::existing(&warehouse).unwrap(), emu.storage())
            .await
            .unwrap();
    let versions: Vec<u64> = store
        .attestation_rows(&table)
        .await
        .unwrap()
        .iter()
        .map(|r| r.version)
        .collect();
    assert_eq!(
        versions,
        (0..=last).collect::<Vec<_>>(),
        "each version once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attest_and_verify_on_azure() {
    cycle(Cloud::Azure, "attest_and_verify_on_azure").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attest_and_verify_on_gcs() {
    cycle(Cloud::Gcs, "attest_and_verify_on_gcs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_runs_on_azure_attest_once() {
    runs_at_once(Cloud::Azure, "concurrent_runs_on_azure_attest_once").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_runs_on_gcs_attest_once() {
    runs_at_once(Cloud::Gcs, "concurrent_runs_on_gcs_attest_once").await;
}
