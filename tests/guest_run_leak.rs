//! `guest::run` leaves nothing behind: 2,000 standalone runs keep the process's descriptor count
//! exactly flat and its resident memory within a tight bound (each run used to leak its reactor's
//! wake fd and ~4 KB through a tick left in the driver's timer queue).
//!
//! Its own test binary: the fd count is exact only when no other test of the process opens
//! descriptors meanwhile.

use std::time::Duration;

use infect::guest;

fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd").count()
}

/// Resident set size in bytes (`/proc/self/statm`, second field, in pages).
fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: usize = statm.split_whitespace().nth(1).expect("rss field").parse().expect("a number");
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * usize::try_from(page).expect("a positive page size")
}

/// One run that exercises the paths that queue ticks: a deadline (`wake_at`), a yield, and the
/// final `wake_at(NEVER)` of the completion.
fn one_run(i: u32) {
    let r = guest::run(async move {
        guest::checkpoint().await?;
        guest::sleep(Duration::from_micros(1)).await?;
        Ok(i)
    });
    assert_eq!(r, Ok(i));
}

#[test]
// Miri: reads /proc, unavailable under Miri isolation; Miri's own leak check covers the same
// leak in every suite that uses `guest::run`.
#[cfg_attr(miri, ignore)]
fn two_thousand_runs_leak_no_fd_and_no_memory() {
    // Warm up: the allocator's arenas, the thread-locals, the test harness's own buffers.
    for i in 0..200 {
        one_run(i);
    }
    let fds = fd_count();
    let rss = rss_bytes();
    for i in 0..2_000 {
        one_run(i);
    }
    assert_eq!(fd_count(), fds, "descriptors leaked by guest::run");
    let grown = rss_bytes().saturating_sub(rss);
    eprintln!("fds {fds} before and after; RSS {rss} B before, grew by {grown} B");
    // The old leak cost ~4 KB a run (8 MB here); allow allocator noise only.
    assert!(grown <= 256 * 1024, "RSS grew by {grown} bytes over 2,000 runs");
}
