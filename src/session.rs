//! The session: a mounted filesystem, its configuration, INIT, and the request handling
//! both transports share.

use crate::abi::Errno;
use crate::abi::flags::InitFlags;
use crate::abi::kernel::fuse_out_header;
use crate::abi::reply as enc;
use crate::abi::request::{Operation, ParseConfig, ParseError, Request, parse_header};
use crate::cx::{Cx, Env, Info};
use crate::dispatch::{ReplySlot, dispatch};
use crate::error::Error;
use crate::event_loop::Native;
use crate::fs::Filesystem;
use crate::init::{InitOutcome, Negotiated, negotiate};
use crate::reply::{Lent, Outcome, Whose};
use crate::ring::{PushError, Ring, Sqe};
use crate::slab::SlotKind;
use crate::stats::Stats;

/// The top byte of a completion's `user_data` says what it belongs to.
pub(crate) const KIND_SHIFT: u32 = 56;
pub(crate) const KIND_READ: u64 = 1;
pub(crate) const KIND_WRITE: u64 = 2;
pub(crate) const KIND_NOTIFY: u64 = 3;
pub(crate) const KIND_STOP: u64 = 4;
pub(crate) const KIND_FS: u64 = 5;
pub(crate) const KIND_CANCEL: u64 = 6;
pub(crate) const KIND_ENTRY: u64 = 7;
pub(crate) const KIND_INIT: u64 = 8;
pub(crate) const KIND_IRQ: u64 = 9;
/// The end of a stop's grace for requests the filesystem holds.
pub(crate) const KIND_GRACE: u64 = 10;

/// How long [`Session::new`] waits for the kernel's INIT (queued by `mount(2)` itself).
const INIT_WAIT: core::time::Duration = core::time::Duration::from_secs(10);

/// INTERRUPTs passed between the loops of [`run_per_cpu`]: the kernel delivers every
/// INTERRUPT through `/dev/fuse`, to whichever loop reads it, while the request it names
/// may be held by another loop (a native entry of another CPU's queue, or a request read
/// from another clone). A loop that does not hold it posts its `unique` here and wakes the
/// others through their eventfds; each then looks for it among its own held requests.
/// Kernel uniques only grow, so an old entry never names a new request; the last 64 are
/// kept.
#[cfg(feature = "std")]
pub(crate) struct Forward {
    uniques: [core::sync::atomic::AtomicU64; 64],
    next: core::sync::atomic::AtomicUsize,
    /// One eventfd per loop.
    pub events: std::vec::Vec<rustix::fd::OwnedFd>,
}

#[cfg(feature = "std")]
impl Forward {
    fn post(&self, unique: u64, from: usize) {
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

pub(crate) const fn user_data(kind: u64, index: u64) -> u64 {
    (kind << KIND_SHIFT) | (index & ((1 << KIND_SHIFT) - 1))
}

pub(crate) const fn fs_user_data(tag: u64) -> u64 {
    user_data(KIND_FS, tag)
}

pub(crate) const fn notify_user_data(k: usize) -> u64 {
    user_data(KIND_NOTIFY, k as u64)
}

pub(crate) const fn split_user_data(ud: u64) -> (u64, u64) {
    (ud >> KIND_SHIFT, ud & ((1 << KIND_SHIFT) - 1))
}

/// Queues `sqe`, submitting what the queue holds first if it is full.
pub(crate) fn push(ring: &mut Ring, sqe: &Sqe, stats: &mut Stats) -> Result<(), Errno> {
    match ring.push(sqe) {
        Ok(()) => Ok(()),
        Err(PushError::Full) => {
            ring.submit().map_err(crate::error::errno)?;
            stats.enters += 1;
            ring.push(sqe).map_err(|_| Errno::EBUSY)
        }
        Err(_) => Err(Errno::EINVAL),
    }
}

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
    /// Stop cleanly on SIGINT and SIGTERM: [`Session::new`] blocks them in its thread (and
    /// so in the threads that thread starts afterwards) and a watcher thread turns each
    /// into a stop, until the session is dropped. A stop before [`Session::run`] serves
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
    /// (each counted in [`Stats::abandoned`]). Default 5 s. The loop still waits for the
    /// filesystem's own ring operations, whose memory the kernel may use until they
    /// complete: cancel them in `stopping`. An asynchronous handler's future still
    /// pending then (awaiting something that is not a ring operation) is abandoned, never
    /// polled or dropped again: what it holds is not released.
    pub stop_grace: core::time::Duration,
}

/// Most slots a loop may have.
pub const MAX_SLOTS: u16 = 1024;

/// Most slots of a loop run with [`Session::run_with`] (its bookkeeping lives on the
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
        if usize::from(self.notify_slots) > crate::notifier::MAX_NOTIFY {
            return Err(Error::Config("notify_slots must be at most 32"));
        }
        if self.notify_slots > 0 && self.notify_size < 256 {
            return Err(Error::Config("notify_size must be at least 256 bytes"));
        }
        Ok(())
    }

    /// The memory [`Session::run_with`] needs: `slots` request and reply buffers, the
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
        self.buffer_bytes() + crate::event_loop::layout(self, 0).size(entries)
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
    /// memory [`Session::run_with`] needs for it. The same as `static_bytes()` for a
    /// synchronous [`Filesystem`].
    pub fn static_bytes_for<F: Filesystem>(&self) -> usize {
        let native = matches!(native_wanted(self.transport), Ok(true));
        let queues = if native {
            crate::sys::possible_cpus().unwrap_or(1)
        } else {
            0
        };
        let entries = queues * self.entries_per_queue();
        self.buffer_bytes_for::<F>() + crate::event_loop::layout(self, F::TASK_BYTES).size(entries)
    }

    /// [`buffer_bytes`](Self::buffer_bytes) for the filesystem type `F` (task areas
    /// included, see [`static_bytes_for`](Self::static_bytes_for)).
    pub fn buffer_bytes_for<F: Filesystem>(&self) -> usize {
        let layout = crate::event_loop::layout(self, F::TASK_BYTES);
        layout.size(usize::from(self.slots))
            + crate::notifier::Notifier::bytes(
                usize::from(self.notify_slots),
                self.notify_size as usize,
            )
    }

    /// The buffer memory one loop of this configuration uses, in bytes: `slots` request
    /// and reply buffers plus the notification buffers (native entries add one such slot
    /// each: possible CPUs × `queue_depth`).
    pub fn buffer_bytes(&self) -> usize {
        let layout = crate::event_loop::layout(self, 0);
        layout.size(usize::from(self.slots))
            + crate::notifier::Notifier::bytes(
                usize::from(self.notify_slots),
                self.notify_size as usize,
            )
    }
}

