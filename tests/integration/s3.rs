//! Object stores: a table and its warehouse on a real S3-compatible server (Garage, started on
//! 127.0.0.1 by `scripts/garage-server`), attested and verified through the `makoto` binary
//! with credentials from the standard `AWS_*` environment variables, as users run it.
//!
//! The test needs a `garage` binary (`.ci/run` installs it into a cache directory). Without
//! one it prints why and returns, unless `MAKOTO_REQUIRE_S3=1` (CI), where it fails.

use std::path::{Path, PathBuf};

use deltalake::logstore::object_store;
use futures::TryStreamExt;
use makoto_delta::{AttestationStore, Location, StorageOptions};
use object_store::{ObjectStore, ObjectStoreExt};

use crate::support::*;

/// A running Garage server; stopped on drop.
struct Garage {
    dir: PathBuf,
    env: Vec<(String, String)>,
}

impl Garage {
    /// Starts a server, or says why it could not.
    fn start(dir: &Path) -> Result<Garage, String> {
        let env = start_server("scripts/garage-server", dir, "MAKOTO_GARAGE_WATCH_PID")?;
        Ok(Garage {
            dir: dir.to_owned(),
            env,
        })
    }

    /// Starts a server; without one, says the test `name` is skipped and returns `None`,
    /// unless `MAKOTO_REQUIRE_S3=1` (CI), where it fails.
    fn start_or_skip(dir: &Path, name: &str) -> Option<Garage> {
        match Garage::start(dir) {
            Ok(g) => Some(g),
            Err(reason) if std::env::var("MAKOTO_REQUIRE_S3").as_deref() != Ok("1") => {
                println!("SKIPPED s3::{name}: {reason}");
                None
            }
            Err(reason) => panic!("MAKOTO_REQUIRE_S3=1 but no S3 server: {reason}"),
        }
    }

    fn var(&self, name: &str) -> String {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("garage-server did not print {name}"))
    }

    /// What a user exports to reach the server (plain http, path-style requests).
    fn client_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.var("AWS_ENDPOINT_URL")),
            ("AWS_ACCESS_KEY_ID", self.var("AWS_ACCESS_KEY_ID")),
            ("AWS_SECRET_ACCESS_KEY", self.var("AWS_SECRET_ACCESS_KEY")),
            ("AWS_REGION", self.var("AWS_REGION")),
            ("AWS_ALLOW_HTTP", "true".to_owned()),
        ]
    }

    fn storage(&self) -> StorageOptions {
        StorageOptions(
            self.client_env()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        )
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        stop_server("scripts/garage-server", &self.dir);
    }
}

