//! Shared helpers: temporary tables and warehouses, in-process runs, and independent
//! recomputation of every digest from the raw files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::TryStreamExt;
use makoto_core::keys::{Signer, SigningKeyPair};
use makoto_delta::{
    AttestOptions, AttestSummary, AttestationRow, AttestationStore, Attestor, FileRow, Location,
    Observer, SourceTable, StorageOptions,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn corpus_root() -> PathBuf {
    let p = repo_root().join("../shared/delta-corpus/tables");
    assert!(
        p.is_dir(),
        "the Delta corpus is expected at {} (../shared/delta-corpus next to the repository)",
        p.display()
    );
    p
}

pub fn schema_root() -> PathBuf {
    let p = repo_root().join("../shared/makoto-spec/expanso-io__makoto/schemas");
    assert!(p.is_dir(), "Makoto schemas expected at {}", p.display());
    p
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A deterministic test key.
pub fn key(seed: u8) -> Arc<SigningKeyPair> {
    Arc::new(SigningKeyPair::from_seed(&[seed; 32]))
}

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    makoto_testkit::copy_dir(from, to).unwrap();
}

/// A corpus table copied into `dir`.
pub fn corpus_table(name: &str, dir: &Path) -> PathBuf {
    let to = dir.join(name);
    copy_dir(&corpus_root().join(name).join("delta"), &to);
    to
}

pub fn table_uri(path: &Path) -> String {
    Location::existing(path.to_str().unwrap()).unwrap().as_uri()
}

pub struct Run<'a> {
    pub table: &'a Path,
    pub warehouse: &'a Path,
    pub key: Option<Arc<SigningKeyPair>>,
    pub options: AttestOptions,
    pub observer: Option<Arc<dyn Observer>>,
    pub hint: Option<makoto_delta::ChainHint>,
}

impl<'a> Run<'a> {
    pub fn new(table: &'a Path, warehouse: &'a Path) -> Self {
        Run {
            table,
            warehouse,
            key: Some(key(1)),
            options: AttestOptions::default(),
            observer: None,
            hint: None,
        }
    }
    pub fn hint(mut self, h: Option<makoto_delta::ChainHint>) -> Self {
        self.hint = h;
        self
    }
    pub fn unsigned(mut self) -> Self {
        self.key = None;
        self
    }
    pub fn up_to(mut self, v: u64) -> Self {
        self.options.to_version = Some(v);
        self
    }
    pub fn batch_size(mut self, n: usize) -> Self {
        self.options.batch_size = n;
        self
    }
    /// Small batches that drop the state trees from memory after each one.
    pub fn evicting(mut self, batch_size: usize) -> Self {
        self.options.batch_size = batch_size;
        self.options.batch_bytes = 2_000;
        self.options.evict_above_files = 0;
        self
    }
    pub fn observer(mut self, o: Arc<dyn Observer>) -> Self {
        self.observer = Some(o);
        self
    }
    pub async fn run(self) -> Result<AttestSummary, makoto_delta::Error> {
        let storage = StorageOptions::default();
        let table = SourceTable::open(Location::existing(self.table.to_str().unwrap())?, &storage)?;
        let store =
            AttestationStore::create(Location::create(self.warehouse.to_str().unwrap())?, storage)
                .await?;
        let signer = self.key.map(|k| k as Arc<dyn Signer>);
        let mut a = Attestor::new(table, store, signer, self.options).with_hint(self.hint);
        if let Some(o) = self.observer {
            a = a.with_observer(o);
        }
        a.run().await
    }
}

pub async fn store(warehouse: &Path) -> AttestationStore {
    AttestationStore::create(
        Location::create(warehouse.to_str().unwrap()).unwrap(),
        StorageOptions::default(),
    )
    .await
    .unwrap()
}

pub async fn attestation_rows(warehouse: &Path, table: &Path) -> Vec<AttestationRow> {
    store(warehouse)
        .await
        .attestation_rows(&table_uri(table))
        .await
        .unwrap()
}

