//! Replies: out headers, payload encoders, and a checker that applies the kernel's rules.
//!
//! The two transports lay a reply out differently:
//! - classic `/dev/fuse`: one buffer, `fuse_out_header` (16 bytes) then the payload;
//! - FUSE-over-io_uring: the out header goes into the entry's 128-byte `in_out` area and
//!   *all* reply data (fixed structs included) into the separate payload buffer, whose
//!   length is reported in `fuse_uring_ent_in_out::payload_sz`.
//!
//! So payload writing is separate from header writing. A server writes the payload into
//! whatever slice the transport hands it (for classic, `&mut slot[16..]`) with the encoders
//! below or a [`PayloadWriter`]; then it builds the header with [`out_header`] (or
//! [`error_header`] for a header-only error reply) and the transport puts it where it
//! belongs.
//!
//! Every encoder has the same shape: `fn(buf: &mut [u8], ...) -> Result<usize,
//! BufferTooSmall>`. It writes at the start of `buf` and returns the payload length to pass
//! to [`out_header`]. If `buf` is too short nothing is written.
//!
//! [`check_reply`] applies the kernel's acceptance rules to a finished reply; tests and the
//! in-memory transport use it. [`parse_reply`] splits a classic reply buffer.
//!
//! Nothing here allocates or panics.
//!
//! # References
//! - `include/uapi/linux/fuse.h` (`struct fuse_out_header` and the `*_out` structs)
//! - `fs/fuse/dev.c` `fuse_dev_do_write`, `fuse_copy_out_args`; `fs/fuse/dev_uring.c`
//!   `fuse_uring_commit`

use core::mem::size_of;

use crate::Errno;
use crate::Opcode;
use crate::kernel::{CUSE_INIT_INFO_MAX, cuse_init_out, fuse_bmap_out};
use crate::kernel::{
    FUSE_COMPAT_22_INIT_OUT_SIZE, FUSE_COMPAT_INIT_OUT_SIZE, fuse_attr_out,
    fuse_copy_file_range_out, fuse_entry_out, fuse_file_lock, fuse_getxattr_out, fuse_init_out,
    fuse_ioctl_out, fuse_kstatfs, fuse_lk_out, fuse_lseek_out, fuse_open_out, fuse_out_header,
    fuse_poll_out, fuse_statfs_out, fuse_statx_out, fuse_write_out,
};
use crate::pod::{Pod, as_bytes, read_prefix};

/// Size of `struct fuse_out_header`.
pub const OUT_HEADER_SIZE: usize = size_of::<fuse_out_header>();

/// The longest READLINK reply the kernel accepts when no size is known: it reads the target
/// into one page and keeps the last byte for the NUL (`fs/fuse/dir.c`
/// `fuse_readlink_folio`: `folio_size - 1`), 4095 with 4 KiB pages.
pub const READLINK_MAX: usize = 4095;

/// A payload did not fit the buffer it was written into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BufferTooSmall {
    /// Bytes the write needed.
    pub needed: usize,
    /// Bytes that were free.
    pub available: usize,
}

impl core::fmt::Display for BufferTooSmall {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "reply buffer too small: {} bytes needed, {} available",
            self.needed, self.available
        )
    }
}

impl core::error::Error for BufferTooSmall {}

/// Why the kernel would reject a reply (see [`check_reply`]), or why a classic reply
/// buffer is malformed (see [`parse_reply`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReplyError {
    /// Fewer bytes than a `fuse_out_header`.
    Truncated {
        /// Bytes present.
        len: usize,
    },
    /// `fuse_out_header::len` is not 16 + the payload length.
    LenMismatch {
        /// The header's `len`.
        header_len: u32,
        /// 16 + the payload length actually present.
        actual: usize,
    },
    /// `unique == 0`: that is a notification, not a reply.
    Notification,
    /// `error` is positive or below -511.
    InvalidError(i32),
    /// The opcode (FORGET, `BATCH_FORGET`, `NOTIFY_REPLY`) takes no reply; the kernel answers
    /// one with ENOENT.
    NoReply(Opcode),
    /// An error reply carried a payload; error replies are header-only.
    ErrorWithPayload {
        /// Payload bytes present.
        len: usize,
    },
    /// A fixed-size reply with the wrong payload size.
    WrongSize {
        /// The size the kernel expects.
        expected: usize,
        /// The size present.
        actual: usize,
    },
    /// A variable-size ("argvar") reply longer than the request allows.
    TooLong {
        /// The largest size the kernel accepts.
        max: usize,
        /// The size present.
        actual: usize,
    },
    /// A variable-size reply shorter than its fixed head (IOCTL, `CUSE_INIT`).
    TooShort {
        /// The smallest size the kernel accepts.
        min: usize,
        /// The size present.
        actual: usize,
    },
    /// The opcode's limit depends on the request's `size` and none was given (a misuse of
    /// [`check_reply`], not a kernel rule).
    MissingSizeHint(Opcode),
    /// A success reply to an opcode this crate does not know: answer those with ENOSYS.
    UnknownOpcode(u32),
}

impl ReplyError {
    /// The error the kernel's `write(2)` on `/dev/fuse` returns for such a reply: ENOENT
    /// for a reply to a request that takes none, EINVAL otherwise. ([`Self::MissingSizeHint`]
    /// and [`Self::UnknownOpcode`] are not kernel outcomes; they map to EINVAL.)
    pub const fn kernel_errno(self) -> Errno {
        match self {
            ReplyError::NoReply(_) => Errno::ENOENT,
            _ => Errno::EINVAL,
        }
    }
}