/// What the loop does after handling one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Send this header (and `len - 16` payload bytes already in place).
    Reply(fuse_out_header),
    /// No reply (FORGET, BATCH_FORGET, NOTIFY_REPLY, INTERRUPT, unparseable header).
    Nothing,
    /// The filesystem kept the request.
    Deferred,
}

/// The transport-independent half of a session: the filesystem, what INIT settled, and
/// the handling of one request.
pub(crate) struct Core<F> {
    pub fs: F,
    pub negotiated: Option<Negotiated>,
    pub parse: ParseConfig,
    /// Largest `max_write` the buffers allow.
    pub max_write: u32,
    /// INIT failed: the connection is unusable.
    pub init_failed: Option<Errno>,
    /// With several loops on one connection, what INIT settled, published by the loop that
    /// answered it for the others.
    #[cfg(feature = "std")]
    pub shared: Option<std::sync::Arc<std::sync::OnceLock<Negotiated>>>,
    /// Per-CPU loops: where INTERRUPTs this loop does not hold go, and this loop's index.
    #[cfg(feature = "std")]
    pub forward: Option<(std::sync::Arc<Forward>, usize)>,
}

impl<F: Filesystem> Core<F> {
    pub(crate) fn new(fs: F, max_write: u32) -> Self {
        Self {
            fs,
            negotiated: None,
            parse: ParseConfig::default(),
            max_write,
            init_failed: None,
            #[cfg(feature = "std")]
            shared: None,
            #[cfg(feature = "std")]
            forward: None,
        }
    }

    /// The INTERRUPTs other loops passed on (per-CPU), newest last; zeros without.
    #[cfg_attr(not(feature = "std"), allow(clippy::unused_self))]
    pub(crate) fn forwarded(&self) -> [u64; 64] {
        #[cfg_attr(not(feature = "std"), allow(unused_mut))]
        let mut out = [0u64; 64];
        #[cfg(feature = "std")]
        if let Some((f, _)) = &self.forward {
            for (o, u) in out.iter_mut().zip(&f.uniques) {
                *o = u.load(core::sync::atomic::Ordering::Acquire);
            }
        }
        out
    }

    /// Interrupts `target` if this loop holds it (an INTERRUPT another loop passed on).
    pub(crate) fn interrupt_forwarded(&mut self, env: Env<'_>, target: u64) {
        let mut cx = Cx {
            info: Info::default(),
            env,
            lent: None,
        };
        let _ = interrupt(&mut self.fs, &mut cx, target);
    }

    /// What INIT settled, from this loop or (per-CPU) from the loop that answered it.
    pub(crate) fn settled(&mut self) -> Option<Negotiated> {
        #[cfg(feature = "std")]
        if self.negotiated.is_none() {
            if let Some(n) = self.shared.as_ref().and_then(|s| s.get()).copied() {
                self.parse = ParseConfig::from_init_flags(n.flags);
                self.negotiated = Some(n);
            }
        }
        self.negotiated
    }

    /// Parses the bytes of one classic request.
    pub(crate) fn parse<'b>(&self, bytes: &'b [u8]) -> Result<Request<'b>, ParseError> {
        Request::parse(bytes, &self.parse)
    }

    /// Answers a request that did not parse: with the parser's errno if its header is
    /// readable, else not at all.
    pub(crate) fn malformed(bytes: &[u8], err: ParseError, stats: &mut Stats) -> Action {
        stats.malformed += 1;
        match parse_header(bytes) {
            Ok(h) if !crate::abi::Opcode::from(h.opcode).is_no_reply() => {
                Action::Reply(enc::error_header(h.unique, err.errno()))
            }
            _ => Action::Nothing,
        }
    }

    /// Handles one request: INIT and INTERRUPT here, everything else through
    /// [`dispatch`]. `payload` is where the reply's payload goes.
    /// `native`: answer an INIT with `FUSE_OVER_IO_URING` if the kernel offers it (the
    /// transport has its entries ready).
    pub(crate) fn handle(
        &mut self,
        env: Env<'_>,
        slot: u32,
        req: &Request<'_>,
        payload: &mut [u8],
        native: bool,
    ) -> Action {
        let h = &req.header;
        let info = Info {
            unique: h.unique,
            nodeid: h.nodeid,
            uid: h.uid,
            gid: h.gid,
            pid: h.pid,
        };
        match req.op {
            Operation::Init { arg } => return self.init(&arg, h.unique, payload, native),
            Operation::Interrupt { arg } => {
                let mut cx = Cx {
                    info,
                    env,
                    lent: None,
                };
                if !interrupt(&mut self.fs, &mut cx, arg.unique) {
                    #[cfg(feature = "std")]
                    if let Some((f, k)) = &self.forward {
                        f.post(arg.unique, *k);
                    }
                }
                return Action::Nothing;
            }
            Operation::Destroy => {
                self.fs.destroy();
                return Action::Reply(enc::out_header(h.unique, 0));
            }
            _ => {}
        }
        if self.settled().is_none() {
            // The kernel sends nothing before INIT is answered; anything else is garbage.
            return Action::Reply(enc::error_header(h.unique, Errno::EIO));
        }
        let mut outcome = Outcome::Pending;
        let owner = env.owner;
        let lent = Lent::new(None);
        let mut cx = Cx {
            info,
            env,
            lent: Some(&lent),
        };
        dispatch(
            &mut self.fs,
            &mut cx,
            req,
            ReplySlot {
                payload,
                outcome: &mut outcome,
                whose: Whose {
                    slot,
                    unique: h.unique,
                    owner,
                },
                lent: &lent,
            },
        );
        if req.opcode().is_no_reply() {
            return Action::Nothing;
        }
        match outcome {
            Outcome::Payload(n) => Action::Reply(enc::out_header(h.unique, n)),
            Outcome::Error(e) => Action::Reply(enc::error_header(h.unique, e)),
            // Counted (and, if resumed in the same call, sent) by the transport.
            Outcome::Deferred => Action::Deferred,
            // The method returned another reply's Done and dropped its own: answer EIO
            // rather than leave the caller waiting.
            Outcome::Pending => Action::Reply(enc::error_header(h.unique, Errno::EIO)),
        }
    }

    fn init(
        &mut self,
        arg: &crate::abi::kernel::fuse_init_in,
        unique: u64,
        payload: &mut [u8],
        native: bool,
    ) -> Action {
        let fs = &mut self.fs;
        let extra = if native {
            InitFlags::OVER_IO_URING
        } else {
            InitFlags::EMPTY
        };
        match negotiate(arg, self.max_write, extra, |cfg| fs.init(cfg)) {
            InitOutcome::Reply(out, negotiated) => {
                self.parse = ParseConfig::from_init_flags(negotiated.flags);
                self.negotiated = Some(negotiated);
                #[cfg(feature = "std")]
                if let Some(shared) = &self.shared {
                    let _ = shared.set(negotiated);
                }
                match enc::init(payload, &out, arg.minor) {
                    Ok(n) => Action::Reply(enc::out_header(unique, n)),
                    Err(_) => Action::Reply(enc::error_header(unique, Errno::EIO)),
                }
            }
            InitOutcome::VersionOnly(out) => match enc::init(payload, &out, 0) {
                Ok(n) => Action::Reply(enc::out_header(unique, n)),
                Err(_) => Action::Reply(enc::error_header(unique, Errno::EIO)),
            },
            InitOutcome::Fail(e) => {
                self.init_failed = Some(e);
                Action::Reply(enc::error_header(unique, e))
            }
        }
    }
}

