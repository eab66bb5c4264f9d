//! The session: a mounted filesystem and the loop that serves it ([`Session`]), stopping it
//! ([`StopHandle`]), and, in [`per_cpu`], one loop per CPU on one mount. [`config`] holds
//! the knobs and the sizes they imply; [`serve`] allocates one loop's memory and ring and
//! runs it. The session is the top of the library: it uses the mount, the loop and the
//! state below it, and nothing below uses it.

mod config;
#[cfg(feature = "std")]
mod per_cpu;
mod serve;

pub use config::{Config, STATIC_SLOTS};
#[cfg(feature = "std")]
pub use per_cpu::{PerCpuReport, run_per_cpu};

use crate::abi::Errno;
use crate::abi::flags::InitFlags;
use crate::abi::reply as enc;
use crate::abi::request::Operation;
use crate::api::fs::Filesystem;
use crate::error::Error;
use crate::event_loop::Native;
use crate::event_loop::init::Negotiated;
use crate::event_loop::request::{Action, Core};
use crate::state::Stats;
use serve::{LoopSpec, serve_loop_in, slot_count};
#[cfg(feature = "std")]
use serve::{all_queues, serve_loop};

/// How long [`Session::new`] waits for the kernel's INIT (queued by `mount(2)` itself).
const INIT_WAIT: core::time::Duration = core::time::Duration::from_secs(10);

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
            errno: crate::sys::errno(e),
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

/// For `allow_root`: the uid allowed besides root's (the mounter's).
pub(crate) fn allow_root_uid(options: &crate::mount::MountOptions) -> Option<u32> {
    options
        .is_allow_root()
        .then(|| rustix::process::getuid().as_raw())
}

impl<F: Filesystem> Session<F> {
    /// Mounts `fs` at `mountpoint` ([`mount`](crate::mount::mount): `mount(2)` as root,
    /// through fusermount3 for other users, as [`MountOptions`](crate::mount::MountOptions)
    /// says).
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
    /// [`Error::Mount`] naming the cause and the fix (not root and no fusermount3, no
    /// `/dev/fuse`, mount point missing, not a directory or not the user's, bad option, an
    /// option fusermount3 refuses); [`Error::Config`]; [`Error::Init`] if the
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
                    errno: crate::sys::errno(e),
                })?,
            )
        } else {
            None
        };
        let mut session = Self {
            core: Core::new(
                fs,
                crate::event_loop::init::clamp_max_write(config.max_write),
            ),
            mount: Some(mount),
            config,
            native,
            stats: Stats::default(),
            #[cfg(feature = "std")]
            stop,
            #[cfg(feature = "std")]
            _signals: signals,
        };
        session.core.allow_root = allow_root_uid(&options);
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
                .map_err(|e| fail("reading the kernel's INIT", crate::sys::errno(e)))?;
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
                .map_err(|e| fail("answering the kernel's INIT", crate::sys::errno(e)))?;
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
        let slab_bytes =
            crate::event_loop::layout(self.config.max_write, F::TASK_BYTES).size(slots);
        if memory.len() < self.config.static_bytes_for::<F>() {
            return Err(Error::Config(
                "run_with needs Config::static_bytes_for::<F>() bytes of memory",
            ));
        }
        let (slab, notify) = memory.split_at_mut(slab_bytes);
        let mut meta = [crate::state::slab::SlotMeta::default(); STATIC_SLOTS];
        let meta = meta.get_mut(..slots).unwrap_or_default();
        serve_loop_in(
            &mut self.core,
            &self.config,
            &spec,
            &mut self.stats,
            slab,
            crate::state::slab::Storage::from_static(notify),
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
