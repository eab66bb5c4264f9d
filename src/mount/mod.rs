//! Mounting and unmounting a FUSE filesystem, for root and for every other user.
//!
//! [`mount`] picks one of two ways ([`MountMethod`]):
//! - **direct**: as fuse-protocol.md §1.1 says, it checks the mount point, opens
//!   `/dev/fuse`, and calls `mount(2)` with `fd=N,rootmode=…,user_id=…,group_id=…` plus the
//!   kernel options of [`MountOptions`]. This needs `CAP_SYS_ADMIN` in the mount's user
//!   namespace: root, or uid 0 of a user namespace (`unshare -Urm`, a rootless container);
//! - **through fusermount3** (`std` only), libfuse's setuid helper, for everyone else: it
//!   mounts on the user's behalf and passes the `/dev/fuse` fd back over a Unix socket.
//!
//! The default, [`MountMethod::Auto`], tries the direct way and falls back to fusermount3
//! when the kernel says the process may not (`mount(2)` EPERM, `/dev/fuse` not openable).
//! With [`MountOptions::auto_unmount`] the mount goes away when the server process ends,
//! even by `kill -9`: a small watcher process unmounts it. [`helper`] lets a filesystem binary be its own `mount.fuse.NAME` helper,
//! for `mount -t fuse.NAME` and `/etc/fstab`.
//!
//! The returned [`Mount`] owns the `/dev/fuse` fd; dropping it unmounts (lazily). A server
//! must still answer `FUSE_INIT` on that fd: until it does, every access to the mount from
//! any process blocks.
//!
//! A direct mount allocates nothing: names live in fixed-capacity strings, paths in
//! `PATH_MAX` arrays, and every error is a small `Copy` value. Only the fusermount3 way and
//! the helper allocate (a child process and its arguments), once per mount. Nothing here
//! panics.
//!
//! ```no_run
//! use ringfuse::mount::{MountOptions, mount};
//!
//! let mut options = MountOptions::new();
//! options.fsname("memfs")?.parse_opts("default_permissions,max_read=131072")?;
//! let m = mount("/mnt/memfs", &options)?;
//! // ... serve requests on m.fd() ...
//! m.unmount()?;
//! # Ok::<(), ringfuse::mount::MountError>(())
//! ```

#[cfg(feature = "std")]
extern crate std;

use core::ffi::CStr;
use core::fmt::{self, Write as _};

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::io::Errno;
use rustix::mount::MountFlags;

use crate::sys::{self, PATH_MAX};

#[cfg(feature = "std")]
mod fusermount;
#[cfg(feature = "std")]
pub mod helper;

#[cfg(feature = "std")]
pub use fusermount::FUSERMOUNT_ENV;

/// Longest accepted `fsname`, in bytes.
pub const MAX_FSNAME_LEN: usize = 255;

/// Longest accepted `subtype`, in bytes.
pub const MAX_SUBTYPE_LEN: usize = 63;

/// The `-o` options [`MountOptions::parse_opts`] understands, as named in its errors.
pub const ACCEPTED_OPTIONS: &str = "default_permissions, allow_other, allow_root, \
    auto_unmount, fsname=NAME, subtype=NAME, max_read=BYTES, ro, rw, noatime, atime, relatime, \
    strictatime, norelatime, nodiratime, diratime, suid, nosuid, dev, nodev, exec, noexec, sync, \
    async, dirsync, nonempty (ignored), x-* (ignored)";

/// The options that take no value.
const FLAGS: [&str; 23] = [
    "default_permissions",
    "allow_other",
    "allow_root",
    "auto_unmount",
    "strictatime",
    "norelatime",
    "diratime",
    "nonempty",
    "ro",
    "rw",
    "noatime",
    "atime",
    "relatime",
    "nodiratime",
    "suid",
    "nosuid",
    "dev",
    "nodev",
    "exec",
    "noexec",
    "sync",
    "async",
    "dirsync",
];

/// The options that take a value.
const VALUED: [&str; 4] = ["fsname", "subtype", "max_read", "blksize"];

// ---------------------------------------------------------------------------------------------
// Errors

/// A line of text kept without heap for [`MountError`] (what fusermount3 printed): at most
/// 96 bytes, cut at a character boundary.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Text {
    bytes: [u8; 96],
    len: u8,
}

impl Text {
    /// Empty.
    pub const fn new() -> Self {
        Self {
            bytes: [0; 96],
            len: 0,
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        let bytes = self.bytes.get(..usize::from(self.len)).unwrap_or_default();
        core::str::from_utf8(bytes).unwrap_or_default()
    }
}

impl Default for Text {
    fn default() -> Self {
        Self::new()
    }
}

/// Appends what fits, cut at a character boundary.
impl fmt::Write for Text {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            let start = usize::from(self.len);
            let end = start + c.len_utf8();
            let Some(dst) = self.bytes.get_mut(start..end) else {
                return Ok(());
            };
            c.encode_utf8(dst);
            self.len = end as u8;
        }
        Ok(())
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// What fusermount3 said when it refused or failed, read from its message.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FusermountReason {
    /// `allow_other` or `allow_root` asked by a user while `/etc/fuse.conf` lacks
    /// `user_allow_other`.
    AllowOtherNotAllowed,
    /// The mount point is not the user's (fusermount3 mounts only on a directory the user
    /// owns, or may write to).
    MountPointNotOwned,
    /// The user has as many FUSE mounts as `mount_max` in `/etc/fuse.conf` allows.
    MountLimit,
    /// No `/dev/fuse`.
    NoDevice,
    /// `/dev/fuse` could not be opened.
    DeviceAccess,
    /// It did not know an option ringfuse passed.
    UnknownOption,
    /// Unmount: the path is not a FUSE mount of this user.
    NotMounted,
    /// Unmount: the mount is busy.
    Busy,
    /// Something else: see the message.
    Other,
}

/// A failure reported by fusermount3: its cause, exit status and last line of output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FusermountFailure {
    /// The cause, as far as its message tells.
    pub reason: FusermountReason,
    /// Its exit status (`None`: killed by a signal).
    pub status: Option<i32>,
    /// The last line it printed, without its `fusermount3: ` prefix.
    pub message: Text,
}

/// The name of a mount option, kept without heap for [`MountError`]: at most 32 bytes, cut
/// at a character boundary (its `Display` marks a cut with `…`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct OptionName {
    bytes: [u8; 32],
    len: u8,
    truncated: bool,
}

impl OptionName {
    fn new(name: &str) -> Self {
        let mut bytes = [0_u8; 32];
        let mut len = 0;
        for (i, c) in name.char_indices() {
            let end = i + c.len_utf8();
            if end > bytes.len() {
                break;
            }
            len = end;
        }
        if let (Some(dst), Some(src)) = (bytes.get_mut(..len), name.as_bytes().get(..len)) {
            dst.copy_from_slice(src);
        }
        Self {
            bytes,
            len: len as u8,
            truncated: len < name.len(),
        }
    }

    /// The (possibly cut) option name.
    pub fn as_str(&self) -> &str {
        let bytes = self.bytes.get(..usize::from(self.len)).unwrap_or_default();
        core::str::from_utf8(bytes).unwrap_or_default()
    }
}

impl fmt::Display for OptionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())?;
        if self.truncated {
            f.write_str("…")?;
        }
        Ok(())
    }
}

