//! Tables written by Spark, Databricks and delta-rs (../shared/delta-corpus): every version
//! attested, every digest checked against an independent recomputation. The state digest of a
//! version is recomputed from delta-rs's snapshot of that version, which is read through the
//! table's checkpoints (classic, multi-part, v2 with sidecars) when there are any, while the
//! attestation was computed by replaying the JSON commits: equal digests show the state does
//! not depend on how the log is stored.

use futures::StreamExt;

use crate::support::*;

/// What the manifest says a table should give.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    /// Attested and deeply verified at every version from `first` (a checkpoint baseline when
    /// the log starts later than version 0).
    Attests { first: u64, latest: u64 },
    /// `makoto attest` must stop with an error naming the table, the version and this reason.
    Fails { version: u64, reason: &'static str },
}

struct ManifestTable {
    name: String,
    features: Vec<String>,
    expect: Expect,
}

fn manifest() -> Vec<ManifestTable> {
    let text = std::fs::read_to_string(corpus_root().join("../manifest.json")).unwrap();
    let m: serde_json::Value = serde_json::from_str(&text).unwrap();
    m["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let features: Vec<String> = t["features"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f.as_str().unwrap().to_owned())
                .collect();
            let has = |f: &str| features.iter().any(|x| x == f);
            let versions = &t["versions"];
            let commits: Vec<u64> = versions["commit_files"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect();
            let expect = if has("negative") {
                // The first version missing from the commit files.
                let gap = (commits[0]..).find(|v| !commits.contains(v)).unwrap();
                Expect::Fails {
                    version: gap,
                    reason: "missing from _delta_log",
                }
            } else if has("catalog-managed") {
                Expect::Fails {
                    version: 0,
                    reason: "catalogManaged",
                }
            } else {
                Expect::Attests {
                    first: versions["first"].as_u64().unwrap(),
                    latest: versions["latest"].as_u64().unwrap(),
                }
            };
            ManifestTable {
                name: t["name"].as_str().unwrap().to_owned(),
                features,
                expect,
            }
        })
        .collect()
}

