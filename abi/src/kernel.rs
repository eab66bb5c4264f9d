//! The kernel's FUSE ABI, protocol 7.45 (Linux 6.18): every struct and constant of
//! `include/uapi/linux/fuse.h`, under the kernel's own names so that this file can be read
//! side by side with the header.
//!
//! Structs are generated field for field from the header; their sizes and field offsets are
//! checked at compile time against values computed by gcc from the header itself (see
//! [`crate::pod`]). Variable-length tails (`fuse_dirent::name`, `fuse_supp_groups::groups`)
//! are not part of the Rust structs; the encoders and parsers handle them.
//!
//! # References
//! - `include/uapi/linux/fuse.h` (libfuse's copy `include/fuse_kernel.h`, synced with 6.18)
// Field names are the kernel's and are documented there; repeating each one here would add
// nothing a reader of fuse.h does not have.
#![allow(missing_docs, non_camel_case_types)]

use crate::pod::pod_structs;

/// `FUSE_KERNEL_VERSION`: the protocol major version.
pub const FUSE_KERNEL_VERSION: u32 = 7;
/// `FUSE_KERNEL_MINOR_VERSION`: the newest protocol minor this crate speaks.
pub const FUSE_KERNEL_MINOR_VERSION: u32 = 45;
/// `FUSE_ROOT_ID`: the node id of the root directory.
pub const FUSE_ROOT_ID: u64 = 1;
/// `FUSE_MIN_READ_BUFFER`: the smallest buffer a `/dev/fuse` read accepts.
pub const FUSE_MIN_READ_BUFFER: usize = 8192;
/// `FUSE_NAME_MAX` (`fs/fuse/fuse_i.h`): the longest name in a dirent or notification.
pub const FUSE_NAME_MAX: usize = 1024;
/// `FUSE_COMPAT_ENTRY_OUT_SIZE`: `fuse_entry_out` for minor < 9.
pub const FUSE_COMPAT_ENTRY_OUT_SIZE: usize = 120;
/// `FUSE_COMPAT_ATTR_OUT_SIZE`: `fuse_attr_out` for minor < 9.
pub const FUSE_COMPAT_ATTR_OUT_SIZE: usize = 96;
/// `FUSE_COMPAT_MKNOD_IN_SIZE`: `fuse_mknod_in` for minor < 12.
pub const FUSE_COMPAT_MKNOD_IN_SIZE: usize = 8;
/// `FUSE_COMPAT_WRITE_IN_SIZE`: `fuse_write_in` for minor < 9.
pub const FUSE_COMPAT_WRITE_IN_SIZE: usize = 24;
/// `FUSE_COMPAT_STATFS_SIZE`: `fuse_statfs_out` for minor < 4.
pub const FUSE_COMPAT_STATFS_SIZE: usize = 48;
/// `FUSE_COMPAT_SETXATTR_IN_SIZE`: `fuse_setxattr_in` without `FUSE_SETXATTR_EXT`.
pub const FUSE_COMPAT_SETXATTR_IN_SIZE: usize = 8;
/// `FUSE_COMPAT_INIT_OUT_SIZE`: `fuse_init_out` for minor < 5.
pub const FUSE_COMPAT_INIT_OUT_SIZE: usize = 8;
/// `FUSE_COMPAT_22_INIT_OUT_SIZE`: `fuse_init_out` for minor < 23.
pub const FUSE_COMPAT_22_INIT_OUT_SIZE: usize = 24;
/// `FUSE_COMPAT_INIT_IN_SIZE`: the 16-byte `fuse_init_in` of kernels before 7.36.
pub const FUSE_COMPAT_INIT_IN_SIZE: usize = 16;
/// `CUSE_INIT_INFO_MAX`.
pub const CUSE_INIT_INFO_MAX: usize = 4096;
/// `FUSE_IOCTL_MAX_IOV`.
pub const FUSE_IOCTL_MAX_IOV: u32 = 256;
/// `FUSE_INVALID_UIDGID`: uid/gid of a request from an idmapped mount without a mapping.
pub const FUSE_INVALID_UIDGID: u32 = u32::MAX;
/// `FUSE_INT_REQ_BIT` (fs/fuse/dev.c): set in the `unique` of an INTERRUPT request itself.
pub const FUSE_INT_REQ_BIT: u64 = 1;
/// `FUSE_DIRENT_ALIGN` / `FUSE_REC_ALIGN`: directory records are padded to 8 bytes.
#[must_use]
pub const fn fuse_dirent_align(x: usize) -> usize {
    (x + 7) & !7
}
/// `FUSE_NAME_OFFSET`: where a `fuse_dirent`'s name starts.
pub const FUSE_NAME_OFFSET: usize = 24;
/// `FUSE_NAME_OFFSET_DIRENTPLUS`: where a `fuse_direntplus`'s name starts.
pub const FUSE_NAME_OFFSET_DIRENTPLUS: usize = 152;

// enum fuse_ext_type
/// `FUSE_MAX_NR_SECCTX`: extension types 0..=31 are security contexts.
pub const FUSE_MAX_NR_SECCTX: u32 = 31;
/// `FUSE_EXT_GROUPS`: supplementary groups extension.
pub const FUSE_EXT_GROUPS: u32 = 32;