pub async fn file_rows(warehouse: &Path, table: &Path) -> Vec<FileRow> {
    let s = store(warehouse).await;
    let t = s.load_files().await.unwrap();
    s.file_rows(&t, &table_uri(table), 0, u64::MAX / 2)
        .await
        .unwrap()
}

/// Number of rows in a system table counted without makoto (plain DataFusion over delta-rs).
pub async fn raw_row_count(table_dir: &Path) -> usize {
    let url = url::Url::from_directory_path(std::fs::canonicalize(table_dir).unwrap()).unwrap();
    let mut t = deltalake::DeltaTableBuilder::from_url(url)
        .unwrap()
        .build()
        .unwrap();
    t.load().await.unwrap();
    let ctx = deltalake::datafusion::prelude::SessionContext::new();
    t.update_datafusion_session(&ctx.state()).unwrap();
    let p = t.table_provider().await.unwrap();
    ctx.read_table(p).unwrap().count().await.unwrap()
}

// ---------------------------------------------------------------------------------------------
// Independent recomputation of the state digest, following docs/digests.md, from delta-rs's
// own view of a version (which reads checkpoints when they exist) and the raw file bytes.

/// `<prefix>/deletion_vector_<uuid>.bin` for a `u` descriptor.
fn dv_relative_path(path_or_inline: &str) -> String {
    let (prefix, z) = path_or_inline.split_at(path_or_inline.len() - 20);
    let b = z85::decode(z).unwrap();
    let u = format!(
        "{}-{}-{}-{}-{}",
        hex::encode(&b[0..4]),
        hex::encode(&b[4..6]),
        hex::encode(&b[6..8]),
        hex::encode(&b[8..10]),
        hex::encode(&b[10..16])
    );
    if prefix.is_empty() {
        format!("deletion_vector_{u}.bin")
    } else {
        format!("{prefix}/deletion_vector_{u}.bin")
    }
}

/// One live file as delta-rs reports it.
#[derive(Debug, Clone)]
pub struct LiveFile {
    pub path: String,
    pub size: u64,
    pub dv: Option<(String, String, Option<i32>, i32, i64)>,
}

/// The live files of `version` as delta-rs's snapshot reports them.
pub async fn live_files(table: &Path, version: u64) -> Vec<LiveFile> {
    let url = url::Url::from_directory_path(std::fs::canonicalize(table).unwrap()).unwrap();
    let t = deltalake::DeltaTableBuilder::from_url(url)
        .unwrap()
        .with_version(version)
        .load()
        .await
        .unwrap();
    let views: Vec<_> = t
        .get_active_add_actions_by_partitions(&[])
        .try_collect()
        .await
        .unwrap();
    views
        .into_iter()
        .map(|f| LiveFile {
            path: f.path().into_owned(),
            size: f.size() as u64,
            dv: f.deletion_vector_descriptor().map(|d| {
                let code = match d.storage_type {
                    deltalake::kernel::StorageType::UuidRelativePath => "u",
                    deltalake::kernel::StorageType::Inline => "i",
                    deltalake::kernel::StorageType::AbsolutePath => "p",
                };
                (
                    code.to_owned(),
                    d.path_or_inline_dv.clone(),
                    d.offset,
                    d.size_in_bytes,
                    d.cardinality,
                )
            }),
        })
        .collect()
}

fn bit(key: &[u8; 32], i: usize) -> bool {
    (key[i / 8] >> (7 - i % 8)) & 1 == 1
}

fn node(l: &[u8; 32], r: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(l);
    h.update(r);
    h.finalize().into()
}

fn smt_root(leaves: &[([u8; 32], [u8; 32])], depth: usize) -> [u8; 32] {
    match leaves {
        [] => [0u8; 32],
        [(_, h)] => *h,
        _ => {
            let split = leaves
                .iter()
                .position(|(k, _)| bit(k, depth))
                .unwrap_or(leaves.len());
            node(
                &smt_root(&leaves[..split], depth + 1),
                &smt_root(&leaves[split..], depth + 1),
            )
        }
    }
}