/// INTERRUPT: if the request is one the filesystem deferred and has not answered, answer
/// it `EINTR` now (classic) and tell the filesystem; otherwise (answered already, or
/// unknown) do nothing — a single loop answers requests in order, so an unknown unique was
/// answered, or is held by another per-CPU loop. False if this loop does not hold it.
fn interrupt<F: Filesystem>(fs: &mut F, cx: &mut Cx<'_>, target: u64) -> bool {
    let env = &mut cx.env;
    let Some(meta) = env
        .slab
        .meta
        .iter_mut()
        // Native entries are interrupted only by filesystems that answer them themselves
        // (`Filesystem::INTERRUPTS_ENTRIES`): answering one here would commit the entry,
        // which the kernel may refill while the filesystem's own I/O still uses its buffers.
        .find(|m| {
            (m.kind == SlotKind::Dev || F::INTERRUPTS_ENTRIES)
                && m.fs_holds
                && !m.answered
                && m.unique == target
        })
    else {
        // Answered already, or held by another loop (per-CPU), or unknown.
        return env
            .slab
            .meta
            .iter()
            .any(|m| m.unique == target && m.fs_holds);
    };
    if meta.kind == SlotKind::Dev {
        // Answered from now on: a `resume` (even inside `interrupted` below) yields `None`,
        // so nothing can replace the EINTR.
        meta.answer_held(Errno::EINTR);
        *env.resumed += 1;
    }
    env.stats.interrupts += 1;
    fs.interrupted(cx, target);
    true
}

/// A mounted filesystem and the loop that serves it.
///
/// ```no_run
/// use ringfuse::{Config, Filesystem, Session, mount::MountOptions};
///
/// struct Empty;
/// impl Filesystem for Empty {}
///
/// # fn main() -> Result<(), ringfuse::Error> {
/// let mut session = Session::new(Empty, "/mnt/empty", &MountOptions::new(), Config::default())?;
/// session.run()?; // until unmount, Ctrl-C or SIGTERM
/// # Ok(())
/// # }
/// ```
pub struct Session<F: Filesystem> {
    core: Core<F>,
    mount: Option<crate::mount::Mount>,
    config: Config,
    /// Whether the native transport will be offered to the kernel.
    native: bool,
    stats: Stats,
    #[cfg(feature = "std")]
    stop: std::sync::Arc<Stopper>,
    /// SIGINT/SIGTERM watched from `new` on ([`Config::handle_signals`]).
    #[cfg(feature = "std")]
    _signals: Option<crate::sys::SignalWatch>,
}

/// How a session is stopped: the loop's stop eventfd, and — before the loop serves — the
/// connection to abort, so that a caller blocked on the mount (the thread that will call
/// `run`, say, touching the mount first) is let go.
#[cfg(feature = "std")]
#[derive(Debug)]
pub(crate) struct Stopper {
    fd: rustix::fd::OwnedFd,
    /// The loop reads the stop event from now on.
    serving: core::sync::atomic::AtomicBool,
    /// The connection number (0 if not known).
    connection: core::sync::atomic::AtomicU32,
}

#[cfg(feature = "std")]
impl Stopper {
    fn new() -> Result<Self, Error> {
        let fd = crate::sys::stop_event().map_err(|e| Error::Io {
            what: "creating the stop eventfd",
            errno: crate::error::errno(e),
        })?;
        Ok(Self {
            fd,
            serving: core::sync::atomic::AtomicBool::new(false),
            connection: core::sync::atomic::AtomicU32::new(0),
        })
    }