// FUSE-over-io_uring
/// `FUSE_URING_IN_OUT_HEADER_SZ`.
pub const FUSE_URING_IN_OUT_HEADER_SZ: usize = 128;
/// `FUSE_URING_OP_IN_OUT_SZ`.
pub const FUSE_URING_OP_IN_OUT_SZ: usize = 128;
/// `FUSE_IO_URING_CMD_INVALID` (`enum fuse_uring_cmd`).
pub const FUSE_IO_URING_CMD_INVALID: u32 = 0;
/// `FUSE_IO_URING_CMD_REGISTER`: register an entry's buffers and fetch a request.
pub const FUSE_IO_URING_CMD_REGISTER: u32 = 1;
/// `FUSE_IO_URING_CMD_COMMIT_AND_FETCH`: commit a reply and fetch the next request.
pub const FUSE_IO_URING_CMD_COMMIT_AND_FETCH: u32 = 2;

// Device ioctls (x86_64 / arm64 encodings of _IO/_IOR/_IOW; asserted in tests).
/// `FUSE_DEV_IOC_MAGIC`.
pub const FUSE_DEV_IOC_MAGIC: u32 = 229;
/// `FUSE_DEV_IOC_CLONE` = `_IOR(229, 0, uint32_t)`.
pub const FUSE_DEV_IOC_CLONE: u32 = ioc(IOC_READ, 0, 4);
/// `FUSE_DEV_IOC_BACKING_OPEN` = `_IOW(229, 1, struct fuse_backing_map)`.
pub const FUSE_DEV_IOC_BACKING_OPEN: u32 = ioc(IOC_WRITE, 1, 16);
/// `FUSE_DEV_IOC_BACKING_CLOSE` = `_IOW(229, 2, uint32_t)`.
pub const FUSE_DEV_IOC_BACKING_CLOSE: u32 = ioc(IOC_WRITE, 2, 4);
/// `FUSE_DEV_IOC_SYNC_INIT` = `_IO(229, 3)` (Linux 6.18).
pub const FUSE_DEV_IOC_SYNC_INIT: u32 = ioc(0, 3, 0);

const IOC_WRITE: u32 = 1;
const IOC_READ: u32 = 2;
/// `_IOC(dir, FUSE_DEV_IOC_MAGIC, nr, size)` with the generic (x86, arm, riscv) layout.
const fn ioc(dir: u32, nr: u32, size: u32) -> u32 {
    (dir << 30) | (size << 16) | (FUSE_DEV_IOC_MAGIC << 8) | nr
}

// enum fuse_opcode
pub const FUSE_LOOKUP: u32 = 1;
pub const FUSE_FORGET: u32 = 2;
pub const FUSE_GETATTR: u32 = 3;
pub const FUSE_SETATTR: u32 = 4;
pub const FUSE_READLINK: u32 = 5;
pub const FUSE_SYMLINK: u32 = 6;
pub const FUSE_MKNOD: u32 = 8;
pub const FUSE_MKDIR: u32 = 9;
pub const FUSE_UNLINK: u32 = 10;
pub const FUSE_RMDIR: u32 = 11;
pub const FUSE_RENAME: u32 = 12;
pub const FUSE_LINK: u32 = 13;
pub const FUSE_OPEN: u32 = 14;
pub const FUSE_READ: u32 = 15;
pub const FUSE_WRITE: u32 = 16;
pub const FUSE_STATFS: u32 = 17;
pub const FUSE_RELEASE: u32 = 18;
pub const FUSE_FSYNC: u32 = 20;
pub const FUSE_SETXATTR: u32 = 21;
pub const FUSE_GETXATTR: u32 = 22;
pub const FUSE_LISTXATTR: u32 = 23;
pub const FUSE_REMOVEXATTR: u32 = 24;
pub const FUSE_FLUSH: u32 = 25;
pub const FUSE_INIT: u32 = 26;
pub const FUSE_OPENDIR: u32 = 27;
pub const FUSE_READDIR: u32 = 28;
pub const FUSE_RELEASEDIR: u32 = 29;
pub const FUSE_FSYNCDIR: u32 = 30;
pub const FUSE_GETLK: u32 = 31;
pub const FUSE_SETLK: u32 = 32;
pub const FUSE_SETLKW: u32 = 33;
pub const FUSE_ACCESS: u32 = 34;
pub const FUSE_CREATE: u32 = 35;
pub const FUSE_INTERRUPT: u32 = 36;
pub const FUSE_BMAP: u32 = 37;
pub const FUSE_DESTROY: u32 = 38;
pub const FUSE_IOCTL: u32 = 39;
pub const FUSE_POLL: u32 = 40;
pub const FUSE_NOTIFY_REPLY: u32 = 41;
pub const FUSE_BATCH_FORGET: u32 = 42;
pub const FUSE_FALLOCATE: u32 = 43;
pub const FUSE_READDIRPLUS: u32 = 44;
pub const FUSE_RENAME2: u32 = 45;
pub const FUSE_LSEEK: u32 = 46;
pub const FUSE_COPY_FILE_RANGE: u32 = 47;
pub const FUSE_SETUPMAPPING: u32 = 48;
pub const FUSE_REMOVEMAPPING: u32 = 49;
pub const FUSE_SYNCFS: u32 = 50;
pub const FUSE_TMPFILE: u32 = 51;
pub const FUSE_STATX: u32 = 52;
pub const FUSE_COPY_FILE_RANGE_64: u32 = 53;
pub const CUSE_INIT: u32 = 4096;
pub const CUSE_INIT_BSWAP_RESERVED: u32 = 1_048_576;
pub const FUSE_INIT_BSWAP_RESERVED: u32 = 436_207_616;

