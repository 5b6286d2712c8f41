//! `makoto serve` as a process: tables from a file and by discovery, commits attested as they
//! land, one broken table among healthy ones, the HTTP endpoints, SIGHUP, SIGTERM, and
//! overlapping shards killed with SIGKILL still attesting every version exactly once.
//!
//! Waiting is by polling what the service reports, with a generous deadline; nothing here
//! asserts how fast anything happens.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

const DEADLINE: Duration = Duration::from_secs(120);

/// A `makoto serve` child process and its HTTP address.
pub(crate) struct Served {
    child: Child,
    address: String,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Served {
    pub(crate) fn start(args: &[&str]) -> Served {
        Served::start_with_env(args, &[])
    }

    /// Started with `env` set on top of the test's own environment.
    pub(crate) fn start_with_env(args: &[&str], env: &[(&str, String)]) -> Served {
        let out = tempfile::NamedTempFile::new().unwrap();
        let mut argv = vec!["makoto".to_owned(), "serve".to_owned()];
        argv.extend(args.iter().map(|s| s.to_string()));
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "cli::child_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("MAKOTO_CLI_ARGS", serde_json::to_string(&argv).unwrap())
            .env("MAKOTO_CHILD_OUT", out.path())
            .env_remove("MAKOTO_KEY")
            .env_remove("MAKOTO_WAREHOUSE")
            .env_remove("RUST_LOG")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut seen = String::new();
        let address = loop {
            let Some(Ok(line)) = lines.next() else {
                panic!("serve exited before listening: {seen}");
            };
            seen.push_str(&line);
            seen.push('\n');
            if let Some(a) = line.strip_prefix("makoto serve: listening on http://") {
                break a.to_owned();
            }
        };
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(seen));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Served {
            child,
            address,
            stderr,
        }
    }

    fn get(&self, path: &str) -> (u16, String) {
        http_get(&self.address, path)
    }

    fn tables(&self) -> Vec<Value> {
        let (code, body) = self.get("/v1/tables");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str::<Value>(&body)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    /// Polls `/v1/tables` until `done` holds for the table list.
    pub(crate) fn wait_for(&self, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let t = self.tables();
            if done(&t) {
                return t;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "{what}: still {t:?}\n{}",
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name}");
    }

    /// SIGTERM, and the exit code.
    pub(crate) fn stop(mut self) -> (Option<i32>, String) {
        self.signal("TERM");
        let status = self.child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let stderr = self.stderr.lock().unwrap().clone();
        (status.code(), stderr)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_get(address: &str, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(address).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, body.to_owned())
}

/// `serve` arguments for the tables in a tables file, on a free port, polling every `poll`.
pub(crate) fn tables_file_args<'a>(
    warehouse: &'a str,
    key: &'a str,
    tables: &'a str,
    poll: &'a str,
) -> Vec<&'a str> {
    vec![
        "--warehouse",
        warehouse,
        "--key",
        key,
        "--tables",
        tables,
        "--listen",
        "127.0.0.1:0",
        "--poll-interval",
        poll,
    ]
}

pub(crate) fn attested(tables: &[Value], uri: &str) -> Option<u64> {
    tables
        .iter()
        .find(|t| t["table"] == uri)
        .and_then(|t| t["attestedVersion"].as_u64())
}

/// Every version of `table` from 0 to `latest` has exactly one attestation row.
async fn exactly_once(wh: &Path, table: &Path, latest: u64) {
    let mut versions: Vec<u64> = attestation_rows(wh, table)
        .await
        .iter()
        .map(|r| r.version)
        .collect();
    versions.sort();
    assert_eq!(
        versions,
        (0..=latest).collect::<Vec<_>>(),
        "{}",
        table.display()
    );
}