    /// Asks the loop to stop; before it serves, aborts the connection too (nothing would
    /// answer a request that arrives until then, and a thread waiting on one could not be
    /// interrupted).
    fn stop(&self) {
        use core::sync::atomic::Ordering;
        crate::sys::signal_stop(&self.fd);
        if !self.serving.load(Ordering::Acquire) {
            let conn = self.connection.swap(0, Ordering::AcqRel);
            if conn != 0 && crate::sys::abort_connection(conn).is_ok() {
                std::eprintln!(
                    "ringfuse: stop asked while no loop serves the mount (before Session::run): \
                     connection aborted, callers get ENOTCONN"
                );
            }
        }
    }
}

/// Which transport a session uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Transport {
    /// Requests read from and replies written to `/dev/fuse`, through the loop's ring.
    Classic,
    /// The kernel's FUSE-over-io_uring (Linux 6.14+): requests arrive in registered ring
    /// entries and replies are committed with one `uring_cmd` each.
    Native,
}

/// Which transport a session should use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportMode {
    /// Native when the kernel offers it, else classic.
    #[default]
    Auto,
    /// Always classic.
    Classic,
    /// Native, or an error saying how to enable it.
    Native,
}

impl<F: Filesystem> Session<F> {
    /// Mounts `fs` at `mountpoint` (as root: `/dev/fuse` and `mount(2)`, no fusermount).
    ///
    /// `new` also answers the kernel's INIT (calling [`Filesystem::init`]), so a refused
    /// INIT or an unusable protocol is an error here, and the connection is ready when it
    /// returns. Every other request waits for [`run`](Self::run): the mount is in the
    /// namespace, but an access to it (`stat`, `read_dir`, a shell's `ls`) waits for the
    /// loop — the first LOOKUP or GETATTR needs it. Touch the mount from another thread or
    /// process once `run` is called, never from the thread about to call `run`. If that
    /// happens anyway, Ctrl-C (with [`Config::handle_signals`]) or a
    /// [`StopHandle::stop`](crate::StopHandle::stop) from another thread aborts the
    /// connection: the blocked call fails with `ENOTCONN`, and `run` returns at once and
    /// unmounts.
    ///
    /// # Errors
    ///
    /// [`Error::Mount`] naming the cause and the fix (not root, no `/dev/fuse`, mount point
    /// missing or not a directory, bad option); [`Error::Config`]; [`Error::Init`] if the
    /// filesystem refused INIT; [`Error::Io`] if the kernel sent no INIT within 10 s.
    /// Nothing stays mounted on error.
    pub fn new<P: crate::mount::AsMountPoint + ?Sized>(
        fs: F,
        mountpoint: &P,
        options: &crate::mount::MountOptions,
        config: Config,
    ) -> Result<Self, Error> {
        config.validate()?;
        let native = native_wanted(config.transport)?;
        #[cfg(feature = "std")]
        let stop = std::sync::Arc::new(Stopper::new()?);
        let mut options = options.clone();
        options.nonblocking(config.nonblocking_device);
        let mount = crate::mount::mount(mountpoint, &options)?;
        #[cfg(feature = "std")]
        stop.connection
            .store(mount.connection(), core::sync::atomic::Ordering::Release);
        #[cfg(feature = "std")]
        let signals = if config.handle_signals {
            let stopper = std::sync::Arc::clone(&stop);
            // On error the mount is dropped, which unmounts it.
            Some(
                crate::sys::SignalWatch::start(move || stopper.stop()).map_err(|e| Error::Io {
                    what: "watching SIGINT and SIGTERM",
                    errno: crate::error::errno(e),
                })?,
            )
        } else {
            None
        };
        let mut session = Self {
            core: Core::new(fs, crate::init::clamp_max_write(config.max_write)),
            mount: Some(mount),
            config,
            native,
            stats: Stats::default(),
            #[cfg(feature = "std")]
            stop,
            #[cfg(feature = "std")]
            _signals: signals,
        };
        // On error the session is dropped, which unmounts.
        session.answer_init()?;
        Ok(session)
    }

    /// The native transport's state as the loop starts: INIT was answered in `new`, so
    /// on if the kernel took `FUSE_OVER_IO_URING`.
    fn native_start(&self) -> Native {
        let on = self
            .core
            .negotiated
            .is_some_and(|n| n.flags.contains(InitFlags::OVER_IO_URING));
        match (self.native, self.core.negotiated) {
            (true, None) => Native::Wanted,
            (true, Some(_)) if on => Native::On,
            _ => Native::Off,
        }
    }

    /// Reads the INIT the kernel queued when it mounted, and answers it: `new` returns
    /// with the connection initialised (or the filesystem's refusal as an error), and the
    /// loop starts serving at once. The buffers are on the stack: INIT is small, and a
    /// device read needs `FUSE_MIN_READ_BUFFER` bytes of room.
    fn answer_init(&mut self) -> Result<(), Error> {
        use crate::abi::kernel::FUSE_MIN_READ_BUFFER;
        let Some(mount) = self.mount.as_ref() else {
            return Ok(());
        };
        let fd = mount.fd();
        let fail = |what, errno| Error::Io { what, errno };
        let mut request = [0u8; FUSE_MIN_READ_BUFFER];
        let mut reply = [0u8; 4096];
        // A kernel newer than this protocol first gets our version alone, then asks again.
        for _ in 0..2 {
            let n = crate::sys::read_request(fd, &mut request, INIT_WAIT)
                .map_err(|e| fail("reading the kernel's INIT", crate::error::errno(e)))?;
            self.stats.requests_dev += 1;
            let bytes = request.get(..n).unwrap_or_default();
            let req = self
                .core
                .parse(bytes)
                .map_err(|e| fail("parsing the kernel's INIT", e.errno()))?;
            let Operation::Init { arg } = req.op else {
                return Err(fail(
                    "reading the kernel's INIT (another request came first)",
                    Errno::EPROTO,
                ));
            };
            let (head, payload) = reply.split_at_mut(enc::OUT_HEADER_SIZE);
            let Action::Reply(h) = self
                .core
                .init(&arg, req.header.unique, payload, self.native)
            else {
                return Err(fail("answering INIT", Errno::EIO));
            };
            head.copy_from_slice(crate::abi::pod::as_bytes(&h));
            let out = reply.get(..h.len as usize).unwrap_or_default();
            crate::sys::write_reply(fd, out)
                .map_err(|e| fail("answering the kernel's INIT", crate::error::errno(e)))?;
            self.stats.replies += 1;
            if h.error != 0 {
                self.stats.errors += 1;
            }
            if self.core.negotiated.is_some() || self.core.init_failed.is_some() {
                break;
            }
        }
        match (self.core.init_failed, self.core.negotiated) {
            (Some(e), _) => Err(Error::Init(e)),
            (None, Some(_)) => Ok(()),
            (None, None) => Err(fail(
                "the kernel's INIT (no version both sides speak)",
                Errno::EPROTO,
            )),
        }
    }

