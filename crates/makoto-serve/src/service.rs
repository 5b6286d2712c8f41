//! The watch loop: keeps the table set current, looks at each due table (one metadata request
//! for the commit after its attested head), and runs the attest job for tables with new
//! commits, at most `concurrency` at once. Exactly-once comes from the attest job itself (the
//! warehouse's Delta transactions), so replicas, cron runs and restarts may overlap.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use makoto_core::keys::Signer;
use makoto_delta::attest::{Event, Observer, Phase};
use makoto_delta::tsa::TsaClient;
use makoto_delta::{
    AttestOptions, AttestSummary, AttestationStore, Attestor, ChainHint, Location, SourceTable,
    StorageOptions,
};
use tokio::task::JoinSet;

use crate::Error;
use crate::metrics::Metrics;
use crate::runs::{self, RunFacts, RunLog};
use crate::schedule::{Outcome, TableState, Timing};
use crate::shard::Shard;
use crate::tables::{self, TableSource};

/// Everything `makoto serve` is started with.
pub struct ServeConfig {
    pub warehouse: String,
    pub storage: StorageOptions,
    pub signer: Option<Arc<dyn Signer>>,
    pub tables: TableSource,
    pub shard: Shard,
    /// Attest runs in flight at once, across tables.
    pub concurrency: usize,
    pub timing: Timing,
    /// How often the table set is looked at again (the tables file's modification time, or a
    /// discovery scan).
    pub rescan: Duration,
    pub tsa: Option<TsaClient>,
    pub identity: Option<String>,
    /// How often the memory the allocator kept after transient peaks is given back to the
    /// system; `None`: never (RSS then stays near the highest peak so far).
    pub release_memory: Option<Duration>,
}

impl std::fmt::Debug for ServeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeConfig")
            .field("warehouse", &self.warehouse)
            .field("tables", &self.tables)
            .field("shard", &self.shard)
            .field("concurrency", &self.concurrency)
            .field(
                "keyid",
                &self.signer.as_ref().map(|s| s.keyid().to_string()),
            )
            .finish()
    }
}

/// What the HTTP endpoints read while the loop runs.
#[derive(Debug, Default)]
pub struct Shared {
    pub tables: Mutex<BTreeMap<String, TableState>>,
    pub metrics: Metrics,
    /// The warehouse is open and the table set loaded.
    pub ready: AtomicBool,
    /// Shutting down: runs stop at their next batch boundary.
    pub stopping: AtomicBool,
    /// Reload the table set at the next tick (SIGHUP).
    pub reload: AtomicBool,
    /// When the loop last went round (a stalled loop fails `/healthz`).
    pub heartbeat: Mutex<Option<Instant>>,
    /// Who may ask for attestations over HTTP; `None`: nobody (requests are refused).
    pub tenants: Option<crate::tenants::Tenants>,
    /// Notified after every look, so that requests waiting for a version wake up.
    pub changed: tokio::sync::Notify,
    /// When each table is due, earliest first: dispatch takes from the front instead of
    /// walking every watched table. An entry whose time is no longer its table's
    /// `next_check` (the table was hurried, or removed) is skipped when it comes up. Locked
    /// after `tables`, never before.
    pub due: Mutex<BTreeSet<(Instant, String)>>,
}

impl Shared {
    /// Where `table_uri` stands: `None` when this replica does not watch it; otherwise its
    /// attested version. Marks the table due now, unless a run is in flight.
    pub fn hurry(&self, table_uri: &str) -> Option<Option<u64>> {
        let mut tables = self.tables.lock().ok()?;
        let t = tables.get_mut(table_uri)?;
        if !t.running {
            t.next_check = Instant::now();
            self.due.lock().ok()?.insert((t.next_check, t.uri.clone()));
        }
        Some(t.attested)
    }

    /// The attested version of `table_uri`, when watched.
    pub fn attested(&self, table_uri: &str) -> Option<Option<u64>> {
        self.tables.lock().ok()?.get(table_uri).map(|t| t.attested)
    }