pub(crate) async fn new_table(dir: &Path, name: &str, appends: i64) -> makoto_testkit::SampleTable {
    let mut t = makoto_testkit::SampleTable::create(&dir.join(name))
        .await
        .unwrap();
    for i in 0..appends {
        t.append(makoto_testkit::rows(i * 10..i * 10 + 10, "emea").unwrap())
            .await
            .unwrap();
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_attests_commits_as_they_land_and_reports_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = keyfiles(tmp.path());
    let mut a = new_table(tmp.path(), "a", 2).await;
    let b = new_table(tmp.path(), "b", 1).await;
    let broken = tmp.path().join("broken/_delta_log");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("00000000000000000000.json"), "not json\n").unwrap();
    let tables = tmp.path().join("tables.txt");
    std::fs::write(&tables, "# watched\na\nbroken\n").unwrap();
    let wh = tmp.path().join("wh");
    let (ua, ub, ubroken) = (
        table_uri(a.path()),
        table_uri(b.path()),
        table_uri(&tmp.path().join("broken")),
    );
    let served = Served::start(&tables_file_args(
        wh.to_str().unwrap(),
        &key,
        tables.to_str().unwrap(),
        "100ms",
    ));

    // The healthy table is attested; the broken one fails, is retried, and stops nothing.
    let t = served.wait_for("a attested, broken failing", |t| {
        attested(t, &ua) == Some(2)
            && t.iter()
                .any(|x| x["table"] == ubroken && x["failures"].as_u64() >= Some(2))
    });
    let broken_state = t.iter().find(|x| x["table"] == ubroken).unwrap();
    assert_eq!(
        broken_state["lastError"]["kind"], "corrupt_commit",
        "{broken_state}"
    );
    assert_eq!(served.get("/readyz").0, 200);
    assert_eq!(served.get("/healthz").0, 200);

    // New commits are attested as they land, each version once.
    for i in 0..3 {
        a.append(makoto_testkit::rows(100 + i * 10..110 + i * 10, "amer").unwrap())
            .await
            .unwrap();
    }
    served.wait_for("a's new commits attested", |t| attested(t, &ua) == Some(5));

    // The tables file is reloaded on SIGHUP: b joins, broken leaves.
    std::fs::write(&tables, "a\nb\n").unwrap();
    served.signal("HUP");
    let t = served.wait_for("b attested after SIGHUP", |t| attested(t, &ub) == Some(1));
    assert!(t.iter().all(|x| x["table"] != ubroken), "{t:?}");

    // The metrics say what happened.
    let (code, metrics) = served.get("/metrics");
    assert_eq!(code, 200);
    let value = |line: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(line).map(|v| v.trim().parse().unwrap()))
            .unwrap_or_else(|| panic!("{line} missing:\n{metrics}"))
    };
    assert_eq!(
        value("makoto_commits_attested_total "),
        8.0,
        "a: 6 versions, b: 2"
    );
    assert!(value("makoto_attest_errors_total{kind=\"corrupt_commit\"} ") >= 2.0);
    assert_eq!(
        value(&format!("makoto_table_attested_version{{table=\"{ua}\"}} ")),
        5.0
    );
    assert_eq!(value("makoto_tables{state=\"watched\"} "), 2.0);
    assert!(value("makoto_attest_latency_seconds_count ") >= 2.0);
    assert!(value("makoto_bytes_hashed_total ") > 0.0);
    // Freed memory is given back from the loop's first turn on (every 10 s by default).
    let releases = value("makoto_memory_releases_total{released=\"some\"} ")
        + value("makoto_memory_releases_total{released=\"nothing\"} ");
    assert!(releases >= 1.0, "{metrics}");
    assert!(value("process_resident_memory_bytes ") > 1e6, "{metrics}");
    let (code, _) = served.get("/nope");
    assert_eq!(code, 404);

    // SIGTERM: exit 0, and everything written verifies.
    let (code, stderr) = served.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("makoto serve: stopped"), "{stderr}");
    exactly_once(&wh, a.path(), 5).await;
    exactly_once(&wh, b.path(), 1).await;

    // system.makoto.runs: one record per run that attested or failed, written at shutdown at
    // the latest.
    let st = store(&wh).await;
    let runs_a = st.run_rows(&ua).await.unwrap();
    assert!(!runs_a.is_empty());
    assert!(runs_a.iter().all(|r| r.outcome == "attested"), "{runs_a:?}");
    assert_eq!(runs_a.iter().map(|r| r.commits_attested).sum::<u64>(), 6);
    let last = runs_a.last().unwrap();
    assert_eq!(
        (last.attested_version, last.latest_version, last.failures),
        (Some(5), Some(5), 0)
    );
    assert!(
        runs_a
            .iter()
            .all(|r| r.lag_ms.is_some() && r.finished_at_us >= r.started_at_us)
    );
    let run_ids: std::collections::BTreeSet<String> = attestation_rows(&wh, a.path())
        .await
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    let recorded: std::collections::BTreeSet<String> =
        runs_a.iter().filter_map(|r| r.run_id.clone()).collect();
    assert_eq!(
        recorded, run_ids,
        "each run record names the run that wrote the rows"
    );
    let runs_broken = st.run_rows(&ubroken).await.unwrap();
    assert!(runs_broken.len() >= 2, "{runs_broken:?}");
    for (i, r) in runs_broken.iter().enumerate() {
        assert_eq!(r.outcome, "failed");
        assert_eq!(r.error_kind.as_deref(), Some("corrupt_commit"));
        assert!(
            r.error.as_deref().unwrap_or_default().contains("broken"),
            "{r:?}"
        );
        assert_eq!((r.attested_version, r.failures), (None, i as u64 + 1));
    }
    // The documented question: which tables are behind, and why.
    let out = makoto(&[
        "sql",
        "--warehouse",
        wh.to_str().unwrap(),
        "--format",
        "json",
        "SELECT table_uri, error_kind FROM (SELECT *, row_number() OVER (PARTITION BY table_uri ORDER BY finished_at DESC) AS n FROM system.makoto.runs) WHERE n = 1 AND outcome = 'failed'",
    ]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let behind: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(
        behind,
        json!([{"table_uri": ubroken, "error_kind": "corrupt_commit"}])
    );

    for t in [a.path(), b.path()] {
        let out = makoto(&[
            "verify",
            t.to_str().unwrap(),
            "--warehouse",
            wh.to_str().unwrap(),
            "--trust",
            &public,
            "--no-record",
        ]);
        assert_eq!(out.code, Some(0), "{}", out.stdout);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_shards_killed_with_sigkill_attest_every_version_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, _) = keyfiles(tmp.path());
    let lake = tmp.path().join("lake");
    let mut tables = Vec::new();
    for i in 0..6 {
        tables.push(new_table(&lake, &format!("t{i}"), 1).await);
    }
    let wh = tmp.path().join("wh");
    let lake_s = lake.to_str().unwrap().to_owned();
    let wh_s = wh.to_str().unwrap().to_owned();
    let start = |shard: &str| {
        Served::start(&[
            "--warehouse",
            &wh_s,
            "--key",
            &key,
            "--discover",
            &lake_s,
            "--listen",
            "127.0.0.1:0",
            "--poll-interval",
            "50ms",
            "--shard",
            shard,
            "--concurrency",
            "3",
        ])
    };
    // Three replicas: two halves and one that owns everything, so every table has two.
    let shards = ["0/2", "1/2", "0/1"];
    let mut replicas: Vec<Served> = shards.iter().map(|s| start(s)).collect();
    for round in 0..6u64 {
        for (i, t) in tables.iter_mut().enumerate() {
            if (i as u64 + round).is_multiple_of(2) {
                let base = 1000 * (round as i64 + 1) + i as i64 * 10;
                t.append(makoto_testkit::rows(base..base + 5, "apac").unwrap())
                    .await
                    .unwrap();
            }
        }
        // Give the replicas a moment to be mid-run, then kill one outright and restart it.
        tokio::time::sleep(Duration::from_millis(150 + 70 * round)).await;
        let victim = (round as usize) % replicas.len();
        let _ = replicas[victim].child.kill();
        let _ = replicas[victim].child.wait();
        replicas[victim] = start(shards[victim]);
    }
    // Let the survivors finish, then check every table.
    let watcher = &replicas[2];
    let expected: Vec<(String, u64)> = tables
        .iter()
        .map(|t| (table_uri(t.path()), t.version().unwrap()))
        .collect();
    watcher.wait_for("every table attested through its latest version", |t| {
        expected
            .iter()
            .all(|(uri, v)| attested(t, uri).is_some_and(|a| a >= *v))
    });
    for r in replicas {
        let (code, stderr) = r.stop();
        assert_eq!(code, Some(0), "{stderr}");
    }
    for t in &tables {
        exactly_once(&wh, t.path(), t.version().unwrap()).await;
    }
    let out = makoto(&[
        "sql",
        "--warehouse",
        &wh_s,
        "--format",
        "json",
        "SELECT count(*) AS n, count(DISTINCT table_uri || '@' || CAST(version AS VARCHAR)) AS d FROM system.makoto.attestations",
    ]);
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(v[0]["n"], v[0]["d"], "no version attested twice: {v}");
}

