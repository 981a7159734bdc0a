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
