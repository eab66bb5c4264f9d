//! Mounting for every user (README "Mounting without root"): a user other than root mounts
//! memfs through fusermount3 on both transports; fusermount3's refusal of `allow_other`;
//! `auto_unmount` after `kill -9`, through fusermount3 and on a direct mount; a mount inside
//! a user namespace; `mount -t fuse.NAME` (and an fstab line) with memfs as its own mount
//! helper, remount and umount.
//!
//! Run as root (to create the test user and to check from outside); the servers of the
//! unprivileged tests run as that user, `ringfuse-user` (created with `useradd` if it is
//! missing). Every test unmounts and stops what it started, also when it fails: [`UserServer`]
//! and the harness's [`Server`] and [`Scratch`] guards.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, reason = "tests may unwrap (STYLE.md rule 31)")]
#![allow(
    clippy::too_many_lines,
    reason = "a test reads best as one scripted story"
)]

#[path = "../common/mod.rs"]
mod common;

use std::fs;
use std::os::unix::fs::{PermissionsExt, chown};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rustix::process::Signal;

use common::{Scratch, Server, can_mount, detach_all, memfs_bin, mounts_under, run, serial};

/// The user the unprivileged servers run as.
const USER: &str = "ringfuse-user";
/// How long a mount may take to appear or (after `kill -9`) to go away.
const WAIT: Duration = Duration::from_secs(15);
/// A PATH for the user's commands (fusermount3 lives in /usr/bin, unshare too).
const PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";