    /// Serves requests on the calling thread until the filesystem is unmounted, the
    /// connection aborted, or a stop is asked for ([`StopHandle`], or SIGINT/SIGTERM with
    /// [`Config::handle_signals`]); then finishes what is in flight and unmounts.
    ///
    /// # Errors
    ///
    /// [`Error::Ring`] if io_uring is unavailable, [`Error::Io`] if the loop's syscalls
    /// fail, [`Error::Init`] if INIT was refused, [`Error::Ended`] on a second call.
    #[cfg(feature = "std")]
    pub fn run(&mut self) -> Result<(), Error> {
        let mount = self.mount.take().ok_or(Error::Ended)?;
        let result = self.serve(&mount);
        self.core.fs.destroy();
        // Unmount unless someone already did; an unmount error matters only if serving
        // went well.
        let unmounted = if mount.is_mounted() {
            mount.unmount().map_err(Error::from)
        } else {
            Ok(())
        };
        let result = result.and(unmounted);
        if let (Ok(()), Some(e)) = (&result, self.core.init_failed) {
            return Err(Error::Init(e));
        }
        result
    }

    /// Serves like [`run`](Self::run), with every buffer carved out of `memory` instead
    /// of allocated: the way to run without `std` (and so without an allocator).
    /// `memory` must hold at least [`Config::static_bytes`] bytes; it is lent to the
    /// kernel while requests are in flight and handed back, untouched by anyone else,
    /// when this returns. Without `std` there is no stop handle and no signal handling:
    /// the session ends when the filesystem is unmounted.
    ///
    /// Its bookkeeping lives on the stack, for at most [`STATIC_SLOTS`] slots: `slots` plus,
    /// on the native transport, possible CPUs × `queue_depth`. The defaults (64 slots, 64
    /// entries per CPU) exceed that on the native transport: set `slots` and `queue_depth`
    /// (hello-nolibc uses 1 slot on the classic transport).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if `memory` is too small or the slots exceed [`STATIC_SLOTS`];
    /// otherwise as [`run`](Self::run).
    pub fn run_with(&mut self, memory: &'static mut [u8]) -> Result<(), Error> {
        let mount = self.mount.take().ok_or(Error::Ended)?;
        let result = self.serve_static(&mount, memory);
        self.core.fs.destroy();
        let unmounted = if mount.is_mounted() {
            mount.unmount().map_err(Error::from)
        } else {
            Ok(())
        };
        let result = result.and(unmounted);
        if let (Ok(()), Some(e)) = (&result, self.core.init_failed) {
            return Err(Error::Init(e));
        }
        result
    }

    fn serve_static(
        &mut self,
        mount: &crate::mount::Mount,
        memory: &'static mut [u8],
    ) -> Result<(), Error> {
        // This loop watches no stop event: a stop (signal, handle) aborts the connection,
        // which ends it.
        let mut queues = arrayvec::ArrayVec::<u16, STATIC_SLOTS>::new();
        if self.native {
            for q in 0..crate::sys::possible_cpus().unwrap_or(1).min(STATIC_SLOTS) {
                queues.push(q as u16);
            }
        }
        let spec = LoopSpec {
            fuse: mount.fd(),
            dev_slots: usize::from(self.config.slots),
            queues: &queues,
            native: self.native_start(),
            stop_fd: None,
            init_event: None,
            init_notify: &[],
            irq_event: None,
        };
        let slots = slot_count(&self.config, &spec)?;
        if slots > STATIC_SLOTS {
            return Err(Error::Config(
                "run_with serves at most 64 slots: Config::slots plus, on the native transport, \
                 possible CPUs x queue_depth (the defaults make more: set both)",
            ));
        }
        let slab_bytes = crate::event_loop::layout(&self.config, F::TASK_BYTES).size(slots);
        if memory.len() < self.config.static_bytes_for::<F>() {
            return Err(Error::Config(
                "run_with needs Config::static_bytes_for::<F>() bytes of memory",
            ));
        }
        let (slab, notify) = memory.split_at_mut(slab_bytes);
        let mut meta = [crate::slab::SlotMeta::default(); STATIC_SLOTS];
        let meta = meta.get_mut(..slots).unwrap_or_default();
        serve_loop_in(
            &mut self.core,
            &self.config,
            &spec,
            &mut self.stats,
            slab,
            crate::slab::Storage::from_static(notify),
            meta,
        )
        .map(|_| ())
    }

    #[cfg(feature = "std")]
    fn serve(&mut self, mount: &crate::mount::Mount) -> Result<(), Error> {
        // From here the loop reads the stop event (one written before is read at once).
        self.stop
            .serving
            .store(true, core::sync::atomic::Ordering::Release);
        let queues = if self.native {
            all_queues()
        } else {
            std::vec::Vec::new()
        };
        let stop = std::sync::Arc::clone(&self.stop);
        let spec = LoopSpec {
            fuse: mount.fd(),
            dev_slots: usize::from(self.config.slots),
            queues: &queues,
            native: self.native_start(),
            stop_fd: Some(rustix::fd::AsFd::as_fd(&stop.fd)),
            init_event: None,
            init_notify: &[],
            irq_event: None,
        };
        serve_loop(&mut self.core, &self.config, &spec, &mut self.stats).map(|_| ())
    }

