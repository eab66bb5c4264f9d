//! Mount tests: they really mount and unmount FUSE filesystems, so they need root and
//! `/dev/fuse` (STYLE.md rule 28). Without them every mounting test fails loudly, unless
//! `RINGFUSE_SKIP_MOUNT_TESTS=1` is set, in which case they print why and pass.
//!
//! No server ever answers `FUSE_INIT` here, so any access to a live mount's contents would
//! block: the tests look at `/proc/self/mountinfo` instead, and touch a mount's root only once
//! its connection is dead (then it answers ENOTCONN at once). Tests run one at a time (a
//! global lock), each in its own fresh temporary directory whose guard lazily unmounts
//! anything still mounted there, even when the test fails.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, reason = "tests may unwrap (STYLE.md rule 31)")]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, mpsc};
use std::time::Duration;

use ringfuse::mount::{
    ACCEPTED_OPTIONS, FusermountFailure, FusermountReason, MAX_FSNAME_LEN, MAX_SUBTYPE_LEN,
    MountError, MountOptions, mount,
};
use rustix::fd::AsRawFd;
use rustix::io::Errno;
use rustix::mount::UnmountFlags;

// ---------------------------------------------------------------------------------------------
// Harness

static SERIAL: Mutex<()> = Mutex::new(());

/// Serializes the tests: they all read the one mount table.
fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether mounting tests can run here. If they cannot, says why loudly and fails the test,
/// unless `RINGFUSE_SKIP_MOUNT_TESTS=1`, in which case the test is skipped (returns false).
fn can_mount() -> bool {
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

/// A fresh temporary directory (canonical path) and a unique fsname. Dropping it lazily
/// unmounts everything still mounted on the directory, then removes it.
struct Scratch {
    path: PathBuf,
    fsname: String,
    // Dropped after `Drop::drop` has unmounted.
    _dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = tempfile::Builder::new()
            .prefix("ringfuse-mount-")
            .tempdir()
            .expect("create a temporary directory");
        let path = std::fs::canonicalize(dir.path()).expect("canonicalize the temporary dir");
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let fsname = format!("rftest-{}-{n}", std::process::id());
        Self {
            path,
            fsname,
            _dir: dir,
        }
    }

    fn options(&self) -> MountOptions {
        let mut options = MountOptions::new();
        options
            .fsname(&self.fsname)
            .unwrap()
            .subtype("rftest")
            .unwrap();
        options
    }

    /// Mountinfo lines that concern this test: on our directory or with our fsname.
    fn ours(&self) -> Vec<MountLine> {
        mountinfo()
            .into_iter()
            .filter(|l| l.mount_point.starts_with(&self.path) || l.source == self.fsname)
            .collect()
    }

    /// The one mountinfo line of a mount on our directory; panics unless there is exactly one.
    fn the_mount(&self) -> MountLine {
        let mut lines = self.ours();
        assert_eq!(lines.len(), 1, "expected exactly one mount: {lines:#?}");
        lines.pop().unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Several mounts may be stacked there; stop at EINVAL (not a mount point any more).
        for _ in 0..16 {
            if rustix::mount::unmount(&self.path, UnmountFlags::DETACH).is_err() {
                break;
            }
        }
    }
}

/// A path as the bytes every build of ringfuse accepts (`Path` needs the `std` feature).
fn bytes(path: &Path) -> &[u8] {
    path.as_os_str().as_bytes()
}

/// One line of `/proc/self/mountinfo` (proc(5)).
#[derive(Debug, Clone, PartialEq, Eq)]
struct MountLine {
    id: u64,
    dev: String,
    mount_point: PathBuf,
    mount_opts: Vec<String>,
    fstype: String,
    source: String,
    super_opts: Vec<String>,
}

fn mountinfo() -> Vec<MountLine> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    text.lines().map(parse_mountinfo_line).collect()
}

