//! How a session is set up, and the memory that implies.

use crate::api::fs::Filesystem;
use crate::error::Error;
use crate::state::MAX_SLOTS;

use super::{TransportMode, native_wanted};

/// How a session is set up. `Default` gives the documented defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Largest WRITE (and READ) the kernel may send, in bytes: a whole number of 4 KiB
    /// pages from 4 KiB to 1 MiB. Default 128 KiB.
    pub max_write: u32,
    /// Requests in flight at once on `/dev/fuse` (slots, each with a request and a reply
    /// buffer of about `max_write + 4 KiB`), deferred ones included: the kernel's requests
    /// beyond it wait in its queue. Default 64, the `max_background` that
    /// [`InitConfig`](crate::InitConfig) asks for by default, so that asynchronous reads
    /// and writeback are not capped by the loop; at most [`MAX_SLOTS`]. The buffers are
    /// allocated once, zeroed, and their pages are touched only as requests use them (64
    /// slots reserve 16.5 MiB of address space at the default `max_write`; a GETATTR-only
    /// load touches a few pages per slot in use):
    /// [`buffer_bytes`](Self::buffer_bytes) and [`static_bytes`](Self::static_bytes) say
    /// how much.
    pub slots: u16,
    /// Notifications in flight at once. Default 4.
    pub notify_slots: u8,
    /// Size of a notification buffer (bounds `notify_store` data). Default 4 KiB.
    pub notify_size: u32,
    /// Stop cleanly on SIGINT and SIGTERM: [`Session::new`](crate::Session::new) blocks them in its thread (and
    /// so in the threads that thread starts afterwards) and a watcher thread turns each
    /// into a stop, until the session is dropped. A stop before [`Session::run`](crate::Session::run) serves
    /// aborts the connection, so a thread blocked on the mount in between is let go.
    /// Default true. Needs `std`.
    pub handle_signals: bool,
    /// Open `/dev/fuse` non-blocking. Default true: a READ that io_uring cannot complete
    /// at once then fails fast instead of parking an io-wq worker in the kernel.
    pub nonblocking_device: bool,
    /// The transport: [`TransportMode::Auto`] by default.
    pub transport: TransportMode,
    /// Entries registered per queue (one queue per possible CPU) with the native
    /// transport: the requests in flight at once from one CPU's callers, deferred ones
    /// included (the kernel queues a CPU's requests on its own queue; the rest wait
    /// there). Default 0, automatic: 64 (as [`slots`](Self::slots)) while the total fits
    /// [`MAX_SLOTS`], i.e. `min(64, (MAX_SLOTS - slots) / possible CPUs)` and at least 1 —
    /// 64 on up to 15 CPUs, 15 on 64. Each entry has a slot's buffers.
    pub queue_depth: u16,
    /// READs kept armed on `/dev/fuse` at once. Default 1: each READ armed on the device
    /// is woken by every new request, and the losers of that race were measured to be
    /// handed to io-wq worker threads (see `Loop`); one armed READ, re-armed on the next
    /// idle slot as soon as it completes, needs no worker and no extra wake-ups.
    pub reads_in_flight: u16,
    /// Classic transport: when READs submitted together with replies keep finding no
    /// request (a client on the loop's CPU, one request at a time, cannot run before the
    /// loop leaves the kernel), send the replies in an `io_uring_enter` of their own and
    /// arm the READ in the next, so it finds the client's next request queued instead of
    /// arming a poll. Default true; with requests already queued it turns itself off (see
    /// [`Stats::replies_first`](crate::Stats::replies_first)). False always submits them
    /// together: one enter fewer per request when the client runs on another CPU, and, on
    /// the 2-vCPU development VM, 3-10% more ops/s at one request at a time with client
    /// and server left unpinned (true: 4-10% more with both on one CPU, the same with
    /// them on two; `bench/results/same-cpu/`).
    pub replies_first: bool,
    /// How long a stop (Ctrl-C, [`StopHandle`](crate::StopHandle), unmount) waits for the
    /// requests the filesystem holds deferred, after telling it
    /// [`stopping`](crate::Filesystem::stopping), before answering them `EIO` and ending
    /// (each counted in [`Stats::abandoned`](crate::Stats::abandoned)). Default 5 s. The loop still waits for the
    /// filesystem's own ring operations, whose memory the kernel may use until they
    /// complete: cancel them in `stopping`. An asynchronous handler's future still
    /// pending then (awaiting something that is not a ring operation) is abandoned, never
    /// polled or dropped again: what it holds is not released.
    pub stop_grace: core::time::Duration,
}

/// Most slots of a loop run with [`Session::run_with`](crate::Session::run_with) (its bookkeeping lives on the
/// stack).
pub const STATIC_SLOTS: usize = 64;

impl Default for Config {
    fn default() -> Self {
        Self {
            max_write: 128 * 1024,
            slots: 64,
            notify_slots: 4,
            notify_size: 4096,
            handle_signals: cfg!(feature = "std"),
            nonblocking_device: true,
            reads_in_flight: 1,
            replies_first: true,
            transport: TransportMode::Auto,
            queue_depth: 0,
            stop_grace: core::time::Duration::from_secs(5),
        }
    }
}

impl Config {
    /// Sets [`max_write`](Self::max_write).
    #[must_use]
    pub fn max_write(mut self, bytes: u32) -> Self {
        self.max_write = bytes;
        self
    }