    /// A copy of every table's state, for `/metrics` and `/v1/tables`.
    pub fn snapshot(&self) -> Vec<TableState> {
        self.tables
            .lock()
            .map(|t| t.values().cloned().collect())
            .unwrap_or_default()
    }
}

/// Stops a run at its next batch boundary once the service is shutting down: before a signed
/// batch is written (nothing written), or after one is committed.
struct StopAtBoundary(Arc<Shared>);

impl Observer for StopAtBoundary {
    fn on_event(&self, event: &Event<'_>) -> ControlFlow<()> {
        let boundary = matches!(
            event,
            Event::Reached {
                phase: Phase::Signed | Phase::AttestationsCommitted,
                ..
            }
        );
        if boundary && self.0.stopping.load(Ordering::SeqCst) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

/// What one look at one table came to, with what the metrics and the run record need.
struct Look {
    uri: String,
    outcome: Outcome,
    summary: Option<AttestSummary>,
    /// When the oldest commit this look attested (or failed to) was written.
    oldest_commit: Option<SystemTime>,
    started: SystemTime,
    /// The attested version the look started from.
    previously: Option<u64>,
}

/// What a task in flight comes back with.
enum Done {
    /// One table looked at, and attested when it had new commits.
    Look(Box<Look>),
    /// Local tables looked at together (one `stat` each, in one blocking task).
    Probed(Vec<Probed>),
}

/// One table of a batched look: whether the commit after its attested head exists.
struct Probed {
    uri: String,
    attested: Option<u64>,
    started: SystemTime,
    /// When that commit was written; `None` when there is none yet.
    found: Result<Option<DateTime<Utc>>, makoto_delta::Error>,
}

/// A table a batched look found a new commit in, waiting for room to run its attest job.
#[derive(Debug)]
struct Found {
    uri: String,
    attested: Option<u64>,
    written: DateTime<Utc>,
}

/// Most local tables looked at by one batched look.
const PROBE_BATCH: usize = 1024;

/// The running service.
#[derive(Debug)]
pub struct Service {
    config: ServeConfig,
    store: AttestationStore,
    shared: Arc<Shared>,
    /// The tables file's modification time when last read.
    tables_file_mtime: Option<SystemTime>,
    /// Opened tables (an object store each), kept so that a look is one metadata request.
    sources: BTreeMap<String, SourceTable>,
    next_rescan: Instant,
    runs: RunLog,
    /// Each table's newest row as this replica committed it, so that its next run does not
    /// read it back (one row per table; dropped when a run fails).
    hints: BTreeMap<String, ChainHint>,
    /// A batched look at local tables is in flight (at most one at a time).
    probing: bool,
    /// Tables with a new commit found by a batched look, started as room frees up. They stay
    /// marked running meanwhile, so nothing else starts them.
    found: VecDeque<Found>,
    next_release: Instant,
    /// The memory release in flight on a blocking thread (at most one).
    releasing: Option<tokio::task::JoinHandle<()>>,
}

impl Service {
    /// Opens (creating when missing) the warehouse and reads where every table's attestations
    /// end. The table set is loaded by [`Service::run`].
    pub async fn open(config: ServeConfig, shared: Arc<Shared>) -> Result<Self, Error> {
        // A table set that cannot be read stops the start before the warehouse is created.
        match &config.tables {
            TableSource::File(path) => {
                tables::read_tables_file(path)?;
            }
            TableSource::Discover(prefixes) => {
                for p in prefixes {
                    Location::named(p).map_err(|e| Error::Config {
                        what: format!("--discover {p}"),
                        reason: e.to_string(),
                    })?;
                }
            }
        }
        let service = runs::service_name(&config.shard);
        let location = Location::create(&config.warehouse).map_err(Error::Delta)?;
        let store = AttestationStore::create(location, config.storage.clone())
            .await
            .map_err(Error::Delta)?;
        Ok(Service {
            config,
            store,
            shared,
            tables_file_mtime: None,
            sources: BTreeMap::new(),
            next_rescan: Instant::now(),
            runs: RunLog::new(service, Instant::now()),
            hints: BTreeMap::new(),
            probing: false,
            found: VecDeque::new(),
            next_release: Instant::now(),
            releasing: None,
        })
    }

    /// Runs until `shutdown` resolves, then lets the runs in flight reach a batch boundary
    /// and returns.
    pub async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), Error> {
        self.refresh_tables(true).await?;
        self.shared.ready.store(true, Ordering::SeqCst);
        tracing::info!(
            tables = self.shared.snapshot().len(),
            shard = %self.config.shard,
            arenas = %makoto_memory::arena_limit()
                .map_or_else(|| "the allocator's default".to_owned(), |l| l.to_string()),
            trim_threshold = %makoto_memory::trim_threshold()
                .map_or_else(|| "the allocator's default".to_owned(), |t| t.to_string()),
            "serving"
        );
        let mut in_flight: JoinSet<Done> = JoinSet::new();
        tokio::pin!(shutdown);
        let tick = self.config.timing.poll.min(Duration::from_millis(200));
        loop {
            if let Ok(mut h) = self.shared.heartbeat.lock() {
                *h = Some(Instant::now());
            }
            tokio::select! {
                () = &mut shutdown => break,
                Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                    match done {
                        Ok(done) => self.done(done),
                        Err(e) => tracing::error!(error = %e, "an attest task failed"),
                    }
                }
                () = tokio::time::sleep(tick) => {}
            }
            let reload = self.shared.reload.swap(false, Ordering::SeqCst);
            if (reload || Instant::now() >= self.next_rescan)
                && let Err(e) = self.refresh_tables(reload).await
            {
                tracing::error!(error = %e, "the table set could not be reloaded; keeping the previous one");
            }
            self.dispatch(&mut in_flight);
            if self.runs.is_due(Instant::now()) {
                self.flush_runs().await;
            }
            self.release_memory(Instant::now());
        }
        tracing::info!(in_flight = in_flight.len(), "shutting down");
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.ready.store(false, Ordering::SeqCst);
        while let Some(done) = in_flight.join_next().await {
            if let Ok(done) = done {
                self.done(done);
            }
        }
        self.flush_runs().await;
        Ok(())
    }

