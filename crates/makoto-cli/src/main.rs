//! The `makoto` binary: [`makoto_cli::main`] on jemalloc.

/// Every allocation of the binary goes through jemalloc ([`MALLOC_CONF`]): glibc's malloc
/// keeps what threads free in per-thread arenas and returns pages only from the top of a heap,
/// so a long-running `serve` stayed resident at its arenas' high-water marks, and one-shot
/// commands peaked higher than what they held (docs/performance.md (i)).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read before the first allocation (the symbol jemalloc's own weak
/// `malloc_conf` gives way to; `_RJEM_MALLOC_CONF` in the environment is applied after it):
/// one arena, as glibc's was limited to one per core, and pages freed go back to the system at
/// once rather than after ten seconds, so resident memory follows what the process holds.
#[cfg(not(target_env = "msvc"))]
#[allow(unsafe_code, non_upper_case_globals)]
// SAFETY: jemalloc reads this symbol as a `const char *` to a NUL-terminated string;
// `&[u8; N]` is one pointer to bytes that end in NUL, live and immutable for the whole process.
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static MALLOC_CONF: &[u8; 44] = b"narenas:1,dirty_decay_ms:0,muzzy_decay_ms:0\0";

fn main() -> std::process::ExitCode {
    makoto_cli::main()
}

#[cfg(all(test, not(target_env = "msvc")))]
mod tests {
    /// jemalloc reads the exported options (the symbol's name is the one the prefixed build of
    /// jemalloc reads): one arena for allocations, not four per core.
    #[test]
    fn jemalloc_runs_with_the_exported_options() {
        assert_eq!(tikv_jemalloc_ctl::opt::narenas::read().unwrap(), 1);
    }
}
