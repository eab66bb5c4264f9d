//! The `memfs` example, mounted for real and used as a user would: shell tools compared with
//! tmpfs, every errno memfs can return, the regression traps of DESIGN.md ("Rules the seed
//! project learned the hard way"), big directories and files, xattrs, signals, a killed
//! server and an unmount with requests in flight.
//!
//! Needs root and `/dev/fuse` (see `tests/common`); runs serially. The server is the
//! `memfs` example binary, run as a separate process (`RINGFUSE_MEMFS_BIN` overrides it).
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, reason = "tests may unwrap (STYLE.md rule 31)")]
#![allow(
    clippy::too_many_lines,
    reason = "a test reads best as one scripted story"
)]

#[path = "../common/mod.rs"]
mod common;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{
    Scratch, Server, Tmpfs, assert_same_bytes, can_mount, getdents_names, memfs_bin, mounts_under,
    random_bytes, serial, sh, within,
};
use rustix::fs::{Advice, FallocateFlags, Mode, OFlags, RenameFlags, SeekFrom, XattrFlags};
use rustix::io::Errno;
use rustix::process::Signal;

/// Longest a single step (a command, a syscall, a loop) may take before it counts as hung.
const T: Duration = Duration::from_secs(30);
/// `max_write` memfs negotiates by default (`Config::default()`).
const MAX_WRITE: usize = 128 * 1024;

/// memfs on `mnt`, in the mode `$RINGFUSE_MEMFS_TRANSPORT` names if it is set: `auto`,
/// `classic` or `native` (`--transport X`), each optionally with `-percpu` (`--per-cpu`);
/// else the default, `auto`: FUSE-over-io_uring when the kernel offers it.
fn memfs(mnt: &Path, args: &[&str]) -> Server {
    let mut all: Vec<&str> = Vec::new();
    let mode = std::env::var("RINGFUSE_MEMFS_TRANSPORT").unwrap_or_default();
    let (transport, per_cpu) = match mode.strip_suffix("-percpu") {
        Some(t) => (t, true),
        None => (mode.as_str(), false),
    };
    if !transport.is_empty() {
        all.extend(["--transport", transport]);
    }
    if per_cpu {
        all.push("--per-cpu");
    }
    all.extend_from_slice(args);
    Server::start(&memfs_bin(), mnt, &all)
}

/// The two transports, for the tests of a server's life and death that run with each.
#[derive(Clone, Copy, Debug)]
enum Transport {
    Classic,
    Native,
}

impl Transport {
    /// memfs on `mnt` with this transport, or `None` (said loudly) if the kernel does not
    /// offer FUSE-over-io_uring: `/sys/module/fuse/parameters/enable_uring` is not Y. (The
    /// tests do not change that switch themselves: it is global, and off by default.)
    fn memfs(self, mnt: &Path) -> Option<Server> {
        let name = match self {
            Self::Classic => "classic",
            Self::Native => {
                let on = fs::read_to_string("/sys/module/fuse/parameters/enable_uring")
                    .is_ok_and(|v| v.trim() == "Y");
                if !on {
                    eprintln!(
                        "\n!!!!! native transport test NOT RUN: kernel FUSE-over-io_uring is \
                         off (echo Y > /sys/module/fuse/parameters/enable_uring) !!!!!\n"
                    );
                    return None;
                }
                "native"
            }
        };
        Some(Server::start(&memfs_bin(), mnt, &["--transport", name]))
    }
}

/// Drops the page cache of `path`, so that the next read asks the server.
fn drop_cache(path: &Path) {
    let f = fs::File::open(path).unwrap();
    rustix::fs::fadvise(&f, 0, None, Advice::DontNeed).unwrap();
}

// ---------------------------------------------------------------------------------------------
// 1. Shell tools, compared with tmpfs

/// Steps a user would type, run one `sh -c` each in the filesystem's root. Their exit
/// statuses, outputs and error messages must be the same on memfs and tmpfs.
const SHELL_STEPS: &[&str] = &[
    "touch empty",
    "echo hello > greeting && printf 'line1\\nline2\\n' >> greeting && cat greeting",
    "cat nothing",
    "mkdir dir && mkdir -p dir/a/b/c",
    "mkdir dir",
    "mkdir greeting/x",
    "mkdir -p dir/a/b/c",
    "ls",
    "ls -1 dir dir/a",
    "ls nothing",
    "ls -d greeting/x",
    "seq 1 20000 > numbers && wc -c numbers && tail -n 1 numbers",
    "echo data > dir/a/file && cat dir/a/file",
    "echo x > dir",
    "cat dir",
    "rm dir",
    "rm -d dir",
    "rmdir dir",
    "rmdir nothing",
    "rmdir greeting",
    "mv greeting dir/a/moved",
    "mv nothing x",
    "mv dir dir/a/b",
    "mv dir/a/moved dir/a/b/c/ && mv dir/a/b/c/moved dir/a/moved",
    "ln dir/a/moved hard",
    "ln dir/a hardlink-to-dir",
    "ln -s dir/a/moved soft && ln -s nowhere dangling",
    "ln -s x hard",
    "cat soft",
    "cat dangling",
    "readlink soft dangling",
    "stat -c '%n|%F|%s|%a|%h|%u|%g' empty hard soft dangling dir dir/a dir/a/moved numbers",
    "stat -L -c '%n|%F|%s|%h' soft",
    "chmod 640 empty && chmod u+x,g+s hard && chmod 1777 dir/a/b",
    "chmod 644 nothing",
    "stat -c '%n|%a|%A' empty hard dir/a/moved dir/a/b",
    "truncate -s 100000 empty && truncate -s 5 hard && stat -c '%n|%s' empty hard dir/a/moved",
    "cat hard; echo; od -An -c -N 4 empty",
    "truncate -c -s 0 nothing; echo $?; ls nothing",
    "truncate -s 10 dir",
    // cp -a sets each mode through a `system.posix_acl_access` xattr; a filesystem without
    // ACLs must refuse it (EOPNOTSUPP) for cp to fall back to chmod.
    "cp -a dir copy && diff -r dir copy && echo same",
    "cp numbers dir/a/b/c/numbers2 && cmp numbers dir/a/b/c/numbers2 && echo same",
    "find . | sort",
    "find . -type f -printf '%P %s %m %n\\n' | sort",
    "find . -type l -printf '%P -> %l\\n' | sort",
    "find . -name 'c*' -type d | sort",
    "find . -empty | sort",
    // Apparent sizes (-b): directories count 20 bytes per entry plus 40 on both. `-l`
    // counts every hard link: otherwise du counts a file under the name it meets first,
    // and the order of entries in a directory is the filesystem's own.
    "du -abl . | sort -k2",
    "du -sb .",
    "tar cf archive.tar dir copy hard soft numbers && tar tf archive.tar | sort",
    "mkdir untar && tar xf archive.tar -C untar && diff -r dir untar/dir && cmp numbers \
     untar/numbers && ls -l --time-style=+ untar",
    "tar xf nothing.tar",
    "rm -r copy untar archive.tar && ls",
    "mv soft dir/ && ls -l --time-style=+ dir",
    "rm hard dangling nothing",
    "rm -r dir/a/b && ls -R",
    "ls -lAR --time-style=+ .",
    "ls -ls empty numbers",
    "du -akl . | sort -k2",
];

