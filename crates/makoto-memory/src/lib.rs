//! Memory the process no longer uses, given back.
//!
//! glibc's allocator keeps what a thread frees in that thread's arena and returns pages to the
//! system only from the top of a heap. A long-running process whose transient peaks are large
//! (a service that runs many attest jobs at once, each reading Parquet and JSON) therefore
//! stays resident at the sum of its arenas' high-water marks, and its RSS climbs over hours
//! while what it holds stays small (measured in `docs/performance.md`, section (i)).
//! [`release_freed`] asks glibc to return every whole free page of every arena
//! (`malloc_trim(0)`); [`resident_bytes`] reads the resident set size to show the effect.
//! [`limit_arenas_to_cores`] keeps glibc from opening more arenas than there are cores (its
//! default is eight per core), each of which would keep its own high-water mark;
//! [`fix_trim_threshold`] keeps glibc from raising its thresholds, so that large freed blocks
//! leave the process.
//!
//! ```
//! let before = makoto_memory::resident_bytes();
//! let outcome = makoto_memory::release_freed();
//! println!("{before:?} bytes resident; trim: {outcome:?}");
//! ```

/// What asking the allocator to give back freed memory came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Released {
    /// The allocator returned some memory to the system.
    Some,
    /// It had nothing whole to return.
    Nothing,
    /// The allocator has no such call (not glibc): allocators such as musl's, macOS's and
    /// Windows' return large free blocks themselves.
    Unsupported,
}

/// Asks the C allocator to return the free pages of all its arenas to the system. Live
/// allocations are not moved or touched. glibc locks each arena while it walks it, so other
/// threads' allocations wait for that arena meanwhile: call it from a thread that may block
/// (a blocking task), every few seconds at most.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn release_freed() -> Released {
    #[allow(unsafe_code)]
    // SAFETY: `malloc_trim` takes no pointer and touches only the allocator's own free lists,
    // under the same arena locks as malloc and free; any argument is valid (0: keep no slack).
    let released = unsafe { libc::malloc_trim(0) };
    if released == 1 {
        Released::Some
    } else {
        Released::Nothing
    }
}

/// Asks the C allocator to return freed memory: nothing to ask outside glibc.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_freed() -> Released {
    Released::Unsupported
}

/// What limiting the allocator's arenas came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ArenaLimit {
    /// New arenas stop at this many.
    Set(usize),
    /// The operator chose (`MALLOC_ARENA_MAX` or `glibc.malloc.arena_max` in
    /// `GLIBC_TUNABLES`): glibc already applied their choice, which is kept.
    FromEnvironment,
    /// The allocator refused the value.
    Refused,
    /// The allocator has no arenas to limit (not glibc).
    Unsupported,
}

impl std::fmt::Display for ArenaLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Set(n) => write!(f, "{n}"),
            Self::FromEnvironment => f.write_str("set by the environment"),
            Self::Refused => f.write_str("refused"),
            Self::Unsupported => f.write_str("not glibc"),
        }
    }
}

/// Limits glibc's malloc to one arena per core the process may run on, unless the operator
/// chose a limit in the environment. Threads beyond that share arenas: with no more cores,
/// they could not all allocate at once anyway.
///
/// Call it first thing in a process that owns its allocator (a binary's `main`, not a library
/// loaded into someone else's process), before threads start: glibc fixes the limit the first
/// time a thread needs a new arena after eight exist, and arenas already made stay.
/// Only the first call acts; later ones return its outcome, also kept for [`arena_limit`].
pub fn limit_arenas_to_cores() -> ArenaLimit {
    *ARENA_LIMIT.get_or_init(limit_arenas_unless_chosen)
}

/// What [`limit_arenas_to_cores`] came to, if the process called it.
pub fn arena_limit() -> Option<ArenaLimit> {
    ARENA_LIMIT.get().copied()
}

static ARENA_LIMIT: std::sync::OnceLock<ArenaLimit> = std::sync::OnceLock::new();

fn limit_arenas_unless_chosen() -> ArenaLimit {
    if chosen_in_environment(&["MALLOC_ARENA_MAX"], &["glibc.malloc.arena_max"]) {
        return ArenaLimit::FromEnvironment;
    }
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    limit_arenas(cores)
}

