//! The transports (issue 4): which one serves, proof that native requests come through the
//! ring, the kernel switch off, and faults with requests in flight on the native transport.
//!
//! The servers are the `memfs` example in its modes (`--transport`, `--per-cpu`). The
//! kernel switch `/sys/module/fuse/parameters/enable_uring` is turned on for the native
//! tests (and off, then restored, for the fallback test); a kernel without it makes the
//! native tests fail loudly, unless `RINGFUSE_SKIP_MOUNT_TESTS=1`.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, reason = "tests may unwrap (STYLE.md rule 31)")]

#[path = "../common/mod.rs"]
mod common;

use std::fs;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Scratch, Server, can_mount, errno, memfs_bin, mounts_under, serial, within};
use rustix::io::Errno;
use rustix::process::Signal;

const SWITCH: &str = "/sys/module/fuse/parameters/enable_uring";
const T: Duration = Duration::from_secs(10);

/// Sets the kernel switch for the life of the guard, restoring the previous value.
struct Switch {
    old: String,
}

impl Switch {
    /// `None` (after saying why loudly, and failing unless skipping is allowed) if this
    /// kernel has no FUSE-over-io_uring.
    fn set(on: bool) -> Option<Self> {
        let Ok(old) = fs::read_to_string(SWITCH) else {
            eprintln!("\n!!!!! {SWITCH} missing: this kernel has no FUSE-over-io_uring !!!!!\n");
            assert!(
                std::env::var_os("RINGFUSE_SKIP_MOUNT_TESTS").is_some_and(|v| v == "1"),
                "no FUSE-over-io_uring on this kernel (needs Linux 6.14+ with CONFIG_FUSE_IO_URING)"
            );
            return None;
        };
        fs::write(SWITCH, if on { "Y" } else { "N" }).unwrap();
        Some(Self {
            old: old.trim().to_owned(),
        })
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        let _ = fs::write(SWITCH, &self.old);
    }
}

