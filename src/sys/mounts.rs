//! `mount(2)` and `umount2(2)` of a FUSE filesystem, what `statx` and
//! `/proc/self/mountinfo` say about a mount, and aborting a connection through fusectl.

use core::ffi::CStr;
use core::fmt::Write as _;

use rustix::fd::{AsFd, AsRawFd, BorrowedFd};
use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags, StatxFlags};
use rustix::io::{self, Errno};
use rustix::mount::{MountFlags, UnmountFlags};

use super::{CBuf, parse_dec, retry_on_eintr};

/// Where the `fusectl` filesystem is mounted (fuse-protocol.md §1.4).
const FUSECTL_DIR: &CStr = c"/sys/fs/fuse/connections";

/// What `statx` says about a path without ever sending a FUSE request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MountId {
    /// `stx_mnt_id` without `STATX_MNT_ID_UNIQUE`: the id `/proc/self/mountinfo` shows.
    pub(crate) mnt_id: u64,
    /// `STATX_MNT_ID_UNIQUE` (Linux 6.8+): never reused, so it tells "our mount" apart from a
    /// later mount that got the same recycled `mnt_id` and device number.
    pub(crate) unique: Option<u64>,
    /// `stx_dev_major` of the superblock.
    pub(crate) dev_major: u32,
    /// `stx_dev_minor` of the superblock.
    pub(crate) dev_minor: u32,
}

impl MountId {
    #[cfg(feature = "std")]
    /// Whether `self` and `other` name the same mount: by the unique id when both have one,
    /// else by every field.
    pub(crate) fn same_mount(&self, other: &Self) -> bool {
        match (self.unique, other.unique) {
            (Some(a), Some(b)) => a == b,
            _ => self == other,
        }
    }
}

/// Identifies the mount on top of `path`.
///
/// Safe to call on a FUSE mount whose server never answered `FUSE_INIT`: the path walk only
/// crosses into the FUSE root (no lookup, no `d_revalidate`), and `fuse_getattr` keeps only
/// the basic-stats and btime bits of the request mask, so asking for `STATX_MNT_ID_UNIQUE`
/// alone (or nothing) plus `AT_STATX_DONT_SYNC` makes it fill the result from the cached
/// inode instead of sending `FUSE_GETATTR` (fs/fuse/dir.c `fuse_update_get_attr`). The mount
/// id and the device number are filled in by the VFS whatever the mask. The mount tests
/// exercise this on mounts that never get an INIT reply.
pub(crate) fn mount_id(path: &CStr) -> io::Result<MountId> {
    let flags = AtFlags::STATX_DONT_SYNC | AtFlags::NO_AUTOMOUNT;
    let unique_flag = StatxFlags::from_bits_retain(linux_raw_sys::general::STATX_MNT_ID_UNIQUE);
    let first = rustix::fs::statx(CWD, path, flags, unique_flag)?;
    if first.stx_mask & unique_flag.bits() == 0 {
        // Before Linux 6.8: `stx_mnt_id` already is the old id.
        return Ok(MountId {
            mnt_id: first.stx_mnt_id,
            unique: None,
            dev_major: first.stx_dev_major,
            dev_minor: first.stx_dev_minor,
        });
    }
    let old = rustix::fs::statx(CWD, path, flags, StatxFlags::empty())?;
    Ok(MountId {
        mnt_id: old.stx_mnt_id,
        unique: Some(first.stx_mnt_id),
        dev_major: old.stx_dev_major,
        dev_minor: old.stx_dev_minor,
    })
}