fn parse_mountinfo_line(line: &str) -> MountLine {
    let fields: Vec<&str> = line.split(' ').collect();
    let dash = fields.iter().position(|f| *f == "-").expect("separator");
    let opts = |s: &str| s.split(',').map(str::to_owned).collect::<Vec<_>>();
    MountLine {
        id: fields[0].parse().unwrap(),
        dev: fields[2].to_owned(),
        mount_point: PathBuf::from(OsStr::from_bytes(&unescape(fields[4]))),
        mount_opts: opts(fields[5]),
        fstype: fields[dash + 1].to_owned(),
        source: String::from_utf8(unescape(fields[dash + 2])).unwrap(),
        super_opts: opts(fields[dash + 3]),
    }
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

/// `stat` of `path` in another thread, so that a hanging FUSE request cannot hang the test:
/// `None` if it has not returned within 10 s.
fn stat_elsewhere(path: &Path) -> Option<std::io::Result<std::fs::Metadata>> {
    let (tx, rx) = mpsc::channel();
    let path = path.to_owned();
    std::thread::spawn(move || {
        let _ = tx.send(std::fs::metadata(path));
    });
    rx.recv_timeout(Duration::from_secs(10)).ok()
}

fn errno_of(result: std::io::Result<std::fs::Metadata>) -> Option<i32> {
    result.err().and_then(|e| e.raw_os_error())
}

// ---------------------------------------------------------------------------------------------
// Mounting for real

#[test]
fn mount_is_listed_then_unmount_removes_it() {
    let _serial = serial();
    if !can_mount() {
        return;
    }
    let scratch = Scratch::new();
    let m = mount(bytes(&scratch.path), &scratch.options()).expect("mount");

    let line = scratch.the_mount();
    assert_eq!(line.mount_point, scratch.path);
    assert_eq!(line.fstype, "fuse.rftest");
    assert_eq!(line.source, scratch.fsname);
    assert_eq!(
        line.dev,
        format!("0:{}", m.connection()),
        "connection = minor (§1.4)"
    );
    for opt in ["rw", "nosuid", "nodev", "relatime"] {
        assert!(
            line.mount_opts.iter().any(|o| o == opt),
            "{opt} in {line:?}"
        );
    }
    for opt in ["user_id=0", "group_id=0"] {
        assert!(
            line.super_opts.iter().any(|o| o == opt),
            "{opt} in {line:?}"
        );
    }
    for opt in ["default_permissions", "allow_other"] {
        assert!(
            !line.super_opts.iter().any(|o| o == opt),
            "{opt} in {line:?}"
        );
    }
    assert_eq!(m.mountpoint().to_bytes(), bytes(&scratch.path));
    assert!(
        m.fd().as_raw_fd() > 2,
        "the /dev/fuse fd stays clear of stdio"
    );
    assert!(m.is_mounted());

    m.unmount().expect("unmount");
    assert_eq!(scratch.ours(), []);
}

#[test]
fn drop_unmounts() {
    let _serial = serial();
    if !can_mount() {
        return;
    }
    let scratch = Scratch::new();
    let m = mount(bytes(&scratch.path), &scratch.options()).expect("mount");
    assert_eq!(scratch.the_mount().fstype, "fuse.rftest");
    drop(m);
    assert_eq!(scratch.ours(), []);
}

#[test]
fn kernel_options_and_flags_reach_the_kernel() {
    let _serial = serial();
    if !can_mount() {
        return;
    }
    let scratch = Scratch::new();
    let mut options = scratch.options();
    options
        .parse_opts("default_permissions,allow_other,max_read=65536,ro,noexec,noatime")
        .unwrap()
        .parse_opts("nodiratime,suid,dev,sync,dirsync")
        .unwrap();
    let m = mount(bytes(&scratch.path), &options).expect("mount");
    let line = scratch.the_mount();
    for opt in [
        "default_permissions",
        "allow_other",
        "max_read=65536",
        "ro",
        "sync",
        "dirsync",
    ] {
        assert!(
            line.super_opts.iter().any(|o| o == opt),
            "{opt} in {line:?}"
        );
    }
    for opt in ["ro", "noexec", "noatime", "nodiratime"] {
        assert!(
            line.mount_opts.iter().any(|o| o == opt),
            "{opt} in {line:?}"
        );
    }
    for opt in ["nosuid", "nodev", "rw"] {
        assert!(
            !line.mount_opts.iter().any(|o| o == opt),
            "{opt} in {line:?}"
        );
    }
    m.unmount().expect("unmount");
    assert_eq!(scratch.ours(), []);
}

#[test]
fn plain_fuse_type_without_subtype_or_fsname() {
    let _serial = serial();
    if !can_mount() {
        return;
    }
    let scratch = Scratch::new();
    let mut options = MountOptions::new();
    options.subtype("").unwrap();
    let m = mount(bytes(&scratch.path), &options).expect("mount");
    let lines: Vec<_> = mountinfo()
        .into_iter()
        .filter(|l| l.mount_point == scratch.path)
        .collect();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_eq!(lines[0].fstype, "fuse");
    assert_eq!(lines[0].source, "/dev/fuse");
    drop(m);
    assert!(!mountinfo().iter().any(|l| l.mount_point == scratch.path));
}

#[test]
fn mount_through_a_relative_symlink_records_the_canonical_path() {
    let _serial = serial();
    if !can_mount() {
        return;
    }
    let scratch = Scratch::new();
    let target = scratch.path.join("dir");
    std::fs::create_dir(&target).unwrap();
    std::os::unix::fs::symlink("dir", scratch.path.join("link")).unwrap();
    let m = mount(bytes(&scratch.path.join("link")), &scratch.options()).expect("mount");
    assert_eq!(m.mountpoint().to_bytes(), bytes(&target));
    assert_eq!(scratch.the_mount().mount_point, target);
    m.unmount().expect("unmount");
    assert_eq!(scratch.ours(), []);
}

/// With `std`, every path-like type is a mount point, and the mount point comes back as a
/// `Path`.
#[cfg(feature = "std")]
#[test]
fn path_like_arguments() {
    use std::ffi::{CString, OsString};
    let _serial = serial();
    if !can_mount() {
        return;
    }
    let scratch = Scratch::new();
    let options = scratch.options();
    let p: &Path = &scratch.path;
    let c = CString::new(bytes(p)).unwrap();
    let os: OsString = p.as_os_str().to_owned();
    let s: String = p.to_str().unwrap().to_owned();
    let once = |result: Result<ringfuse::mount::Mount, MountError>| {
        let m = result.expect("mount");
        assert_eq!(m.mountpoint_path(), p);
        m.unmount().expect("unmount");
    };
    once(mount(p, &options));
    once(mount(&scratch.path, &options));
    once(mount(os.as_os_str(), &options));
    once(mount(&os, &options));
    once(mount(s.as_str(), &options));
    once(mount(&s, &options));
    once(mount(c.as_c_str(), &options));
    assert_eq!(scratch.ours(), []);
}

#[test]
fn the_fd_carries_init_and_clones_share_its_queue() {
    let _serial = serial();
    if !can_mount() {
        return;
    }
    let scratch = Scratch::new();
    let mut options = scratch.options();
    options.nonblocking(true);
    let m = mount(bytes(&scratch.path), &options).expect("mount");

    // The kernel queued FUSE_INIT (opcode 26) during mount(2).
    let mut buf = vec![0_u8; 8192];
    let n = rustix::io::read(m.fd(), &mut buf).expect("read FUSE_INIT");
    assert!(n >= 40, "{n} bytes");
    let len = u32::from_ne_bytes(buf[0..4].try_into().unwrap());
    let opcode = u32::from_ne_bytes(buf[4..8].try_into().unwrap());
    assert_eq!((len as usize, opcode), (n, 26));
    // Non-blocking: nothing else is queued.
    assert_eq!(rustix::io::read(m.fd(), &mut buf), Err(Errno::AGAIN));

    let clone = m.clone_fd(true).expect("FUSE_DEV_IOC_CLONE");
    assert!(clone.as_raw_fd() > 2);
    assert_ne!(clone.as_raw_fd(), m.fd().as_raw_fd());
    // Attached to the same (empty) input queue: EAGAIN, not EPERM ("not attached", §1.2).
    assert_eq!(rustix::io::read(&clone, &mut buf), Err(Errno::AGAIN));
    let unattached = rustix::fs::open(
        "/dev/fuse",
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NONBLOCK,
        rustix::fs::Mode::empty(),
    )
    .unwrap();
    assert_eq!(rustix::io::read(&unattached, &mut buf), Err(Errno::PERM));

    m.unmount().expect("unmount");
    // After unmount the clone reads ENODEV: the connection is gone.
    assert_eq!(rustix::io::read(&clone, &mut buf), Err(Errno::NODEV));
    assert_eq!(scratch.ours(), []);
}

#[test]
fn closing_the_device_makes_the_mount_answer_enotconn() {
    let _serial = serial();
    if !can_mount() {
        return;
    }
    let scratch = Scratch::new();
    let m = mount(bytes(&scratch.path), &scratch.options()).expect("mount");
    let (fd, guard) = m.into_parts();
    drop(fd); // the last fd of the connection: the kernel aborts it (§1.4)
    let stat = stat_elsewhere(&scratch.path).expect("stat returns at once once aborted");
    assert_eq!(errno_of(stat), Some(libc_enotconn()));
    assert!(guard.is_mounted(), "a dead mount stays until unmounted");
    assert_eq!(scratch.ours().len(), 1);

    // A dead FUSE mount in the way is reported with its cause.
    let err = mount(bytes(&scratch.path), &scratch.options()).unwrap_err();
    assert_eq!(err, MountError::MountPointAccess(Errno::NOTCONN));
    assert!(err.to_string().contains("umount -l"), "{err}");

    drop(guard);
    assert_eq!(scratch.ours(), []);
}

#[test]
fn abort_makes_the_mount_answer_enotconn() {
    let _serial = serial();
    if !can_mount() {
        return;
    }
    let fusectl_was_mounted = mountinfo()
        .iter()
        .any(|l| l.mount_point == Path::new("/sys/fs/fuse/connections"));
    let scratch = Scratch::new();
    let m = mount(bytes(&scratch.path), &scratch.options()).expect("mount");
    let result = m.abort();
    let stat = stat_elsewhere(&scratch.path);
    let fusectl_is_mounted = mountinfo()
        .iter()
        .any(|l| l.mount_point == Path::new("/sys/fs/fuse/connections"));
    if fusectl_is_mounted && !fusectl_was_mounted {
        // We mounted it; leave the machine as we found it.
        let _ = rustix::mount::unmount("/sys/fs/fuse/connections", UnmountFlags::DETACH);
    }
    result.expect("abort");
    let stat = stat.expect("stat returns at once once aborted");
    assert_eq!(errno_of(stat), Some(libc_enotconn()));
    assert!(m.is_mounted());
    m.unmount().expect("unmount a dead mount");
    assert_eq!(scratch.ours(), []);
}

#[test]
fn someone_else_unmounting_is_noticed() {
    let _serial = serial();
    if !can_mount() {
        return;
    }
    let scratch = Scratch::new();
    let m = mount(bytes(&scratch.path), &scratch.options()).expect("mount");
    assert!(m.is_mounted());
    rustix::mount::unmount(bytes(&scratch.path), UnmountFlags::empty()).expect("external umount");
    assert!(!m.is_mounted());
    m.unmount().expect("nothing left to unmount is fine");
    assert_eq!(scratch.ours(), []);
}

#[test]
fn busy_unmount_falls_back_to_lazy() {
    let _serial = serial();
    if !can_mount() {
        return;
    }
    let scratch = Scratch::new();
    let m = mount(bytes(&scratch.path), &scratch.options()).expect("mount");
    // An O_PATH fd on the mount's root pins it (EBUSY for a plain umount) without sending
    // any FUSE request.
    let pin = rustix::fs::open(
        &scratch.path,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .unwrap();
    assert_eq!(
        rustix::mount::unmount(bytes(&scratch.path), UnmountFlags::empty()),
        Err(Errno::BUSY),
        "the pin makes a plain unmount fail"
    );
    m.unmount().expect("lazy fallback");
    assert_eq!(scratch.ours(), []);
    drop(pin);
}

#[test]
fn a_mount_covered_by_another_is_left_alone() {
    let _serial = serial();
    if !can_mount() {
        return;
    }
    let scratch = Scratch::new();
    let m = mount(bytes(&scratch.path), &scratch.options()).expect("mount");
    rustix::mount::mount(
        "rftest-cover",
        &scratch.path,
        "tmpfs",
        rustix::mount::MountFlags::empty(),
        None,
    )
    .expect("mount a tmpfs on top");
    assert!(m.is_mounted());
    let fsname = scratch.fsname.clone();
    assert_eq!(m.unmount(), Err(MountError::Unmount(Errno::BUSY)));
    let top = mountinfo()
        .into_iter()
        .rfind(|l| l.mount_point == scratch.path);
    assert_eq!(
        top.map(|l| l.fstype),
        Some("tmpfs".to_owned()),
        "the cover is still there"
    );
    // Scratch's guard unmounts both.
    drop(scratch);
    assert!(
        !mountinfo()
            .iter()
            .any(|l| l.source == "rftest-cover" || l.source == fsname)
    );
}

/// ENOTCONN without a libc dependency.
fn libc_enotconn() -> i32 {
    Errno::NOTCONN.raw_os_error()
}

// ---------------------------------------------------------------------------------------------
// Mount errors leave nothing behind

/// Runs `f` and checks that the mount table did not change for this test.
fn leaves_nothing(scratch: &Scratch, f: impl FnOnce() -> MountError) -> MountError {
    let before = scratch.ours();
    let err = f();
    assert_eq!(scratch.ours(), before);
    assert_eq!(before, []);
    err
}

#[test]
fn missing_mount_point() {
    let _serial = serial();
    if !can_mount() {
        return;
    }
    let scratch = Scratch::new();
    let err = leaves_nothing(&scratch, || {
        mount(bytes(&scratch.path.join("absent")), &scratch.options()).unwrap_err()
    });
    assert_eq!(err, MountError::MountPointNotFound);
    assert!(err.to_string().contains("mkdir"), "{err}");
}

#[test]
fn regular_file_as_mount_point() {
    let _serial = serial();
    if !can_mount() {
        return;
    }
    let scratch = Scratch::new();
    let file = scratch.path.join("file");
    std::fs::write(&file, b"x").unwrap();
    let err = leaves_nothing(&scratch, || {
        mount(bytes(&file), &scratch.options()).unwrap_err()
    });
    assert_eq!(err, MountError::NotADirectory);
    assert!(err.to_string().contains("not a directory"), "{err}");
    // A path *through* a file: ENOTDIR too.
    let err = leaves_nothing(&scratch, || {
        mount(bytes(&file.join("below")), &scratch.options()).unwrap_err()
    });
    assert_eq!(err, MountError::NotADirectory);
}

#[test]
fn bad_mount_point_paths() {
    let _serial = serial();
    if !can_mount() {
        return;
    }
    let scratch = Scratch::new();
    let options = scratch.options();
    for bad in [&b""[..], b"/tmp/a\0b", &[b'a'; 4096][..]] {
        let err = leaves_nothing(&scratch, || mount(bad, &options).unwrap_err());
        assert_eq!(err, MountError::BadMountPoint);
    }
}

#[test]
fn bad_option_string_and_overlong_fsname() {
    let _serial = serial();
    if !can_mount() {
        return;
    }
    let scratch = Scratch::new();
    let err = leaves_nothing(&scratch, || {
        let mut options = scratch.options();
        let err = options.parse_opts("allow_other,frobnicate").unwrap_err();
        assert_eq!(options, scratch.options(), "a failed parse changes nothing");
        err
    });
    assert!(matches!(err, MountError::UnknownOption(n) if n.as_str() == "frobnicate"));

    let err = leaves_nothing(&scratch, || {
        scratch
            .options()
            .fsname(&"x".repeat(MAX_FSNAME_LEN + 1))
            .unwrap_err()
    });
    assert_eq!(
        err,
        MountError::OptionTooLong {
            option: "fsname",
            max: MAX_FSNAME_LEN
        }
    );

    // The longest accepted fsname does mount, and shows whole in mountinfo.
    let long = "y".repeat(MAX_FSNAME_LEN);
    let mut options = scratch.options();
    options.fsname(&long).unwrap();
    let m = mount(bytes(&scratch.path), &options).expect("mount");
    let lines: Vec<_> = mountinfo()
        .into_iter()
        .filter(|l| l.mount_point == scratch.path)
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].source, long);
    m.unmount().unwrap();
    assert!(!mountinfo().iter().any(|l| l.mount_point == scratch.path));
}

