//! INTERRUPTs passed between per-CPU loops.

/// INTERRUPTs passed between the loops of [`run_per_cpu`](crate::run_per_cpu): the kernel
/// delivers every INTERRUPT through `/dev/fuse`, to whichever loop reads it, while the
/// request it names may be held by another loop (a native entry of another CPU's queue, or a request read
/// from another clone). A loop that does not hold it posts its `unique` here and wakes the
/// others through their eventfds; each then looks for it among its own held requests.
/// Kernel uniques only grow, so an old entry never names a new request; the last 64 are
/// kept.
pub(crate) struct Forward {
    uniques: [core::sync::atomic::AtomicU64; 64],
    next: core::sync::atomic::AtomicUsize,
    /// One eventfd per loop.
    pub events: std::vec::Vec<rustix::fd::OwnedFd>,
}

impl Forward {
    /// A board for the loops whose eventfds are `events` (one per loop).
    pub(crate) fn new(events: std::vec::Vec<rustix::fd::OwnedFd>) -> Self {
        Self {
            uniques: [const { core::sync::atomic::AtomicU64::new(0) }; 64],
            next: core::sync::atomic::AtomicUsize::new(0),
            events,
        }
    }

    /// The uniques posted so far, newest last; zeros where nothing was posted.
    pub(crate) fn posted(&self) -> [u64; 64] {
        let mut out = [0u64; 64];
        for (o, u) in out.iter_mut().zip(&self.uniques) {
            *o = u.load(core::sync::atomic::Ordering::Acquire);
        }
        out
    }

    pub(crate) fn post(&self, unique: u64, from: usize) {
        use core::sync::atomic::Ordering;
        let k = self.next.fetch_add(1, Ordering::Relaxed) % self.uniques.len();
        if let Some(u) = self.uniques.get(k) {
            u.store(unique, Ordering::Release);
        }
        for (j, fd) in self.events.iter().enumerate() {
            if j != from {
                crate::sys::signal_event(rustix::fd::AsFd::as_fd(fd));
            }
        }
    }
}
