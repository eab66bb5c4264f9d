//! The run: targets × workloads × placements, interleaved and repeated, each on a fresh
//! mount in a fresh temporary directory that is always unmounted and removed.

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::adapters::Negotiated;
use crate::core::Layout;
use crate::counters::{Snapshot, WORDS, opcode_name};
use crate::driver::{self, INTERRUPTED, Meta, Window};
use crate::fio::{self, Job};
use crate::serve::{FsKind, Lib, RfTransport, ServeArgs};
use crate::sys::{self, Cpus, RemoteMem, SyscallCounter};

// ---------------------------------------------------------------------------------------
// Targets

/// What serves the mount.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Fuser {
        threads: usize,
        clone_fd: bool,
    },
    Ringfuse {
        transport: RfTransport,
        rif: u16,
        slots: u16,
        /// `Config::replies_first(false)`: replies and the next READ always in one enter.
        together: bool,
    },
    /// fractal-fuse 0.6: `workers` threads (0: its default, one pinned per CPU).
    Fractal {
        workers: usize,
    },
    /// libfuse 3.18's `example/memfs_ll` (its own filesystem), `-o io_uring` or not.
    Libfuse {
        uring: bool,
    },
    /// A fresh tmpfs: no FUSE at all, the kernel-only ceiling.
    Tmpfs,
}

/// A target: one line each.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    pub name: &'static str,
    pub kind: Kind,
    pub fs: FsKind,
    pub about: &'static str,
}

const fn fuser(
    name: &'static str,
    threads: usize,
    clone_fd: bool,
    fs: FsKind,
    about: &'static str,
) -> Target {
    Target {
        name,
        kind: Kind::Fuser { threads, clone_fd },
        fs,
        about,
    }
}

const fn rf(
    name: &'static str,
    transport: RfTransport,
    rif: u16,
    slots: u16,
    fs: FsKind,
    about: &'static str,
) -> Target {
    Target {
        name,
        kind: Kind::Ringfuse {
            transport,
            rif,
            slots,
            together: false,
        },
        fs,
        about,
    }
}

/// The classic default with `Config::replies_first(false)`.
const fn together(name: &'static str, fs: FsKind, about: &'static str) -> Target {
    Target {
        name,
        kind: Kind::Ringfuse {
            transport: RfTransport::Classic,
            rif: 1,
            slots: 8,
            together: true,
        },
        fs,
        about,
    }
}

use FsKind::{Mem, Null};
use RfTransport::{Classic, Native, NativePerCpu};

/// Every target the harness knows. The reference for ratios is `fuser1`.
pub const TARGETS: &[Target] = &[
    fuser(
        "fuser1",
        1,
        false,
        Mem,
        "fuser 0.18, 1 thread (its default)",
    ),
    fuser(
        "fuser2",
        2,
        true,
        Mem,
        "fuser 0.18, 2 threads with clone_fd",
    ),
    rf(
        "rf-classic",
        Classic,
        1,
        8,
        Mem,
        "ringfuse, /dev/fuse through io_uring (Config::default(), transport Classic)",
    ),
    rf(
        "rf-native",
        Native,
        1,
        8,
        Mem,
        "ringfuse, kernel FUSE-over-io_uring, one loop",
    ),
    rf(
        "rf-native-percpu",
        NativePerCpu,
        1,
        8,
        Mem,
        "ringfuse, kernel FUSE-over-io_uring, a pinned loop per CPU",
    ),
    Target {
        name: "fractal",
        kind: Kind::Fractal { workers: 0 },
        fs: Mem,
        about: "fractal-fuse 0.6.1 (FUSE-over-io_uring on compio), a pinned worker per CPU (its default)",
    },
    Target {
        name: "fractal1",
        kind: Kind::Fractal { workers: 1 },
        fs: Mem,
        about: "fractal-fuse 0.6.1, one worker (with_worker_count(1))",
    },
    Target {
        name: "libfuse",
        kind: Kind::Libfuse { uring: false },
        fs: Mem,
        about: "libfuse 3.18 example/memfs_ll (C++, its own in-memory filesystem, TTL 0), /dev/fuse, its multi-threaded loop (RINGFUSE_LIBFUSE_MEMFS_LL)",
    },
    Target {
        name: "libfuse-uring",
        kind: Kind::Libfuse { uring: true },
        fs: Mem,
        about: "libfuse 3.18 example/memfs_ll with -o io_uring (FUSE-over-io_uring, a queue per CPU)",
    },
    Target {
        name: "tmpfs",
        kind: Kind::Tmpfs,
        fs: Mem,
        about: "tmpfs, no FUSE (the ceiling)",
    },
    fuser(
        "fuser1-null",
        1,
        false,
        Null,
        "fuser1 serving the null filesystem",
    ),
    rf(
        "rf-classic-null",
        Classic,
        1,
        8,
        Null,
        "rf-classic serving the null filesystem",
    ),
    together(
        "rf-classic-null-together",
        Null,
        "rf-classic-null with replies_first(false): replies and the next READ in one enter",
    ),
    together(
        "rf-classic-together",
        Mem,
        "rf-classic with replies_first(false)",
    ),
    rf(
        "rf-classic-rif2",
        Classic,
        2,
        8,
        Mem,
        "rf-classic with reads_in_flight(2)",
    ),
    rf(
        "rf-classic-s32",
        Classic,
        1,
        32,
        Mem,
        "rf-classic with slots(32)",
    ),
    rf(
        "rf-classic-rif4-s32",
        Classic,
        4,
        32,
        Mem,
        "rf-classic with reads_in_flight(4), slots(32)",
    ),
];