/// Not root, and told to mount directly (`MountMethod::Direct`; the default would go through
/// fusermount3, tests/mounting): runs this same test binary as `nobody`, which must get a
/// permission error that names the fix. (The child half runs only when
/// `RINGFUSE_MOUNT_CHILD` is set.)
#[test]
fn unprivileged_mount_is_refused_with_advice() {
    if std::env::var_os("RINGFUSE_MOUNT_CHILD").is_some() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = MountOptions::new();
        options.method(ringfuse::mount::MountMethod::Direct);
        let err = mount(bytes(dir.path()), &options).unwrap_err();
        eprintln!("unprivileged mount: {err}");
        assert!(
            matches!(
                err,
                MountError::FuseDevicePermission(_) | MountError::NotRoot
            ),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("run as root") && text.contains("fusermount3"),
            "{text}"
        );
        return;
    }
    let _serial = serial();
    if !can_mount() {
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "unprivileged_mount_is_refused_with_advice",
            "--nocapture",
        ])
        .env("RINGFUSE_MOUNT_CHILD", "1")
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run the child as nobody");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "child failed: {}\n{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(stderr.contains("unprivileged mount: "), "{stderr}");
}

/// Root without `CAP_SYS_ADMIN` opens `/dev/fuse` (it owns it) but `mount(2)` answers EPERM:
/// [`MountError::NotRoot`] (with `MountMethod::Direct`: the default would ask fusermount3),
/// and the fd opened on the way is closed again.
#[test]
fn mount_without_cap_sys_admin_is_not_root() {
    let _serial = serial();
    if !can_mount() {
        return;
    }
    let scratch = Scratch::new();
    let mut options = scratch.options();
    options.method(ringfuse::mount::MountMethod::Direct);
    let path = scratch.path.clone();
    let fds_before = open_fds();
    // Capabilities belong to a thread: drop CAP_SYS_ADMIN in a thread of our own.
    let err = std::thread::spawn(move || {
        use rustix::thread::{CapabilitySet, capabilities, set_capabilities};
        let mut caps = capabilities(None).unwrap();
        caps.effective -= CapabilitySet::SYS_ADMIN;
        caps.permitted -= CapabilitySet::SYS_ADMIN;
        set_capabilities(None, caps).unwrap();
        mount(bytes(&path), &options).unwrap_err()
    })
    .join()
    .unwrap();
    assert_eq!(err, MountError::NotRoot);
    let text = err.to_string();
    assert!(
        text.contains("run as root") && text.contains("fusermount3"),
        "{text}"
    );
    assert_eq!(scratch.ours(), []);
    assert_eq!(open_fds(), fds_before, "the /dev/fuse fd was closed");
}