/// What a step showed: status, stdout, stderr, with the root's path replaced by `$ROOT`.
fn run_steps(root: &Path) -> Vec<String> {
    let root_text = root.to_str().unwrap();
    SHELL_STEPS
        .iter()
        .map(|step| {
            let out = sh(root, step, T);
            let norm = |b: &[u8]| String::from_utf8_lossy(b).replace(root_text, "$ROOT");
            format!(
                "$ {step}\n[{}]\n{}stderr: {}",
                out.status,
                norm(&out.stdout),
                norm(&out.stderr)
            )
        })
        .collect()
}

/// A line per entry below `root` (sorted): what a user can compare between two
/// filesystems. Deliberately left out, because they legitimately differ between two
/// filesystems: inode numbers and `st_dev` (identity, not content), `st_blocks` and
/// `st_blksize` (allocation details; `ls -s` and `du -k` in the steps compare blocks where
/// it matters), and every time stamp (the two runs happen at different moments).
fn snapshot(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let mut entries: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let t = m.file_type();
            let mut line = format!(
                "{rel} mode={:o} nlink={} uid={} gid={} size={}",
                m.mode(),
                m.nlink(),
                m.uid(),
                m.gid(),
                m.size()
            );
            if t.is_symlink() {
                let _ = write!(line, " -> {}", fs::read_link(&p).unwrap().display());
            } else if t.is_file() {
                let data = fs::read(&p).unwrap();
                let _ = write!(line, " fnv={:016x}", fnv(&data));
            } else if t.is_dir() {
                out.push(line);
                walk(root, &p, out);
                continue;
            }
            out.push(line);
        }
    }
    let mut out = Vec::new();
    let m = fs::metadata(root).unwrap();
    out.push(format!(
        ". mode={:o} nlink={} size={}",
        m.mode(),
        m.nlink(),
        m.size()
    ));
    walk(root, root, &mut out);
    out
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[test]
fn shell_tools_behave_as_on_tmpfs() {
    let _serial = serial();
    if !can_mount() {
        return;
    }
    let scratch = Scratch::new();
    let tmp_mnt = scratch.subdir("tmpfs");
    let _server = memfs(&scratch.mnt, &[]);
    let _tmpfs = Tmpfs::mount(&tmp_mnt, "64m");

    let memfs_steps = run_steps(&scratch.mnt);
    let tmpfs_steps = run_steps(&tmp_mnt);
    let mut report = String::new();
    for (m, t) in memfs_steps.iter().zip(&tmpfs_steps) {
        if m != t {
            let _ = write!(report, "\n--- memfs:\n{m}\n--- tmpfs:\n{t}\n");
        }
    }
    assert!(report.is_empty(), "steps that differ:{report}");
    // The steps really ran (a broken shell would make both sides fail alike).
    assert!(
        memfs_steps[1].contains("hello\nline1\nline2\n"),
        "{}",
        memfs_steps[1]
    );
    assert!(memfs_steps[4].contains("File exists"), "{}", memfs_steps[4]);
    assert_eq!(snapshot(&scratch.mnt), snapshot(&tmp_mnt));
}

// ---------------------------------------------------------------------------------------------
// 2a. Listings with and without READDIRPLUS

/// 300 entries: files of different sizes, directories, symlinks.
fn populate(root: &Path, n: usize) {
    for i in 0..n {
        let p = root.join(format!("entry-{i:04}"));
        match i % 3 {
            0 => fs::write(&p, vec![b'x'; i]).unwrap(),
            1 => fs::create_dir(&p).unwrap(),
            _ => std::os::unix::fs::symlink(format!("target-{i}"), &p).unwrap(),
        }
    }
}

#[test]
fn ls_same_with_and_without_readdirplus() {
    const N: usize = 300;
    let _serial = serial();
    if !can_mount() {
        return;
    }
    let scratch = Scratch::new();
    let plain_mnt = scratch.subdir("plain");
    let mut plus = memfs(&scratch.mnt, &[]);
    let mut plain = memfs(&plain_mnt, &["--no-readdirplus"]);
    populate(&scratch.mnt, N);
    populate(&plain_mnt, N);

    // Both mount roots have the same parent, so even `..` lists alike.
    let commands = [
        "ls",
        "ls -f",
        "ls -la --time-style=+",
        "ls -lR --time-style=+ | head -c 100000",
        "find . -printf '%y %p %s %m %n\\n' | sort",
    ];
    for cmd in commands {
        let a = sh(&scratch.mnt, cmd, T);
        let b = sh(&plain_mnt, cmd, T);
        for (what, out) in [("readdirplus", &a), ("no readdirplus", &b)] {
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{cmd} ({what}): {out:?}");
            assert!(stderr.is_empty(), "{cmd} ({what}): {stderr}");
        }
        assert_eq!(
            String::from_utf8_lossy(&a.stdout),
            String::from_utf8_lossy(&b.stdout),
            "{cmd}: readdirplus on (left) and off (right) differ"
        );
    }
    let want: Vec<String> = (0..N).map(|i| format!("entry-{i:04}")).collect();
    for mnt in [&scratch.mnt, &plain_mnt] {
        assert_eq!(common::names(mnt).unwrap(), want);
        let mnt2 = mnt.clone();
        // One entry per getdents64 call: every call resumes at a READDIR(PLUS) offset.
        let mut tiny = within(T, "getdents64", move || getdents_names(&mnt2, 48)).unwrap();
        tiny.sort();
        let mut want_raw: Vec<Vec<u8>> = want.iter().map(|n| n.clone().into_bytes()).collect();
        want_raw.extend([b".".to_vec(), b"..".to_vec()]);
        want_raw.sort();
        assert_eq!(tiny, want_raw, "{}", mnt.display());
    }

    // The switch really changes what memfs negotiated (it says so when it stops).
    for (server, want) in [
        (&mut plus, "readdirplus on"),
        (&mut plain, "readdirplus off"),
    ] {
        rustix::mount::unmount(&server.mnt, rustix::mount::UnmountFlags::empty()).unwrap();
        server.expect_clean_exit(T, "after umount");
        assert!(server.stdout().contains(want), "{}", server.stdout());
    }
}

// ---------------------------------------------------------------------------------------------
// 2b. Every errno memfs can return reaches the caller intact

