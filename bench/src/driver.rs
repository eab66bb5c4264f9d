//! The metadata workloads, driven with raw syscalls from the orchestrator's (pinned)
//! thread, each operation timed into a preallocated log-linear histogram.

use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::core::{Layout, dir_entry_name, number_name};

/// Set by SIGINT/SIGTERM: loops stop at the next operation.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Latency histogram: exact below 64 ns, then 32 sub-buckets per power of two (~3%).
#[derive(Clone, Debug)]
pub struct Hist {
    buckets: Vec<u64>,
    count: u64,
    max: u64,
}

const SUB: u32 = 5;

impl Default for Hist {
    fn default() -> Self {
        Self {
            buckets: vec![0; 64 + 58 * 32],
            count: 0,
            max: 0,
        }
    }
}

impl Hist {
    fn index(v: u64) -> usize {
        if v < 64 {
            return v as usize;
        }
        let e = 63 - v.leading_zeros();
        64 + ((e - 6) * 32) as usize + ((v >> (e - SUB)) & 31) as usize
    }

    fn value(i: usize) -> u64 {
        if i < 64 {
            return i as u64;
        }
        let e = (i - 64) / 32 + 6;
        let sub = ((i - 64) % 32) as u64;
        let lo = (32 + sub) << (e - SUB as usize);
        lo + (1 << (e - SUB as usize)) / 2
    }

    pub fn record(&mut self, ns: u64) {
        let i = Self::index(ns).min(self.buckets.len() - 1);
        self.buckets[i] += 1;
        self.count += 1;
        self.max = self.max.max(ns);
    }

    /// The value at percentile `p` (0..100), in ns.
    pub fn percentile(&self, p: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((p / 100.0) * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Self::value(i).min(self.max);
            }
        }
        self.max
    }
}

/// The edges of the measured window; the orchestrator samples its counters there.
pub trait Window {
    fn start(&mut self);
    fn stop(&mut self);
}

/// What a driver run measured.
#[derive(Debug, Default)]
pub struct Outcome {
    pub ops: u64,
    pub secs: f64,
    pub hist: Hist,
}

/// The metadata workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Meta {
    /// `statx(fd, "", AT_EMPTY_PATH | AT_STATX_FORCE_SYNC)` on an open fd of `/file`.
    Getattr,
    /// `statx(AT_FDCWD, "<mnt>/file", 0)`, entries and attributes with TTL 0.
    PathStat,
    /// `statx` of each of the N names of `/d` once, then of N missing names, on a fresh
    /// mount (cold dcache).
    Lookup,
    /// `openat(O_CREAT|O_EXCL|O_WRONLY)` + `close` + `unlinkat` of a new name in `/w`.
    Create,
    /// `open` + `getdents64` (32 KiB buffer) to the end + `close` of `/d` (N entries).
    Readdir,
    /// N files in `/w`: create + write 4 KiB + close each, then open + read + close each,
    /// then unlink each; every step is one operation.
    SmallFiles,
}

