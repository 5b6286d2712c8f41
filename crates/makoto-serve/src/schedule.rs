//! When to look at each table again: right away after attesting (more commits may have landed
//! meanwhile), after the poll interval when idle (stretched while a table stays idle, so idle
//! tables cost almost nothing), and with exponential backoff after failures (a broken table
//! never keeps the others waiting).

use std::time::{Duration, Instant};

/// The service's timing settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How soon an idle table is checked again.
    pub poll: Duration,
    /// The longest an idle table goes unchecked (the poll interval doubles per idle check up
    /// to this).
    pub idle_max: Duration,
    /// The first retry delay after a failure; doubles per consecutive failure.
    pub backoff: Duration,
    /// The longest retry delay.
    pub backoff_max: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            poll: Duration::from_secs(1),
            idle_max: Duration::from_secs(5),
            backoff: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
        }
    }
}

impl Timing {
    /// The delay after `idle_checks` consecutive checks that found nothing new.
    pub fn idle_delay(&self, idle_checks: u32) -> Duration {
        let factor = 1u32 << idle_checks.saturating_sub(1).min(16);
        self.poll
            .saturating_mul(factor)
            .min(self.idle_max.max(self.poll))
    }

    /// The delay after `failures` consecutive failures.
    pub fn failure_delay(&self, failures: u32) -> Duration {
        let factor = 1u32 << failures.saturating_sub(1).min(16);
        self.backoff
            .saturating_mul(factor)
            .min(self.backoff_max.max(self.backoff))
    }
}

/// What one look at a table came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No commit after the attested head.
    Idle,
    /// Versions through `through` are attested (`commits` of them by this run).
    Attested { through: u64, commits: u64 },
    /// The run failed; `kind` is the error kind, `message` its one line.
    Failed { kind: String, message: String },
}

/// What the service knows about one table.
#[derive(Debug, Clone)]
pub struct TableState {
    pub uri: String,
    /// The last attested version, as far as the service knows.
    pub attested: Option<u64>,
    pub next_check: Instant,
    /// A run is in flight.
    pub running: bool,
    pub idle_checks: u32,
    pub failures: u32,
    /// The last failure's kind and message, until a run succeeds.
    pub last_error: Option<(String, String)>,
    /// Since when a commit has been waiting to be attested.
    pub pending_since: Option<Instant>,
}

impl TableState {
    pub fn new(uri: String, attested: Option<u64>, now: Instant) -> Self {
        TableState {
            uri,
            attested,
            next_check: now,
            running: false,
            idle_checks: 0,
            failures: 0,
            last_error: None,
            pending_since: None,
        }
    }

    /// Due for a look at `now`.
    pub fn is_due(&self, now: Instant) -> bool {
        !self.running && self.next_check <= now
    }

    /// Records what a look found and when to look again.
    pub fn record(&mut self, outcome: Outcome, now: Instant, timing: &Timing) {
        self.running = false;
        match outcome {
            Outcome::Idle => {
                self.idle_checks = self.idle_checks.saturating_add(1);
                self.failures = 0;
                self.last_error = None;
                self.pending_since = None;
                self.next_check = now + timing.idle_delay(self.idle_checks);
            }
            Outcome::Attested { through, .. } => {
                self.attested = Some(through);
                self.idle_checks = 0;
                self.failures = 0;
                self.last_error = None;
                self.pending_since = None;
                self.next_check = now;
            }
            Outcome::Failed { kind, message } => {
                self.failures = self.failures.saturating_add(1);
                self.idle_checks = 0;
                self.pending_since.get_or_insert(now);
                self.last_error = Some((kind, message));
                self.next_check = now + timing.failure_delay(self.failures);
            }
        }
    }
}

