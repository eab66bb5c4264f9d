//! Linux plumbing: CPU affinity, /proc readers, mounts, the syscall counter.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// A set of CPUs, or none for "all".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cpus {
    All,
    List(Vec<usize>),
}

impl Cpus {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s == "all" {
            return Ok(Cpus::All);
        }
        s.split(',')
            .map(|c| {
                c.trim()
                    .parse::<usize>()
                    .map_err(|_| format!("bad CPU list {s:?}"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Cpus::List)
    }

    pub fn arg(&self) -> String {
        match self {
            Cpus::All => "all".into(),
            Cpus::List(l) => l.iter().map(usize::to_string).collect::<Vec<_>>().join(","),
        }
    }
}

/// Online CPUs (from sysconf).
pub fn ncpus() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).unwrap_or(1).max(1)
}

/// Pins the calling thread (and the threads it creates afterwards) to `cpus`.
pub fn set_affinity(cpus: &Cpus) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let list: Vec<usize> = match cpus {
        Cpus::All => (0..ncpus()).collect(),
        Cpus::List(l) => l.clone(),
    };
    for c in list {
        // SAFETY: CPU_SET writes inside `set` for c < CPU_SETSIZE.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The thread ids of a process.
pub fn tasks(pid: u32) -> Vec<u32> {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// CPU time (ns) and times scheduled in, summed over every thread of `pid`
/// (`/proc/PID/task/*/schedstat`: ns on CPU, ns waiting, timeslices).
pub fn schedstat(pid: u32) -> (u64, u64) {
    let mut ns = 0;
    let mut slices = 0;
    for tid in tasks(pid) {
        if let Ok(s) = fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat")) {
            let mut it = s.split_whitespace();
            ns += it.next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            let _wait = it.next();
            slices += it.next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    (ns, slices)
}

/// A field of `/proc/PID/status` in kB (VmHWM, VmRSS).
pub fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Whole-system CPU from `/proc/stat`: (busy, steal, total) in clock ticks.
pub fn system_cpu() -> (u64, u64, u64) {
    let Ok(s) = fs::read_to_string("/proc/stat") else {
        return (0, 0, 0);
    };
    let Some(line) = s.lines().next() else {
        return (0, 0, 0);
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let get = |i: usize| v.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal
    let busy = get(0) + get(1) + get(2) + get(5) + get(6);
    let steal = get(7);
    let total = busy + get(3) + get(4) + steal;
    (busy, steal, total)
}

/// Clock ticks per second for `/proc/stat`.
pub fn clk_tck() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(n).unwrap_or(100).max(1)
}

/// Reads `words` u64 of another process's memory at `addr` (root: `/proc/PID/mem`).
pub struct RemoteMem {
    file: fs::File,
    addr: u64,
    words: usize,
}

impl RemoteMem {
    pub fn open(pid: u32, addr: u64, words: usize) -> io::Result<Self> {
        Ok(Self {
            file: fs::File::open(format!("/proc/{pid}/mem"))?,
            addr,
            words,
        })
    }

    pub fn read(&self) -> io::Result<Vec<u64>> {
        let mut buf = vec![0u8; self.words * 8];
        self.file.read_exact_at(&mut buf, self.addr)?;
        Ok(buf
            .chunks_exact(8)
            .map(|c| u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect())
    }
}

/// Whether `dir` is a mount point in this mount namespace (from /proc/self/mountinfo).
pub fn is_mounted(dir: &Path) -> bool {
    mount_line(dir).is_some()
}

/// The `/proc/self/mountinfo` line of the mount at `dir`, if any.
pub fn mount_line(dir: &Path) -> Option<String> {
    let want = dir.to_str()?;
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines()
        .find(|l| l.split_whitespace().nth(4).map(unescape_mount) == Some(want.to_string()))
        .map(str::to_string)
}

fn unescape_mount(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Mount points under `prefix` (ours, left by a crash).
pub fn mounts_under(prefix: &str) -> Vec<String> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(unescape_mount))
        .filter(|m| m.starts_with(prefix))
        .collect()
}

/// `umount2(dir, flags)`.
pub fn umount(dir: &Path, flags: i32) -> io::Result<()> {
    let c = CString::new(dir.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: `c` is a valid NUL-terminated path.
    let rc = unsafe { libc::umount2(c.as_ptr(), flags) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Mounts a fresh tmpfs at `dir`.
pub fn mount_tmpfs(dir: &Path, size: u64) -> io::Result<()> {
    let src = CString::new("tmpfs").map_err(io::Error::other)?;
    let target = CString::new(dir.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let data = CString::new(format!("size={size},mode=755")).map_err(io::Error::other)?;
    // SAFETY: every pointer is a valid NUL-terminated string for the call's duration.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            src.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            data.as_ptr().cast(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Counts `raw_syscalls:sys_enter` of each thread of a process with perf_event_open
/// (tracefs must be mounted; the tracepoint makes every syscall slower, so this is used
/// only in separate counting runs, never in timed ones).
pub struct SyscallCounter {
    fds: Vec<std::os::fd::OwnedFd>,
}

/// `struct perf_event_attr` up to `config2` (PERF_ATTR_SIZE_VER1 = 72 bytes).
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    type_: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
    config2: u64,
}

const PERF_TYPE_TRACEPOINT: u32 = 2;

fn tracepoint_id() -> io::Result<u64> {
    for base in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
        if let Ok(s) = fs::read_to_string(format!("{base}/events/raw_syscalls/sys_enter/id")) {
            return s.trim().parse().map_err(io::Error::other);
        }
    }
    Err(io::Error::other(
        "raw_syscalls:sys_enter not found: mount tracefs (mount -t tracefs nodev /sys/kernel/tracing)",
    ))
}

impl SyscallCounter {
    /// Starts counting for every thread `pid` has now.
    pub fn attach(pid: u32) -> io::Result<Self> {
        use std::os::fd::FromRawFd;
        let id = tracepoint_id()?;
        let mut fds = Vec::new();
        for tid in tasks(pid) {
            let attr = PerfEventAttr {
                type_: PERF_TYPE_TRACEPOINT,
                size: std::mem::size_of::<PerfEventAttr>() as u32,
                config: id,
                ..PerfEventAttr::default()
            };
            // SAFETY: `attr` is a valid perf_event_attr of the size it declares; the
            // result is a new fd or -1.
            let fd = unsafe {
                libc::syscall(
                    libc::SYS_perf_event_open,
                    &attr as *const PerfEventAttr,
                    tid as libc::pid_t,
                    -1 as libc::c_int,
                    -1 as libc::c_int,
                    8 as libc::c_ulong, // PERF_FLAG_FD_CLOEXEC
                )
            };
            if fd < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::ESRCH) {
                    continue; // the thread ended meanwhile
                }
                return Err(e);
            }
            // SAFETY: `fd` is a new descriptor that nothing else owns.
            fds.push(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) });
        }
        Ok(Self { fds })
    }

    /// Syscalls counted so far, all threads.
    pub fn read(&self) -> u64 {
        use std::os::fd::AsRawFd;
        let mut total = 0;
        for fd in &self.fds {
            let mut v = 0u64;
            // SAFETY: reads 8 bytes into `v`.
            let n = unsafe { libc::read(fd.as_raw_fd(), (&raw mut v).cast(), 8) };
            if n == 8 {
                total += v;
            }
        }
        total
    }
}

/// The first line of a command's output, or None if it cannot run.
pub fn command_line(cmd: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(cmd).args(args).output().ok()?;
    let s = String::from_utf8_lossy(&out.stdout);
    s.lines().next().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpus() {
        assert_eq!(Cpus::parse("all").unwrap(), Cpus::All);
        assert_eq!(Cpus::parse("0,1").unwrap(), Cpus::List(vec![0, 1]));
        assert!(Cpus::parse("x").is_err());
        assert_eq!(Cpus::List(vec![1]).arg(), "1");
    }

    #[test]
    fn own_process() {
        let pid = std::process::id();
        assert!(schedstat(pid).0 > 0);
        assert!(status_kb(pid, "VmHWM").unwrap() > 0);
        let (_, _, total) = system_cpu();
        assert!(total > 0);
    }
}
