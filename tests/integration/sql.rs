//! SQL over attestations and lineage, cross-table transforms, the gate and DBOMs, on a
//! warehouse built in the test:
//!
//! ```text
//! orders (5 versions, incl. delete + vacuum) ──┐
//!                                              ├─ totals ─┐
//!                                              │          ├─ report
//! customers (2 versions) ──────────────────────┴──────────┘
//! events (unsigned, L1) ── events_copy (transform under --allow-unattested)
//! ```
//!
//! Golden files: `tests/golden/sql/*.txt`; regenerate with
//! `MAKOTO_BLESS=1 cargo test --locked --test integration sql::`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use makoto_core::attestation::{InputPolicy, attestation_ref};
use makoto_core::keys::Signer;
use makoto_core::verify::TrustedKeys;
use makoto_delta::gate::{self, GateOptions, Upstream};
use makoto_delta::verify::RecordSigner;
use makoto_delta::{
    AttestOptions, Location, SourceTable, StorageOptions, Verifier, VerifyMode, VerifyOptions,
};
use makoto_sql::transform::{SqlTransform, WriteMode};
use makoto_sql::{MakotoSession, OutputFormat, SessionOptions, UserTable, format_batches};
use makoto_testkit::{SampleTable, rows};
use serde_json::Value;

use crate::support::{self, Run, SchemaValidator, attestation_rows, key, sha256_hex, store};

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    warehouse: PathBuf,
}

impl Fixture {
    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
    fn s(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_owned()
    }
    fn trust(&self) -> TrustedKeys {
        TrustedKeys::new(vec![key(1).public_key().clone()])
    }
    async fn session(&self) -> MakotoSession {
        let tables = ["orders", "customers", "totals", "report", "events"]
            .iter()
            .map(|n| UserTable::parse(&format!("{n}={}", self.s(n))).unwrap())
            .collect();
        MakotoSession::open_with(
            &Location::existing(self.warehouse.to_str().unwrap()).unwrap(),
            SessionOptions {
                storage: StorageOptions::default(),
                trust: self.trust(),
                tables,
            },
        )
        .await
        .unwrap()
    }
    /// Replaces the fixture's directory in query output.
    fn scrub(&self, text: &str) -> String {
        let uri = support::table_uri(&self.root);
        text.replace(&uri, "<root>")
            .replace(self.root.to_str().unwrap(), "<root>")
    }
}

fn transform(
    f: &Fixture,
    name: &str,
    sql: &str,
    inputs: &[&str],
    output: &str,
    policy: InputPolicy,
) -> SqlTransform {
    SqlTransform {
        name: name.into(),
        query: sql.into(),
        inputs: inputs
            .iter()
            .map(|n| UserTable::parse(&format!("{n}={}", f.s(n))).unwrap())
            .collect(),
        output: Location::create(&f.s(output)).unwrap(),
        mode: WriteMode::Append,
        policy,
        input_check: VerifyMode::Deep,
    }
}