    /// What INIT settled (answered by [`new`](Self::new), so known from then on).
    pub fn negotiated(&self) -> Option<Negotiated> {
        self.core.negotiated
    }

    /// The transport in use (INIT, answered by [`new`](Self::new), settled it).
    pub fn transport(&self) -> Transport {
        let native = match self.core.negotiated {
            Some(n) => n.has(InitFlags::OVER_IO_URING),
            None => self.native,
        };
        if native {
            Transport::Native
        } else {
            Transport::Classic
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The filesystem.
    pub fn filesystem(&self) -> &F {
        &self.core.fs
    }

    /// The filesystem, mutably (between runs, or before the first).
    pub fn filesystem_mut(&mut self) -> &mut F {
        &mut self.core.fs
    }

    /// The mount's connection number (`/sys/fs/fuse/connections/N`), while mounted.
    pub fn connection(&self) -> Option<u32> {
        self.mount.as_ref().map(crate::mount::Mount::connection)
    }

    /// A handle that stops [`run`](Self::run) from any thread.
    #[cfg(feature = "std")]
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            stopper: std::sync::Arc::clone(&self.stop),
        }
    }
}

/// Stops a running [`Session`] from another thread: the loop stops taking requests,
/// finishes the ones in flight, and unmounts.
#[cfg(feature = "std")]
#[derive(Clone, Debug)]
pub struct StopHandle {
    stopper: std::sync::Arc<Stopper>,
}

#[cfg(feature = "std")]
impl StopHandle {
    /// Asks the session to stop. Idempotent; returns at once. Before
    /// [`Session::run`] serves, it also aborts the connection, so that whatever waits on
    /// the mount gets `ENOTCONN` (and `run` then returns at once, unmounting).
    pub fn stop(&self) {
        self.stopper.stop();
    }
}

/// Whether to offer the native transport: [`TransportMode::Native`] fails with the command
/// that turns the kernel switch on when it is off; `Auto` uses it only when it is on.
fn native_wanted(mode: TransportMode) -> Result<bool, Error> {
    match mode {
        TransportMode::Classic => Ok(false),
        TransportMode::Auto => Ok(crate::sys::uring_enabled().unwrap_or(false)),
        TransportMode::Native => match crate::sys::uring_enabled() {
            Some(true) => Ok(true),
            Some(false) => Err(Error::NativeOff),
            None => Err(Error::NativeUnsupported),
        },
    }
}

/// What one loop serves.
pub(crate) struct LoopSpec<'a> {
    /// The `/dev/fuse` descriptor this loop reads and writes (per-CPU classic loops each
    /// have a clone).
    pub fuse: rustix::fd::BorrowedFd<'a>,
    /// Device slots (0 for per-CPU native loops other than the first).
    pub dev_slots: usize,
    /// Native queues this loop registers entries for (`queue_depth` each).
    pub queues: &'a [u16],
    /// The native transport's starting state.
    pub native: Native,
    /// The stop eventfd.
    pub stop_fd: Option<rustix::fd::BorrowedFd<'a>>,
    /// Per-CPU native loops other than the first: an eventfd written once INIT is answered.
    pub init_event: Option<rustix::fd::BorrowedFd<'a>>,
    /// The loop that answers INIT: the other loops' `init_event`s.
    pub init_notify: &'a [rustix::fd::BorrowedFd<'a>],
    /// Per-CPU loops: the eventfd that says another loop passed on an INTERRUPT.
    pub irq_event: Option<rustix::fd::BorrowedFd<'a>>,
}

/// How many slots a loop serving `spec` has.
fn slot_count(config: &Config, spec: &LoopSpec<'_>) -> Result<usize, Error> {
    let slots = spec.dev_slots + spec.queues.len() * config.entries_per_queue();
    if slots > usize::from(MAX_SLOTS) || slots == 0 {
        return Err(Error::Config(
            "slots + possible CPUs x queue_depth must be 1..=1024",
        ));
    }
    Ok(slots)
}

/// Allocates a loop's buffers, once, and runs it.
#[cfg(feature = "std")]
pub(crate) fn serve_loop<F: Filesystem>(
    core: &mut Core<F>,
    config: &Config,
    spec: &LoopSpec<'_>,
    stats: &mut Stats,
) -> Result<crate::event_loop::End, Error> {
    let layout = crate::event_loop::layout(config, F::TASK_BYTES);
    let slots = slot_count(config, spec)?;
    let mut slab = crate::slab::Storage::heap(layout.size(slots));
    let notify_bytes = crate::notifier::Notifier::bytes(
        usize::from(config.notify_slots),
        config.notify_size as usize,
    );
    let notify = crate::slab::Storage::heap(notify_bytes);
    let mut meta = std::vec![crate::slab::SlotMeta::default(); slots];
    let result = serve_loop_in(core, config, spec, stats, slab.as_mut(), notify, &mut meta);
    if result.is_err() {
        // The loop gave up with READs possibly in flight: the kernel may still write the
        // slab until the ring's teardown completes. Leak it rather than free it under them.
        core::mem::forget(slab);
    }
    result
}