/// The fds of this process that point at `/dev/fuse`.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| std::fs::read_link(e.path()).is_ok_and(|t| t == Path::new("/dev/fuse")))
        .count()
}

// ---------------------------------------------------------------------------------------------
// Options (no mounting)

#[test]
fn defaults_match_libfuse() {
    let o = MountOptions::new();
    assert_eq!(o, MountOptions::default());
    assert_eq!(o.get_fsname(), "");
    // libfuse's helpers name the subtype after the program (`fuse.PROGRAM` in
    // /proc/mounts): this test binary's file name.
    let program = std::env::current_exe().unwrap();
    let program = program.file_name().unwrap().to_str().unwrap().to_owned();
    assert_eq!(o.get_subtype(), program);
    assert_eq!(o.get_max_read(), None);
    assert!(!o.is_read_only());
    assert!(!o.is_nonblocking());
    assert_eq!(
        o.to_string(),
        format!("fsname=,subtype={program},rw,relatime,nosuid,nodev,exec,async")
    );
}

/// Default options changed by `f`.
fn with(f: impl FnOnce(&mut MountOptions)) -> MountOptions {
    let mut o = MountOptions::new();
    f(&mut o);
    o
}

/// Ends a setter chain inside a closure that returns `()`.
fn drop_ref(_: &mut MountOptions) {}

