//! The service's own record, `system.makoto.runs`: one row per attest run that attested
//! something or failed, so that SQL can answer which tables are behind, and why. Rows are
//! buffered and written every [`FLUSH_EVERY`] in one commit (and at shutdown); a kill -9 loses
//! at most the rows of that interval, never an attestation.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

use makoto_delta::AttestationStore;
use makoto_delta::store::RunRow;

use crate::metrics::Metrics;
use crate::schedule::Outcome;
use crate::shard::Shard;

/// How often buffered run records are written.
pub const FLUSH_EVERY: Duration = Duration::from_secs(5);
/// Records kept while the warehouse cannot be written; the oldest are dropped beyond this
/// (counted in `makoto_run_records_dropped_total`).
pub const MAX_BUFFERED: usize = 10_000;

/// What one finished run contributes to its record.
#[derive(Debug, Clone)]
pub struct RunFacts<'a> {
    pub table_uri: &'a str,
    pub outcome: &'a Outcome,
    pub run_id: Option<&'a str>,
    pub previously_attested: Option<u64>,
    pub latest_version: Option<u64>,
    pub files_hashed: u64,
    pub bytes_hashed: u64,
    pub started: SystemTime,
    pub finished: SystemTime,
    /// When the oldest commit the run found unattested was written.
    pub oldest_commit: Option<SystemTime>,
    /// Consecutive failures of the table, this run included.
    pub failures: u32,
}

/// The record of a run, or `None` for a look that found nothing new to attest.
pub fn run_row(service: &str, facts: &RunFacts<'_>) -> Option<RunRow> {
    let (outcome, attested_version, commits, error_kind, error) = match facts.outcome {
        Outcome::Idle | Outcome::Attested { commits: 0, .. } => return None,
        Outcome::Attested { through, commits } => {
            ("attested", Some(*through), *commits, None, None)
        }
        Outcome::Failed { kind, message } => (
            "failed",
            facts.previously_attested,
            0,
            Some(kind.clone()),
            Some(message.clone()),
        ),
    };
    let micros = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
    };
    let lag_ms = facts.oldest_commit.map(|w| {
        let waited = facts.finished.duration_since(w).unwrap_or_default();
        u64::try_from(waited.as_millis()).unwrap_or(u64::MAX)
    });
    Some(RunRow {
        table_uri: facts.table_uri.to_owned(),
        service: service.to_owned(),
        run_id: facts.run_id.map(str::to_owned),
        outcome: outcome.to_owned(),
        started_at_us: micros(facts.started),
        finished_at_us: micros(facts.finished),
        previously_attested: facts.previously_attested,
        attested_version,
        latest_version: facts.latest_version,
        commits_attested: commits,
        lag_ms,
        files_hashed: facts.files_hashed,
        bytes_hashed: facts.bytes_hashed,
        error_kind,
        error,
        failures: u64::from(facts.failures),
    })
}

/// `<host>:<pid>`, then `/<i>/<N>` when the replica serves one shard of several.
pub fn service_name(shard: &Shard) -> String {
    let mut name = format!(
        "{}:{}",
        makoto_delta::verify::host_name(),
        std::process::id()
    );
    if shard.count() > 1 {
        name.push_str(&format!("/{shard}"));
    }
    name
}

/// Run records waiting to be written.
#[derive(Debug)]
pub struct RunLog {
    service: String,
    rows: VecDeque<RunRow>,
    next_flush: Instant,
}