pub const REFERENCE: &str = "fuser1";

pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

// ---------------------------------------------------------------------------------------
// Workloads

#[derive(Clone, Copy, Debug)]
pub enum WKind {
    Meta(Meta),
    Fio(Job),
}

#[derive(Clone, Copy, Debug)]
pub struct Workload {
    pub name: &'static str,
    pub kind: WKind,
    /// Entry and attribute TTL both servers answer with.
    pub ttl_s: u64,
    pub about: &'static str,
}

const fn meta(name: &'static str, m: Meta, ttl_s: u64, about: &'static str) -> Workload {
    Workload {
        name,
        kind: WKind::Meta(m),
        ttl_s,
        about,
    }
}

const fn job(
    name: &'static str,
    rw: &'static str,
    bs: u32,
    engine: &'static str,
    iodepth: u32,
    direct: bool,
    about: &'static str,
) -> Workload {
    Workload {
        name,
        kind: WKind::Fio(Job {
            rw,
            bs,
            engine,
            iodepth,
            direct,
        }),
        ttl_s: 3600,
        about,
    }
}

pub const WORKLOADS: &[Workload] = &[
    meta(
        "getattr",
        Meta::Getattr,
        0,
        "statx(fd, \"\", AT_EMPTY_PATH|AT_STATX_FORCE_SYNC) on an open file: uncached GETATTR",
    ),
    meta(
        "pathstat",
        Meta::PathStat,
        0,
        "statx(path) of /file with entry and attr TTL 0",
    ),
    meta(
        "lookup",
        Meta::Lookup,
        3600,
        "statx of N existing names then N missing names of a directory, once each, fresh mount",
    ),
    meta(
        "create",
        Meta::Create,
        3600,
        "openat(O_CREAT|O_EXCL|O_WRONLY) + close + unlinkat of a new name",
    ),
    meta(
        "readdir",
        Meta::Readdir,
        3600,
        "open + getdents64 (32 KiB) to the end + close of an N-entry directory (READDIR, no cache_dir)",
    ),
    meta(
        "smallfiles",
        Meta::SmallFiles,
        3600,
        "N files: create+write 4 KiB+close, then open+read+close, then unlink (one op per step)",
    ),
    job(
        "randread-4k-qd1",
        "randread",
        4096,
        "psync",
        1,
        true,
        "fio 4 KiB random read, psync, O_DIRECT",
    ),
    job(
        "randread-4k-qd32",
        "randread",
        4096,
        "libaio",
        32,
        true,
        "fio 4 KiB random read, libaio iodepth 32, O_DIRECT",
    ),
    job(
        "seqread-128k",
        "read",
        128 << 10,
        "psync",
        1,
        true,
        "fio 128 KiB sequential read, psync, O_DIRECT",
    ),
    job(
        "seqread-1m",
        "read",
        1 << 20,
        "psync",
        1,
        true,
        "fio 1 MiB sequential read, psync, O_DIRECT (8 READs of 128 KiB, async DIO)",
    ),
    job(
        "seqwrite-128k",
        "write",
        128 << 10,
        "psync",
        1,
        false,
        "fio 128 KiB sequential write, psync, buffered (write-through: no writeback cache)",
    ),
    job(
        "seqwrite-1m",
        "write",
        1 << 20,
        "psync",
        1,
        false,
        "fio 1 MiB sequential write, psync, buffered (write-through)",
    ),
    job(
        "randwrite-4k",
        "randwrite",
        4096,
        "psync",
        1,
        true,
        "fio 4 KiB random write, psync, O_DIRECT",
    ),
];

pub fn workload(name: &str) -> Option<&'static Workload> {
    WORKLOADS.iter().find(|w| w.name == name)
}

// ---------------------------------------------------------------------------------------
// Placements and profiles

#[derive(Clone, Debug)]
pub struct Placement {
    pub name: &'static str,
    pub client: Cpus,
    pub server: Cpus,
    pub about: &'static str,
}

