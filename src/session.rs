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
use crate::fs::Filesystem;
use crate::init::{InitOutcome, Negotiated, negotiate};
use crate::reply::Outcome;
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
    /// Requests in flight at once (slots, each with a request and a reply buffer of about
    /// `max_write + 4 KiB`). Default 8, at most [`MAX_SLOTS`].
    pub slots: u16,
    /// Notifications in flight at once. Default 4.
    pub notify_slots: u8,
    /// Size of a notification buffer (bounds `notify_store` data). Default 4 KiB.
    pub notify_size: u32,
    /// Stop cleanly on SIGINT and SIGTERM (blocks them in the thread that calls
    /// [`Session::run`], which the loop then watches). Default true. Needs `std`.
    pub handle_signals: bool,
    /// Open `/dev/fuse` non-blocking. Default true: a READ that io_uring cannot complete
    /// at once then fails fast instead of parking an io-wq worker in the kernel.
    pub nonblocking_device: bool,
    /// The transport: [`TransportMode::Auto`] by default.
    pub transport: TransportMode,
    /// Entries registered per queue (one queue per possible CPU) with the native
    /// transport. Default 2.
    pub queue_depth: u16,
    /// READs kept armed on `/dev/fuse` at once. Default 1: each READ armed on the device
    /// is woken by every new request, and the losers of that race were measured to be
    /// handed to io-wq worker threads (see `Loop`); one armed READ, re-armed on the next
    /// idle slot as soon as it completes, needs no worker and no extra wake-ups.
    pub reads_in_flight: u16,
}

/// Most slots a loop may have.
pub const MAX_SLOTS: u16 = 1024;