impl RunLog {
    pub fn new(service: String, now: Instant) -> Self {
        RunLog {
            service,
            rows: VecDeque::new(),
            next_flush: now + FLUSH_EVERY,
        }
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    /// Buffers the record of a run (if it has one), dropping the oldest beyond [`MAX_BUFFERED`].
    pub fn push(&mut self, facts: &RunFacts<'_>, metrics: &Metrics) {
        let Some(row) = run_row(&self.service, facts) else {
            return;
        };
        if self.rows.len() >= MAX_BUFFERED {
            self.rows.pop_front();
            Metrics::add(&metrics.run_records_dropped, 1);
        }
        self.rows.push_back(row);
    }

    pub fn is_due(&self, now: Instant) -> bool {
        !self.rows.is_empty() && now >= self.next_flush
    }

    /// Writes the buffered records in one commit. On failure they stay buffered for the next
    /// flush.
    pub async fn flush(
        &mut self,
        store: &AttestationStore,
        metrics: &Metrics,
    ) -> Result<(), makoto_delta::Error> {
        self.next_flush = Instant::now() + FLUSH_EVERY;
        if self.rows.is_empty() {
            return Ok(());
        }
        let rows: Vec<RunRow> = self.rows.drain(..).collect();
        match store.append_runs(&rows).await {
            Ok(()) => {
                Metrics::add(&metrics.run_records_written, rows.len() as u64);
                Ok(())
            }
            Err(e) => {
                let later = std::mem::replace(&mut self.rows, rows.into());
                self.rows.extend(later);
                let excess = self.rows.len().saturating_sub(MAX_BUFFERED);
                if excess > 0 {
                    self.rows.drain(..excess);
                    Metrics::add(&metrics.run_records_dropped, excess as u64);
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(outcome: &Outcome) -> RunFacts<'_> {
        let started = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        RunFacts {
            table_uri: "file:///t",
            outcome,
            run_id: Some("run-1"),
            previously_attested: Some(4),
            latest_version: Some(9),
            files_hashed: 3,
            bytes_hashed: 300,
            started,
            finished: started + Duration::from_millis(1500),
            oldest_commit: Some(started - Duration::from_millis(500)),
            failures: 0,
        }
    }

    #[test]
    fn an_attesting_run_records_what_it_did_and_how_long_the_commit_waited() {
        let outcome = Outcome::Attested {
            through: 9,
            commits: 5,
        };
        let row = run_row("h:1", &facts(&outcome)).unwrap();
        assert_eq!(row.outcome, "attested");
        assert_eq!(
            (
                row.previously_attested,
                row.attested_version,
                row.latest_version
            ),
            (Some(4), Some(9), Some(9))
        );
        assert_eq!(row.commits_attested, 5);
        assert_eq!(row.lag_ms, Some(2000));
        assert_eq!(row.finished_at_us - row.started_at_us, 1_500_000);
        assert_eq!(row.started_at_us, 1_800_000_000_000_000);
        assert_eq!((row.error_kind, row.error), (None, None));
    }

    #[test]
    fn a_failed_run_records_its_error_and_leaves_the_attested_version() {
        let outcome = Outcome::Failed {
            kind: "file-missing".into(),
            message: "file:///t version 5: part-0.parquet is missing".into(),
        };
        let mut f = facts(&outcome);
        f.failures = 3;
        f.run_id = None;
        let row = run_row("h:1/2/4", &f).unwrap();
        assert_eq!(row.outcome, "failed");
        assert_eq!(row.attested_version, Some(4));
        assert_eq!(row.commits_attested, 0);
        assert_eq!(row.error_kind.as_deref(), Some("file-missing"));
        assert!(row.error.unwrap().contains("part-0.parquet"));
        assert_eq!(
            (row.failures, row.run_id, row.service.as_str()),
            (3, None, "h:1/2/4")
        );
    }

    #[test]
    fn looks_that_attest_nothing_are_not_recorded() {
        assert!(run_row("h", &facts(&Outcome::Idle)).is_none());
        let none = Outcome::Attested {
            through: 4,
            commits: 0,
        };
        assert!(run_row("h", &facts(&none)).is_none());
    }

    #[test]
    fn the_buffer_keeps_the_newest_records() {
        let metrics = Metrics::default();
        let mut log = RunLog::new("h".into(), Instant::now());
        let outcome = Outcome::Attested {
            through: 9,
            commits: 1,
        };
        for i in 0..MAX_BUFFERED + 3 {
            let mut f = facts(&outcome);
            f.latest_version = Some(i as u64);
            log.push(&f, &metrics);
        }
        assert_eq!(log.rows.len(), MAX_BUFFERED);
        assert_eq!(log.rows[0].latest_version, Some(3));
        assert_eq!(
            metrics
                .run_records_dropped
                .load(std::sync::atomic::Ordering::Relaxed),
            3
        );
    }
}