// enum fuse_notify_code
pub const FUSE_NOTIFY_POLL: i32 = 1;
pub const FUSE_NOTIFY_INVAL_INODE: i32 = 2;
pub const FUSE_NOTIFY_INVAL_ENTRY: i32 = 3;
pub const FUSE_NOTIFY_STORE: i32 = 4;
pub const FUSE_NOTIFY_RETRIEVE: i32 = 5;
pub const FUSE_NOTIFY_DELETE: i32 = 6;
pub const FUSE_NOTIFY_RESEND: i32 = 7;
pub const FUSE_NOTIFY_INC_EPOCH: i32 = 8;
pub const FUSE_NOTIFY_PRUNE: i32 = 9;

// INIT flags (fuse_init_in/out `flags`, and `flags2` shifted up by 32).
pub const FUSE_ASYNC_READ: u64 = 1 << 0;
pub const FUSE_POSIX_LOCKS: u64 = 1 << 1;
pub const FUSE_FILE_OPS: u64 = 1 << 2;
pub const FUSE_ATOMIC_O_TRUNC: u64 = 1 << 3;
pub const FUSE_EXPORT_SUPPORT: u64 = 1 << 4;
pub const FUSE_BIG_WRITES: u64 = 1 << 5;
pub const FUSE_DONT_MASK: u64 = 1 << 6;
pub const FUSE_SPLICE_WRITE: u64 = 1 << 7;
pub const FUSE_SPLICE_MOVE: u64 = 1 << 8;
pub const FUSE_SPLICE_READ: u64 = 1 << 9;
pub const FUSE_FLOCK_LOCKS: u64 = 1 << 10;
pub const FUSE_HAS_IOCTL_DIR: u64 = 1 << 11;
pub const FUSE_AUTO_INVAL_DATA: u64 = 1 << 12;
pub const FUSE_DO_READDIRPLUS: u64 = 1 << 13;
pub const FUSE_READDIRPLUS_AUTO: u64 = 1 << 14;
pub const FUSE_ASYNC_DIO: u64 = 1 << 15;
pub const FUSE_WRITEBACK_CACHE: u64 = 1 << 16;
pub const FUSE_NO_OPEN_SUPPORT: u64 = 1 << 17;
pub const FUSE_PARALLEL_DIROPS: u64 = 1 << 18;
pub const FUSE_HANDLE_KILLPRIV: u64 = 1 << 19;
pub const FUSE_POSIX_ACL: u64 = 1 << 20;
pub const FUSE_ABORT_ERROR: u64 = 1 << 21;
pub const FUSE_MAX_PAGES: u64 = 1 << 22;
pub const FUSE_CACHE_SYMLINKS: u64 = 1 << 23;
pub const FUSE_NO_OPENDIR_SUPPORT: u64 = 1 << 24;
pub const FUSE_EXPLICIT_INVAL_DATA: u64 = 1 << 25;
pub const FUSE_MAP_ALIGNMENT: u64 = 1 << 26;
pub const FUSE_SUBMOUNTS: u64 = 1 << 27;
pub const FUSE_HANDLE_KILLPRIV_V2: u64 = 1 << 28;
pub const FUSE_SETXATTR_EXT: u64 = 1 << 29;
pub const FUSE_INIT_EXT: u64 = 1 << 30;
pub const FUSE_INIT_RESERVED: u64 = 1 << 31;
pub const FUSE_SECURITY_CTX: u64 = 1 << 32;
pub const FUSE_HAS_INODE_DAX: u64 = 1 << 33;
pub const FUSE_CREATE_SUPP_GROUP: u64 = 1 << 34;
pub const FUSE_HAS_EXPIRE_ONLY: u64 = 1 << 35;
pub const FUSE_DIRECT_IO_ALLOW_MMAP: u64 = 1 << 36;
pub const FUSE_PASSTHROUGH: u64 = 1 << 37;
pub const FUSE_NO_EXPORT_SUPPORT: u64 = 1 << 38;
pub const FUSE_HAS_RESEND: u64 = 1 << 39;
pub const FUSE_ALLOW_IDMAP: u64 = 1 << 40;
pub const FUSE_OVER_IO_URING: u64 = 1 << 41;
pub const FUSE_REQUEST_TIMEOUT: u64 = 1 << 42;