pub fn placements() -> Vec<Placement> {
    vec![
        Placement {
            name: "shared",
            client: Cpus::List(vec![0]),
            server: Cpus::List(vec![0]),
            about: "client and server on CPU 0",
        },
        Placement {
            name: "split",
            client: Cpus::List(vec![0]),
            server: Cpus::List(vec![1]),
            about: "client on CPU 0, server on CPU 1",
        },
        Placement {
            name: "unpinned",
            client: Cpus::All,
            server: Cpus::All,
            about: "no affinity set",
        },
    ]
}

/// What a run covers and how long each point lasts.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Profile {
    pub name: String,
    pub secs: f64,
    pub warm: f64,
    pub reps: usize,
    /// Length of the separate syscall-counting run per point (0 = none).
    pub count_secs: f64,
    pub placements: Vec<String>,
    pub targets: Vec<String>,
    pub workloads: Vec<String>,
    /// Extra targets (null filesystems, variants) run only on `extra_workloads`.
    pub extra_targets: Vec<String>,
    pub extra_workloads: Vec<String>,
    pub entries: u32,
    /// Files of the `smallfiles` workload.
    #[serde(default)]
    pub small_files: u32,
    pub data_size: u64,
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_string()).collect()
}

impl Profile {
    pub fn named(name: &str) -> Option<Self> {
        let all: Vec<&str> = WORKLOADS.iter().map(|w| w.name).collect();
        // Every peer: libfuse's targets are reported unavailable (with the build line)
        // unless RINGFUSE_LIBFUSE_MEMFS_LL names its memfs_ll.
        let main = [
            "fuser1",
            "fuser2",
            "rf-classic",
            "rf-native",
            "rf-native-percpu",
            "fractal",
            "fractal1",
            "libfuse",
            "libfuse-uring",
            "tmpfs",
        ];
        let null = ["fuser1-null", "rf-classic-null", "rf-classic-null-together"];
        let null_w = [
            "getattr",
            "create",
            "randread-4k-qd1",
            "randread-4k-qd32",
            "seqwrite-1m",
        ];
        match name {
            "quick" => Some(Self {
                name: name.into(),
                secs: 0.4,
                warm: 0.1,
                reps: 2,
                count_secs: 0.2,
                placements: strings(&["shared"]),
                targets: strings(&main),
                workloads: strings(&all),
                extra_targets: strings(&null),
                extra_workloads: strings(&["getattr", "create", "randread-4k-qd32"]),
                entries: 10_000,
                small_files: 1000,
                data_size: 64 << 20,
            }),
            "full" => Some(Self {
                name: name.into(),
                secs: 4.0,
                warm: 0.5,
                reps: 3,
                count_secs: 1.5,
                placements: strings(&["shared", "split", "unpinned"]),
                targets: strings(&main),
                workloads: strings(&all),
                extra_targets: strings(&null),
                extra_workloads: strings(&null_w),
                entries: 10_000,
                small_files: 5000,
                data_size: 512 << 20,
            }),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Records

/// One measured point (one mount).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunRecord {
    pub placement: String,
    pub workload: String,
    pub target: String,
    pub rep: usize,
    /// A separate run with the syscall counter attached (not used for timing).
    pub counting: bool,
    pub ok: bool,
    pub unavailable: bool,
    pub error: Option<String>,
    pub ops: u64,
    pub secs: f64,
    pub ops_per_s: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub server_cpu_us_per_op: Option<f64>,
    /// Times a server thread was scheduled in, per op.
    pub server_wakeups_per_op: Option<f64>,
    pub sys_cpu_us_per_op: f64,
    pub steal_pct: f64,
    /// FUSE requests answered per op (FORGETs excluded).
    pub requests_per_op: Option<f64>,
    /// Nodes forgotten per op.
    pub forgets_per_op: Option<f64>,
    pub allocs_per_request: Option<f64>,
    pub alloc_bytes_per_request: Option<f64>,
    pub syscalls_per_request: Option<f64>,
    pub vmhwm_kb: Option<u64>,
    pub opcodes_per_op: BTreeMap<String, f64>,
    pub negotiated: Option<Negotiated>,
    pub mount: Option<String>,
    pub server_exit: Option<serde_json::Value>,
}

// ---------------------------------------------------------------------------------------
// One mount

const TMP_PREFIX: &str = "/tmp/ringfuse-bench.";

/// This run's scratch prefix: with the process id, so that a run only ever sweeps its own
/// mounts, never those of another run going on at the same time.
fn own_prefix() -> String {
    format!("{TMP_PREFIX}{}.", std::process::id())
}

/// A fresh directory with a mount on it and maybe a server; dropping it always unmounts,
/// stops the server and removes the directory.
struct Mounted {
    base: PathBuf,
    mnt: PathBuf,
    child: Option<Child>,
    lines: Option<Receiver<String>>,
}

impl Mounted {
    fn new() -> Result<Self, String> {
        let mut tmpl = format!("{}XXXXXX\0", own_prefix()).into_bytes();
        // SAFETY: `tmpl` is a writable NUL-terminated template.
        let p = unsafe { libc::mkdtemp(tmpl.as_mut_ptr().cast()) };
        if p.is_null() {
            return Err(format!("mkdtemp: {}", std::io::Error::last_os_error()));
        }
        tmpl.pop();
        let base = PathBuf::from(String::from_utf8_lossy(&tmpl).into_owned());
        let mnt = base.join("mnt");
        std::fs::create_dir(&mnt).map_err(|e| format!("mkdir {}: {e}", mnt.display()))?;
        Ok(Self {
            base,
            mnt,
            child: None,
            lines: None,
        })
    }

    /// Unmounts (waiting briefly if busy, then lazily), waits for the server's EXIT line
    /// and its exit.
    fn teardown(&mut self) -> Result<Option<serde_json::Value>, String> {
        let mut err = None;
        if sys::is_mounted(&self.mnt) {
            let mut done = false;
            for _ in 0..40 {
                match sys::umount(&self.mnt, 0) {
                    Ok(()) => {
                        done = true;
                        break;
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Err(e) => {
                        err = Some(format!("umount {}: {e}", self.mnt.display()));
                        break;
                    }
                }
            }
            if !done {
                let _ = sys::umount(&self.mnt, libc::MNT_DETACH);
                err.get_or_insert_with(|| "mount stayed busy: detached".into());
            }
        }
        let mut exit = None;
        if let Some(lines) = self.lines.take() {
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(l) => {
                        if let Some(j) = l.strip_prefix("EXIT ") {
                            exit = serde_json::from_str(j).ok();
                        }
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                    Err(RecvTimeoutError::Timeout) => {
                        err.get_or_insert_with(|| "server did not exit after unmount".into());
                        break;
                    }
                }
            }
        }
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match child.try_wait() {
                    Ok(Some(st)) => {
                        if !st.success() {
                            err.get_or_insert_with(|| format!("server exited with {st}"));
                        }
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        err.get_or_insert_with(|| "server killed: it did not exit".into());
                        break;
                    }
                }
            }
        }
        match err {
            Some(e) => Err(e),
            None => Ok(exit),
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if sys::is_mounted(&self.mnt) {
            let _ = sys::umount(&self.mnt, libc::MNT_DETACH);
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if !sys::is_mounted(&self.mnt) {
            let _ = std::fs::remove_dir_all(&self.base);
        }
    }
}

/// Detaches the mounts this run left under its prefix.
pub fn sweep() -> Vec<String> {
    let left = sys::mounts_under(&own_prefix());
    for m in &left {
        let _ = sys::umount(Path::new(m), libc::MNT_DETACH);
    }
    left
}

/// Detaches the mounts of runs that no longer exist (killed with SIGKILL, which leaves
/// no chance to clean up) and removes their directories; a live run's are left alone.
pub fn sweep_dead() -> Vec<String> {
    let own = std::process::id();
    let dead: Vec<String> = sys::mounts_under(TMP_PREFIX)
        .into_iter()
        .filter(|m| {
            let pid = m
                .strip_prefix(TMP_PREFIX)
                .and_then(|rest| rest.split('.').next())
                .and_then(|p| p.parse::<u32>().ok());
            pid.is_some_and(|p| p != own && !Path::new(&format!("/proc/{p}")).exists())
        })
        .collect();
    for m in &dead {
        let mnt = Path::new(m);
        let _ = sys::umount(mnt, libc::MNT_DETACH);
        if let Some(base) = mnt.parent() {
            if !sys::is_mounted(mnt) {
                let _ = std::fs::remove_dir_all(base);
            }
        }
    }
    dead
}

// ---------------------------------------------------------------------------------------
// Sampling

#[derive(Clone, Debug)]
struct Sample {
    t: Instant,
    counters: Option<Snapshot>,
    sched_ns: u64,
    slices: u64,
    sys: (u64, u64, u64),
    syscalls: u64,
}

struct Probe<'a> {
    pid: Option<u32>,
    mem: Option<&'a RemoteMem>,
    count_syscalls: bool,
    counter: Option<SyscallCounter>,
    a: Option<Sample>,
    b: Option<Sample>,
    err: Option<String>,
}

impl Probe<'_> {
    fn sample(&mut self) -> Sample {
        let counters = self.mem.and_then(|m| match m.read() {
            Ok(w) => Some(Snapshot::from_words(&w)),
            Err(e) => {
                self.err
                    .get_or_insert(format!("reading server counters: {e}"));
                None
            }
        });
        let (sched_ns, slices) = self.pid.map_or((0, 0), sys::schedstat);
        Sample {
            t: Instant::now(),
            counters,
            sched_ns,
            slices,
            sys: sys::system_cpu(),
            syscalls: self.counter.as_ref().map_or(0, SyscallCounter::read),
        }
    }
}