/// One provoked error: what was done, the errno POSIX (and tmpfs) give, what happened.
type Case = (&'static str, Errno, Result<(), Errno>);

fn ok<T>(r: rustix::io::Result<T>) -> Result<(), Errno> {
    r.map(drop)
}

/// Provokes, under `root`, every error memfs can answer (and a few the kernel answers for
/// it). Not here: EXDEV (memfs never answers it: the VFS refuses a rename across mounts
/// before any request) and EFBIG (the kernel checks `s_maxbytes` before memfs could). Runs as root except the EACCES/EPERM cases, which run in a thread whose
/// credentials are those of `nobody` (Linux credentials are per thread).
fn errno_cases(root: &Path) -> Vec<Case> {
    use rustix::fs::{
        fallocate, getxattr, link, listxattr, mkdir, open, readlink, removexattr, rename,
        renameat_with, rmdir, seek, setxattr, stat, symlink, unlink,
    };
    let p = |s: &str| root.join(s);
    let rw = OFlags::RDWR | OFlags::CLOEXEC;
    let dir_mode = Mode::from_raw_mode(0o755);
    let long = "n".repeat(256);

    // The scene: d/sub (so d is not empty), an empty e, a file f with an xattr, l -> f,
    // secret (0600) and private/ (0700) owned by root.
    mkdir(p("d"), dir_mode).unwrap();
    mkdir(p("d/sub"), dir_mode).unwrap();
    mkdir(p("e"), dir_mode).unwrap();
    mkdir(p("private"), Mode::from_raw_mode(0o700)).unwrap();
    fs::write(p("f"), b"0123456789").unwrap();
    fs::write(p("secret"), b"s").unwrap();
    fs::set_permissions(p("secret"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(p("f"), fs::Permissions::from_mode(0o644)).unwrap();
    symlink("f", p("l")).unwrap();
    setxattr(p("f"), "user.small", b"0123456789", XattrFlags::empty()).unwrap();
    let f = open(p("f"), rw, Mode::empty()).unwrap();

    let mut c: Vec<Case> = vec![
        ("stat missing", Errno::NOENT, ok(stat(p("missing")))),
        (
            "open missing",
            Errno::NOENT,
            ok(open(p("missing"), rw, Mode::empty())),
        ),
        ("unlink missing", Errno::NOENT, ok(unlink(p("missing")))),
        ("rmdir missing", Errno::NOENT, ok(rmdir(p("missing")))),
        (
            "rename missing",
            Errno::NOENT,
            ok(rename(p("missing"), p("x"))),
        ),
        (
            "mkdir d/missing/x",
            Errno::NOENT,
            ok(mkdir(p("d/missing/x"), dir_mode)),
        ),
        (
            "readlink missing",
            Errno::NOENT,
            ok(readlink(p("missing"), Vec::new())),
        ),
        (
            "exchange with missing",
            Errno::NOENT,
            ok(renameat_with(
                rustix::fs::CWD,
                p("e"),
                rustix::fs::CWD,
                p("missing"),
                RenameFlags::EXCHANGE,
            )),
        ),
        ("mkdir existing", Errno::EXIST, ok(mkdir(p("d"), dir_mode))),
        (
            "open O_CREAT|O_EXCL existing",
            Errno::EXIST,
            ok(open(
                p("f"),
                rw | OFlags::CREATE | OFlags::EXCL,
                Mode::from_raw_mode(0o644),
            )),
        ),
        (
            "symlink over existing",
            Errno::EXIST,
            ok(symlink("t", p("f"))),
        ),
        ("link over existing", Errno::EXIST, ok(link(p("f"), p("l")))),
        (
            "rename NOREPLACE over existing",
            Errno::EXIST,
            ok(renameat_with(
                rustix::fs::CWD,
                p("e"),
                rustix::fs::CWD,
                p("d"),
                RenameFlags::NOREPLACE,
            )),
        ),
        (
            "setxattr CREATE existing",
            Errno::EXIST,
            ok(setxattr(p("f"), "user.small", b"v", XattrFlags::CREATE)),
        ),
        (
            "mkdir under a file",
            Errno::NOTDIR,
            ok(mkdir(p("f/x"), dir_mode)),
        ),
        ("stat under a file", Errno::NOTDIR, ok(stat(p("f/x")))),
        ("rmdir a file", Errno::NOTDIR, ok(rmdir(p("f")))),
        (
            "rename dir over file",
            Errno::NOTDIR,
            ok(rename(p("e"), p("f"))),
        ),
        (
            "open O_DIRECTORY a file",
            Errno::NOTDIR,
            ok(open(
                p("f"),
                OFlags::RDONLY | OFlags::DIRECTORY,
                Mode::empty(),
            )),
        ),
        (
            "open a dir for writing",
            Errno::ISDIR,
            ok(open(p("d"), rw, Mode::empty())),
        ),
        ("unlink a dir", Errno::ISDIR, ok(unlink(p("d")))),
        (
            "rename file over dir",
            Errno::ISDIR,
            ok(rename(p("f"), p("e"))),
        ),
        (
            "read a dir",
            Errno::ISDIR,
            open(p("d"), OFlags::RDONLY, Mode::empty())
                .and_then(|fd| rustix::io::read(&fd, &mut [0_u8; 16]))
                .map(drop),
        ),
        ("rmdir non-empty", Errno::NOTEMPTY, ok(rmdir(p("d")))),
        (
            "rename over non-empty dir",
            Errno::NOTEMPTY,
            ok(rename(p("e"), p("d"))),
        ),
        (
            "rename dir into itself",
            Errno::INVAL,
            ok(rename(p("d"), p("d/sub/x"))),
        ),
        (
            "readlink a file",
            Errno::INVAL,
            ok(readlink(p("f"), Vec::new())),
        ),
        (
            "fallocate length 0",
            Errno::INVAL,
            fallocate(&f, FallocateFlags::empty(), 0, 0),
        ),
        (
            "mkdir 256-byte name",
            Errno::NAMETOOLONG,
            ok(mkdir(p(&long), dir_mode)),
        ),
        ("stat 256-byte name", Errno::NAMETOOLONG, ok(stat(p(&long)))),
        (
            "create 256-byte name",
            Errno::NAMETOOLONG,
            ok(open(
                p(&long),
                rw | OFlags::CREATE,
                Mode::from_raw_mode(0o644),
            )),
        ),
        (
            "symlink 256-byte name",
            Errno::NAMETOOLONG,
            ok(symlink("t", p(&long))),
        ),
        (
            "rename to 256-byte name",
            Errno::NAMETOOLONG,
            ok(rename(p("e"), p(&long))),
        ),
        (
            "getxattr missing",
            Errno::NODATA,
            ok(getxattr(p("f"), "user.missing", &mut [0_u8; 64][..])),
        ),
        (
            "removexattr missing",
            Errno::NODATA,
            removexattr(p("f"), "user.missing"),
        ),
        (
            "setxattr REPLACE missing",
            Errno::NODATA,
            setxattr(p("f"), "user.missing", b"v", XattrFlags::REPLACE),
        ),
        (
            "getxattr into a small buffer",
            Errno::RANGE,
            ok(getxattr(p("f"), "user.small", &mut [0_u8; 4][..])),
        ),
        (
            "listxattr into a small buffer",
            Errno::RANGE,
            ok(listxattr(p("f"), &mut [0_u8; 4][..])),
        ),
        (
            "setxattr 64 KiB + 1",
            Errno::TOOBIG,
            setxattr(p("f"), "user.big", &vec![7; 65_537], XattrFlags::empty()),
        ),
        ("link a directory", Errno::PERM, ok(link(p("d"), p("d2")))),
        (
            "fallocate ZERO_RANGE",
            Errno::OPNOTSUPP,
            fallocate(&f, FallocateFlags::ZERO_RANGE, 0, 4),
        ),
        (
            "fallocate COLLAPSE_RANGE",
            Errno::OPNOTSUPP,
            fallocate(&f, FallocateFlags::COLLAPSE_RANGE, 0, 4096),
        ),
        (
            "SEEK_DATA past EOF",
            Errno::NXIO,
            ok(seek(&f, SeekFrom::Data(100))),
        ),
        (
            "SEEK_HOLE past EOF",
            Errno::NXIO,
            ok(seek(&f, SeekFrom::Hole(100))),
        ),
    ];

    // As nobody: the kernel checks the mode bits (`default_permissions` on memfs).
    let root2 = root.to_owned();
    let as_nobody = std::thread::spawn(move || {
        let p = |s: &str| root2.join(s);
        let nobody = rustix::process::Gid::from_raw(65534);
        rustix::thread::set_thread_groups(&[]).unwrap();
        rustix::thread::set_thread_res_gid(nobody, nobody, nobody).unwrap();
        let nobody = rustix::process::Uid::from_raw(65534);
        rustix::thread::set_thread_res_uid(nobody, nobody, nobody).unwrap();
        vec![
            (
                "nobody: read a 0600 file",
                Errno::ACCESS,
                ok(open(p("secret"), OFlags::RDONLY, Mode::empty())),
            ),
            (
                "nobody: write a 0644 file",
                Errno::ACCESS,
                ok(open(p("f"), OFlags::WRONLY, Mode::empty())),
            ),
            (
                "nobody: create in a 0755 dir",
                Errno::ACCESS,
                ok(mkdir(p("d/new"), Mode::from_raw_mode(0o755))),
            ),
            (
                "nobody: unlink in a 0755 dir",
                Errno::ACCESS,
                ok(unlink(p("f"))),
            ),
            (
                "nobody: list a 0700 dir",
                Errno::ACCESS,
                ok(open(
                    p("private"),
                    OFlags::RDONLY | OFlags::DIRECTORY,
                    Mode::empty(),
                )),
            ),
            (
                "nobody: stat inside a 0700 dir",
                Errno::ACCESS,
                ok(stat(p("private/x"))),
            ),
            (
                "nobody: setxattr on a 0644 file",
                Errno::ACCESS,
                setxattr(p("f"), "user.x", b"v", XattrFlags::empty()),
            ),
            (
                "nobody: chmod a root file",
                Errno::PERM,
                rustix::fs::chmod(p("f"), Mode::from_raw_mode(0o666)),
            ),
        ]
    });
    c.extend(as_nobody.join().unwrap());
    c
}

#[test]
fn every_errno_reaches_the_caller_as_on_tmpfs() {
    let _serial = serial();
    if !can_mount() {
        return;
    }
    let scratch = Scratch::new();
    let tmp_mnt = scratch.subdir("tmpfs");
    // allow_other: without it FUSE refuses every other user with EACCES before the mode
    // bits are even looked at, and the `nobody` cases would pass for the wrong reason.
    let _server = memfs(&scratch.mnt, &["-o", "allow_other"]);
    let _tmpfs = Tmpfs::mount(&tmp_mnt, "64m");
    // A positive error would leave the request unanswered: a hang, caught here.
    let mnt = scratch.mnt.clone();
    let on_memfs = within(T, "the errno cases on memfs", move || errno_cases(&mnt));
    let on_tmpfs = errno_cases(&tmp_mnt);
    let mut report = String::new();
    for ((what, want, got), (_, _, tmpfs)) in on_memfs.iter().zip(&on_tmpfs) {
        if *got != Err(*want) || got != tmpfs {
            let _ = writeln!(
                report,
                "{what}: memfs {got:?}, tmpfs {tmpfs:?}, expected Err({want:?})"
            );
        }
    }
    assert!(report.is_empty(), "\n{report}");
}

/// ENOSPC from a full memfs (`--capacity`) as from a full tmpfs (`size=`).
#[test]
fn enospc_when_full_as_on_tmpfs() {
    let _serial = serial();
    if !can_mount() {
        return;
    }
    let scratch = Scratch::new();
    let tmp_mnt = scratch.subdir("tmpfs");
    let _server = memfs(&scratch.mnt, &["--capacity", "1M"]);
    let _tmpfs = Tmpfs::mount(&tmp_mnt, "1m");
    let fill = |root: &Path| -> Vec<(&'static str, Result<(), Errno>)> {
        let big = vec![1_u8; 2 << 20];
        let write = common::status(fs::write(root.join("big"), &big));
        let _ = fs::remove_file(root.join("big"));
        let f = fs::File::create(root.join("alloc")).unwrap();
        let alloc = rustix::fs::fallocate(&f, FallocateFlags::empty(), 0, 2 << 20);
        vec![("write 2 MiB", write), ("fallocate 2 MiB", alloc)]
    };
    let mnt = scratch.mnt.clone();
    let on_memfs = within(T, "filling memfs", move || fill(&mnt));
    let on_tmpfs = fill(&tmp_mnt);
    assert_eq!(on_memfs, on_tmpfs);
    for (what, got) in on_memfs {
        assert_eq!(got, Err(Errno::NOSPC), "{what}");
    }
    // Still usable once space is freed.
    fs::remove_file(scratch.mnt.join("alloc")).unwrap();
    fs::write(scratch.mnt.join("small"), b"fits").unwrap();
    assert_eq!(fs::read(scratch.mnt.join("small")).unwrap(), b"fits");
}

/// Runs `f` on a fresh memfs started with `args` (bounded by `within`, named `what`), then
/// on a tmpfs of `size`; returns both results, memfs's first — `None` when mounting tests
/// are skipped here.
fn on_memfs_and_tmpfs<R: Send + 'static>(
    args: &[&str],
    size: &str,
    what: &str,
    f: impl Fn(&Path) -> R + Clone + Send + 'static,
) -> Option<(R, R)> {
    let _serial = serial();
    if !can_mount() {
        return None;
    }
    let scratch = Scratch::new();
    let tmp_mnt = scratch.subdir("tmpfs");
    let _server = memfs(&scratch.mnt, args);
    let _tmpfs = Tmpfs::mount(&tmp_mnt, size);
    let (mnt, on) = (scratch.mnt.clone(), f.clone());
    let on_memfs = within(T, what, move || on(&mnt));
    Some((on_memfs, f(&tmp_mnt)))
}

/// Sparse files on a 1 GiB filesystem: a byte at 2 GiB + 1, a truncate to ~1 PB; what each
/// gave, the files' sizes and blocks, and whether `df` still shows room.
fn sparse_steps(root: &Path) -> Vec<String> {
    use std::os::unix::fs::{FileExt as _, MetadataExt as _};
    let mut out = Vec::new();
    let first = root.join("a");
    let file_a = fs::File::create(&first).unwrap();
    out.push(format!(
        "pwrite at 2 GiB + 1: {:?}",
        file_a
            .write_at(b"x", (2 << 30) + 1)
            .map_err(|e| e.raw_os_error())
    ));
    let meta = fs::metadata(&first).unwrap();
    out.push(format!("a: size {} blocks {}", meta.len(), meta.blocks()));
    let second = root.join("b");
    let file_b = fs::File::create(&second).unwrap();
    out.push(format!(
        "ftruncate to 999999999999999: {:?}",
        file_b
            .set_len(999_999_999_999_999)
            .map_err(|e| e.raw_os_error())
    ));
    let meta = fs::metadata(&second).unwrap();
    out.push(format!("b: size {} blocks {}", meta.len(), meta.blocks()));
    out.push(format!(
        "ftruncate to 2^63: {:?}",
        file_b.set_len(1 << 63).map_err(|e| e.raw_os_error())
    ));
    let st = rustix::fs::statvfs(root).unwrap();
    out.push(format!(
        "df: more than 99% free: {}",
        st.f_bfree * 100 > st.f_blocks * 99
    ));
    // And a later real write still fits.
    out.push(format!(
        "write 1 MiB: {:?}",
        fs::write(root.join("c"), vec![7u8; 1 << 20]).map_err(|e| e.raw_os_error())
    ));
    out
}

#[test]
fn sparse_files_are_charged_by_their_data_as_on_tmpfs() {
    let Some((on_memfs, on_tmpfs)) = on_memfs_and_tmpfs(
        &["--capacity", "1G"],
        "1g",
        "sparse files on memfs",
        sparse_steps,
    ) else {
        return;
    };
    assert_eq!(on_memfs, on_tmpfs);
    assert_eq!(on_memfs[0], "pwrite at 2 GiB + 1: Ok(1)", "{on_memfs:#?}");
}

/// xfstests' seek sanity pattern (its tests 11 and 12): 64 KiB of data at 0 and at a huge
/// offset (8 and 16 TiB), then SEEK_DATA/SEEK_HOLE from offsets around both.
fn huge_sparse_seeks(root: &Path) -> Vec<String> {
    use std::os::unix::fs::FileExt as _;
    let mut out = Vec::new();
    for (name, tib) in [("eight", 8u64), ("sixteen", 16)] {
        let path = root.join(name);
        let file = fs::File::create(&path).unwrap();
        let far = (tib << 40) - (64 << 10);
        let chunk = vec![b'a'; 64 << 10];
        let wrote = [0, far].map(|at| file.write_at(&chunk, at).map_err(|e| e.raw_os_error()));
        out.push(format!("{name}: writes {wrote:?}"));
        for at in [0, 1, 65_535, 65_536, far - 1, far, far + 1, far + 65_535] {
            let seek =
                |whence| rustix::fs::seek(&file, whence).map_err(rustix::io::Errno::raw_os_error);
            out.push(format!(
                "{name} @{at}: data {:?} hole {:?}",
                seek(rustix::fs::SeekFrom::Data(at)),
                seek(rustix::fs::SeekFrom::Hole(at))
            ));
        }
    }
    out
}

#[test]
fn seek_data_and_hole_over_huge_sparse_files_as_on_tmpfs() {
    let Some((on_memfs, on_tmpfs)) =
        on_memfs_and_tmpfs(&[], "1g", "seeking on memfs", huge_sparse_seeks)
    else {
        return;
    };
    assert_eq!(on_memfs, on_tmpfs);
}

/// Runs `tests/memfs/handles.c` (built here with `cc`) on `root`: file handles of a file and
/// a directory, opened again after the kernel's caches are dropped, and after the file is
/// deleted.
fn handles_after_drop_caches(helper: &Path, root: &Path) -> String {
    let dir = root.join("dir");
    fs::create_dir(&dir).unwrap();
    let file = dir.join("file");
    fs::write(&file, b"kept").unwrap();
    let out = common::run(
        Command::new(helper).arg(root).arg(&file).arg(&dir),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn file_handles_survive_dropped_caches_as_on_tmpfs() {
    if !can_mount() {
        return;
    }
    let bin = tempfile::tempdir().unwrap();
    let helper = bin.path().join("handles");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/memfs/handles.c");
    let built = Command::new("cc")
        .arg("-O1")
        .arg("-o")
        .arg(&helper)
        .arg(&src)
        .output();
    match built {
        Ok(o) if o.status.success() => {}
        other => panic!("cannot build tests/memfs/handles.c with cc (install gcc): {other:?}"),
    }
    let Some((on_memfs, on_tmpfs)) = on_memfs_and_tmpfs(&[], "1m", "file handles on memfs", {
        move |root: &Path| handles_after_drop_caches(&helper, root)
    }) else {
        return;
    };
    assert_eq!(
        on_tmpfs,
        "file after drop_caches: read 4 \"kept\"\ndir after drop_caches: opened\n\
         file after unlink: errno 116\n",
        "tmpfs itself"
    );
    assert_eq!(on_memfs, on_tmpfs);
}

/// Whether `open(O_TRUNC)` and `ftruncate(fd, 0)` of an existing empty file each moved
/// its mtime and its ctime forward: [(open mtime, open ctime), (ftruncate mtime, ctime)].
fn truncating_empty_moves_times(root: &Path) -> [(bool, bool); 2] {
    use std::os::unix::fs::MetadataExt as _;
    let path = root.join("empty");
    fs::write(&path, b"").unwrap();
    let times = |p: &Path| {
        let m = fs::metadata(p).unwrap();
        ((m.mtime(), m.mtime_nsec()), (m.ctime(), m.ctime_nsec()))
    };
    let mut out = [(false, false); 2];
    let before = times(&path);
    std::thread::sleep(Duration::from_millis(20));
    drop(
        fs::File::options()
            .write(true)
            .truncate(true)
            .open(&path)
            .unwrap(),
    );
    let after = times(&path);
    out[0] = (after.0 > before.0, after.1 > before.1);
    std::thread::sleep(Duration::from_millis(20));
    let f = fs::File::options().write(true).open(&path).unwrap();
    f.set_len(0).unwrap();
    drop(f);
    let last = times(&path);
    out[1] = (last.0 > after.0, last.1 > after.1);
    out
}

#[test]
fn truncating_an_empty_file_updates_its_times_as_on_tmpfs() {
    // The kernel drops its cached times after an open(O_TRUNC) and takes SETATTR's answer
    // after ftruncate: the times seen are memfs's own.
    let Some((on_memfs, on_tmpfs)) = on_memfs_and_tmpfs(
        &[],
        "1m",
        "truncating on memfs",
        truncating_empty_moves_times,
    ) else {
        return;
    };
    assert_eq!(on_tmpfs, [(true, true); 2], "tmpfs itself");
    assert_eq!(
        on_memfs, on_tmpfs,
        "[(open(O_TRUNC) mtime, ctime), (ftruncate(0) mtime, ctime)] moved forward"
    );
}

// ---------------------------------------------------------------------------------------------
// 2c. mkdir/rmdir/ls churn: no ghost directories

/// `iters` times: mkdir `name`, rmdir it, list the parent; stat, lookup (a create inside)
/// and readdir must agree at every step. The first disagreement is the error.
fn churn_own(root: &Path, name: &str, iters: u32) -> Result<(), String> {
    let d = root.join(name);
    let listed = |i: u32| -> Result<bool, String> {
        let names = common::names(root).map_err(|e| format!("iteration {i}: readdir: {e}"))?;
        Ok(names.iter().any(|n| n == name))
    };
    for i in 0..iters {
        fs::create_dir(&d).map_err(|e| format!("iteration {i}: mkdir {name}: {e}"))?;
        match fs::metadata(&d) {
            Ok(m) if m.is_dir() => {}
            other => return Err(format!("iteration {i}: stat after mkdir: {other:?}")),
        }
        if i % 64 == 0 {
            // A directory bound to a dead inode would refuse creates inside it.
            if !listed(i)? {
                return Err(format!("iteration {i}: {name} made but not listed"));
            }
            let x = d.join("x");
            fs::write(&x, b"x").map_err(|e| format!("iteration {i}: create in {name}: {e}"))?;
            fs::remove_file(&x).map_err(|e| format!("iteration {i}: unlink: {e}"))?;
        }
        fs::remove_dir(&d).map_err(|e| format!("iteration {i}: rmdir {name}: {e}"))?;
        match fs::metadata(&d) {
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            other => return Err(format!("iteration {i}: stat after rmdir: {other:?}")),
        }
        if listed(i)? {
            return Err(format!(
                "iteration {i}: {name} listed after its rmdir returned"
            ));
        }
    }
    Ok(())
}

/// As [`churn_own`] with another process on the same name: mkdir may find it (EEXIST),
/// rmdir may miss it (ENOENT); nothing else may fail. Returns (made, removed).
fn churn_shared(root: &Path, name: &str, iters: u32) -> Result<(u64, u64), String> {
    let d = root.join(name);
    let (mut made, mut removed) = (0, 0);
    for i in 0..iters {
        match fs::create_dir(&d) {
            Ok(()) => made += 1,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("iteration {i}: mkdir: {e}")),
        }
        match fs::remove_dir(&d) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(format!("iteration {i}: rmdir: {e}")),
        }
        let names = common::names(root).map_err(|e| format!("iteration {i}: readdir: {e}"))?;
        let unique: BTreeSet<_> = names.iter().collect();
        if unique.len() != names.len() {
            return Err(format!("iteration {i}: duplicates in {names:?}"));
        }
        match fs::metadata(&d) {
            Ok(m) if m.is_dir() => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            other => return Err(format!("iteration {i}: stat: {other:?}")),
        }
    }
    Ok((made, removed))
}

/// Runs in a child process started by [`mkdir_rmdir_ls_from_two_processes`] (this test
/// executable again, with `RINGFUSE_CHURN=own|shared:NAME:ITERS:ROOT`); a no-op otherwise.
#[test]
fn churn_child() {
    let Ok(spec) = std::env::var("RINGFUSE_CHURN") else {
        return;
    };
    // The root last: it may hold a ':'.
    let mut parts = spec.splitn(4, ':');
    let (which, name, iters, root) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap().parse().unwrap(),
        PathBuf::from(parts.next().unwrap()),
    );
    let result = match which {
        "own" => churn_own(&root, name, iters).map(|()| (0, 0)),
        _ => churn_shared(&root, name, iters),
    };
    match result {
        Ok((made, removed)) => println!("CHURN-RESULT {made} {removed}"),
        Err(e) => panic!("{e}"),
    }
}

fn spawn_churn(mode: &str, root: &Path, name: &str, iters: u32) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["churn_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(
            "RINGFUSE_CHURN",
            format!("{mode}:{name}:{iters}:{}", root.display()),
        )
        .env("RUST_BACKTRACE", "0");
    cmd
}