impl fmt::Debug for OptionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// Why a mount, an unmount or a connection operation failed.
///
/// Its `Display` names the cause and the fix. A failed [`mount`] leaves nothing mounted.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MountError {
    /// `mount(2)` answered EPERM: the process lacks `CAP_SYS_ADMIN`.
    NotRoot,
    /// `/dev/fuse` does not exist (ENOENT, ENODEV or ENXIO on open).
    NoFuseDevice,
    /// `/dev/fuse` exists but this process may not open it (the errno: EACCES or EPERM).
    FuseDevicePermission(Errno),
    /// Opening `/dev/fuse` failed for another reason.
    OpenFuseDevice(Errno),
    /// The mount point does not exist.
    MountPointNotFound,
    /// The mount point, or a component of its path, is not a directory.
    NotADirectory,
    /// The mount point path is empty, holds a NUL byte or is longer than `PATH_MAX`.
    BadMountPoint,
    /// The mount point could not be examined (the errno of `open`/`statx`).
    MountPointAccess(Errno),
    /// [`MountOptions::parse_opts`] met an option it does not know.
    UnknownOption(OptionName),
    /// An option has a value it should not have, lacks one it needs, or the value is bad.
    BadOptionValue(OptionName),
    /// A name option (`fsname`, `subtype`) is longer than its fixed capacity.
    OptionTooLong {
        /// The option.
        option: &'static str,
        /// Its capacity in bytes.
        max: usize,
    },
    /// `mount(2)` failed with this errno (other than EPERM).
    Mount(Errno),
    /// `umount2(2)` failed with this errno.
    Unmount(Errno),
    /// `FUSE_DEV_IOC_CLONE` failed with this errno.
    Clone(Errno),
    /// Writing to `/sys/fs/fuse/connections/N/abort` failed with this errno.
    Abort(Errno),
    /// This process may not mount by itself (not root, or no `CAP_SYS_ADMIN`) and there is no
    /// `fusermount3`.
    NoFusermount,
    /// fusermount3 refused or failed.
    Fusermount(FusermountFailure),
    /// fusermount3 (or the auto-unmount watcher) could not be started (the errno).
    Spawn(Errno),
    /// The option cannot be had on this mount: `blksize=` (only for `fuseblk` mounts),
    /// `strictatime` through fusermount3 (it does not pass it on), or a way of mounting
    /// that needs the `std` feature.
    Unsupported(&'static str),
}

impl MountError {
    /// The errno closest to this error, for callers that must report one.
    pub fn errno(&self) -> Errno {
        match *self {
            Self::NotRoot | Self::NoFusermount => Errno::PERM,
            Self::NoFuseDevice | Self::MountPointNotFound => Errno::NOENT,
            Self::NotADirectory => Errno::NOTDIR,
            Self::BadMountPoint
            | Self::UnknownOption(_)
            | Self::BadOptionValue(_)
            | Self::OptionTooLong { .. }
            | Self::Unsupported(_) => Errno::INVAL,
            Self::Fusermount(f) => match f.reason {
                FusermountReason::AllowOtherNotAllowed | FusermountReason::MountPointNotOwned => {
                    Errno::PERM
                }
                FusermountReason::MountLimit => Errno::NOSPC,
                FusermountReason::NoDevice => Errno::NODEV,
                FusermountReason::DeviceAccess => Errno::ACCESS,
                FusermountReason::UnknownOption | FusermountReason::NotMounted => Errno::INVAL,
                FusermountReason::Busy => Errno::BUSY,
                FusermountReason::Other => Errno::IO,
            },
            Self::FuseDevicePermission(e)
            | Self::OpenFuseDevice(e)
            | Self::MountPointAccess(e)
            | Self::Mount(e)
            | Self::Unmount(e)
            | Self::Clone(e)
            | Self::Abort(e)
            | Self::Spawn(e) => e,
        }
    }
}

/// The shared advice for permission problems.
const ROOT_HINT: &str = "run as root, or let ringfuse mount through fusermount3 \
    (MountMethod::Auto or Fusermount; apt-get install fuse3)";

impl fmt::Display for MountError {
    #[allow(clippy::too_many_lines)] // one arm per cause, each with its fix
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NotRoot => write!(f, "mount(2) refused: operation not permitted ({ROOT_HINT})"),
            Self::NoFuseDevice => f.write_str(
                "cannot open /dev/fuse: no such device (load the fuse module: modprobe fuse)",
            ),
            Self::FuseDevicePermission(e) => {
                write!(f, "cannot open /dev/fuse: {e} ({ROOT_HINT})")
            }
            Self::OpenFuseDevice(e) => write!(
                f,
                "cannot open /dev/fuse: {e} (it should be the character device 10:229; \
                 check `ls -l /dev/fuse` and `modprobe fuse`)"
            ),
            Self::MountPointNotFound => {
                f.write_str("mount point does not exist (create the directory first: mkdir -p)")
            }
            Self::NotADirectory => f.write_str(
                "mount point is not a directory, or a component of its path is not \
                 (ringfuse mounts on directories only: pick or create one)",
            ),
            Self::BadMountPoint => write!(
                f,
                "mount point path is empty, contains a NUL byte or is longer than {} bytes \
                 (pass an existing directory's path)",
                PATH_MAX - 1
            ),
            Self::MountPointAccess(e) => {
                let hint = match e {
                    Errno::NOTCONN => {
                        "a dead FUSE mount is in the way: unmount it first with umount -l"
                    }
                    Errno::ACCESS | Errno::PERM => "check the permissions of its parents",
                    Errno::LOOP => "its path has a symlink loop",
                    _ => "check that the path is reachable",
                };
                write!(f, "cannot examine the mount point: {e} ({hint})")
            }
            Self::UnknownOption(name) => write!(
                f,
                "unknown mount option \"{name}\" (accepted: {ACCEPTED_OPTIONS})"
            ),
            Self::BadOptionValue(name) => write!(
                f,
                "bad value for mount option \"{name}\" (fsname= and subtype= take a name without \
                 NUL bytes, max_read= takes a number of bytes, the other options take no value)"
            ),
            Self::OptionTooLong { option, max } => write!(
                f,
                "mount option {option} is longer than {max} bytes (shorten it)"
            ),
            Self::Mount(e) => {
                let hint = match e {
                    Errno::NODEV => "the kernel has no fuse filesystem type: modprobe fuse",
                    Errno::INVAL => {
                        "the kernel rejected the options or the subtype; check the mount \
                         options and dmesg"
                    }
                    Errno::BUSY => "the mount point is busy",
                    Errno::NOENT => "the mount point disappeared",
                    Errno::NOTDIR => "the mount point is not a directory",
                    Errno::ACCESS => "a parent directory is not searchable",
                    Errno::NOSPC => {
                        "the mount namespace holds as many mounts as /proc/sys/fs/mount-max \
                         allows: unmount some, or raise it"
                    }
                    Errno::NOMEM => "the kernel is out of memory; unmount something",
                    _ => "see mount(2)",
                };
                write!(f, "mount(2) failed: {e} ({hint})")
            }
            Self::Unmount(e) => {
                let hint = match e {
                    Errno::PERM => ROOT_HINT,
                    Errno::BUSY => {
                        "another filesystem is mounted on top of it; unmount that one first"
                    }
                    Errno::INVAL => "it is not a mount point any more",
                    _ => "see umount2(2)",
                };
                write!(f, "cannot unmount: {e} ({hint})")
            }
            Self::Clone(e) => write!(
                f,
                "cannot clone the /dev/fuse session (FUSE_DEV_IOC_CLONE): {e} (the session fd \
                 must be a mounted /dev/fuse fd; ENOTTY means the kernel lacks the ioctl)"
            ),
            Self::Abort(e) => write!(
                f,
                "cannot abort the FUSE connection: {e} (needs root and fusectl at \
                 /sys/fs/fuse/connections: mount -t fusectl none /sys/fs/fuse/connections; \
                 ENOENT means the connection is gone already)"
            ),
            Self::NoFusermount => f.write_str(
                "cannot mount: this process may not mount(2) (it is not root, or lacks \
                 CAP_SYS_ADMIN) and fusermount3, which mounts FUSE filesystems for other users, \
                 is not installed (install it: apt-get install fuse3; or name it in \
                 RINGFUSE_FUSERMOUNT; or run as root)",
            ),
            Self::Fusermount(failure) => fmt_fusermount(f, &failure),
            Self::Spawn(e) => write!(
                f,
                "cannot start a helper process (fusermount3 or the auto-unmount watcher): {e}"
            ),
            Self::Unsupported(what) => write!(f, "{what}"),
        }
    }
}