impl Window for Probe<'_> {
    fn start(&mut self) {
        if self.count_syscalls
            && let Some(pid) = self.pid
        {
            match SyscallCounter::attach(pid) {
                Ok(c) => self.counter = Some(c),
                Err(e) => self.err = Some(format!("syscall counter: {e}")),
            }
        }
        self.a = Some(self.sample());
    }
    fn stop(&mut self) {
        self.b = Some(self.sample());
    }
}

// ---------------------------------------------------------------------------------------
// Running a point

/// A reference the servers of a run must all match.
#[derive(Clone, Debug, PartialEq)]
struct Agreement {
    negotiated: Negotiated,
    mount: String,
}

pub struct Runner {
    pub profile: Profile,
    pub records: Vec<RunRecord>,
    pub fatal: Option<String>,
    references: BTreeMap<(String, String), (String, Agreement)>,
    counters_addr: u64,
    exe: PathBuf,
    done: usize,
    total: usize,
}

fn mount_summary(line: &str) -> String {
    // "id parent maj:min root mnt opts [optional...] - fstype source superopts"
    let f: Vec<&str> = line.split_whitespace().collect();
    let dash = f.iter().position(|x| *x == "-").unwrap_or(f.len());
    let opts = f.get(5).copied().unwrap_or("");
    let tail = f.get(dash + 1..).map(|t| t.join(" ")).unwrap_or_default();
    format!("{opts} | {tail}")
}

