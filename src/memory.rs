//! Giving memory back to the operating system after a burst of allocation.

/// Hands memory freed after a burst (parsing the probes file: the YAML parser holds every event
/// of the document at once, some 25 MB for 10,000 probes) back to the OS. glibc keeps such freed
/// memory in its heaps, where it would count against the resident size for the process's life.
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of the heaps to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}