/// Runs a loop in the given memory: `slab` for the slots, `notify` for the notification
/// buffers, `meta` one entry per slot.
pub(crate) fn serve_loop_in<F: Filesystem>(
    core: &mut Core<F>,
    config: &Config,
    spec: &LoopSpec<'_>,
    stats: &mut Stats,
    slab: &mut [u8],
    notify: crate::slab::Storage,
    meta: &mut [crate::slab::SlotMeta],
) -> Result<crate::event_loop::End, Error> {
    let layout = crate::event_loop::layout(config, F::TASK_BYTES);
    let slots = meta.len();
    let notify_size = config.notify_size as usize;
    let notify_count = usize::from(config.notify_slots);
    let mut notifier = crate::notifier::Notifier::new(notify, notify_count, notify_size);
    let depth = config.entries_per_queue();
    let entries = slots.saturating_sub(spec.dev_slots);
    for (k, m) in meta.iter_mut().enumerate() {
        *m = crate::slab::SlotMeta::default();
        if let Some(e) = k.checked_sub(spec.dev_slots) {
            let qid = spec.queues.get(e / depth).copied().unwrap_or(0);
            m.kind = SlotKind::Entry { qid };
        }
    }
    let native = spec.native != Native::Off && entries > 0;
    // Reads and writes of every slot, notifications, the stop and init events, room for
    // the filesystem's own operations.
    let ring_entries = (2 * slots + notify_count + 64).next_power_of_two();
    let ring_entries = u32::try_from(ring_entries).map_err(|_| Error::Config("too many slots"))?;
    // The native transport's uring_cmds need 128-byte SQEs; ask for them only then.
    let mut ring = crate::ring::Builder::event_loop(ring_entries)
        .sqe128(native)
        .build()?;
    let mut stop_buf = [0u8; 8];
    let mut init_buf = [0u8; 8];
    let mut irq_buf = [0u8; 8];
    let result = crate::event_loop::Loop {
        core,
        ring: &mut ring,
        fuse: spec.fuse,
        slab: crate::slab::Slab::new(slab, layout),
        layout,
        meta,
        notifier: &mut notifier,
        stats,
        stop_fd: spec.stop_fd,
        stop_buf: &mut stop_buf,
        max_reads: usize::from(config.reads_in_flight).min(spec.dev_slots),
        replies_first: config.replies_first,
        dev_slots: spec.dev_slots,
        native: if native { spec.native } else { Native::Off },
        init_event: spec.init_event,
        init_buf: &mut init_buf,
        init_notify: spec.init_notify,
        irq_event: spec.irq_event,
        irq_buf: &mut irq_buf,
        lost: crate::lost::Watch::new(),
        stop_grace: config.stop_grace,
    }
    .run();
    if result.is_err() {
        // The loop gave up with operations possibly in flight: the kernel may still read
        // the notification buffers until the ring's teardown; never free them under it.
        // (Without `std` they are the caller's static memory: nothing to free.)
        #[cfg_attr(not(feature = "std"), allow(clippy::forget_non_drop))]
        core::mem::forget(notifier);
    }
    result
}

/// Every possible CPU's queue (the kernel makes one per possible CPU).
#[cfg(feature = "std")]
fn all_queues() -> std::vec::Vec<u16> {
    (0..crate::sys::possible_cpus().unwrap_or(1))
        .map(|q| q as u16)
        .collect()
}

#[cfg(feature = "std")]
fn watch_signals(
    stop: &std::sync::Arc<rustix::fd::OwnedFd>,
) -> Result<crate::sys::SignalWatch, Error> {
    let stop = std::sync::Arc::clone(stop);
    crate::sys::SignalWatch::start(move || crate::sys::signal_stop(&stop)).map_err(|e| Error::Io {
        what: "watching SIGINT and SIGTERM",
        errno: crate::error::errno(e),
    })
}

/// Mounts once and serves with one loop per CPU this process may run on, each pinned to
/// its CPU, with its own ring, buffers and filesystem value made by `factory(cpu)`; state
/// they share lives inside `F` (behind an `Arc`, locked as the filesystem chooses).
///
/// Native transport: the loop of CPU `c` registers queue `c`'s entries (queues of
/// possible CPUs this process may not run on go to the first loop, which also serves
/// `/dev/fuse`). Classic transport: each loop reads and writes its own clone of the
/// `/dev/fuse` descriptor (`FUSE_DEV_IOC_CLONE`).
///
/// Returns the loops' counters, added up, when the filesystem is unmounted or a stop is
/// asked for (SIGINT/SIGTERM with [`Config::handle_signals`]).
///
/// # Errors
///
/// As [`Session::new`] and [`Session::run`].
#[cfg(feature = "std")]
#[allow(clippy::too_many_lines)] // setup, the scoped threads and the report read best whole
pub fn run_per_cpu<F, M, P>(
    mountpoint: &P,
    options: &crate::mount::MountOptions,
    config: Config,
    mut factory: M,
) -> Result<PerCpuReport, Error>
where
    F: Filesystem + Send,
    M: FnMut(usize) -> F,
    P: crate::mount::AsMountPoint + ?Sized,
{
    use std::sync::Arc;
    use std::vec::Vec;

    config.validate()?;
    let native = native_wanted(config.transport)?;
    let cpus = crate::sys::allowed_cpus().map_err(|e| Error::Io {
        what: "reading the CPU affinity",
        errno: crate::error::errno(e),
    })?;
    let stop = Arc::new(crate::sys::stop_event().map_err(|e| Error::Io {
        what: "creating the stop eventfd",
        errno: crate::error::errno(e),
    })?);
    let mut options = options.clone();
    options.nonblocking(config.nonblocking_device);
    let mount = crate::mount::mount(mountpoint, &options)?;
    let shared = Arc::new(std::sync::OnceLock::new());
    let n = cpus.len().max(1);
    // Per-loop device descriptors (classic: clones) and INIT events (native).
    let (clones, events) = loop_fds(&mount, &config, native, n)?;
    let queues = if native {
        assign_queues(&cpus, crate::sys::possible_cpus().unwrap_or(n))
    } else {
        std::vec![Vec::new(); n]
    };
    let filesystems: Vec<F> = cpus.iter().map(|&c| factory(c)).collect();
    let _signals = if config.handle_signals {
        Some(watch_signals(&stop)?)
    } else {
        None
    };
    let notify: Vec<rustix::fd::BorrowedFd<'_>> =
        events.iter().map(rustix::fd::AsFd::as_fd).collect();
    let mut irq_events = Vec::new();
    if n > 1 {
        for _ in 0..n {
            irq_events.push(crate::sys::init_event().map_err(|e| Error::Io {
                what: "creating an interrupt eventfd",
                errno: crate::error::errno(e),
            })?);
        }
    }
    let forward = Arc::new(Forward {
        uniques: [const { core::sync::atomic::AtomicU64::new(0) }; 64],
        next: core::sync::atomic::AtomicUsize::new(0),
        events: irq_events,
    });
    let results: Vec<Result<(Stats, Option<Negotiated>), Error>> = std::thread::scope(|scope| {
        let mut handles = Vec::new();
        for (k, fs) in filesystems.into_iter().enumerate() {
            let cpu = cpus.get(k).copied().unwrap_or(0);
            let fuse = if k == 0 || native {
                mount.fd()
            } else {
                clones
                    .get(k - 1)
                    .map_or(mount.fd(), rustix::fd::AsFd::as_fd)
            };
            let spec = LoopSpec {
                fuse,
                dev_slots: if k == 0 || !native {
                    usize::from(config.slots)
                } else {
                    0
                },
                queues: queues.get(k).map_or(&[][..], Vec::as_slice),
                native: match (native, k) {
                    (false, _) => Native::Off,
                    (true, 0) => Native::Wanted,
                    (true, _) => Native::WaitInit,
                },
                stop_fd: Some(rustix::fd::AsFd::as_fd(&*stop)),
                init_event: if native && k > 0 {
                    events.get(k - 1).map(rustix::fd::AsFd::as_fd)
                } else {
                    None
                },
                init_notify: if k == 0 { &notify } else { &[] },
                irq_event: forward.events.get(k).map(rustix::fd::AsFd::as_fd),
            };
            let (shared, stop_end) = (Arc::clone(&shared), Arc::clone(&stop));
            let fwd = (Arc::clone(&forward), k);
            let handle = std::thread::Builder::new()
                .name(std::format!("ringfuse-cpu{cpu}"))
                .spawn_scoped(scope, move || {
                    cpu_loop(cpu, fs, &config, &spec, shared, fwd, &stop_end)
                });
            match handle {
                Ok(h) => handles.push(h),
                Err(_) => crate::sys::signal_stop(&stop),
            }
        }
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or(Err(Error::Config("a loop thread panicked")))
            })
            .collect()
    });
    let unmounted = if mount.is_mounted() {
        mount.unmount().map_err(Error::from)
    } else {
        Ok(())
    };
    let mut report = PerCpuReport {
        loops: Vec::new(),
        negotiated: None,
    };
    for r in results {
        let (stats, settled) = r?;
        report.loops.push(stats);
        report.negotiated = report.negotiated.or(settled);
    }
    unmounted?;
    Ok(report)
}