pub const FATTR_MODE: u32 = 1 << 0;
pub const FATTR_UID: u32 = 1 << 1;
pub const FATTR_GID: u32 = 1 << 2;
pub const FATTR_SIZE: u32 = 1 << 3;
pub const FATTR_ATIME: u32 = 1 << 4;
pub const FATTR_MTIME: u32 = 1 << 5;
pub const FATTR_FH: u32 = 1 << 6;
pub const FATTR_ATIME_NOW: u32 = 1 << 7;
pub const FATTR_MTIME_NOW: u32 = 1 << 8;
pub const FATTR_LOCKOWNER: u32 = 1 << 9;
pub const FATTR_CTIME: u32 = 1 << 10;
pub const FATTR_KILL_SUIDGID: u32 = 1 << 11;
pub const FOPEN_DIRECT_IO: u32 = 1 << 0;
pub const FOPEN_KEEP_CACHE: u32 = 1 << 1;
pub const FOPEN_NONSEEKABLE: u32 = 1 << 2;
pub const FOPEN_CACHE_DIR: u32 = 1 << 3;
pub const FOPEN_STREAM: u32 = 1 << 4;
pub const FOPEN_NOFLUSH: u32 = 1 << 5;
pub const FOPEN_PARALLEL_DIRECT_WRITES: u32 = 1 << 6;
pub const FOPEN_PASSTHROUGH: u32 = 1 << 7;
pub const CUSE_UNRESTRICTED_IOCTL: u32 = 1 << 0;
pub const FUSE_RELEASE_FLUSH: u32 = 1 << 0;
pub const FUSE_RELEASE_FLOCK_UNLOCK: u32 = 1 << 1;
pub const FUSE_GETATTR_FH: u32 = 1 << 0;
pub const FUSE_LK_FLOCK: u32 = 1 << 0;
pub const FUSE_WRITE_CACHE: u32 = 1 << 0;
pub const FUSE_WRITE_LOCKOWNER: u32 = 1 << 1;
pub const FUSE_WRITE_KILL_SUIDGID: u32 = 1 << 2;
pub const FUSE_READ_LOCKOWNER: u32 = 1 << 1;
pub const FUSE_IOCTL_COMPAT: u32 = 1 << 0;
pub const FUSE_IOCTL_UNRESTRICTED: u32 = 1 << 1;
pub const FUSE_IOCTL_RETRY: u32 = 1 << 2;
pub const FUSE_IOCTL_32BIT: u32 = 1 << 3;
pub const FUSE_IOCTL_DIR: u32 = 1 << 4;
pub const FUSE_IOCTL_COMPAT_X32: u32 = 1 << 5;
pub const FUSE_POLL_SCHEDULE_NOTIFY: u32 = 1 << 0;
pub const FUSE_FSYNC_FDATASYNC: u32 = 1 << 0;
pub const FUSE_ATTR_SUBMOUNT: u32 = 1 << 0;
pub const FUSE_ATTR_DAX: u32 = 1 << 1;
pub const FUSE_OPEN_KILL_SUIDGID: u32 = 1 << 0;
pub const FUSE_SETXATTR_ACL_KILL_SGID: u32 = 1 << 0;
pub const FUSE_EXPIRE_ONLY: u32 = 1 << 0;
pub const FUSE_UNIQUE_RESEND: u64 = 1 << 63;
pub const FUSE_SETUPMAPPING_FLAG_WRITE: u64 = 1 << 0;
pub const FUSE_SETUPMAPPING_FLAG_READ: u64 = 1 << 1;