/// Every table of the corpus manifest, copied, attested and verified (deep) at every version.
/// A version is expected to be unverifiable exactly when one of its live files is gone from
/// disk (vacuumed before it was attested); every other version must verify with no finding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_manifest_table_at_every_version() {
    let tables = manifest();
    assert_eq!(tables.len(), 40, "the corpus README lists 40 tables");
    let mut failures = Vec::new();
    let results: Vec<Result<String, String>> = futures::stream::iter(tables)
        .map(|t| async move { check_manifest_table(&t).await })
        .buffer_unordered(2)
        .collect()
        .await;
    for r in results {
        match r {
            Ok(line) => println!("{line}"),
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

async fn check_manifest_table(t: &ManifestTable) -> Result<String, String> {
    let name = t.name.as_str();
    let tmp = tempfile::tempdir().unwrap();
    let table = corpus_table(name, tmp.path());
    let wh = tmp.path().join("wh");
    let outcome = Run::new(&table, &wh).run().await;
    let (first, latest) = match (&t.expect, outcome) {
        (Expect::Fails { version, reason }, Err(e)) => {
            let msg = e.to_string();
            let uri = table_uri(&table);
            if !(msg.contains(&uri)
                && msg.contains(&format!("version {version}"))
                && msg.contains(reason))
            {
                return Err(format!(
                    "{name}: error does not name the table, version {version} and {reason:?}: {msg}"
                ));
            }
            if !attestation_rows(&wh, &table).await.is_empty() {
                return Err(format!("{name}: a failed run wrote attestation rows"));
            }
            // And the binary: exit 2, one line on stderr, nothing written.
            let key_prefix = tmp.path().join("k");
            makoto(&["keygen", key_prefix.to_str().unwrap()]);
            let cli_wh = tmp.path().join("cli-wh");
            let out = makoto(&[
                "attest",
                table.to_str().unwrap(),
                "--warehouse",
                cli_wh.to_str().unwrap(),
                "--key",
                &format!("{}.key", key_prefix.display()),
            ]);
            let stderr_lines: Vec<&str> = out
                .stderr
                .lines()
                .filter(|l| l.starts_with("error:"))
                .collect();
            if out.code != Some(2) || stderr_lines.len() != 1 || !stderr_lines[0].contains(reason) {
                return Err(format!(
                    "{name}: makoto attest exit {:?}, stderr {:?}",
                    out.code, out.stderr
                ));
            }
            return Ok(format!("{name}: refused as expected: {msg}"));
        }
        (Expect::Fails { .. }, Ok(_)) => {
            return Err(format!("{name}: must fail but was attested"));
        }
        (Expect::Attests { .. }, Err(e)) => return Err(format!("{name}: {e}")),
        (Expect::Attests { first, latest }, Ok(_)) => (*first, *latest),
    };
    let rows = attestation_rows(&wh, &table).await;
    let versions: Vec<u64> = rows.iter().map(|r| r.version).collect();
    if versions != (first..=latest).collect::<Vec<_>>() {
        return Err(format!(
            "{name}: attested versions {versions:?}, expected {first}..={latest}"
        ));
    }
    check_rows(&rows, Some(&key(1)), &table);
    check_commit_digests(&table, &rows);
    check_file_digests(&table, &file_rows(&wh, &table).await);
    check_state_digests(&table, &rows).await;

    let mut unverifiable = Vec::new();
    for v in first..=latest {
        let gone = live_files(&table, v)
            .await
            .into_iter()
            .filter(|f| !table.join(&f.path).exists())
            .count();
        let row = &rows[(v - first) as usize];
        let expected_availability = if gone > 0 { "unavailable" } else { "complete" };
        if row.data_availability.as_str() != expected_availability {
            return Err(format!(
                "{name} v{v}: data_availability {:?}, expected {expected_availability:?} ({gone} live files gone)",
                row.data_availability
            ));
        }
        let report = crate::verify::verify_with(
            &table,
            &wh,
            &crate::verify::trust(1),
            makoto_delta::VerifyOptions {
                at: makoto_delta::VersionSpec::Version(v),
                ..Default::default()
            },
        )
        .await;
        let unexpected: Vec<_> = report
            .findings
            .iter()
            .filter(|f| !(gone > 0 && f.kind == makoto_delta::FindingKind::DataUnavailable))
            .map(|f| (f.kind.code(), f.version, f.path.clone(), f.detail.clone()))
            .collect();
        if !unexpected.is_empty() {
            return Err(format!("{name} v{v}: {unexpected:?}"));
        }
        let expected_outcome = if gone > 0 {
            makoto_delta::Outcome::Unverifiable
        } else {
            makoto_delta::Outcome::Verified
        };
        if report.outcome != expected_outcome {
            return Err(format!(
                "{name} v{v}: {:?}, expected {expected_outcome:?}",
                report.outcome
            ));
        }
        if gone > 0 {
            unverifiable.push(v);
        }
        if v == latest
            && report.checkpoints_checked as usize != count_checkpoints_from(&table, first)
        {
            return Err(format!(
                "{name}: {} checkpoints checked, {} in the log",
                report.checkpoints_checked,
                count_checkpoints_from(&table, first)
            ));
        }
    }
    if first > 0 {
        // Versions before the baseline cannot be verified, and verify says why (exit 2).
        let err = crate::verify::verify_err(&table, &wh, first - 1).await;
        if !err.contains("before the checkpoint baseline") {
            return Err(format!("{name}: verify before the baseline: {err}"));
        }
    }
    Ok(format!(
        "{name}: versions {first}..={latest} attested and verified{}; features {}",
        if unverifiable.is_empty() {
            String::new()
        } else {
            format!(" (unverifiable, data vacuumed before attestation: {unverifiable:?})")
        },
        t.features.join(",")
    ))
}

fn count_checkpoints_from(table: &std::path::Path, first: u64) -> usize {
    let mut versions: Vec<u64> = std::fs::read_dir(table.join("_delta_log"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() > 20 && n[20..].starts_with(".checkpoint."))
        .map(|n| n[..20].parse().unwrap())
        .filter(|v| *v >= first)
        .collect();
    versions.sort();
    versions.dedup();
    versions.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_commit_timestamps_are_preferred() {
    let tmp = tempfile::tempdir().unwrap();
    let table = corpus_table("cdc_ict_table", tmp.path());
    let wh = tmp.path().join("wh");
    Run::new(&table, &wh).run().await.unwrap();
    let rows = attestation_rows(&wh, &table).await;
    for row in &rows {
        let text =
            std::fs::read_to_string(table.join(format!("_delta_log/{:020}.json", row.version)))
                .unwrap();
        let ict = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find_map(|v| v["commitInfo"]["inCommitTimestamp"].as_i64());
        if let Some(ict) = ict {
            assert_eq!(row.commit_timestamp_ms, ict, "v{}", row.version);
            assert_eq!(row.timestamp_source.as_str(), "inCommitTimestamp");
        }
    }
    assert!(
        rows.iter()
            .any(|r| r.timestamp_source.as_str() == "inCommitTimestamp")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_vector_files_are_hashed_and_carried() {
    let tmp = tempfile::tempdir().unwrap();
    let table = corpus_table("table-with-dv-small", tmp.path());
    let wh = tmp.path().join("wh");
    Run::new(&table, &wh).run().await.unwrap();
    let files = file_rows(&wh, &table).await;
    let dv_add = files
        .iter()
        .find(|f| f.action.as_str() == "add" && f.dv_file.is_some())
        .expect("v1 adds the file again with a deletion vector");
    let bytes = std::fs::read(table.join(dv_add.dv_file.as_ref().unwrap())).unwrap();
    assert_eq!(dv_add.dv_sha256.unwrap().to_hex(), sha256_hex(&bytes));
    assert_eq!(dv_add.dv_cardinality, Some(2));
    // The data file is the same one added at v0: same digest, carried without rehashing.
    let v0 = files
        .iter()
        .find(|f| f.version == 0 && f.action.as_str() == "add")
        .unwrap();
    assert_eq!(dv_add.sha256, v0.sha256);
    // The remove at v1 names the digest of what it removed.
    let rm = files
        .iter()
        .find(|f| f.action.as_str() == "remove")
        .unwrap();
    assert_eq!(rm.sha256, v0.sha256);
}

/// Rewrites the path of the `add` actions of commit `version` with `f(relative path)`.
fn rewrite_add_paths(table: &std::path::Path, version: u64, f: impl Fn(&str) -> String) {
    rewrite_paths(table, version, "add", f)
}

/// Rewrites the path of the `kind` actions of commit `version` with `f(path)`.
fn rewrite_paths(table: &std::path::Path, version: u64, kind: &str, f: impl Fn(&str) -> String) {
    let file = table.join(format!("_delta_log/{version:020}.json"));
    let text = std::fs::read_to_string(&file).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(p) = v[kind]["path"].as_str().map(str::to_owned) {
            v[kind]["path"] = serde_json::Value::String(f(&p));
        }
        out.push_str(&v.to_string());
        out.push('\n');
    }
    std::fs::write(file, out).unwrap();
}

/// Absolute paths (URIs) in the log name the same file as its path relative to the table
/// root: its bytes are hashed from the object they name, it has one identity in the state
/// (an `add` by absolute URI and a `remove` by relative path, or the reverse, are the same
/// file), and the attested digests are those of the table written with relative paths. One
/// outside the root is refused with exit 2 naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_paths_hash_the_right_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = tmp.path().join("plain");
    copy_dir(&repo_root().join("data/sample/sales"), &plain);
    let plain_wh = tmp.path().join("plain-wh");
    Run::new(&plain, &plain_wh).run().await.unwrap();
    let expected: Vec<_> = attestation_rows(&plain_wh, &plain)
        .await
        .iter()
        .map(|r| (r.version, r.state_digest, r.live_files))
        .collect();

    // A directory with a space and a `%`, so the URI needs escapes.
    let table = tmp.path().join("my lake%1/sales");
    copy_dir(&repo_root().join("data/sample/sales"), &table);
    let root = url::Url::from_directory_path(std::fs::canonicalize(&table).unwrap()).unwrap();
    // The OPTIMIZE at v9 writes the files live at the end; name them by absolute URI.
    // Log paths are URL-encoded URIs: the root's URL form, then the (encoded) relative path.
    rewrite_add_paths(&table, 9, |p| format!("{}{p}", root.as_str()));
    let wh = tmp.path().join("wh");
    Run::new(&table, &wh).run().await.unwrap();
    let got: Vec<_> = attestation_rows(&wh, &table)
        .await
        .iter()
        .map(|r| (r.version, r.state_digest, r.live_files))
        .collect();
    assert_eq!(got, expected, "the same digests as with relative paths");
    let files = file_rows(&wh, &table).await;
    let added: Vec<_> = files
        .iter()
        .filter(|f| f.version == 9 && f.action.as_str() == "add")
        .collect();
    assert!(!added.is_empty());
    for f in &added {
        assert!(
            !f.path.contains("://"),
            "stored by its relative path: {}",
            f.path
        );
        let bytes = std::fs::read(table.join(&f.path)).unwrap();
        assert_eq!(f.sha256.unwrap().to_hex(), sha256_hex(&bytes), "{}", f.path);
    }
    let report = crate::verify::verify(&table, &wh).await;
    assert!(report.verified, "{:?}", report.findings);
    assert!(report.files_hashed >= added.len() as u64);

    // Mixed forms: files added by relative path at v7 removed by URI at v9, and files added by
    // URI at v8 removed by relative path at v9. One identity per file (as Spark resolves
    // them): the attested state is that of the plain table. delta-rs keeps such files live,
    // so its readers see another table, and verify says so.
    let mixed = tmp.path().join("mixed");
    copy_dir(&repo_root().join("data/sample/sales"), &mixed);
    let mroot = url::Url::from_directory_path(std::fs::canonicalize(&mixed).unwrap()).unwrap();
    let v7: Vec<String> = crate::verify::add_paths(&mixed, 7);
    rewrite_paths(&mixed, 9, "remove", |p| {
        if v7.iter().any(|a| p.ends_with(a.as_str())) {
            format!("{}{p}", mroot.as_str())
        } else {
            p.to_owned()
        }
    });
    rewrite_paths(&mixed, 8, "add", |p| format!("{}{p}", mroot.as_str()));
    let mixed_wh = tmp.path().join("mixed-wh");
    Run::new(&mixed, &mixed_wh).run().await.unwrap();
    let got: Vec<_> = attestation_rows(&mixed_wh, &mixed)
        .await
        .iter()
        .map(|r| (r.version, r.state_digest, r.live_files))
        .collect();
    assert_eq!(
        got, expected,
        "one identity per file, whatever form the log uses"
    );
    let report = crate::verify::verify(&mixed, &mixed_wh).await;
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.kind == makoto_delta::FindingKind::ReaderMismatch
                && f.version == Some(9)
                && v7.iter().any(|p| f.detail.contains(p.as_str()))),
        "{:?}",
        report.findings
    );

    // Changing one of them is found, under its relative path.
    let target = &added[0].path;
    let on_disk = table.join(target);
    let mut bytes = std::fs::read(&on_disk).unwrap();
    bytes[4] ^= 1;
    std::fs::write(&on_disk, bytes).unwrap();
    let report = crate::verify::verify(&table, &wh).await;
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.kind == makoto_delta::FindingKind::DataFileChanged
                && f.path.as_deref() == Some(target.as_str())),
        "{:?}",
        report.findings
    );

    // Outside the table root: refused, naming the file.
    let other = tmp.path().join("other");
    copy_dir(&repo_root().join("data/sample/sales"), &other);
    rewrite_add_paths(&other, 9, |p| format!("file:///elsewhere/{p}"));
    let err = Run::new(&other, &tmp.path().join("wh2"))
        .run()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("version 9")
            && err.contains("file:///elsewhere/")
            && err.contains("outside the table root"),
        "{err}"
    );
}
