//! Ctrl-C while a command waits on the cluster: the first prints what still runs there and
//! how to follow or stop it (from the signal handler, at once), and the command waits on;
//! the command asks [`count`] and acts on a second.
//!
//! The invariant: the handler only counts and writes bytes prepared before it was
//! installed (both safe in a signal handler); everything else happens in the command.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

static INTERRUPTS: AtomicUsize = AtomicUsize::new(0);
static NOTICE: OnceLock<Vec<u8>> = OnceLock::new();

extern "C" fn on_interrupt(_: libc::c_int) {
    if INTERRUPTS.fetch_add(1, Ordering::SeqCst) == 0 {
        if let Some(text) = NOTICE.get() {
            // SAFETY: write(2) of a buffer that lives for the program, from a signal handler
            // (write is async-signal-safe).
            unsafe {
                libc::write(libc::STDERR_FILENO, text.as_ptr().cast(), text.len());
            }
        }
    }
}

/// Count Ctrl-Cs from now on, printing `notice` on the first (once per process: a later
/// call keeps the first notice).
pub fn on_first(notice: &str) {
    let _ = NOTICE.set(notice.as_bytes().to_vec());
    // SAFETY: a zeroed sigaction with a handler that only touches atomics and write(2);
    // SA_RESTART so that blocking calls resume after it.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_interrupt as extern "C" fn(libc::c_int) as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGINT, &action, std::ptr::null_mut());
    }
}

/// Ctrl-Cs since [`on_first`].
pub fn count() -> usize {
    INTERRUPTS.load(Ordering::SeqCst)
}
