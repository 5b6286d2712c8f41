use std::ops::ControlFlow;

use crate::Error;

/// Points of a run where everything before is durable and nothing after it has been
/// written. An observer may stop the run at any of them (used for cancellation and crash
/// tests). A batch reaches [`Phase::Signed`] only once the previous batch's commits have
/// ended, and [`Phase::PagesWritten`] on the run's own task; its two commit phases are
/// reached on the task that commits them, while the next batch is read, hashed and signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Files of the batch hashed, statements signed; nothing written.
    Signed,
    /// State-tree pages written (content-addressed; harmless if never referenced).
    PagesWritten,
    /// File rows committed to `system.makoto.files`.
    FilesCommitted,
    /// Attestation rows committed: the batch is attested.
    AttestationsCommitted,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Signed => "signed",
            Phase::PagesWritten => "pages-written",
            Phase::FilesCommitted => "files-committed",
            Phase::AttestationsCommitted => "attestations-committed",
        }
    }
}

/// What a run reports while it works.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event<'a> {
    /// Versions `from..=to` will be attested.
    Planned { table: &'a str, from: u64, to: u64 },
    /// Nothing new: every version through `through` is attested.
    UpToDate {
        table: &'a str,
        through: Option<u64>,
    },
    /// A batch needs `files` files (`bytes` bytes) hashed.
    HashingStarted { files: usize, bytes: u64 },
    /// `bytes` more bytes hashed.
    Hashed { bytes: u64 },
    /// A batch reached `phase`; `through` is its last version.
    Reached {
        phase: Phase,
        from: u64,
        through: u64,
    },
    /// Another run committed first; this one starts over from the store.
    ConcurrentRun { attempt: u32 },
}

/// Receives progress events; may stop the run at a [`Phase`].
pub trait Observer: Send + Sync {
    fn on_event(&self, event: &Event<'_>) -> ControlFlow<()> {
        let _ = event;
        ControlFlow::Continue(())
    }
}

/// Ignores every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObserver;

impl Observer for NoObserver {}

/// Tells `observer` about `event`; an observer that stops the run makes this an error.
pub(super) fn emit(observer: &dyn Observer, event: Event<'_>) -> Result<(), Error> {
    match observer.on_event(&event) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(()) => Err(Error::Interrupted {
            phase: match event {
                Event::Reached { phase, .. } => phase.as_str().to_owned(),
                other => format!("{other:?}"),
            },
        }),
    }
}