impl Runner {
    pub fn new(profile: Profile) -> Result<Self, String> {
        Ok(Self {
            profile,
            records: Vec::new(),
            fatal: None,
            references: BTreeMap::new(),
            counters_addr: 0,
            exe: std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?,
            done: 0,
            total: 0,
        })
    }

    fn layout(&self, w: &Workload) -> Layout {
        match w.kind {
            WKind::Meta(Meta::Lookup | Meta::Readdir) => Layout {
                dir_entries: self.profile.entries,
                data_size: 0,
            },
            WKind::Meta(_) => Layout::default(),
            WKind::Fio(_) => Layout {
                dir_entries: 0,
                data_size: self.profile.data_size,
            },
        }
    }

    /// Runs everything the profile asks for.
    pub fn run_all(&mut self) {
        let all_placements = placements();
        let ncpu = sys::ncpus();
        let mut plan: Vec<(Placement, &'static Workload, Vec<&'static Target>)> = Vec::new();
        for pname in &self.profile.placements {
            let Some(p) = all_placements.iter().find(|p| p.name == pname) else {
                continue;
            };
            if ncpu < 2 && p.name == "split" {
                eprintln!("skipping placement split: one CPU");
                continue;
            }
            for wname in &self.profile.workloads {
                let Some(w) = workload(wname) else { continue };
                let mut ts: Vec<&'static Target> = self
                    .profile
                    .targets
                    .iter()
                    .filter_map(|t| target(t))
                    .collect();
                if self.profile.extra_workloads.iter().any(|x| x == w.name) {
                    ts.extend(self.profile.extra_targets.iter().filter_map(|t| target(t)));
                }
                // A target named twice (in --targets and among the extras) runs once.
                let mut seen = Vec::new();
                ts.retain(|t| {
                    let first = !seen.contains(&t.name);
                    seen.push(t.name);
                    first
                });
                plan.push((p.clone(), w, ts));
            }
        }
        self.total = plan
            .iter()
            .map(|(_, _, ts)| {
                let fuse = ts.iter().filter(|t| t.kind != Kind::Tmpfs).count();
                ts.len() * self.profile.reps
                    + if self.profile.count_secs > 0.0 {
                        fuse
                    } else {
                        0
                    }
            })
            .sum();
        let mut unavailable: Vec<&'static str> = Vec::new();
        for (p, w, ts) in plan {
            for rep in 0..self.profile.reps {
                // A B C, C B A, ...: drift in the host hits every target alike.
                let order: Vec<&&Target> = if rep % 2 == 0 {
                    ts.iter().collect()
                } else {
                    ts.iter().rev().collect()
                };
                for t in order {
                    if self.stop() {
                        return;
                    }
                    if unavailable.contains(&t.name) {
                        self.skip(&p, w, t, rep, false);
                        continue;
                    }
                    let r = self.point(&p, w, t, rep, false);
                    if r.unavailable {
                        unavailable.push(t.name);
                    }
                    self.records.push(r);
                }
            }
            if self.profile.count_secs > 0.0 {
                for t in ts.iter().filter(|t| t.kind != Kind::Tmpfs) {
                    if self.stop() {
                        return;
                    }
                    if unavailable.contains(&t.name) {
                        self.skip(&p, w, t, 0, true);
                        continue;
                    }
                    let r = self.point(&p, w, t, 0, true);
                    self.records.push(r);
                }
            }
        }
    }

