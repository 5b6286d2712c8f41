//! Progress display for a terminal; silent otherwise.

use std::io::IsTerminal;
use std::ops::ControlFlow;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use makoto_delta::{Event, Observer};

/// Shows a hashing progress bar on stderr when stderr is a terminal.
pub struct TerminalProgress {
    bar: Mutex<Option<ProgressBar>>,
    enabled: bool,
}

impl TerminalProgress {
    pub fn new(quiet: bool) -> Self {
        TerminalProgress {
            bar: Mutex::new(None),
            enabled: !quiet && std::io::stderr().is_terminal(),
        }
    }

    pub fn finish(&self) {
        if let Ok(mut g) = self.bar.lock()
            && let Some(b) = g.take()
        {
            b.finish_and_clear();
        }
    }
}

impl Observer for TerminalProgress {
    fn on_event(&self, event: &Event<'_>) -> ControlFlow<()> {
        if !self.enabled {
            return ControlFlow::Continue(());
        }
        let Ok(mut guard) = self.bar.lock() else {
            return ControlFlow::Continue(());
        };
        match event {
            Event::Planned { table, from, to } => {
                eprintln!("attesting {table} versions {from}..={to}");
            }
            Event::HashingStarted { files, bytes } if *bytes > 0 => {
                if let Some(old) = guard.take() {
                    old.finish_and_clear();
                }
                let bar = ProgressBar::with_draw_target(Some(*bytes), ProgressDrawTarget::stderr());
                if let Ok(style) = ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                ) {
                    bar.set_style(style.progress_chars("=> "));
                }
                bar.set_message(format!("hashing {files} files"));
                *guard = Some(bar);
            }
            Event::Hashed { bytes } => {
                if let Some(b) = guard.as_ref() {
                    b.inc(*bytes);
                }
            }
            Event::ConcurrentRun { attempt } => {
                eprintln!(
                    "another run attested this table first; starting over (attempt {attempt})"
                );
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}