/// Opens a prospective mount point, checks that it is a directory and writes its canonical
/// absolute path (NUL-terminated) into `out`, returning the length including the NUL.
///
/// Errors: the `statx`/`open` errno (ENOENT: missing, ENOTDIR: a parent or the path itself
/// is not a directory, ENOTCONN: a dead FUSE mount is in the way, ...). If `/proc` is not
/// mounted the path is used as given.
pub(crate) fn resolve_dir(path: &CStr, out: &mut [u8]) -> io::Result<usize> {
    // O_PATH: no open of the directory itself, only the path walk.
    let dir = rustix::fs::open(path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())?;
    let st = rustix::fs::statx(&dir, c"", AtFlags::EMPTY_PATH, StatxFlags::TYPE)?;
    if FileType::from_raw_mode(u32::from(st.stx_mode)) != FileType::Directory {
        return Err(Errno::NOTDIR);
    }
    let mut link = CBuf::<32>::new();
    write!(link, "/proc/self/fd/{}", dir.as_raw_fd()).map_err(|_| Errno::NAMETOOLONG)?;
    // Leave room for the NUL; a result that fills the room may have been cut short.
    let room = out.len().saturating_sub(1);
    let buf = out.get_mut(..room).ok_or(Errno::NAMETOOLONG)?;
    match rustix::fs::readlinkat_raw(CWD, link.c_str()?, &mut *buf) {
        Ok(n) if n >= room => Err(Errno::NAMETOOLONG),
        Ok(n) if buf.first() == Some(&b'/') => {
            let nul = out.get_mut(n).ok_or(Errno::NAMETOOLONG)?;
            *nul = 0;
            Ok(n + 1)
        }
        // No /proc (or an odd answer): use the path as given; a relative one stays
        // relative to the current directory.
        _ => {
            let given = path.to_bytes_with_nul();
            let dst = out.get_mut(..given.len()).ok_or(Errno::NAMETOOLONG)?;
            dst.copy_from_slice(given);
            Ok(given.len())
        }
    }
}

/// What [`mount_fuse`] passes to `mount(2)`.
pub(crate) struct FuseMount<'a> {
    /// The `/dev/fuse` fd that will serve the mount.
    pub(crate) device: BorrowedFd<'a>,
    /// `source`: fsname, else subtype, else `/dev/fuse` (as libfuse does).
    pub(crate) source: &'a CStr,
    /// `target`: the mount point.
    pub(crate) target: &'a CStr,
    /// `filesystemtype`: `fuse` or `fuse.<subtype>`.
    pub(crate) fstype: &'a CStr,
    /// `MS_*` flags.
    pub(crate) flags: MountFlags,
    /// The file type bits (`S_IFMT`) of the mount point, for `rootmode=`.
    pub(crate) root_type: u32,
    /// Kernel options appended after the four mandatory ones, each starting with a comma
    /// (`,default_permissions,allow_other,max_read=N`).
    pub(crate) extra: &'a str,
}

/// `mount(2)` of a FUSE filesystem with the four mandatory options
/// `fd=N,rootmode=<octal>,user_id=U,group_id=G` (fs/fuse/inode.c `fuse_fill_super`) followed
/// by `extra`. `user_id`/`group_id` are the real ids of this process, as libfuse passes them.
pub(crate) fn mount_fuse(m: &FuseMount<'_>) -> io::Result<()> {
    let mut data = CBuf::<256>::new();
    write!(
        data,
        "fd={},rootmode={:o},user_id={},group_id={}{}",
        m.device.as_fd().as_raw_fd(),
        m.root_type,
        rustix::process::getuid().as_raw(),
        rustix::process::getgid().as_raw(),
        m.extra,
    )
    .map_err(|_| Errno::NAMETOOLONG)?;
    rustix::mount::mount(m.source, m.target, m.fstype, m.flags, data.c_str()?)
}

/// `umount2(target, 0)` or, with `lazy`, `umount2(target, MNT_DETACH)`.
pub(crate) fn unmount(target: &CStr, lazy: bool) -> io::Result<()> {
    let flags = if lazy {
        UnmountFlags::DETACH
    } else {
        UnmountFlags::empty()
    };
    retry_on_eintr(|| rustix::mount::unmount(target, flags))
}

#[cfg(feature = "std")]
/// `mount(NULL, target, NULL, MS_REMOUNT | flags, "")`: changes the per-mount flags of a
/// live mount (FUSE takes no other option on a remount).
pub(crate) fn remount(target: &CStr, flags: MountFlags) -> io::Result<()> {
    rustix::mount::mount_remount(target, flags, c"")
}