fn cstr(p: &Path) -> Result<CString, String> {
    CString::new(p.as_os_str().as_bytes()).map_err(|e| e.to_string())
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn os_err(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

fn open_at(dirfd: i32, name: &CStr, flags: i32, mode: u32) -> Result<i32, String> {
    // SAFETY: `name` is NUL-terminated.
    let fd = unsafe { libc::openat(dirfd, name.as_ptr(), flags | libc::O_CLOEXEC, mode) };
    if fd < 0 {
        Err(os_err(&format!("open {name:?}")))
    } else {
        Ok(fd)
    }
}

fn close(fd: i32) {
    // SAFETY: closes a descriptor this module opened.
    unsafe { libc::close(fd) };
}

fn statx(dirfd: i32, name: &CStr, flags: i32) -> i32 {
    // SAFETY: statx fills the zeroed buffer; `name` is NUL-terminated.
    unsafe {
        let mut sx: libc::statx = std::mem::zeroed();
        if libc::statx(
            dirfd,
            name.as_ptr(),
            flags,
            libc::STATX_BASIC_STATS,
            &mut sx,
        ) == 0
        {
            0
        } else {
            errno()
        }
    }
}

fn name_buf(prefix: u8, i: u64, buf: &mut [u8; 24]) -> &CStr {
    let mut b = [0u8; 16];
    let n = number_name(prefix, i, &mut b);
    buf[..n.len()].copy_from_slice(n);
    buf[n.len()] = 0;
    CStr::from_bytes_until_nul(&buf[..]).unwrap_or_default()
}

/// Runs `op` for `warm`, then for `secs` inside the window, timing each call.
fn timed(
    secs: Duration,
    warm: Duration,
    w: &mut dyn Window,
    mut op: impl FnMut(u64) -> Result<(), String>,
) -> Result<Outcome, String> {
    let mut i = 0u64;
    let warm_end = Instant::now() + warm;
    while Instant::now() < warm_end {
        op(i)?;
        i += 1;
    }
    let mut out = Outcome::default();
    w.start();
    let t0 = Instant::now();
    let end = t0 + secs;
    let mut last = t0;
    loop {
        if INTERRUPTED.load(Ordering::Relaxed) {
            w.stop();
            return Err("interrupted".into());
        }
        op(i)?;
        i += 1;
        let t = Instant::now();
        out.hist.record((t - last).as_nanos() as u64);
        out.ops += 1;
        last = t;
        if t >= end {
            break;
        }
    }
    w.stop();
    out.secs = (last - t0).as_secs_f64();
    Ok(out)
}

/// Runs each of `n` steps once inside the window.
fn each(
    n: u64,
    w: &mut dyn Window,
    out: &mut Outcome,
    mut op: impl FnMut(u64) -> Result<(), String>,
) -> Result<(), String> {
    let t0 = Instant::now();
    let mut last = t0;
    for i in 0..n {
        if INTERRUPTED.load(Ordering::Relaxed) {
            return Err("interrupted".into());
        }
        op(i)?;
        let t = Instant::now();
        out.hist.record((t - last).as_nanos() as u64);
        out.ops += 1;
        last = t;
    }
    let _ = w;
    out.secs += (last - t0).as_secs_f64();
    Ok(())
}

/// Runs `meta` on the filesystem mounted at `root`.
pub fn run(
    meta: Meta,
    root: &Path,
    entries: u32,
    secs: Duration,
    warm: Duration,
    w: &mut dyn Window,
) -> Result<Outcome, String> {
    let root_c = cstr(root)?;
    match meta {
        Meta::Getattr => {
            let file = cstr(&root.join("file"))?;
            let fd = open_at(libc::AT_FDCWD, &file, libc::O_RDONLY, 0)?;
            let empty = c"";
            let r = timed(secs, warm, w, |_| {
                match statx(fd, empty, libc::AT_EMPTY_PATH | libc::AT_STATX_FORCE_SYNC) {
                    0 => Ok(()),
                    e => Err(format!("statx(fd): errno {e}")),
                }
            });
            close(fd);
            r
        }
        Meta::PathStat => {
            let file = cstr(&root.join("file"))?;
            timed(secs, warm, w, |_| match statx(libc::AT_FDCWD, &file, 0) {
                0 => Ok(()),
                e => Err(format!("statx(path): errno {e}")),
            })
        }
        Meta::Lookup => {
            let dirfd = open_at(
                libc::AT_FDCWD,
                &cstr(&root.join("d"))?,
                libc::O_RDONLY | libc::O_DIRECTORY,
                0,
            )?;
            let mut names = Vec::with_capacity(entries as usize * 2);
            let mut b = [0u8; 16];
            for i in 0..entries {
                names.push(CString::new(dir_entry_name(i, &mut b)).map_err(|e| e.to_string())?);
            }
            for i in 0..entries {
                names.push(
                    CString::new(number_name(b'm', u64::from(i), &mut b))
                        .map_err(|e| e.to_string())?,
                );
            }
            let mut out = Outcome::default();
            w.start();
            let r = each(names.len() as u64, w, &mut out, |i| {
                let hit = i < u64::from(entries);
                match (
                    statx(dirfd, &names[i as usize], libc::AT_SYMLINK_NOFOLLOW),
                    hit,
                ) {
                    (0, true) | (libc::ENOENT, false) => Ok(()),
                    (e, _) => Err(format!("statx {:?}: errno {e}", names[i as usize])),
                }
            });
            w.stop();
            close(dirfd);
            r.map(|()| out)
        }
        Meta::Create => {
            let dirfd = open_at(
                libc::AT_FDCWD,
                &cstr(&root.join("w"))?,
                libc::O_RDONLY | libc::O_DIRECTORY,
                0,
            )?;
            let r = timed(secs, warm, w, |i| {
                let mut b = [0u8; 24];
                let name = name_buf(b'c', i, &mut b);
                let fd = open_at(
                    dirfd,
                    name,
                    libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY,
                    0o644,
                )?;
                close(fd);
                // SAFETY: `name` is NUL-terminated.
                if unsafe { libc::unlinkat(dirfd, name.as_ptr(), 0) } != 0 {
                    return Err(os_err("unlink"));
                }
                Ok(())
            });
            close(dirfd);
            r
        }
        Meta::Readdir => {
            let d = cstr(&root.join("d"))?;
            let mut buf = vec![0u8; 32 * 1024];
            // The N entries; `.` and `..` are not counted (libfuse's memfs_ll lists neither).
            let want = u64::from(entries);
            timed(secs, warm, w, |_| {
                let fd = open_at(libc::AT_FDCWD, &d, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
                let mut seen = 0u64;
                loop {
                    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
                    let n = unsafe {
                        libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len())
                    };
                    if n < 0 {
                        let e = os_err("getdents64");
                        close(fd);
                        return Err(e);
                    }
                    if n == 0 {
                        break;
                    }
                    let mut off = 0usize;
                    while off + 19 <= n as usize {
                        let reclen = u16::from_ne_bytes([buf[off + 16], buf[off + 17]]) as usize;
                        let name = &buf[off + 19..(off + reclen).min(n as usize)];
                        let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
                        if name != b"." && name != b".." {
                            seen += 1;
                        }
                        off += reclen.max(1);
                    }
                }
                close(fd);
                if seen == want {
                    Ok(())
                } else {
                    Err(format!("readdir listed {seen} entries, expected {want}"))
                }
            })
        }
        Meta::SmallFiles => {
            let dirfd = open_at(
                libc::AT_FDCWD,
                &cstr(&root.join("w"))?,
                libc::O_RDONLY | libc::O_DIRECTORY,
                0,
            )?;
            let data = vec![0x42u8; 4096];
            let mut rbuf = vec![0u8; 8192];
            let n = u64::from(entries);
            let mut out = Outcome::default();
            w.start();
            let r = each(n, w, &mut out, |i| {
                let mut b = [0u8; 24];
                let name = name_buf(b's', i, &mut b);
                let fd = open_at(
                    dirfd,
                    name,
                    libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY,
                    0o644,
                )?;
                // SAFETY: writes from a live 4 KiB buffer.
                let k = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
                close(fd);
                if k == 4096 {
                    Ok(())
                } else {
                    Err(os_err("write"))
                }
            })
            .and_then(|()| {
                each(n, w, &mut out, |i| {
                    let mut b = [0u8; 24];
                    let name = name_buf(b's', i, &mut b);
                    let fd = open_at(dirfd, name, libc::O_RDONLY, 0)?;
                    // SAFETY: reads into a live buffer of the length passed.
                    let k = unsafe { libc::read(fd, rbuf.as_mut_ptr().cast(), rbuf.len()) };
                    close(fd);
                    if k == 4096 {
                        Ok(())
                    } else {
                        Err(format!("read back {k} bytes"))
                    }
                })
            })
            .and_then(|()| {
                each(n, w, &mut out, |i| {
                    let mut b = [0u8; 24];
                    let name = name_buf(b's', i, &mut b);
                    // SAFETY: `name` is NUL-terminated.
                    if unsafe { libc::unlinkat(dirfd, name.as_ptr(), 0) } == 0 {
                        Ok(())
                    } else {
                        Err(os_err("unlink"))
                    }
                })
            });
            w.stop();
            close(dirfd);
            let _ = root_c;
            r.map(|()| out)
        }
    }
}

/// Creates the servers' layout in a plain directory (the tmpfs target).
pub fn populate(root: &Path, layout: Layout) -> Result<(), String> {
    use std::io::Write as _;
    let io = |what: &str, e: std::io::Error| format!("populate {what}: {e}");
    std::fs::File::create(root.join("file")).map_err(|e| io("file", e))?;
    std::fs::create_dir(root.join("w")).map_err(|e| io("w", e))?;
    std::fs::create_dir(root.join("d")).map_err(|e| io("d", e))?;
    let mut b = [0u8; 16];
    for i in 0..layout.dir_entries {
        let name = std::ffi::OsStr::from_bytes(dir_entry_name(i, &mut b));
        std::fs::File::create(root.join("d").join(name)).map_err(|e| io("d/f", e))?;
    }
    if layout.data_size > 0 {
        let mut f = std::fs::File::create(root.join("data")).map_err(|e| io("data", e))?;
        let chunk = vec![0x5au8; 1 << 20];
        let mut left = layout.data_size;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            f.write_all(&chunk[..n]).map_err(|e| io("data", e))?;
            left -= n as u64;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram() {
        let mut h = Hist::default();
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        let p50 = h.percentile(50.0) as f64;
        let p99 = h.percentile(99.0) as f64;
        assert!((p50 / 500_000.0 - 1.0).abs() < 0.04, "{p50}");
        assert!((p99 / 990_000.0 - 1.0).abs() < 0.04, "{p99}");
        assert_eq!(Hist::default().percentile(50.0), 0);
        let mut one = Hist::default();
        one.record(5);
        assert_eq!(one.percentile(99.0), 5);
    }

    #[test]
    fn names() {
        let mut b = [0u8; 24];
        assert_eq!(name_buf(b'c', 42, &mut b).to_bytes(), b"c000042");
    }

    struct Nop;
    impl Window for Nop {
        fn start(&mut self) {}
        fn stop(&mut self) {}
    }

    #[test]
    fn workloads_on_a_plain_directory() {
        let dir = std::env::temp_dir().join(format!("ringfuse-bench-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        populate(
            &dir,
            Layout {
                dir_entries: 50,
                data_size: 3 << 20,
            },
        )
        .unwrap();
        let short = Duration::from_millis(20);
        for m in [
            Meta::Getattr,
            Meta::PathStat,
            Meta::Lookup,
            Meta::Create,
            Meta::Readdir,
            Meta::SmallFiles,
        ] {
            let o = run(m, &dir, 50, short, Duration::ZERO, &mut Nop).unwrap();
            assert!(o.ops > 0, "{m:?}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
