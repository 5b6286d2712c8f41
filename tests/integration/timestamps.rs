//! RFC 3161 time-stamps against a real TSA: OpenSSL's (`openssl ts -reply`) served on
//! 127.0.0.1 by `scripts/tsa-server`, with a CA and TSA certificate made by the test. Tokens
//! are also checked by `openssl ts -verify` and by Python's `rfc3161-client`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use base64::Engine as _;
use makoto_core::dsse::Envelope;
use serde_json::{Value, json};

use crate::support::*;

/// A running `scripts/tsa-server`; stopped on drop (its standard input closes).
pub(crate) struct Tsa {
    child: Child,
    pub(crate) url: String,
    pub(crate) dir: PathBuf,
}

impl Tsa {
    pub(crate) fn start(dir: &Path, extra: &[&str]) -> Tsa {
        Self::start_with(dir, &[], extra)
    }

    /// `init_args` go to `tsa-server init` (e.g. `--precision 0`), `extra` to `serve`.
    fn start_with(dir: &Path, init_args: &[&str], extra: &[&str]) -> Tsa {
        let script = repo_root().join("scripts/tsa-server");
        if !dir.join("ca.pem").exists() {
            let init = Command::new("python3")
                .arg(&script)
                .args(["init", dir.to_str().unwrap()])
                .args(init_args)
                .output()
                .expect("python3 runs scripts/tsa-server");
            assert!(
                init.status.success(),
                "tsa-server init: {}",
                String::from_utf8_lossy(&init.stderr)
            );
        }
        let mut child = Command::new("python3")
            .arg(&script)
            .args(["serve", dir.to_str().unwrap()])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("tsa-server printed {line:?}"))
            .to_owned();
        Tsa {
            child,
            url,
            dir: dir.to_owned(),
        }
    }
}