/// `GLIBC_TUNABLES` (`name=value:name=value`) sets the tunable `wanted`.
fn tunables_set(tunables: &str, wanted: &str) -> bool {
    tunables.split(':').any(|t| {
        t.split_once('=')
            .is_some_and(|(name, _)| name.trim() == wanted)
    })
}

/// Sets glibc's `M_ARENA_MAX`.
fn limit_arenas(max: usize) -> ArenaLimit {
    match mallopt(Param::ArenaMax, max) {
        Some(true) => ArenaLimit::Set(max),
        Some(false) => ArenaLimit::Refused,
        None => ArenaLimit::Unsupported,
    }
}

/// A glibc malloc parameter this crate sets.
#[derive(Debug, Clone, Copy)]
enum Param {
    ArenaMax,
    TrimThreshold,
}

/// Sets a malloc parameter: `Some(true)` when glibc took it, `Some(false)` when it refused,
/// `None` outside glibc.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn mallopt(param: Param, value: usize) -> Option<bool> {
    let param = match param {
        Param::ArenaMax => libc::M_ARENA_MAX,
        Param::TrimThreshold => libc::M_TRIM_THRESHOLD,
    };
    let Ok(value) = libc::c_int::try_from(value) else {
        return Some(false);
    };
    #[allow(unsafe_code)]
    // SAFETY: `mallopt` takes two integers and sets a field of the allocator's parameters
    // under its own lock; an out-of-range value is refused (return 0), not undefined.
    let set = unsafe { libc::mallopt(param, value) };
    Some(set == 1)
}

/// No malloc parameters outside glibc.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn mallopt(_param: Param, _value: usize) -> Option<bool> {
    None
}

/// The operator set one of `variables`, or one of `tunables` in `GLIBC_TUNABLES`.
fn chosen_in_environment(variables: &[&str], tunables: &[&str]) -> bool {
    let set = std::env::var_os("GLIBC_TUNABLES");
    variables.iter().any(|v| std::env::var_os(v).is_some())
        || set
            .as_deref()
            .and_then(std::ffi::OsStr::to_str)
            .is_some_and(|t| tunables.iter().any(|name| tunables_set(t, name)))
}

/// What fixing the allocator's trim threshold came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrimThreshold {
    /// Free memory above this many bytes at the top of a heap goes back to the system, and
    /// blocks of this size or more are mapped on their own.
    Set(usize),
    /// The operator chose (`MALLOC_TRIM_THRESHOLD_`, `MALLOC_MMAP_THRESHOLD_`, or their
    /// `GLIBC_TUNABLES` names): kept.
    FromEnvironment,
    /// The allocator refused the value.
    Refused,
    /// Not glibc.
    Unsupported,
}

/// The trim threshold [`fix_trim_threshold`] sets: glibc's initial default.
pub const TRIM_THRESHOLD: usize = 128 * 1024;

/// Keeps glibc's trim threshold at [`TRIM_THRESHOLD`] instead of letting it grow, unless the
/// operator chose one in the environment.
///
/// By default glibc raises its mmap threshold (up to 32 MiB) each time a mapped block is
/// freed, and its trim threshold to twice that, so that later large blocks come from the
/// arenas and stay resident once freed. With several threads allocating at once (a run that
/// commits one batch while it hashes and signs the next), each arena then keeps its own
/// high-water mark: measured in `docs/performance.md` (b) and (f), 20 – 45 % more resident
/// memory for the same peak heap. Setting the threshold turns that growth off.
///
/// Call it first thing in a process that owns its allocator (a binary's `main`, not a library
/// loaded into someone else's process). Only the first call acts; later ones return its
/// outcome, also kept for [`trim_threshold`].
pub fn fix_trim_threshold() -> TrimThreshold {
    *TRIM.get_or_init(fix_trim_unless_chosen)
}

/// What [`fix_trim_threshold`] came to, if the process called it.
pub fn trim_threshold() -> Option<TrimThreshold> {
    TRIM.get().copied()
}

static TRIM: std::sync::OnceLock<TrimThreshold> = std::sync::OnceLock::new();

impl std::fmt::Display for TrimThreshold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Set(n) => write!(f, "{n} bytes"),
            Self::FromEnvironment => f.write_str("set by the environment"),
            Self::Refused => f.write_str("refused"),
            Self::Unsupported => f.write_str("not glibc"),
        }
    }
}