    /// Every `release_memory` interval, asks the allocator to give back what it keeps after
    /// the transient peaks of the runs (Parquet pages, JSON decoders), on a blocking thread so
    /// that the loop never waits for it. Without this, RSS follows the highest peak so far.
    fn release_memory(&mut self, now: Instant) {
        let Some(every) = self.config.release_memory else {
            return;
        };
        let busy = self.releasing.as_ref().is_some_and(|h| !h.is_finished());
        if now < self.next_release || busy {
            return;
        }
        self.next_release = now + every;
        let shared = self.shared.clone();
        self.releasing = Some(tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let released = makoto_memory::release_freed();
            let m = &shared.metrics;
            let counter = match released {
                makoto_memory::Released::Some => &m.memory_released,
                _ => &m.memory_not_released,
            };
            Metrics::add(counter, 1);
            tracing::debug!(
                ?released,
                ms = started.elapsed().as_secs_f64() * 1e3,
                "gave freed memory back"
            );
        }));
    }

    async fn flush_runs(&mut self) {
        if let Err(e) = self.runs.flush(&self.store, &self.shared.metrics).await {
            tracing::warn!(error = %e, "run records could not be written to system.makoto.runs; keeping them for the next try");
        }
    }

    /// Starts what is due, earliest first: attest jobs for tables a batched look found new
    /// commits in, while there is room; then one batched look at the due local tables (no
    /// task per table) and a job per due remote table while there is room. It costs the
    /// tables it starts, not the tables watched. While a batched look is in flight, due
    /// tables get a job each, so one slow file system never stops the others.
    fn dispatch(&mut self, in_flight: &mut JoinSet<Done>) {
        let limit = self.config.concurrency.max(1);
        let jobs = in_flight.len().saturating_sub(usize::from(self.probing));
        let mut room = limit.saturating_sub(jobs);
        while room > 0
            && let Some(found) = self.found.pop_front()
        {
            if let Some(source) = self.sources.get(&found.uri).cloned() {
                in_flight.spawn(
                    self.job(found.uri, found.attested, Some(source), Some(found.written))
                        .look(),
                );
                room -= 1;
            }
        }
        if room == 0 {
            return;
        }
        // Due tables in order, until one finds no room: local ones (already opened) go to one
        // batched look, up to PROBE_BATCH, unless one is in flight; the others take a job slot.
        let mut batch_left = if self.probing { 0 } else { PROBE_BATCH };
        let mut jobs_left = room;
        let sources = &self.sources;
        let taken = self.take_due(|uri| {
            let local = sources
                .get(uri)
                .is_some_and(|s| s.local_log_dir().is_some());
            let slot = if local && batch_left > 0 {
                &mut batch_left
            } else {
                &mut jobs_left
            };
            let free = *slot > 0;
            *slot = slot.saturating_sub(1);
            free
        });
        let mut probes = Vec::new();
        for (uri, attested) in taken {
            let source = self.source(&uri);
            let local = source
                .as_ref()
                .filter(|_| !self.probing && probes.len() < PROBE_BATCH)
                .and_then(|s| Some((s.clone(), s.local_log_dir()?)));
            match local {
                Some((source, dir)) => probes.push((uri, attested, source, dir)),
                None => {
                    in_flight.spawn(self.job(uri, attested, source, None).look());
                }
            }
        }
        if !probes.is_empty() {
            self.probing = true;
            in_flight.spawn(probe(probes));
        }
    }

    /// The due tables `admit` takes, in order, marked running.
    fn take_due(&self, admit: impl FnMut(&str) -> bool) -> Vec<(String, Option<u64>)> {
        let now = Instant::now();
        let Ok(mut tables) = self.shared.tables.lock() else {
            return Vec::new();
        };
        let Ok(mut due) = self.shared.due.lock() else {
            return Vec::new();
        };
        crate::schedule::take_due(&mut due, &mut tables, now, admit)
    }

    /// The table opened (kept for the next look); `None` when it cannot be opened (its job
    /// opens it again and reports why).
    fn source(&mut self, uri: &str) -> Option<SourceTable> {
        if let Some(s) = self.sources.get(uri) {
            return Some(s.clone());
        }
        let s = Location::existing(uri)
            .and_then(|l| SourceTable::open(l, &self.config.storage))
            .ok()?;
        self.sources.insert(uri.to_owned(), s.clone());
        Some(s)
    }

    fn job(
        &self,
        uri: String,
        attested: Option<u64>,
        source: Option<SourceTable>,
        written: Option<DateTime<Utc>>,
    ) -> Job {
        Job {
            source,
            written,
            hint: self.hints.get(&uri).cloned(),
            uri,
            attested,
            store: self.store.clone(),
            signer: self.config.signer.clone(),
            options: self.attest_options(),
            shared: self.shared.clone(),
        }
    }

    /// Takes in what a task came back with: a look is recorded; of a batched look, tables
    /// without a new commit are recorded idle (or failed), the others wait for a job.
    fn done(&mut self, done: Done) {
        match done {
            Done::Look(look) => self.record(*look),
            Done::Probed(probed) => {
                self.probing = false;
                for p in probed {
                    let outcome = match p.found {
                        Ok(Some(written)) => {
                            self.found.push_back(Found {
                                uri: p.uri,
                                attested: p.attested,
                                written,
                            });
                            continue;
                        }
                        Ok(None) => Outcome::Idle,
                        Err(e) => Outcome::Failed {
                            kind: e.kind().to_owned(),
                            message: e.to_string(),
                        },
                    };
                    self.record(Look {
                        uri: p.uri,
                        outcome,
                        summary: None,
                        oldest_commit: None,
                        started: p.started,
                        previously: p.attested,
                    });
                }
            }
        }
    }

    fn attest_options(&self) -> AttestOptions {
        AttestOptions {
            storage: self.config.storage.clone(),
            tsa: self.config.tsa.clone(),
            identity: self.config.identity.clone(),
            ..AttestOptions::default()
        }
    }

    fn record(&mut self, look: Look) {
        let now = Instant::now();
        let finished = SystemTime::now();
        let m = &self.shared.metrics;
        Metrics::add(&m.checks, 1);
        match &look.outcome {
            Outcome::Failed { kind, message } => {
                Metrics::add(&m.runs_failed, 1);
                m.error(kind);
                tracing::warn!(table = %look.uri, kind = %kind, error = %message, "attest failed");
            }
            Outcome::Attested { through, commits } => {
                Metrics::add(&m.runs_ok, 1);
                Metrics::add(&m.commits_attested, *commits);
                if *commits > 0 {
                    tracing::info!(table = %look.uri, through, commits, "attested");
                }
            }
            Outcome::Idle => {}
        }
        if let Some(s) = &look.summary {
            Metrics::add(&m.files_hashed, s.files_hashed);
            Metrics::add(&m.bytes_hashed, s.bytes_hashed);
        }
        match look.summary.as_ref().and_then(|s| s.tip.clone()) {
            Some(tip) => {
                self.hints.insert(look.uri.clone(), tip);
            }
            None if matches!(look.outcome, Outcome::Failed { .. }) => {
                self.hints.remove(&look.uri);
            }
            None => {}
        }
        if let Some(written) = look.oldest_commit {
            let waited = SystemTime::now()
                .duration_since(written)
                .unwrap_or_default();
            m.latency(waited.as_secs_f64());
        }
        let mut failures = 0;
        if let Ok(mut tables) = self.shared.tables.lock()
            && let Some(t) = tables.get_mut(&look.uri)
        {
            t.record(look.outcome.clone(), now, &self.config.timing);
            failures = t.failures;
            if let Ok(mut due) = self.shared.due.lock() {
                due.insert((t.next_check, t.uri.clone()));
            }
        }
        let summary = look.summary.as_ref();
        self.runs.push(
            &RunFacts {
                table_uri: &look.uri,
                outcome: &look.outcome,
                run_id: summary.map(|s| s.run_id.as_str()),
                previously_attested: look.previously,
                latest_version: summary.map(|s| s.latest_version),
                files_hashed: summary.map_or(0, |s| s.files_hashed),
                bytes_hashed: summary.map_or(0, |s| s.bytes_hashed),
                started: look.started,
                finished,
                oldest_commit: look.oldest_commit,
                failures,
            },
            &self.shared.metrics,
        );
        self.shared.changed.notify_waiters();
    }

    /// Loads the table set when it may have changed: a tables file whose modification time
    /// moved (or on `force`, SIGHUP), or a discovery scan when due.
    async fn refresh_tables(&mut self, force: bool) -> Result<(), Error> {
        self.next_rescan = Instant::now() + self.config.rescan;
        let uris = match &self.config.tables {
            TableSource::File(path) => {
                let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
                if !force && mtime.is_some() && mtime == self.tables_file_mtime {
                    return Ok(());
                }
                let uris = tables::read_tables_file(path)?;
                self.tables_file_mtime = mtime;
                uris
            }
            TableSource::Discover(prefixes) => {
                let mut all = Vec::new();
                for p in prefixes {
                    all.extend(tables::discover(p, &self.config.storage).await?);
                }
                all
            }
        };
        let heads = self.heads().await?;
        let now = Instant::now();
        let owned: Vec<String> = uris
            .into_iter()
            .filter(|u| self.config.shard.owns(u))
            .collect();
        let keep: std::collections::BTreeSet<&String> = owned.iter().collect();
        let mut tables = self.shared.tables.lock().map_err(|_| Error::Poisoned)?;
        tables.retain(|uri, _| keep.contains(uri));
        self.sources.retain(|uri, _| keep.contains(uri));
        self.hints.retain(|uri, _| keep.contains(uri));
        let mut added = 0;
        let mut due = self.shared.due.lock().map_err(|_| Error::Poisoned)?;
        for uri in owned {
            tables.entry(uri.clone()).or_insert_with(|| {
                added += 1;
                due.insert((now, uri.clone()));
                TableState::new(uri.clone(), heads.get(&uri).copied(), now)
            });
        }
        if added > 0 {
            tracing::info!(added, watched = tables.len(), "table set loaded");
        }
        Ok(())
    }

    /// The last attested version of every table in the warehouse.
    async fn heads(&self) -> Result<BTreeMap<String, u64>, Error> {
        Ok(makoto_delta::head::heads(&self.store)
            .await
            .map_err(Error::Delta)?
            .into_iter()
            .map(|h| (h.table, h.version))
            .collect())
    }
}