/// (made, removed) from a churn child's output; panics with its output if it failed.
fn churn_result(out: &std::process::Output) -> (u64, u64) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "churn child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("CHURN-RESULT ").map(|(_, r)| r))
        .unwrap_or_else(|| panic!("no result from the churn child:\n{stdout}"));
    let mut it = line.split(' ').map(|n| n.parse::<u64>().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

#[test]
fn mkdir_rmdir_ls_10000_times() {
    let _serial = serial();
    if !can_mount() {
        return;
    }
    let scratch = Scratch::new();
    let _server = memfs(&scratch.mnt, &[]);
    fs::write(scratch.mnt.join("neighbour"), b"n").unwrap();
    let mnt = scratch.mnt.clone();
    within(
        Duration::from_secs(120),
        "10,000 mkdir/rmdir/ls",
        move || churn_own(&mnt, "d", 10_000),
    )
    .unwrap();
    assert_eq!(common::names(&scratch.mnt).unwrap(), ["neighbour"]);
}

#[test]
fn mkdir_rmdir_ls_from_two_processes() {
    let _serial = serial();
    if !can_mount() {
        return;
    }
    let scratch = Scratch::new();
    let _server = memfs(&scratch.mnt, &[]);
    let timeout = Duration::from_secs(120);
    let both = |a: Command, b: Command| {
        let (mut a, mut b) = (a, b);
        let other = std::thread::spawn(move || common::run(&mut b, timeout));
        let first = common::run(&mut a, timeout);
        (churn_result(&first), churn_result(&other.join().unwrap()))
    };

    // Each its own name: each sees exactly its own directory come and go.
    both(
        spawn_churn("own", &scratch.mnt, "d1", 10_000),
        spawn_churn("own", &scratch.mnt, "d2", 10_000),
    );
    assert_eq!(common::names(&scratch.mnt).unwrap(), Vec::<String>::new());

    // The same name: races give EEXIST and ENOENT, but every mkdir that succeeded was
    // undone by exactly one rmdir that succeeded, and the last operation was an rmdir.
    let ((made1, removed1), (made2, removed2)) = both(
        spawn_churn("shared", &scratch.mnt, "d", 10_000),
        spawn_churn("shared", &scratch.mnt, "d", 10_000),
    );
    assert_eq!(made1 + made2, removed1 + removed2, "mkdirs vs rmdirs");
    assert!(
        made1 > 0 && made2 > 0,
        "{made1} and {made2} mkdirs succeeded"
    );
    let d = scratch.mnt.join("d");
    assert_eq!(common::names(&scratch.mnt).unwrap(), Vec::<String>::new());
    assert_eq!(fs::metadata(&d).unwrap_err().kind(), ErrorKind::NotFound);
    // And the name still works: a directory, usable inside, listed.
    fs::create_dir(&d).unwrap();
    fs::write(d.join("x"), b"x").unwrap();
    assert_eq!(common::names(&scratch.mnt).unwrap(), ["d"]);
    assert_eq!(common::names(&d).unwrap(), ["x"]);
    assert_eq!(
        fs::remove_dir(&d).unwrap_err().raw_os_error(),
        Some(Errno::NOTEMPTY.raw_os_error())
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Big directories, files of every size, big xattrs

#[test]
fn a_1000_entry_directory_is_listed_completely() {
    let _serial = serial();
    if !can_mount() {
        return;
    }
    let scratch = Scratch::new();
    let _server = memfs(&scratch.mnt, &[]);
    let dir = scratch.mnt.join("big");
    fs::create_dir(&dir).unwrap();
    let want: Vec<String> = (0..1000).map(|i| format!("entry-{i:04}")).collect();
    for (i, name) in want.iter().enumerate() {
        if i % 10 == 0 {
            fs::create_dir(dir.join(name)).unwrap();
        } else {
            fs::write(dir.join(name), name).unwrap();
        }
    }
    assert_eq!(common::names(&dir).unwrap(), want);

    // getdents64 with buffers from "one entry per call" to "all at once".
    let mut want_raw: Vec<Vec<u8>> = want.iter().map(|n| n.as_bytes().to_vec()).collect();
    want_raw.push(b".".to_vec());
    want_raw.push(b"..".to_vec());
    want_raw.sort();
    for buf in [40, 100, 1000, 4096, 65536] {
        let d = dir.clone();
        let mut got = within(T, "getdents64", move || getdents_names(&d, buf)).unwrap();
        assert_eq!(got.len(), 1002, "{buf}-byte buffer: {} entries", got.len());
        got.sort();
        assert_eq!(got, want_raw, "{buf}-byte buffer");
    }

    // ls, unsorted (-f: the server's order, with . and ..) and sorted.
    let out = sh(&dir, "ls -f", T);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    let unique: BTreeSet<&str> = lines.iter().copied().collect();
    assert_eq!(
        (lines.len(), unique.len()),
        (1002, 1002),
        "ls -f:\n{stdout}"
    );
    let out = sh(
        &dir,
        "ls -l --time-style=+ | tail -n +2 | wc -l; ls | tail -n 1",
        T,
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1000\nentry-0999\n");
}

#[test]
fn files_of_every_size_read_back_byte_for_byte() {
    let _serial = serial();
    if !can_mount() {
        return;
    }
    let scratch = Scratch::new();
    let _server = memfs(&scratch.mnt, &[]);
    let sizes = [
        0,
        1,
        4096,
        MAX_WRITE - 1,
        MAX_WRITE,
        MAX_WRITE + 1,
        3 * MAX_WRITE + 7,
        64 << 20,
    ];
    for size in sizes {
        let path = scratch.mnt.join(format!("file-{size}"));
        let data = Arc::new(random_bytes(size, size as u64 + 1));
        let (p, d) = (path.clone(), Arc::clone(&data));
        within(T, "write", move || fs::write(p, &*d)).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), size as u64);
        drop_cache(&path);
        let p = path.clone();
        let got = within(T, "read", move || fs::read(p)).unwrap();
        assert_same_bytes(&got, &data, &format!("{size}-byte file"));
        // A read that starts mid-page and crosses max_write boundaries.
        if size > 10 {
            drop_cache(&path);
            let f = fs::File::open(&path).unwrap();
            let mut buf = vec![0; (size - 5).min(3 * MAX_WRITE)];
            f.read_exact_at(&mut buf, 5).unwrap();
            assert_same_bytes(&buf, &data[5..5 + buf.len()], &format!("{size} at 5"));
        }
    }
    // Overwrite in the middle of the big file, across a max_write boundary.
    let path = scratch.mnt.join(format!("file-{}", 64 << 20));
    let overwrite = random_bytes(MAX_WRITE + 3, 99);
    let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&overwrite, 10 * MAX_WRITE as u64 - 1)
        .unwrap();
    drop(f);
    drop_cache(&path);
    let got = fs::read(&path).unwrap();
    let mut want = random_bytes(64 << 20, (64 << 20) + 1);
    want[10 * MAX_WRITE - 1..11 * MAX_WRITE + 2].copy_from_slice(&overwrite);
    assert_same_bytes(&got, &want, "patched 64 MiB file");
}

#[test]
fn xattr_of_64_kib_as_on_tmpfs() {
    let _serial = serial();
    if !can_mount() {
        return;
    }
    let scratch = Scratch::new();
    let tmp_mnt = scratch.subdir("tmpfs");
    let _server = memfs(&scratch.mnt, &[]);
    let _tmpfs = Tmpfs::mount(&tmp_mnt, "64m");
    let value = random_bytes(65536, 7);
    let run = |root: PathBuf, value: Vec<u8>| {
        move || {
            let f = root.join("f");
            fs::write(&f, b"x").unwrap();
            let set = rustix::fs::setxattr(&f, "user.big", &value, XattrFlags::empty());
            let size = rustix::fs::getxattr_query(&f, "user.big");
            let mut buf = vec![0_u8; 65536];
            let got = rustix::fs::getxattr(&f, "user.big", &mut buf[..]).map(|n| buf[..n].to_vec());
            let too_big =
                rustix::fs::setxattr(&f, "user.big2", &vec![1; 65537], XattrFlags::empty());
            let mut list = vec![0_u8; 1024];
            let names = rustix::fs::listxattr(&f, &mut list[..]).map(|n| list[..n].to_vec());
            (set, size, got, too_big, names)
        }
    };
    let on_memfs = within(
        T,
        "xattrs on memfs",
        run(scratch.mnt.clone(), value.clone()),
    );
    let on_tmpfs = run(tmp_mnt.clone(), value.clone())();
    let (set, size, got, too_big, names) = &on_memfs;
    assert_eq!(*set, Ok(()));
    assert_eq!(*size, Ok(65536));
    assert_same_bytes(got.as_ref().unwrap(), &value, "64 KiB xattr");
    assert_eq!(*too_big, Err(Errno::TOOBIG));
    assert_eq!(names.as_deref(), Ok(&b"user.big\0"[..]));
    assert_eq!(on_memfs, on_tmpfs);
}

// ---------------------------------------------------------------------------------------------
// 3. A killed server, an unmount under load

fn sigkill_leaves_enotconn_then_unmount_and_remount_work(transport: Transport) {
    let _serial = serial();
    if !can_mount() {
        return;
    }
    let scratch = Scratch::new();
    let Some(mut first) = transport.memfs(&scratch.mnt) else {
        return;
    };
    fs::write(scratch.mnt.join("f"), b"before").unwrap();
    first.signal(Signal::KILL);
    let status = first.wait_exit(T).expect("memfs dies on SIGKILL");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    // The kernel aborts the connection when the last reference to the /dev/fuse file goes,
    // which io_uring's teardown may do a little after the process is reaped. A request
    // caught in between ends with ECONNABORTED, or with ECANCELED on the native transport
    // (its entry's task is dead); every one after the abort with ENOTCONN. Each stat must
    // answer (no hang) and ENOTCONN must come.
    let mut seen = Vec::new();
    loop {
        let mnt = scratch.mnt.clone();
        let r = common::within_opt(Duration::from_secs(10), move || fs::metadata(mnt))
            .expect("stat of a dead mount answers at once")
            .map(drop)
            .map_err(|e| common::errno(&e));
        seen.push(r);
        match r {
            Err(Errno::NOTCONN) => break,
            Err(Errno::CONNABORTED | Errno::CANCELED) if seen.len() < 100 => {
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => panic!("stat of the dead mount: {seen:?}"),
        }
    }
    assert_eq!(mounts_under(&scratch.mnt).len(), 1, "still mounted, dead");
    rustix::mount::unmount(&scratch.mnt, rustix::mount::UnmountFlags::empty())
        .expect("a dead mount can be unmounted");
    assert_eq!(mounts_under(&scratch.mnt), []);
    drop(first);

    let _second = transport.memfs(&scratch.mnt).unwrap();
    assert_eq!(common::names(&scratch.mnt).unwrap(), Vec::<String>::new());
    fs::write(scratch.mnt.join("f"), b"after").unwrap();
    assert_eq!(fs::read(scratch.mnt.join("f")).unwrap(), b"after");
}

#[test]
fn sigkill_leaves_enotconn_then_unmount_and_remount_work_classic() {
    sigkill_leaves_enotconn_then_unmount_and_remount_work(Transport::Classic);
}

#[test]
fn sigkill_leaves_enotconn_then_unmount_and_remount_work_native() {
    sigkill_leaves_enotconn_then_unmount_and_remount_work(Transport::Native);
}

fn lazy_unmount_with_requests_in_flight(transport: Transport) {
    const WORKERS: usize = 4;
    let _serial = serial();
    if !can_mount() {
        return;
    }
    let scratch = Scratch::new();
    let Some(mut server) = transport.memfs(&scratch.mnt) else {
        return;
    };
    for i in 0..WORKERS {
        fs::write(scratch.mnt.join(format!("f{i}")), b"").unwrap();
    }
    let progress = Arc::new(AtomicU64::new(0));
    let (tx, rx) = std::sync::mpsc::channel();
    for i in 0..WORKERS {
        let (tx, progress) = (tx.clone(), Arc::clone(&progress));
        let path = scratch.mnt.join(format!("f{i}"));
        std::thread::spawn(move || {
            let data = random_bytes(64 * 1024, i as u64);
            // Re-opens by path each time: after the unmount the name is gone (no O_CREAT,
            // which would create it in the directory underneath).
            let end = loop {
                let r = fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .and_then(|f| {
                        f.write_all_at(&data, 0)?;
                        let mut back = vec![0; data.len()];
                        f.read_exact_at(&mut back, 0)?;
                        assert_eq!(back, data);
                        Ok(())
                    });
                if let Err(e) = r {
                    break e;
                }
                progress.fetch_add(1, Ordering::Relaxed);
            };
            let _ = tx.send(format!("worker {i}: {end}"));
        });
    }
    {
        let (tx, progress) = (tx.clone(), Arc::clone(&progress));
        let root = scratch.mnt.clone();
        std::thread::spawn(move || {
            let end = loop {
                match common::names(&root) {
                    Ok(names) if names.len() == WORKERS => {}
                    other => break format!("{other:?}"),
                }
                progress.fetch_add(1, Ordering::Relaxed);
            };
            let _ = tx.send(format!("lister: {end}"));
        });
    }
    drop(tx);
    let start = Instant::now();
    while progress.load(Ordering::Relaxed) < 200 {
        assert!(start.elapsed() < T, "the workers make no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    rustix::mount::unmount(&scratch.mnt, rustix::mount::UnmountFlags::DETACH).expect("umount -l");
    for _ in 0..=WORKERS {
        let end = rx
            .recv_timeout(T)
            .expect("every thread stops with an error after the unmount (none hangs)");
        eprintln!("{end}");
    }
    server.expect_clean_exit(T, "after umount -l with the last request done");
    assert_eq!(mounts_under(&scratch.mnt), []);
}

#[test]
fn lazy_unmount_with_requests_in_flight_classic() {
    lazy_unmount_with_requests_in_flight(Transport::Classic);
}

#[test]
fn lazy_unmount_with_requests_in_flight_native() {
    lazy_unmount_with_requests_in_flight(Transport::Native);
}

// ---------------------------------------------------------------------------------------------
// 5. Signals and bad command lines

fn signal_unmounts_and_exits_0(sig: Signal, transport: Transport) {
    let _serial = serial();
    if !can_mount() {
        return;
    }
    let scratch = Scratch::new();
    let Some(mut server) = transport.memfs(&scratch.mnt) else {
        return;
    };
    let path = scratch.mnt.join("f");
    let data = random_bytes(1 << 20, 3);
    fs::write(&path, &data).unwrap();
    let f = fs::File::open(&path).unwrap();
    let mut buf = vec![0; 4096];
    f.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(buf, data[..4096]);
    rustix::fs::fadvise(&f, 0, None, Advice::DontNeed).unwrap();

    server.signal(sig);
    server.expect_clean_exit(T, &format!("after {sig:?} with a file open"));
    assert_eq!(mounts_under(&scratch.mnt), [], "unmounted");
    let read = within(T, "a read on the open file", move || {
        let mut buf = vec![0; 4096];
        f.read_at(&mut buf, 512 * 1024)
            .map_err(|e| e.raw_os_error())
    });
    assert!(
        read.is_err(),
        "a read after the server left must fail: {read:?}"
    );
    // The directory is usable again.
    assert!(fs::read_dir(&scratch.mnt).unwrap().next().is_none());
}

#[test]
fn sigint_unmounts_and_exits_0_classic() {
    signal_unmounts_and_exits_0(Signal::INT, Transport::Classic);
}

#[test]
fn sigterm_unmounts_and_exits_0_classic() {
    signal_unmounts_and_exits_0(Signal::TERM, Transport::Classic);
}

#[test]
fn sigint_unmounts_and_exits_0_native() {
    signal_unmounts_and_exits_0(Signal::INT, Transport::Native);
}

#[test]
fn sigterm_unmounts_and_exits_0_native() {
    signal_unmounts_and_exits_0(Signal::TERM, Transport::Native);
}

#[test]
fn bad_command_lines_fail_with_the_cause_and_mount_nothing() {
    let _serial = serial();
    if !can_mount() {
        return;
    }
    let scratch = Scratch::new();
    let file = scratch.dir.join("a-file");
    fs::write(&file, b"x").unwrap();
    let missing = scratch.dir.join("missing");
    let mnt = scratch.mnt.to_str().unwrap();
    let cases: [(Vec<&str>, &str); 6] = [
        (vec![], "missing MOUNTPOINT"),
        (vec![missing.to_str().unwrap()], "does not exist"),
        (vec![file.to_str().unwrap()], "not a directory"),
        (vec![mnt, "-o", "bogus_option"], "bogus_option"),
        (vec![mnt, "--capacity", "lots"], "not a size"),
        (vec![mnt, "--frobnicate"], "--frobnicate"),
    ];
    for (args, needle) in cases {
        let out = common::run(Command::new(memfs_bin()).args(&args), T);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "memfs {args:?} succeeded");
        assert!(stderr.contains(needle), "memfs {args:?}: {stderr}");
        assert_eq!(
            mounts_under(&scratch.dir),
            [],
            "memfs {args:?} left a mount"
        );
    }
    assert_eq!(fs::read(&file).unwrap(), b"x");
    assert!(fs::symlink_metadata(&missing).is_err());
}
