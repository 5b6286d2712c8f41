//! The service's counters and their Prometheus text exposition (`GET /metrics`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::schedule::TableState;

/// Upper bounds (seconds) of the commit-to-attestation latency histogram.
pub const LATENCY_BUCKETS: [f64; 10] = [0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0];

/// Counters since the service started.
#[derive(Debug, Default)]
pub struct Metrics {
    pub commits_attested: AtomicU64,
    pub runs_ok: AtomicU64,
    pub runs_failed: AtomicU64,
    pub checks: AtomicU64,
    pub files_hashed: AtomicU64,
    pub bytes_hashed: AtomicU64,
    pub run_records_written: AtomicU64,
    pub run_records_dropped: AtomicU64,
    /// Times freed memory was given back to the system, and times there was none to give.
    pub memory_released: AtomicU64,
    pub memory_not_released: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    latency: Mutex<Histogram>,
}

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a failed run of `kind`.
    pub fn error(&self, kind: &str) {
        if let Ok(mut e) = self.errors.lock() {
            *e.entry(kind.to_owned()).or_default() += 1;
        }
    }

    /// Records how long after its commit a version's attestation was written.
    pub fn latency(&self, seconds: f64) {
        if let Ok(mut h) = self.latency.lock() {
            for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
                if seconds <= *bound {
                    h.counts[i] += 1;
                }
            }
            h.count += 1;
            h.sum += seconds.max(0.0);
        }
    }

    /// The Prometheus text format (version 0.0.4) of the counters, of `tables`, and of the
    /// process's resident size in bytes when known.
    pub fn render(&self, tables: &[TableState], resident: Option<u64>, now: Instant) -> String {
        let mut out = String::new();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut metric = |name: &str, kind: &str, help: &str, lines: &[(String, String)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in lines {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let one = |v: u64| vec![(String::new(), v.to_string())];
        metric(
            "makoto_commits_attested_total",
            "counter",
            "Delta commits attested by this service.",
            &one(get(&self.commits_attested)),
        );
        metric(
            "makoto_attest_runs_total",
            "counter",
            "Attest runs, by result.",
            &[
                (label("result", "ok"), get(&self.runs_ok).to_string()),
                (label("result", "error"), get(&self.runs_failed).to_string()),
            ],
        );
        let errors: Vec<(String, String)> = self
            .errors
            .lock()
            .map(|e| {
                e.iter()
                    .map(|(k, v)| (label("kind", k), v.to_string()))
                    .collect()
            })
            .unwrap_or_default();
        metric(
            "makoto_attest_errors_total",
            "counter",
            "Failed attest runs, by error kind.",
            &errors,
        );
        metric(
            "makoto_checks_total",
            "counter",
            "Looks at a table's log for a new commit.",
            &one(get(&self.checks)),
        );
        metric(
            "makoto_files_hashed_total",
            "counter",
            "Data, deletion-vector and commit files hashed.",
            &one(get(&self.files_hashed)),
        );
        metric(
            "makoto_bytes_hashed_total",
            "counter",
            "Bytes hashed (SHA-256).",
            &one(get(&self.bytes_hashed)),
        );
        metric(
            "makoto_run_records_written_total",
            "counter",
            "Rows written to system.makoto.runs.",
            &one(get(&self.run_records_written)),
        );
        metric(
            "makoto_run_records_dropped_total",
            "counter",
            "Run records dropped because system.makoto.runs could not be written for too long.",
            &one(get(&self.run_records_dropped)),
        );
        metric(
            "makoto_memory_releases_total",
            "counter",
            "Asks to give freed allocator memory back to the system, by whether any was given.",
            &[
                (
                    label("released", "some"),
                    get(&self.memory_released).to_string(),
                ),
                (
                    label("released", "nothing"),
                    get(&self.memory_not_released).to_string(),
                ),
            ],
        );
        if let Some(bytes) = resident {
            metric(
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size in bytes.",
                &one(bytes),
            );
        }
        if let Ok(h) = self.latency.lock() {
            let mut lines: Vec<(String, String)> = LATENCY_BUCKETS
                .iter()
                .zip(h.counts)
                .map(|(b, c)| (label("le", &b.to_string()), c.to_string()))
                .collect();
            lines.push((label("le", "+Inf"), h.count.to_string()));
            let _ = writeln!(
                out,
                "# HELP makoto_attest_latency_seconds From a commit's timestamp to its signed attestation row.\n# TYPE makoto_attest_latency_seconds histogram"
            );
            for (l, v) in lines {
                let _ = writeln!(out, "makoto_attest_latency_seconds_bucket{l} {v}");
            }
            let _ = writeln!(out, "makoto_attest_latency_seconds_sum {}", h.sum);
            let _ = writeln!(out, "makoto_attest_latency_seconds_count {}", h.count);
        }
        let failing = tables.iter().filter(|t| t.failures > 0).count();
        let mut metric = |name: &str, kind: &str, help: &str, lines: &[(String, String)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in lines {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        metric(
            "makoto_tables",
            "gauge",
            "Tables this replica watches, and those whose last run failed.",
            &[
                (label("state", "watched"), tables.len().to_string()),
                (label("state", "failing"), failing.to_string()),
            ],
        );
        let per_table = |f: &dyn Fn(&TableState) -> Option<String>| -> Vec<(String, String)> {
            tables
                .iter()
                .filter_map(|t| f(t).map(|v| (label("table", &t.uri), v)))
                .collect()
        };
        metric(
            "makoto_table_attested_version",
            "gauge",
            "The last attested version of each table (absent: none yet).",
            &per_table(&|t| t.attested.map(|v| v.to_string())),
        );
        metric(
            "makoto_table_lag_seconds",
            "gauge",
            "How long a commit of the table has been waiting to be attested (0: none waiting).",
            &per_table(&|t| {
                Some(
                    t.pending_since
                        .map_or(0.0, |s| now.saturating_duration_since(s).as_secs_f64())
                        .to_string(),
                )
            }),
        );
        metric(
            "makoto_table_failures",
            "gauge",
            "Consecutive failed runs of each table.",
            &per_table(&|t| Some(t.failures.to_string())),
        );
        out
    }
}

/// `{name="value"}` with the value escaped as the text format requires.
fn label(name: &str, value: &str) -> String {
    let escaped = value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    format!("{{{name}=\"{escaped}\"}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_has_every_family_and_escapes_labels() {
        let m = Metrics::default();
        Metrics::add(&m.commits_attested, 7);
        Metrics::add(&m.runs_ok, 2);
        m.error("storage");
        m.error("storage");
        m.latency(0.3);
        m.latency(4.0);
        let now = Instant::now();
        let mut t = TableState::new("file:///l/a\"b".into(), Some(4), now);
        t.failures = 2;
        Metrics::add(&m.memory_released, 3);
        let text = m.render(&[t], Some(123 << 20), now);
        for line in [
            "makoto_commits_attested_total 7",
            "makoto_attest_runs_total{result=\"ok\"} 2",
            "makoto_attest_errors_total{kind=\"storage\"} 2",
            "makoto_attest_latency_seconds_bucket{le=\"0.25\"} 0",
            "makoto_attest_latency_seconds_bucket{le=\"0.5\"} 1",
            "makoto_attest_latency_seconds_bucket{le=\"5\"} 2",
            "makoto_attest_latency_seconds_bucket{le=\"+Inf\"} 2",
            "makoto_attest_latency_seconds_count 2",
            "makoto_tables{state=\"failing\"} 1",
            "makoto_memory_releases_total{released=\"some\"} 3",
            "makoto_memory_releases_total{released=\"nothing\"} 0",
            "process_resident_memory_bytes 128974848",
            "makoto_table_attested_version{table=\"file:///l/a\\\"b\"} 4",
            "makoto_table_failures{table=\"file:///l/a\\\"b\"} 2",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        // Every sample line belongs to a family declared with # TYPE.
        let typed: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let name = l.split(['{', ' ']).next().unwrap();
            let family = name
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            assert!(typed.contains(&family) || typed.contains(&name), "{l}");
        }
    }
}