impl Default for Config {
    fn default() -> Self {
        Self {
            max_write: 128 * 1024,
            slots: 8,
            notify_slots: 4,
            notify_size: 4096,
            handle_signals: cfg!(feature = "std"),
            nonblocking_device: true,
            reads_in_flight: 1,
            transport: TransportMode::Auto,
            queue_depth: 2,
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

    /// Sets [`reads_in_flight`](Self::reads_in_flight).
    #[must_use]
    pub fn reads_in_flight(mut self, n: u16) -> Self {
        self.reads_in_flight = n;
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
        if self.queue_depth == 0 {
            return Err(Error::Config("queue_depth must be at least 1"));
        }
        if usize::from(self.notify_slots) > crate::notifier::MAX_NOTIFY {
            return Err(Error::Config("notify_slots must be at most 32"));
        }
        if self.notify_slots > 0 && self.notify_size < 256 {
            return Err(Error::Config("notify_size must be at least 256 bytes"));
        }
        Ok(())
    }

    /// The buffer memory one loop of this configuration uses, in bytes: `slots` request
    /// and reply buffers plus the notification buffers.
    pub fn buffer_bytes(&self) -> usize {
        let layout = crate::event_loop::layout(self);
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
}

impl<F: Filesystem> Core<F> {
    pub(crate) fn new(fs: F, max_write: u32) -> Self {
        Self {
            fs,
            negotiated: None,
            parse: ParseConfig::default(),
            max_write,
            init_failed: None,
        }
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
                interrupt(&mut self.fs, env, info, arg.unique);
                return Action::Nothing;
            }
            Operation::Destroy => {
                self.fs.destroy();
                return Action::Reply(enc::out_header(h.unique, 0));
            }
            _ => {}
        }
        if self.negotiated.is_none() {
            // The kernel sends nothing before INIT is answered; anything else is garbage.
            return Action::Reply(enc::error_header(h.unique, Errno::EIO));
        }
        let mut outcome = Outcome::Pending;
        let mut cx = Cx { info, env };
        dispatch(
            &mut self.fs,
            &mut cx,
            req,
            ReplySlot {
                payload,
                outcome: &mut outcome,
                slot,
            },
        );
        if req.opcode().is_no_reply() {
            return Action::Nothing;
        }
        match outcome {
            Outcome::Payload(n) => Action::Reply(enc::out_header(h.unique, n)),
            Outcome::Error(e) => Action::Reply(enc::error_header(h.unique, e)),
            Outcome::Deferred => {
                cx.env.stats.deferred += 1;
                Action::Deferred
            }
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
/// it `EINTR` now and tell the filesystem; otherwise (answered already, or unknown) do
/// nothing — a single loop answers requests in order, so an unknown unique was answered.
fn interrupt<F: Filesystem>(fs: &mut F, env: Env<'_>, info: Info, target: u64) {
    let Some(meta) = env
        .slab
        .meta
        .iter_mut()
        // Native entries are not interrupted: answering one commits the entry, which the
        // kernel may refill while the filesystem's own I/O still uses its buffers.
        .find(|m| m.kind == SlotKind::Dev && m.fs_holds && !m.answered && m.unique == target)
    else {
        return;
    };
    meta.outcome.0 = Outcome::Error(Errno::EINTR);
    meta.resumed = true;
    *env.resumed += 1;
    env.stats.interrupts += 1;
    let mut cx = Cx { info, env };
    fs.interrupted(&mut cx, target);
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
    stop: std::sync::Arc<rustix::fd::OwnedFd>,
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
    /// # Errors
    ///
    /// [`Error::Mount`] naming the cause and the fix (not root, no `/dev/fuse`, mount point
    /// missing or not a directory, bad option); [`Error::Config`]. Nothing stays mounted
    /// on error.
    pub fn new<P: crate::mount::AsMountPoint + ?Sized>(
        fs: F,
        mountpoint: &P,
        options: &crate::mount::MountOptions,
        config: Config,
    ) -> Result<Self, Error> {
        config.validate()?;
        let native = native_wanted(config.transport)?;
        #[cfg(feature = "std")]
        let stop = std::sync::Arc::new(crate::sys::stop_event().map_err(|e| Error::Io {
            what: "creating the stop eventfd",
            errno: crate::error::errno(e),
        })?);
        let mut options = options.clone();
        options.nonblocking(config.nonblocking_device);
        let mount = crate::mount::mount(mountpoint, &options)?;
        Ok(Self {
            core: Core::new(fs, crate::init::clamp_max_write(config.max_write)),
            mount: Some(mount),
            config,
            native,
            stats: Stats::default(),
            #[cfg(feature = "std")]
            stop,
        })
    }

    /// Serves requests on the calling thread until the filesystem is unmounted, the
    /// connection aborted, or a stop is asked for ([`StopHandle`], or SIGINT/SIGTERM with
    /// [`Config::handle_signals`]); then finishes what is in flight and unmounts.
    ///
    /// # Errors
    ///
    /// [`Error::Ring`] if io_uring is unavailable, [`Error::Io`] if the loop's syscalls
    /// fail, [`Error::Init`] if INIT was refused, [`Error::Ended`] on a second call.
    pub fn run(&mut self) -> Result<(), Error> {
        let mount = self.mount.take().ok_or(Error::Ended)?;
        let result = self.serve(&mount);
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

    #[cfg(feature = "std")]
    fn serve(&mut self, mount: &crate::mount::Mount) -> Result<(), Error> {
        let _signals = if self.config.handle_signals {
            Some(
                crate::sys::SignalWatch::start(std::sync::Arc::clone(&self.stop)).map_err(|e| {
                    Error::Io {
                        what: "watching SIGINT and SIGTERM",
                        errno: crate::error::errno(e),
                    }
                })?,
            )
        } else {
            None
        };
        let layout = crate::event_loop::layout(&self.config);
        let dev_slots = usize::from(self.config.slots);
        let queues = if self.native {
            crate::sys::possible_cpus().unwrap_or(0)
        } else {
            0
        };
        let entries = queues * usize::from(self.config.queue_depth);
        let slots = dev_slots + entries;
        if slots > usize::from(MAX_SLOTS) {
            return Err(Error::Config(
                "slots + possible CPUs x queue_depth must be at most 1024",
            ));
        }
        let mut slab = crate::slab::Storage::heap(layout.size(slots));
        let notify_size = self.config.notify_size as usize;
        let notify_count = usize::from(self.config.notify_slots);
        let mut notifier = crate::notifier::Notifier::new(
            crate::slab::Storage::heap(crate::notifier::Notifier::bytes(notify_count, notify_size)),
            notify_count,
            notify_size,
        );
        let mut meta = std::vec![crate::slab::SlotMeta::default(); slots];
        for (k, m) in meta.iter_mut().skip(dev_slots).enumerate() {
            m.kind = crate::slab::SlotKind::Entry {
                qid: (k % queues.max(1)) as u16,
            };
        }
        let stop = std::sync::Arc::clone(&self.stop);
        let stop_fd = rustix::fd::AsFd::as_fd(&*stop);
        self.serve_with(
            mount.fd(),
            slab.as_mut(),
            &mut meta,
            &mut notifier,
            Some(stop_fd),
        )
    }

    fn serve_with(
        &mut self,
        fuse: rustix::fd::BorrowedFd<'_>,
        slab: &mut [u8],
        meta: &mut [crate::slab::SlotMeta],
        notifier: &mut crate::notifier::Notifier,
        stop_fd: Option<rustix::fd::BorrowedFd<'_>>,
    ) -> Result<(), Error> {
        let layout = crate::event_loop::layout(&self.config);
        // Reads and writes of every slot, notifications, the stop event, room for the
        // filesystem's own operations.
        let entries =
            (2 * meta.len() + usize::from(self.config.notify_slots) + 64).next_power_of_two();
        let entries = u32::try_from(entries).map_err(|_| Error::Config("too many slots"))?;
        let dev_slots = meta
            .iter()
            .filter(|m| m.kind == crate::slab::SlotKind::Dev)
            .count();
        // The native transport's uring_cmds need 128-byte SQEs; ask for them only then.
        let native = self.native && dev_slots < meta.len();
        let mut ring = crate::ring::Builder::event_loop(entries)
            .sqe128(native)
            .build()?;
        let mut stop_buf = [0u8; 8];
        let end = crate::event_loop::Loop {
            core: &mut self.core,
            ring: &mut ring,
            fuse,
            slab,
            layout,
            meta,
            notifier,
            stats: &mut self.stats,
            stop_fd,
            stop_buf: &mut stop_buf,
            max_reads: usize::from(self.config.reads_in_flight),
            dev_slots,
            native: if native {
                crate::event_loop::Native::Wanted
            } else {
                crate::event_loop::Native::Off
            },
        }
        .run();
        end.map(|_| ())
    }

    /// What INIT settled, once the kernel's INIT was answered.
    pub fn negotiated(&self) -> Option<Negotiated> {
        self.core.negotiated
    }

    /// The transport in use: known once INIT was answered (during
    /// [`run`](Self::run)); before that, the one that will be offered.
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
            fd: std::sync::Arc::clone(&self.stop),
        }
    }
}

/// Stops a running [`Session`] from another thread: the loop stops taking requests,
/// finishes the ones in flight, and unmounts.
#[cfg(feature = "std")]
#[derive(Clone, Debug)]
pub struct StopHandle {
    fd: std::sync::Arc<rustix::fd::OwnedFd>,
}

#[cfg(feature = "std")]
impl StopHandle {
    /// Asks the session to stop. Idempotent; returns at once.
    pub fn stop(&self) {
        let _ = rustix::io::write(&*self.fd, &1u64.to_ne_bytes());
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