/// Looks at local tables in one blocking task: for each, when the commit after its attested
/// head was written, if it exists.
async fn probe(tables: Vec<(String, Option<u64>, SourceTable, std::path::PathBuf)>) -> Done {
    let started = SystemTime::now();
    let uris: Vec<(String, Option<u64>)> =
        tables.iter().map(|(u, a, _, _)| (u.clone(), *a)).collect();
    let looked = tokio::task::spawn_blocking(move || {
        tables
            .iter()
            .map(|(_, attested, source, dir)| {
                source.local_commit_modified(dir, attested.map_or(0, |v| v + 1))
            })
            .collect::<Vec<_>>()
    })
    .await;
    let probed = match looked {
        Ok(found) => uris
            .into_iter()
            .zip(found)
            .map(|((uri, attested), found)| Probed {
                uri,
                attested,
                started,
                found,
            })
            .collect(),
        // The blocking task did not finish (the runtime is shutting down): no table was
        // looked at, so each is recorded as failed and looked at again after its backoff.
        Err(e) => uris
            .into_iter()
            .map(|(uri, attested)| Probed {
                found: Err(makoto_delta::Error::Task {
                    reason: format!("the look at {uri} did not finish: {e}"),
                }),
                uri,
                attested,
                started,
            })
            .collect(),
    };
    Done::Probed(probed)
}

