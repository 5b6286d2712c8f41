//! The `makoto` command line: argument parsing, then library calls. `main` is a thin wrapper
//! around [`run_to`], which tests call in-process.
//!
//! ```
//! let mut out = Vec::new();
//! let code = makoto_cli::run_to(["makoto", "--version"], &mut out);
//! assert_eq!(code, std::process::ExitCode::SUCCESS);
//! ```

pub mod args;
mod commands;
mod context;
mod progress;

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

pub use commands::{EXIT_ERROR, EXIT_FINDINGS, EXIT_OK};

/// Warnings, except delta-kernel's: it logs as an error every probe of a log that does not
/// exist yet (each new warehouse table), and what it fails at reaches us as a `Result` that
/// makoto reports itself. `RUST_LOG` replaces this.
const DEFAULT_LOG_FILTER: &str = "warn,buoyant_kernel=off";

/// `makoto serve` is a service: what it does (tables loaded, versions attested, failures) is
/// logged at info level.
const SERVE_LOG_FILTER: &str = "warn,makoto_serve=info,buoyant_kernel=off";

fn init_logging(cli: &args::Cli) {
    let (default, json) = match &cli.command {
        args::Command::Serve(a) => (SERVE_LOG_FILTER, a.log_format == args::LogFormat::Json),
        _ => (DEFAULT_LOG_FILTER, false),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Parses `args` and runs the command, writing results to `out` and diagnostics to stderr.
pub fn run_to<I, T>(args: I, out: &mut dyn Write) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    ExitCode::from(run_status(args, out))
}

/// Like [`run_to`], returning the exit status as a number (0 ok, 1 findings, 2 error).
pub fn run_status<I, T>(args: I, out: &mut dyn Write) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    run_in(Process::Shared, args, out)
}

/// Whether the command has the process to itself (the `makoto` binary) or runs inside a host
/// (tests, the Python package): only in the first may it change process-wide settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Process {
    Own,
    Shared,
}

fn run_in<I, T>(process: Process, args: I, out: &mut dyn Write) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match args::Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_ERROR } else { EXIT_OK };
            if e.use_stderr() {
                let _ = e.print();
            } else {
                let _ = write!(out, "{e}");
            }
            return code;
        }
    };
    init_logging(&cli);
    if process == Process::Own {
        // Before the runtime's threads exist: a run's batches use several threads at once,
        // whose arenas otherwise keep their high-water marks (docs/performance.md (b), (f)).
        makoto_memory::fix_trim_threshold();
    }
    if process == Process::Own && matches!(cli.command, args::Command::Serve(_)) {
        // Before the runtime's threads exist: a service's RSS follows its arenas' high-water
        // marks (docs/performance.md (i)). The service logs the outcome when it starts.
        makoto_memory::limit_arenas_to_cores();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return EXIT_ERROR;
        }
    };
    match runtime.block_on(commands::run(cli, out)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            EXIT_ERROR
        }
    }
}

/// The error and its causes on one line, without repeating a cause its parent already quotes.
fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if out.contains(&s) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&s);
    }
    out.replace('\n', " ")
}

/// Entry point of the `makoto` binary.
pub fn main() -> ExitCode {
    let code = run_in(
        Process::Own,
        std::env::args_os(),
        &mut std::io::stdout().lock(),
    );
    ExitCode::from(code)
}