impl core::fmt::Display for ReplyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            ReplyError::Truncated { len } => {
                write!(f, "reply of {len} bytes is shorter than fuse_out_header")
            }
            ReplyError::LenMismatch { header_len, actual } => {
                write!(
                    f,
                    "fuse_out_header.len is {header_len} but the reply has {actual} bytes"
                )
            }
            ReplyError::Notification => f.write_str("unique 0 marks a notification, not a reply"),
            ReplyError::InvalidError(e) => {
                write!(f, "error {e} is outside 0 and -511..=-1")
            }
            ReplyError::NoReply(op) => write!(f, "{op} takes no reply"),
            ReplyError::ErrorWithPayload { len } => {
                write!(f, "error reply carries {len} payload bytes")
            }
            ReplyError::WrongSize { expected, actual } => {
                write!(f, "payload is {actual} bytes, expected exactly {expected}")
            }
            ReplyError::TooLong { max, actual } => {
                write!(f, "payload is {actual} bytes, at most {max} allowed")
            }
            ReplyError::TooShort { min, actual } => {
                write!(f, "payload is {actual} bytes, at least {min} needed")
            }
            ReplyError::MissingSizeHint(op) => {
                write!(f, "checking a {op} reply needs the request's size")
            }
            ReplyError::UnknownOpcode(n) => {
                write!(f, "success reply to unknown opcode {n}; reply ENOSYS")
            }
        }
    }
}

impl core::error::Error for ReplyError {}

/// `struct fuse_out_header` of a success reply: `len = 16 + payload_len`, `error = 0`.
///
/// A `payload_len` whose total does not fit a `u32` gives `len = u32::MAX`, which
/// [`check_reply`] and the kernel reject; no transport buffer is that large.
#[doc(alias = "fuse_out_header")]
pub fn out_header(unique: u64, payload_len: usize) -> fuse_out_header {
    let len = OUT_HEADER_SIZE.saturating_add(payload_len);
    fuse_out_header {
        len: u32::try_from(len).unwrap_or(u32::MAX),
        error: 0,
        unique,
    }
}

/// `struct fuse_out_header` of an error reply: header only (`len = 16`),
/// `error = -errno`, always in `-511..=-1`.
pub fn error_header(unique: u64, err: Errno) -> fuse_out_header {
    fuse_out_header {
        len: OUT_HEADER_SIZE as u32,
        error: err.to_wire(),
        unique,
    }
}

/// Appends reply data to a caller's buffer, front to back. Never allocates or panics;
/// every write is all-or-nothing.
#[derive(Debug)]
pub struct PayloadWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl<'b> PayloadWriter<'b> {
    /// A writer at the start of `buf`.
    #[inline]
    pub fn new(buf: &'b mut [u8]) -> Self {
        Self { buf, len: 0 }
    }

    /// Appends the bytes of `value`.
    ///
    /// # Errors
    ///
    /// [`BufferTooSmall`] if fewer than `size_of::<T>()` bytes remain; nothing is written.
    #[inline]
    pub fn push<T: Pod>(&mut self, value: &T) -> Result<(), BufferTooSmall> {
        self.push_bytes(as_bytes(value))
    }

    /// Appends `bytes`.
    ///
    /// # Errors
    ///
    /// [`BufferTooSmall`] if fewer than `bytes.len()` bytes remain; nothing is written.
    pub fn push_bytes(&mut self, bytes: &[u8]) -> Result<(), BufferTooSmall> {
        let available = self.remaining();
        let dst = self
            .buf
            .get_mut(self.len..)
            .and_then(|spare| spare.get_mut(..bytes.len()))
            .ok_or(BufferTooSmall {
                needed: bytes.len(),
                available,
            })?;
        dst.copy_from_slice(bytes);
        self.len += bytes.len();
        Ok(())
    }

    /// The unwritten space, so data can be read straight into place; follow with
    /// [`advance`](Self::advance).
    #[inline]
    pub fn spare_mut(&mut self) -> &mut [u8] {
        self.buf.get_mut(self.len..).unwrap_or_default()
    }

    /// Counts `n` more bytes of [`spare_mut`](Self::spare_mut) as written.
    ///
    /// # Errors
    ///
    /// [`BufferTooSmall`] if fewer than `n` bytes remain; the length is unchanged.
    pub fn advance(&mut self, n: usize) -> Result<(), BufferTooSmall> {
        let available = self.remaining();
        if n > available {
            return Err(BufferTooSmall {
                needed: n,
                available,
            });
        }
        self.len += n;
        Ok(())
    }

    /// Bytes written so far (the payload length for [`out_header`]).
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing has been written.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes written so far.
    #[inline]
    pub fn written(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }

    /// The size of the whole buffer.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Bytes still free.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.len
    }
}

/// Writes `value` at the start of `buf`; the common body of the fixed-size encoders.
fn put<T: Pod>(buf: &mut [u8], value: &T) -> Result<usize, BufferTooSmall> {
    let mut w = PayloadWriter::new(buf);
    w.push(value)?;
    Ok(w.len())
}

/// Writes `head` then `tail` at the start of `buf`, or nothing if they do not both fit.
fn put_with_tail<T: Pod>(buf: &mut [u8], head: &T, tail: &[u8]) -> Result<usize, BufferTooSmall> {
    let needed = size_of::<T>().saturating_add(tail.len());
    if needed > buf.len() {
        return Err(BufferTooSmall {
            needed,
            available: buf.len(),
        });
    }
    let mut w = PayloadWriter::new(buf);
    w.push(head)?;
    w.push_bytes(tail)?;
    Ok(w.len())
}

/// `struct fuse_entry_out` (128 bytes): the reply to LOOKUP, MKNOD, MKDIR, SYMLINK, LINK.
///
/// `nodeid = 0` in a LOOKUP reply is a negative entry, cached for `entry_valid`.
///
/// # References
/// - `include/uapi/linux/fuse.h` `struct fuse_entry_out`
///
/// # Errors
///
/// [`BufferTooSmall`] if `buf` is shorter than 128 bytes; nothing is written then.
#[doc(alias = "fuse_entry_out")]
pub fn entry(buf: &mut [u8], out: &fuse_entry_out) -> Result<usize, BufferTooSmall> {
    put(buf, out)
}

/// `struct fuse_attr_out` (104 bytes): the reply to GETATTR and SETATTR.
///
/// # Errors
///
/// [`BufferTooSmall`] if `buf` is shorter than 104 bytes; nothing is written then.
#[doc(alias = "fuse_attr_out")]
pub fn attr(buf: &mut [u8], out: &fuse_attr_out) -> Result<usize, BufferTooSmall> {
    put(buf, out)
}