/// One look at one table, run as its own task.
struct Job {
    /// The opened table; `None` when opening failed (the look opens it again and reports why).
    source: Option<SourceTable>,
    /// When the commit after the attested head was written, when a batched look found it.
    written: Option<DateTime<Utc>>,
    uri: String,
    attested: Option<u64>,
    hint: Option<ChainHint>,
    store: AttestationStore,
    signer: Option<Arc<dyn Signer>>,
    options: AttestOptions,
    shared: Arc<Shared>,
}

impl Job {
    async fn look(self) -> Done {
        let uri = self.uri.clone();
        let previously = self.attested;
        let started = SystemTime::now();
        let (outcome, summary, oldest_commit) = match self.try_look().await {
            Ok(found) => found,
            Err(e) => (
                Outcome::Failed {
                    kind: e.kind().to_owned(),
                    message: e.to_string(),
                },
                None,
                None,
            ),
        };
        Done::Look(Box::new(Look {
            uri,
            outcome,
            summary,
            oldest_commit,
            started,
            previously,
        }))
    }

    /// The outcome, the run's summary, and when the oldest commit it attested was written.
    async fn try_look(
        self,
    ) -> Result<(Outcome, Option<AttestSummary>, Option<SystemTime>), makoto_delta::Error> {
        let source = match self.source {
            Some(s) => s,
            None => SourceTable::open(Location::existing(&self.uri)?, &self.options.storage)?,
        };
        let next = self.attested.map_or(0, |v| v + 1);
        let written = match self.written {
            Some(w) => w,
            None => match source.commit_modified(next).await? {
                Some(w) => w,
                None => return Ok((Outcome::Idle, None, None)),
            },
        };
        let attestor = Attestor::new(source, self.store, self.signer, self.options)
            .with_observer(Arc::new(StopAtBoundary(self.shared.clone())))
            .with_hint(self.hint);
        let summary = match attestor.run().await {
            Ok(s) => s,
            // Stopped at a batch boundary for shutdown: whatever was committed stands.
            Err(makoto_delta::Error::Interrupted { .. }) => return Ok((Outcome::Idle, None, None)),
            Err(e) => return Err(e),
        };
        let outcome = match summary.attested_through() {
            Some(through) => Outcome::Attested {
                through,
                commits: summary.attested.len() as u64,
            },
            None => Outcome::Idle,
        };
        let oldest_commit = (!summary.attested.is_empty()).then(|| SystemTime::from(written));
        Ok((outcome, Some(summary), oldest_commit))
    }
}
