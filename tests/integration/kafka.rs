//! Kafka topics: records written through the makoto producer, windows attested by the
//! `makoto kafka attest` binary and published to makoto.dbom, roots recomputed here, and
//! `makoto kafka verify` naming injected, altered, dropped and reordered records by partition,
//! offset and window. Runs against a real Kafka-protocol broker (Tansu) started on 127.0.0.1 by
//! `scripts/kafka-server`; without one it prints why and returns, unless
//! `MAKOTO_REQUIRE_KAFKA=1` (CI), where it fails.

use std::path::{Path, PathBuf};

use makoto_kafka::{MakotoProducer, Topic};
use rstest::rstest;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::support::*;

struct Broker {
    dir: PathBuf,
    brokers: String,
}

impl Broker {
    fn start(dir: &Path) -> Result<Broker, String> {
        let lines = start_server("scripts/kafka-server", dir, "MAKOTO_KAFKA_WATCH_PID")?;
        let brokers = lines
            .into_iter()
            .find_map(|(k, v)| (k == "KAFKA_BROKERS").then_some(v))
            .ok_or("scripts/kafka-server printed no KAFKA_BROKERS")?;
        Ok(Broker {
            dir: dir.to_owned(),
            brokers,
        })
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        stop_server("scripts/kafka-server", &self.dir);
    }
}

fn broker(dir: &Path) -> Option<Broker> {
    match Broker::start(dir) {
        Ok(b) => Some(b),
        Err(reason) if std::env::var("MAKOTO_REQUIRE_KAFKA").as_deref() != Ok("1") => {
            println!("SKIPPED kafka test: {reason}");
            None
        }
        Err(reason) => panic!("MAKOTO_REQUIRE_KAFKA=1 but no broker: {reason}"),
    }
}