/// `struct fuse_open_out` (16 bytes): the reply to OPEN and OPENDIR.
///
/// # Errors
///
/// [`BufferTooSmall`] if `buf` is shorter than 16 bytes; nothing is written then.
#[doc(alias = "fuse_open_out")]
pub fn open(buf: &mut [u8], out: &fuse_open_out) -> Result<usize, BufferTooSmall> {
    put(buf, out)
}

/// `struct fuse_entry_out` + `struct fuse_open_out` (144 bytes): the reply to CREATE and
/// TMPFILE.
///
/// # Errors
///
/// [`BufferTooSmall`] if `buf` is shorter than 144 bytes; nothing is written then.
pub fn create(
    buf: &mut [u8],
    entry: &fuse_entry_out,
    open: &fuse_open_out,
) -> Result<usize, BufferTooSmall> {
    put_with_tail(buf, entry, as_bytes(open))
}

/// `struct fuse_write_out` (8 bytes): the reply to WRITE and `COPY_FILE_RANGE` (bytes
/// written or copied).
///
/// # Errors
///
/// [`BufferTooSmall`] if `buf` is shorter than 8 bytes; nothing is written then.
#[doc(alias = "fuse_write_out")]
pub fn write(buf: &mut [u8], size: u32) -> Result<usize, BufferTooSmall> {
    put(buf, &fuse_write_out { size, padding: 0 })
}

/// `struct fuse_copy_file_range_out` (8 bytes): the reply to `COPY_FILE_RANGE_64`.
///
/// # Errors
///
/// [`BufferTooSmall`] if `buf` is shorter than 8 bytes; nothing is written then.
#[doc(alias = "fuse_copy_file_range_out")]
pub fn copy_file_range_64(buf: &mut [u8], bytes_copied: u64) -> Result<usize, BufferTooSmall> {
    put(buf, &fuse_copy_file_range_out { bytes_copied })
}

/// `struct fuse_statfs_out` (80 bytes): the reply to STATFS.
///
/// # Errors
///
/// [`BufferTooSmall`] if `buf` is shorter than 80 bytes; nothing is written then.
#[doc(alias = "fuse_statfs_out")]
pub fn statfs(buf: &mut [u8], st: &fuse_kstatfs) -> Result<usize, BufferTooSmall> {
    put(buf, &fuse_statfs_out { st: *st })
}

/// `struct fuse_getxattr_out` (8 bytes): the reply to GETXATTR or LISTXATTR whose request
/// `size` was 0 (the size of the value or list). For `size > 0` reply the bytes themselves
/// with [`data`].
///
/// # Errors
///
/// [`BufferTooSmall`] if `buf` is shorter than 8 bytes; nothing is written then.
#[doc(alias = "fuse_getxattr_out")]
pub fn xattr_size(buf: &mut [u8], size: u32) -> Result<usize, BufferTooSmall> {
    put(buf, &fuse_getxattr_out { size, padding: 0 })
}

/// `struct fuse_lk_out` (24 bytes): the reply to GETLK.
///
/// # Errors
///
/// [`BufferTooSmall`] if `buf` is shorter than 24 bytes; nothing is written then.
#[doc(alias = "fuse_lk_out")]
pub fn lk(buf: &mut [u8], lock: &fuse_file_lock) -> Result<usize, BufferTooSmall> {
    put(buf, &fuse_lk_out { lk: *lock })
}

/// `struct fuse_bmap_out` (8 bytes): the reply to BMAP.
///
/// # Errors
///
/// [`BufferTooSmall`] if `buf` is shorter than 8 bytes; nothing is written then.
#[doc(alias = "fuse_bmap_out")]
pub fn bmap(buf: &mut [u8], block: u64) -> Result<usize, BufferTooSmall> {
    put(buf, &fuse_bmap_out { block })
}

/// `struct fuse_ioctl_out` (16 bytes) followed by the output data: the reply to IOCTL.
/// `data` may be at most the request's `out_size` bytes.
///
/// # Errors
///
/// [`BufferTooSmall`] if `buf` is shorter than 16 + `data.len()` bytes; nothing is written then.
#[doc(alias = "fuse_ioctl_out")]
pub fn ioctl(buf: &mut [u8], out: &fuse_ioctl_out, data: &[u8]) -> Result<usize, BufferTooSmall> {
    put_with_tail(buf, out, data)
}

/// `struct fuse_poll_out` (8 bytes): the reply to POLL.
///
/// # Errors
///
/// [`BufferTooSmall`] if `buf` is shorter than 8 bytes; nothing is written then.
#[doc(alias = "fuse_poll_out")]
pub fn poll(buf: &mut [u8], revents: u32) -> Result<usize, BufferTooSmall> {
    put(
        buf,
        &fuse_poll_out {
            revents,
            padding: 0,
        },
    )
}

/// `struct fuse_lseek_out` (8 bytes): the reply to LSEEK.
///
/// # Errors
///
/// [`BufferTooSmall`] if `buf` is shorter than 8 bytes; nothing is written then.
#[doc(alias = "fuse_lseek_out")]
pub fn lseek(buf: &mut [u8], offset: u64) -> Result<usize, BufferTooSmall> {
    put(buf, &fuse_lseek_out { offset })
}

/// `struct fuse_statx_out` (288 bytes): the reply to STATX.
///
/// # Errors
///
/// [`BufferTooSmall`] if `buf` is shorter than 288 bytes; nothing is written then.
#[doc(alias = "fuse_statx_out")]
pub fn statx(buf: &mut [u8], out: &fuse_statx_out) -> Result<usize, BufferTooSmall> {
    put(buf, out)
}

/// The size of the `fuse_init_out` to send to a kernel speaking `kernel_minor` (the minor of
/// its `fuse_init_in`): 8 bytes if < 5 (`FUSE_COMPAT_INIT_OUT_SIZE`), 24 if < 23
/// (`FUSE_COMPAT_22_INIT_OUT_SIZE`), else the full 64. As libfuse and fuser do.
pub const fn init_out_size(kernel_minor: u32) -> usize {
    if kernel_minor < 5 {
        FUSE_COMPAT_INIT_OUT_SIZE
    } else if kernel_minor < 23 {
        FUSE_COMPAT_22_INIT_OUT_SIZE
    } else {
        size_of::<fuse_init_out>()
    }
}