/// What the independent state digest does with a live file that is gone from disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingFiles {
    Fail,
    /// Leaf with `"sha256": null` (bytes vacuumed before the version was attested).
    Unavailable,
}

/// The state digest of `version`, recomputed from delta-rs's snapshot and the file bytes.
pub async fn independent_state_digest_with(
    table: &Path,
    version: u64,
    missing: MissingFiles,
) -> String {
    let files = live_files(table, version).await;
    let mut leaves: Vec<([u8; 32], [u8; 32])> = Vec::new();
    for f in files {
        let sha = match std::fs::read(table.join(&f.path)) {
            Ok(bytes) => {
                assert_eq!(bytes.len() as u64, f.size, "{}", f.path);
                Value::String(sha256_hex(&bytes))
            }
            Err(_) if missing == MissingFiles::Unavailable => Value::Null,
            Err(e) => panic!("{}: {e}", f.path),
        };
        let (dv_json, unique_id) = match &f.dv {
            None => (Value::Null, String::new()),
            Some((code, p, offset, size, card)) => {
                let uid = match offset {
                    Some(o) => format!("{code}{p}@{o}"),
                    None => format!("{code}{p}"),
                };
                let sha = match code.as_str() {
                    "u" => Value::String(sha256_hex(
                        &std::fs::read(table.join(dv_relative_path(p))).unwrap(),
                    )),
                    "i" => Value::Null,
                    other => panic!("unexpected DV storage {other}"),
                };
                (
                    json!({"cardinality": card, "sha256": sha, "sizeInBytes": size, "uniqueId": uid}),
                    uid,
                )
            }
        };
        // serde_json's default map is sorted; with ASCII keys this is the canonical form.
        let value = serde_json::to_vec(&json!({
            "deletionVector": dv_json,
            "path": f.path,
            "sha256": sha,
            "size": f.size,
        }))
        .unwrap();
        let mut k = Sha256::new();
        k.update(f.path.as_bytes());
        k.update([0u8]);
        k.update(unique_id.as_bytes());
        let mut l = Sha256::new();
        l.update([0u8]);
        l.update(&value);
        leaves.push((k.finalize().into(), l.finalize().into()));
    }
    leaves.sort();
    hex::encode(smt_root(&leaves, 0))
}

// ---------------------------------------------------------------------------------------------
// Statements.