/// What [`run_per_cpu`] did.
#[cfg(feature = "std")]
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct PerCpuReport {
    /// Each loop's counters, in CPU order.
    pub loops: std::vec::Vec<Stats>,
    /// What INIT settled.
    pub negotiated: Option<Negotiated>,
}

#[cfg(feature = "std")]
impl PerCpuReport {
    /// All loops' counters added up.
    pub fn total(&self) -> Stats {
        let mut t = Stats::default();
        for s in &self.loops {
            t.add(s);
        }
        t
    }

    /// The transport that served: native if INIT settled on it.
    pub fn transport(&self) -> Transport {
        if self
            .negotiated
            .is_some_and(|n| n.has(InitFlags::OVER_IO_URING))
        {
            Transport::Native
        } else {
            Transport::Classic
        }
    }
}

/// Queue `q` goes to the loop pinned to CPU `q`, or to the first loop if this process may
/// not run on CPU `q` (every possible CPU's queue needs entries, or the kernel waits).
#[cfg(feature = "std")]
fn assign_queues(cpus: &[usize], possible: usize) -> std::vec::Vec<std::vec::Vec<u16>> {
    let mut queues = std::vec![std::vec::Vec::new(); cpus.len().max(1)];
    for q in 0..possible {
        let k = cpus.iter().position(|&c| c == q).unwrap_or(0);
        if let Some(list) = queues.get_mut(k) {
            list.push(q as u16);
        }
    }
    queues
}

/// One loop of [`run_per_cpu`], on its own thread.
#[cfg(feature = "std")]
fn cpu_loop<F: Filesystem>(
    cpu: usize,
    fs: F,
    config: &Config,
    spec: &LoopSpec<'_>,
    shared: std::sync::Arc<std::sync::OnceLock<Negotiated>>,
    forward: (std::sync::Arc<Forward>, usize),
    stop: &rustix::fd::OwnedFd,
) -> Result<(Stats, Option<Negotiated>), Error> {
    // Best effort: a loop that can't be pinned still serves.
    let _ = crate::sys::pin_to_cpu(cpu);
    let mut core = Core::new(fs, crate::init::clamp_max_write(config.max_write));
    core.shared = Some(shared);
    if !forward.0.events.is_empty() {
        core.forward = Some(forward);
    }
    let mut stats = Stats::default();
    let end = serve_loop(&mut core, config, spec, &mut stats);
    // One loop ended (unmount or stop): end the others too.
    crate::sys::signal_stop(stop);
    let settled = core.settled();
    core.fs.destroy();
    end.map(|_| (stats, settled))
}

/// For `n` loops: the classic transport's `/dev/fuse` clones, or the native transport's
/// INIT eventfds, for every loop but the first.
#[cfg(feature = "std")]
#[allow(clippy::type_complexity)]
fn loop_fds(
    mount: &crate::mount::Mount,
    config: &Config,
    native: bool,
    n: usize,
) -> Result<
    (
        std::vec::Vec<rustix::fd::OwnedFd>,
        std::vec::Vec<rustix::fd::OwnedFd>,
    ),
    Error,
> {
    let (mut clones, mut events) = (std::vec::Vec::new(), std::vec::Vec::new());
    for _ in 1..n {
        if native {
            events.push(crate::sys::init_event().map_err(|e| Error::Io {
                what: "creating an init eventfd",
                errno: crate::error::errno(e),
            })?);
        } else {
            clones.push(mount.clone_fd(config.nonblocking_device)?);
        }
    }
    Ok((clones, events))
}