async fn build() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    let warehouse = root.join("warehouse");
    let f = Fixture {
        _dir: dir,
        root,
        warehouse,
    };

    let mut orders = SampleTable::create(&f.path("orders")).await.unwrap();
    orders.append(rows(0..40, "eu").unwrap()).await.unwrap();
    orders.append(rows(40..70, "us").unwrap()).await.unwrap();
    // Attest before VACUUM deletes the removed files (docs/operations.md).
    Run::new(&f.path("orders"), &f.warehouse)
        .run()
        .await
        .unwrap();
    orders.delete("id < 10").await.unwrap();
    orders.vacuum_all().await.unwrap();
    let mut customers = SampleTable::create(&f.path("customers")).await.unwrap();
    customers.append(rows(0..5, "eu").unwrap()).await.unwrap();
    let mut events = SampleTable::create(&f.path("events")).await.unwrap();
    events.append(rows(0..3, "eu").unwrap()).await.unwrap();

    for t in ["orders", "customers"] {
        Run::new(&f.path(t), &f.warehouse).run().await.unwrap();
    }
    Run::new(&f.path("events"), &f.warehouse)
        .unsigned()
        .run()
        .await
        .unwrap();

    let st = store(&f.warehouse).await;
    let trust = f.trust();
    let signer = || Some(key(1) as Arc<dyn Signer>);
    transform(
        &f,
        "regional totals",
        "SELECT region, sum(amount) AS total, count(*) AS n FROM orders GROUP BY region",
        &["orders"],
        "totals",
        InputPolicy::RequireVerified,
    )
    .run(&st, &trust, signer(), AttestOptions::default())
    .await
    .unwrap();
    transform(
        &f,
        "report",
        "SELECT t.region, t.total, c.name FROM totals t JOIN customers c ON t.region = c.region",
        &["totals", "customers"],
        "report",
        InputPolicy::RequireVerified,
    )
    .run(&st, &trust, signer(), AttestOptions::default())
    .await
    .unwrap();
    transform(
        &f,
        "copy events",
        "SELECT * FROM events",
        &["events"],
        "events_copy",
        InputPolicy::AllowUnattested,
    )
    .run(&st, &trust, signer(), AttestOptions::default())
    .await
    .unwrap();

    // One recorded verification, for the verifications table.
    let source = SourceTable::open(
        Location::existing(&f.s("report")).unwrap(),
        &StorageOptions::default(),
    )
    .unwrap();
    let report = Verifier::new(
        &source,
        &st,
        &trust,
        VerifyOptions {
            record: Some(RecordSigner::Signed(key(1))),
            ..VerifyOptions::default()
        },
    )
    .run()
    .await
    .unwrap();
    assert!(report.verified && report.recorded, "{report:?}");
    f
}

fn envelope_statement(envelope: &str) -> Value {
    let env: Value = serde_json::from_str(envelope).unwrap();
    let payload = base64::engine::general_purpose::STANDARD
        .decode(env["payload"].as_str().unwrap())
        .unwrap();
    serde_json::from_slice(&payload).unwrap()
}

#[tokio::test]
async fn transform_inputs_are_the_inputs_attested_subjects() {
    let f = build().await;
    let validator = SchemaValidator::new();
    let report = attestation_rows(&f.warehouse, &f.path("report")).await;
    assert_eq!(report.len(), 1);
    let stmt = envelope_statement(&report[0].envelope);
    assert!(
        validator.errors(&stmt).is_empty(),
        "{:?}",
        validator.errors(&stmt)
    );
    assert_eq!(stmt["predicateType"], "https://makoto.dev/transform/v1");
    assert_eq!(stmt["predicate"]["transform"]["name"], "report");
    assert_eq!(
        stmt["predicate"]["transform"]["parameters"]["query"],
        "SELECT t.region, t.total, c.name FROM totals t JOIN customers c ON t.region = c.region"
    );
    assert_eq!(stmt["predicate"]["verification"]["inputHashVerified"], true);
    let inputs = stmt["predicate"]["inputs"].as_array().unwrap();
    assert_eq!(inputs.len(), 2);
    for (input, table) in inputs.iter().zip(["totals", "customers"]) {
        let rows = attestation_rows(&f.warehouse, &f.path(table)).await;
        let last = rows.last().unwrap();
        // The input is the version current at the time, attested: subject, state digest and
        // attestation reference all equal that row's.
        assert_eq!(input["name"], last.subject.as_str());
        assert_eq!(
            input["digest"]["sha256"],
            last.state_digest.to_hex().as_str()
        );
        assert_eq!(
            input["attestationRef"],
            attestation_ref(&last.attestation_digest).as_str()
        );
        assert_eq!(input["makotoLevel"], "L1", "signed, not time-stamped");
        assert_eq!(input["delta"]["alias"], table);
        assert_eq!(input["delta"]["check"], "verified-deep");
        // The commit digest recorded is the SHA-256 of the input's commit file, hashed here.
        let commit = std::fs::read(
            f.path(table)
                .join(format!("_delta_log/{:020}.json", last.version)),
        )
        .unwrap();
        assert_eq!(
            input["delta"]["commitDigest"]["sha256"],
            sha256_hex(&commit)
        );
    }
    // The output's rows are what the query computed: one per customer of a region with totals.
    let batches = f
        .session()
        .await
        .sql("SELECT count(*) AS n FROM report")
        .await
        .unwrap();
    let text = format_batches(&batches, OutputFormat::Csv).unwrap();
    assert_eq!(text.trim(), "n\n5");

    // The allow-unattested transform records that its input was not verified.
    let copy = attestation_rows(&f.warehouse, &f.path("events_copy")).await;
    let stmt = envelope_statement(&copy[0].envelope);
    assert!(validator.errors(&stmt).is_empty());
    let input = &stmt["predicate"]["inputs"][0];
    assert_eq!(input["delta"]["check"], "unverified");
    assert_eq!(
        stmt["predicate"]["verification"]["inputHashVerified"],
        false
    );
    assert_eq!(
        stmt["predicate"]["transform"]["parameters"]["inputPolicy"],
        "allow-unattested"
    );
}