/// Takes the tables due at `now` from the front of `due` (earliest first) while `admit` takes
/// each one's URI, marks them running and returns each one's URI and attested version. The
/// first table `admit` refuses stays at the front, so tables are started in the order they
/// fell due. Entries for tables no longer watched, running, or whose `next_check` has moved
/// since the entry was made are dropped as they come up.
pub fn take_due(
    due: &mut std::collections::BTreeSet<(Instant, String)>,
    tables: &mut std::collections::BTreeMap<String, TableState>,
    now: Instant,
    mut admit: impl FnMut(&str) -> bool,
) -> Vec<(String, Option<u64>)> {
    let mut taken = Vec::new();
    while let Some((when, uri)) = due.first() {
        if *when > now {
            break;
        }
        let current = tables
            .get(uri)
            .is_some_and(|t| !t.running && t.next_check == *when);
        if current && !admit(uri) {
            break;
        }
        let Some((_, uri)) = due.pop_first() else {
            break;
        };
        if current && let Some(t) = tables.get_mut(&uri) {
            t.running = true;
            taken.push((uri, t.attested));
        }
    }
    taken
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tables each due `ms` after `now`, and their queue.
    fn due_at(
        now: Instant,
        due_in_ms: &[(&str, u64)],
    ) -> (
        std::collections::BTreeMap<String, TableState>,
        std::collections::BTreeSet<(Instant, String)>,
    ) {
        let mut tables = std::collections::BTreeMap::new();
        let mut due = std::collections::BTreeSet::new();
        for &(uri, ms) in due_in_ms {
            let when = now + Duration::from_millis(ms);
            let mut t = TableState::new(uri.into(), None, when);
            t.next_check = when;
            tables.insert(uri.to_owned(), t);
            due.insert((when, uri.to_owned()));
        }
        (tables, due)
    }

    /// An `admit` for [`take_due`] that takes the first `n` tables.
    fn first(n: usize) -> impl FnMut(&str) -> bool {
        let mut left = n;
        move |_| {
            let more = left > 0;
            left = left.saturating_sub(1);
            more
        }
    }

    fn timing() -> Timing {
        Timing {
            poll: Duration::from_millis(100),
            idle_max: Duration::from_millis(500),
            backoff: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
        }
    }

    #[test]
    fn idle_tables_are_checked_less_often_up_to_a_bound() {
        let t = timing();
        let ms: Vec<u128> = (1..=6).map(|n| t.idle_delay(n).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 500, 500, 500]);
    }

    #[test]
    fn failures_back_off_exponentially_and_success_resets() {
        let t = timing();
        let now = Instant::now();
        let mut s = TableState::new("s3://l/t".into(), Some(3), now);
        let failed = || Outcome::Failed {
            kind: "storage".into(),
            message: "unreachable".into(),
        };
        for expected in [1, 2, 4, 8, 16, 30, 30] {
            s.record(failed(), now, &t);
            assert_eq!(s.next_check - now, Duration::from_secs(expected));
        }
        assert_eq!(s.pending_since, Some(now));
        assert_eq!(s.last_error.as_ref().map(|e| e.0.as_str()), Some("storage"));
        s.record(
            Outcome::Attested {
                through: 9,
                commits: 6,
            },
            now,
            &t,
        );
        assert_eq!((s.attested, s.failures, s.next_check), (Some(9), 0, now));
        assert!(s.last_error.is_none() && s.pending_since.is_none());
        assert!(s.is_due(now));
        s.running = true;
        assert!(!s.is_due(now), "a running table is not looked at twice");
    }

    #[test]
    fn due_tables_are_taken_earliest_first_and_stale_entries_dropped() {
        let now = Instant::now();
        let at = |ms: u64| now + Duration::from_millis(ms);
        let (mut tables, mut due) = due_at(now, &[("a", 30), ("b", 10), ("c", 20), ("d", 500)]);
        // "c" was hurried: a new entry now, the old one is stale. "gone" is no longer watched.
        tables.get_mut("c").unwrap().next_check = at(0);
        due.insert((at(0), "c".into()));
        due.insert((at(5), "gone".into()));
        let uris =
            |v: Vec<(String, Option<u64>)>| v.into_iter().map(|(u, _)| u).collect::<Vec<_>>();

        assert_eq!(
            uris(take_due(&mut due, &mut tables, at(100), first(2))),
            ["c", "b"]
        );
        assert!(tables["c"].running && tables["b"].running && !tables["a"].running);
        // The rest of what is due; "c"'s stale entry at 20 ms and "gone" are dropped, "d"
        // is not due yet and stays.
        assert_eq!(
            uris(take_due(&mut due, &mut tables, at(100), first(10))),
            ["a"]
        );
        assert_eq!(
            due.iter().map(|(_, u)| u.as_str()).collect::<Vec<_>>(),
            ["d"]
        );
        assert!(take_due(&mut due, &mut tables, at(100), first(10)).is_empty());
        assert_eq!(
            uris(take_due(&mut due, &mut tables, at(500), first(10))),
            ["d"]
        );
        assert!(take_due(&mut due, &mut tables, at(900), first(0)).is_empty());
    }

    #[test]
    fn a_refused_table_stays_first_and_stops_the_take() {
        let now = Instant::now();
        let at = |ms: u64| now + Duration::from_millis(ms);
        let (mut tables, mut due) =
            due_at(now, &[("s3://a", 10), ("file:///b", 20), ("s3://c", 30)]);
        // Room for no remote table: nothing is taken, not even the local one behind it.
        let local_only = |uri: &str| uri.starts_with("file:");
        assert!(take_due(&mut due, &mut tables, at(100), local_only).is_empty());
        assert_eq!(due.len(), 3);
        assert!(tables.values().all(|t| !t.running));
        // Room for one remote table: it and the local one are taken; the next remote stays.
        let mut remote_room = 1;
        let taken = take_due(&mut due, &mut tables, at(100), |uri: &str| {
            local_only(uri) || {
                let more = remote_room > 0;
                remote_room -= usize::from(more);
                more
            }
        });
        let uris: Vec<&str> = taken.iter().map(|(u, _)| u.as_str()).collect();
        assert_eq!(uris, ["s3://a", "file:///b"]);
        assert_eq!(
            due.iter().map(|(_, u)| u.as_str()).collect::<Vec<_>>(),
            ["s3://c"]
        );
    }
}