/// `struct fuse_init_out`, truncated to [`init_out_size`]`(kernel_minor)`: the reply to
/// INIT. (For the "version only" answer to a kernel whose major is above 7, pass
/// `kernel_minor = 0`: 8 bytes, `{major, minor}`.)
///
/// # Errors
///
/// [`BufferTooSmall`] if `buf` is shorter than [`init_out_size`]`(kernel_minor)` bytes; nothing is written then.
#[doc(alias = "fuse_init_out")]
pub fn init(
    buf: &mut [u8],
    out: &fuse_init_out,
    kernel_minor: u32,
) -> Result<usize, BufferTooSmall> {
    let bytes = as_bytes(out);
    data(
        buf,
        bytes.get(..init_out_size(kernel_minor)).unwrap_or(bytes),
    )
}

/// Raw bytes: the reply to READ (file data), READLINK (the target, no NUL needed), and
/// GETXATTR/LISTXATTR with a nonzero request size (the value, or the NUL-separated list).
///
/// # Errors
///
/// [`BufferTooSmall`] if `buf` is shorter than `bytes`; nothing is written then.
pub fn data(buf: &mut [u8], bytes: &[u8]) -> Result<usize, BufferTooSmall> {
    let mut w = PayloadWriter::new(buf);
    w.push_bytes(bytes)?;
    Ok(w.len())
}

/// Splits a classic `/dev/fuse` reply (one `write`) into its header and payload.
///
/// Checks only the framing: at least 16 bytes, and `len` equal to the buffer's length.
/// [`check_reply`] applies the rest of the kernel's rules.
///
/// # Errors
///
/// [`ReplyError::Truncated`] below 16 bytes, [`ReplyError::LenMismatch`] if `len` is not
/// the buffer's length.
pub fn parse_reply(bytes: &[u8]) -> Result<(fuse_out_header, &[u8]), ReplyError> {
    let (header, payload) =
        read_prefix::<fuse_out_header>(bytes).ok_or(ReplyError::Truncated { len: bytes.len() })?;
    if usize::try_from(header.len).ok() != Some(bytes.len()) {
        return Err(ReplyError::LenMismatch {
            header_len: header.len,
            actual: bytes.len(),
        });
    }
    Ok((header, payload))
}

/// What a success reply's payload must look like.
enum Shape {
    /// The request takes no reply at all.
    None,
    /// Exactly this many bytes (0 for header-only replies).
    Exact(usize),
    /// "argvar": from `min` up to `max` bytes.
    Range { min: usize, max: usize },
}

/// The payload a success reply to `opcode` must have, after `fs/fuse` (each request's
/// `out_args`, with `out_argvar` letting only the last argument come up short).
fn shape(opcode: Opcode, hint: Option<u32>) -> Result<Shape, ReplyError> {
    const ENTRY: usize = size_of::<fuse_entry_out>();
    let need_hint = || {
        hint.map(|n| n as usize)
            .ok_or(ReplyError::MissingSizeHint(opcode))
    };
    Ok(match opcode {
        Opcode::Forget | Opcode::BatchForget | Opcode::NotifyReply => Shape::None,
        Opcode::Lookup | Opcode::Mknod | Opcode::Mkdir | Opcode::Symlink | Opcode::Link => {
            Shape::Exact(ENTRY)
        }
        Opcode::Getattr | Opcode::Setattr => Shape::Exact(size_of::<fuse_attr_out>()),
        Opcode::Open | Opcode::Opendir => Shape::Exact(size_of::<fuse_open_out>()),
        Opcode::Create | Opcode::Tmpfile => Shape::Exact(ENTRY + size_of::<fuse_open_out>()),
        Opcode::Write | Opcode::CopyFileRange => Shape::Exact(size_of::<fuse_write_out>()),
        Opcode::CopyFileRange64 => Shape::Exact(size_of::<fuse_copy_file_range_out>()),
        Opcode::Statfs => Shape::Exact(size_of::<fuse_statfs_out>()),
        Opcode::Getlk => Shape::Exact(size_of::<fuse_lk_out>()),
        Opcode::Bmap => Shape::Exact(size_of::<fuse_bmap_out>()),
        Opcode::Poll => Shape::Exact(size_of::<fuse_poll_out>()),
        Opcode::Lseek => Shape::Exact(size_of::<fuse_lseek_out>()),
        Opcode::Statx => Shape::Exact(size_of::<fuse_statx_out>()),
        Opcode::Readlink => Shape::Range {
            min: 0,
            max: hint.map_or(READLINK_MAX, |n| n as usize),
        },
        Opcode::Read | Opcode::Readdir | Opcode::Readdirplus => Shape::Range {
            min: 0,
            max: need_hint()?,
        },
        Opcode::Getxattr | Opcode::Listxattr => match need_hint()? {
            0 => Shape::Exact(size_of::<fuse_getxattr_out>()),
            size => Shape::Range { min: 0, max: size },
        },
        Opcode::Init => Shape::Range {
            min: 0,
            max: size_of::<fuse_init_out>(),
        },
        Opcode::Ioctl => Shape::Range {
            min: size_of::<fuse_ioctl_out>(),
            max: size_of::<fuse_ioctl_out>().saturating_add(need_hint()?),
        },
        Opcode::CuseInit => Shape::Range {
            min: size_of::<cuse_init_out>(),
            max: size_of::<cuse_init_out>() + CUSE_INIT_INFO_MAX,
        },
        Opcode::Unlink
        | Opcode::Rmdir
        | Opcode::Rename
        | Opcode::Rename2
        | Opcode::Release
        | Opcode::Releasedir
        | Opcode::Fsync
        | Opcode::Fsyncdir
        | Opcode::Setxattr
        | Opcode::Removexattr
        | Opcode::Flush
        | Opcode::Setlk
        | Opcode::Setlkw
        | Opcode::Access
        | Opcode::Interrupt
        | Opcode::Destroy
        | Opcode::Fallocate
        | Opcode::Syncfs
        | Opcode::SetupMapping
        | Opcode::RemoveMapping => Shape::Exact(0),
        Opcode::Unknown(n) => return Err(ReplyError::UnknownOpcode(n)),
    })
}

