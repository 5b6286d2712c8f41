//! Running the library's async jobs from Python: on one shared tokio runtime, with the GIL
//! released, and stopped at the next await point when Python has a signal pending (Ctrl-C).

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use pyo3::prelude::*;

use crate::errors::internal;

/// How often a running job looks for a pending KeyboardInterrupt.
const SIGNAL_POLL: Duration = Duration::from_millis(50);

fn runtime() -> PyResult<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("makoto")
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| internal(format!("cannot start the async runtime: {e}")))
}

/// Runs `job` to completion without holding the GIL. A pending signal (Ctrl-C raises
/// KeyboardInterrupt) cancels the job at its next await point and re-raises: the library
/// writes each commit atomically, so a cancelled job leaves what a killed process would —
/// nothing partial.
pub(crate) fn run<F, T>(py: Python<'_>, job: F) -> PyResult<T>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let rt = runtime()?;
    let mut handle = rt.spawn(job);
    loop {
        // The timer is made inside `block_on`: it needs the runtime's context.
        let polled = py
            .detach(|| rt.block_on(async { tokio::time::timeout(SIGNAL_POLL, &mut handle).await }));
        match polled {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) => return Err(internal(format!("the job failed: {e}"))),
            Err(_elapsed) => {
                if let Err(interrupt) = py.check_signals() {
                    handle.abort();
                    // Wait until the task is gone, so nothing runs on after the exception.
                    let _ = py.detach(|| rt.block_on(&mut handle));
                    return Err(interrupt);
                }
            }
        }
    }
}