fn fmt_fusermount(f: &mut fmt::Formatter<'_>, failure: &FusermountFailure) -> fmt::Result {
    let hint = match failure.reason {
        FusermountReason::AllowOtherNotAllowed => {
            "a user other than root may mount with allow_other or allow_root only if \
             /etc/fuse.conf has the line user_allow_other: as root, \
             echo user_allow_other >> /etc/fuse.conf; or mount without the option"
        }
        FusermountReason::MountPointNotOwned => {
            "fusermount3 mounts only on a directory the user may write to: mount on one of \
             yours (mkdir ~/mnt), or chown it"
        }
        FusermountReason::MountLimit => {
            "this user has as many FUSE mounts as /etc/fuse.conf's mount_max allows \
             (default 1000): unmount some (fusermount3 -u DIR) or raise mount_max"
        }
        FusermountReason::NoDevice => "load the fuse module: modprobe fuse",
        FusermountReason::DeviceAccess => {
            "fusermount3 opens /dev/fuse as the user: it must be crw-rw-rw- as distributions' \
             udev rules make it (as root: chmod 0666 /dev/fuse)"
        }
        FusermountReason::UnknownOption => {
            "this fusermount3 does not know an option ringfuse passed; leave it out"
        }
        FusermountReason::NotMounted => "it is not mounted, or not by this user",
        FusermountReason::Busy => "it is busy",
        FusermountReason::Other => "see its message",
    };
    match failure.status {
        Some(code) => write!(f, "fusermount3 failed (exit status {code})")?,
        None => f.write_str("fusermount3 failed (killed by a signal)")?,
    }
    if failure.message.as_str().is_empty() {
        write!(f, " ({hint})")
    } else {
        write!(f, ": {} ({hint})", failure.message)
    }
}

impl core::error::Error for MountError {}

#[cfg(feature = "std")]
impl From<MountError> for std::io::Error {
    fn from(e: MountError) -> Self {
        Self::new(Self::from(e.errno()).kind(), e)
    }
}

// ---------------------------------------------------------------------------------------------
// Options

/// How [`mount`] mounts.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum MountMethod {
    /// `mount(2)` directly; if the kernel refuses this process (EPERM, or `/dev/fuse` not
    /// openable) and the `std` feature is on, through fusermount3. The default.
    #[default]
    Auto,
    /// `mount(2)` only: root, or uid 0 of a user namespace.
    Direct,
    /// fusermount3 only (`std` feature), even as root.
    Fusermount,
}

/// How a filesystem is mounted: the options of libfuse's `fusermount3`/`mount.fuse3` that
/// apply on Linux.
///
/// Setters take `&mut self` and return `&mut Self` for chaining, like
/// `std::process::Command`; the name setters can fail and return a `Result`. Defaults match
/// libfuse: subtype the program's name (its `argv[0]` file name, as libfuse's helpers set
/// it, so the mount shows as `fuse.PROGRAM` in `/proc/mounts`; none without `std`), `rw`,
/// `nosuid`, `nodev`, the kernel's `relatime`, no `auto_unmount`, [`MountMethod::Auto`].
/// `blksize=` is refused with an explanation: the kernel accepts it only for `fuseblk`
/// mounts (a block device), which ringfuse does not make. fusermount3 always mounts
/// `nosuid,nodev` for a user other than root (it ignores `suid` and `dev`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MountOptions {
    fsname: heapless::String<MAX_FSNAME_LEN>,
    subtype: heapless::String<MAX_SUBTYPE_LEN>,
    default_permissions: bool,
    allow_other: bool,
    allow_root: bool,
    auto_unmount: bool,
    method: MountMethod,
    max_read: Option<u32>,
    read_only: bool,
    noatime: bool,
    strictatime: bool,
    nodiratime: bool,
    nosuid: bool,
    nodev: bool,
    noexec: bool,
    sync: bool,
    dirsync: bool,
    nonblocking: bool,
}

impl Default for MountOptions {
    fn default() -> Self {
        let subtype = program_subtype();
        Self {
            fsname: heapless::String::new(),
            subtype,
            default_permissions: false,
            allow_other: false,
            allow_root: false,
            auto_unmount: false,
            method: MountMethod::Auto,
            max_read: None,
            read_only: false,
            noatime: false,
            strictatime: false,
            nodiratime: false,
            nosuid: true,
            nodev: true,
            noexec: false,
            sync: false,
            dirsync: false,
            nonblocking: false,
        }
    }
}

impl MountOptions {
    /// The defaults (see the type's documentation).
    pub fn new() -> Self {
        Self::default()
    }

    /// `fsname=NAME`: the "device" column of `/proc/mounts` (the `source` of `mount(2)`).
    /// Empty means unset: the source is then the subtype, or `/dev/fuse` without one.
    ///
    /// # Errors
    /// [`MountError::OptionTooLong`] beyond [`MAX_FSNAME_LEN`] bytes,
    /// [`MountError::BadOptionValue`] if it holds a NUL byte.
    pub fn fsname(&mut self, name: &str) -> Result<&mut Self, MountError> {
        self.fsname = checked_name(name, "fsname", false)?;
        Ok(self)
    }

    /// `subtype=NAME`: the filesystem type becomes `fuse.NAME`; empty gives plain `fuse`.
    ///
    /// # Errors
    /// [`MountError::OptionTooLong`] beyond [`MAX_SUBTYPE_LEN`] bytes,
    /// [`MountError::BadOptionValue`] if it holds a NUL byte.
    pub fn subtype(&mut self, name: &str) -> Result<&mut Self, MountError> {
        self.subtype = checked_name(name, "subtype", false)?;
        Ok(self)
    }

    /// `default_permissions`: the kernel checks file modes itself.
    pub fn default_permissions(&mut self, on: bool) -> &mut Self {
        self.default_permissions = on;
        self
    }

    /// `allow_other`: users other than the mounter may access the filesystem. A user other
    /// than root needs `user_allow_other` in `/etc/fuse.conf` for it (fusermount3 checks).
    pub fn allow_other(&mut self, on: bool) -> &mut Self {
        self.allow_other = on;
        self
    }