/// memfs's exit summary: (requests through /dev/fuse, through io_uring entries, transport).
fn summary(server: &Server) -> (u64, u64, String) {
    let out = server.stdout();
    let line = out
        .lines()
        .find(|l| l.starts_with("memfs: served"))
        .unwrap_or_else(|| panic!("no summary line in memfs's output:\n{out}"));
    let num_before = |marker: &str| -> u64 {
        let end = line
            .find(marker)
            .unwrap_or_else(|| panic!("{marker:?} not in {line:?}"));
        let digits: String = line[..end]
            .chars()
            .rev()
            .skip_while(|c| *c == ' ')
            .take_while(char::is_ascii_digit)
            .collect();
        digits.chars().rev().collect::<String>().parse().unwrap()
    };
    let dev = num_before(" through /dev/fuse");
    let uring = num_before(" through io_uring entries");
    let transport = line
        .split("over the ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .unwrap_or_default()
        .to_owned();
    (dev, uring, transport)
}

/// Some work a user would do: a file written and read back, a directory listed.
fn work(mnt: &Path) {
    let f = mnt.join("f");
    fs::write(&f, b"hello through the ring").unwrap();
    assert_eq!(fs::read(&f).unwrap(), b"hello through the ring");
    fs::create_dir(mnt.join("d")).unwrap();
    for i in 0..20u8 {
        fs::write(mnt.join(format!("d/{i}")), [i; 100]).unwrap();
    }
    assert_eq!(fs::read_dir(mnt.join("d")).unwrap().count(), 20);
}

/// Runs `work` on memfs with `args`, stops it with SIGTERM, and returns its summary.
fn serve_and_count(args: &[&str]) -> (u64, u64, String) {
    let scratch = Scratch::new();
    let mut server = Server::start(&memfs_bin(), &scratch.mnt, args);
    work(&scratch.mnt);
    server.signal(Signal::TERM);
    server.expect_clean_exit(T, "after SIGTERM");
    assert!(
        mounts_under(&scratch.mnt).is_empty(),
        "still mounted after SIGTERM"
    );
    summary(&server)
}

#[test]
fn native_requests_arrive_through_the_ring() {
    let _serial = serial();
    if !can_mount() {
        return;
    }
    let Some(_switch) = Switch::set(true) else {
        return;
    };
    for args in [
        &["--transport", "native"][..],
        &["--transport", "native", "--per-cpu"],
    ] {
        let (dev, uring, transport) = serve_and_count(args);
        assert_eq!(transport, "Native", "{args:?}");
        // INIT (and FORGETs) use /dev/fuse; every filesystem request of `work` (well over 40:
        // lookups, creates, writes, reads, readdir...) came through the ring's entries.
        assert!(
            uring >= 40,
            "{args:?}: only {uring} requests through io_uring entries"
        );
        assert!(dev >= 1, "{args:?}: INIT comes through /dev/fuse");
        assert!(
            uring > 5 * dev,
            "{args:?}: {uring} ring vs {dev} device requests"
        );
    }
}

#[test]
fn classic_never_uses_the_ring() {
    let _serial = serial();
    if !can_mount() {
        return;
    }
    let Some(_switch) = Switch::set(true) else {
        return;
    };
    for args in [
        &["--transport", "classic"][..],
        &["--transport", "classic", "--per-cpu"],
    ] {
        let (dev, uring, transport) = serve_and_count(args);
        assert_eq!((uring, transport.as_str()), (0, "Classic"), "{args:?}");
        assert!(dev >= 40, "{args:?}: {dev} requests");
    }
}

/// A client on the loop's CPU, one request at a time, makes the classic loop send its
/// replies ahead of the next READ (so the READ finds the client's next request instead of
/// arming a poll), and nothing is lost on the way: every file is created, read back and
/// removed. memfs's loop runs on its main thread; both it and this thread are pinned to the
/// first CPU this test may use.
#[test]
fn replies_go_first_when_the_client_shares_the_cpu() {
    use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};
    let _serial = serial();
    if !can_mount() {
        return;
    }
    let scratch = Scratch::new();
    let mut server = Server::start(&memfs_bin(), &scratch.mnt, &["--transport", "classic"]);
    let allowed = sched_getaffinity(None).unwrap();
    let cpu = (0..CpuSet::MAX_CPU).find(|&c| allowed.is_set(c)).unwrap();
    let mut one = CpuSet::new();
    one.set(cpu);
    sched_setaffinity(Some(server.pid()), &one).unwrap();
    let mnt = scratch.mnt.clone();
    let result = within(T, "2000 rounds on one CPU", move || {
        sched_setaffinity(None, &one).unwrap();
        for i in 0..2000u32 {
            let f = mnt.join(format!("f{i}"));
            fs::write(&f, i.to_string()).unwrap();
            assert_eq!(fs::read_to_string(&f).unwrap(), i.to_string());
            fs::remove_file(&f).unwrap();
        }
        fs::read_dir(&mnt).unwrap().count()
    });
    assert_eq!(result, 0, "files left behind");
    server.signal(Signal::TERM);
    server.expect_clean_exit(T, "after SIGTERM");
    let out = server.stdout();
    let line = out
        .lines()
        .find(|l| l.contains("io_uring_enter calls"))
        .unwrap_or_else(|| panic!("no enter count in memfs's output:\n{out}"));
    let numbers: Vec<u64> = line.split(' ').filter_map(|w| w.parse().ok()).collect();
    let [enters, first] = numbers[..] else {
        panic!("unexpected line {line:?}");
    };
    eprintln!("{line}");
    assert!(
        first > 1000 && first < enters,
        "{first} of {enters} enters sent replies first, for 2000 create-write-read-unlink rounds"
    );
}

#[test]
fn switch_off_auto_falls_back_and_native_fails_clearly() {
    let _serial = serial();
    if !can_mount() {
        return;
    }
    let Some(_switch) = Switch::set(false) else {
        return;
    };
    // Auto: works, over /dev/fuse.
    let (dev, uring, transport) = serve_and_count(&["--transport", "auto"]);
    assert_eq!((uring, transport.as_str()), (0, "Classic"));
    assert!(dev >= 40);
    // Native: refuses to start, says how to turn the switch on, mounts nothing.
    let scratch = Scratch::new();
    let mut server = Server::spawn(&memfs_bin(), &scratch.mnt, &["--transport", "native"]);
    let status = server
        .wait_exit(T)
        .expect("memfs --transport native did not exit");
    assert!(!status.success());
    let err = server.stderr();
    assert!(
        err.contains("echo Y > /sys/module/fuse/parameters/enable_uring"),
        "the error must give the command that turns the switch on; got:\n{err}"
    );
    assert!(mounts_under(&scratch.mnt).is_empty());
}