fn value(p: i32, i: usize) -> Vec<u8> {
    format!(r#"{{"sensor":"s{p}","seq":{i},"temp":{}}}"#, 20 + i % 7).into_bytes()
}

fn kafka_cli(args: &[&str]) -> (Option<i32>, Value, String) {
    let mut a = vec!["kafka"];
    a.extend_from_slice(args);
    a.push("--json");
    let out = makoto(&a);
    let v = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
    (out.code, v, out.stderr)
}

/// The `kafka-record/2` leaf of a record, written out from docs/streams.md ("Record
/// encodings") independently of the library.
fn record2_leaf(r: &rskafka::record::Record) -> [u8; 32] {
    fn field(out: &mut Vec<u8>, b: Option<&[u8]>) {
        match b {
            None => out.push(0),
            Some(b) => {
                out.push(1);
                out.extend((b.len() as u64).to_be_bytes());
                out.extend(b);
            }
        }
    }
    let mut data = Vec::new();
    field(&mut data, r.key.as_deref());
    field(&mut data, r.value.as_deref());
    data.extend(r.timestamp.timestamp_millis().to_be_bytes());
    data.extend((r.headers.len() as u32).to_be_bytes());
    let mut names: Vec<&String> = r.headers.keys().collect();
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for n in names {
        data.extend((n.len() as u32).to_be_bytes());
        data.extend(n.as_bytes());
        data.extend((r.headers[n].len() as u32).to_be_bytes());
        data.extend(&r.headers[n]);
    }
    rfc6962_leaf(&data)
}

/// Writes `values` to partition `p` of `topic` through the makoto producer (window of 5).
async fn produce(topic: &Topic, p: i32, values: &[Vec<u8>]) {
    let mut producer = MakotoProducer::new(topic, p, 5).await.unwrap();
    for v in values {
        producer.send(None, v.clone()).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_windows_attest_and_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(b) = broker(&tmp.path().join("broker")) else {
        return;
    };
    let topic = Topic::connect(&b.brokers, "ticks").await.unwrap();
    topic.create(2).await.unwrap();
    let p0: Vec<Vec<u8>> = (0..23).map(|i| value(0, i)).collect();
    let p1: Vec<Vec<u8>> = (0..11).map(|i| value(1, i)).collect();
    produce(&topic, 0, &p0).await;
    produce(&topic, 1, &p1).await;

    // The producer's headers: content hash of the value and window = offset / 5.
    let read = topic.read(0, 0).await.unwrap();
    assert_eq!(read.len(), 23);
    for r in &read {
        let v = r.record.value.as_ref().unwrap();
        assert_eq!(
            r.record.headers["makoto.content_hash"],
            hex::encode(Sha256::digest(v)).into_bytes()
        );
        assert_eq!(
            r.record.headers["makoto.window_id"],
            (r.offset / 5).to_string().into_bytes()
        );
        assert_eq!(
            r.record.headers["makoto.signature"],
            format!("kafka://ticks/0#window/records=5/{}", r.offset / 5).into_bytes()
        );
    }
    let read1 = topic.read(1, 0).await.unwrap();

    let (key, public) = keyfiles(tmp.path());
    let brokers = b.brokers.as_str();
    let wh = tmp.path().join("wh");
    let attest = || {
        kafka_cli(&[
            "attest",
            "--brokers",
            brokers,
            "--topic",
            "ticks",
            "--window-records",
            "5",
            "--key",
            &key,
            "--warehouse",
            wh.to_str().unwrap(),
        ])
    };
    let (code, v, err) = attest();
    assert_eq!(code, Some(0), "{err}");
    let published = v["published"].as_array().unwrap();
    // Complete windows only: 4 of partition 0 (offsets 0..20), 2 of partition 1 (0..10).
    assert_eq!(published.len(), 6, "{v}");
    for w in published {
        let (p, k) = (
            w["partition"].as_i64().unwrap(),
            w["window"].as_u64().unwrap(),
        );
        let records = if p == 0 { &read } else { &read1 };
        let leaves: Vec<[u8; 32]> = records[k as usize * 5..k as usize * 5 + 5]
            .iter()
            .map(|r| record2_leaf(&r.record))
            .collect();
        assert_eq!(w["merkleRoot"], hex::encode(rfc6962_root(&leaves)), "{w}");
    }
    assert_eq!(v["warehouseRowsWritten"], 6);
    // Exactly once: nothing new until a window fills, in the topic or the warehouse.
    let again = attest().1;
    assert_eq!(again["published"], serde_json::json!([]));
    assert_eq!(again["warehouseRowsWritten"], 0);
    // The warehouse rows are queryable with SQL, one chain per partition.
    let rows = sql_json(
        &wh,
        "SELECT table_uri, count(*) AS n, max(sequence) AS last FROM system.makoto.windows GROUP BY table_uri ORDER BY table_uri",
    );
    assert_eq!(rows[0]["table_uri"], "kafka://ticks/0", "{rows}");
    assert_eq!(rows[0]["n"], 4);
    assert_eq!(rows[1]["n"], 2);
    // Each row's digest is the SHA-256 of its envelope's payload, its key id the envelope's,
    // its version columns the window's offsets.
    let rows = sql_json(
        &wh,
        "SELECT sequence, first_version, last_version, attestation_digest, keyid, envelope FROM system.makoto.windows WHERE table_uri = 'kafka://ticks/0' ORDER BY sequence",
    );
    for (k, row) in rows.as_array().unwrap().iter().enumerate() {
        use base64::Engine;
        let env: Value = serde_json::from_str(row["envelope"].as_str().unwrap()).unwrap();
        let payload = base64::engine::general_purpose::STANDARD
            .decode(env["payload"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            row["attestation_digest"],
            hex::encode(Sha256::digest(&payload))
        );
        assert_eq!(row["keyid"], env["signatures"][0]["keyid"]);
        assert!(
            row["keyid"].as_str().is_some_and(|k| !k.is_empty()),
            "{row}"
        );
        assert_eq!(row["sequence"], k as u64 + 1);
        assert_eq!(row["first_version"], k as u64 * 5);
        assert_eq!(row["last_version"], k as u64 * 5 + 4);
    }

    // The envelopes in makoto.dbom verify with the public key and validate against the schema.
    let dbom = topic.sibling("makoto.dbom");
    let envelopes = dbom.read(0, 0).await.unwrap();
    assert_eq!(envelopes.len(), 6);
    let trusted = makoto_core::verify::TrustedKeys::new(vec![
        makoto_core::keys::PublicKey::from_spki_pem(&std::fs::read_to_string(&public).unwrap())
            .unwrap(),
    ]);
    let validator = SchemaValidator::new();
    for e in &envelopes {
        let env =
            makoto_core::dsse::Envelope::from_json(e.record.value.as_deref().unwrap()).unwrap();
        let st = makoto_core::verify::verify_statement(&env, &trusted).unwrap();
        let json = st.value().to_json();
        assert!(
            validator.errors(&json).is_empty(),
            "{:?}",
            validator.errors(&json)
        );
    }

    let verify = |topic: &str, extra: &[&str]| {
        let mut a = vec![
            "verify",
            "--brokers",
            brokers,
            "--topic",
            topic,
            "--trust",
            &public,
        ];
        a.extend_from_slice(extra);
        kafka_cli(&a)
    };
    let (code, report, err) = verify("ticks", &[]);
    assert_eq!(code, Some(0), "{report} {err}");
    assert_eq!(report["windowsChecked"], 6);

    // A record written around the wrapper is injected: named by partition, offset and window.
    let injected = topic
        .send_raw(
            0,
            rskafka::record::Record {
                key: None,
                value: Some(b"{\"sensor\":\"evil\"}".to_vec()),
                headers: Default::default(),
                timestamp: chrono::Utc::now(),
            },
        )
        .await
        .unwrap();
    assert_eq!(injected, 23);
    let (code, report, _) = verify("ticks", &[]);
    assert_eq!(code, Some(1));
    let f = &report["findings"][0];
    assert_eq!(
        (
            f["kind"].as_str(),
            f["partition"].as_i64(),
            f["offset"].as_i64(),
            f["window"].as_u64()
        ),
        (Some("record-injected"), Some(0), Some(23), Some(4)),
        "{report}"
    );
}

enum Tamper {
    Alter,
    Insert,
    Drop,
    Swap,
    Key,
    Timestamp,
    Header,
}

/// A mirror of partition 0 with record 7 (window 1, position 2) tampered, verified against the
/// source topic's attestations. Keys, timestamps and headers are covered (`kafka-record/2`),
/// not only values.
#[rstest]
#[case::altered(Tamper::Alter, "record-altered")]
#[case::injected(Tamper::Insert, "record-injected")]
#[case::dropped(Tamper::Drop, "record-dropped")]
#[case::reordered(Tamper::Swap, "records-reordered")]
#[case::key_rewritten(Tamper::Key, "record-altered")]
#[case::timestamp_rewritten(Tamper::Timestamp, "record-altered")]
#[case::header_added(Tamper::Header, "record-altered")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_mirror_is_named_by_partition_offset_and_window(
    #[case] how: Tamper,
    #[case] kind: &str,
) {
    let tmp = tempfile::tempdir().unwrap();
    let Some(b) = broker(&tmp.path().join("broker")) else {
        return;
    };
    let source = Topic::connect(&b.brokers, "orders").await.unwrap();
    source.create(1).await.unwrap();
    let values: Vec<Vec<u8>> = (0..15).map(|i| value(0, i)).collect();
    produce(&source, 0, &values).await;
    let (key, public) = keyfiles(tmp.path());
    let (code, _, err) = kafka_cli(&[
        "attest",
        "--brokers",
        &b.brokers,
        "--topic",
        "orders",
        "--window-records",
        "5",
        "--key",
        &key,
    ]);
    assert_eq!(code, Some(0), "{err}");

    // A plain consumer/producer pair copies the records (key, value, timestamp, headers) and
    // tampers with one.
    let mut mirrored: Vec<_> = source
        .read(0, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.record)
        .collect();
    match how {
        Tamper::Alter => {
            mirrored[7].value = Some(b"{\"sensor\":\"s0\",\"seq\":7,\"temp\":99}".to_vec())
        }
        Tamper::Insert => {
            let mut evil = mirrored[7].clone();
            evil.value = Some(b"{\"sensor\":\"evil\"}".to_vec());
            evil.headers.clear();
            mirrored.insert(7, evil);
        }
        Tamper::Drop => {
            mirrored.remove(7);
        }
        Tamper::Swap => mirrored.swap(7, 8),
        Tamper::Key => mirrored[7].key = Some(b"rewritten".to_vec()),
        Tamper::Timestamp => {
            mirrored[7].timestamp += chrono::Duration::milliseconds(1);
        }
        Tamper::Header => {
            mirrored[7]
                .headers
                .insert("traceparent".into(), b"00-forged".to_vec());
        }
    }
    let mirror = source.sibling("orders-mirror");
    mirror.create(1).await.unwrap();
    for r in mirrored {
        mirror.send_raw(0, r).await.unwrap();
    }
    let (code, report, err) = kafka_cli(&[
        "verify",
        "--brokers",
        &b.brokers,
        "--topic",
        "orders-mirror",
        "--as-topic",
        "orders",
        "--trust",
        &public,
    ]);
    assert_eq!(code, Some(1), "{report} {err}");
    let hit =
        report["findings"].as_array().unwrap().iter().any(|f| {
            f["kind"] == kind && f["partition"] == 0 && f["offset"] == 7 && f["window"] == 1
        });
    assert!(hit, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_windows_are_time_stamped_before_they_are_published() {
    use crate::timestamps::{Tsa, pem_json, trust_file};
    let tmp = tempfile::tempdir().unwrap();
    let Some(b) = broker(&tmp.path().join("broker")) else {
        return;
    };
    let tsa = Tsa::start(&tmp.path().join("tsa"), &[]);
    let other = Tsa::start(&tmp.path().join("other-tsa"), &[]);
    let topic = Topic::connect(&b.brokers, "stamped").await.unwrap();
    topic.create(1).await.unwrap();
    produce(&topic, 0, &(0..12).map(|i| value(0, i)).collect::<Vec<_>>()).await;
    let (key, public) = keyfiles(tmp.path());
    let brokers = b.brokers.as_str();
    let base = ["--brokers", brokers, "--topic", "stamped"];
    let mut args = vec!["attest"];
    args.extend_from_slice(&base);
    args.extend_from_slice(&["--window-records", "5", "--key", &key, "--tsa", &tsa.url]);
    let (code, v, err) = kafka_cli(&args);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(v["published"].as_array().unwrap().len(), 2, "{v}");

    // Each published envelope carries a token over its signature.
    let dbom = topic.sibling("makoto.dbom");
    for r in dbom.read(0, 0).await.unwrap() {
        let env =
            makoto_core::dsse::Envelope::from_json(r.record.value.as_deref().unwrap()).unwrap();
        assert!(
            env.signatures()[0].timestamp().is_some(),
            "offset {}",
            r.offset
        );
    }

    let keys = serde_json::json!([{"publicKey": pem_json(Path::new(&public))}]);
    let trusted = trust_file(
        tmp.path(),
        "t.json",
        keys.clone(),
        &[("test-tsa", &tsa.dir.join("ca.pem"))],
    );
    let foreign = trust_file(
        tmp.path(),
        "o.json",
        keys,
        &[("other", &other.dir.join("ca.pem"))],
    );
    let verify = |trust: &str| {
        let mut args = vec!["verify"];
        args.extend_from_slice(&base);
        args.extend_from_slice(&["--trust", trust]);
        kafka_cli(&args)
    };
    let (code, v, err) = verify(&trusted);
    assert_eq!(code, Some(0), "{err} {v}");
    assert_eq!(
        (
            v["windowsChecked"].as_u64(),
            v["windowsTimestamped"].as_u64()
        ),
        (Some(2), Some(2)),
        "{v}"
    );
    let (code, v, _) = verify(&public);
    assert_eq!(
        (code, v["windowsTimestamped"].as_u64()),
        (Some(0), Some(0)),
        "{v}"
    );
    let (code, v, _) = verify(&foreign);
    assert_eq!(code, Some(1), "{v}");
    let kinds: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["timestamp-untrusted", "timestamp-untrusted"], "{v}");

    // No key, or a TSA that is down: exit 2, nothing published.
    for extra in [
        vec!["--tsa", tsa.url.as_str()],
        vec!["--key", &key, "--tsa", "http://127.0.0.1:9/"],
    ] {
        let mut args = vec!["attest"];
        args.extend_from_slice(&base);
        args.extend_from_slice(&extra);
        let (code, _, err) = kafka_cli(&args);
        assert_eq!(code, Some(2), "{extra:?}: {err}");
    }
    assert_eq!(dbom.read(0, 0).await.unwrap().len(), 2);
}

/// Plain records, as Debezium, Kafka Connect or any unchanged producer writes them: keys,
/// values, no makoto headers.
async fn produce_plain(topic: &Topic, n: usize) {
    for i in 0..n {
        topic
            .send_raw(
                0,
                rskafka::record::Record {
                    key: Some(format!("k{i}").into_bytes()),
                    value: Some(value(0, i)),
                    headers: Default::default(),
                    timestamp: chrono::Utc::now(),
                },
            )
            .await
            .unwrap();
    }
}

/// The new user's story: a topic written by a plain producer. Attested with `--headers
/// optional`, the windows alone prove it unchanged; the signed policy, not a flag, decides
/// how `verify` and `check` treat headerless records. Under the default policy the same
/// records are findings, and `attest` says so when it signs them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_of_plain_producers_verifies_under_its_signed_header_policy() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(b) = broker(&tmp.path().join("broker")) else {
        return;
    };
    let brokers = b.brokers.as_str();
    let (key, public) = keyfiles(tmp.path());
    let topic = Topic::connect(brokers, "plain").await.unwrap();
    topic.create(1).await.unwrap();
    produce_plain(&topic, 23).await;
    let cli = |cmd: &str, topic: &str, extra: &[&str]| {
        let mut a = vec![cmd, "--brokers", brokers, "--topic", topic];
        a.extend_from_slice(extra);
        kafka_cli(&a)
    };
    let attest = |topic: &str, extra: &[&str]| {
        let mut a = vec!["--window-records", "5", "--key", &key];
        a.extend_from_slice(extra);
        cli("attest", topic, &a)
    };

    let (code, v, err) = attest("plain", &["--headers", "optional"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        (v["headers"].as_str(), v["recordEncoding"].as_str()),
        (Some("optional"), Some("kafka-record/2"))
    );
    assert_eq!(v["published"].as_array().unwrap().len(), 4, "{v}");
    assert_eq!(v["unheaderedRecords"], 20);
    assert!(!err.contains("record-injected"), "{err}");
    // The policy is in the signed statement.
    let dbom = topic.sibling("makoto.dbom").read(0, 0).await.unwrap();
    let env =
        makoto_core::dsse::Envelope::from_json(dbom[0].record.value.as_deref().unwrap()).unwrap();
    let st: Value = serde_json::from_slice(env.payload()).unwrap();
    assert_eq!(st["predicate"]["kafka"]["headers"], "optional");
    assert_eq!(st["predicate"]["kafka"]["formatVersion"], 2);

    let (code, v, err) = cli("verify", "plain", &["--trust", &public]);
    assert_eq!(code, Some(0), "{v} {err}");
    assert_eq!(
        (
            v["verified"].as_bool(),
            v["recordsChecked"].as_u64(),
            v["recordsCovered"].as_u64(),
            v["recordsWithoutHeaders"].as_u64()
        ),
        (Some(true), Some(23), Some(20), Some(23)),
        "{v}"
    );
    let (code, v, err) = cli("check", "plain", &["--trust", &public]);
    assert_eq!(code, Some(0), "{v} {err}");
    assert_eq!(
        (
            v["verified"].as_u64(),
            v["pending"].as_u64(),
            v["withoutHeaders"].as_u64()
        ),
        (Some(20), Some(3), Some(23)),
        "{v}"
    );

    // A faithful copy by a plain consumer/producer pair verifies against the source's
    // windows; one that rewrites a key does not.
    let source: Vec<_> = topic.read(0, 0).await.unwrap();
    for (name, rewrite) in [("plain-copy", None), ("plain-rekeyed", Some(12usize))] {
        let mirror = topic.sibling(name);
        mirror.create(1).await.unwrap();
        for r in &source {
            let mut rec = r.record.clone();
            if Some(r.offset as usize) == rewrite {
                rec.key = Some(b"k-other".to_vec());
            }
            mirror.send_raw(0, rec).await.unwrap();
        }
        let (code, v, _) = cli("verify", name, &["--as-topic", "plain", "--trust", &public]);
        match rewrite {
            None => assert_eq!(code, Some(0), "{v}"),
            Some(at) => {
                assert_eq!(code, Some(1), "{v}");
                let f = &v["findings"][0];
                assert_eq!(
                    (
                        f["kind"].as_str(),
                        f["offset"].as_u64(),
                        f["window"].as_u64()
                    ),
                    (Some("record-altered"), Some(at as u64), Some(2)),
                    "{v}"
                );
                let (code, c, _) = cli("check", name, &["--as-topic", "plain", "--trust", &public]);
                assert_eq!(code, Some(1), "{c}");
                assert_eq!(c["failed"].as_array().unwrap().len(), 1, "{c}");
                assert_eq!(c["failed"][0]["offset"], at as u64);
                assert_eq!(c["failed"][0]["status"]["failed"], "record-altered", "{c}");
            }
        }
    }

    // Headers that are present are still checked under `optional`: a record naming another
    // window than its offset's will never verify.
    let named = Topic::connect(brokers, "plain").await.unwrap();
    let v23 = value(0, 23);
    let headers = MakotoProducer::headers("plain", 0, &v23, 3, 5);
    named
        .send_raw(
            0,
            rskafka::record::Record {
                key: None,
                value: Some(v23),
                headers,
                timestamp: chrono::Utc::now(),
            },
        )
        .await
        .unwrap();
    let (code, c, _) = cli("check", "plain", &["--trust", &public]);
    assert_eq!(code, Some(1), "{c}");
    assert_eq!(c["failed"][0]["offset"], 23, "{c}");
    assert_eq!(
        c["failed"][0]["status"]["failed"], "window-ref-mismatch",
        "{c}"
    );

    // The same plain records under the default policy: `attest` warns, `verify` follows the
    // signed `required` and names every headerless record.
    let strict = topic.sibling("strict");
    strict.create(1).await.unwrap();
    produce_plain(&strict, 10).await;
    let (code, _, err) = attest("strict", &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("--headers optional"), "{err}");
    let (code, v, _) = cli("verify", "strict", &["--trust", &public]);
    assert_eq!(code, Some(1), "{v}");
    let kinds: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["record-injected"; 10], "{v}");

    // A topic nobody attested is not VERIFIED, though nothing is found in it.
    let bare = topic.sibling("bare");
    bare.create(1).await.unwrap();
    let mut p = MakotoProducer::new(&bare, 0, 5).await.unwrap();
    p.send(None, value(0, 0)).await.unwrap();
    let (code, v, _) = cli("verify", "bare", &["--trust", &public]);
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(
        (v["verified"].as_bool(), v["windowsChecked"].as_u64()),
        (Some(false), Some(0)),
        "{v}"
    );
}
