//! How dropline's binaries allocate. Each binary declares
//! `#[global_allocator] static ALLOCATOR: dropline_memory::Allocator = dropline_memory::Allocator;`
//! and calls [`use_small_pages`] first thing in `main`.
//!
//! Process-wide and for binaries only: a library must not choose the
//! allocator of whoever links it.

/// mimalloc rather than the system allocator: a purchase allocates a few
/// dozen short-lived buffers across worker threads, and glibc's malloc/free
/// took about a sixth of the gateway's CPU in profiles of a 50,000-buyer
/// burst (`perf record` on the gateway process).
pub use mimalloc::MiMalloc as Allocator;

/// Turns transparent huge pages off for this process. mimalloc asks the
/// kernel for huge pages on its arenas (`MADV_HUGEPAGE`), so each fresh
/// 64 KiB mimalloc page a worker thread touches made the kernel zero a
/// whole 2 MiB page: `clear_page_erms` was 8% of the gateway's samples in a
/// `just load-test` burst, and under 1% with small pages. Our heaps are
/// tens of MiB, too small for huge pages to save TLB misses worth that.
/// Best effort: a kernel without the switch keeps its default.
pub fn use_small_pages() {
    if let Err(err) = rustix::thread::disable_transparent_huge_pages(true) {
        eprintln!("warning: could not turn transparent huge pages off: {err}");
    }
}