    /// `allow_root`: the mounter and root may access the filesystem, nobody else. The kernel
    /// gets `allow_other`, and the session answers EACCES to requests from other users (as
    /// libfuse does: operations on files already open, and FORGET, pass). Needs
    /// `user_allow_other` like `allow_other`.
    pub fn allow_root(&mut self, on: bool) -> &mut Self {
        self.allow_root = on;
        self
    }

    /// `auto_unmount`: unmount when the server process ends, however it ends (`kill -9`
    /// too), so no dead mount ("Transport endpoint is not connected") is left. A small
    /// watcher process (`std` feature) unmounts once the server is gone — with `umount2`,
    /// or `fusermount3 -u -z` for a mount fusermount3 made (whose own `auto_unmount` is
    /// not used: before libfuse 3.15 it ignores mounts without `allow_other`) — unless the
    /// mount there is no longer this one. Off by default, as in libfuse.
    pub fn auto_unmount(&mut self, on: bool) -> &mut Self {
        self.auto_unmount = on;
        self
    }

    /// How to mount (see [`MountMethod`]; [`MountMethod::Auto`] by default).
    pub fn method(&mut self, method: MountMethod) -> &mut Self {
        self.method = method;
        self
    }

    /// `max_read=BYTES`: the largest READ the kernel sends (it raises values below 4096).
    pub fn max_read(&mut self, bytes: u32) -> &mut Self {
        self.max_read = Some(bytes);
        self
    }

    /// `ro` (true) or `rw` (false, the default).
    pub fn read_only(&mut self, on: bool) -> &mut Self {
        self.read_only = on;
        self
    }

    /// `noatime` (true) or `relatime`/`atime` (false, the kernel's default `relatime`).
    pub fn noatime(&mut self, on: bool) -> &mut Self {
        self.noatime = on;
        if on {
            self.strictatime = false;
        }
        self
    }

    /// `strictatime` (true): every access updates atime; false: the kernel's `relatime`.
    /// Direct mounts only (fusermount3 does not pass it on).
    pub fn strictatime(&mut self, on: bool) -> &mut Self {
        self.strictatime = on;
        if on {
            self.noatime = false;
        }
        self
    }

    /// `nodiratime`: no access-time updates on directories.
    pub fn nodiratime(&mut self, on: bool) -> &mut Self {
        self.nodiratime = on;
        self
    }

    /// `nosuid` (true, the default) or `suid`.
    pub fn nosuid(&mut self, on: bool) -> &mut Self {
        self.nosuid = on;
        self
    }

    /// `nodev` (true, the default) or `dev`.
    pub fn nodev(&mut self, on: bool) -> &mut Self {
        self.nodev = on;
        self
    }

    /// `noexec` (true) or `exec` (false, the default).
    pub fn noexec(&mut self, on: bool) -> &mut Self {
        self.noexec = on;
        self
    }

    /// `sync` (true) or `async` (false, the default).
    pub fn sync(&mut self, on: bool) -> &mut Self {
        self.sync = on;
        self
    }

    /// `dirsync`: directory changes are synchronous.
    pub fn dirsync(&mut self, on: bool) -> &mut Self {
        self.dirsync = on;
        self
    }

    /// Not a mount option: open `/dev/fuse` with `O_NONBLOCK` (reads then fail with EAGAIN
    /// instead of waiting, for a server that polls before reading).
    pub fn nonblocking(&mut self, on: bool) -> &mut Self {
        self.nonblocking = on;
        self
    }

    /// Applies a libfuse-style `-o` string such as `"allow_other,fsname=memfs,max_read=65536"`.
    ///
    /// Options are separated by commas; a backslash makes the next character literal
    /// (`fsname=a\,b`); empty entries are skipped; later options override earlier ones. The
    /// accepted names are listed in [`ACCEPTED_OPTIONS`]. `nonempty` (libfuse 2's permission
    /// to mount over a non-empty directory, which ringfuse, like libfuse 3, always allows) and
    /// `x-*` options (for userspace tools, as in fstab) are accepted and ignored.
    ///
    /// # Errors
    /// [`MountError::UnknownOption`] naming the first unknown option,
    /// [`MountError::BadOptionValue`] for a flag given a value (`ro=1`), a valued option
    /// without one, or a bad number, [`MountError::OptionTooLong`] for an over-long name.
    /// On error `self` is left unchanged.
    pub fn parse_opts(&mut self, opts: &str) -> Result<&mut Self, MountError> {
        let mut next = self.clone();
        for entry in split_entries(opts).filter(|e| !e.is_empty() && !e.starts_with("x-")) {
            let (name, value) = match entry.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (entry, None),
            };
            next.apply(name, value)?;
        }
        *self = next;
        Ok(self)
    }

    /// Applies one parsed option.
    fn apply(&mut self, name: &str, value: Option<&str>) -> Result<(), MountError> {
        let Some(value) = value else {
            return if self.set_flag(name) {
                Ok(())
            } else if VALUED.contains(&name) {
                Err(MountError::BadOptionValue(OptionName::new(name)))
            } else {
                Err(MountError::UnknownOption(OptionName::new(name)))
            };
        };
        match name {
            "fsname" => self.fsname = checked_name(value, "fsname", true)?,
            "subtype" => self.subtype = checked_name(value, "subtype", true)?,
            "max_read" => {
                let bytes = value
                    .parse()
                    .map_err(|_| MountError::BadOptionValue(OptionName::new(name)))?;
                self.max_read = Some(bytes);
            }
            "blksize" => return Err(MountError::Unsupported(BLKSIZE)),
            _ if FLAGS.contains(&name) => {
                return Err(MountError::BadOptionValue(OptionName::new(name)));
            }
            _ => return Err(MountError::UnknownOption(OptionName::new(name))),
        }
        Ok(())
    }

    /// Sets the flag `name`; false if it is not a flag.
    fn set_flag(&mut self, name: &str) -> bool {
        match name {
            "default_permissions" => self.default_permissions = true,
            "allow_other" => self.allow_other = true,
            "allow_root" => self.allow_root = true,
            "auto_unmount" => self.auto_unmount = true,
            "nonempty" => {}
            "ro" => self.read_only = true,
            "rw" => self.read_only = false,
            "noatime" => {
                self.noatime = true;
                self.strictatime = false;
            }
            "atime" | "relatime" => {
                self.noatime = false;
                self.strictatime = false;
            }
            "strictatime" | "norelatime" => {
                self.noatime = false;
                self.strictatime = true;
            }
            "nodiratime" => self.nodiratime = true,
            "diratime" => self.nodiratime = false,
            "suid" => self.nosuid = false,
            "nosuid" => self.nosuid = true,
            "dev" => self.nodev = false,
            "nodev" => self.nodev = true,
            "exec" => self.noexec = false,
            "noexec" => self.noexec = true,
            "sync" => self.sync = true,
            "async" => self.sync = false,
            "dirsync" => self.dirsync = true,
            _ => return false,
        }
        true
    }

    /// The `fsname` (empty if unset).
    pub fn get_fsname(&self) -> &str {
        &self.fsname
    }

    /// The `subtype` (empty for plain `fuse`).
    pub fn get_subtype(&self) -> &str {
        &self.subtype
    }

    /// The `max_read` given, if any.
    pub fn get_max_read(&self) -> Option<u32> {
        self.max_read
    }

    /// Whether the mount is read-only.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Whether `/dev/fuse` is opened non-blocking.
    pub fn is_nonblocking(&self) -> bool {
        self.nonblocking
    }

    /// Whether `allow_root` is on.
    pub fn is_allow_root(&self) -> bool {
        self.allow_root
    }

    /// Whether `auto_unmount` is on.
    pub fn is_auto_unmount(&self) -> bool {
        self.auto_unmount
    }

    /// The way of mounting.
    pub fn get_method(&self) -> MountMethod {
        self.method
    }

    /// The `-o` string for fusermount3: its option names (no `relatime`, which is the
    /// default, no `strictatime`, which it does not know, and no `auto_unmount`, which
    /// ringfuse's watcher does), `allow_root` as the
    /// kernel's `allow_other` (the session enforces the rest), and for a user other than
    /// root no `suid`/`dev` (it would ignore them with a warning: its mounts are always
    /// `nosuid,nodev`).
    #[cfg(feature = "std")]
    fn fusermount_opts(&self) -> Result<std::string::String, MountError> {
        use std::string::String;
        if self.strictatime {
            return Err(MountError::Unsupported(
                "strictatime cannot be had through fusermount3, which does not pass it on \
                 (mount as root, or leave it out for the kernel's relatime)",
            ));
        }
        let mut out = String::new();
        let escaped = |out: &mut String, prefix: &str, name: &str| {
            out.push_str(prefix);
            for c in name.chars() {
                if matches!(c, ',' | '\\') {
                    out.push('\\');
                }
                out.push(c);
            }
        };
        if !self.fsname.is_empty() {
            escaped(&mut out, "fsname=", &self.fsname);
            out.push(',');
        }
        if !self.subtype.is_empty() {
            escaped(&mut out, "subtype=", &self.subtype);
            out.push(',');
        }
        let root = rustix::process::getuid().is_root();
        for (on, name) in [
            (self.default_permissions, "default_permissions"),
            (self.allow_other || self.allow_root, "allow_other"),
            (self.read_only, "ro"),
            (!self.read_only, "rw"),
            (self.noatime, "noatime"),
            (self.nodiratime, "nodiratime"),
            (self.nosuid, "nosuid"),
            (!self.nosuid && root, "suid"),
            (self.nodev, "nodev"),
            (!self.nodev && root, "dev"),
            (self.noexec, "noexec"),
            (!self.noexec, "exec"),
            (self.sync, "sync"),
            (self.dirsync, "dirsync"),
        ] {
            if on {
                out.push_str(name);
                out.push(',');
            }
        }
        if let Some(bytes) = self.max_read {
            let _ = write!(out, "max_read={bytes},");
        }
        out.pop();
        Ok(out)
    }

    /// The `MS_*` flags for `mount(2)`.
    fn flags(&self) -> MountFlags {
        let mut flags = MountFlags::empty();
        for (on, flag) in [
            (self.read_only, MountFlags::RDONLY),
            (self.noatime, MountFlags::NOATIME),
            (self.strictatime, MountFlags::STRICTATIME),
            (self.nodiratime, MountFlags::NODIRATIME),
            (self.nosuid, MountFlags::NOSUID),
            (self.nodev, MountFlags::NODEV),
            (self.noexec, MountFlags::NOEXEC),
            (self.sync, MountFlags::SYNCHRONOUS),
            (self.dirsync, MountFlags::DIRSYNC),
        ] {
            if on {
                flags |= flag;
            }
        }
        flags
    }

    /// The FUSE options after the mandatory four, each with a leading comma.
    fn kernel_extra(&self) -> Result<heapless::String<64>, fmt::Error> {
        let mut extra = heapless::String::new();
        if self.default_permissions {
            extra
                .push_str(",default_permissions")
                .map_err(|_| fmt::Error)?;
        }
        if self.allow_other || self.allow_root {
            extra.push_str(",allow_other").map_err(|_| fmt::Error)?;
        }
        if let Some(bytes) = self.max_read {
            write!(extra, ",max_read={bytes}")?;
        }
        Ok(extra)
    }
}