/// Writes `1` to `/sys/fs/fuse/connections/<conn>/abort`, mounting `fusectl` there first if
/// it is not mounted yet (fuse-protocol.md §1.4). That `fusectl` mount is left in place: it
/// is system-wide, like the one systemd makes at boot.
pub(crate) fn abort_connection(conn: u32) -> io::Result<()> {
    let mut path = CBuf::<64>::new();
    write!(path, "/sys/fs/fuse/connections/{conn}/abort").map_err(|_| Errno::NAMETOOLONG)?;
    let path = path.c_str()?;
    match write_one(path) {
        Err(Errno::NOENT) => {
            match rustix::mount::mount(
                c"fusectl",
                FUSECTL_DIR,
                c"fusectl",
                MountFlags::empty(),
                None,
            ) {
                // EBUSY: fusectl is mounted already, so the connection really is gone.
                Ok(()) | Err(Errno::BUSY) => write_one(path),
                Err(e) => Err(e),
            }
        }
        other => other,
    }
}

/// Writes the single byte `1` to a sysfs-like control file.
fn write_one(path: &CStr) -> io::Result<()> {
    let file = rustix::fs::open(path, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())?;
    let n = retry_on_eintr(|| io::write(&file, b"1"))?;
    if n == 1 { Ok(()) } else { Err(Errno::IO) }
}

/// Whether `/proc/self/mountinfo` lists a mount with id `mnt_id` on device `major:minor`.
///
/// Streams the file through a 4 KiB stack buffer and keeps only the first 64 bytes of each
/// line (the id, parent id and `major:minor` fields fit in 44), so lines of any length work.
pub(crate) fn mountinfo_contains(mnt_id: u64, major: u32, minor: u32) -> io::Result<bool> {
    let file = rustix::fs::open(
        c"/proc/self/mountinfo",
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut chunk = [0_u8; 4096];
    let mut head = heapless::Vec::<u8, 64>::new();
    loop {
        let n = retry_on_eintr(|| io::read(&file, &mut chunk))?;
        let Some(read) = chunk.get(..n) else {
            return Err(Errno::IO);
        };
        if read.is_empty() {
            return Ok(!head.is_empty() && line_is(&head, mnt_id, major, minor));
        }
        for &byte in read {
            if byte == b'\n' {
                if line_is(&head, mnt_id, major, minor) {
                    return Ok(true);
                }
                head.clear();
            } else {
                // A full `head` just drops the rest of a long line: we only need its start.
                let _ = head.push(byte);
            }
        }
    }
}

/// Whether a mountinfo line (or its first bytes) starts `<mnt_id> <parent> <major>:<minor> `.
fn line_is(line: &[u8], mnt_id: u64, major: u32, minor: u32) -> bool {
    let mut fields = line.split(|&b| b == b' ');
    let id = fields.next().and_then(parse_dec);
    let _parent = fields.next();
    let dev = fields.next().and_then(|d| {
        let mut parts = d.splitn(2, |&b| b == b':');
        Some((parse_dec(parts.next()?)?, parse_dec(parts.next()?)?))
    });
    id == Some(mnt_id) && dev == Some((u64::from(major), u64::from(minor)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_line_prefix() {
        let line = b"44 29 0:52 / /tmp/.tmpAbC rw,nosuid,nodev,relatime - fuse.t src rw,user_id=0";
        assert!(line_is(line, 44, 0, 52));
        assert!(!line_is(line, 45, 0, 52));
        assert!(!line_is(line, 44, 0, 53));
        assert!(!line_is(b"44 29", 44, 0, 52));
        assert!(!line_is(b"", 44, 0, 52));
        assert!(!line_is(b"x 29 0:52 /", 44, 0, 52));
        // A cut-off line keeps its first fields.
        assert!(line_is(&line[..20], 44, 0, 52));
    }

    #[test]
    fn own_mount_is_listed() {
        // procfs reports its own device number, so its mountinfo line matches `statx`.
        let id = mount_id(c"/proc").unwrap();
        assert!(mountinfo_contains(id.mnt_id, id.dev_major, id.dev_minor).unwrap());
        assert!(!mountinfo_contains(u64::MAX, id.dev_major, id.dev_minor).unwrap());
    }
}
