//! Harness shared by the mount tests that run the example servers (`memfs`, `hello`) as
//! separate processes and look at their mounts the way a user would.
//!
//! - [`serial`]: one mounting test at a time (a global lock);
//! - [`can_mount`]: root and `/dev/fuse`, or a loud failure (skipped with
//!   `RINGFUSE_SKIP_MOUNT_TESTS=1`), as in `tests/mount`;
//! - [`Scratch`]: a fresh temporary directory with a `mnt` directory in it; dropping it
//!   lazily unmounts whatever is still mounted on `mnt`;
//! - [`Server`]: an example binary serving a mount point, started and waited for until the
//!   mount answers; dropping it unmounts (lazily), then SIGTERM, then SIGKILL;
//! - [`Tmpfs`]: a tmpfs to compare with, unmounted on drop;
//! - [`within`] and [`run`]: a syscall or a command that must not hang.
//!
//! The servers are located next to the test executable (`target/<profile>/examples/`) and
//! built first with the same cargo, unless `RINGFUSE_MEMFS_BIN` / `RINGFUSE_HELLO_BIN` name
//! prebuilt binaries (for example static musl builds).
#![allow(
    dead_code,
    reason = "each test binary uses a different part of the harness"
)]

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError, mpsc};
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::mount::{MountFlags, UnmountFlags};
use rustix::process::{Pid, Signal};

/// How long a server may take to mount and answer, or to exit when asked.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a server gets after SIGTERM before SIGKILL.
pub(crate) const STOP_TIMEOUT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// Serial execution and the skip rule

static SERIAL: Mutex<()> = Mutex::new(());

/// Serializes the mounting tests: they share the mount table, the CPUs and the page cache.
pub(crate) fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether mounting tests can run here. If they cannot, says why loudly and fails the test,
/// unless `RINGFUSE_SKIP_MOUNT_TESTS=1`, in which case the test is skipped (returns false).
pub(crate) fn can_mount() -> bool {
    let why = if !rustix::process::geteuid().is_root() {
        "not running as root (mount(2) of a FUSE filesystem needs CAP_SYS_ADMIN)"
    } else if !Path::new("/dev/fuse").exists() {
        "/dev/fuse does not exist (modprobe fuse)"
    } else {
        return true;
    };
    eprintln!("\n!!!!! ringfuse mount test NOT RUN: {why} !!!!!\n");
    if std::env::var_os("RINGFUSE_SKIP_MOUNT_TESTS").as_deref() == Some(OsStr::new("1")) {
        eprintln!("(skipped because RINGFUSE_SKIP_MOUNT_TESTS=1)");
        return false;
    }
    panic!("cannot run mount tests: {why}; run as root, or set RINGFUSE_SKIP_MOUNT_TESTS=1");
}

// ---------------------------------------------------------------------------------------------
// The mount table

/// One line of `/proc/self/mountinfo` (proc(5)), the fields the tests use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountLine {
    pub(crate) mount_point: PathBuf,
    pub(crate) fstype: String,
    pub(crate) source: String,
    /// `major:minor` of the mount's device (for FUSE, minor = the connection number).
    pub(crate) dev: String,
}

pub(crate) fn mountinfo() -> Vec<MountLine> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    text.lines()
        .map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let dash = fields.iter().position(|f| *f == "-").expect("separator");
            MountLine {
                mount_point: PathBuf::from(OsStr::from_bytes(&unescape(fields[4]))),
                fstype: fields[dash + 1].to_owned(),
                source: String::from_utf8_lossy(&unescape(fields[dash + 2])).into_owned(),
                dev: fields[2].to_owned(),
            }
        })
        .collect()
}