/// Threads reading and writing files on `mnt` in a loop until a call fails; each returns
/// the errno that stopped it.
fn busy_callers(
    mnt: &Path,
    n: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<Errno>> {
    (0..n)
        .map(|k| {
            let path: PathBuf = mnt.join(format!("busy{k}"));
            let stop = Arc::clone(stop);
            std::thread::spawn(move || {
                let chunk = vec![k as u8; 64 * 1024];
                loop {
                    let r = (|| -> std::io::Result<()> {
                        let mut f = fs::OpenOptions::new()
                            .create(true)
                            .write(true)
                            .truncate(true)
                            .open(&path)?;
                        f.write_all(&chunk)?;
                        drop(f);
                        let mut back = Vec::new();
                        fs::File::open(&path)?.read_to_end(&mut back)?;
                        Ok(())
                    })();
                    if let Err(e) = r {
                        return errno(&e);
                    }
                    if stop.load(Ordering::Relaxed) {
                        return Errno::INTR;
                    }
                }
            })
        })
        .collect()
}

/// Every thread of this process is out of uninterruptible sleep (no caller left in D).
fn no_task_in_d_state() -> bool {
    fs::read_dir("/proc/self/task").unwrap().flatten().all(|t| {
        let stat = fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        // The state follows the parenthesized command name.
        stat.rsplit(')')
            .next()
            .and_then(|s| s.split_whitespace().next())
            != Some("D")
    })
}

fn kill9_with_requests_in_flight(args: &[&str]) {
    let scratch = Scratch::new();
    let mut server = Server::start(&memfs_bin(), &scratch.mnt, args);
    let stop = Arc::new(AtomicBool::new(false));
    let callers = busy_callers(&scratch.mnt, 4, &stop);
    std::thread::sleep(Duration::from_millis(300));
    server.signal(Signal::KILL);
    let _ = server.wait_exit(T);
    // Every caller fails and none hangs: ENOTCONN once the connection is gone; a request
    // that was in flight gets ECONNABORTED (/dev/fuse) or, in a native entry whose ring the
    // dying server's exit cancelled, ECANCELED (observed on 6.18).
    let errs = within(T, "callers after kill -9", move || {
        callers
            .into_iter()
            .map(|c| c.join().unwrap())
            .collect::<Vec<_>>()
    });
    for e in &errs {
        assert!(
            matches!(
                *e,
                Errno::NOTCONN | Errno::CONNABORTED | Errno::CANCELED | Errno::IO
            ),
            "{args:?}: a caller failed with {e:?}"
        );
    }
    assert!(
        no_task_in_d_state(),
        "{args:?}: a thread is left in D state"
    );
    // Anything that must reach the server now fails fast with ENOTCONN (a stat of the root
    // may still be answered from the attribute cache).
    let mnt = scratch.mnt.clone();
    let e = within(T, "lookup on a dead mount", move || {
        fs::metadata(mnt.join("never-looked-up"))
            .map(|_| ())
            .map_err(|e| errno(&e))
    });
    assert_eq!(e, Err(Errno::NOTCONN), "{args:?}");
    // The dead mount unmounts, and the next mount on the same directory works.
    drop(server);
    assert!(mounts_under(&scratch.mnt).is_empty());
    let server = Server::start(&memfs_bin(), &scratch.mnt, args);
    work(&scratch.mnt);
    drop(server);
}

#[test]
fn kill9_native_with_requests_in_flight() {
    let _serial = serial();
    if !can_mount() {
        return;
    }
    let Some(_switch) = Switch::set(true) else {
        return;
    };
    kill9_with_requests_in_flight(&["--transport", "native"]);
    kill9_with_requests_in_flight(&["--transport", "native", "--per-cpu"]);
}

fn unmount_with_requests_in_flight(args: &[&str]) {
    let scratch = Scratch::new();
    let mut server = Server::start(&memfs_bin(), &scratch.mnt, args);
    let stop = Arc::new(AtomicBool::new(false));
    let callers = busy_callers(&scratch.mnt, 4, &stop);
    std::thread::sleep(Duration::from_millis(300));
    rustix::mount::unmount(scratch.mnt.as_path(), rustix::mount::UnmountFlags::DETACH).unwrap();
    // The callers keep their open files on the detached mount until they stop; the server
    // serves them, then exits on its own once the connection is gone.
    stop.store(true, Ordering::Relaxed);
    let errs = within(T, "callers after umount -l", move || {
        callers
            .into_iter()
            .map(|c| c.join().unwrap())
            .collect::<Vec<_>>()
    });
    for e in &errs {
        // Stopped by the flag, or their path vanished with the detach.
        assert!(
            matches!(*e, Errno::INTR | Errno::NOENT | Errno::NOTCONN),
            "{args:?}: {e:?}"
        );
    }
    server.expect_clean_exit(T, "after umount -l with requests in flight");
    assert!(mounts_under(&scratch.mnt).is_empty());
    assert!(no_task_in_d_state());
}

#[test]
fn unmount_native_with_requests_in_flight() {
    let _serial = serial();
    if !can_mount() {
        return;
    }
    let Some(_switch) = Switch::set(true) else {
        return;
    };
    unmount_with_requests_in_flight(&["--transport", "native"]);
    unmount_with_requests_in_flight(&["--transport", "native", "--per-cpu"]);
}