/// The test user's uid and gid, creating it if needed. Fails loudly if that is impossible.
fn user() -> (u32, u32) {
    let id = |flag: &str| {
        let out = Command::new("id")
            .args([flag, USER])
            .output()
            .expect("run id");
        out.status
            .success()
            .then(|| {
                String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse::<u32>()
                    .ok()
            })
            .flatten()
    };
    if id("-u").is_none() {
        let out = Command::new("useradd")
            .args(["--system", "--no-create-home", "--shell", "/bin/sh", USER])
            .output()
            .expect("run useradd (package passwd)");
        // Two test binaries may race to create it; what counts is that it exists now.
        assert!(
            out.status.success() || id("-u").is_some(),
            "cannot create the test user {USER}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (id("-u").expect("uid"), id("-g").expect("gid"))
}

/// Fails loudly unless fusermount3 is installed and `/dev/fuse` is usable by any user (the
/// mode distributions' udev rules give it; `.ci/run` sets it on machines without udev).
fn require_fusermount() {
    let found = ["/usr/bin/fusermount3", "/bin/fusermount3"]
        .iter()
        .any(|p| Path::new(p).exists());
    assert!(
        found,
        "these tests need fusermount3: apt-get install fuse3 (.ci/run installs it)"
    );
    let mode = fs::metadata("/dev/fuse")
        .expect("stat /dev/fuse")
        .permissions()
        .mode();
    assert!(
        mode & 0o006 == 0o006,
        "/dev/fuse is {:o}: fusermount3 opens it as the user, so it must be crw-rw-rw- as \
         distributions make it (chmod 0666 /dev/fuse; .ci/run does)",
        mode & 0o777
    );
}

/// A scratch directory the test user can use: the scratch dir traversable, `mnt` owned by
/// the user, and a copy of memfs the user may execute (the target dir may not be
/// reachable for other users).
struct UserScratch {
    scratch: Scratch,
    memfs: PathBuf,
    /// A directory of the user's, next to `mnt`.
    own: PathBuf,
    uid: u32,
    gid: u32,
}

impl UserScratch {
    fn new() -> Self {
        let (uid, gid) = user();
        let scratch = Scratch::new();
        fs::set_permissions(&scratch.dir, fs::Permissions::from_mode(0o755)).unwrap();
        chown(&scratch.mnt, Some(uid), Some(gid)).unwrap();
        let own = scratch.subdir("own");
        chown(&own, Some(uid), Some(gid)).unwrap();
        let memfs = scratch.dir.join("memfs");
        fs::copy(memfs_bin(), &memfs).expect("copy memfs");
        fs::set_permissions(&memfs, fs::Permissions::from_mode(0o755)).unwrap();
        Self {
            scratch,
            memfs,
            own,
            uid,
            gid,
        }
    }

    /// `program args...` as the test user, with a plain PATH.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.uid(self.uid)
            .gid(self.gid)
            .env_clear()
            .env("PATH", PATH)
            .env("HOME", "/")
            .current_dir("/");
        cmd
    }

    /// `sh -c script sh ARGS...` as the user, to completion (at most a minute).
    fn sh(&self, script: &str, args: &[&Path]) -> Output {
        let mut cmd = self.command("sh");
        cmd.arg("-c").arg(script).arg("sh").args(args);
        run(&mut cmd, Duration::from_secs(60))
    }

    /// Starts memfs as the user on `mnt` with `args` and waits until it is mounted.
    fn serve(&self, args: &[&str]) -> UserServer {
        let log = self.scratch.dir.join("memfs.log");
        let mut cmd = self.command(&self.memfs);
        let file = fs::File::create(&log).unwrap();
        cmd.arg(&self.scratch.mnt)
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        let child = cmd.spawn().expect("start memfs as the test user");
        let mut server = UserServer {
            child: Some(child),
            mnt: self.scratch.mnt.clone(),
            log,
        };
        server.wait_mounted();
        server
    }
}

/// memfs running as the test user. Dropping it unmounts (`fusermount3 -u -z`, then a lazy
/// `umount2` as root for anything left), then SIGTERM, SIGKILL, and reaps it.
struct UserServer {
    child: Option<Child>,
    mnt: PathBuf,
    log: PathBuf,
}

impl UserServer {
    fn stderr(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_mounted(&mut self) {
        let start = Instant::now();
        while !is_fuse_mount(&self.mnt) {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!(
                    "memfs exited ({status}) before mounting; stderr:\n{}",
                    self.stderr()
                );
            }
            assert!(
                start.elapsed() < WAIT,
                "memfs did not mount within {WAIT:?}; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pid(&self) -> rustix::process::Pid {
        let id = self.child.as_ref().expect("running").id();
        rustix::process::Pid::from_raw(i32::try_from(id).unwrap()).unwrap()
    }

    /// Waits (at most [`WAIT`]) for the server to exit; its status.
    fn wait_exit(&mut self) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        let child = self.child.as_mut()?;
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                self.child = None;
                return Some(s);
            }
            if start.elapsed() > WAIT {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for UserServer {
    fn drop(&mut self) {
        let _ = Command::new("fusermount3")
            .args(["-u", "-z", "--"])
            .arg(&self.mnt)
            .stderr(Stdio::null())
            .status();
        detach_all(&self.mnt);
        if let Some(mut child) = self.child.take() {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(i32::try_from(child.id()).unwrap()).unwrap(),
                Signal::TERM,
            );
            let start = Instant::now();
            while child.try_wait().ok().flatten().is_none() {
                if start.elapsed() > Duration::from_secs(5) {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        detach_all(&self.mnt);
    }
}

fn is_fuse_mount(path: &Path) -> bool {
    mounts_under(path)
        .iter()
        .any(|l| l.mount_point == path && l.fstype.starts_with("fuse"))
}

/// Waits (at most [`WAIT`]) until nothing is mounted on `path`.
fn wait_unmounted(path: &Path) -> bool {
    let start = Instant::now();
    while is_fuse_mount(path) {
        if start.elapsed() > WAIT {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// The pids of live (not zombie) processes named `comm` whose command line names `mnt`.
fn processes(comm: &str, mnt: &Path) -> Vec<u32> {
    let needle = mnt.as_os_str().as_encoded_bytes();
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let name = fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let state = fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // A zombie (adopted by an init that has not reaped it yet) is gone already.
        let zombie = state
            .rsplit(')')
            .next()
            .is_some_and(|s| s.trim_start().starts_with('Z'));
        if name.trim() == comm && !zombie && cmdline.windows(needle.len()).any(|w| w == needle) {
            pids.push(pid);
        }
    }
    pids
}

/// The auto-unmount watchers (`rf-autounmount`: their command line is the server's) of
/// `mnt`.
fn watchers_of(mnt: &Path) -> Vec<u32> {
    processes("rf-autounmount", mnt)
}

/// Waits (at most [`WAIT`]) until no watcher of `mnt` is left.
fn wait_no_watchers(mnt: &Path) -> Vec<u32> {
    wait_none(|| watchers_of(mnt))
}

/// Polls `list` until it is empty or [`WAIT`] has passed; what is left.
fn wait_none(list: impl Fn() -> Vec<u32>) -> Vec<u32> {
    let start = Instant::now();
    loop {
        let left = list();
        if left.is_empty() || start.elapsed() > WAIT {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What the user does on the mount, and what it must see: files, directories, renames,
/// symlinks, truncation, ownership, a 2 MiB file, an errno (ENOENT), permissions (EACCES for
/// a mode-000 file, since memfs mounts with default_permissions), the listing after cleanup.
const WORKLOAD: &str = r#"set -u
cd "$1"
printf hello > a && cat a && echo
mkdir d && mv a d/b && ls d
ln -s d/b l && cat l && echo
truncate -s 3 d/b && cat d/b && echo
stat -c '%U %a %s' d/b
dd if=/dev/zero of=big bs=64k count=32 2>/dev/null && stat -c %s big && rm big
mkdir d2/x 2>/dev/null || echo "mkdir d2/x: failed as it should"
touch p && chmod 000 p && { cat p 2>/dev/null || echo "cat p: denied"; }
rm -f l d/b p && rmdir d && ls -A | wc -l
"#;

fn workload_expected(user: &str) -> String {
    format!(
        "hello\nb\nhello\nhel\n{user} 644 3\n2097152\nmkdir d2/x: failed as it should\n\
         cat p: denied\n0\n"
    )
}

fn check_workload(us: &UserScratch, what: &str) {
    let out = us.sh(WORKLOAD, &[&us.scratch.mnt]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        workload_expected(USER),
        "{what}: the user's workload on the mount; stderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_user_mounts_memfs_through_fusermount3_on_both_transports() {
    let _serial = serial();
    if !can_mount() {
        return;
    }
    require_fusermount();
    for (transport, per_cpu) in [
        ("classic", false),
        ("native", false),
        ("classic", true),
        ("native", true),
    ] {
        let what = format!(
            "--transport {transport}{}",
            if per_cpu { " --per-cpu" } else { "" }
        );
        let us = UserScratch::new();
        let mut args = vec!["--transport", transport];
        if per_cpu {
            args.push("--per-cpu");
        }
        let server = us.serve(&args);
        let line = mounts_under(&us.scratch.mnt);
        assert_eq!(line.len(), 1, "{what}: {line:?}");
        assert_eq!(line[0].fstype, "fuse.memfs", "{what}");
        // fusermount3 records the user as the mount's owner.
        let opts = fs::read_to_string("/proc/self/mounts").unwrap();
        let mounts_line = opts
            .lines()
            .find(|l| l.contains(us.scratch.mnt.to_str().unwrap()))
            .unwrap()
            .to_owned();
        assert!(
            mounts_line.contains(&format!("user_id={}", us.uid)),
            "{what}: {mounts_line}"
        );
        // Root may not look in: no allow_other (the kernel's check, not memfs's).
        let root_stat = fs::metadata(us.scratch.mnt.join("x"));
        assert_eq!(
            root_stat.map_err(|e| e.raw_os_error()).err(),
            Some(Some(libc_eacces())),
            "{what}: root without allow_other"
        );
        check_workload(&us, &what);
        // The user unmounts with fusermount3 -u; the server then exits cleanly.
        let out = us.sh("fusermount3 -u \"$1\"", &[&us.scratch.mnt]);
        assert!(out.status.success(), "{what}: fusermount3 -u: {out:?}");
        let mut server = server;
        let status = server.wait_exit();
        assert!(
            status.is_some_and(|s| s.success()),
            "{what}: memfs after fusermount3 -u: {status:?}; stderr:\n{}",
            server.stderr()
        );
        assert!(!is_fuse_mount(&us.scratch.mnt), "{what}: still mounted");
        assert!(
            server
                .stderr()
                .contains(&format!("over the {} transport", capitalized(transport))),
            "{what}: the transport INIT settled; stderr:\n{}",
            server.stderr()
        );
    }
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn libc_eacces() -> i32 {
    rustix::io::Errno::ACCESS.raw_os_error()
}

#[test]
fn allow_other_without_user_allow_other_is_refused_with_the_fix() {
    let _serial = serial();
    if !can_mount() {
        return;
    }
    require_fusermount();
    let conf = fs::read_to_string("/etc/fuse.conf").unwrap_or_default();
    assert!(
        !conf.lines().any(|l| l.trim() == "user_allow_other"),
        "cannot run here: /etc/fuse.conf allows user_allow_other, so fusermount3 would not \
         refuse"
    );
    let us = UserScratch::new();
    let mut cmd = us.command(&us.memfs);
    cmd.arg(&us.scratch.mnt).args(["-o", "allow_other"]);
    let out = run(&mut cmd, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "memfs -o allow_other as a user: {out:?}"
    );
    for needle in [
        "user_allow_other",
        "/etc/fuse.conf",
        "echo user_allow_other",
    ] {
        assert!(
            stderr.contains(needle),
            "the message names {needle:?}: {stderr}"
        );
    }
    assert!(!is_fuse_mount(&us.scratch.mnt), "nothing stays mounted");
}

#[test]
fn a_user_mount_on_a_directory_of_someone_else_is_refused_with_the_fix() {
    let _serial = serial();
    if !can_mount() {
        return;
    }
    require_fusermount();
    let us = UserScratch::new();
    let theirs = us.scratch.subdir("roots"); // owned by root, mode 0755
    let mut cmd = us.command(&us.memfs);
    cmd.arg(&theirs);
    let out = run(&mut cmd, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        stderr.contains("no write access to mountpoint") && stderr.contains("mkdir ~/mnt"),
        "{stderr}"
    );
    assert!(!is_fuse_mount(&theirs));
}

#[test]
fn kill_9_with_auto_unmount_leaves_no_mount_through_fusermount3() {
    let _serial = serial();
    if !can_mount() {
        return;
    }
    require_fusermount();
    for transport in ["classic", "native"] {
        let us = UserScratch::new();
        let mut server = us.serve(&["-o", "auto_unmount", "--transport", transport]);
        check_workload(&us, transport);
        rustix::process::kill_process(server.pid(), Signal::KILL).unwrap();
        assert!(
            server.wait_exit().is_some(),
            "{transport}: memfs survived SIGKILL"
        );
        assert!(
            wait_unmounted(&us.scratch.mnt),
            "{transport}: the mount outlived its server by {WAIT:?} (auto_unmount)"
        );
        assert_eq!(
            wait_no_watchers(&us.scratch.mnt),
            Vec::<u32>::new(),
            "{transport}"
        );
        // The directory is usable again, as the user's own.
        let out = us.sh("touch \"$1/again\" && ls \"$1\"", &[&us.scratch.mnt]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "again\n",
            "{transport}"
        );
    }
}

#[test]
fn kill_9_with_auto_unmount_leaves_no_mount_direct() {
    let _serial = serial();
    if !can_mount() {
        return;
    }
    let scratch = Scratch::new();
    let mut server = Server::start(&memfs_bin(), &scratch.mnt, &["-o", "auto_unmount"]);
    fs::write(scratch.mnt.join("f"), "x").unwrap();
    assert_eq!(
        watchers_of(&scratch.mnt).len(),
        1,
        "one watcher for the mount"
    );
    server.signal(Signal::KILL);
    assert!(server.wait_exit(WAIT).is_some(), "memfs survived SIGKILL");
    assert!(
        wait_unmounted(&scratch.mnt),
        "the direct mount outlived its server by {WAIT:?} (auto_unmount)"
    );
    assert_eq!(wait_no_watchers(&scratch.mnt), Vec::<u32>::new());
    assert_eq!(
        fs::read_dir(&scratch.mnt).unwrap().count(),
        0,
        "the bare directory again"
    );

    // Unmounted normally, the watcher goes too, and leaves a later mount there alone.
    let mut server = Server::start(&memfs_bin(), &scratch.mnt, &["-o", "auto_unmount"]);
    let status = Command::new("umount").arg(&scratch.mnt).status().unwrap();
    assert!(status.success());
    server.expect_clean_exit(WAIT, "after umount");
    assert_eq!(wait_no_watchers(&scratch.mnt), Vec::<u32>::new());
    drop(server);

    // Without the option: no watcher, and kill -9 leaves the dead mount (ENOTCONN), as in
    // libfuse; the guard cleans it up.
    let mut server = Server::start(&memfs_bin(), &scratch.mnt, &[]);
    assert!(watchers_of(&scratch.mnt).is_empty());
    server.signal(Signal::KILL);
    assert!(server.wait_exit(WAIT).is_some());
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        is_fuse_mount(&scratch.mnt),
        "no auto_unmount: the dead mount stays"
    );
    let e = fs::read_dir(&scratch.mnt).unwrap_err();
    assert_eq!(
        e.raw_os_error(),
        Some(rustix::io::Errno::NOTCONN.raw_os_error())
    );
}

#[test]
fn uid_0_of_a_user_namespace_mounts_directly() {
    let _serial = serial();
    if !can_mount() {
        return;
    }
    let us = UserScratch::new();
    let max = fs::read_to_string("/proc/sys/user/max_user_namespaces").unwrap_or_default();
    assert!(
        max.trim().parse::<u64>().unwrap_or(0) > 0,
        "cannot run here: user namespaces are off (/proc/sys/user/max_user_namespaces)"
    );
    // In its own user and mount namespace the user is uid 0 and memfs calls mount(2) itself
    // (no fusermount3: PATH has none, RINGFUSE_FUSERMOUNT names nothing). The mount is only
    // visible in that namespace; the script checks it there, then stops the server.
    let script = r#"set -u
mnt=$1 memfs=$2 log=$3/memfs.log
RINGFUSE_FUSERMOUNT=/nonexistent "$memfs" "$mnt" -o fsname=inns >"$log" 2>&1 &
pid=$!
i=0
until grep -q " $mnt fuse.memfs " /proc/self/mounts; do
  i=$((i+1)); [ $i -gt 500 ] && { echo "not mounted"; cat "$log"; kill $pid; exit 1; }
  sleep 0.02
done
grep " $mnt " /proc/self/mounts | cut -d' ' -f1,3
id -u
echo data > "$mnt/f" && cat "$mnt/f" && stat -c '%u' "$mnt/f"
kill $pid; wait $pid; echo "exit $?"
grep -c " $mnt " /proc/self/mounts
"#;
    let mut cmd = us.command("unshare");
    cmd.args(["-Urm", "sh", "-c", script, "sh"])
        .arg(&us.scratch.mnt)
        .arg(&us.memfs)
        .arg(&us.own);
    let out = run(&mut cmd, Duration::from_secs(60));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "inns fuse.memfs\n0\ndata\n0\nexit 0\n0\n",
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !is_fuse_mount(&us.scratch.mnt),
        "never visible outside the namespace"
    );
}

/// `/sbin/mount.fuse.NAME` pointing at memfs for one test, with a name of its own so that
/// it never shadows a real helper; removed on drop.
struct HelperLink {
    link: PathBuf,
    name: String,
}

impl HelperLink {
    fn new(bin: &Path) -> Self {
        let name = format!("rftest{}", std::process::id());
        let link = PathBuf::from(format!("/sbin/mount.fuse.{name}"));
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(bin, &link).expect("symlink into /sbin");
        Self { link, name }
    }
}

impl Drop for HelperLink {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.link);
    }
}

/// The memfs servers serving `mnt` (found by their command line).
fn servers_of(mnt: &Path) -> Vec<u32> {
    processes("memfs", mnt)
}

/// Unmounts `mnt` and kills any server left on it (the detached servers are not our
/// children): the guard of the `mount -t` test.
struct Detached(PathBuf);

impl Drop for Detached {
    fn drop(&mut self) {
        detach_all(&self.0);
        for pid in servers_of(&self.0) {
            let pid = rustix::process::Pid::from_raw(i32::try_from(pid).unwrap()).unwrap();
            let _ = rustix::process::kill_process(pid, Signal::KILL);
        }
    }
}

fn wait_no_servers(mnt: &Path) -> Vec<u32> {
    wait_none(|| servers_of(mnt))
}

#[test]
fn mount_t_fuse_memfs_fstab_remount_and_umount() {
    let _serial = serial();
    if !can_mount() {
        return;
    }
    let scratch = Scratch::new();
    let helper = HelperLink::new(&memfs_bin());
    let fstype = format!("fuse.{}", helper.name);
    let _guard = Detached(scratch.mnt.clone());

    // mount(8) runs the helper, which returns once the mount is served.
    let out = run(
        Command::new("mount")
            .args(["-t", &fstype, "mymem"])
            .arg(&scratch.mnt)
            .args(["-o", "size=8M,allow_other,noexec"]),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "mount -t {fstype}: {out:?}");
    let line = mounts_under(&scratch.mnt);
    assert_eq!(line.len(), 1, "{line:?}");
    assert_eq!(
        (line[0].source.as_str(), line[0].fstype.as_str()),
        ("mymem", fstype.as_str()),
        "fsname is the source, subtype the helper's name"
    );
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap();
    let opts = mounts
        .lines()
        .find(|l| l.contains(scratch.mnt.to_str().unwrap()))
        .unwrap();
    assert!(
        opts.contains("noexec") && opts.contains("allow_other"),
        "{opts}"
    );
    fs::write(scratch.mnt.join("f"), "through mount -t").unwrap();
    assert_eq!(
        fs::read_to_string(scratch.mnt.join("f")).unwrap(),
        "through mount -t"
    );
    let st = rustix::fs::statvfs(&scratch.mnt).unwrap();
    assert_eq!(
        st.f_blocks * st.f_frsize,
        8 << 20,
        "size=8M is memfs's capacity"
    );
    assert_eq!(servers_of(&scratch.mnt).len(), 1, "one detached server");

    // -o remount,ro: the kernel's flag changes; memfs keeps its files.
    let out = run(
        Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&scratch.mnt),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "remount,ro: {out:?}");
    let e = fs::write(scratch.mnt.join("g"), "x").unwrap_err();
    assert_eq!(
        e.raw_os_error(),
        Some(rustix::io::Errno::ROFS.raw_os_error())
    );
    assert_eq!(
        fs::read_to_string(scratch.mnt.join("f")).unwrap(),
        "through mount -t"
    );

    // umount(8) unmounts; the detached server then exits.
    let out = run(
        Command::new("umount").arg(&scratch.mnt),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "umount: {out:?}");
    assert!(!is_fuse_mount(&scratch.mnt));
    assert_eq!(
        wait_no_servers(&scratch.mnt),
        Vec::<u32>::new(),
        "server gone after umount"
    );

    // An fstab line (mount -T FILE reads it instead of /etc/fstab).
    let fstab = scratch.dir.join("fstab");
    fs::write(
        &fstab,
        format!(
            "memtab {} {fstype} size=4M,nodev 0 0\n",
            scratch.mnt.display()
        ),
    )
    .unwrap();
    let out = run(
        Command::new("mount")
            .arg("-T")
            .arg(&fstab)
            .arg(&scratch.mnt),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "mount -T fstab: {out:?}");
    let line = mounts_under(&scratch.mnt);
    assert_eq!(line.first().map(|l| l.source.as_str()), Some("memtab"));
    let st = rustix::fs::statvfs(&scratch.mnt).unwrap();
    assert_eq!(st.f_blocks * st.f_frsize, 4 << 20);
    let out = run(
        Command::new("umount").arg(&scratch.mnt),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "umount: {out:?}");
    assert_eq!(wait_no_servers(&scratch.mnt), Vec::<u32>::new());

    // A failure is a non-zero exit with the server's own message, and nothing mounted.
    let out = run(
        Command::new("mount")
            .args(["-t", &fstype, "bad"])
            .arg(&scratch.mnt)
            .args(["-o", "no_such_option"]),
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        stderr.contains("no_such_option") && stderr.contains("exited with status"),
        "{stderr}"
    );
    assert!(!is_fuse_mount(&scratch.mnt));
    assert!(servers_of(&scratch.mnt).is_empty());
}

#[test]
fn allow_root_lets_root_and_the_mounter_in_and_nobody_else() {
    let _serial = serial();
    if !can_mount() {
        return;
    }
    let us = UserScratch::new();
    let listing = |us: &UserScratch| {
        let out = us.sh("ls \"$1\" 2>&1; echo \"status $?\"", &[&us.scratch.mnt]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Mounted by root: with allow_other the user sees the files, with allow_root it is
    // refused (EACCES from the session, not the kernel: the kernel got allow_other), and
    // root (the mounter) gets in either way.
    for (option, user_sees) in [("allow_other", true), ("allow_root", false)] {
        let server = Server::start(&memfs_bin(), &us.scratch.mnt, &["-o", option]);
        fs::write(us.scratch.mnt.join("f"), "x").unwrap();
        let seen = listing(&us);
        if user_sees {
            assert_eq!(seen, "f\nstatus 0\n", "{option}");
        } else {
            assert!(
                seen.contains("Permission denied") && seen.ends_with("status 2\n"),
                "{option}: {seen}"
            );
        }
        assert_eq!(
            fs::read_to_string(us.scratch.mnt.join("f")).unwrap(),
            "x",
            "{option}"
        );
        let mounts = fs::read_to_string("/proc/self/mounts").unwrap();
        let line = mounts
            .lines()
            .find(|l| l.contains(us.scratch.mnt.to_str().unwrap()))
            .unwrap();
        assert!(line.contains("allow_other"), "{option}: {line}");
        drop(server);
    }
}
