//! The eventfds that stop loops and pass INIT and INTERRUPTs between them, and the
//! SIGINT/SIGTERM watcher.
#![allow(unsafe_code)]

use rustix::fd::{BorrowedFd, OwnedFd};
#[cfg(feature = "std")]
use rustix::io::{self, Errno};

/// An eventfd the session's loops read to learn that they should stop. A semaphore: each
/// loop's READ takes one unit, and [`signal_stop`] adds enough for every loop.
#[cfg(feature = "std")]
pub(crate) fn stop_event() -> io::Result<OwnedFd> {
    rustix::event::eventfd(
        0,
        rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::SEMAPHORE,
    )
}

#[cfg_attr(not(feature = "std"), allow(dead_code))] // StopHandle and per-CPU loops are std-only
/// Asks every loop reading the stop eventfd to stop (idempotent: extra units are never
/// read, as each loop reads it once).
pub(crate) fn signal_stop(fd: &OwnedFd) {
    let _ = rustix::io::write(fd, &4096u64.to_ne_bytes());
}

/// An eventfd written once INIT is answered (per-CPU native loops wait on it).
#[cfg(feature = "std")]
pub(crate) fn init_event() -> io::Result<OwnedFd> {
    rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC)
}

/// Writes an INIT event.
pub(crate) fn signal_event(fd: BorrowedFd<'_>) {
    let _ = rustix::io::write(fd, &1u64.to_ne_bytes());
}

/// Watches SIGINT and SIGTERM while a session runs: they are blocked in the thread that
/// runs the loop (and so in threads it starts), and a small thread waits for them with
/// `sigwait(3)` and then writes the stop eventfd. Dropping the watch wakes and joins that
/// thread and restores the mask.
///
/// rustix exposes no stable API for signal masks, so this uses the `libc` crate, which the
/// `std` feature enables (std links libc anyway; builds without `std` have no signal
/// handling and no libc).
#[cfg(feature = "std")]
pub(crate) struct SignalWatch {
    old_mask: libc::sigset_t,
    thread: Option<std::thread::JoinHandle<()>>,
    watcher: std::sync::Arc<std::sync::OnceLock<usize>>,
    done: std::sync::Arc<core::sync::atomic::AtomicBool>,
}

#[cfg(feature = "std")]
fn watched_signals() -> libc::sigset_t {
    // SAFETY: `sigset_t` is a plain array of integers, for which all-zero is valid.
    let mut set: libc::sigset_t = unsafe { core::mem::zeroed() };
    // SAFETY: `sigemptyset` needs a valid pointer to a `sigset_t`: a local.
    unsafe { libc::sigemptyset(&raw mut set) };
    // SAFETY: as above, for `sigaddset`; SIGINT is a valid signal number.
    unsafe { libc::sigaddset(&raw mut set, libc::SIGINT) };
    // SAFETY: as above; SIGTERM is a valid signal number.
    unsafe { libc::sigaddset(&raw mut set, libc::SIGTERM) };
    set
}

#[cfg(feature = "std")]
impl SignalWatch {
    /// Blocks SIGINT and SIGTERM in the calling thread (and the threads it starts from now
    /// on) and calls `on_signal` on a watcher thread for each one.
    pub(crate) fn start(on_signal: impl Fn() + Send + 'static) -> io::Result<Self> {
        use core::sync::atomic::{AtomicBool, Ordering};
        let set = watched_signals();
        // SAFETY: `sigset_t` is a plain array of integers, for which all-zero is valid.
        let mut old_mask: libc::sigset_t = unsafe { core::mem::zeroed() };
        // SAFETY:
        // - `pthread_sigmask` needs valid pointers for the new and old sets: a local
        //   initialized by `watched_signals`, and a local it fills in;
        // - blocking SIGINT/SIGTERM in this thread only delays their delivery to the
        //   watcher's `sigwait`; the old mask is restored on drop.
        let rc =
            unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &raw const set, &raw mut old_mask) };
        if rc != 0 {
            return Err(Errno::from_raw_os_error(rc));
        }
        let watcher = std::sync::Arc::new(std::sync::OnceLock::new());
        let done = std::sync::Arc::new(AtomicBool::new(false));
        let (watcher2, done2) = (
            std::sync::Arc::clone(&watcher),
            std::sync::Arc::clone(&done),
        );
        let thread = std::thread::Builder::new()
            .name("ringfuse-signals".into())
            .spawn(move || {
                // SAFETY: `pthread_self` has no preconditions.
                // `pthread_t` is an integer on glibc and a pointer on musl: kept as `usize`, it is
                // `Send` on both.
                let _ = watcher2.set(unsafe { libc::pthread_self() } as usize);
                let set = watched_signals();
                loop {
                    let mut sig = 0;
                    // SAFETY:
                    // - `sigwait` needs a valid set and a valid out pointer: both locals;
                    // - the set is blocked in this thread (inherited from the spawning
                    //   thread's mask, set above), so the signals wait for us here.
                    let rc = unsafe { libc::sigwait(&raw const set, &raw mut sig) };
                    if done2.load(Ordering::Acquire) {
                        return;
                    }
                    if rc == 0 {
                        on_signal();
                    }
                }
            });
        let Ok(thread) = thread else {
            restore_mask(&old_mask);
            return Err(Errno::AGAIN);
        };
        Ok(Self {
            old_mask,
            thread: Some(thread),
            watcher,
            done,
        })
    }
}

#[cfg(feature = "std")]
fn restore_mask(old: &libc::sigset_t) {
    // SAFETY:
    // - `pthread_sigmask` needs a valid pointer to the set to install (a reference) and
    //   accepts a null old-set pointer.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, old, core::ptr::null_mut());
    }
}

#[cfg(feature = "std")]
impl Drop for SignalWatch {
    fn drop(&mut self) {
        use core::sync::atomic::Ordering;
        self.done.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            // The watcher publishes its id before it first waits; wake it with a signal it
            // waits for, after `done` is set, so it returns instead of stopping a session.
            let id = loop {
                if let Some(id) = self.watcher.get() {
                    break *id;
                }
                std::thread::yield_now();
            };
            // SAFETY:
            // - `pthread_kill` needs a live thread id: the watcher has not returned (it
            //   returns only after this signal, when it sees `done`), and it was not
            //   joined yet;
            // - SIGTERM is blocked in the watcher, which consumes it with `sigwait`.
            unsafe {
                libc::pthread_kill(id as libc::pthread_t, libc::SIGTERM);
            }
            let _ = t.join();
        }
        restore_mask(&self.old_mask);
    }
}