#[tokio::test]
async fn transform_refuses_unverified_inputs_without_override() {
    let f = build().await;
    let st = store(&f.warehouse).await;
    let err = transform(
        &f,
        "copy events",
        "SELECT * FROM events",
        &["events"],
        "refused",
        InputPolicy::RequireVerified,
    )
    .run(&st, &f.trust(), Some(key(1)), AttestOptions::default())
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("input events"), "{msg}");
    assert!(msg.contains("--allow-unattested"), "{msg}");
    assert!(
        !f.path("refused").join("_delta_log").exists(),
        "nothing written for a refused transform"
    );
}

fn golden(name: &str, actual: &str) {
    let path = support::repo_root().join(format!("tests/golden/sql/{name}.txt"));
    if std::env::var_os("MAKOTO_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "missing golden file {}; run MAKOTO_BLESS=1 cargo test --locked --test integration sql::",
            path.display()
        )
    });
    assert_eq!(actual, expected, "golden file {}", path.display());
}

/// Queries whose results do not depend on time or random file names.
const GOLDEN: &[(&str, &str)] = &[
    (
        "attestations",
        "SELECT regexp_replace(table_uri, '.*/', '') AS t, version, operation, predicate_type, level, files_added, files_removed FROM system.makoto.attestations ORDER BY t, version",
    ),
    (
        "lineage_of_report",
        "SELECT depth, regexp_replace(subject, '.*/', '') AS subject, edge, regexp_replace(downstream, '.*/', '') AS downstream, attested, level, transform_name FROM makoto_lineage('report') ORDER BY depth, subject",
    ),
    (
        "lineage_edges",
        "SELECT regexp_replace(subject, '.*/', '') AS subject, edge, regexp_replace(input_name, '.*/', '') AS input, input_level, input_check FROM system.makoto.lineage WHERE edge = 'input' ORDER BY subject, input",
    ),
    (
        "recursive_cte",
        "WITH RECURSIVE up(subject, depth) AS (SELECT input_name, 1 FROM system.makoto.lineage WHERE subject LIKE '%/report@v0' AND edge = 'input' UNION ALL SELECT l.input_name, up.depth + 1 FROM system.makoto.lineage l JOIN up ON l.subject = up.subject WHERE l.edge = 'input') SELECT DISTINCT regexp_replace(subject, '.*/', '') AS subject, depth FROM up ORDER BY depth, subject",
    ),
    (
        "verify_udf",
        "SELECT regexp_replace(table_uri, '.*/', '') AS t, makoto_verify(envelope) AS signature, count(*) AS n FROM system.makoto.attestations GROUP BY 1, 2 ORDER BY 1, 2",
    ),
    (
        "statement_udf",
        "SELECT version, makoto_json(makoto_statement(envelope), 'predicate.transform.name') AS transform, makoto_json(makoto_statement(envelope), 'predicate.inputs.1.delta.alias') AS second_input FROM system.makoto.attestations WHERE table_uri LIKE '%/report'",
    ),
    (
        "time_travel",
        "SELECT (SELECT count(*) FROM orders) AS orders_now, (SELECT count(*) FROM orders_v1) AS orders_v1",
    ),
];

#[tokio::test]
async fn sql_golden_results() {
    let f = build().await;
    let mut tables: Vec<UserTable> = ["orders", "report"]
        .iter()
        .map(|n| UserTable::parse(&format!("{n}={}", f.s(n))).unwrap())
        .collect();
    tables.push(UserTable::parse(&format!("orders_v1={}@v1", f.s("orders"))).unwrap());
    let session = MakotoSession::open_with(
        &Location::existing(f.warehouse.to_str().unwrap()).unwrap(),
        SessionOptions {
            storage: StorageOptions::default(),
            trust: f.trust(),
            tables,
        },
    )
    .await
    .unwrap();
    for (name, query) in GOLDEN {
        let batches = session
            .sql(query)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let text = format_batches(&batches, OutputFormat::Table).unwrap();
        golden(name, &format!("{query}\n\n{}\n", f.scrub(&text)));
    }
}