    /// Sets [`slots`](Self::slots).
    #[must_use]
    pub fn slots(mut self, n: u16) -> Self {
        self.slots = n;
        self
    }

    /// Sets [`handle_signals`](Self::handle_signals).
    #[must_use]
    pub fn handle_signals(mut self, on: bool) -> Self {
        self.handle_signals = on;
        self
    }

    /// Sets [`nonblocking_device`](Self::nonblocking_device).
    #[must_use]
    pub fn nonblocking_device(mut self, on: bool) -> Self {
        self.nonblocking_device = on;
        self
    }

    /// Sets [`transport`](Self::transport).
    #[must_use]
    pub fn transport(mut self, mode: TransportMode) -> Self {
        self.transport = mode;
        self
    }

    /// Sets [`queue_depth`](Self::queue_depth).
    #[must_use]
    pub fn queue_depth(mut self, n: u16) -> Self {
        self.queue_depth = n;
        self
    }

    /// Sets [`stop_grace`](Self::stop_grace).
    #[must_use]
    pub fn stop_grace(mut self, grace: core::time::Duration) -> Self {
        self.stop_grace = grace;
        self
    }

    /// Sets [`reads_in_flight`](Self::reads_in_flight).
    #[must_use]
    pub fn reads_in_flight(mut self, n: u16) -> Self {
        self.reads_in_flight = n;
        self
    }

    /// Sets [`replies_first`](Self::replies_first).
    #[must_use]
    pub fn replies_first(mut self, on: bool) -> Self {
        self.replies_first = on;
        self
    }

    /// Sets the notification pool: `count` buffers of `size` bytes.
    #[must_use]
    pub fn notifications(mut self, count: u8, size: u32) -> Self {
        self.notify_slots = count;
        self.notify_size = size;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        if self.slots == 0 || self.slots > MAX_SLOTS {
            return Err(Error::Config("slots must be between 1 and 1024"));
        }
        if self.reads_in_flight == 0 || self.reads_in_flight > self.slots {
            return Err(Error::Config("reads_in_flight must be between 1 and slots"));
        }
        if usize::from(self.notify_slots) > crate::state::notifier::MAX_NOTIFY {
            return Err(Error::Config("notify_slots must be at most 32"));
        }
        if self.notify_slots > 0 && self.notify_size < 256 {
            return Err(Error::Config("notify_size must be at least 256 bytes"));
        }
        Ok(())
    }

    /// The memory [`Session::run_with`](crate::Session::run_with) needs: `slots` request and reply buffers, the
    /// notification buffers, and with the native transport one more slot per entry
    /// (possible CPUs × `queue_depth`).
    pub fn static_bytes(&self) -> usize {
        let native = matches!(native_wanted(self.transport), Ok(true));
        let queues = if native {
            crate::sys::possible_cpus().unwrap_or(1)
        } else {
            0
        };
        let entries = queues * self.entries_per_queue();
        self.buffer_bytes() + crate::event_loop::layout(self.max_write, 0).size(entries)
    }

    /// Native entries per queue: [`queue_depth`](Self::queue_depth), or the automatic
    /// choice it documents when 0.
    pub fn entries_per_queue(&self) -> usize {
        if self.queue_depth > 0 {
            return usize::from(self.queue_depth);
        }
        let cpus = crate::sys::possible_cpus().unwrap_or(1).max(1);
        let room = usize::from(MAX_SLOTS).saturating_sub(usize::from(self.slots));
        (room / cpus).clamp(1, 64)
    }

    /// [`static_bytes`](Self::static_bytes) for the filesystem type `F`: with the task
    /// area every slot gets for an asynchronous filesystem ([`Async`](crate::Async)), the
    /// memory [`Session::run_with`](crate::Session::run_with) needs for it. The same as `static_bytes()` for a
    /// synchronous [`Filesystem`].
    pub fn static_bytes_for<F: Filesystem>(&self) -> usize {
        let native = matches!(native_wanted(self.transport), Ok(true));
        let queues = if native {
            crate::sys::possible_cpus().unwrap_or(1)
        } else {
            0
        };
        let entries = queues * self.entries_per_queue();
        self.buffer_bytes_for::<F>()
            + crate::event_loop::layout(self.max_write, F::TASK_BYTES).size(entries)
    }

    /// [`buffer_bytes`](Self::buffer_bytes) for the filesystem type `F` (task areas
    /// included, see [`static_bytes_for`](Self::static_bytes_for)).
    pub fn buffer_bytes_for<F: Filesystem>(&self) -> usize {
        let layout = crate::event_loop::layout(self.max_write, F::TASK_BYTES);
        layout.size(usize::from(self.slots))
            + crate::state::notifier::Notifier::bytes(
                usize::from(self.notify_slots),
                self.notify_size as usize,
            )
    }

    /// The buffer memory one loop of this configuration uses, in bytes: `slots` request
    /// and reply buffers plus the notification buffers (native entries add one such slot
    /// each: possible CPUs × `queue_depth`).
    pub fn buffer_bytes(&self) -> usize {
        let layout = crate::event_loop::layout(self.max_write, 0);
        layout.size(usize::from(self.slots))
            + crate::state::notifier::Notifier::bytes(
                usize::from(self.notify_slots),
                self.notify_size as usize,
            )
    }
}