pub fn statement_of(row: &AttestationRow) -> Value {
    let env: Value = serde_json::from_str(&row.envelope).unwrap();
    use base64::Engine;
    let payload = base64::engine::general_purpose::STANDARD
        .decode(env["payload"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        sha256_hex(&payload),
        row.attestation_digest.to_hex(),
        "payload digest of v{}",
        row.version
    );
    let statement: Value = serde_json::from_slice(&payload).unwrap();
    assert!(
        makoto_core::canonical::to_vec(&statement) == payload,
        "the payload of v{} is not the canonical JSON of its statement",
        row.version
    );
    statement
}

/// Validates statements against the structured Makoto schemas (in-toto Statement v1 wrapper
/// dispatching to the predicate schemas), with format checking on.
pub struct SchemaValidator {
    validator: jsonschema::Validator,
}

impl SchemaValidator {
    /// Validates statements (in-toto Statement v1 and the predicate schemas).
    pub fn new() -> Self {
        Self::for_document("in-toto/statement-v1.json")
    }

    /// Validates DBOM v1 documents.
    pub fn dbom() -> Self {
        Self::for_document("makoto.dev/dbom/v1.json")
    }

    fn for_document(schema: &str) -> Self {
        let root = schema_root();
        let mut resources = Vec::new();
        for rel in [
            "makoto.dev/common/definitions.json",
            "makoto.dev/origin/v1.json",
            "makoto.dev/transform/v1.json",
            "makoto.dev/stream-window/v1.json",
            "makoto.dev/dbom/v1.json",
        ] {
            let doc: Value =
                serde_json::from_slice(&std::fs::read(root.join(rel)).unwrap()).unwrap();
            let id = doc["$id"].as_str().unwrap().to_owned();
            resources.push((id, jsonschema::Resource::from_contents(doc).unwrap()));
        }
        let statement: Value =
            serde_json::from_slice(&std::fs::read(root.join(schema)).unwrap()).unwrap();
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .with_resources(resources.into_iter())
            .build(&statement)
            .unwrap();
        SchemaValidator { validator }
    }

    pub fn errors(&self, statement: &Value) -> Vec<String> {
        self.validator
            .iter_errors(statement)
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect()
    }
}

/// Checks every row of a table's attestations: payload digest, signature with `key`, schema,
/// subject, chain and contiguity from version 0. Returns the statements.
pub fn check_rows(
    rows: &[AttestationRow],
    key: Option<&SigningKeyPair>,
    table: &Path,
) -> Vec<Value> {
    let validator = SchemaValidator::new();
    let uri = table_uri(table);
    let mut previous: Option<String> = None;
    let mut out = Vec::new();
    let first = rows.first().map_or(0, |r| r.version);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(
            row.version,
            first + i as u64,
            "versions are contiguous from {first}"
        );
        let st = statement_of(row);
        let errors = validator.errors(&st);
        assert!(
            errors.is_empty(),
            "v{} fails the schema: {errors:?}",
            row.version
        );
        assert_eq!(
            st["subject"][0]["name"],
            json!(format!("{uri}@v{}", row.version))
        );
        assert_eq!(
            st["subject"][0]["digest"]["sha256"],
            json!(row.state_digest.to_hex())
        );
        assert_eq!(
            row.previous_attestation_digest.map(|d| d.to_hex()),
            previous,
            "chain at v{}",
            row.version
        );
        if i == 0 {
            assert_eq!(st["predicateType"], "https://makoto.dev/origin/v1");
            if first > 0 {
                assert_eq!(
                    st["predicate"]["delta"]["baseline"]["checkpointVersion"],
                    json!(first),
                    "a chain that does not start at version 0 starts from a checkpoint baseline"
                );
            }
        } else {
            assert_eq!(st["predicateType"], "https://makoto.dev/transform/v1");
            assert_eq!(
                st["predicate"]["inputs"][0]["attestationRef"],
                json!(format!(
                    "urn:makoto:attestation:sha256:{}",
                    previous.clone().unwrap()
                ))
            );
        }
        match key {
            Some(k) => {
                let env = makoto_core::dsse::Envelope::from_json(row.envelope.as_bytes()).unwrap();
                let trusted = makoto_core::verify::TrustedKeys::new(vec![k.public_key().clone()]);
                makoto_core::verify::verify_statement(&env, &trusted).unwrap();
                // Signed alone is L1: L2 also needs a time-stamp and an identity (levels.md).
                assert_eq!(row.level.as_str(), "L1");
                assert_eq!(
                    row.keyid.as_ref().map(|k| k.as_str()),
                    Some(k.keyid().as_str())
                );
            }
            None => {
                assert_eq!(row.level.as_str(), "L1");
                assert!(row.keyid.is_none());
            }
        }
        previous = Some(row.attestation_digest.to_hex());
        out.push(st);
    }
    out
}

/// The SHA-256 of every file named by the files table, recomputed from disk, must match.
pub fn check_file_digests(table: &Path, rows: &[FileRow]) {
    for r in rows {
        if r.action.as_str() == "remove" {
            continue;
        }
        if r.sha256.is_none() {
            assert!(
                !table.join(&r.path).exists(),
                "v{} {}: recorded as unavailable but the file is there",
                r.version,
                r.path
            );
            continue;
        }
        let bytes =
            std::fs::read(table.join(&r.path)).unwrap_or_else(|e| panic!("{}: {e}", r.path));
        assert_eq!(
            r.sha256.map(|d| d.to_hex()),
            Some(sha256_hex(&bytes)),
            "v{} {}",
            r.version,
            r.path
        );
        assert_eq!(r.size, Some(bytes.len() as u64));
        if let (Some(dv_file), Some(dv_sha)) = (&r.dv_file, r.dv_sha256) {
            let dv_bytes = std::fs::read(table.join(dv_file)).unwrap();
            assert_eq!(dv_sha.to_hex(), sha256_hex(&dv_bytes), "DV of {}", r.path);
        }
    }
}