#[test]
fn serve_refuses_what_it_cannot_run() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = tmp.path().join("wh");
    let missing = tmp.path().join("missing.txt");
    let bad_file = tmp.path().join("bad.txt");
    std::fs::write(&bad_file, "http://[::1/x\n").unwrap();
    let bad_tenants = tmp.path().join("tenants.json");
    std::fs::write(
        &bad_tenants,
        r#"{"tenants": [{"name": "t", "token": "plain"}]}"#,
    )
    .unwrap();
    let w = wh.to_str().unwrap();
    for (args, reason) in [
        (vec!["serve", "--warehouse", w], "--tables"),
        (
            vec![
                "serve",
                "--warehouse",
                w,
                "--tables",
                missing.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
            ],
            "cannot read",
        ),
        (
            vec![
                "serve",
                "--warehouse",
                w,
                "--tables",
                bad_file.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
            ],
            "line 1",
        ),
        (
            vec![
                "serve",
                "--warehouse",
                w,
                "--discover",
                "x",
                "--shard",
                "2/2",
            ],
            "0 <= I < N",
        ),
        (
            vec![
                "serve",
                "--warehouse",
                w,
                "--discover",
                "x",
                "--poll-interval",
                "0s",
            ],
            "more than zero",
        ),
        (
            vec![
                "serve",
                "--warehouse",
                w,
                "--discover",
                "x",
                "--release-memory-interval",
                "never",
            ],
            "expected a number",
        ),
        (
            vec![
                "serve",
                "--warehouse",
                w,
                "--discover",
                "x",
                "--tsa",
                "http://127.0.0.1:9/",
            ],
            "signing key",
        ),
        (
            vec![
                "serve",
                "--warehouse",
                w,
                "--discover",
                "/x",
                "--tenants",
                bad_tenants.to_str().unwrap(),
            ],
            "tenants file",
        ),
    ] {
        let out = makoto(&args);
        assert_eq!(out.code, Some(2), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(reason), "{args:?}: {}", out.stderr);
        assert!(!wh.exists(), "{args:?}: the warehouse was created");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_ask_for_a_receipt_and_only_for_their_tables() {
    use sha2::Digest;
    let tmp = tempfile::tempdir().unwrap();
    let (key, _) = keyfiles(tmp.path());
    let mut a = new_table(tmp.path(), "a", 1).await;
    let b = new_table(tmp.path(), "b", 1).await;
    let (ua, ub) = (table_uri(a.path()), table_uri(b.path()));
    let tables = tmp.path().join("tables.txt");
    std::fs::write(&tables, "a\n").unwrap();
    let digest = |t: &str| hex::encode(sha2::Sha256::digest(t.as_bytes()));
    let tenants = tmp.path().join("tenants.json");
    std::fs::write(
        &tenants,
        serde_json::json!({"tenants": [
            {"name": "etl", "tokenSha256": digest("tok-etl"), "tables": [ua, ub]},
            {"name": "other", "tokenSha256": digest("tok-other"), "tables": ["file:///elsewhere/"]},
        ]})
        .to_string(),
    )
    .unwrap();
    let wh = tmp.path().join("wh");
    // Idle tables are looked at only every 10 minutes here: a receipt in time comes from the
    // request itself marking the table due.
    let mut args = tables_file_args(wh.to_str().unwrap(), &key, tables.to_str().unwrap(), "10m");
    args.extend(["--tenants", tenants.to_str().unwrap()]);
    let served = Served::start(&args);
    served.wait_for("a attested at start", |t| attested(t, &ua) == Some(1));
    a.append(makoto_testkit::rows(50..60, "emea").unwrap())
        .await
        .unwrap();
    let url = format!("http://{}", served.address);
    let via = |table: &Path, token: Option<&str>, extra: &[&str]| {
        let mut args = vec!["attest", table.to_str().unwrap(), "--via", &url, "--json"];
        args.extend_from_slice(extra);
        let env: Vec<(&str, String)> = token
            .map(|t| vec![("MAKOTO_SERVICE_TOKEN", t.to_owned())])
            .unwrap_or_default();
        makoto_env(&args, &env)
    };
    let out = via(a.path(), Some("tok-etl"), &["--wait", "60s"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let receipt: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(receipt["attestedVersion"], 2, "{receipt}");
    assert_eq!(receipt["tenant"], "etl");
    exactly_once(&wh, a.path(), 2).await;

    for (table, token, extra, reason) in [
        (a.path(), Some("wrong"), vec![], "401"),
        (a.path(), None, vec![], "MAKOTO_SERVICE_TOKEN"),
        (a.path(), Some("tok-other"), vec![], "may not ask"),
        (b.path(), Some("tok-etl"), vec![], "not watched"),
        (
            a.path(),
            Some("tok-etl"),
            vec!["--to-version", "9", "--wait", "1s"],
            "not yet 9",
        ),
    ] {
        let out = via(table, token, &extra);
        assert_eq!(out.code, Some(2), "{reason}: {}", out.stderr);
        assert!(out.stderr.contains(reason), "{reason}: {}", out.stderr);
        assert!(
            !out.stderr.contains("tok-"),
            "no token in errors: {}",
            out.stderr
        );
    }
    let (code, stderr) = served.stop();
    assert_eq!(code, Some(0), "{stderr}");
}