/// Writes the options back as a `-o` string that [`MountOptions::parse_opts`] accepts
/// (`nonblocking` is not a mount option and is left out).
impl fmt::Display for MountOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (prefix, name) in [
            ("fsname=", &self.fsname[..]),
            (",subtype=", &self.subtype[..]),
        ] {
            f.write_str(prefix)?;
            for c in name.chars() {
                if matches!(c, ',' | '\\') {
                    f.write_char('\\')?;
                }
                f.write_char(c)?;
            }
        }
        if self.default_permissions {
            f.write_str(",default_permissions")?;
        }
        if self.allow_other {
            f.write_str(",allow_other")?;
        }
        if self.allow_root {
            f.write_str(",allow_root")?;
        }
        if self.auto_unmount {
            f.write_str(",auto_unmount")?;
        }
        if let Some(bytes) = self.max_read {
            write!(f, ",max_read={bytes}")?;
        }
        let pick = |on: bool, yes: &'static str, no: &'static str| if on { yes } else { no };
        let atime = if self.noatime {
            "noatime"
        } else if self.strictatime {
            "strictatime"
        } else {
            "relatime"
        };
        write!(
            f,
            ",{},{},{},{},{},{}",
            pick(self.read_only, "ro", "rw"),
            atime,
            pick(self.nosuid, "nosuid", "suid"),
            pick(self.nodev, "nodev", "dev"),
            pick(self.noexec, "noexec", "exec"),
            pick(self.sync, "sync", "async"),
        )?;
        if self.nodiratime {
            f.write_str(",nodiratime")?;
        }
        if self.dirsync {
            f.write_str(",dirsync")?;
        }
        Ok(())
    }
}

/// Why `blksize=` is refused.
const BLKSIZE: &str = "mount option blksize= applies only to fuseblk mounts (a filesystem on a \
    block device, mounted with blkdev), which ringfuse does not make; leave it out";

/// Splits a `-o` string at commas that are not escaped by a backslash, as
/// [`MountOptions::parse_opts`] does (escapes are kept; empty entries are yielded): for a
/// filesystem that takes its own options out of the same `-o` string.
pub fn split_options(opts: &str) -> impl Iterator<Item = &str> {
    split_entries(opts)
}

fn split_entries(opts: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(opts);
    core::iter::from_fn(move || {
        let s = rest?;
        let mut escaped = false;
        for (i, c) in s.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                ',' => {
                    rest = s.get(i + 1..);
                    return s.get(..i);
                }
                _ => {}
            }
        }
        rest = None;
        Some(s)
    })
}

/// Copies a name option into fixed storage, removing backslash escapes if `unescape`.
/// The default subtype: the program's file name (`argv[0]`), keeping only characters a
/// filesystem type name is made of (letters, digits, `-`, `_`, `.`), at most
/// [`MAX_SUBTYPE_LEN`] bytes; empty (plain `fuse`) without `std` or a usable name.
fn program_subtype() -> heapless::String<MAX_SUBTYPE_LEN> {
    #[cfg_attr(not(feature = "std"), allow(unused_mut))]
    let mut out = heapless::String::new();
    #[cfg(feature = "std")]
    if let Some(arg0) = std::env::args_os().next() {
        let name = std::path::Path::new(&arg0)
            .file_name()
            .and_then(std::ffi::OsStr::to_str)
            .unwrap_or_default();
        for c in name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            if out.push(c).is_err() {
                break;
            }
        }
    }
    out
}