/// Every version's state digest equals the independent recomputation.
pub async fn check_state_digests(table: &Path, rows: &[AttestationRow]) {
    for row in rows {
        let missing = if row.data_availability.as_str() == "complete" {
            MissingFiles::Fail
        } else {
            MissingFiles::Unavailable
        };
        let expected = independent_state_digest_with(table, row.version, missing).await;
        assert_eq!(
            row.state_digest.to_hex(),
            expected,
            "state digest of v{}",
            row.version
        );
    }
}

/// The commit digests: file digest over the raw bytes, actions digest over the canonical lines
/// (recomputed here with serde_json's sorted maps, which match JCS for these logs).
pub fn check_commit_digests(table: &Path, rows: &[AttestationRow]) {
    for row in rows {
        let bytes =
            std::fs::read(table.join(format!("_delta_log/{:020}.json", row.version))).unwrap();
        assert_eq!(row.commit_file_digest.to_hex(), sha256_hex(&bytes));
        let mut canon = Vec::new();
        for line in std::str::from_utf8(&bytes).unwrap().lines() {
            if line.trim().is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(line).unwrap();
            canon.extend(serde_json::to_vec(&v).unwrap());
            canon.push(b'\n');
        }
        assert_eq!(
            row.commit_digest.to_hex(),
            sha256_hex(&canon),
            "actions digest of v{}",
            row.version
        );
    }
}

pub fn counts_by_version(rows: &[FileRow]) -> BTreeMap<u64, usize> {
    let mut m = BTreeMap::new();
    for r in rows {
        *m.entry(r.version).or_default() += 1;
    }
    m
}

// ---------------------------------------------------------------------------------------------
// Child processes: the test binary re-runs itself with `--ignored --exact <entry>` and an
// environment variable telling the entry point what to do.

pub struct ChildOutput {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

pub fn run_child(entry: &str, envs: &[(&str, String)]) -> ChildOutput {
    let out_file = tempfile::NamedTempFile::new().unwrap();
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            entry,
            "--nocapture",
            "--test-threads=1",
        ])
        .env("MAKOTO_CHILD_OUT", out_file.path())
        .env_remove("MAKOTO_KEY")
        .env_remove("MAKOTO_WAREHOUSE")
        .env_remove("RUST_LOG")
        .env_remove("MAKOTO_PKCS11_MODULE")
        .env_remove("MAKOTO_PKCS11_PIN")
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    ChildOutput {
        code: output.status.code(),
        stdout: std::fs::read_to_string(out_file.path()).unwrap_or_default(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs `makoto <args>` in a child process.
pub fn makoto(args: &[&str]) -> ChildOutput {
    makoto_env(args, &[])
}

pub fn makoto_env(args: &[&str], env: &[(&str, String)]) -> ChildOutput {
    let mut argv = vec!["makoto".to_owned()];
    argv.extend(args.iter().map(|s| s.to_string()));
    let mut envs = vec![("MAKOTO_CLI_ARGS", serde_json::to_string(&argv).unwrap())];
    envs.extend(env.iter().cloned());
    run_child("cli::child_entry", &envs)
}

// ---------------------------------------------------------------------------------------------
// Stream windows: an RFC 6962 tree and key files, written out here independently of makoto.

/// RFC 6962 leaf hash of a record's bytes.
pub fn rfc6962_leaf(bytes: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(bytes);
    h.finalize().into()
}

/// RFC 6962 Merkle tree hash.
pub fn rfc6962_root(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves.len() {
        0 => Sha256::digest(b"").into(),
        1 => leaves[0],
        n => {
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            let mut h = Sha256::new();
            h.update([1u8]);
            h.update(rfc6962_root(&leaves[..k]));
            h.update(rfc6962_root(&leaves[k..]));
            h.finalize().into()
        }
    }
}

/// `makoto keygen <dir>/k`: the private and public key file paths.
pub fn keyfiles(dir: &Path) -> (String, String) {
    let prefix = dir.join("k");
    assert_eq!(makoto(&["keygen", prefix.to_str().unwrap()]).code, Some(0));
    (
        format!("{}.key", prefix.display()),
        format!("{}.pub", prefix.display()),
    )
}

/// The commands that only read a warehouse, each pointed at `warehouse`: verify, check, dbom,
/// prove (of `file` at `version`) and head.
pub fn read_only_runs<'a>(
    table: &'a str,
    warehouse: &'a str,
    key: &'a str,
    public: &'a str,
    file: &'a str,
    version: &'a str,
) -> Vec<Vec<&'a str>> {
    vec![
        vec!["verify", table, "--warehouse", warehouse, "--trust", public],
        vec!["check", table, "--warehouse", warehouse, "--trust", public],
        vec!["dbom", table, "--warehouse", warehouse, "--key", key],
        vec![
            "prove",
            table,
            "--warehouse",
            warehouse,
            "--file",
            file,
            "--version",
            version,
        ],
        vec!["head", "--warehouse", warehouse, "--key", key],
    ]
}

