//! Giving the system back memory that the allocator keeps after it was
//! freed.

/// Asks glibc's allocator to return the free pages of every arena to the
/// system. glibc keeps what a thread freed for that thread's next
/// allocations: after 2,000 WebSocket clients left, the 8 MiB they used
/// stayed resident without it. The page server calls it once the clients
/// that left are gone (`ServeOptions::release_memory`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn release() {
    // SAFETY: `malloc_trim` takes no pointer and touches only the
    // allocator's own free lists, under the allocator's locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Elsewhere the allocator has no such call or returns memory by itself.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release() {}

/// Blocks at least this large get pages of their own, given back when
/// freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const OWN_PAGES_FROM: libc::c_int = 256 * 1024;

/// Tells glibc's allocator to give every block of [`OWN_PAGES_FROM`] or
/// more pages of its own (unless `MALLOC_MMAP_THRESHOLD_` says
/// otherwise), and to keep one heap for every thread (unless
/// `MALLOC_ARENA_MAX` says otherwise). By default glibc raises that
/// threshold up to 32 MiB as large blocks are freed, and then serves the
/// next ones from its heaps, which keep the pages after they are freed and
/// copy a block that grows: the batches a burst of finished jobs passes
/// from the state to the history's database are megabytes each, and with
/// this the peak RSS of `load e2e` with the history fell by 4 to 8 MiB.
/// And by default each thread that allocates while another holds a heap
/// gets a heap of its own (up to 8 a core), each keeping what its threads
/// freed: the state's reader, the history's writer and its SQLite, the
/// page server. One heap: the peak of `load e2e`'s burst with the history
/// 69.9 MiB (median of 3) against 76.9 (BENCHMARKS.md, History).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn configure() {
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // SAFETY: `mallopt` takes no pointer and only sets one of the
        // allocator's parameters, under its locks, before any thread starts.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, OWN_PAGES_FROM);
        }
    }
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: as above.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

/// Elsewhere the allocator is left as it is.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn configure() {}