    fn stop(&self) -> bool {
        self.fatal.is_some() || INTERRUPTED.load(Ordering::Relaxed)
    }

    fn skip(&mut self, p: &Placement, w: &Workload, t: &Target, rep: usize, counting: bool) {
        self.done += 1;
        self.records.push(RunRecord {
            placement: p.name.into(),
            workload: w.name.into(),
            target: t.name.into(),
            rep,
            counting,
            unavailable: true,
            error: Some("unavailable".into()),
            ..RunRecord::default()
        });
    }

    fn point(
        &mut self,
        p: &Placement,
        w: &Workload,
        t: &Target,
        rep: usize,
        counting: bool,
    ) -> RunRecord {
        self.done += 1;
        let mut rec = RunRecord {
            placement: p.name.into(),
            workload: w.name.into(),
            target: t.name.into(),
            rep,
            counting,
            ..RunRecord::default()
        };
        match self.measure(p, w, t, counting, &mut rec) {
            Ok(()) => rec.ok = true,
            Err(Failure::Unavailable(why)) => {
                rec.unavailable = true;
                rec.error = Some(why);
            }
            Err(Failure::Refused(why)) => {
                rec.error = Some(why.clone());
                self.fatal = Some(why);
            }
            Err(Failure::Failed(why)) => rec.error = Some(why),
        }
        let what = if counting {
            "count".to_string()
        } else {
            format!("rep {rep}")
        };
        let line = if rec.ok {
            let mut s = format!("{:.0} ops/s, p50 {:.1} µs", rec.ops_per_s, rec.p50_us);
            if let Some(c) = rec.server_cpu_us_per_op {
                s += &format!(", {c:.2} µs server CPU/op");
            }
            if let Some(r) = rec.requests_per_op {
                s += &format!(", {r:.2} req/op");
            }
            if let Some(a) = rec.allocs_per_request {
                s += &format!(", {a:.2} allocs/req");
            }
            if let Some(sc) = rec.syscalls_per_request {
                s += &format!(", {sc:.3} syscalls/req");
            }
            s
        } else {
            format!(
                "{} {}",
                if rec.unavailable {
                    "UNAVAILABLE"
                } else {
                    "FAILED"
                },
                rec.error.as_deref().unwrap_or("")
            )
        };
        eprintln!(
            "[{}/{}] {} {} {} {what}: {line}",
            self.done, self.total, p.name, w.name, t.name
        );
        rec
    }

