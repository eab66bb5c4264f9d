//! One pinned loop per CPU on one mount ([`run_per_cpu`]).

use crate::abi::flags::InitFlags;
use crate::api::fs::Filesystem;
use crate::error::Error;
use crate::event_loop::Native;
use crate::event_loop::forward::Forward;
use crate::event_loop::init::Negotiated;
use crate::event_loop::request::Core;
use crate::state::Stats;

use super::serve::{LoopSpec, serve_loop};
use super::{Config, Transport, native_wanted};

#[cfg(feature = "std")]
fn watch_signals(
    stop: &std::sync::Arc<rustix::fd::OwnedFd>,
) -> Result<crate::sys::SignalWatch, Error> {
    let stop = std::sync::Arc::clone(stop);
    crate::sys::SignalWatch::start(move || crate::sys::signal_stop(&stop)).map_err(|e| Error::Io {
        what: "watching SIGINT and SIGTERM",
        errno: crate::sys::errno(e),
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
/// As [`Session::new`](crate::Session::new) and [`Session::run`](crate::Session::run).
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
        errno: crate::sys::errno(e),
    })?;
    let stop = Arc::new(crate::sys::stop_event().map_err(|e| Error::Io {
        what: "creating the stop eventfd",
        errno: crate::sys::errno(e),
    })?);
    let mut options = options.clone();
    options.nonblocking(config.nonblocking_device);
    let mount = crate::mount::mount(mountpoint, &options)?;
    let shared = Arc::new(std::sync::OnceLock::new());
    let allow_root = super::allow_root_uid(&options);
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
                errno: crate::sys::errno(e),
            })?);
        }
    }
    let forward = Arc::new(Forward::new(irq_events));
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
                    cpu_loop(cpu, fs, &config, &spec, shared, fwd, &stop_end, allow_root)
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
#[allow(clippy::too_many_arguments)] // the one loop's share of everything set up above
fn cpu_loop<F: Filesystem>(
    cpu: usize,
    fs: F,
    config: &Config,
    spec: &LoopSpec<'_>,
    shared: std::sync::Arc<std::sync::OnceLock<Negotiated>>,
    forward: (std::sync::Arc<Forward>, usize),
    stop: &rustix::fd::OwnedFd,
    allow_root: Option<u32>,
) -> Result<(Stats, Option<Negotiated>), Error> {
    // Best effort: a loop that can't be pinned still serves.
    let _ = crate::sys::pin_to_cpu(cpu);
    let mut core = Core::new(
        fs,
        crate::event_loop::init::clamp_max_write(config.max_write),
    );
    core.shared = Some(shared);
    core.allow_root = allow_root;
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
                errno: crate::sys::errno(e),
            })?);
        } else {
            clones.push(mount.clone_fd(config.nonblocking_device)?);
        }
    }
    Ok((clones, events))
}