pod_structs! {
    /// `struct fuse_attr` (include/uapi/linux/fuse.h).
    pub struct fuse_attr {
        pub ino: u64 = 0,
        pub size: u64 = 8,
        pub blocks: u64 = 16,
        pub atime: u64 = 24,
        pub mtime: u64 = 32,
        pub ctime: u64 = 40,
        pub atimensec: u32 = 48,
        pub mtimensec: u32 = 52,
        pub ctimensec: u32 = 56,
        pub mode: u32 = 60,
        pub nlink: u32 = 64,
        pub uid: u32 = 68,
        pub gid: u32 = 72,
        pub rdev: u32 = 76,
        pub blksize: u32 = 80,
        pub flags: u32 = 84,
    } = 88;

    /// `struct fuse_sx_time` (include/uapi/linux/fuse.h).
    pub struct fuse_sx_time {
        pub tv_sec: i64 = 0,
        pub tv_nsec: u32 = 8,
        pub reserved: i32 = 12,
    } = 16;

    /// `struct fuse_statx` (include/uapi/linux/fuse.h).
    pub struct fuse_statx {
        pub mask: u32 = 0,
        pub blksize: u32 = 4,
        pub attributes: u64 = 8,
        pub nlink: u32 = 16,
        pub uid: u32 = 20,
        pub gid: u32 = 24,
        pub mode: u16 = 28,
        pub spare0: [u16; 1] = 30,
        pub ino: u64 = 32,
        pub size: u64 = 40,
        pub blocks: u64 = 48,
        pub attributes_mask: u64 = 56,
        pub atime: fuse_sx_time = 64,
        pub btime: fuse_sx_time = 80,
        pub ctime: fuse_sx_time = 96,
        pub mtime: fuse_sx_time = 112,
        pub rdev_major: u32 = 128,
        pub rdev_minor: u32 = 132,
        pub dev_major: u32 = 136,
        pub dev_minor: u32 = 140,
        pub spare2: [u64; 14] = 144,
    } = 256;

    /// `struct fuse_kstatfs` (include/uapi/linux/fuse.h).
    pub struct fuse_kstatfs {
        pub blocks: u64 = 0,
        pub bfree: u64 = 8,
        pub bavail: u64 = 16,
        pub files: u64 = 24,
        pub ffree: u64 = 32,
        pub bsize: u32 = 40,
        pub namelen: u32 = 44,
        pub frsize: u32 = 48,
        pub padding: u32 = 52,
        pub spare: [u32; 6] = 56,
    } = 80;

    /// `struct fuse_file_lock` (include/uapi/linux/fuse.h).
    pub struct fuse_file_lock {
        pub start: u64 = 0,
        pub end: u64 = 8,
        pub r#type: u32 = 16,
        pub pid: u32 = 20,
    } = 24;

    /// `struct fuse_entry_out` (include/uapi/linux/fuse.h).
    pub struct fuse_entry_out {
        pub nodeid: u64 = 0,
        pub generation: u64 = 8,
        pub entry_valid: u64 = 16,
        pub attr_valid: u64 = 24,
        pub entry_valid_nsec: u32 = 32,
        pub attr_valid_nsec: u32 = 36,
        pub attr: fuse_attr = 40,
    } = 128;

    /// `struct fuse_forget_in` (include/uapi/linux/fuse.h).
    pub struct fuse_forget_in {
        pub nlookup: u64 = 0,
    } = 8;

    /// `struct fuse_forget_one` (include/uapi/linux/fuse.h).
    pub struct fuse_forget_one {
        pub nodeid: u64 = 0,
        pub nlookup: u64 = 8,
    } = 16;

    /// `struct fuse_batch_forget_in` (include/uapi/linux/fuse.h).
    pub struct fuse_batch_forget_in {
        pub count: u32 = 0,
        pub dummy: u32 = 4,
    } = 8;

    /// `struct fuse_getattr_in` (include/uapi/linux/fuse.h).
    pub struct fuse_getattr_in {
        pub getattr_flags: u32 = 0,
        pub dummy: u32 = 4,
        pub fh: u64 = 8,
    } = 16;

    /// `struct fuse_attr_out` (include/uapi/linux/fuse.h).
    pub struct fuse_attr_out {
        pub attr_valid: u64 = 0,
        pub attr_valid_nsec: u32 = 8,
        pub dummy: u32 = 12,
        pub attr: fuse_attr = 16,
    } = 104;

    /// `struct fuse_statx_in` (include/uapi/linux/fuse.h).
    pub struct fuse_statx_in {
        pub getattr_flags: u32 = 0,
        pub reserved: u32 = 4,
        pub fh: u64 = 8,
        pub sx_flags: u32 = 16,
        pub sx_mask: u32 = 20,
    } = 24;

    /// `struct fuse_statx_out` (include/uapi/linux/fuse.h).
    pub struct fuse_statx_out {
        pub attr_valid: u64 = 0,
        pub attr_valid_nsec: u32 = 8,
        pub flags: u32 = 12,
        pub spare: [u64; 2] = 16,
        pub stat: fuse_statx = 32,
    } = 288;

    /// `struct fuse_mknod_in` (include/uapi/linux/fuse.h).
    pub struct fuse_mknod_in {
        pub mode: u32 = 0,
        pub rdev: u32 = 4,
        pub umask: u32 = 8,
        pub padding: u32 = 12,
    } = 16;

    /// `struct fuse_mkdir_in` (include/uapi/linux/fuse.h).
    pub struct fuse_mkdir_in {
        pub mode: u32 = 0,
        pub umask: u32 = 4,
    } = 8;

    /// `struct fuse_rename_in` (include/uapi/linux/fuse.h).
    pub struct fuse_rename_in {
        pub newdir: u64 = 0,
    } = 8;

    /// `struct fuse_rename2_in` (include/uapi/linux/fuse.h).
    pub struct fuse_rename2_in {
        pub newdir: u64 = 0,
        pub flags: u32 = 8,
        pub padding: u32 = 12,
    } = 16;

    /// `struct fuse_link_in` (include/uapi/linux/fuse.h).
    pub struct fuse_link_in {
        pub oldnodeid: u64 = 0,
    } = 8;

    /// `struct fuse_setattr_in` (include/uapi/linux/fuse.h).
    pub struct fuse_setattr_in {
        pub valid: u32 = 0,
        pub padding: u32 = 4,
        pub fh: u64 = 8,
        pub size: u64 = 16,
        pub lock_owner: u64 = 24,
        pub atime: u64 = 32,
        pub mtime: u64 = 40,
        pub ctime: u64 = 48,
        pub atimensec: u32 = 56,
        pub mtimensec: u32 = 60,
        pub ctimensec: u32 = 64,
        pub mode: u32 = 68,
        pub unused4: u32 = 72,
        pub uid: u32 = 76,
        pub gid: u32 = 80,
        pub unused5: u32 = 84,
    } = 88;

    /// `struct fuse_open_in` (include/uapi/linux/fuse.h).
    pub struct fuse_open_in {
        pub flags: u32 = 0,
        pub open_flags: u32 = 4,
    } = 8;

    /// `struct fuse_create_in` (include/uapi/linux/fuse.h).
    pub struct fuse_create_in {
        pub flags: u32 = 0,
        pub mode: u32 = 4,
        pub umask: u32 = 8,
        pub open_flags: u32 = 12,
    } = 16;

    /// `struct fuse_open_out` (include/uapi/linux/fuse.h).
    pub struct fuse_open_out {
        pub fh: u64 = 0,
        pub open_flags: u32 = 8,
        pub backing_id: i32 = 12,
    } = 16;

    /// `struct fuse_release_in` (include/uapi/linux/fuse.h).
    pub struct fuse_release_in {
        pub fh: u64 = 0,
        pub flags: u32 = 8,
        pub release_flags: u32 = 12,
        pub lock_owner: u64 = 16,
    } = 24;

    /// `struct fuse_flush_in` (include/uapi/linux/fuse.h).
    pub struct fuse_flush_in {
        pub fh: u64 = 0,
        pub unused: u32 = 8,
        pub padding: u32 = 12,
        pub lock_owner: u64 = 16,
    } = 24;

    /// `struct fuse_read_in` (include/uapi/linux/fuse.h).
    pub struct fuse_read_in {
        pub fh: u64 = 0,
        pub offset: u64 = 8,
        pub size: u32 = 16,
        pub read_flags: u32 = 20,
        pub lock_owner: u64 = 24,
        pub flags: u32 = 32,
        pub padding: u32 = 36,
    } = 40;

    /// `struct fuse_write_in` (include/uapi/linux/fuse.h).
    pub struct fuse_write_in {
        pub fh: u64 = 0,
        pub offset: u64 = 8,
        pub size: u32 = 16,
        pub write_flags: u32 = 20,
        pub lock_owner: u64 = 24,
        pub flags: u32 = 32,
        pub padding: u32 = 36,
    } = 40;

    /// `struct fuse_write_out` (include/uapi/linux/fuse.h).
    pub struct fuse_write_out {
        pub size: u32 = 0,
        pub padding: u32 = 4,
    } = 8;

    /// `struct fuse_statfs_out` (include/uapi/linux/fuse.h).
    pub struct fuse_statfs_out {
        pub st: fuse_kstatfs = 0,
    } = 80;

    /// `struct fuse_fsync_in` (include/uapi/linux/fuse.h).
    pub struct fuse_fsync_in {
        pub fh: u64 = 0,
        pub fsync_flags: u32 = 8,
        pub padding: u32 = 12,
    } = 16;

    /// `struct fuse_setxattr_in` (include/uapi/linux/fuse.h).
    pub struct fuse_setxattr_in {
        pub size: u32 = 0,
        pub flags: u32 = 4,
        pub setxattr_flags: u32 = 8,
        pub padding: u32 = 12,
    } = 16;

    /// `struct fuse_getxattr_in` (include/uapi/linux/fuse.h).
    pub struct fuse_getxattr_in {
        pub size: u32 = 0,
        pub padding: u32 = 4,
    } = 8;

    /// `struct fuse_getxattr_out` (include/uapi/linux/fuse.h).
    pub struct fuse_getxattr_out {
        pub size: u32 = 0,
        pub padding: u32 = 4,
    } = 8;

    /// `struct fuse_lk_in` (include/uapi/linux/fuse.h).
    pub struct fuse_lk_in {
        pub fh: u64 = 0,
        pub owner: u64 = 8,
        pub lk: fuse_file_lock = 16,
        pub lk_flags: u32 = 40,
        pub padding: u32 = 44,
    } = 48;

    /// `struct fuse_lk_out` (include/uapi/linux/fuse.h).
    pub struct fuse_lk_out {
        pub lk: fuse_file_lock = 0,
    } = 24;

    /// `struct fuse_access_in` (include/uapi/linux/fuse.h).
    pub struct fuse_access_in {
        pub mask: u32 = 0,
        pub padding: u32 = 4,
    } = 8;

    /// `struct fuse_init_in` (include/uapi/linux/fuse.h).
    pub struct fuse_init_in {
        pub major: u32 = 0,
        pub minor: u32 = 4,
        pub max_readahead: u32 = 8,
        pub flags: u32 = 12,
        pub flags2: u32 = 16,
        pub unused: [u32; 11] = 20,
    } = 64;

    /// `struct fuse_init_out` (include/uapi/linux/fuse.h).
    pub struct fuse_init_out {
        pub major: u32 = 0,
        pub minor: u32 = 4,
        pub max_readahead: u32 = 8,
        pub flags: u32 = 12,
        pub max_background: u16 = 16,
        pub congestion_threshold: u16 = 18,
        pub max_write: u32 = 20,
        pub time_gran: u32 = 24,
        pub max_pages: u16 = 28,
        pub map_alignment: u16 = 30,
        pub flags2: u32 = 32,
        pub max_stack_depth: u32 = 36,
        pub request_timeout: u16 = 40,
        pub unused: [u16; 11] = 42,
    } = 64;

    /// `struct cuse_init_in` (include/uapi/linux/fuse.h).
    pub struct cuse_init_in {
        pub major: u32 = 0,
        pub minor: u32 = 4,
        pub unused: u32 = 8,
        pub flags: u32 = 12,
    } = 16;

    /// `struct cuse_init_out` (include/uapi/linux/fuse.h).
    pub struct cuse_init_out {
        pub major: u32 = 0,
        pub minor: u32 = 4,
        pub unused: u32 = 8,
        pub flags: u32 = 12,
        pub max_read: u32 = 16,
        pub max_write: u32 = 20,
        pub dev_major: u32 = 24,
        pub dev_minor: u32 = 28,
        pub spare: [u32; 10] = 32,
    } = 72;

    /// `struct fuse_interrupt_in` (include/uapi/linux/fuse.h).
    pub struct fuse_interrupt_in {
        pub unique: u64 = 0,
    } = 8;

    /// `struct fuse_bmap_in` (include/uapi/linux/fuse.h).
    pub struct fuse_bmap_in {
        pub block: u64 = 0,
        pub blocksize: u32 = 8,
        pub padding: u32 = 12,
    } = 16;

    /// `struct fuse_bmap_out` (include/uapi/linux/fuse.h).
    pub struct fuse_bmap_out {
        pub block: u64 = 0,
    } = 8;

    /// `struct fuse_ioctl_in` (include/uapi/linux/fuse.h).
    pub struct fuse_ioctl_in {
        pub fh: u64 = 0,
        pub flags: u32 = 8,
        pub cmd: u32 = 12,
        pub arg: u64 = 16,
        pub in_size: u32 = 24,
        pub out_size: u32 = 28,
    } = 32;

    /// `struct fuse_ioctl_iovec` (include/uapi/linux/fuse.h).
    pub struct fuse_ioctl_iovec {
        pub base: u64 = 0,
        pub len: u64 = 8,
    } = 16;

    /// `struct fuse_ioctl_out` (include/uapi/linux/fuse.h).
    pub struct fuse_ioctl_out {
        pub result: i32 = 0,
        pub flags: u32 = 4,
        pub in_iovs: u32 = 8,
        pub out_iovs: u32 = 12,
    } = 16;

    /// `struct fuse_poll_in` (include/uapi/linux/fuse.h).
    pub struct fuse_poll_in {
        pub fh: u64 = 0,
        pub kh: u64 = 8,
        pub flags: u32 = 16,
        pub events: u32 = 20,
    } = 24;

    /// `struct fuse_poll_out` (include/uapi/linux/fuse.h).
    pub struct fuse_poll_out {
        pub revents: u32 = 0,
        pub padding: u32 = 4,
    } = 8;

    /// `struct fuse_notify_poll_wakeup_out` (include/uapi/linux/fuse.h).
    pub struct fuse_notify_poll_wakeup_out {
        pub kh: u64 = 0,
    } = 8;

    /// `struct fuse_fallocate_in` (include/uapi/linux/fuse.h).
    pub struct fuse_fallocate_in {
        pub fh: u64 = 0,
        pub offset: u64 = 8,
        pub length: u64 = 16,
        pub mode: u32 = 24,
        pub padding: u32 = 28,
    } = 32;

    /// `struct fuse_in_header` (include/uapi/linux/fuse.h).
    pub struct fuse_in_header {
        pub len: u32 = 0,
        pub opcode: u32 = 4,
        pub unique: u64 = 8,
        pub nodeid: u64 = 16,
        pub uid: u32 = 24,
        pub gid: u32 = 28,
        pub pid: u32 = 32,
        pub total_extlen: u16 = 36,
        pub padding: u16 = 38,
    } = 40;

    /// `struct fuse_out_header` (include/uapi/linux/fuse.h).
    pub struct fuse_out_header {
        pub len: u32 = 0,
        pub error: i32 = 4,
        pub unique: u64 = 8,
    } = 16;

    /// `struct fuse_notify_inval_inode_out` (include/uapi/linux/fuse.h).
    pub struct fuse_notify_inval_inode_out {
        pub ino: u64 = 0,
        pub off: i64 = 8,
        pub len: i64 = 16,
    } = 24;

    /// `struct fuse_notify_inval_entry_out` (include/uapi/linux/fuse.h).
    pub struct fuse_notify_inval_entry_out {
        pub parent: u64 = 0,
        pub namelen: u32 = 8,
        pub flags: u32 = 12,
    } = 16;

    /// `struct fuse_notify_delete_out` (include/uapi/linux/fuse.h).
    pub struct fuse_notify_delete_out {
        pub parent: u64 = 0,
        pub child: u64 = 8,
        pub namelen: u32 = 16,
        pub padding: u32 = 20,
    } = 24;

    /// `struct fuse_notify_store_out` (include/uapi/linux/fuse.h).
    pub struct fuse_notify_store_out {
        pub nodeid: u64 = 0,
        pub offset: u64 = 8,
        pub size: u32 = 16,
        pub padding: u32 = 20,
    } = 24;

    /// `struct fuse_notify_retrieve_out` (include/uapi/linux/fuse.h).
    pub struct fuse_notify_retrieve_out {
        pub notify_unique: u64 = 0,
        pub nodeid: u64 = 8,
        pub offset: u64 = 16,
        pub size: u32 = 24,
        pub padding: u32 = 28,
    } = 32;

    /// `struct fuse_notify_retrieve_in` (include/uapi/linux/fuse.h).
    pub struct fuse_notify_retrieve_in {
        pub dummy1: u64 = 0,
        pub offset: u64 = 8,
        pub size: u32 = 16,
        pub dummy2: u32 = 20,
        pub dummy3: u64 = 24,
        pub dummy4: u64 = 32,
    } = 40;

    /// `struct fuse_notify_prune_out` (include/uapi/linux/fuse.h).
    pub struct fuse_notify_prune_out {
        pub count: u32 = 0,
        pub padding: u32 = 4,
        pub spare: u64 = 8,
    } = 16;

    /// `struct fuse_backing_map` (include/uapi/linux/fuse.h).
    pub struct fuse_backing_map {
        pub fd: i32 = 0,
        pub flags: u32 = 4,
        pub padding: u64 = 8,
    } = 16;

    /// `struct fuse_lseek_in` (include/uapi/linux/fuse.h).
    pub struct fuse_lseek_in {
        pub fh: u64 = 0,
        pub offset: u64 = 8,
        pub whence: u32 = 16,
        pub padding: u32 = 20,
    } = 24;

    /// `struct fuse_lseek_out` (include/uapi/linux/fuse.h).
    pub struct fuse_lseek_out {
        pub offset: u64 = 0,
    } = 8;

    /// `struct fuse_copy_file_range_in` (include/uapi/linux/fuse.h).
    pub struct fuse_copy_file_range_in {
        pub fh_in: u64 = 0,
        pub off_in: u64 = 8,
        pub nodeid_out: u64 = 16,
        pub fh_out: u64 = 24,
        pub off_out: u64 = 32,
        pub len: u64 = 40,
        pub flags: u64 = 48,
    } = 56;

    /// `struct fuse_copy_file_range_out` (include/uapi/linux/fuse.h).
    pub struct fuse_copy_file_range_out {
        pub bytes_copied: u64 = 0,
    } = 8;

    /// `struct fuse_setupmapping_in` (include/uapi/linux/fuse.h).
    pub struct fuse_setupmapping_in {
        pub fh: u64 = 0,
        pub foffset: u64 = 8,
        pub len: u64 = 16,
        pub flags: u64 = 24,
        pub moffset: u64 = 32,
    } = 40;

    /// `struct fuse_removemapping_in` (include/uapi/linux/fuse.h).
    pub struct fuse_removemapping_in {
        pub count: u32 = 0,
    } = 4;

    /// `struct fuse_removemapping_one` (include/uapi/linux/fuse.h).
    pub struct fuse_removemapping_one {
        pub moffset: u64 = 0,
        pub len: u64 = 8,
    } = 16;

    /// `struct fuse_syncfs_in` (include/uapi/linux/fuse.h).
    pub struct fuse_syncfs_in {
        pub padding: u64 = 0,
    } = 8;

    /// `struct fuse_secctx` (include/uapi/linux/fuse.h).
    pub struct fuse_secctx {
        pub size: u32 = 0,
        pub padding: u32 = 4,
    } = 8;

    /// `struct fuse_secctx_header` (include/uapi/linux/fuse.h).
    pub struct fuse_secctx_header {
        pub size: u32 = 0,
        pub nr_secctx: u32 = 4,
    } = 8;

    /// `struct fuse_ext_header` (include/uapi/linux/fuse.h).
    pub struct fuse_ext_header {
        pub size: u32 = 0,
        pub r#type: u32 = 4,
    } = 8;

    /// `struct fuse_uring_ent_in_out` (include/uapi/linux/fuse.h).
    pub struct fuse_uring_ent_in_out {
        pub flags: u64 = 0,
        pub commit_id: u64 = 8,
        pub payload_sz: u32 = 16,
        pub padding: u32 = 20,
        pub reserved: u64 = 24,
    } = 32;

    /// `struct fuse_uring_req_header` (include/uapi/linux/fuse.h).
    pub struct fuse_uring_req_header {
        pub in_out: [u8; 128] = 0,
        pub op_in: [u8; 128] = 128,
        pub ring_ent_in_out: fuse_uring_ent_in_out = 256,
    } = 288;

    /// `struct fuse_uring_cmd_req` (include/uapi/linux/fuse.h).
    pub struct fuse_uring_cmd_req {
        pub flags: u64 = 0,
        pub commit_id: u64 = 8,
        pub qid: u16 = 16,
        pub padding: [u8; 6] = 18,
    } = 24;

    /// `struct fuse_dirent` (include/uapi/linux/fuse.h).
    pub struct fuse_dirent {
        pub ino: u64 = 0,
        pub off: u64 = 8,
        pub namelen: u32 = 16,
        pub r#type: u32 = 20,
    } = 24;

    /// `struct fuse_direntplus` (include/uapi/linux/fuse.h).
    pub struct fuse_direntplus {
        pub entry_out: fuse_entry_out = 0,
        pub dirent: fuse_dirent = 128,
    } = 152;

    /// `struct fuse_supp_groups` (include/uapi/linux/fuse.h).
    pub struct fuse_supp_groups {
        pub nr_groups: u32 = 0,
    } = 4;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_fuse_h() {
        assert_eq!(FUSE_DEV_IOC_CLONE, 0x8004_E500);
        assert_eq!(FUSE_DEV_IOC_BACKING_OPEN, 0x4010_E501);
        assert_eq!(FUSE_DEV_IOC_BACKING_CLOSE, 0x4004_E502);
        assert_eq!(FUSE_DEV_IOC_SYNC_INIT, 0xE503);
    }

    #[test]
    fn dirent_alignment() {
        assert_eq!(fuse_dirent_align(FUSE_NAME_OFFSET + 1), 32);
        assert_eq!(fuse_dirent_align(FUSE_NAME_OFFSET + 8), 32);
        assert_eq!(fuse_dirent_align(FUSE_NAME_OFFSET_DIRENTPLUS + 9), 168);
        assert_eq!(core::mem::offset_of!(fuse_direntplus, dirent), 128);
    }
}