/// Undoes mountinfo's `\ooo` octal escapes (space, tab, newline, backslash).
fn unescape(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let s = std::str::from_utf8(&b[i + 1..i + 4]).unwrap();
            out.push(u8::from_str_radix(s, 8).unwrap());
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// The mounts on `path` or below it.
pub(crate) fn mounts_under(path: &Path) -> Vec<MountLine> {
    mountinfo()
        .into_iter()
        .filter(|l| l.mount_point.starts_with(path))
        .collect()
}

/// Aborts the FUSE connections mounted on `path` (through fusectl, mounted if it is not):
/// for a test whose in-process server hung, so that its callers blocked in the kernel are
/// let go — a caller whose request the server read waits uninterruptibly, and a process
/// holding such a thread and the server's `/dev/fuse` could otherwise never exit.
pub(crate) fn abort_fuse_at(path: &Path) {
    let conns = Path::new("/sys/fs/fuse/connections");
    if !mountinfo().iter().any(|l| l.mount_point == conns) {
        let _ = rustix::mount::mount(c"fusectl", conns, c"fusectl", MountFlags::empty(), None);
    }
    for l in mountinfo()
        .iter()
        .filter(|l| l.mount_point == path && l.fstype.starts_with("fuse"))
    {
        if let Some((_, minor)) = l.dev.split_once(':') {
            let _ = std::fs::write(conns.join(minor).join("abort"), "1");
        }
    }
}

/// Lazily unmounts everything stacked on `path` (stops at the first error: EINVAL once
/// nothing is mounted there any more).
pub(crate) fn detach_all(path: &Path) {
    for _ in 0..16 {
        if rustix::mount::unmount(path, UnmountFlags::DETACH).is_err() {
            break;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Scratch directories

/// A fresh temporary directory (canonical path) holding an empty `mnt` directory, the
/// servers' logs and anything else a test needs outside the mount. Dropping it lazily
/// unmounts everything still mounted on `mnt`, then removes the directory.
pub(crate) struct Scratch {
    pub(crate) dir: PathBuf,
    pub(crate) mnt: PathBuf,
    // Dropped after `Drop::drop` has unmounted.
    _tmp: tempfile::TempDir,
}

impl Scratch {
    pub(crate) fn new() -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("ringfuse-it-")
            .tempdir()
            .expect("create a temporary directory");
        let dir = std::fs::canonicalize(tmp.path()).expect("canonicalize the temporary dir");
        let mnt = dir.join("mnt");
        std::fs::create_dir(&mnt).expect("create the mount point");
        Self {
            dir,
            mnt,
            _tmp: tmp,
        }
    }

    /// Another directory next to `mnt` (for a second mount).
    pub(crate) fn subdir(&self, name: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::create_dir_all(&p).expect("create a directory in the scratch dir");
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        detach_all(&self.mnt);
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                detach_all(&e.path());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Locating (and building) the servers

/// The example binary `name`: `$env_var` if set, else `target/<profile>/examples/<name>`
/// next to this test executable, built first (once per test process) with the cargo that
/// runs the tests, because `cargo test --test X` does not build examples.
pub(crate) fn example_bin(name: &str, env_var: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    if let Some(p) = std::env::var_os(env_var) {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "{env_var}={} is not a file", p.display());
        return p;
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test>-<hash>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable lives in target/<profile>/deps")
        .to_owned();
    if let Err(e) = BUILT.get_or_init(|| build_examples(&profile_dir)) {
        panic!("{e}");
    }
    let bin = profile_dir.join("examples").join(name);
    assert!(
        bin.is_file(),
        "{} not found: build the examples (cargo build --examples) or set {env_var}",
        bin.display()
    );
    bin
}

/// `cargo build --example memfs --example hello` into this test's target dir and profile.
/// Skipped (the binaries must then exist) when the layout is not a plain
/// `<target-dir>/<profile>` one (for example a `--target` build).
fn build_examples(profile_dir: &Path) -> Result<(), String> {
    let Some(target_dir) = profile_dir.parent() else {
        return Ok(());
    };
    if !target_dir.join("CACHEDIR.TAG").exists() {
        eprintln!(
            "note: not building the examples ({} is not a target dir)",
            target_dir.display()
        );
        return Ok(());
    }
    let profile = profile_dir
        .file_name()
        .and_then(OsStr::to_str)
        .unwrap_or("debug");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--quiet",
        "--example",
        "memfs",
        "--example",
        "hello",
    ])
    .arg("--manifest-path")
    .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
    .arg("--target-dir")
    .arg(target_dir);
    match profile {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    let out = run(&mut cmd, Duration::from_secs(600));
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "building the examples failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

pub(crate) fn memfs_bin() -> PathBuf {
    example_bin("memfs", "RINGFUSE_MEMFS_BIN")
}

pub(crate) fn hello_bin() -> PathBuf {
    example_bin("hello", "RINGFUSE_HELLO_BIN")
}

// ---------------------------------------------------------------------------------------------
// Servers

/// A server process serving `mnt`. Dropping it lazily unmounts `mnt`, then sends SIGTERM,
/// then SIGKILL after [`STOP_TIMEOUT`], and reaps it: nothing is left behind even when the
/// test fails.
pub(crate) struct Server {
    child: Child,
    pub(crate) mnt: PathBuf,
    name: String,
    stdout: PathBuf,
    stderr: PathBuf,
    status: Option<ExitStatus>,
}

impl Server {
    /// Starts `bin MNT ARGS...` and waits until the mount answers (panics with the server's
    /// stderr if it does not within [`START_TIMEOUT`]).
    pub(crate) fn start(bin: &Path, mnt: &Path, args: &[&str]) -> Self {
        let mut server = Self::spawn(bin, mnt, args);
        server.wait_ready();
        server
    }

    /// Starts `bin MNT ARGS...` without waiting for anything.
    pub(crate) fn spawn(bin: &Path, mnt: &Path, args: &[&str]) -> Self {
        let name = bin
            .file_name()
            .map_or_else(|| "server".into(), |n| n.to_string_lossy().into_owned());
        let logs = mnt.parent().expect("the mount point has a parent");
        let tag = mnt
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let stdout = logs.join(format!("{name}-{tag}.stdout"));
        let stderr = logs.join(format!("{name}-{tag}.stderr"));
        let child = Command::new(bin)
            .arg(mnt)
            .args(args)
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).expect("create the stdout log"))
            .stderr(File::create(&stderr).expect("create the stderr log"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        Self {
            child,
            mnt: mnt.to_owned(),
            name,
            stdout,
            stderr,
            status: None,
        }
    }

    pub(crate) fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).unwrap()).unwrap()
    }

    pub(crate) fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    pub(crate) fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Polls the mount table and then a stat of the mount point until the mount answers.
    fn wait_ready(&mut self) {
        let start = Instant::now();
        let parent_dev = std::fs::metadata(self.mnt.parent().unwrap()).unwrap().dev();
        loop {
            if let Some(status) = self.child.try_wait().expect("waitpid") {
                self.status = Some(status);
                panic!(
                    "{} exited ({status}) before mounting {}; stderr:\n{}",
                    self.name,
                    self.mnt.display(),
                    self.stderr()
                );
            }
            let listed = mountinfo()
                .iter()
                .any(|l| l.mount_point == self.mnt && l.fstype.starts_with("fuse"));
            if listed {
                let mnt = self.mnt.clone();
                match within_opt(START_TIMEOUT, move || std::fs::metadata(mnt)) {
                    Some(Ok(m)) if m.dev() != parent_dev => return,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => panic!(
                        "{} mounted {} but stat fails: {e}; stderr:\n{}",
                        self.name,
                        self.mnt.display(),
                        self.stderr()
                    ),
                    None => panic!(
                        "{} mounted {} but stat does not answer within {START_TIMEOUT:?}; \
                         stderr:\n{}",
                        self.name,
                        self.mnt.display(),
                        self.stderr()
                    ),
                }
            }
            assert!(
                start.elapsed() < START_TIMEOUT,
                "{} did not mount {} within {START_TIMEOUT:?}; stderr:\n{}",
                self.name,
                self.mnt.display(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub(crate) fn signal(&self, sig: Signal) {
        if self.status.is_none() {
            rustix::process::kill_process(self.pid(), sig).expect("kill");
        }
    }

    /// The exit status, if the server exits within `timeout`.
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            if self.status.is_some() {
                return self.status;
            }
            self.status = self.child.try_wait().expect("waitpid");
            if self.status.is_none() && start.elapsed() >= timeout {
                return None;
            }
            if self.status.is_none() {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// Waits for the exit and panics unless it comes within `timeout` with status 0.
    pub(crate) fn expect_clean_exit(&mut self, timeout: Duration, why: &str) {
        match self.wait_exit(timeout) {
            Some(s) if s.success() => {}
            Some(s) => panic!(
                "{} exited with {s} {why}; stderr:\n{}",
                self.name,
                self.stderr()
            ),
            None => panic!(
                "{} still running {timeout:?} {why}; stderr:\n{}",
                self.name,
                self.stderr()
            ),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        detach_all(&self.mnt);
        if self.wait_exit(Duration::ZERO).is_none() {
            let _ = rustix::process::kill_process(self.pid(), Signal::TERM);
            if self.wait_exit(STOP_TIMEOUT).is_none() {
                let _ = self.child.kill();
                self.status = self.child.wait().ok();
            }
        }
        detach_all(&self.mnt);
    }
}

// ---------------------------------------------------------------------------------------------
// tmpfs, the reference

/// A tmpfs mounted on `mnt` (root mode 0755 as memfs, `size` bytes), unmounted on drop.
pub(crate) struct Tmpfs {
    pub(crate) mnt: PathBuf,
}

impl Tmpfs {
    pub(crate) fn mount(mnt: &Path, size: &str) -> Self {
        let data = std::ffi::CString::new(format!("mode=0755,size={size}")).unwrap();
        rustix::mount::mount("tmpfs", mnt, "tmpfs", MountFlags::empty(), data.as_c_str())
            .unwrap_or_else(|e| panic!("mount -t tmpfs on {}: {e}", mnt.display()));
        Self {
            mnt: mnt.to_owned(),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        detach_all(&self.mnt);
    }
}

// ---------------------------------------------------------------------------------------------
// Things that must not hang

/// Runs `f` on another thread: `None` if it has not returned within `timeout` (it is left
/// blocked; dropping the [`Server`] kills the server, which wakes it with ENOTCONN).
pub(crate) fn within_opt<T: Send + 'static>(
    timeout: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(timeout) {
        Ok(v) => Some(v),
        Err(mpsc::RecvTimeoutError::Timeout) => None,
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the worker thread panicked"),
    }
}

/// As [`within_opt`], panicking with `what` if `f` hangs.
pub(crate) fn within<T: Send + 'static>(
    timeout: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    within_opt(timeout, f).unwrap_or_else(|| panic!("{what}: no answer within {timeout:?} (hung)"))
}

/// Runs a command to completion with piped output, in its own process group, which is
/// killed (and the test failed) if it has not finished within `timeout`.
pub(crate) fn run(cmd: &mut Command, timeout: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap()).unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    if let Ok(out) = rx.recv_timeout(timeout) {
        return out.expect("wait for the command");
    }
    let _ = rustix::process::kill_process_group(pid, Signal::KILL);
    panic!("{cmd:?} did not finish within {timeout:?} (hung)");
}

/// `sh -c script` in `dir`, with at most `timeout`.
pub(crate) fn sh(dir: &Path, script: &str, timeout: Duration) -> Output {
    run(
        Command::new("sh").arg("-c").arg(script).current_dir(dir),
        timeout,
    )
}

// ---------------------------------------------------------------------------------------------
// Small tools

/// The errno of an `std::io` error (panics if it has none).
pub(crate) fn errno(e: &std::io::Error) -> Errno {
    Errno::from_io_error(e).unwrap_or_else(|| panic!("no errno in {e}"))
}

/// `Ok(())` or the errno, of a std result.
pub(crate) fn status<T>(r: std::io::Result<T>) -> Result<(), Errno> {
    r.map(drop).map_err(|e| errno(&e))
}

/// Deterministic pseudo-random bytes (xorshift64*), different for each `seed`.
pub(crate) fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_ne_bytes());
    }
    out.truncate(len);
    out
}

/// Panics with the first differing offset unless `got == want` (without printing
/// megabytes).
pub(crate) fn assert_same_bytes(got: &[u8], want: &[u8], what: &str) {
    if got == want {
        return;
    }
    let first = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    panic!(
        "{what}: {} bytes read, {} expected; first difference at offset {first}",
        got.len(),
        want.len()
    );
}

/// Sorted names in a directory (without `.` and `..`), through `readdir(3)`.
pub(crate) fn names(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut v = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<Vec<_>>>()?;
    v.sort();
    Ok(v)
}

/// Every name in a directory, in the order `getdents64` gives them, read with a buffer of
/// `buf` bytes (small enough to need one call per entry exercises the READDIR offsets).
pub(crate) fn getdents_names(dir: &Path, buf: usize) -> Result<Vec<Vec<u8>>, Errno> {
    let fd = rustix::fs::open(
        dir,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    let mut buf = vec![std::mem::MaybeUninit::<u8>::uninit(); buf];
    let mut raw = rustix::fs::RawDir::new(&fd, &mut buf);
    let mut out = Vec::new();
    while let Some(entry) = raw.next() {
        out.push(entry?.file_name().to_bytes().to_vec());
        assert!(out.len() < 1_000_000, "the listing does not end");
    }
    Ok(out)
}