fn checked_name<const N: usize>(
    raw: &str,
    option: &'static str,
    unescape: bool,
) -> Result<heapless::String<N>, MountError> {
    let mut out = heapless::String::new();
    let mut chars = raw.chars();
    while let Some(mut c) = chars.next() {
        if unescape && c == '\\' {
            c = chars.next().unwrap_or('\\');
        }
        if c == '\0' {
            return Err(MountError::BadOptionValue(OptionName::new(option)));
        }
        out.push(c)
            .map_err(|_| MountError::OptionTooLong { option, max: N })?;
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Mount points

/// A mount point argument: anything that is a path as bytes, without allocating.
///
/// Implemented for `str`, `[u8]` and `CStr`, and with the `std` feature for `Path`, `OsStr`
/// and their owned forms.
pub trait AsMountPoint {
    /// The path's bytes, without a terminating NUL.
    fn as_mount_point_bytes(&self) -> &[u8];
}

impl<T: AsMountPoint + ?Sized> AsMountPoint for &T {
    fn as_mount_point_bytes(&self) -> &[u8] {
        (**self).as_mount_point_bytes()
    }
}

impl AsMountPoint for str {
    fn as_mount_point_bytes(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl AsMountPoint for [u8] {
    fn as_mount_point_bytes(&self) -> &[u8] {
        self
    }
}

impl AsMountPoint for CStr {
    fn as_mount_point_bytes(&self) -> &[u8] {
        self.to_bytes()
    }
}

#[cfg(feature = "std")]
impl AsMountPoint for std::path::Path {
    fn as_mount_point_bytes(&self) -> &[u8] {
        self.as_os_str().as_mount_point_bytes()
    }
}

#[cfg(feature = "std")]
impl AsMountPoint for std::path::PathBuf {
    fn as_mount_point_bytes(&self) -> &[u8] {
        self.as_os_str().as_mount_point_bytes()
    }
}

#[cfg(feature = "std")]
impl AsMountPoint for std::ffi::OsStr {
    fn as_mount_point_bytes(&self) -> &[u8] {
        std::os::unix::ffi::OsStrExt::as_bytes(self)
    }
}

#[cfg(feature = "std")]
impl AsMountPoint for std::ffi::OsString {
    fn as_mount_point_bytes(&self) -> &[u8] {
        self.as_os_str().as_mount_point_bytes()
    }
}

#[cfg(feature = "std")]
impl AsMountPoint for std::string::String {
    fn as_mount_point_bytes(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// A NUL-terminated path of at most `PATH_MAX` bytes, stored inline.
#[derive(Clone)]
struct CPathBuf {
    bytes: [u8; PATH_MAX],
    /// Length including the NUL.
    len: usize,
}

impl CPathBuf {
    /// Copies `path` and appends the NUL; [`MountError::BadMountPoint`] if it is empty, holds
    /// a NUL or does not fit.
    fn from_bytes(path: &[u8]) -> Result<Self, MountError> {
        let mut buf = Self {
            bytes: [0; PATH_MAX],
            len: path.len() + 1,
        };
        if path.is_empty() || path.contains(&0) {
            return Err(MountError::BadMountPoint);
        }
        // The array is zeroed, so the byte after the copy already is the NUL.
        let dst = buf
            .bytes
            .get_mut(..path.len())
            .filter(|_| path.len() < PATH_MAX)
            .ok_or(MountError::BadMountPoint)?;
        dst.copy_from_slice(path);
        Ok(buf)
    }

    fn as_c_str(&self) -> &CStr {
        self.bytes
            .get(..self.len)
            .and_then(|b| CStr::from_bytes_with_nul(b).ok())
            .unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------------
// Mounting

/// Mounts a FUSE filesystem on `mountpoint` (an existing directory) and returns the [`Mount`]
/// that owns its `/dev/fuse` fd.
///
/// The mount point is resolved to its canonical absolute path first (through
/// `/proc/self/fd`; without `/proc` it is used as given), so a later `chdir` cannot make the
/// unmount miss. Then it mounts the way [`MountOptions::method`] says (see the module
/// docs). A direct `mount(2)` gets `source` = fsname (else subtype, else `/dev/fuse`), type
/// `fuse.<subtype>` (or `fuse`), the `MS_*` flags and the kernel options of `options`;
/// fusermount3 gets the same as its `-o` options.
///
/// The kernel queues `FUSE_INIT` on the fd; until a server answers it, any access to the
/// mount blocks (fuse-protocol.md §1.1), so answer it before touching the mount.
///
/// # Errors
/// Every failure leaves nothing mounted. [`MountError::NotRoot`] (direct only),
/// [`MountError::NoFuseDevice`], [`MountError::FuseDevicePermission`],
/// [`MountError::OpenFuseDevice`], [`MountError::MountPointNotFound`],
/// [`MountError::NotADirectory`], [`MountError::BadMountPoint`],
/// [`MountError::MountPointAccess`], [`MountError::Mount`]; through fusermount3
/// [`MountError::NoFusermount`], [`MountError::Fusermount`] (its refusals: `allow_other`
/// without `user_allow_other`, a mount point the user does not own, `mount_max`),
/// [`MountError::Spawn`]; [`MountError::Unsupported`].
pub fn mount<P: AsMountPoint + ?Sized>(
    mountpoint: &P,
    options: &MountOptions,
) -> Result<Mount, MountError> {
    let given = CPathBuf::from_bytes(mountpoint.as_mount_point_bytes())?;
    let mut target = CPathBuf {
        bytes: [0; PATH_MAX],
        len: 0,
    };
    target.len = sys::resolve_dir(given.as_c_str(), &mut target.bytes).map_err(|e| match e {
        Errno::NOENT => MountError::MountPointNotFound,
        Errno::NOTDIR => MountError::NotADirectory,
        Errno::NAMETOOLONG => MountError::BadMountPoint,
        e => MountError::MountPointAccess(e),
    })?;
    match options.method {
        MountMethod::Direct => mount_direct(target, options),
        MountMethod::Fusermount => mount_fusermount(target, options),
        MountMethod::Auto => match mount_direct(target.clone(), options) {
            Err(MountError::NotRoot | MountError::FuseDevicePermission(_))
                if cfg!(feature = "std") =>
            {
                mount_fusermount(target, options)
            }
            other => other,
        },
    }
}

/// `mount(2)` by this process.
fn mount_direct(target: CPathBuf, options: &MountOptions) -> Result<Mount, MountError> {
    #[cfg(not(feature = "std"))]
    if options.auto_unmount {
        return Err(MountError::Unsupported(
            "auto_unmount needs the std feature (its watcher is a forked process)",
        ));
    }
    let target_c = target.as_c_str();
    let device = open_device(options.nonblocking)?;

    let bad_option = || MountError::BadOptionValue(OptionName::new("fsname"));
    let mut fstype = heapless::String::<{ MAX_SUBTYPE_LEN + 6 }>::new();
    let typed = if options.subtype.is_empty() {
        write!(fstype, "fuse\0")
    } else {
        write!(fstype, "fuse.{}\0", options.subtype)
    };
    typed.map_err(|_| bad_option())?;
    let fstype = CStr::from_bytes_with_nul(fstype.as_bytes()).map_err(|_| bad_option())?;
    let mut source = heapless::String::<{ MAX_FSNAME_LEN + 1 }>::new();
    let name = [&options.fsname[..], &options.subtype[..], "/dev/fuse"]
        .into_iter()
        .find(|n| !n.is_empty())
        .unwrap_or("/dev/fuse");
    write!(source, "{name}\0").map_err(|_| bad_option())?;
    let source = CStr::from_bytes_with_nul(source.as_bytes()).map_err(|_| bad_option())?;
    let extra = options
        .kernel_extra()
        .map_err(|_| MountError::BadOptionValue(OptionName::new("max_read")))?;

    sys::mount_fuse(&sys::FuseMount {
        device: device.as_fd(),
        source,
        target: target_c,
        fstype,
        flags: options.flags(),
        root_type: linux_raw_sys::general::S_IFDIR,
        extra: &extra,
    })
    .map_err(|e| match e {
        Errno::PERM => MountError::NotRoot,
        e => MountError::Mount(e),
    })?;

    // Learn which mount we just made, without a FUSE request (see `sys::mount_id`).
    let id = match sys::mount_id(target_c) {
        Ok(id) => id,
        Err(e) => {
            // Cannot happen short of a concurrent unmount; leave nothing behind regardless.
            let _ = sys::unmount(target_c, true);
            return Err(MountError::Mount(e));
        }
    };
    // From here on, an error drops the guard, which unmounts.
    #[cfg_attr(not(feature = "std"), allow(unused_mut))]
    let mut guard = MountGuard {
        path: target,
        id,
        armed: true,
        #[cfg(feature = "std")]
        helper: None,
        #[cfg(feature = "std")]
        watcher: None,
    };
    #[cfg(feature = "std")]
    if options.auto_unmount {
        guard.watch(&sys::Unmounter::syscall())?;
    }
    Ok(Mount { guard, fd: device })
}

/// Through fusermount3.
#[cfg(feature = "std")]
fn mount_fusermount(target: CPathBuf, options: &MountOptions) -> Result<Mount, MountError> {
    let (device, helper) = fusermount::mount(target.as_c_str(), options)?;
    if options.nonblocking {
        let _ = sys::set_nonblocking(device.as_fd());
    }
    let id = match sys::mount_id(target.as_c_str()) {
        Ok(id) => id,
        Err(e) => {
            let _ = helper.unmount(target.as_c_str());
            return Err(MountError::Mount(e));
        }
    };
    let program = helper.program().to_owned();
    // From here on, an error drops the guard, which unmounts (through fusermount3).
    let mut guard = MountGuard {
        path: target,
        id,
        armed: true,
        helper: Some(helper),
        watcher: None,
    };
    // auto_unmount: not fusermount3's own, which before libfuse 3.15 (Debian 12 has 3.14)
    // never unmounts a mount without allow_other (it checks the mount as root, which such
    // a mount refuses: libfuse commit 055478f), but a watcher of ours, running as the
    // user, that unmounts through `fusermount3 -u -z`.
    if options.auto_unmount {
        let how = sys::Unmounter::fusermount(&program, guard.mountpoint())
            .ok_or(MountError::BadMountPoint)?;
        guard.watch(&how)?;
    }
    Ok(Mount { guard, fd: device })
}

#[cfg(not(feature = "std"))]
fn mount_fusermount(_target: CPathBuf, _options: &MountOptions) -> Result<Mount, MountError> {
    Err(MountError::Unsupported(
        "mounting through fusermount3 needs the std feature (run as root without it)",
    ))
}

/// Opens `/dev/fuse`, mapping its errors to their causes.
fn open_device(nonblocking: bool) -> Result<OwnedFd, MountError> {
    sys::open_device(nonblocking).map_err(|e| match e {
        Errno::NOENT | Errno::NODEV | Errno::NXIO => MountError::NoFuseDevice,
        Errno::ACCESS | Errno::PERM => MountError::FuseDevicePermission(e),
        e => MountError::OpenFuseDevice(e),
    })
}

/// A mounted FUSE filesystem and the `/dev/fuse` fd that serves it.
///
/// Dropping it unmounts lazily (`MNT_DETACH`, or `fusermount3 -u -z` for a mount made
/// through it) if the mount is still there and still on top of its mount point, then closes
/// the fd. Drop never panics and never unmounts a filesystem
/// that someone else mounted over or in place of ours.
pub struct Mount {
    // Field order is drop order: unmount first, then close the device.
    guard: MountGuard,
    fd: OwnedFd,
}

impl Mount {
    /// The `/dev/fuse` fd: read requests from it and write replies to it.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The canonical mount point.
    pub fn mountpoint(&self) -> &CStr {
        self.guard.mountpoint()
    }

    /// The canonical mount point as a `Path`.
    #[cfg(feature = "std")]
    pub fn mountpoint_path(&self) -> &std::path::Path {
        self.guard.mountpoint_path()
    }

    /// The FUSE connection number: the `N` of `/sys/fs/fuse/connections/N`.
    pub fn connection(&self) -> u32 {
        self.guard.connection()
    }

    /// Whether this mount is still in `/proc/self/mountinfo` (false once anyone unmounted it).
    pub fn is_mounted(&self) -> bool {
        self.guard.is_mounted()
    }

    /// Whether it was mounted through fusermount3.
    pub fn via_fusermount(&self) -> bool {
        self.guard.via_fusermount()
    }

    /// Opens a new `/dev/fuse` fd on the same connection (`FUSE_DEV_IOC_CLONE`, fuse-protocol.md
    /// §1.5), for a second event loop. Replies must go to the fd the request was read from.
    ///
    /// # Errors
    /// The [`mount`] errors for opening `/dev/fuse`, or [`MountError::Clone`].
    pub fn clone_fd(&self, nonblocking: bool) -> Result<OwnedFd, MountError> {
        let new = open_device(nonblocking)?;
        sys::clone_device(self.fd.as_fd(), new.as_fd()).map_err(MountError::Clone)?;
        Ok(new)
    }

    /// Aborts the connection (`/sys/fs/fuse/connections/N/abort`): pending and future
    /// requests fail, reads on the fd return ENODEV (or ECONNABORTED), and accesses to the
    /// mount return ENOTCONN until it is unmounted. Mounts `fusectl` there first if needed.
    ///
    /// # Errors
    /// [`MountError::Abort`].
    pub fn abort(&self) -> Result<(), MountError> {
        self.guard.abort()
    }

    /// Unmounts, then closes the fd.
    ///
    /// A mount made through fusermount3 is unmounted through `fusermount3 -u -z` (lazily).
    /// Otherwise this tries a plain `umount2(2)` first. If the kernel answers EBUSY (a process has a file
    /// open, or its working directory, inside the mount) it falls back to a lazy
    /// `MNT_DETACH` unmount: the mount disappears from the namespace now and the kernel
    /// finishes when the last user is gone. That fallback still returns `Ok(())`.
    /// If someone else unmounted it already this is `Ok(())` too.
    ///
    /// # Errors
    /// [`MountError::Unmount`]: EBUSY if another filesystem was mounted over it (it is then
    /// left mounted), or the errno of `umount2`.
    pub fn unmount(self) -> Result<(), MountError> {
        let (fd, guard) = self.into_parts();
        let result = guard.unmount();
        drop(fd);
        result
    }

    /// Splits into the fd and a guard that unmounts when dropped, for a caller that wants to
    /// own or close the fd itself. Closing the last fd of a connection aborts it: the mount
    /// stays, answering ENOTCONN, until the guard unmounts it.
    pub fn into_parts(self) -> (OwnedFd, MountGuard) {
        (self.fd, self.guard)
    }
}

impl fmt::Debug for Mount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mount")
            .field("mountpoint", &self.mountpoint())
            .field("connection", &self.connection())
            .field("fd", &self.fd)
            .finish_non_exhaustive()
    }
}

/// Unmounts a FUSE mount when dropped: the part of a [`Mount`] that is not the fd.
pub struct MountGuard {
    path: CPathBuf,
    id: sys::MountId,
    /// False once unmounted through [`MountGuard::unmount`].
    armed: bool,
    /// Mounted through fusermount3: unmount through it too.
    #[cfg(feature = "std")]
    helper: Option<fusermount::Helper>,
    /// A direct mount with `auto_unmount`: the pipe end whose closing (this guard dropped,
    /// or the process gone) wakes the watcher.
    #[cfg(feature = "std")]
    #[allow(dead_code, reason = "held for its drop, which closes the pipe")]
    watcher: Option<OwnedFd>,
}

/// Where our mount stands relative to its mount point.
enum Place {
    /// It is the topmost mount there (or we could not tell and it is listed as mounted).
    OnTop,
    /// It is mounted, but something else is mounted over it.
    Covered,
    /// It is not mounted any more.
    Gone,
}

impl MountGuard {
    /// Starts the auto-unmount watcher of this mount, which unmounts it with `how`.
    #[cfg(feature = "std")]
    fn watch(&mut self, how: &sys::Unmounter) -> Result<(), MountError> {
        let fd = sys::spawn_unmount_watcher(self.path.as_c_str(), self.id, how)
            .map_err(MountError::Spawn)?;
        self.watcher = Some(fd);
        Ok(())
    }

    /// The canonical mount point.
    pub fn mountpoint(&self) -> &CStr {
        self.path.as_c_str()
    }

    /// The canonical mount point as a `Path`.
    #[cfg(feature = "std")]
    pub fn mountpoint_path(&self) -> &std::path::Path {
        let bytes = self.mountpoint().to_bytes();
        std::path::Path::new(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(bytes))
    }

    /// The FUSE connection number: the kernel's internal `dev_t` of the superblock,
    /// `(major << 20) | minor` (fuse-protocol.md §1.4; major is 0 for FUSE).
    pub fn connection(&self) -> u32 {
        (self.id.dev_major << 20) | self.id.dev_minor
    }

    /// Whether this mount is still listed in `/proc/self/mountinfo` (its mount id and device
    /// number). Without a readable mountinfo, whether it is still on top of its mount point.
    pub fn is_mounted(&self) -> bool {
        match sys::mountinfo_contains(self.id.mnt_id, self.id.dev_major, self.id.dev_minor) {
            Ok(listed) => listed,
            Err(_) => self.on_top() == Some(true),
        }
    }

    /// Whether it was mounted through fusermount3.
    pub fn via_fusermount(&self) -> bool {
        #[cfg(feature = "std")]
        return self.helper.is_some();
        #[cfg(not(feature = "std"))]
        false
    }

    /// See [`Mount::abort`].
    ///
    /// # Errors
    /// [`MountError::Abort`].
    pub fn abort(&self) -> Result<(), MountError> {
        sys::abort_connection(self.connection()).map_err(MountError::Abort)
    }

    /// See [`Mount::unmount`].
    ///
    /// # Errors
    /// [`MountError::Unmount`].
    pub fn unmount(mut self) -> Result<(), MountError> {
        self.armed = false;
        let place = self.place();
        let path = self.path.as_c_str();
        #[cfg(feature = "std")]
        if let Some(helper) = self.helper.as_ref() {
            return match place {
                Place::Gone => Ok(()),
                Place::Covered => Err(MountError::Unmount(Errno::BUSY)),
                Place::OnTop => helper.unmount(path),
            };
        }
        match place {
            Place::Gone => Ok(()),
            Place::Covered => Err(MountError::Unmount(Errno::BUSY)),
            Place::OnTop => match sys::unmount(path, false) {
                Err(Errno::BUSY) => sys::unmount(path, true).map_err(MountError::Unmount),
                Err(Errno::INVAL) if !self.is_mounted() => Ok(()),
                other => other.map_err(MountError::Unmount),
            },
        }
    }

    /// Whether the topmost mount at our path is ours; `None` if `statx` failed.
    fn on_top(&self) -> Option<bool> {
        let now = sys::mount_id(self.path.as_c_str()).ok()?;
        Some(match (self.id.unique, now.unique) {
            (Some(ours), Some(top)) => ours == top,
            _ => now == self.id,
        })
    }

    fn place(&self) -> Place {
        match self.on_top() {
            Some(true) => Place::OnTop,
            Some(false) if self.is_mounted() => Place::Covered,
            Some(false) => Place::Gone,
            // The path cannot be examined: if the mount is listed (or mountinfo cannot be
            // read), try by path anyway rather than leave it behind.
            None => {
                match sys::mountinfo_contains(self.id.mnt_id, self.id.dev_major, self.id.dev_minor)
                {
                    Ok(false) => Place::Gone,
                    Ok(true) | Err(_) => Place::OnTop,
                }
            }
        }
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if self.armed && matches!(self.place(), Place::OnTop) {
            // Nothing useful can be done with an error here; `unmount` reports them.
            #[cfg(feature = "std")]
            if let Some(helper) = self.helper.as_ref() {
                let _ = helper.unmount(self.path.as_c_str());
                return;
            }
            let _ = sys::unmount(self.path.as_c_str(), true);
        }
    }
}

impl fmt::Debug for MountGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MountGuard")
            .field("mountpoint", &self.mountpoint())
            .field("connection", &self.connection())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_name_is_cut_at_a_char_boundary() {
        let long = "é".repeat(20); // 40 bytes
        let name = OptionName::new(&long);
        assert_eq!(name.as_str(), "é".repeat(16));
        assert!(name.truncated);
        let short = OptionName::new("allow_other");
        assert_eq!(short.as_str(), "allow_other");
        assert!(!short.truncated);
    }

    #[test]
    fn entries_split_on_unescaped_commas() {
        let parts: heapless::Vec<&str, 8> = split_entries(r"a,b\,c,,d\\,e").collect();
        assert_eq!(&parts[..], [r"a", r"b\,c", "", r"d\\", "e"]);
        assert_eq!(
            split_entries("").collect::<heapless::Vec<&str, 2>>()[..],
            [""]
        );
    }

    #[test]
    fn flags_table_covers_every_flag() {
        for flag in FLAGS {
            assert!(MountOptions::new().set_flag(flag), "{flag}");
        }
    }

    #[test]
    fn kernel_extra_fits() {
        let mut o = MountOptions::new();
        o.default_permissions(true)
            .allow_other(true)
            .max_read(u32::MAX);
        assert_eq!(
            o.kernel_extra().unwrap().as_str(),
            ",default_permissions,allow_other,max_read=4294967295"
        );
    }

    #[test]
    fn mount_path_limits() {
        assert_eq!(
            CPathBuf::from_bytes(b"").err(),
            Some(MountError::BadMountPoint)
        );
        assert_eq!(
            CPathBuf::from_bytes(b"/a\0b").err(),
            Some(MountError::BadMountPoint)
        );
        let max = [b'a'; PATH_MAX - 1];
        assert_eq!(
            CPathBuf::from_bytes(&max)
                .unwrap()
                .as_c_str()
                .to_bytes()
                .len(),
            PATH_MAX - 1
        );
        let over = [b'a'; PATH_MAX];
        assert_eq!(
            CPathBuf::from_bytes(&over).err(),
            Some(MountError::BadMountPoint)
        );
    }
}