/// The SQL blocks of docs/sql.md, each with its `-- expect:` line.
fn documented_queries() -> Vec<(String, bool)> {
    let doc = std::fs::read_to_string(support::repo_root().join("docs/sql.md")).unwrap();
    let mut out = Vec::new();
    let mut block: Option<String> = None;
    for line in doc.lines() {
        match (&mut block, line.trim()) {
            (None, "```sql") => block = Some(String::new()),
            (Some(b), "```") => {
                let rows = b.contains("-- expect: rows");
                let none = b.contains("-- expect: none");
                assert!(
                    rows || none,
                    "docs/sql.md block without an -- expect: line:\n{b}"
                );
                out.push((b.clone(), rows));
                block = None;
            }
            (Some(b), _) => {
                b.push_str(line);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    out
}

#[tokio::test]
async fn the_documented_queries_run() {
    let f = build().await;
    let session = f.session().await;
    let queries = documented_queries();
    assert!(
        queries.len() >= 10,
        "docs/sql.md has {} queries",
        queries.len()
    );
    for (q, expect_rows) in queries {
        let batches = session
            .sql(&q)
            .await
            .unwrap_or_else(|e| panic!("documented query failed: {e}\n{q}"));
        let n: usize = batches.iter().map(|b| b.num_rows()).sum();
        if expect_rows {
            assert!(n > 0, "documented query returned no rows:\n{q}");
        } else {
            assert_eq!(n, 0, "documented query should return no rows:\n{q}");
        }
    }
}

async fn gate(f: &Fixture, table: &str, upstream: Upstream) -> gate::GateReport {
    let st = store(&f.warehouse).await;
    let source = SourceTable::open(
        Location::existing(&f.s(table)).unwrap(),
        &StorageOptions::default(),
    )
    .unwrap();
    gate::check(
        &st,
        &f.trust(),
        &source,
        &GateOptions {
            upstream,
            // The fixture signs without time-stamps: its attestations are L1.
            min_level: makoto_core::attestation::MakotoLevel::L1,
            ..GateOptions::default()
        },
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn the_gate_passes_verified_lineage_and_fails_tampered_or_unattested_upstream() {
    let f = build().await;
    let ok = gate(&f, "report", Upstream::Check).await;
    assert!(ok.passed, "{:?}", ok.reasons);
    assert_eq!(ok.checked.len(), 4, "report, customers, orders, totals");

    // An upstream read without attestation fails the gate with --upstream, not without.
    let copy = gate(&f, "events_copy", Upstream::Check).await;
    assert!(!copy.passed);
    assert!(
        copy.reasons
            .iter()
            .any(|r| r.contains("events@v1") && r.contains("allow-unattested")),
        "{:?}",
        copy.reasons
    );
    assert!(gate(&f, "events_copy", Upstream::Ignore).await.passed);

    // Tamper with a data file two hops upstream (orders, read by totals, read by report).
    let data = walk_parquet(&f.path("orders"));
    let victim = data
        .iter()
        .find(|p| {
            let rel = p
                .strip_prefix(f.path("orders"))
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            live_in_orders(&f, &rel)
        })
        .expect("a live data file of orders");
    let mut bytes = std::fs::read(victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(victim, bytes).unwrap();

    assert!(
        gate(&f, "report", Upstream::Ignore).await.passed,
        "report itself is intact"
    );
    let bad = gate(&f, "report", Upstream::Check).await;
    assert!(!bad.passed);
    assert!(
        bad.reasons
            .iter()
            .any(|r| r.contains("/orders@v") && r.contains("data-file-changed")),
        "{:?}",
        bad.reasons
    );

    // The CLI gives exit 1 and names the reason.
    let out = support::makoto(&[
        "check",
        &f.s("report"),
        "--warehouse",
        f.warehouse.to_str().unwrap(),
        "--trust",
        &write_trust(&f),
        "--upstream",
    ]);
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("FAIL"), "{}", out.stdout);
    assert!(out.stdout.contains("data-file-changed"), "{}", out.stdout);
}

fn write_trust(f: &Fixture) -> String {
    let p = f.root.join("trusted.pub");
    std::fs::write(&p, key(1).public_key().to_spki_pem().unwrap()).unwrap();
    p.to_str().unwrap().to_owned()
}

fn walk_parquet(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() && !p.ends_with("_delta_log") {
            out.extend(walk_parquet(&p));
        } else if p.extension().is_some_and(|x| x == "parquet") {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn live_in_orders(f: &Fixture, rel: &str) -> bool {
    // Files added and never removed, from the raw log.
    let log = f.path("orders").join("_delta_log");
    let mut live = std::collections::BTreeSet::new();
    let mut names: Vec<_> = std::fs::read_dir(&log)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    names.sort();
    for p in names {
        for line in std::fs::read_to_string(p).unwrap().lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            if let Some(path) = v["add"]["path"].as_str() {
                live.insert(percent_decode(path));
            }
            if let Some(path) = v["remove"]["path"].as_str() {
                live.remove(&percent_decode(path));
            }
        }
    }
    live.contains(rel)
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[tokio::test]
async fn dbom_validates_against_the_schema_and_its_digests_match() {
    let f = build().await;
    let st = store(&f.warehouse).await;
    let source = SourceTable::open(
        Location::existing(&f.s("report")).unwrap(),
        &StorageOptions::default(),
    )
    .unwrap();
    let trust = f.trust();
    let doc = makoto_delta::dbom::build(
        &st,
        &source,
        None,
        makoto_delta::dbom::DbomVerification::Trusted(&trust, GateOptions::default()),
    )
    .await
    .unwrap();

    let errors = SchemaValidator::dbom().errors(&doc);
    assert!(errors.is_empty(), "{errors:?}");

    let report = attestation_rows(&f.warehouse, &f.path("report")).await;
    assert_eq!(
        doc["dataset"]["digest"]["sha256"],
        report[0].state_digest.to_hex().as_str()
    );
    assert_eq!(doc["dataset"]["version"], "0");
    // Sources: the origin attestations of orders and customers (version 0 of each).
    let mut sources: Vec<(String, String)> = doc["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_owned(),
                s["attestationRef"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    sources.sort();
    let mut expected = Vec::new();
    for t in ["customers", "orders"] {
        let rows = attestation_rows(&f.warehouse, &f.path(t)).await;
        expected.push((
            rows[0].subject.clone(),
            attestation_ref(&rows[0].attestation_digest),
        ));
    }
    expected.sort();
    assert_eq!(sources, expected);
    // Transformations: every transform attestation of the lineage, inputs before outputs.
    let ts = doc["transformations"].as_array().unwrap();
    let order: Vec<&str> = ts
        .iter()
        .map(|t| t["outputs"][0].as_str().unwrap())
        .collect();
    let pos = |suffix: &str| order.iter().position(|o| o.ends_with(suffix)).unwrap();
    assert!(pos("/orders@v3") < pos("/totals@v0"));
    assert!(pos("/totals@v0") < pos("/report@v0"));
    assert!(pos("/customers@v1") < pos("/report@v0"));
    for t in ts {
        let subject = t["outputs"][0].as_str().unwrap();
        let (uri, v) = makoto_core::attested::parse_subject_name(subject).unwrap();
        let path = uri.strip_prefix("file://").unwrap();
        let rows = attestation_rows(&f.warehouse, Path::new(path)).await;
        let row = rows.iter().find(|r| r.version == v).unwrap();
        assert_eq!(
            t["attestationRef"],
            attestation_ref(&row.attestation_digest).as_str()
        );
    }
    // Signed by trusted keys, but nothing is time-stamped: L1 (docs/levels.md).
    assert_eq!(doc["compliance"]["overallMakotoLevel"], "L1");
    assert_eq!(doc["verification"]["chainVerified"], true);
    assert_eq!(doc["verification"]["allSignaturesValid"], true);
    let graphs = doc["lineageGraphs"].as_array().unwrap();
    assert!(
        graphs[1]["content"]
            .as_str()
            .unwrap()
            .starts_with("digraph")
    );

    // Signed with the CLI: a DSSE envelope whose payload is the DBOM and whose signature verifies.
    let key_path = f.root.join("signer.key");
    std::fs::write(&key_path, key(1).to_pkcs8_pem().unwrap().as_bytes()).unwrap();
    let out = support::makoto(&[
        "dbom",
        &f.s("report"),
        "--warehouse",
        f.warehouse.to_str().unwrap(),
        "--key",
        key_path.to_str().unwrap(),
        "--log-only",
    ]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let env = makoto_core::dsse::Envelope::from_json(out.stdout.trim().as_bytes()).unwrap();
    assert_eq!(env.payload_type(), makoto_delta::dbom::DBOM_PAYLOAD_TYPE);
    let pae = makoto_core::dsse::pae(env.payload_type(), env.payload());
    key(1)
        .public_key()
        .verify(&pae, env.signatures()[0].sig())
        .unwrap();
    let signed: Value = serde_json::from_slice(env.payload()).unwrap();
    assert!(SchemaValidator::dbom().errors(&signed).is_empty());
    assert_eq!(signed["dataset"]["digest"], doc["dataset"]["digest"]);
}

#[tokio::test]
async fn sql_cli_formats_and_errors() {
    let f = build().await;
    let wh = f.warehouse.to_str().unwrap();
    let v = support::sql_json(
        &f.warehouse,
        "SELECT version, level FROM system.makoto.attestations WHERE table_uri LIKE '%/customers' ORDER BY version",
    );
    assert_eq!(
        v,
        serde_json::json!([{"version": 0, "level": "L1"}, {"version": 1, "level": "L1"}])
    );

    let out = support::makoto(&[
        "sql",
        "--warehouse",
        wh,
        "--format",
        "csv",
        "SELECT 1 AS one",
    ]);
    assert_eq!(out.stdout.trim(), "one\n1");

    let out = support::makoto(&["sql", "--warehouse", wh, "SELECT * FROM system.makoto.nope"]);
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("nope"), "{}", out.stderr);
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);

    let out = support::makoto(&[
        "sql",
        "--warehouse",
        wh,
        "--table",
        "bad name=/x",
        "SELECT 1",
    ]);
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("bad name=/x"), "{}", out.stderr);
}

/// The gate and signed DBOMs read lineage only from statements that verify with the keys
/// given: with a key that signed nothing there is no node, the DBOM is refused (exit 1, one
/// line naming the table) and the gate fails.
#[tokio::test]
async fn lineage_is_read_only_from_statements_the_trusted_keys_verify() {
    use makoto_core::attestation::MakotoLevel;
    use makoto_delta::lineage::{Lineage, NodeCheck};
    use makoto_delta::verify::UnsignedRows;

    let f = build().await;
    let rows = store(&f.warehouse)
        .await
        .all_attestation_rows()
        .await
        .unwrap();
    // The fixture's `events` table is attested unsigned (L1): a node only when L1 is accepted.
    let unsigned = rows.iter().filter(|r| r.keyid.is_none()).count();
    assert!(unsigned > 0);
    let strict = Lineage::verified(&rows, &f.trust(), UnsignedRows::Fail);
    assert_eq!(strict.problems().len(), unsigned, "{:?}", strict.problems());
    assert!(strict.problems().iter().all(|p| p.contains("/events@v")));
    let trusted = Lineage::verified(&rows, &f.trust(), UnsignedRows::Warn);
    assert!(trusted.problems().is_empty(), "{:?}", trusted.problems());
    assert_eq!(trusted.nodes().count(), rows.len());
    for n in trusted.nodes() {
        if n.table_uri.ends_with("/events") {
            assert!(matches!(n.check, NodeCheck::Unsigned));
            assert_eq!((n.level, &n.keyid), (MakotoLevel::L1, &None));
            continue;
        }
        let NodeCheck::Verified(v) = &n.check else {
            panic!("{} is not verified", n.subject)
        };
        assert_eq!(v.keyid(), key(1).keyid());
        assert_eq!(n.level, MakotoLevel::L1, "verified, not time-stamped");
        let row = rows
            .iter()
            .find(|r| r.table_uri == n.table_uri && r.version == n.version)
            .unwrap();
        assert_eq!(n.attestation_digest, row.attestation_digest);
    }

    let other = TrustedKeys::new(vec![key(9).public_key().clone()]);
    let untrusted = Lineage::verified(&rows, &other, UnsignedRows::Fail);
    assert_eq!(untrusted.nodes().count(), 0);
    assert_eq!(untrusted.problems().len(), rows.len());

    let pem = f.root.join("other.pub");
    std::fs::write(&pem, key(9).public_key().to_spki_pem().unwrap()).unwrap();
    let wh = f.warehouse.to_str().unwrap();
    let args = [
        "--warehouse",
        wh,
        "--trust",
        pem.to_str().unwrap(),
        "--log-only",
    ];
    let out = support::makoto(&[&["dbom", &f.s("report")][..], &args[..]].concat());
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert!(
        out.stderr.contains("/report version")
            && out.stderr.contains("verifies with the trusted keys"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);

    let out = support::makoto(&[&["check", &f.s("report"), "--upstream"][..], &args[..]].concat());
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("FAIL"), "{}", out.stdout);
}

/// A pipeline's own writes (what the Python `makoto.transform` block does): inputs pinned, two
/// commits by the pipeline's writer, both attested with the pinned inputs as a `pipeline`
/// transform whose statements validate against the schema.
#[tokio::test]
async fn pipeline_commits_are_attested_with_the_pinned_inputs() {
    use makoto_sql::transform::{PinnedInputs, attest_outputs};
    let f = build().await;
    let st = store(&f.warehouse).await;
    let inputs = [UserTable::parse(&format!("orders={}", f.s("orders"))).unwrap()];
    let pinned = PinnedInputs::pin(
        &st,
        &f.trust(),
        &inputs,
        VerifyMode::LogOnly,
        InputPolicy::RequireVerified,
        &StorageOptions::default(),
    )
    .await
    .unwrap();
    let orders_version = pinned.inputs()[0].version;
    let mut out = SampleTable::create(&f.path("pipeline_out")).await.unwrap();
    out.append(rows(0..4, "eu").unwrap()).await.unwrap();
    let output = Location::existing(&f.s("pipeline_out")).unwrap();
    let err = attest_outputs(
        &st,
        &output,
        1..=2,
        pinned.pipeline("enrich", "Python function enrich", 0),
        Some(key(1) as Arc<dyn Signer>),
        AttestOptions::default(),
    )
    .await
    .unwrap_err();
    // Version 2 does not exist yet: a range the output has not reached is refused, and
    // nothing is written (the retry below attests version 1 with the inputs).
    assert!(err.to_string().contains("version 2"), "{err}");
    out.append(rows(4..8, "us").unwrap()).await.unwrap();
    let summary = attest_outputs(
        &st,
        &output,
        1..=2,
        pinned.pipeline("enrich", "Python function enrich", 0),
        Some(key(1) as Arc<dyn Signer>),
        AttestOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        summary
            .attested
            .iter()
            .map(|a| a.version)
            .collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    let validator = SchemaValidator::new();
    let rows = attestation_rows(&f.warehouse, &f.path("pipeline_out")).await;
    for row in &rows {
        let stmt = envelope_statement(&row.envelope);
        assert!(
            validator.errors(&stmt).is_empty(),
            "{:?}",
            validator.errors(&stmt)
        );
        let transform = &stmt["predicate"]["transform"];
        let names: Vec<&str> = stmt["predicate"]["inputs"]
            .as_array()
            .map(|a| a.iter().filter_map(|i| i["name"].as_str()).collect())
            .unwrap_or_default();
        let orders_subject = format!(
            "{}@v{orders_version}",
            support::table_uri(&f.path("orders"))
        );
        if row.version == 0 {
            // Before the block: a plain commit, without the inputs.
            assert_eq!(stmt["predicateType"], "https://makoto.dev/origin/v1");
            continue;
        }
        assert_eq!(transform["type"], "https://makoto.dev/transforms/pipeline");
        assert_eq!(transform["name"], "enrich");
        assert_eq!(
            transform["parameters"]["description"],
            "Python function enrich"
        );
        assert_eq!(transform["parameters"]["inputPolicy"], "require-verified");
        assert!(transform["parameters"].get("query").is_none());
        assert!(names.contains(&orders_subject.as_str()), "{names:?}");
    }
}