    fn measure(
        &mut self,
        p: &Placement,
        w: &Workload,
        t: &Target,
        counting: bool,
        rec: &mut RunRecord,
    ) -> Result<(), Failure> {
        let failed = Failure::Failed;
        let layout = self.layout(w);
        sys::set_affinity(&p.client).map_err(|e| failed(format!("client affinity: {e}")))?;
        let mut m = Mounted::new().map_err(failed)?;
        let mut pid = None;
        let mut mem = None;
        match t.kind {
            Kind::Tmpfs => {
                sys::mount_tmpfs(&m.mnt, layout.data_size + (256 << 20))
                    .map_err(|e| failed(format!("mount tmpfs: {e}")))?;
                driver::populate(&m.mnt, layout).map_err(failed)?;
            }
            Kind::Fuser { .. }
            | Kind::Ringfuse { .. }
            | Kind::Fractal { .. }
            | Kind::Libfuse { .. } => {
                let lib = match t.kind {
                    Kind::Fuser { threads, clone_fd } => Lib::Fuser { threads, clone_fd },
                    Kind::Fractal { workers } => Lib::Fractal { workers },
                    Kind::Libfuse { uring } => Lib::Libfuse { uring },
                    Kind::Ringfuse {
                        transport,
                        rif,
                        slots,
                        together,
                    } => Lib::Ringfuse {
                        transport,
                        reads_in_flight: rif,
                        slots,
                        together,
                    },
                    Kind::Tmpfs => unreachable!(),
                };
                // A loop per CPU is pinned one per CPU by design: the placement applies to
                // the client only.
                let server_cpus = match t.kind {
                    Kind::Ringfuse {
                        transport: NativePerCpu,
                        ..
                    }
                    | Kind::Fractal { workers: 0 } => Cpus::All,
                    _ => p.server.clone(),
                };
                let args = ServeArgs {
                    lib,
                    fs: t.fs,
                    cpus: server_cpus,
                    mountpoint: m.mnt.clone(),
                    ttl: Duration::from_secs(w.ttl_s),
                    layout,
                };
                let (server_pid, negotiated) = self.start_server(&mut m, &args)?;
                let line = sys::mount_line(&m.mnt)
                    .ok_or_else(|| failed("server READY but nothing mounted".into()))?;
                let mount = mount_summary(&line);
                if matches!(t.kind, Kind::Fractal { .. } | Kind::Libfuse { .. }) {
                    // fractal-fuse picks its own INIT (src/fractal.rs): its NEGOTIATED line
                    // says what differs, and the record keeps it; only the mount must agree.
                    self.agree_mount(p, w, t, &mount)?;
                } else {
                    self.agree(p, w, t, &negotiated, &mount)?;
                }
                rec.negotiated = Some(negotiated);
                rec.mount = Some(mount);
                pid = Some(server_pid);
                // Serving threads may start after READY (fuser spawns its workers in
                // `run`): answer one request and wait for them, so that the window's
                // per-thread counters see every thread.
                std::fs::metadata(&m.mnt).map_err(|e| failed(format!("stat mount: {e}")))?;
                let want = match t.kind {
                    Kind::Fuser { threads, .. } => 1 + threads,
                    Kind::Ringfuse {
                        transport: NativePerCpu,
                        ..
                    }
                    | Kind::Fractal { workers: 0 } => 1 + sys::ncpus(),
                    Kind::Fractal { workers } => 1 + workers,
                    _ => 1,
                };
                let deadline = Instant::now() + Duration::from_secs(5);
                while sys::tasks(server_pid).len() < want && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                }
                // libfuse's server has no counters (address 0).
                mem = if self.counters_addr == 0 {
                    None
                } else {
                    Some(
                        RemoteMem::open(server_pid, self.counters_addr, WORDS)
                            .map_err(|e| failed(format!("/proc/{server_pid}/mem: {e}")))?,
                    )
                };
            }
        }
        let secs = Duration::from_secs_f64(if counting {
            self.profile.count_secs
        } else {
            self.profile.secs
        });
        let warm = Duration::from_secs_f64(self.profile.warm);
        let mut probe = Probe {
            pid,
            mem: mem.as_ref(),
            count_syscalls: counting,
            counter: None,
            a: None,
            b: None,
            err: None,
        };
        let (ops, run_secs, p50_ns, p99_ns) = match w.kind {
            WKind::Meta(meta) => {
                let n = if meta == Meta::SmallFiles {
                    self.profile.small_files
                } else {
                    self.profile.entries
                };
                let o = driver::run(meta, &m.mnt, n, secs, warm, &mut probe)
                    .map_err(|e| failed(with_exit(e, &mut m)))?;
                (
                    o.ops,
                    o.secs,
                    o.hist.percentile(50.0),
                    o.hist.percentile(99.0),
                )
            }
            WKind::Fio(job) => {
                let workdir = m.base.clone();
                probe.start();
                let r = fio::run(&job, &m.mnt.join("data"), layout.data_size, secs, &workdir);
                probe.stop();
                let o = r.map_err(|e| failed(with_exit(e, &mut m)))?;
                (o.ios, o.secs, o.p50_ns, o.p99_ns)
            }
        };
        if let Some(e) = probe.err.take() {
            drop(probe);
            return Err(failed(with_exit(e, &mut m)));
        }
        rec.vmhwm_kb = pid.and_then(|p| sys::status_kb(p, "VmHWM"));
        let (Some(a), Some(b)) = (probe.a.clone(), probe.b.clone()) else {
            return Err(failed("window not sampled".into()));
        };
        drop(probe);
        let exit = m.teardown().map_err(failed)?;
        if let Some(x) = &exit
            && x["negotiated_consistent"] == serde_json::Value::Bool(false)
        {
            return Err(Failure::Refused(format!(
                "{}: the session's negotiated() differs from what the adapter announced: {} vs {:?}",
                t.name, x["negotiated_real"], rec.negotiated
            )));
        }
        if let (Some(x), Kind::Ringfuse { transport, .. }) = (&exit, t.kind) {
            let want = if transport == Classic {
                "classic"
            } else {
                "native"
            };
            if x["transport"].as_str() != Some(want) {
                return Err(Failure::Refused(format!(
                    "{}: served by the {} transport, expected {want}",
                    t.name, x["transport"]
                )));
            }
        }
        rec.server_exit = exit;
        if ops == 0 {
            return Err(failed("no operation completed".into()));
        }
        let opsf = ops as f64;
        rec.ops = ops;
        rec.secs = run_secs;
        rec.ops_per_s = if run_secs > 0.0 { opsf / run_secs } else { 0.0 };
        rec.p50_us = p50_ns as f64 / 1000.0;
        rec.p99_us = p99_ns as f64 / 1000.0;
        let tck = sys::clk_tck() as f64;
        let dbusy = b.sys.0.saturating_sub(a.sys.0) as f64;
        let dsteal = b.sys.1.saturating_sub(a.sys.1) as f64;
        let dtotal = b.sys.2.saturating_sub(a.sys.2) as f64;
        rec.sys_cpu_us_per_op = dbusy / tck * 1e6 / opsf;
        rec.steal_pct = if dtotal > 0.0 {
            100.0 * dsteal / dtotal
        } else {
            0.0
        };
        let _ = b.t.duration_since(a.t);
        if pid.is_some() {
            rec.server_cpu_us_per_op =
                Some(b.sched_ns.saturating_sub(a.sched_ns) as f64 / 1000.0 / opsf);
            rec.server_wakeups_per_op = Some(b.slices.saturating_sub(a.slices) as f64 / opsf);
            if let (Some(ca), Some(cb)) = (&a.counters, &b.counters) {
                let d = cb.since(ca);
                let replied = d.replied();
                rec.requests_per_op = Some(replied as f64 / opsf);
                rec.forgets_per_op = Some(d.forgets() as f64 / opsf);
                if replied > 0 {
                    rec.allocs_per_request = Some(d.allocs as f64 / replied as f64);
                    rec.alloc_bytes_per_request = Some(d.alloc_bytes as f64 / replied as f64);
                    if counting {
                        rec.syscalls_per_request =
                            Some(b.syscalls.saturating_sub(a.syscalls) as f64 / replied as f64);
                    }
                }
                for (op, n) in d.ops.iter().enumerate() {
                    if *n > 0 {
                        rec.opcodes_per_op.insert(opcode_name(op), *n as f64 / opsf);
                    }
                }
            }
        }
        Ok(())
    }

    fn start_server(
        &mut self,
        m: &mut Mounted,
        args: &ServeArgs,
    ) -> Result<(u32, Negotiated), Failure> {
        let failed = Failure::Failed;
        let mut child = Command::new(&self.exe)
            .args(args.to_args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| failed(format!("spawn server: {e}")))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| failed("no server stdout".into()))?;
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        m.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut negotiated = None;
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(l) => {
                    if let Some(j) = l.strip_prefix("NEGOTIATED ") {
                        negotiated = serde_json::from_str::<Negotiated>(j).ok();
                    } else if let Some(j) = l.strip_prefix("READY ") {
                        let v: serde_json::Value =
                            serde_json::from_str(j).map_err(|e| failed(format!("READY: {e}")))?;
                        let pid = v["pid"].as_u64().unwrap_or(0) as u32;
                        self.counters_addr = v["counters"].as_u64().unwrap_or(0);
                        m.lines = Some(rx);
                        let n =
                            negotiated.ok_or_else(|| failed("READY before NEGOTIATED".into()))?;
                        return Ok((pid, n));
                    } else if let Some(why) = l.strip_prefix("UNAVAILABLE ") {
                        return Err(Failure::Unavailable(why.to_string()));
                    }
                }
                Err(_) => {
                    let st = m.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
                    return Err(failed(format!(
                        "server did not become ready (exit: {st:?})"
                    )));
                }
            }
        }
    }

    /// A target that negotiates differently by design (fractal-fuse) must still be mounted
    /// the way the reference was.
    fn agree_mount(
        &mut self,
        p: &Placement,
        w: &Workload,
        t: &Target,
        mount: &str,
    ) -> Result<(), Failure> {
        let key = (p.name.to_string(), w.name.to_string());
        match self.references.get(&key) {
            Some((who, r)) if r.mount != mount => Err(Failure::Refused(format!(
                "refused: {} and {who} are mounted differently for {}: {mount} vs {}",
                t.name, w.name, r.mount
            ))),
            _ => Ok(()),
        }
    }

    /// Every FUSE server of a workload must negotiate the same thing and be mounted the
    /// same way; the first one sets the reference.
    fn agree(
        &mut self,
        p: &Placement,
        w: &Workload,
        t: &Target,
        n: &Negotiated,
        mount: &str,
    ) -> Result<(), Failure> {
        let key = (p.name.to_string(), w.name.to_string());
        let mine = Agreement {
            negotiated: n.comparable(),
            mount: mount.to_string(),
        };
        match self.references.get(&key) {
            None => {
                self.references.insert(key, (t.name.to_string(), mine));
                Ok(())
            }
            Some((who, r)) if *r == mine => {
                let _ = who;
                Ok(())
            }
            Some((who, r)) => Err(Failure::Refused(format!(
                "refused: {} and {who} differ for {}: {:?} vs {:?}",
                t.name, w.name, mine, r
            ))),
        }
    }
}

/// `e`, with what tearing the mount down says about the server (its exit status).
fn with_exit(e: String, m: &mut Mounted) -> String {
    match m.teardown() {
        Ok(exit) => format!(
            "{e} (server: {})",
            exit.map_or("no EXIT line".into(), |x| x.to_string())
        ),
        Err(t) => format!("{e} (server: {t})"),
    }
}

enum Failure {
    Unavailable(String),
    Refused(String),
    Failed(String),
}