fn fix_trim_unless_chosen() -> TrimThreshold {
    if chosen_in_environment(
        &["MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_"],
        &["glibc.malloc.trim_threshold", "glibc.malloc.mmap_threshold"],
    ) {
        return TrimThreshold::FromEnvironment;
    }
    set_trim_threshold(TRIM_THRESHOLD)
}

/// Sets glibc's `M_TRIM_THRESHOLD` (which also stops its dynamic mmap threshold).
fn set_trim_threshold(bytes: usize) -> TrimThreshold {
    match mallopt(Param::TrimThreshold, bytes) {
        Some(true) => TrimThreshold::Set(bytes),
        Some(false) => TrimThreshold::Refused,
        None => TrimThreshold::Unsupported,
    }
}

/// The process's resident set size in bytes (`VmRSS` of `/proc/self/status`); `None` where
/// the system does not say.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    vm_rss(&status)
}

/// `VmRSS:   123456 kB` in a `/proc/PID/status` text, in bytes.
fn vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kb = line.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()?;
    kb.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_reads_kilobytes() {
        let status = "Name:\tmakoto\nVmHWM:\t  9000 kB\nVmRSS:\t   2048 kB\nThreads:\t4\n";
        assert_eq!(vm_rss(status), Some(2048 * 1024));
        assert_eq!(vm_rss("VmRSS:\t12 MB\n"), None);
        assert_eq!(vm_rss("VmHWM:\t12 kB\n"), None);
        assert_eq!(vm_rss("VmRSS:\tlots kB\n"), None);
    }

    #[test]
    fn tunables_that_limit_arenas() {
        let arenas = |t: &str| tunables_set(t, "glibc.malloc.arena_max");
        assert!(arenas("glibc.malloc.arena_max=4"));
        assert!(arenas(
            "glibc.malloc.trim_threshold=128:glibc.malloc.arena_max=1"
        ));
        assert!(!arenas("glibc.malloc.arena_test=4"));
        assert!(!arenas("glibc.malloc.arena_max_x=4"));
        assert!(!arenas(""));
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn freed_memory_goes_back_to_the_system() {
        // 64 MiB in blocks below the mmap threshold, so they come from the arena, then all but
        // the last freed: the last one pins the heap's top, so only a trim returns the rest.
        let mut blocks: Vec<Vec<u8>> = (0..2048).map(|i| vec![i as u8; 32 * 1024]).collect();
        let pin = blocks.pop();
        let before = resident_bytes().unwrap_or(0);
        drop(blocks);
        let outcome = release_freed();
        let after = resident_bytes().unwrap_or(u64::MAX);
        assert_eq!(outcome, Released::Some);
        assert!(
            after + 32 * 1024 * 1024 < before,
            "resident {before} -> {after} bytes: less than 32 MiB given back"
        );
        drop(pin);
    }

    /// The number of arenas glibc has made (`<heap nr=` entries of `malloc_info`).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    fn arenas() -> usize {
        let path = std::env::temp_dir().join(format!("makoto-arenas-{}.xml", std::process::id()));
        let c_path = std::ffi::CString::new(path.to_string_lossy().as_bytes()).unwrap();
        // SAFETY: a valid path and mode; the stream is closed before the file is read.
        unsafe {
            let f = libc::fopen(c_path.as_ptr(), c"w".as_ptr());
            assert!(!f.is_null());
            assert_eq!(libc::malloc_info(0, f), 0);
            libc::fclose(f);
        }
        let xml = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        xml.matches("<heap nr=").count()
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn threads_share_the_limited_arenas() {
        // A limit of one: no arena is made after this, whatever the other tests do meanwhile.
        assert_eq!(limit_arenas(1), ArenaLimit::Set(1));
        let before = arenas();
        // Sixteen threads allocating while all alive: unlimited, glibc gives most their own.
        let barrier = std::sync::Barrier::new(16);
        std::thread::scope(|s| {
            for i in 0..16u8 {
                let barrier = &barrier;
                s.spawn(move || {
                    let block = vec![i; 4096];
                    barrier.wait();
                    drop(block);
                });
            }
        });
        assert_eq!(arenas(), before, "new arenas after the limit of one");
    }
}