/// Checks a reply the way the kernel does before accepting it (classic `/dev/fuse`,
/// `fuse_dev_do_write` + `fuse_copy_out_args`), in the kernel's order:
///
/// 1. `header.len == 16 + payload.len()`;
/// 2. `unique != 0` (0 is a notification);
/// 3. `error` is 0 or in `-511..=-1`;
/// 4. the opcode takes a reply at all (not FORGET, `BATCH_FORGET`, `NOTIFY_REPLY`);
/// 5. an error reply is header-only (any errno is accepted for any opcode);
/// 6. a success payload has the size the opcode expects: exactly the struct size for
///    fixed replies, 0 bytes for header-only ones (RELEASE, FLUSH, UNLINK, ...), and
///    for "argvar" replies at most the limit below.
///
/// `request_size_hint` is the request's own size field, needed where the limit depends on
/// it: `fuse_read_in::size` for READ, READDIR, READDIRPLUS (payload ≤ size);
/// `fuse_getxattr_in::size` for GETXATTR and LISTXATTR (0: exactly a `fuse_getxattr_out`,
/// else ≤ size); `fuse_ioctl_in::out_size` for IOCTL (16 ≤ payload ≤ 16 + `out_size`).
/// Without it those opcodes give [`ReplyError::MissingSizeHint`]. Other limits: READLINK ≤
/// the hint if given, else [`READLINK_MAX`]; INIT ≤ 64 (any shorter length is accepted and
/// zero-extended); `CUSE_INIT` 72..=72 + 4096. The hint is ignored for the other opcodes.
///
/// Assumptions, where the kernel's rule depends on state this function does not see:
/// - the negotiated minor is ≥ 9, so `fuse_entry_out` is 128 bytes and `fuse_attr_out`
///   104 (the 120/96-byte compat forms apply only to servers that answer INIT with a
///   smaller minor, which ringfuse never does);
/// - the reply answers a request the kernel is still waiting for (the kernel also gives
///   ENOENT for a stale or unknown `unique`, which needs the request list);
/// - [`Opcode::Unknown`] accepts only error replies ([`ReplyError::UnknownOpcode`]
///   otherwise), since its shape is unknown; the kernel never sends opcodes it lacks;
/// - SETUPMAPPING/REMOVEMAPPING (DAX, virtiofs) and DESTROY are taken as header-only,
///   INTERRUPT too (its reply is optional; the kernel acts only on -ENOSYS and -EAGAIN).
///
/// Over FUSE-over-io_uring the kernel does not check `len`, ends a request whose `error`
/// is out of range with EINVAL, and expects `NOTIFY_REPLY` to be committed with an empty
/// success; the other rules are the same.
///
/// # Errors
///
/// The first rule broken, as a [`ReplyError`].
pub fn check_reply(
    opcode: Opcode,
    request_size_hint: Option<u32>,
    header: &fuse_out_header,
    payload: &[u8],
) -> Result<(), ReplyError> {
    let actual_total = OUT_HEADER_SIZE.saturating_add(payload.len());
    if usize::try_from(header.len).ok() != Some(actual_total) {
        return Err(ReplyError::LenMismatch {
            header_len: header.len,
            actual: actual_total,
        });
    }
    if header.unique == 0 {
        return Err(ReplyError::Notification);
    }
    if header.error != 0 && Errno::from_wire(header.error).is_none() {
        return Err(ReplyError::InvalidError(header.error));
    }
    if opcode.is_no_reply() {
        return Err(ReplyError::NoReply(opcode));
    }
    if header.error != 0 {
        return if payload.is_empty() {
            Ok(())
        } else {
            Err(ReplyError::ErrorWithPayload { len: payload.len() })
        };
    }
    let actual = payload.len();
    match shape(opcode, request_size_hint)? {
        Shape::None => Err(ReplyError::NoReply(opcode)),
        Shape::Exact(expected) if actual != expected => {
            Err(ReplyError::WrongSize { expected, actual })
        }
        Shape::Range { min, .. } if actual < min => Err(ReplyError::TooShort { min, actual }),
        Shape::Range { max, .. } if actual > max => Err(ReplyError::TooLong { max, actual }),
        Shape::Exact(_) | Shape::Range { .. } => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::{fuse_attr, fuse_statx, fuse_sx_time};
    use crate::pod::write_prefix;

    fn sample_attr() -> fuse_attr {
        fuse_attr {
            ino: 42,
            size: 4096,
            blocks: 8,
            atime: 1,
            mtime: 2,
            ctime: 3,
            atimensec: 4,
            mtimensec: 5,
            ctimensec: 6,
            mode: 0o100_644,
            nlink: 1,
            uid: 1000,
            gid: 1000,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    fn sample_entry() -> fuse_entry_out {
        fuse_entry_out {
            nodeid: 42,
            generation: 7,
            entry_valid: 1,
            attr_valid: 2,
            entry_valid_nsec: 3,
            attr_valid_nsec: 4,
            attr: sample_attr(),
        }
    }

    fn u32_at(b: &[u8], off: usize) -> u32 {
        u32::from_ne_bytes(b[off..off + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8], off: usize) -> u64 {
        u64::from_ne_bytes(b[off..off + 8].try_into().unwrap())
    }

    fn ok(op: Opcode, hint: Option<u32>, payload: &[u8]) -> Result<(), ReplyError> {
        check_reply(op, hint, &out_header(2, payload.len()), payload)
    }

    #[test]
    fn headers() {
        let h = out_header(0x1234, 128);
        assert_eq!((h.len, h.error, h.unique), (144, 0, 0x1234));
        assert_eq!(out_header(1, usize::MAX).len, u32::MAX);
        assert_eq!(out_header(1, u32::MAX as usize).len, u32::MAX);
        let e = error_header(6, Errno::ENOENT);
        assert_eq!((e.len, e.error, e.unique), (16, -2, 6));
    }

    #[test]
    fn every_errno_gives_a_valid_header_only_error() {
        for n in 1..=511 {
            let err = Errno::new(n).unwrap();
            let h = error_header(8, err);
            assert_eq!(h.len, 16);
            assert_eq!(h.error, -n);
            assert!((-511..=-1).contains(&h.error));
            for &op in Opcode::ALL {
                let expect = if op.is_no_reply() {
                    Err(ReplyError::NoReply(op))
                } else {
                    Ok(())
                };
                assert_eq!(check_reply(op, None, &h, &[]), expect, "{op} {n}");
            }
            assert_eq!(check_reply(Opcode::Unknown(999), None, &h, &[]), Ok(()));
        }
    }

    #[test]
    fn writer_basics() {
        let mut buf = [0xEEu8; 12];
        let mut w = PayloadWriter::new(&mut buf);
        assert!(w.is_empty());
        assert_eq!(w.capacity(), 12);
        w.push(&0x0102_0304_u32).unwrap();
        w.push_bytes(b"ab").unwrap();
        assert_eq!(w.len(), 6);
        assert_eq!(
            w.push(&7u64),
            Err(BufferTooSmall {
                needed: 8,
                available: 6
            })
        );
        assert_eq!(w.len(), 6, "failed push writes nothing");
        let spare = w.spare_mut();
        assert_eq!(spare.len(), 6);
        spare[..3].copy_from_slice(b"xyz");
        assert_eq!(
            w.advance(7),
            Err(BufferTooSmall {
                needed: 7,
                available: 6
            })
        );
        w.advance(3).unwrap();
        assert_eq!(w.remaining(), 3);
        let mut expect = [0u8; 9];
        expect[..4].copy_from_slice(&0x0102_0304_u32.to_ne_bytes());
        expect[4..].copy_from_slice(b"abxyz");
        assert_eq!(w.written(), &expect);
        w.advance(3).unwrap();
        assert_eq!(w.spare_mut().len(), 0);
        assert!(w.push_bytes(&[]).is_ok());
        assert!(w.push_bytes(&[1]).is_err());
        assert_eq!(buf[11], 0xEE);
    }

    #[test]
    fn entry_bytes() {
        let mut buf = [0u8; 256];
        let n = entry(&mut buf, &sample_entry()).unwrap();
        assert_eq!(n, 128);
        assert_eq!(u64_at(&buf, 0), 42);
        assert_eq!(u64_at(&buf, 8), 7);
        assert_eq!(u32_at(&buf, 32), 3);
        assert_eq!(u64_at(&buf, 40), 42, "attr.ino");
        assert_eq!(u32_at(&buf, 40 + 60), 0o100_644, "attr.mode");
        assert_eq!(u32_at(&buf, 40 + 80), 4096, "attr.blksize");
        for op in [
            Opcode::Lookup,
            Opcode::Mknod,
            Opcode::Mkdir,
            Opcode::Symlink,
            Opcode::Link,
        ] {
            assert_eq!(ok(op, None, &buf[..n]), Ok(()));
        }
        assert_eq!(
            entry(&mut [0u8; 127], &sample_entry()),
            Err(BufferTooSmall {
                needed: 128,
                available: 127
            })
        );
    }

    #[test]
    fn attr_open_create_bytes() {
        let mut buf = [0u8; 256];
        let a = fuse_attr_out {
            attr_valid: 9,
            attr_valid_nsec: 10,
            dummy: 0,
            attr: sample_attr(),
        };
        let n = attr(&mut buf, &a).unwrap();
        assert_eq!(n, 104);
        assert_eq!(u64_at(&buf, 0), 9);
        assert_eq!(u64_at(&buf, 16), 42);
        assert_eq!(ok(Opcode::Getattr, None, &buf[..n]), Ok(()));
        assert_eq!(ok(Opcode::Setattr, None, &buf[..n]), Ok(()));

        let o = fuse_open_out {
            fh: 0xABCD,
            open_flags: crate::kernel::FOPEN_KEEP_CACHE,
            backing_id: -1,
        };
        let n = open(&mut buf, &o).unwrap();
        assert_eq!(n, 16);
        assert_eq!(&buf[..16], as_bytes(&o));
        assert_eq!(u32_at(&buf, 8), 2);
        assert_eq!(u32_at(&buf, 12), u32::MAX);
        assert_eq!(ok(Opcode::Open, None, &buf[..n]), Ok(()));
        assert_eq!(ok(Opcode::Opendir, None, &buf[..n]), Ok(()));

        let mut buf = [0xFFu8; 144];
        let n = create(&mut buf, &sample_entry(), &o).unwrap();
        assert_eq!(n, 144);
        assert_eq!(&buf[..128], as_bytes(&sample_entry()));
        assert_eq!(&buf[128..], as_bytes(&o));
        assert_eq!(ok(Opcode::Create, None, &buf), Ok(()));
        assert_eq!(ok(Opcode::Tmpfile, None, &buf), Ok(()));
        let mut small = [0x55u8; 143];
        assert!(create(&mut small, &sample_entry(), &o).is_err());
        assert!(
            small.iter().all(|&b| b == 0x55),
            "nothing written on failure"
        );
    }

    #[test]
    fn small_struct_bytes() {
        let mut buf = [0xFFu8; 32];

        let n = write(&mut buf, 5000).unwrap();
        assert_eq!((n, u32_at(&buf, 0), u32_at(&buf, 4)), (8, 5000, 0));
        assert_eq!(ok(Opcode::Write, None, &buf[..n]), Ok(()));
        assert_eq!(ok(Opcode::CopyFileRange, None, &buf[..n]), Ok(()));

        let n = copy_file_range_64(&mut buf, 1 << 40).unwrap();
        assert_eq!((n, u64_at(&buf, 0)), (8, 1 << 40));
        assert_eq!(ok(Opcode::CopyFileRange64, None, &buf[..n]), Ok(()));

        buf.fill(0xFF);
        let n = xattr_size(&mut buf, 77).unwrap();
        assert_eq!((n, u32_at(&buf, 0), u32_at(&buf, 4)), (8, 77, 0));
        assert_eq!(ok(Opcode::Getxattr, Some(0), &buf[..n]), Ok(()));
        assert_eq!(ok(Opcode::Listxattr, Some(0), &buf[..n]), Ok(()));

        let n = bmap(&mut buf, 99).unwrap();
        assert_eq!((n, u64_at(&buf, 0)), (8, 99));
        assert_eq!(ok(Opcode::Bmap, None, &buf[..n]), Ok(()));

        buf.fill(0xFF);
        let n = poll(&mut buf, 0x41).unwrap();
        assert_eq!((n, u32_at(&buf, 0), u32_at(&buf, 4)), (8, 0x41, 0));
        assert_eq!(ok(Opcode::Poll, None, &buf[..n]), Ok(()));

        let n = lseek(&mut buf, 12345).unwrap();
        assert_eq!((n, u64_at(&buf, 0)), (8, 12345));
        assert_eq!(ok(Opcode::Lseek, None, &buf[..n]), Ok(()));

        let lock = fuse_file_lock {
            start: 10,
            end: 20,
            r#type: 1,
            pid: 33,
        };
        let n = lk(&mut buf, &lock).unwrap();
        assert_eq!(n, 24);
        assert_eq!((u64_at(&buf, 0), u64_at(&buf, 8)), (10, 20));
        assert_eq!((u32_at(&buf, 16), u32_at(&buf, 20)), (1, 33));
        assert_eq!(ok(Opcode::Getlk, None, &buf[..n]), Ok(()));
    }

    #[test]
    fn statfs_statx_bytes() {
        let mut buf = [0u8; 300];
        let st = fuse_kstatfs {
            blocks: 1,
            bfree: 2,
            bavail: 3,
            files: 4,
            ffree: 5,
            bsize: 4096,
            namelen: 255,
            frsize: 512,
            padding: 0,
            spare: [0; 6],
        };
        let n = statfs(&mut buf, &st).unwrap();
        assert_eq!(n, 80);
        assert_eq!(u64_at(&buf, 32), 5);
        assert_eq!(u32_at(&buf, 44), 255);
        assert_eq!(ok(Opcode::Statfs, None, &buf[..n]), Ok(()));

        let sx = fuse_statx_out {
            attr_valid: 1,
            attr_valid_nsec: 2,
            flags: 0,
            spare: [0; 2],
            stat: fuse_statx {
                mask: 0x7ff,
                ino: 77,
                btime: fuse_sx_time {
                    tv_sec: -5,
                    tv_nsec: 6,
                    reserved: 0,
                },
                ..Default::default()
            },
        };
        let n = statx(&mut buf, &sx).unwrap();
        assert_eq!(n, 288);
        assert_eq!(u32_at(&buf, 32), 0x7ff);
        assert_eq!(u64_at(&buf, 32 + 32), 77);
        assert_eq!(
            u64_at(&buf, 32 + 80),
            u64::from_ne_bytes((-5i64).to_ne_bytes())
        );
        assert_eq!(ok(Opcode::Statx, None, &buf[..n]), Ok(()));
    }

    #[test]
    fn init_sizes_by_minor() {
        assert_eq!(init_out_size(0), 8);
        assert_eq!(init_out_size(4), 8);
        assert_eq!(init_out_size(5), 24);
        assert_eq!(init_out_size(22), 24);
        assert_eq!(init_out_size(23), 64);
        assert_eq!(init_out_size(45), 64);
        assert_eq!(init_out_size(u32::MAX), 64);
        let out = fuse_init_out {
            major: 7,
            minor: 45,
            max_readahead: 1 << 17,
            flags: 0x4000_0000,
            max_write: 1 << 20,
            flags2: 1 << 9,
            ..Default::default()
        };
        for (minor, size) in [(3, 8), (12, 24), (23, 64), (45, 64)] {
            let mut buf = [0xAAu8; 80];
            let n = init(&mut buf, &out, minor).unwrap();
            assert_eq!(n, size);
            assert_eq!(&buf[..n], &as_bytes(&out)[..n]);
            assert!(buf[n..].iter().all(|&b| b == 0xAA));
            assert_eq!(ok(Opcode::Init, None, &buf[..n]), Ok(()));
        }
        assert!(init(&mut [0u8; 23], &out, 22).is_err());
        assert!(init(&mut [0u8; 24], &out, 22).is_ok());
        assert_eq!(
            ok(Opcode::Init, None, &[0; 65]),
            Err(ReplyError::TooLong {
                max: 64,
                actual: 65
            })
        );
        assert_eq!(ok(Opcode::Init, None, &[]), Ok(()));
    }

    #[test]
    fn data_and_ioctl() {
        let mut buf = [0u8; 64];
        let n = data(&mut buf, b"hello").unwrap();
        assert_eq!((n, &buf[..5]), (5, &b"hello"[..]));
        assert_eq!(ok(Opcode::Read, Some(5), &buf[..n]), Ok(()));
        assert_eq!(ok(Opcode::Read, Some(4096), &buf[..n]), Ok(()));
        assert_eq!(ok(Opcode::Read, Some(0), &[]), Ok(()));
        assert_eq!(ok(Opcode::Readlink, None, &buf[..n]), Ok(()));
        assert_eq!(ok(Opcode::Getxattr, Some(5), &buf[..n]), Ok(()));
        assert_eq!(ok(Opcode::Listxattr, Some(64), &buf[..n]), Ok(()));
        assert!(data(&mut [0u8; 4], b"hello").is_err());

        let out = fuse_ioctl_out {
            result: -3,
            flags: 0,
            in_iovs: 0,
            out_iovs: 0,
        };
        let n = ioctl(&mut buf, &out, b"xyz").unwrap();
        assert_eq!(n, 19);
        assert_eq!(u32_at(&buf, 0), u32::from_ne_bytes((-3i32).to_ne_bytes()));
        assert_eq!(&buf[16..19], b"xyz");
        assert_eq!(ok(Opcode::Ioctl, Some(3), &buf[..n]), Ok(()));
        assert_eq!(
            ok(Opcode::Ioctl, Some(2), &buf[..n]),
            Err(ReplyError::TooLong {
                max: 18,
                actual: 19
            })
        );
        assert_eq!(
            ok(Opcode::Ioctl, Some(8), &buf[..15]),
            Err(ReplyError::TooShort {
                min: 16,
                actual: 15
            })
        );
        assert_eq!(
            ok(Opcode::Ioctl, None, &buf[..16]),
            Err(ReplyError::MissingSizeHint(Opcode::Ioctl))
        );
    }

    #[test]
    fn rejects_what_the_kernel_rejects() {
        let mut h = out_header(4, 0);
        for bad in [1, 5, 511, i32::MAX, -512, -513, i32::MIN] {
            h.error = bad;
            assert_eq!(
                check_reply(Opcode::Flush, None, &h, &[]),
                Err(ReplyError::InvalidError(bad))
            );
        }
        // An error reply with a payload.
        let mut h = error_header(4, Errno::EIO);
        h.len = 24;
        assert_eq!(
            check_reply(Opcode::Lookup, None, &h, &[0; 8]),
            Err(ReplyError::ErrorWithPayload { len: 8 })
        );
        // len that does not match.
        let h = out_header(4, 10);
        assert_eq!(
            check_reply(Opcode::Read, Some(100), &h, &[0; 9]),
            Err(ReplyError::LenMismatch {
                header_len: 26,
                actual: 25
            })
        );
        // unique 0 is a notification.
        assert_eq!(
            check_reply(Opcode::Flush, None, &out_header(0, 0), &[]),
            Err(ReplyError::Notification)
        );
        // Wrong fixed sizes.
        for (op, size) in [
            (Opcode::Lookup, 128),
            (Opcode::Getattr, 104),
            (Opcode::Open, 16),
            (Opcode::Create, 144),
            (Opcode::Statx, 288),
            (Opcode::Statfs, 80),
            (Opcode::Write, 8),
            (Opcode::Getlk, 24),
        ] {
            for actual in [0, size - 1, size + 1, 120, 96, 48] {
                if actual == size {
                    continue;
                }
                assert_eq!(
                    ok(op, None, &[0; 300][..actual]),
                    Err(ReplyError::WrongSize {
                        expected: size,
                        actual
                    }),
                    "{op}"
                );
            }
        }
        assert_eq!(
            ok(Opcode::Getxattr, Some(0), &[0; 4]),
            Err(ReplyError::WrongSize {
                expected: 8,
                actual: 4
            })
        );
    }

    #[test]
    fn rejects_wrong_sizes_for_empty_and_argvar_replies() {
        // Header-only opcodes.
        for op in [
            Opcode::Release,
            Opcode::Flush,
            Opcode::Unlink,
            Opcode::Rmdir,
            Opcode::Rename2,
            Opcode::Fsync,
            Opcode::Setxattr,
            Opcode::Access,
            Opcode::Setlk,
            Opcode::Interrupt,
        ] {
            assert_eq!(ok(op, None, &[]), Ok(()));
            assert_eq!(
                ok(op, None, &[0]),
                Err(ReplyError::WrongSize {
                    expected: 0,
                    actual: 1
                })
            );
        }
        // Over-long argvar.
        assert_eq!(
            ok(Opcode::Read, Some(4), &[0; 5]),
            Err(ReplyError::TooLong { max: 4, actual: 5 })
        );
        assert_eq!(
            ok(Opcode::Readdir, Some(0), &[0; 1]),
            Err(ReplyError::TooLong { max: 0, actual: 1 })
        );
        assert_eq!(
            ok(Opcode::Getxattr, Some(3), &[0; 4]),
            Err(ReplyError::TooLong { max: 3, actual: 4 })
        );
        assert_eq!(
            ok(Opcode::Readlink, None, &[0; READLINK_MAX + 1]),
            Err(ReplyError::TooLong {
                max: 4095,
                actual: 4096
            })
        );
        assert_eq!(ok(Opcode::Readlink, None, &[0; READLINK_MAX]), Ok(()));
        assert_eq!(
            ok(Opcode::Readdirplus, None, &[]),
            Err(ReplyError::MissingSizeHint(Opcode::Readdirplus))
        );
        // No reply to FORGET and friends, even an empty success.
        for op in [Opcode::Forget, Opcode::BatchForget, Opcode::NotifyReply] {
            assert_eq!(ok(op, None, &[]), Err(ReplyError::NoReply(op)));
            assert_eq!(ReplyError::NoReply(op).kernel_errno(), Errno::ENOENT);
        }
        assert_eq!(
            ok(Opcode::Unknown(300), None, &[]),
            Err(ReplyError::UnknownOpcode(300))
        );
        assert_eq!(
            ReplyError::TooLong { max: 0, actual: 1 }.kernel_errno(),
            Errno::EINVAL
        );
    }

    #[test]
    fn every_known_opcode_has_a_rule() {
        // Each opcode with a hint of 16 accepts some payload (or is a no-reply opcode).
        for &op in Opcode::ALL {
            let accepted = (0..=400).any(|n| ok(op, Some(16), &[0; 400][..n]).is_ok());
            assert_eq!(accepted, !op.is_no_reply(), "{op}");
        }
    }

    #[test]
    fn classic_round_trip() {
        let mut slot = [0u8; 512];
        let (head, payload) = slot.split_at_mut(OUT_HEADER_SIZE);
        let len = entry(payload, &sample_entry()).unwrap();
        let header = out_header(0xDEAD_BEE0, len);
        write_prefix(head, &header).unwrap();
        let msg = &slot[..OUT_HEADER_SIZE + len];
        let (got, payload) = parse_reply(msg).unwrap();
        assert_eq!(got, header);
        assert_eq!(payload, as_bytes(&sample_entry()));
        assert_eq!(check_reply(Opcode::Lookup, None, &got, payload), Ok(()));
        assert_eq!(u32_at(msg, 0), 144);
        assert_eq!(u64_at(msg, 8), 0xDEAD_BEE0);

        // Error reply round trip.
        let err = error_header(10, Errno::EACCES);
        let (got, payload) = parse_reply(as_bytes(&err)).unwrap();
        assert_eq!((got, payload.len()), (err, 0));
        assert_eq!(check_reply(Opcode::Open, None, &got, payload), Ok(()));

        // Framing errors, every prefix.
        for cut in 0..msg.len() {
            let result = parse_reply(&msg[..cut]);
            if cut < 16 {
                assert_eq!(result, Err(ReplyError::Truncated { len: cut }));
            } else {
                assert_eq!(
                    result,
                    Err(ReplyError::LenMismatch {
                        header_len: 144,
                        actual: cut
                    })
                );
            }
        }
    }
}