/// The single `error:` line of a run that could not be done (exit 2).
pub fn sole_error<'a>(args: &[&str], out: &'a ChildOutput) -> &'a str {
    assert_eq!(out.code, Some(2), "{args:?}: {} {}", out.stdout, out.stderr);
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{args:?}: {}", out.stderr);
    errors[0]
}

/// `makoto sql --format json QUERY` on a warehouse: the rows, after asserting exit 0.
pub fn sql_json(warehouse: &Path, query: &str) -> serde_json::Value {
    let out = makoto(&[
        "sql",
        "--warehouse",
        warehouse.to_str().unwrap(),
        "--format",
        "json",
        query,
    ]);
    assert_eq!(out.code, Some(0), "{query}: {}", out.stderr);
    serde_json::from_str(out.stdout.trim()).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Test servers started by a script in scripts/ (garage-server, azurite-server, gcs-server,
// kafka-server):
// `SCRIPT DIR` prints `NAME=value` lines once the server is ready; `SCRIPT --stop DIR` stops it.

/// Starts the server of `script` (relative to the repository) in `dir`, killed by its watchdog
/// once this process exits (`watch_var` names the script's watch-pid variable): the lines it
/// printed, or why it could not start.
pub fn start_server(
    script: &str,
    dir: &Path,
    watch_var: &str,
) -> Result<Vec<(String, String)>, String> {
    let out = std::process::Command::new("bash")
        .arg(repo_root().join(script))
        .arg(dir)
        .env(watch_var, std::process::id().to_string())
        .output()
        .map_err(|e| format!("cannot run {script}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{script} exited with {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

/// Stops the server `start_server` started in `dir`.
pub fn stop_server(script: &str, dir: &Path) {
    let _ = std::process::Command::new("bash")
        .arg(repo_root().join(script))
        .arg("--stop")
        .arg(dir)
        .status();
}

/// Page files under the warehouse (`system/makoto/state/<aa>/<id>.page`), by page id.
pub fn page_files(wh: &Path) -> Vec<(String, PathBuf)> {
    let mut pages: Vec<(String, PathBuf)> = std::fs::read_dir(wh.join("system/makoto/state"))
        .unwrap()
        .map(|d| d.unwrap().path())
        .filter(|d| d.is_dir() && d.file_name().unwrap().len() == 2)
        .flat_map(|d| std::fs::read_dir(d).unwrap())
        .map(|f| f.unwrap().path())
        .filter(|f| f.extension().is_some_and(|e| e == "page"))
        .map(|f| (f.file_stem().unwrap().to_str().unwrap().to_owned(), f))
        .collect();
    pages.sort();
    pages
}