impl Drop for Tsa {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `makoto attest TABLE --warehouse WH ARGS…`.
fn attest_cli(table: &Path, wh: &Path, args: &[&str]) -> ChildOutput {
    let mut all = vec![
        "attest",
        table.to_str().unwrap(),
        "--warehouse",
        wh.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    makoto(&all)
}

pub(crate) fn pem_json(path: &Path) -> Value {
    json!(std::fs::read_to_string(path).unwrap())
}

/// A trust file with the key and, when given, time-stamp authorities.
pub(crate) fn trust_file(
    dir: &Path,
    name: &str,
    keys: Value,
    authorities: &[(&str, &Path)],
) -> String {
    let auths: Vec<Value> = authorities
        .iter()
        .map(|(n, p)| json!({"name": n, "certificate": pem_json(p)}))
        .collect();
    let path = dir.join(name);
    std::fs::write(
        &path,
        json!({"keys": keys, "timestampAuthorities": auths}).to_string(),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

fn verify_json(table: &Path, wh: &Path, trust: &str, extra: &[&str]) -> (i32, Value) {
    let mut args = vec![
        "verify",
        table.to_str().unwrap(),
        "--warehouse",
        wh.to_str().unwrap(),
        "--trust",
        trust,
        "--log-only",
        "--no-record",
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = makoto(&args);
    let report: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {} {}", out.stdout, out.stderr));
    (out.code.unwrap(), report)
}

fn kinds(report: &Value) -> Vec<String> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap().to_owned())
        .collect()
}

/// Verifies tokens with `rfc3161-client`: argv[1] is a JSON list of [version, token base64,
/// SHA-256 hex of the signature], argv[2] the root, argv[3] the TSA certificate.
const RFC3161_CLIENT_CHECK: &str = r#"
import base64, json, sys
from cryptography import x509
from rfc3161_client import VerifierBuilder, decode_timestamp_response

def der_len(n):
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b

root = x509.load_pem_x509_certificate(open(sys.argv[2], "rb").read())
leaf = x509.load_pem_x509_certificate(open(sys.argv[3], "rb").read())
tokens = json.loads(sys.argv[1])
for version, token, digest in tokens:
    body = bytes.fromhex("3003020100") + base64.b64decode(token)
    response = decode_timestamp_response(b"0" + der_len(len(body)) + body)
    verifier = VerifierBuilder().tsa_certificate(leaf).add_root_certificate(root).build()
    assert verifier.verify(response, bytes.fromhex(digest)), version
    assert response.tst_info.message_imprint.message.hex() == digest, version
print(f"{len(tokens)} tokens verified")
"#;

/// The token and signature of each time-stamped row, by version.
fn tokens(rows: &[makoto_delta::store::AttestationRow]) -> Vec<(u64, Vec<u8>, Vec<u8>)> {
    let mut out: Vec<_> = rows
        .iter()
        .filter_map(|r| {
            let env = Envelope::from_json(r.envelope.as_bytes()).unwrap();
            let s = &env.signatures()[0];
            s.timestamp()
                .map(|t| (r.version, t.to_vec(), s.sig().to_vec()))
        })
        .collect();
    out.sort();
    out
}

/// Copies the warehouse's rows of `table` into a new warehouse, changing the attestation rows
/// with `edit` (what an attacker with write access to the warehouse can do).
pub(crate) async fn rewritten(
    wh: &Path,
    table: &Path,
    to: &Path,
    edit: impl Fn(&mut makoto_delta::store::AttestationRow),
) {
    let uri = table_uri(table);
    let mut rows = attestation_rows(wh, table).await;
    rows.sort_by_key(|r| r.version);
    let files = file_rows(wh, table).await;
    let last = rows.last().unwrap().version;
    for r in &mut rows {
        edit(r);
    }
    let dst = store(to).await;
    let t = dst.load_files().await.unwrap();
    dst.append_files(t, &files, &uri, last, "tamper")
        .await
        .unwrap();
    let t = dst.load_attestations().await.unwrap();
    dst.append_attestations(t, &rows, &uri, last, "tamper")
        .await
        .unwrap();
}

pub(crate) fn without_token(env: &str) -> String {
    let mut v: Value = serde_json::from_str(env).unwrap();
    v["signatures"][0]
        .as_object_mut()
        .unwrap()
        .remove("timestamp");
    v.to_string()
}

fn with_token(env: &str, token: &[u8]) -> String {
    let mut v: Value = serde_json::from_str(env).unwrap();
    v["signatures"][0]["timestamp"] =
        json!(base64::engine::general_purpose::STANDARD.encode(token));
    v.to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn batches_are_time_stamped_and_verify_checks_every_token() {
    let tmp = tempfile::tempdir().unwrap();
    let tsa = Tsa::start(&tmp.path().join("tsa"), &[]);
    let other = Tsa::start(&tmp.path().join("other-tsa"), &[]);
    let table = tmp.path().join("sales");
    copy_dir(&repo_root().join("data/sample/sales"), &table);
    let wh = tmp.path().join("wh");
    let (key, pubk) = keyfiles(tmp.path());
    let started = chrono::Utc::now() - chrono::Duration::seconds(2);
    let out = attest_cli(
        &table,
        &wh,
        &["--key", &key, "--tsa", &tsa.url, "--batch-size", "4"],
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let finished = chrono::Utc::now() + chrono::Duration::seconds(2);

    // One token per batch (versions 0..=3, 4..=7, 8..=9), on the batch's last signature.
    let rows = attestation_rows(&wh, &table).await;
    let stamped = tokens(&rows);
    assert_eq!(
        stamped.iter().map(|t| t.0).collect::<Vec<_>>(),
        vec![3, 7, 9]
    );

    // OpenSSL checks each token on its own: over SHA-256 of the signature, chained to the CA.
    for (v, token, sig) in &stamped {
        let path = tmp.path().join(format!("v{v}.tst"));
        std::fs::write(&path, token).unwrap();
        let check = Command::new("openssl")
            .args(["ts", "-verify", "-token_in", "-in"])
            .arg(&path)
            .args(["-digest", &sha256_hex(sig), "-CAfile"])
            .arg(tsa.dir.join("ca.pem"))
            .arg("-untrusted")
            .arg(tsa.dir.join("tsa.pem"))
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&check.stdout).contains("Verification: OK"),
            "version {v}: {}",
            String::from_utf8_lossy(&check.stderr)
        );
    }

    // So does Python's rfc3161-client (the token wrapped in a granted TimeStampResp).
    if let Some(py) = crate::python::python() {
        let list: Vec<Value> = stamped
            .iter()
            .map(|(v, t, s)| {
                json!([
                    v,
                    base64::engine::general_purpose::STANDARD.encode(t),
                    sha256_hex(s)
                ])
            })
            .collect();
        let check = Command::new(py)
            .args(["-c", RFC3161_CLIENT_CHECK])
            .arg(serde_json::to_string(&list).unwrap())
            .arg(tsa.dir.join("ca.pem"))
            .arg(tsa.dir.join("tsa.pem"))
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "rfc3161-client: {}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&check.stdout).trim(),
            "3 tokens verified"
        );
    }

    // Every row names the token that covers it (its batch's last version) and that token's
    // genTime, as OpenSSL reads it.
    for r in &rows {
        let carrier = [3, 7, 9].into_iter().find(|c| *c >= r.version).unwrap();
        let (_, token, _) = stamped.iter().find(|t| t.0 == carrier).unwrap();
        assert_eq!(r.timestamp_version, Some(carrier), "version {}", r.version);
        assert_eq!(
            r.timestamp_gen_time_us,
            Some(openssl_gen_time(tmp.path(), token).timestamp_micros()),
            "version {}",
            r.version
        );
    }

    let keys = json!([{"publicKey": pem_json(Path::new(&pubk))}]);
    let trusted = trust_file(
        tmp.path(),
        "trust.json",
        keys.clone(),
        &[("test-tsa", &tsa.dir.join("ca.pem"))],
    );
    let (code, report) = verify_json(&table, &wh, &trusted, &["--version", "5"]);
    assert_eq!(code, 0, "{report}");
    let ts = &report["coverage"]["timestamps"];
    assert_eq!(ts["covered"], json!(true), "{report}");
    assert_eq!(ts["anchorVersion"], json!(7));
    assert_eq!(ts["authority"], json!("test-tsa"));
    let gen_time: chrono::DateTime<chrono::Utc> = ts["genTime"].as_str().unwrap().parse().unwrap();
    assert!(started <= gen_time && gen_time <= finished, "{gen_time}");

    // Trusting the TSA certificate itself works as well as its CA.
    let direct = trust_file(
        tmp.path(),
        "direct.json",
        keys.clone(),
        &[("leaf", &tsa.dir.join("tsa.pem"))],
    );
    let (code, report) = verify_json(&table, &wh, &direct, &[]);
    assert_eq!(
        (code, report["coverage"]["timestamps"]["covered"].clone()),
        (0, json!(true)),
        "{report}"
    );

    // Another authority's certificate does not make these tokens trusted.
    let wrong = trust_file(
        tmp.path(),
        "wrong.json",
        keys.clone(),
        &[("other", &other.dir.join("ca.pem"))],
    );
    let (code, report) = verify_json(&table, &wh, &wrong, &[]);
    assert_eq!(code, 1, "{report}");
    assert!(
        kinds(&report).contains(&"timestamp-untrusted".to_owned()),
        "{report}"
    );
    assert_eq!(report["outcome"], json!("failed"));

    // Without timestampAuthorities, tokens are not checked and the report says so.
    let (code, report) = verify_json(&table, &wh, &pubk, &[]);
    assert_eq!(code, 0);
    assert_eq!(report["coverage"]["timestamps"]["authorities"], json!(0));
    assert_eq!(report["coverage"]["timestamps"]["covered"], json!(false));

    // Tokens and the columns naming them stripped: the signatures still verify, but nothing
    // proves when they were made.
    let stripped = tmp.path().join("stripped");
    rewritten(&wh, &table, &stripped, |r| {
        r.envelope = without_token(&r.envelope);
        r.timestamp_gen_time_us = None;
        r.timestamp_version = None;
    })
    .await;
    let (code, report) = verify_json(&table, &stripped, &trusted, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(kinds(&report), vec!["timestamp-missing"], "{report}");
    assert_eq!(report["coverage"]["timestamps"]["covered"], json!(false));

    // Tokens stripped but the columns left: the rows claim a time-stamp no envelope carries,
    // which verify reports even when it checks no tokens.
    let claimed = tmp.path().join("claimed");
    rewritten(&wh, &table, &claimed, |r| {
        r.envelope = without_token(&r.envelope)
    })
    .await;
    let (code, report) = verify_json(&table, &claimed, &pubk, &[]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(kinds(&report), vec!["attestation-altered"; 10], "{report}");

    // A genTime column moved an hour earlier, or pointed at an earlier token.
    let earlier = tmp.path().join("earlier");
    rewritten(&wh, &table, &earlier, |r| {
        if r.version == 5 {
            r.timestamp_gen_time_us = r.timestamp_gen_time_us.map(|t| t - 3_600_000_000);
        }
        if r.version == 8 {
            r.timestamp_version = Some(7);
        }
    })
    .await;
    let (code, report) = verify_json(&table, &earlier, &trusted, &[]);
    assert_eq!(code, 1, "{report}");
    let altered: Vec<u64> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == json!("attestation-altered"))
        .map(|f| f["version"].as_u64().unwrap())
        .collect();
    assert_eq!(altered, vec![5, 8], "{report}");

    // A valid token moved onto another signature (version 7's token on version 9).
    let moved = tmp.path().join("moved");
    let token7 = stamped[1].1.clone();
    rewritten(&wh, &table, &moved, |r| {
        if r.version == 9 {
            r.envelope = with_token(&r.envelope, &token7);
        }
    })
    .await;
    let (code, report) = verify_json(&table, &moved, &trusted, &[]);
    assert_eq!(code, 1, "{report}");
    assert!(
        kinds(&report).contains(&"timestamp-invalid".to_owned()),
        "{report}"
    );

    // A token from the other TSA over the right signature: untrusted.
    let (v9, _, sig9) = &stamped[2];
    let foreign = request_token(&other.url, sig9).await;
    let swapped = tmp.path().join("swapped");
    rewritten(&wh, &table, &swapped, |r| {
        if r.version == *v9 {
            r.envelope = with_token(&r.envelope, &foreign);
        }
    })
    .await;
    let (code, report) = verify_json(&table, &swapped, &trusted, &[]);
    assert_eq!(code, 1, "{report}");
    assert!(
        kinds(&report).contains(&"timestamp-untrusted".to_owned()),
        "{report}"
    );

    // A flipped byte inside the token.
    let flipped = tmp.path().join("flipped");
    rewritten(&wh, &table, &flipped, |r| {
        if r.version == 7 {
            let mut t = token7.clone();
            let i = t.len() / 3;
            t[i] ^= 0x40;
            r.envelope = with_token(&r.envelope, &t);
        }
    })
    .await;
    let (code, report) = verify_json(&table, &flipped, &trusted, &["--version", "5"]);
    assert_eq!(code, 1, "{report}");
    assert!(
        kinds(&report)
            .iter()
            .any(|k| k == "timestamp-invalid" || k == "timestamp-untrusted"),
        "{report}"
    );
}

/// A token from the TSA at `url` over SHA-256(`sig`).
async fn request_token(url: &str, sig: &[u8]) -> Vec<u8> {
    makoto_delta::tsa::TsaClient::new(url)
        .unwrap()
        .timestamp(makoto_core::Sha256Digest::of(sig))
        .await
        .unwrap()
        .to_der()
        .to_vec()
}

/// Rotation and revocation decided by time-stamps: key A attests, is rotated out for key B,
/// which attests later versions; a revocation of A before A's time-stamps fails A's rows, one
/// after them keeps them.
#[tokio::test(flavor = "multi_thread")]
async fn rotation_and_revocation_are_judged_by_the_time_stamps() {
    let tmp = tempfile::tempdir().unwrap();
    let tsa = Tsa::start(&tmp.path().join("tsa"), &[]);
    let table = tmp.path().join("sales");
    copy_dir(&repo_root().join("data/sample/sales"), &table);
    let wh = tmp.path().join("wh");
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    for k in [&a, &b] {
        assert_eq!(makoto(&["keygen", k.to_str().unwrap()]).code, Some(0));
    }
    let attest = |key: &Path, to: &str| {
        let out = attest_cli(
            &table,
            &wh,
            &[
                "--key",
                &format!("{}.key", key.display()),
                "--tsa",
                &tsa.url,
                "--to-version",
                to,
            ],
        );
        assert_eq!(out.code, Some(0), "{}", out.stderr);
    };
    attest(&a, "4");
    let rows = attestation_rows(&wh, &table).await;
    let stamped_a = tokens(&rows);
    let gen_a = makoto_core::timestamp::TimestampToken::from_der(&stamped_a[0].1)
        .unwrap()
        .gen_time();
    // Rotate right after A's token (the TSA gives milliseconds): A valid until then, B from
    // then on; B signs after A's run ended, so after the rotation.
    let rotation = gen_a + chrono::Duration::milliseconds(1);
    attest(&b, "9");
    let pem = |k: &Path| pem_json(&PathBuf::from(format!("{}.pub", k.display())));
    let ca = tsa.dir.join("ca.pem");
    let rotated = trust_file(
        tmp.path(),
        "rotated.json",
        json!([
            {"name": "a", "publicKey": pem(&a), "validUntil": rotation.to_rfc3339()},
            {"name": "b", "publicKey": pem(&b), "validFrom": rotation.to_rfc3339()},
        ]),
        &[("tsa", &ca)],
    );
    for v in ["4", "9"] {
        let (code, report) = verify_json(&table, &wh, &rotated, &["--version", v]);
        assert_eq!(code, 0, "version {v}: {report}");
        assert_eq!(report["coverage"]["timestamps"]["covered"], json!(true));
    }

    // A revoked before its token was made: A's rows fail, B's are untouched.
    let revoked_before = trust_file(
        tmp.path(),
        "revoked-before.json",
        json!([
            {"name": "a", "publicKey": pem(&a),
             "revokedAt": (gen_a - chrono::Duration::milliseconds(1)).to_rfc3339()},
            {"name": "b", "publicKey": pem(&b)},
        ]),
        &[("tsa", &ca)],
    );
    let (code, report) = verify_json(&table, &wh, &revoked_before, &["--version", "9"]);
    assert_eq!(code, 1, "{report}");
    assert!(
        kinds(&report).contains(&"key-not-valid".to_owned()),
        "{report}"
    );

    // A revoked after its token: every version still verifies.
    let revoked_after = trust_file(
        tmp.path(),
        "revoked-after.json",
        json!([
            {"name": "a", "publicKey": pem(&a), "revokedAt": rotation.to_rfc3339()},
            {"name": "b", "publicKey": pem(&b)},
        ]),
        &[("tsa", &ca)],
    );
    let (code, report) = verify_json(&table, &wh, &revoked_after, &["--version", "9"]);
    assert_eq!(code, 0, "{report}");

    // Without its token, a revoked key's row is not accepted on its claimed signing time.
    let stripped = tmp.path().join("stripped");
    rewritten(&wh, &table, &stripped, |r| {
        if r.version <= 4 {
            r.envelope = without_token(&r.envelope);
        }
    })
    .await;
    let (code, report) = verify_json(&table, &stripped, &revoked_after, &["--version", "9"]);
    assert_eq!(code, 1, "{report}");
    assert!(
        kinds(&report).contains(&"key-not-valid".to_owned()),
        "{report}"
    );
}

/// A TSA that is down or refuses: attest exits 2 naming it and writes nothing.
#[test]
fn a_tsa_that_is_down_stops_attest_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let table = tmp.path().join("sales");
    copy_dir(&repo_root().join("data/sample/sales"), &table);
    let (key, _) = keyfiles(tmp.path());
    let failing = Tsa::start(&tmp.path().join("tsa"), &["--fail"]);
    for url in ["http://127.0.0.1:9/", failing.url.as_str()] {
        let wh = tmp.path().join("wh");
        let out = attest_cli(&table, &wh, &["--key", &key, "--tsa", url]);
        assert_eq!(out.code, Some(2), "{}", out.stderr);
        let err = sole_error(&["attest"], &out);
        assert!(err.contains(url), "{err}");
        assert!(!wh.exists(), "nothing written for {url}");
    }
    // And without a key there is nothing to time-stamp.
    let out = makoto(&[
        "attest",
        table.to_str().unwrap(),
        "--warehouse",
        tmp.path().join("wh").to_str().unwrap(),
        "--tsa",
        &failing.url,
    ]);
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("--key"), "{}", out.stderr);
}

/// `transform --tsa` time-stamps the output's attestation like `attest --tsa`.
#[tokio::test(flavor = "multi_thread")]
async fn transform_outputs_are_time_stamped() {
    let tmp = tempfile::tempdir().unwrap();
    let tsa = Tsa::start(&tmp.path().join("tsa"), &[]);
    let table = tmp.path().join("sales");
    copy_dir(&repo_root().join("data/sample/sales"), &table);
    let wh = tmp.path().join("wh");
    let out_table = tmp.path().join("out");
    let (key, pubk) = keyfiles(tmp.path());
    let attest = attest_cli(&table, &wh, &["--key", &key]);
    assert_eq!(attest.code, Some(0), "{}", attest.stderr);
    let input = format!("s={}", table.display());
    let run = makoto(&[
        "transform",
        "--sql",
        "SELECT * FROM s",
        "--input",
        &input,
        "--output",
        out_table.to_str().unwrap(),
        "--warehouse",
        wh.to_str().unwrap(),
        "--key",
        &key,
        "--tsa",
        &tsa.url,
    ]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let rows = attestation_rows(&wh, &out_table).await;
    assert_eq!(tokens(&rows).len(), 1, "one batch, one token");
    let trusted = trust_file(
        tmp.path(),
        "trust.json",
        json!([{"publicKey": pem_json(Path::new(&pubk))}]),
        &[("tsa", &tsa.dir.join("ca.pem"))],
    );
    let (code, report) = verify_json(&out_table, &wh, &trusted, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["coverage"]["timestamps"]["covered"], json!(true));
}

/// L2 is earned, not claimed: a signature, a trusted time-stamp and the key's bound identity,
/// all three checked by the verifier and the gate. Missing any one gives L1; a statement that
/// names another identity, or a table outside the key's role, fails.
#[tokio::test(flavor = "multi_thread")]
async fn l2_needs_a_trusted_time_stamp_and_a_bound_identity() {
    let tmp = tempfile::tempdir().unwrap();
    let tsa = Tsa::start(&tmp.path().join("tsa"), &[]);
    let table = tmp.path().join("sales");
    copy_dir(&repo_root().join("data/sample/sales"), &table);
    let wh = tmp.path().join("wh");
    let (key, pubk) = keyfiles(tmp.path());
    let identity = "spiffe://corp.example/jobs/nightly";
    let out = attest_cli(
        &table,
        &wh,
        &[
            "--key",
            &key,
            "--tsa",
            &tsa.url,
            "--identity",
            identity,
            "--json",
        ],
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let summary: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(summary["level"], json!("L2"), "claimed by the attestor");
    let rows = attestation_rows(&wh, &table).await;
    for r in &rows {
        let st = statement_of(r);
        let party = if r.version == 0 {
            "collector"
        } else {
            "executor"
        };
        assert_eq!(
            st["predicate"][party]["id"],
            json!(identity),
            "v{}",
            r.version
        );
        assert_eq!(r.level.as_str(), "L2");
    }

    let pem = pem_json(Path::new(&pubk));
    let ca = tsa.dir.join("ca.pem");
    let uri = table_uri(&table);
    let trust = |name: &str, key: Value, tsas: &[(&str, &Path)]| {
        trust_file(tmp.path(), name, json!([key]), tsas)
    };
    let bound = trust(
        "bound.json",
        json!({"publicKey": pem, "identity": identity, "tables": [uri.clone()]}),
        &[("tsa", &ca)],
    );
    let (code, report) = verify_json(&table, &wh, &bound, &[]);
    assert_eq!(
        (code, report["level"].clone()),
        (0, json!("L2")),
        "{report}"
    );
    let gate = |trust: &str| {
        makoto(&[
            "check",
            table.to_str().unwrap(),
            "--warehouse",
            wh.to_str().unwrap(),
            "--trust",
            trust,
            "--log-only",
        ])
    };
    let passed = gate(&bound);
    assert_eq!(passed.code, Some(0), "{}{}", passed.stdout, passed.stderr);

    // Each missing piece gives L1, and the gate (default --min-level 2) fails.
    for (name, key, tsas) in [
        (
            "no-identity.json",
            json!({"publicKey": pem}),
            vec![("tsa", ca.as_path())],
        ),
        (
            "no-tsa.json",
            json!({"publicKey": pem, "identity": identity}),
            vec![],
        ),
    ] {
        let t = trust(name, key, &tsas);
        let (code, report) = verify_json(&table, &wh, &t, &[]);
        assert_eq!(
            (code, report["level"].clone()),
            (0, json!("L1")),
            "{name}: {report}"
        );
        let failed = gate(&t);
        assert_eq!(failed.code, Some(1), "{name}: {}", failed.stdout);
        assert!(
            failed.stdout.contains("below the required L2"),
            "{}",
            failed.stdout
        );
    }

    // Another identity, or a table outside the key's role: errors.
    for (name, key, kind) in [
        (
            "other-identity.json",
            json!({"publicKey": pem, "identity": "spiffe://corp.example/jobs/other"}),
            "identity-mismatch",
        ),
        (
            "other-tables.json",
            json!({"publicKey": pem, "identity": identity, "tables": [format!("{uri}-other")]}),
            "key-out-of-scope",
        ),
    ] {
        let t = trust(name, key, &[("tsa", &ca)]);
        let (code, report) = verify_json(&table, &wh, &t, &[]);
        assert_eq!(code, 1, "{name}: {report}");
        assert!(
            kinds(&report).contains(&kind.to_owned()),
            "{name}: {report}"
        );
        assert_eq!(report["level"], Value::Null);
        assert_eq!(gate(&t).code, Some(1), "{name}");
    }
}

/// `node` with scripts/sigstore's packages installed (scripts/test installs them), or `None`
/// (a skip, unless MAKOTO_REQUIRE_NODE=1).
fn sigstore_verifier() -> Option<PathBuf> {
    let script = repo_root().join("scripts/sigstore/verify.mjs");
    let installed = repo_root()
        .join("scripts/sigstore/node_modules/@sigstore/verify")
        .exists();
    let node = Command::new("node").arg("--version").output();
    if installed && node.is_ok_and(|o| o.status.success()) {
        return Some(script);
    }
    let reason =
        "node or scripts/sigstore/node_modules is missing; run scripts/test, which installs them";
    if std::env::var("MAKOTO_REQUIRE_NODE").is_ok_and(|v| v == "1") {
        panic!("{reason}");
    }
    eprintln!("SKIPPED: {reason}");
    None
}

fn sigstore_verify(
    script: &Path,
    public_key: &str,
    chain: Option<&Path>,
    bundles: &[PathBuf],
) -> (bool, String) {
    let mut cmd = Command::new("node");
    cmd.arg(script).arg(public_key);
    if let Some(c) = chain {
        cmd.arg(c);
    }
    let out = cmd.args(bundles).output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `makoto export --format sigstore-bundle`: every bundle verifies with @sigstore/verify given
/// the public key, the time-stamped ones with one trusted RFC 3161 timestamp (the TSA's chain);
/// another key, another TSA or a changed payload fails. ECDSA P-256 keys too. The JSON Lines
/// export holds the same envelopes.
#[tokio::test(flavor = "multi_thread")]
async fn exported_sigstore_bundles_verify_with_sigstore() {
    let Some(script) = sigstore_verifier() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // @sigstore/core 3.2 reads genTime only with no fraction or exactly three digits, while
    // DER drops trailing zeros (OpenSSL writes ".12Z" for 120 ms): whole seconds here.
    let whole = ["--precision", "0"];
    let tsa = Tsa::start_with(&tmp.path().join("tsa"), &whole, &[]);
    let other = Tsa::start_with(&tmp.path().join("other"), &whole, &[]);
    let chain = |t: &Tsa, name: &str| {
        let p = tmp.path().join(name);
        let pem = format!(
            "{}{}",
            std::fs::read_to_string(t.dir.join("tsa.pem")).unwrap(),
            std::fs::read_to_string(t.dir.join("ca.pem")).unwrap()
        );
        std::fs::write(&p, pem).unwrap();
        p
    };
    let (ours, theirs) = (chain(&tsa, "chain.pem"), chain(&other, "other.pem"));
    for algorithm in ["ed25519", "ecdsa-p256"] {
        let dir = tmp.path().join(algorithm);
        let table = dir.join("sales");
        copy_dir(&repo_root().join("data/sample/sales"), &table);
        let prefix = dir.join("k");
        let kg = makoto(&["keygen", prefix.to_str().unwrap(), "--algorithm", algorithm]);
        assert_eq!(kg.code, Some(0), "{}", kg.stderr);
        let (key, pubk) = (
            format!("{}.key", prefix.display()),
            format!("{}.pub", prefix.display()),
        );
        let wh = dir.join("wh");
        let (t, w) = (table.to_str().unwrap(), wh.to_str().unwrap());
        let attest = makoto(&[
            "attest",
            t,
            "--warehouse",
            w,
            "--key",
            &key,
            "--tsa",
            &tsa.url,
            "--batch-size",
            "4",
        ]);
        assert_eq!(attest.code, Some(0), "{}", attest.stderr);
        let out = dir.join("out");
        let export = makoto(&[
            "export",
            t,
            "--warehouse",
            w,
            "--format",
            "sigstore-bundle",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_eq!(export.code, Some(0), "{}", export.stderr);
        let bundles: Vec<PathBuf> = export.stdout.lines().map(PathBuf::from).collect();
        assert_eq!(bundles.len(), 10, "{}", export.stdout);

        let (ok, report) = sigstore_verify(&script, &pubk, Some(&ours), &bundles);
        assert!(ok, "{algorithm}: {report}");
        assert_eq!(report.matches("timestamps=1").count(), 3, "{report}");

        let stamped: Vec<PathBuf> = bundles
            .iter()
            .filter(|b| b.to_str().unwrap().ends_with("-v9.sigstore.json"))
            .cloned()
            .collect();
        let (ok, report) = sigstore_verify(&script, &pubk, Some(&theirs), &stamped);
        assert!(!ok, "another TSA's chain must not verify: {report}");
        let other_key = dir.join("other");
        assert_eq!(
            makoto(&["keygen", other_key.to_str().unwrap()]).code,
            Some(0)
        );
        let (ok, report) = sigstore_verify(
            &script,
            &format!("{}.pub", other_key.display()),
            Some(&ours),
            &stamped,
        );
        assert!(!ok, "another key must not verify: {report}");

        let mut bundle: Value =
            serde_json::from_str(&std::fs::read_to_string(&bundles[5]).unwrap()).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut payload = b64
            .decode(bundle["dsseEnvelope"]["payload"].as_str().unwrap())
            .unwrap();
        let i = payload.len() / 2;
        payload[i] ^= 0x01;
        bundle["dsseEnvelope"]["payload"] = json!(b64.encode(&payload));
        let changed = dir.join("changed.sigstore.json");
        std::fs::write(&changed, bundle.to_string()).unwrap();
        let (ok, report) = sigstore_verify(&script, &pubk, Some(&ours), &[changed]);
        assert!(!ok, "a changed payload must not verify: {report}");

        // JSON Lines: the same envelopes, in version order.
        let jsonl = makoto(&[
            "export",
            t,
            "--warehouse",
            w,
            "--format",
            "jsonl",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_eq!(jsonl.code, Some(0), "{}", jsonl.stderr);
        let text = std::fs::read_to_string(jsonl.stdout.trim()).unwrap();
        let rows = attestation_rows(&wh, &table).await;
        let mut digests: Vec<(u64, String)> = rows
            .iter()
            .map(|r| (r.version, r.attestation_digest.to_hex()))
            .collect();
        digests.sort();
        let lines: Vec<String> = text
            .lines()
            .map(|l| {
                let env = Envelope::from_json(l.as_bytes()).unwrap();
                sha256_hex(env.payload())
            })
            .collect();
        assert_eq!(lines, digests.into_iter().map(|d| d.1).collect::<Vec<_>>());
    }
}

/// Unsigned attestations have no Sigstore form: export says so and writes nothing.
#[test]
fn unsigned_attestations_are_not_exported_as_bundles() {
    let tmp = tempfile::tempdir().unwrap();
    let table = tmp.path().join("sales");
    copy_dir(&repo_root().join("data/sample/sales"), &table);
    let wh = tmp.path().join("wh");
    let (t, w) = (table.to_str().unwrap(), wh.to_str().unwrap());
    assert_eq!(makoto(&["attest", t, "--warehouse", w]).code, Some(0));
    let out = tmp.path().join("out");
    let args = [
        "export",
        t,
        "--warehouse",
        w,
        "--format",
        "sigstore-bundle",
        "--out",
        out.to_str().unwrap(),
    ];
    let run = makoto(&args);
    let err = sole_error(&args, &run);
    assert!(
        err.contains("version 0") && err.contains("unsigned"),
        "{err}"
    );
    assert!(!out.exists(), "nothing written");
}

/// The `level` column is the attestor's claim, not evidence: a writer of the warehouse who
/// raises signed L1 rows to "L2" changes neither the level `verify` reports nor the gate; an
/// unsigned row that claims L2 is an altered row.
#[tokio::test(flavor = "multi_thread")]
async fn a_rewritten_level_column_earns_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let table = tmp.path().join("sales");
    copy_dir(&repo_root().join("data/sample/sales"), &table);
    let (key, pubk) = keyfiles(tmp.path());
    let wh = tmp.path().join("wh");
    let out = attest_cli(&table, &wh, &["--key", &key]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let raised = tmp.path().join("raised");
    rewritten(&wh, &table, &raised, |r| {
        r.level = makoto_core::attestation::MakotoLevel::L2;
    })
    .await;
    assert!(
        attestation_rows(&raised, &table)
            .await
            .iter()
            .all(|r| r.level.as_str() == "L2")
    );
    let (code, report) = verify_json(&table, &raised, &pubk, &[]);
    assert_eq!(
        (code, report["level"].clone()),
        (0, json!("L1")),
        "{report}"
    );
    let gate = makoto(&[
        "check",
        table.to_str().unwrap(),
        "--warehouse",
        raised.to_str().unwrap(),
        "--trust",
        &pubk,
        "--log-only",
    ]);
    assert_eq!(gate.code, Some(1), "{}", gate.stdout);
    assert!(
        gate.stdout.contains("below the required L2"),
        "{}",
        gate.stdout
    );

    let unsigned_wh = tmp.path().join("unsigned");
    let unsigned_table = tmp.path().join("unsigned-sales");
    copy_dir(&repo_root().join("data/sample/sales"), &unsigned_table);
    assert_eq!(attest_cli(&unsigned_table, &unsigned_wh, &[]).code, Some(0));
    let claimed = tmp.path().join("claimed");
    rewritten(&unsigned_wh, &unsigned_table, &claimed, |r| {
        if r.version == 4 {
            r.level = makoto_core::attestation::MakotoLevel::L2;
        }
    })
    .await;
    let (code, report) = verify_json(&unsigned_table, &claimed, &pubk, &["--allow-unsigned"]);
    assert_eq!(code, 1, "{report}");
    assert!(
        kinds(&report).contains(&"attestation-altered".to_owned()),
        "{report}"
    );
}

/// `openssl ts -verify` of a token over SHA-256 of `sig`, chained to `tsa`'s CA.
/// The token's genTime as `openssl ts -reply -token_in -text` prints it.
fn openssl_gen_time(dir: &Path, token: &[u8]) -> chrono::DateTime<chrono::Utc> {
    let path = dir.join("gen-time.tst");
    std::fs::write(&path, token).unwrap();
    let out = Command::new("openssl")
        .args(["ts", "-reply", "-token_in", "-token_out", "-text", "-in"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("Time stamp: "))
        .unwrap_or_else(|| panic!("no genTime in {text}"));
    let naive = chrono::NaiveDateTime::parse_from_str(line.trim(), "%b %e %H:%M:%S%.f %Y GMT")
        .unwrap_or_else(|e| panic!("{line}: {e}"));
    naive.and_utc()
}

fn openssl_ts_verifies(tsa: &Tsa, token: &[u8], sig: &[u8], dir: &Path) -> bool {
    let path = dir.join("check.tst");
    std::fs::write(&path, token).unwrap();
    let check = Command::new("openssl")
        .args(["ts", "-verify", "-token_in", "-in"])
        .arg(&path)
        .args(["-digest", &sha256_hex(sig), "-CAfile"])
        .arg(tsa.dir.join("ca.pem"))
        .arg("-untrusted")
        .arg(tsa.dir.join("tsa.pem"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&check.stdout).contains("Verification: OK")
}

#[test]
fn heads_and_dboms_are_time_stamped_and_anchors_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let tsa = Tsa::start(&tmp.path().join("tsa"), &[]);
    let other = Tsa::start(&tmp.path().join("other-tsa"), &[]);
    let table = tmp.path().join("sales");
    copy_dir(&repo_root().join("data/sample/sales"), &table);
    let wh = tmp.path().join("wh");
    let (key, pubk) = keyfiles(tmp.path());
    let out = attest_cli(&table, &wh, &["--key", &key]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let (t, w) = (table.to_str().unwrap(), wh.to_str().unwrap());

    // A head and a DBOM, each with a token over its signature that OpenSSL accepts.
    let head = makoto(&["head", "--warehouse", w, "--key", &key, "--tsa", &tsa.url]);
    assert_eq!(head.code, Some(0), "{}", head.stderr);
    let dbom = makoto(&[
        "dbom",
        t,
        "--warehouse",
        w,
        "--key",
        &key,
        "--tsa",
        &tsa.url,
    ]);
    assert_eq!(dbom.code, Some(0), "{}", dbom.stderr);
    let mut sigs = Vec::new();
    for (what, out) in [("head", &head), ("dbom", &dbom)] {
        let env = Envelope::from_json(out.stdout.trim().as_bytes()).unwrap();
        let s = &env.signatures()[0];
        let token = s.timestamp().unwrap_or_else(|| panic!("{what}: no token"));
        assert!(
            openssl_ts_verifies(&tsa, token, s.sig(), tmp.path()),
            "{what}"
        );
        assert!(
            !openssl_ts_verifies(&other, token, s.sig(), tmp.path()),
            "{what}"
        );
        sigs.push((token.to_vec(), s.sig().to_vec()));
    }

    // verify --anchor checks the head's token under the trust file's authorities.
    let keys = json!([{"publicKey": pem_json(Path::new(&pubk))}]);
    let with_tsa = trust_file(
        tmp.path(),
        "trust.json",
        keys.clone(),
        &[("test-tsa", &tsa.dir.join("ca.pem"))],
    );
    let with_other = trust_file(
        tmp.path(),
        "other.json",
        keys.clone(),
        &[("other", &other.dir.join("ca.pem"))],
    );
    let without = trust_file(tmp.path(), "plain.json", keys, &[]);
    let anchor = |name: &str, text: &str| {
        let p = tmp.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_owned()
    };
    let good = anchor("head.json", head.stdout.trim());
    // The DBOM's token moved onto the head: a valid token, over another signature.
    let moved = anchor("moved.json", &with_token(head.stdout.trim(), &sigs[1].0));
    let verify = |trust: &str, anchor: &str| {
        makoto(&[
            "verify",
            t,
            "--warehouse",
            w,
            "--trust",
            trust,
            "--anchor",
            anchor,
            "--no-record",
            "--log-only",
        ])
    };
    let ok = verify(&with_tsa, &good);
    assert_eq!(ok.code, Some(0), "{}", ok.stderr);
    assert!(
        ok.stderr.contains("time-stamped at") && ok.stderr.contains("test-tsa"),
        "{}",
        ok.stderr
    );
    let unchecked = verify(&without, &good);
    assert_eq!(unchecked.code, Some(0), "{}", unchecked.stderr);
    assert!(
        unchecked.stderr.contains("not checked"),
        "{}",
        unchecked.stderr
    );
    let args = ["verify", "--anchor"];
    let line = sole_error(&args, &verify(&with_tsa, &moved)).to_owned();
    assert!(
        line.contains("time-stamp invalid") && line.contains("not over this"),
        "{line}"
    );
    let line = sole_error(&args, &verify(&with_other, &good)).to_owned();
    assert!(line.contains("time-stamp untrusted"), "{line}");

    // A TSA that is down: exit 2 naming it, nothing on standard output.
    let down = "http://127.0.0.1:9/tsr";
    for args in [
        vec!["head", "--warehouse", w, "--key", &key, "--tsa", down],
        vec!["dbom", t, "--warehouse", w, "--key", &key, "--tsa", down],
    ] {
        let out = makoto(&args);
        assert!(sole_error(&args, &out).contains(down), "{}", out.stderr);
        assert_eq!(out.stdout, "", "{args:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_windows_are_time_stamped_and_verify_checks_them() {
    let tmp = tempfile::tempdir().unwrap();
    let tsa = Tsa::start(&tmp.path().join("tsa"), &[]);
    let other = Tsa::start(&tmp.path().join("other-tsa"), &[]);
    let table = crate::windows::stream_table(tmp.path()).await;
    let wh = tmp.path().join("wh");
    let (key, pubk) = keyfiles(tmp.path());
    let out = attest_cli(
        &table,
        &wh,
        &["--key", &key, "--tsa", &tsa.url, "--windows", "records=8"],
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let rows = store(&wh)
        .await
        .window_rows(&table_uri(&table))
        .await
        .unwrap();
    assert_eq!(rows.len(), 5, "40 records in windows of 8");
    for r in &rows {
        let env = Envelope::from_json(r.envelope.as_bytes()).unwrap();
        let s = &env.signatures()[0];
        let token = s
            .timestamp()
            .unwrap_or_else(|| panic!("window {}: no token", r.sequence));
        assert!(
            openssl_ts_verifies(&tsa, token, s.sig(), tmp.path()),
            "window {}",
            r.sequence
        );
    }

    let keys = json!([{"publicKey": pem_json(Path::new(&pubk))}]);
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
    let deep = |trust: &str| {
        let out = makoto(&[
            "verify",
            table.to_str().unwrap(),
            "--warehouse",
            wh.to_str().unwrap(),
            "--trust",
            trust,
            "--no-record",
            "--json",
        ]);
        let report: Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {} {}", out.stdout, out.stderr));
        (out.code.unwrap(), report)
    };
    let (code, report) = deep(&trusted);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["windowsChecked"], 5);
    assert_eq!(report["windowsTimestamped"], 5);
    let (code, report) = deep(&pubk);
    assert_eq!(
        (code, report["windowsTimestamped"].as_u64()),
        (0, Some(0)),
        "no TSA trusted: not checked"
    );
    let (code, report) = deep(&foreign);
    assert_eq!(code, 1, "{report}");
    let untrusted = kinds(&report)
        .iter()
        .filter(|k| *k == "timestamp-untrusted")
        .count();
    assert!(untrusted >= 5, "{report}");

    // A window's token moved onto another window is over another signature; a stripped one
    // is just missing (the signature still verifies).
    let token = |r: &makoto_delta::store::WindowRow| {
        Envelope::from_json(r.envelope.as_bytes())
            .unwrap()
            .signatures()[0]
            .timestamp()
            .unwrap()
            .to_vec()
    };
    let mut edited = rows.clone();
    edited[1].envelope = with_token(&rows[1].envelope, &token(&rows[0]));
    edited[2].envelope = without_token(&rows[2].envelope);
    let wh2 = tmp.path().join("wh2");
    rewritten(&wh, &table, &wh2, |_| {}).await;
    let dst = store(&wh2).await;
    let t = dst.load_windows().await.unwrap();
    let last = edited.last().unwrap();
    dst.append_windows(
        t,
        &edited,
        &last.table_uri,
        &last.spec,
        last.sequence,
        "tamper",
    )
    .await
    .unwrap();
    let out = makoto(&[
        "verify",
        table.to_str().unwrap(),
        "--warehouse",
        wh2.to_str().unwrap(),
        "--trust",
        &trusted,
        "--no-record",
        "--json",
    ]);
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(out.code, Some(1), "{report}");
    assert_eq!(report["windowsTimestamped"], 3, "{report}");
    let invalid: Vec<&Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "timestamp-invalid")
        .collect();
    assert_eq!(invalid.len(), 1, "{report}");
    assert!(
        invalid[0]["detail"]
            .as_str()
            .unwrap()
            .contains(&rows[1].window_id),
        "{report}"
    );
}

#[test]
fn sql_reads_each_rows_time_stamp_under_the_trust_file() {
    let tmp = tempfile::tempdir().unwrap();
    let tsa = Tsa::start(&tmp.path().join("tsa"), &[]);
    let other = Tsa::start(&tmp.path().join("other-tsa"), &[]);
    let table = tmp.path().join("sales");
    copy_dir(&repo_root().join("data/sample/sales"), &table);
    let wh = tmp.path().join("wh");
    let (key, pubk) = keyfiles(tmp.path());
    let started = chrono::Utc::now() - chrono::Duration::seconds(5);
    let out = attest_cli(
        &table,
        &wh,
        &["--key", &key, "--tsa", &tsa.url, "--batch-size", "4"],
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let finished = chrono::Utc::now() + chrono::Duration::seconds(5);
    let keys = json!([{"publicKey": pem_json(Path::new(&pubk))}]);
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
    let query = |trust: &str| -> Vec<(u64, String, Option<String>)> {
        let out = makoto(&[
            "sql",
            "--warehouse",
            wh.to_str().unwrap(),
            "--trust",
            trust,
            "--format",
            "json",
            "SELECT version, makoto_timestamp_status(envelope) AS s, makoto_timestamp(envelope) AS t FROM system.makoto.attestations ORDER BY version",
        ]);
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        let rows: Value = serde_json::from_str(out.stdout.trim()).unwrap();
        rows.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["version"].as_u64().unwrap(),
                    r["s"].as_str().unwrap().to_owned(),
                    r["t"].as_str().map(str::to_owned),
                )
            })
            .collect()
    };
    // The batches' last versions (3, 7, 9) carry tokens; the rest are covered through the
    // chain, which `verify` reports, not this per-row function.
    for (v, status, time) in query(&trusted) {
        if [3, 7, 9].contains(&v) {
            assert_eq!(status, "verified", "v{v}");
            let t = chrono::DateTime::parse_from_rfc3339(time.as_deref().unwrap()).unwrap();
            assert!(t >= started && t <= finished, "v{v}: {t}");
        } else {
            assert_eq!((status.as_str(), time), ("missing", None), "v{v}");
        }
    }
    for (v, status, time) in query(&foreign) {
        let expected = if [3, 7, 9].contains(&v) {
            "untrusted"
        } else {
            "missing"
        };
        assert_eq!((status.as_str(), time), (expected, None), "v{v}");
    }
    for (v, status, _) in query(&pubk) {
        let expected = if [3, 7, 9].contains(&v) {
            "unchecked"
        } else {
            "missing"
        };
        assert_eq!(status, expected, "v{v}");
    }
}