#[test]
fn parse_opts_accepts_every_listed_option() {
    let parsed = |s: &str| {
        let mut o = MountOptions::new();
        o.parse_opts(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        o
    };
    let cases = [
        (
            "default_permissions",
            with(|o| drop_ref(o.default_permissions(true))),
        ),
        ("allow_other", with(|o| drop_ref(o.allow_other(true)))),
        (
            "fsname=memfs",
            with(|o| drop_ref(o.fsname("memfs").unwrap())),
        ),
        (
            "subtype=memfs",
            with(|o| drop_ref(o.subtype("memfs").unwrap())),
        ),
        ("max_read=131072", with(|o| drop_ref(o.max_read(131_072)))),
        ("ro", with(|o| drop_ref(o.read_only(true)))),
        ("ro,rw", MountOptions::new()),
        ("noatime", with(|o| drop_ref(o.noatime(true)))),
        ("noatime,atime", MountOptions::new()),
        ("noatime,relatime", MountOptions::new()),
        ("nodiratime", with(|o| drop_ref(o.nodiratime(true)))),
        ("suid", with(|o| drop_ref(o.nosuid(false)))),
        ("suid,nosuid", MountOptions::new()),
        ("dev", with(|o| drop_ref(o.nodev(false)))),
        ("dev,nodev", MountOptions::new()),
        ("noexec", with(|o| drop_ref(o.noexec(true)))),
        ("noexec,exec", MountOptions::new()),
        ("sync", with(|o| drop_ref(o.sync(true)))),
        ("sync,async", MountOptions::new()),
        ("dirsync", with(|o| drop_ref(o.dirsync(true)))),
        ("allow_root", with(|o| drop_ref(o.allow_root(true)))),
        ("auto_unmount", with(|o| drop_ref(o.auto_unmount(true)))),
        ("strictatime", with(|o| drop_ref(o.strictatime(true)))),
        ("norelatime", with(|o| drop_ref(o.strictatime(true)))),
        ("strictatime,noatime", with(|o| drop_ref(o.noatime(true)))),
        (
            "noatime,strictatime",
            with(|o| drop_ref(o.strictatime(true))),
        ),
        ("strictatime,relatime", MountOptions::new()),
        ("nodiratime,diratime", MountOptions::new()),
        // libfuse 2's nonempty (mounting over a non-empty directory is always allowed) and
        // fstab's x-* options are accepted and change nothing.
        ("nonempty", MountOptions::new()),
        ("x-gvfs-show,x-systemd.automount", MountOptions::new()),
    ];
    for (text, expected) in cases {
        assert_eq!(parsed(text), expected, "{text}");
    }
    let every = "default_permissions,allow_other,allow_root,auto_unmount,fsname=a,subtype=b,\
        max_read=1,ro,rw,noatime,atime,relatime,strictatime,norelatime,nodiratime,diratime,suid,\
        nosuid,dev,nodev,exec,noexec,sync,async,dirsync,nonempty,x-";
    for name in ACCEPTED_OPTIONS.split(", ") {
        let name = name.split(['=', ' ', '*']).next().unwrap();
        assert!(
            every.split(',').any(|o| o.split('=').next() == Some(name)),
            "{name}"
        );
    }
    parsed(every);
    // Empty entries are skipped; later options win.
    assert_eq!(parsed(",,ro,,"), with(|o| drop_ref(o.read_only(true))));
    assert_eq!(parsed("max_read=1,max_read=2").get_max_read(), Some(2));
    assert_eq!(parsed("subtype=").get_subtype(), "");
}

#[test]
fn parse_opts_errors_name_the_option() {
    let err = |s: &str| {
        let mut o = MountOptions::new();
        let before = o.clone();
        let e = o.parse_opts(s).unwrap_err();
        assert_eq!(o, before, "{s}: options changed on error");
        e
    };
    let e = err("ro,frobnicate,allow_other");
    assert!(
        matches!(e, MountError::UnknownOption(n) if n.as_str() == "frobnicate"),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(text.contains("\"frobnicate\""), "{text}");
    assert!(text.contains(ACCEPTED_OPTIONS), "{text}");
    // blkdev (fuseblk mounts) is not known; blksize= is refused with the reason.
    assert!(matches!(err("blkdev"), MountError::UnknownOption(n) if n.as_str() == "blkdev"));
    let e = err("blksize=4096");
    assert!(matches!(e, MountError::Unsupported(_)), "{e:?}");
    assert!(e.to_string().contains("fuseblk"), "{e}");
    for bad in [
        "ro=1",
        "allow_other=",
        "fsname",
        "max_read",
        "max_read=lots",
        "max_read=-1",
    ] {
        let name = bad.split('=').next().unwrap();
        let e = err(bad);
        assert!(
            matches!(e, MountError::BadOptionValue(n) if n.as_str() == name),
            "{bad}: {e:?}"
        );
        assert!(e.to_string().contains(name));
    }
    let long = format!("fsname={}", "f".repeat(MAX_FSNAME_LEN + 1));
    assert_eq!(
        err(&long),
        MountError::OptionTooLong {
            option: "fsname",
            max: MAX_FSNAME_LEN
        }
    );
    let long = format!("subtype={}", "s".repeat(MAX_SUBTYPE_LEN + 1));
    assert_eq!(
        err(&long),
        MountError::OptionTooLong {
            option: "subtype",
            max: MAX_SUBTYPE_LEN
        }
    );
    assert!(err(&long).to_string().contains("longer than 63 bytes"));
    assert!(matches!(err("fsname=a\0b"), MountError::BadOptionValue(_)));
    // A very long unknown name is cut in the error, not rejected.
    let e = err(&"z".repeat(100));
    assert!(
        e.to_string().contains(&format!("\"{}…\"", "z".repeat(32))),
        "{e}"
    );
}

#[test]
fn parse_opts_escapes_and_display_round_trip() {
    let mut o = MountOptions::new();
    o.parse_opts(r"fsname=a\,b\\c,allow_other").unwrap();
    assert_eq!(o.get_fsname(), r"a,b\c");
    let mut full = MountOptions::new();
    full.fsname(r"x,y\z")
        .unwrap()
        .subtype("")
        .unwrap()
        .default_permissions(true)
        .allow_other(true)
        .max_read(4096)
        .read_only(true)
        .noatime(true)
        .nodiratime(true)
        .nosuid(false)
        .nodev(false)
        .noexec(true)
        .sync(true)
        .dirsync(true)
        .allow_root(true)
        .auto_unmount(true);
    let mut strict = MountOptions::new();
    strict.strictatime(true);
    for options in [MountOptions::new(), o, full, strict] {
        let text = options.to_string();
        let mut back = MountOptions::new();
        back.parse_opts(&text).unwrap();
        assert_eq!(back, options, "{text}");
    }
}

#[test]
fn name_setters_check_length_and_nul() {
    let mut o = MountOptions::new();
    assert!(o.fsname(&"a".repeat(MAX_FSNAME_LEN)).is_ok());
    assert!(o.subtype(&"b".repeat(MAX_SUBTYPE_LEN)).is_ok());
    assert_eq!(
        o.subtype(&"b".repeat(MAX_SUBTYPE_LEN + 1)).unwrap_err(),
        MountError::OptionTooLong {
            option: "subtype",
            max: MAX_SUBTYPE_LEN
        }
    );
    assert!(
        matches!(o.fsname("a\0"), Err(MountError::BadOptionValue(n)) if n.as_str() == "fsname")
    );
    // Setters take names verbatim: no escapes.
    o.fsname(r"a\,b").unwrap();
    assert_eq!(o.get_fsname(), r"a\,b");
}

fn fusermount(reason: FusermountReason) -> MountError {
    MountError::Fusermount(FusermountFailure {
        reason,
        status: Some(1),
        message: ringfuse::mount::Text::new(),
    })
}

#[test]
fn every_error_names_cause_and_fix() {
    let cases = [
        (MountError::NotRoot, "run as root"),
        (MountError::NotRoot, "fusermount3"),
        (MountError::NoFuseDevice, "modprobe fuse"),
        (
            MountError::FuseDevicePermission(Errno::ACCESS),
            "run as root",
        ),
        (MountError::OpenFuseDevice(Errno::IO), "/dev/fuse"),
        (MountError::MountPointNotFound, "does not exist"),
        (MountError::NotADirectory, "not a directory"),
        (MountError::BadMountPoint, "4095 bytes"),
        (MountError::MountPointAccess(Errno::ACCESS), "permissions"),
        (MountError::Mount(Errno::NODEV), "modprobe fuse"),
        (MountError::Mount(Errno::INVAL), "options"),
        (MountError::Unmount(Errno::BUSY), "mounted on top"),
        (MountError::Clone(Errno::INVAL), "FUSE_DEV_IOC_CLONE"),
        (MountError::Abort(Errno::NOENT), "fusectl"),
        (MountError::Mount(Errno::NOSPC), "/proc/sys/fs/mount-max"),
        (MountError::NoFusermount, "apt-get install fuse3"),
        (MountError::Spawn(Errno::NOMEM), "fusermount3"),
        (
            fusermount(FusermountReason::AllowOtherNotAllowed),
            "echo user_allow_other",
        ),
        (
            fusermount(FusermountReason::MountPointNotOwned),
            "mkdir ~/mnt",
        ),
        (fusermount(FusermountReason::MountLimit), "mount_max"),
        (
            fusermount(FusermountReason::DeviceAccess),
            "chmod 0666 /dev/fuse",
        ),
        (fusermount(FusermountReason::NoDevice), "modprobe fuse"),
    ];
    for (err, needle) in cases {
        let text = err.to_string();
        assert!(text.contains(needle), "{err:?}: {text}");
        assert!(text.contains('('), "{err:?} gives no fix: {text}");
        #[cfg(feature = "std")]
        {
            let io: std::io::Error = err.into();
            assert_eq!(io.raw_os_error(), None);
            assert_eq!(io.kind(), std::io::Error::from(err.errno()).kind());
        }
    }
    assert_eq!(MountError::NotRoot.errno(), Errno::PERM);
    assert_eq!(MountError::Mount(Errno::BUSY).errno(), Errno::BUSY);
}