/// Uploads a local table directory to `uri` (`s3://bucket/prefix`).
async fn upload(local: &Path, uri: &str, storage: &StorageOptions) {
    let store = Location::create(uri)
        .unwrap()
        .object_store(storage)
        .unwrap();
    for file in walk(local) {
        let rel = file
            .strip_prefix(local)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        store
            .put(
                &object_store::path::Path::parse(&rel).unwrap(),
                std::fs::read(&file).unwrap().into(),
            )
            .await
            .unwrap();
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// `makoto serve` watching a table on S3 beside a local one: the S3 table gets an attest job
/// of its own, the local one is looked at by the batched local look, and both are attested
/// exactly once, also after a new local commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_watches_a_table_on_s3_beside_a_local_one() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(garage) = Garage::start_or_skip(
        &tmp.path().join("garage"),
        "serve_watches_a_table_on_s3_beside_a_local_one",
    ) else {
        return;
    };
    let bucket = garage.var("MAKOTO_S3_BUCKET");
    let remote = format!("s3://{bucket}/lake/sales");
    let warehouse = format!("s3://{bucket}/warehouse");
    upload(
        &repo_root().join("data/sample/sales"),
        &remote,
        &garage.storage(),
    )
    .await;
    let mut local = crate::serve::new_table(tmp.path(), "local", 1).await;
    let local_uri = table_uri(local.path());
    let tables = tmp.path().join("tables.txt");
    std::fs::write(&tables, format!("{remote}\nlocal\n")).unwrap();
    let (key, _) = keyfiles(tmp.path());

    let served = crate::serve::Served::start_with_env(
        &crate::serve::tables_file_args(&warehouse, &key, tables.to_str().unwrap(), "100ms"),
        &garage.client_env(),
    );
    use crate::serve::attested;
    served.wait_for("both tables attested", |t| {
        attested(t, &remote) == Some(9) && attested(t, &local_uri) == Some(1)
    });
    local
        .append(makoto_testkit::rows(100..110, "amer").unwrap())
        .await
        .unwrap();
    served.wait_for("the new local commit attested", |t| {
        attested(t, &local_uri) == Some(2) && attested(t, &remote) == Some(9)
    });
    let (code, stderr) = served.stop();
    assert_eq!(code, Some(0), "{stderr}");

    let store =
        AttestationStore::open_existing(Location::existing(&warehouse).unwrap(), garage.storage())
            .await
            .unwrap();
    for (uri, latest) in [(&remote, 9), (&local_uri, 2)] {
        let mut versions: Vec<u64> = store
            .attestation_rows(uri)
            .await
            .unwrap()
            .iter()
            .map(|r| r.version)
            .collect();
        versions.sort();
        assert_eq!(versions, (0..=latest).collect::<Vec<_>>(), "{uri}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attest_and_verify_on_s3() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(garage) = Garage::start_or_skip(&tmp.path().join("garage"), "attest_and_verify_on_s3")
    else {
        return;
    };
    let bucket = garage.var("MAKOTO_S3_BUCKET");
    let table = format!("s3://{bucket}/lake/sales");
    let warehouse = format!("s3://{bucket}/warehouse");
    let local = repo_root().join("data/sample/sales");
    upload(&local, &table, &garage.storage()).await;

    let key_prefix = tmp.path().join("k");
    assert_eq!(
        makoto(&["keygen", key_prefix.to_str().unwrap()]).code,
        Some(0)
    );
    let key_file = format!("{}.key", key_prefix.display());
    let pub_file = format!("{}.pub", key_prefix.display());
    let env = garage.client_env();

    let attest = || {
        makoto_env(
            &[
                "attest",
                &table,
                "--warehouse",
                &warehouse,
                "--key",
                &key_file,
                "--json",
            ],
            &env,
        )
    };
    let first = attest();
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    let summary: serde_json::Value = serde_json::from_str(&first.stdout).unwrap();
    assert_eq!(summary["attested"].as_array().unwrap().len(), 10);
    assert_eq!(summary["table"], table);
    // A second run finds everything attested (the warehouse's `txn`) and adds nothing.
    let second = attest();
    assert_eq!(second.code, Some(0), "{}", second.stderr);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&second.stdout).unwrap()["attested"],
        serde_json::json!([])
    );

    // The rows on S3 carry the digests of the bytes, recomputed here from the local copy.
    let store =
        AttestationStore::open_existing(Location::existing(&warehouse).unwrap(), garage.storage())
            .await
            .unwrap();
    let files_table = store.load_files().await.unwrap();
    let files = store
        .file_rows(&files_table, &table, 0, u64::MAX / 2)
        .await
        .unwrap();
    assert!(!files.is_empty());
    for f in files.iter().filter(|f| f.action.as_str() == "add") {
        let bytes = std::fs::read(local.join(&f.path)).unwrap();
        assert_eq!(f.sha256.unwrap().to_hex(), sha256_hex(&bytes), "{}", f.path);
    }
    let rows = store.attestation_rows(&table).await.unwrap();
    assert_eq!(rows.len(), 10);
    for r in &rows {
        let commit =
            std::fs::read(local.join(format!("_delta_log/{:020}.json", r.version))).unwrap();
        assert_eq!(r.commit_file_digest.to_hex(), sha256_hex(&commit));
    }

    let verify = |extra: &[&str]| {
        let mut args = vec![
            "verify",
            table.as_str(),
            "--warehouse",
            warehouse.as_str(),
            "--trust",
            pub_file.as_str(),
        ];
        args.extend_from_slice(extra);
        makoto_env(&args, &env)
    };
    let ok = verify(&[]);
    assert_eq!(ok.code, Some(0), "{}\n{}", ok.stdout, ok.stderr);
    assert!(ok.stdout.starts_with("VERIFIED"), "{}", ok.stdout);
    // delta-rs opened the table on S3 too, through the store that lists the log once.
    assert!(
        ok.stdout.contains("delta-rs cross-check agrees"),
        "{}",
        ok.stdout
    );
    let old = verify(&["--version", "3", "--json"]);
    assert_eq!(old.code, Some(0), "{}", old.stderr);
    let old_report: serde_json::Value = serde_json::from_str(&old.stdout).unwrap();
    assert_eq!(
        old_report["coverage"]["deltaRsCrossCheck"], true,
        "{old_report}"
    );

    // Tamper with one live data file on the server: verify names it.
    let live = live_files(&local, 9).await.pop().unwrap().path;
    let table_store = Location::existing(&table)
        .unwrap()
        .object_store(&garage.storage())
        .unwrap();
    let path = object_store::path::Path::parse(&live).unwrap();
    let mut bytes = table_store
        .get(&path)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    table_store.put(&path, bytes.into()).await.unwrap();
    let bad = verify(&["--json"]);
    assert_eq!(bad.code, Some(1), "{}", bad.stderr);
    let report: serde_json::Value = serde_json::from_str(&bad.stdout).unwrap();
    assert!(
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["kind"] == "data-file-changed" && f["path"] == live.as_str()),
        "{report}"
    );

    // Commands that only read, pointed at a mistyped warehouse, exit 2 naming it and create
    // nothing on the server.
    let bucket_store = Location::existing(&format!("s3://{bucket}"))
        .unwrap()
        .object_store(&garage.storage())
        .unwrap();
    let objects = || async {
        let mut names: Vec<String> = bucket_store
            .list(None)
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .unwrap();
        names.sort();
        names
    };
    let before = objects().await;
    let typo = format!("s3://{bucket}/warehous");
    for args in read_only_runs(&table, &typo, &key_file, &pub_file, &live, "9") {
        let out = makoto_env(&args, &env);
        let error = sole_error(&args, &out);
        assert!(error.contains(&typo), "{args:?}: {error}");
    }
    assert_eq!(
        objects().await,
        before,
        "a read-only command wrote to the bucket"
    );
}
