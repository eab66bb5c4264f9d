//! Notifications: messages the server sends the kernel unasked, and their decoder.
//!
//! A notification is one `write` to `/dev/fuse` of `fuse_out_header { len, error = code,
//! unique = 0 }` followed by the code's body. (Never over the `io_uring` commit path: the
//! kernel rejects `unique == 0` there.) Each encoder writes the full message at the start of
//! a caller's buffer and returns its length; on error nothing is written. The body sizes are
//! the ones the kernel checks exactly (`fs/fuse/notify.c`), so an encoded message is never
//! rejected for its shape.
//!
//! [`parse_notification`] decodes one message, for tests and the in-memory transport.
//! Nothing here allocates or panics.
//!
//! # References
//! - `include/uapi/linux/fuse.h` `enum fuse_notify_code`, `struct fuse_notify_*_out`
//! - `fs/fuse/notify.c` (`fs/fuse/dev.c` before 6.19) `fuse_notify`

use core::mem::size_of;

use crate::NotifyCode;
use crate::flags::NotifyEntryFlags;
use crate::kernel::{
    FUSE_NAME_MAX, fuse_notify_delete_out, fuse_notify_inval_entry_out,
    fuse_notify_inval_inode_out, fuse_notify_poll_wakeup_out, fuse_notify_prune_out,
    fuse_notify_retrieve_out, fuse_notify_store_out, fuse_out_header,
};
use crate::pod::{Pod, read_prefix};
use crate::reply::{BufferTooSmall, OUT_HEADER_SIZE, PayloadWriter};

/// `MAX_LFS_FILESIZE` on 64-bit kernels: STORE and RETRIEVE need `offset` below it.
const MAX_LFS_FILESIZE: u64 = i64::MAX as u64;

/// A notification that can't be encoded, or a message that is not a valid notification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NotifyError {
    /// Encoding: the buffer can't hold the message.
    BufferTooSmall {
        /// Bytes the message needs.
        needed: usize,
        /// Bytes the buffer has.
        available: usize,
    },
    /// A name that is empty, longer than `FUSE_NAME_MAX` (1024) bytes, or contains NUL.
    InvalidName,
    /// The message would not fit a `u32` length, or an offset is at or past
    /// `MAX_LFS_FILESIZE` (the kernel answers EINVAL).
    TooLarge,
    /// Decoding: fewer bytes than a `fuse_out_header`.
    Truncated,
    /// Decoding: `fuse_out_header::len` differs from the message's length.
    LenMismatch,
    /// Decoding: `unique != 0`, so this is a reply, not a notification.
    NotNotification,
    /// Decoding: `error` is not a 7.45 notification code.
    UnknownCode(i32),
    /// Decoding: the body's size is not the one the code requires.
    WrongSize,
    /// Decoding: a name is not followed by its NUL.
    MissingNul,
}

impl core::fmt::Display for NotifyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            NotifyError::BufferTooSmall { needed, available } => write!(
                f,
                "notification needs {needed} bytes, buffer has {available}"
            ),
            NotifyError::InvalidName => {
                f.write_str("notification name is empty, over 1024 bytes, or contains NUL")
            }
            NotifyError::TooLarge => f.write_str("notification length or offset too large"),
            NotifyError::Truncated => f.write_str("notification shorter than fuse_out_header"),
            NotifyError::LenMismatch => {
                f.write_str("fuse_out_header.len differs from the message length")
            }
            NotifyError::NotNotification => f.write_str("unique is not 0: not a notification"),
            NotifyError::UnknownCode(c) => write!(f, "unknown notification code {c}"),
            NotifyError::WrongSize => f.write_str("notification body has the wrong size"),
            NotifyError::MissingNul => f.write_str("notification name lacks its NUL"),
        }
    }
}

impl core::error::Error for NotifyError {}

fn check_name(name: &[u8]) -> Result<u32, NotifyError> {
    if name.is_empty() || name.len() > FUSE_NAME_MAX || name.contains(&0) {
        return Err(NotifyError::InvalidName);
    }
    // At most 1024, checked above.
    Ok(name.len() as u32)
}

/// Writes header + `body` + `tail` (+ a NUL if `nul`), all or nothing.
fn message<B: Pod>(
    buf: &mut [u8],
    code: NotifyCode,
    body: Option<&B>,
    tail: &[u8],
    nul: bool,
) -> Result<usize, NotifyError> {
    let body_len = body.map_or(0, |_| size_of::<B>());
    let len = OUT_HEADER_SIZE
        .checked_add(body_len)
        .and_then(|n| n.checked_add(tail.len()))
        .and_then(|n| n.checked_add(usize::from(nul)))
        .ok_or(NotifyError::TooLarge)?;
    let wire_len = u32::try_from(len).map_err(|_| NotifyError::TooLarge)?;
    if len > buf.len() {
        return Err(NotifyError::BufferTooSmall {
            needed: len,
            available: buf.len(),
        });
    }
    let header = fuse_out_header {
        len: wire_len,
        error: code.code(),
        unique: 0,
    };
    // The size was checked above, so these pushes can't fail; map their errors anyway.
    let too_small = |e: BufferTooSmall| NotifyError::BufferTooSmall {
        needed: len,
        available: e.available,
    };
    let mut w = PayloadWriter::new(buf);
    w.push(&header).map_err(too_small)?;
    if let Some(body) = body {
        w.push(body).map_err(too_small)?;
    }
    w.push_bytes(tail).map_err(too_small)?;
    if nul {
        w.push_bytes(&[0]).map_err(too_small)?;
    }
    Ok(w.len())
}

/// `FUSE_NOTIFY_POLL`: wakes the pollers of the file whose POLL request carried `kh`.
///
/// # Errors
///
/// [`NotifyError::BufferTooSmall`] if `buf` can't hold the message (24 bytes); nothing is written
/// then.
#[doc(alias = "fuse_notify_poll_wakeup_out")]
pub fn poll_wakeup(buf: &mut [u8], kh: u64) -> Result<usize, NotifyError> {
    let body = fuse_notify_poll_wakeup_out { kh };
    message(buf, NotifyCode::Poll, Some(&body), &[], false)
}

/// `FUSE_NOTIFY_INVAL_INODE`: invalidates the attributes of `ino` and, if `off >= 0`, its
/// cached data from `off` for `len` bytes (`len <= 0`: to the end). `off < 0`: attributes
/// only.
///
/// # Errors
///
/// [`NotifyError::BufferTooSmall`] if `buf` can't hold the message (40 bytes); nothing is written
/// then.
#[doc(alias = "fuse_notify_inval_inode_out")]
pub fn inval_inode(buf: &mut [u8], ino: u64, off: i64, len: i64) -> Result<usize, NotifyError> {
    let body = fuse_notify_inval_inode_out { ino, off, len };
    message(buf, NotifyCode::InvalInode, Some(&body), &[], false)
}

/// `FUSE_NOTIFY_INVAL_ENTRY`: invalidates the dentry `parent/name` (with
/// [`NotifyEntryFlags::EXPIRE_ONLY`], only expires it). The body is exactly
/// 16 + `name.len()` + 1 bytes.
///
/// # Errors
///
/// [`NotifyError::InvalidName`] for an empty name, one over 1024 bytes or with a NUL;
/// [`NotifyError::BufferTooSmall`] if `buf` can't hold the message (33 + `name.len()` bytes); nothing is written
/// then.
#[doc(alias = "fuse_notify_inval_entry_out")]
pub fn inval_entry(
    buf: &mut [u8],
    parent: u64,
    name: &[u8],
    flags: NotifyEntryFlags,
) -> Result<usize, NotifyError> {
    let body = fuse_notify_inval_entry_out {
        parent,
        namelen: check_name(name)?,
        flags: flags.bits(),
    };
    message(buf, NotifyCode::InvalEntry, Some(&body), name, true)
}

/// `FUSE_NOTIFY_DELETE`: like [`inval_entry`], and deletes the dentry if it points to
/// `child`.
///
/// # Errors
///
/// [`NotifyError::InvalidName`] for an empty name, one over 1024 bytes or with a NUL;
/// [`NotifyError::BufferTooSmall`] if `buf` can't hold the message (41 + `name.len()` bytes); nothing is written
/// then.
#[doc(alias = "fuse_notify_delete_out")]
pub fn delete(buf: &mut [u8], parent: u64, child: u64, name: &[u8]) -> Result<usize, NotifyError> {
    let body = fuse_notify_delete_out {
        parent,
        child,
        namelen: check_name(name)?,
        padding: 0,
    };
    message(buf, NotifyCode::Delete, Some(&body), name, true)
}

/// `FUSE_NOTIFY_STORE`: writes `data` into the page cache of `nodeid` at `offset`.
/// `offset` must be below `i64::MAX` (`MAX_LFS_FILESIZE`).
///
/// # Errors
///
/// [`NotifyError::TooLarge`] if `offset >= i64::MAX` or the message exceeds `u32::MAX`
/// bytes; [`NotifyError::BufferTooSmall`] if `buf` can't hold the message (40 + `data.len()` bytes); nothing is written
/// then.
#[doc(alias = "fuse_notify_store_out")]
pub fn store(buf: &mut [u8], nodeid: u64, offset: u64, data: &[u8]) -> Result<usize, NotifyError> {
    if offset >= MAX_LFS_FILESIZE {
        return Err(NotifyError::TooLarge);
    }
    let body = fuse_notify_store_out {
        nodeid,
        offset,
        size: u32::try_from(data.len()).map_err(|_| NotifyError::TooLarge)?,
        padding: 0,
    };
    message(buf, NotifyCode::Store, Some(&body), data, false)
}

/// `FUSE_NOTIFY_RETRIEVE`: asks for up to `size` cached bytes of `nodeid` at `offset`; the
/// kernel answers with a `NOTIFY_REPLY` request whose `unique` is `notify_unique` (which takes
/// no reply). `offset` must be below `i64::MAX`.
///
/// # Errors
///
/// [`NotifyError::TooLarge`] if `offset >= i64::MAX`; [`NotifyError::BufferTooSmall`] if `buf` can't hold the message (48 bytes); nothing is written
/// then.
#[doc(alias = "fuse_notify_retrieve_out")]
pub fn retrieve(
    buf: &mut [u8],
    notify_unique: u64,
    nodeid: u64,
    offset: u64,
    size: u32,
) -> Result<usize, NotifyError> {
    if offset >= MAX_LFS_FILESIZE {
        return Err(NotifyError::TooLarge);
    }
    let body = fuse_notify_retrieve_out {
        notify_unique,
        nodeid,
        offset,
        size,
        padding: 0,
    };
    message(buf, NotifyCode::Retrieve, Some(&body), &[], false)
}

/// `FUSE_NOTIFY_RESEND` (7.40): the kernel re-queues every request now in userspace, with
/// `FUSE_UNIQUE_RESEND` set in `unique`. No body.
///
/// # Errors
///
/// [`NotifyError::BufferTooSmall`] if `buf` can't hold the message (16 bytes); nothing is written
/// then.
pub fn resend(buf: &mut [u8]) -> Result<usize, NotifyError> {
    message::<u64>(buf, NotifyCode::Resend, None, &[], false)
}

/// `FUSE_NOTIFY_INC_EPOCH` (7.44): dentries from earlier epochs fail their next
/// revalidation. No body.
///
/// # Errors
///
/// [`NotifyError::BufferTooSmall`] if `buf` can't hold the message (16 bytes); nothing is written
/// then.
pub fn inc_epoch(buf: &mut [u8]) -> Result<usize, NotifyError> {
    message::<u64>(buf, NotifyCode::IncEpoch, None, &[], false)
}

/// `FUSE_NOTIFY_PRUNE` (7.45): drops unused dentries of each node id so their inodes can
/// be evicted (and FORGETs follow). `fuse_notify_prune_out` + `count` × u64.
///
/// # Errors
///
/// [`NotifyError::TooLarge`] if the message exceeds `u32::MAX` bytes;
/// [`NotifyError::BufferTooSmall`] if `buf` can't hold the message (32 + 8 × `nodeids.len()` bytes); nothing is written
/// then.
#[doc(alias = "fuse_notify_prune_out")]
pub fn prune(buf: &mut [u8], nodeids: &[u64]) -> Result<usize, NotifyError> {
    let body = fuse_notify_prune_out {
        count: u32::try_from(nodeids.len()).map_err(|_| NotifyError::TooLarge)?,
        padding: 0,
        spare: 0,
    };
    let ids_len = nodeids
        .len()
        .checked_mul(size_of::<u64>())
        .ok_or(NotifyError::TooLarge)?;
    let len = OUT_HEADER_SIZE + size_of::<fuse_notify_prune_out>();
    let total = len.checked_add(ids_len).ok_or(NotifyError::TooLarge)?;
    let wire_len = u32::try_from(total).map_err(|_| NotifyError::TooLarge)?;
    if total > buf.len() {
        return Err(NotifyError::BufferTooSmall {
            needed: total,
            available: buf.len(),
        });
    }
    let header = fuse_out_header {
        len: wire_len,
        error: NotifyCode::Prune.code(),
        unique: 0,
    };
    // The size was checked above, so these pushes can't fail; map their errors anyway.
    let too_small = |e: BufferTooSmall| NotifyError::BufferTooSmall {
        needed: total,
        available: e.available,
    };
    let mut w = PayloadWriter::new(buf);
    w.push(&header).map_err(too_small)?;
    w.push(&body).map_err(too_small)?;
    for id in nodeids {
        w.push(id).map_err(too_small)?;
    }
    Ok(w.len())
}

/// The node ids of a PRUNE notification, read from the message bytes (which need not be
/// 8-byte aligned).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeIds<'a>(&'a [u8]);

impl<'a> NodeIds<'a> {
    /// How many node ids.
    #[inline]
    pub fn len(&self) -> usize {
        self.0.len() / size_of::<u64>()
    }

    /// Whether there are none.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.0.len() < size_of::<u64>()
    }

    /// The node ids, in order.
    pub fn iter(&self) -> impl Iterator<Item = u64> + 'a {
        self.0
            .chunks_exact(size_of::<u64>())
            .filter_map(|c| read_prefix::<u64>(c).map(|(id, _)| id))
    }
}

/// A decoded notification; names and data borrow from the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Notification<'a> {
    /// `FUSE_NOTIFY_POLL`.
    Poll {
        /// The poll handle from the POLL request.
        kh: u64,
    },
    /// `FUSE_NOTIFY_INVAL_INODE`.
    InvalInode {
        /// The inode.
        ino: u64,
        /// Start of the data range; negative: attributes only.
        off: i64,
        /// Length of the range; `<= 0`: to the end.
        len: i64,
    },
    /// `FUSE_NOTIFY_INVAL_ENTRY`.
    InvalEntry {
        /// The directory.
        parent: u64,
        /// The entry's name, without its NUL.
        name: &'a [u8],
        /// `FUSE_EXPIRE_ONLY` or nothing.
        flags: NotifyEntryFlags,
    },
    /// `FUSE_NOTIFY_DELETE`.
    Delete {
        /// The directory.
        parent: u64,
        /// The node the entry should point to.
        child: u64,
        /// The entry's name, without its NUL.
        name: &'a [u8],
    },
    /// `FUSE_NOTIFY_STORE`.
    Store {
        /// The file.
        nodeid: u64,
        /// Where the data goes.
        offset: u64,
        /// The data.
        data: &'a [u8],
    },
    /// `FUSE_NOTIFY_RETRIEVE`.
    Retrieve {
        /// The `unique` of the `NOTIFY_REPLY` request that will answer.
        notify_unique: u64,
        /// The file.
        nodeid: u64,
        /// Start of the range.
        offset: u64,
        /// Bytes asked for.
        size: u32,
    },
    /// `FUSE_NOTIFY_RESEND`.
    Resend,
    /// `FUSE_NOTIFY_INC_EPOCH`.
    IncEpoch,
    /// `FUSE_NOTIFY_PRUNE`.
    Prune {
        /// The node ids.
        nodeids: NodeIds<'a>,
    },
}

/// A body that is exactly one `T`.
fn exact<T: Pod>(body: &[u8]) -> Result<T, NotifyError> {
    match read_prefix::<T>(body) {
        Some((value, [])) => Ok(value),
        _ => Err(NotifyError::WrongSize),
    }
}

/// A name of `namelen` bytes plus its NUL, which must be exactly all of `tail`.
fn named(tail: &[u8], namelen: u32) -> Result<&[u8], NotifyError> {
    let namelen = namelen as usize;
    if namelen > FUSE_NAME_MAX {
        return Err(NotifyError::InvalidName);
    }
    if tail.len() != namelen + 1 {
        return Err(NotifyError::WrongSize);
    }
    let (name, nul) = tail
        .split_at_checked(namelen)
        .ok_or(NotifyError::WrongSize)?;
    if nul != [0] {
        return Err(NotifyError::MissingNul);
    }
    check_name(name)?;
    Ok(name)
}

/// Decodes one notification message (what one `write` to `/dev/fuse` carries).
///
/// Applies the kernel's size checks: `len` equal to the message length, `unique == 0`, a
/// known code, and the body size each code requires exactly. Stricter than the kernel in
/// two places, both of which the encoders above satisfy: RESEND and `INC_EPOCH` must have
/// an empty body (the kernel ignores one), and names must be nonempty with no NUL inside
/// ([`NotifyError::InvalidName`]; the kernel checks only the length, ENAMETOOLONG). Looser
/// in one: STORE and RETRIEVE offsets at or past `MAX_LFS_FILESIZE` (which the kernel
/// answers with EINVAL) are decoded as they are.
///
/// # Errors
///
/// The first check failed, as a [`NotifyError`].
pub fn parse_notification(bytes: &[u8]) -> Result<Notification<'_>, NotifyError> {
    let (header, body) = read_prefix::<fuse_out_header>(bytes).ok_or(NotifyError::Truncated)?;
    if usize::try_from(header.len).ok() != Some(bytes.len()) {
        return Err(NotifyError::LenMismatch);
    }
    if header.unique != 0 {
        return Err(NotifyError::NotNotification);
    }
    let code = NotifyCode::from_code(header.error).ok_or(NotifyError::UnknownCode(header.error))?;
    Ok(match code {
        NotifyCode::Poll => Notification::Poll {
            kh: exact::<fuse_notify_poll_wakeup_out>(body)?.kh,
        },
        NotifyCode::InvalInode => {
            let b = exact::<fuse_notify_inval_inode_out>(body)?;
            Notification::InvalInode {
                ino: b.ino,
                off: b.off,
                len: b.len,
            }
        }
        NotifyCode::InvalEntry => {
            let (b, tail) =
                read_prefix::<fuse_notify_inval_entry_out>(body).ok_or(NotifyError::WrongSize)?;
            Notification::InvalEntry {
                parent: b.parent,
                name: named(tail, b.namelen)?,
                flags: NotifyEntryFlags(b.flags),
            }
        }
        NotifyCode::Delete => {
            let (b, tail) =
                read_prefix::<fuse_notify_delete_out>(body).ok_or(NotifyError::WrongSize)?;
            Notification::Delete {
                parent: b.parent,
                child: b.child,
                name: named(tail, b.namelen)?,
            }
        }
        NotifyCode::Store => {
            let (b, data) =
                read_prefix::<fuse_notify_store_out>(body).ok_or(NotifyError::WrongSize)?;
            if data.len() != b.size as usize {
                return Err(NotifyError::WrongSize);
            }
            Notification::Store {
                nodeid: b.nodeid,
                offset: b.offset,
                data,
            }
        }
        NotifyCode::Retrieve => {
            let b = exact::<fuse_notify_retrieve_out>(body)?;
            Notification::Retrieve {
                notify_unique: b.notify_unique,
                nodeid: b.nodeid,
                offset: b.offset,
                size: b.size,
            }
        }
        NotifyCode::Resend | NotifyCode::IncEpoch if !body.is_empty() => {
            return Err(NotifyError::WrongSize);
        }
        NotifyCode::Resend => Notification::Resend,
        NotifyCode::IncEpoch => Notification::IncEpoch,
        NotifyCode::Prune => {
            let (b, ids) =
                read_prefix::<fuse_notify_prune_out>(body).ok_or(NotifyError::WrongSize)?;
            if Some(ids.len()) != (b.count as usize).checked_mul(size_of::<u64>()) {
                return Err(NotifyError::WrongSize);
            }
            Notification::Prune {
                nodeids: NodeIds(ids),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;

    fn u32_at(b: &[u8], off: usize) -> u32 {
        u32::from_ne_bytes(b[off..off + 4].try_into().unwrap())
    }

    fn i32_at(b: &[u8], off: usize) -> i32 {
        i32::from_ne_bytes(b[off..off + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8], off: usize) -> u64 {
        u64::from_ne_bytes(b[off..off + 8].try_into().unwrap())
    }

    /// Checks the header and returns the message.
    fn header_ok(buf: &[u8], n: usize, code: i32) -> &[u8] {
        assert_eq!(u32_at(buf, 0) as usize, n);
        assert_eq!(i32_at(buf, 4), code);
        assert_eq!(u64_at(buf, 8), 0);
        &buf[..n]
    }

    #[test]
    fn fixed_layouts() {
        let mut buf = [0xAAu8; 128];
        let n = poll_wakeup(&mut buf, 0x55).unwrap();
        assert_eq!(n, 16 + 8);
        let m = header_ok(&buf, n, 1);
        assert_eq!(u64_at(m, 16), 0x55);
        assert_eq!(parse_notification(m), Ok(Notification::Poll { kh: 0x55 }));

        let n = inval_inode(&mut buf, 9, -1, 0).unwrap();
        assert_eq!(n, 16 + 24);
        let m = header_ok(&buf, n, 2);
        assert_eq!(
            (u64_at(m, 16), u64_at(m, 24), u64_at(m, 32)),
            (9, u64::MAX, 0)
        );
        assert_eq!(
            parse_notification(m),
            Ok(Notification::InvalInode {
                ino: 9,
                off: -1,
                len: 0
            })
        );

        let n = retrieve(&mut buf, 77, 5, 4096, 100).unwrap();
        assert_eq!(n, 16 + 32);
        let m = header_ok(&buf, n, 5);
        assert_eq!(
            (
                u64_at(m, 16),
                u64_at(m, 24),
                u64_at(m, 32),
                u32_at(m, 40),
                u32_at(m, 44)
            ),
            (77, 5, 4096, 100, 0)
        );
        assert_eq!(
            parse_notification(m),
            Ok(Notification::Retrieve {
                notify_unique: 77,
                nodeid: 5,
                offset: 4096,
                size: 100
            })
        );

        let n = resend(&mut buf).unwrap();
        assert_eq!(n, 16);
        assert_eq!(
            parse_notification(header_ok(&buf, n, 7)),
            Ok(Notification::Resend)
        );
        let n = inc_epoch(&mut buf).unwrap();
        assert_eq!(n, 16);
        assert_eq!(
            parse_notification(header_ok(&buf, n, 8)),
            Ok(Notification::IncEpoch)
        );
    }

    #[test]
    fn named_layouts() {
        let mut buf = [0xAAu8; 64];
        let n = inval_entry(&mut buf, 3, b"abc", NotifyEntryFlags::EXPIRE_ONLY).unwrap();
        assert_eq!(
            n,
            16 + 16 + 3 + 1,
            "exactly 16 + namelen + 1 after the header"
        );
        let m = header_ok(&buf, n, 3);
        assert_eq!((u64_at(m, 16), u32_at(m, 24), u32_at(m, 28)), (3, 3, 1));
        assert_eq!(&m[32..], b"abc\0");
        assert_eq!(buf[n], 0xAA);
        assert_eq!(
            parse_notification(&buf[..n]),
            Ok(Notification::InvalEntry {
                parent: 3,
                name: b"abc",
                flags: NotifyEntryFlags::EXPIRE_ONLY
            })
        );

        let n = delete(&mut buf, 3, 12, b"gone").unwrap();
        assert_eq!(n, 16 + 24 + 4 + 1);
        let m = header_ok(&buf, n, 6);
        assert_eq!(
            (u64_at(m, 16), u64_at(m, 24), u32_at(m, 32), u32_at(m, 36)),
            (3, 12, 4, 0)
        );
        assert_eq!(&m[40..], b"gone\0");
        assert_eq!(
            parse_notification(m),
            Ok(Notification::Delete {
                parent: 3,
                child: 12,
                name: b"gone"
            })
        );
    }

    #[test]
    fn name_limits() {
        let mut buf = [0u8; 2048];
        let long = [b'z'; 1025];
        let e = NotifyEntryFlags::EMPTY;
        assert_eq!(
            inval_entry(&mut buf, 1, &long[..1024], e),
            Ok(16 + 16 + 1025)
        );
        let n = 16 + 16 + 1025;
        match parse_notification(&buf[..n]) {
            Ok(Notification::InvalEntry { name, .. }) => assert_eq!(name, &long[..1024]),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            inval_entry(&mut buf, 1, &long, e),
            Err(NotifyError::InvalidName)
        );
        assert_eq!(
            inval_entry(&mut buf, 1, b"", e),
            Err(NotifyError::InvalidName)
        );
        assert_eq!(
            inval_entry(&mut buf, 1, b"a\0b", e),
            Err(NotifyError::InvalidName)
        );
        assert_eq!(delete(&mut buf, 1, 2, &long[..1024]), Ok(16 + 24 + 1025));
        assert_eq!(delete(&mut buf, 1, 2, &long), Err(NotifyError::InvalidName));
        assert_eq!(delete(&mut buf, 1, 2, b""), Err(NotifyError::InvalidName));
        assert_eq!(
            inval_entry(&mut [0u8; 35], 1, b"abc", e),
            Err(NotifyError::BufferTooSmall {
                needed: 36,
                available: 35
            })
        );
    }

    #[test]
    fn store_and_prune() {
        let mut buf = [0u8; 128];
        let n = store(&mut buf, 4, 8192, b"data!").unwrap();
        assert_eq!(n, 16 + 24 + 5);
        let m = header_ok(&buf, n, 4);
        assert_eq!((u64_at(m, 16), u64_at(m, 24), u32_at(m, 32)), (4, 8192, 5));
        assert_eq!(&m[40..], b"data!");
        assert_eq!(
            parse_notification(m),
            Ok(Notification::Store {
                nodeid: 4,
                offset: 8192,
                data: b"data!"
            })
        );
        assert_eq!(
            store(&mut buf, 4, i64::MAX as u64, b""),
            Err(NotifyError::TooLarge)
        );
        assert_eq!(
            retrieve(&mut buf, 1, 4, u64::MAX, 1),
            Err(NotifyError::TooLarge)
        );

        let n = prune(&mut buf, &[10, 11, 1 << 40]).unwrap();
        assert_eq!(n, 16 + 16 + 24);
        let m = header_ok(&buf, n, 9);
        assert_eq!((u32_at(m, 16), u32_at(m, 20), u64_at(m, 24)), (3, 0, 0));
        assert_eq!(
            (u64_at(m, 32), u64_at(m, 40), u64_at(m, 48)),
            (10, 11, 1 << 40)
        );
        match parse_notification(m) {
            Ok(Notification::Prune { nodeids }) => {
                assert_eq!(nodeids.len(), 3);
                assert_eq!(nodeids.iter().collect::<Vec<_>>(), [10, 11, 1 << 40]);
            }
            other => panic!("{other:?}"),
        }
        let n = prune(&mut buf, &[]).unwrap();
        assert_eq!(n, 32);
        match parse_notification(&buf[..n]) {
            Ok(Notification::Prune { nodeids }) => assert!(nodeids.is_empty()),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            prune(&mut [0u8; 39], &[1]),
            Err(NotifyError::BufferTooSmall {
                needed: 40,
                available: 39
            })
        );
    }

    #[test]
    fn decoder_rejects() {
        let mut buf = [0u8; 64];
        let n = inval_entry(&mut buf, 3, b"abc", NotifyEntryFlags::EMPTY).unwrap();
        let msg = buf[..n].to_vec();
        assert_eq!(parse_notification(&msg[..15]), Err(NotifyError::Truncated));
        assert_eq!(
            parse_notification(&msg[..n - 1]),
            Err(NotifyError::LenMismatch)
        );
        let mut m = msg.clone();
        m[8] = 1;
        assert_eq!(parse_notification(&m), Err(NotifyError::NotNotification));
        let mut m = msg.clone();
        m[4..8].copy_from_slice(&10i32.to_ne_bytes());
        assert_eq!(parse_notification(&m), Err(NotifyError::UnknownCode(10)));
        let mut m = msg.clone();
        m[n - 1] = b'x';
        assert_eq!(parse_notification(&m), Err(NotifyError::MissingNul));
        let mut m = msg.clone();
        m[24..28].copy_from_slice(&2u32.to_ne_bytes());
        assert_eq!(parse_notification(&m), Err(NotifyError::WrongSize));
        m[24..28].copy_from_slice(&1025u32.to_ne_bytes());
        assert_eq!(parse_notification(&m), Err(NotifyError::InvalidName));
        // RESEND with a body.
        let mut m = [0u8; 24];
        m[..16].copy_from_slice(crate::pod::as_bytes(&fuse_out_header {
            len: 24,
            error: 7,
            unique: 0,
        }));
        assert_eq!(parse_notification(&m), Err(NotifyError::WrongSize));
    }

    #[test]
    fn decoder_total_on_prefixes_and_mutations() {
        let mut msgs: Vec<Vec<u8>> = Vec::new();
        let mut buf = [0u8; 128];
        let mut keep = |n: usize, buf: &[u8]| msgs.push(buf[..n].to_vec());
        keep(poll_wakeup(&mut buf, 1).unwrap(), &buf);
        keep(inval_inode(&mut buf, 1, 2, 3).unwrap(), &buf);
        keep(
            inval_entry(&mut buf, 1, b"name", NotifyEntryFlags::EMPTY).unwrap(),
            &buf,
        );
        keep(delete(&mut buf, 1, 2, b"n").unwrap(), &buf);
        keep(store(&mut buf, 1, 2, b"xyz").unwrap(), &buf);
        keep(retrieve(&mut buf, 1, 2, 3, 4).unwrap(), &buf);
        keep(resend(&mut buf).unwrap(), &buf);
        keep(inc_epoch(&mut buf).unwrap(), &buf);
        keep(prune(&mut buf, &[5, 6]).unwrap(), &buf);
        for msg in &msgs {
            assert!(parse_notification(msg).is_ok());
            for cut in 0..msg.len() {
                assert!(parse_notification(&msg[..cut]).is_err(), "prefix {cut}");
            }
            for i in 0..msg.len() {
                for v in [0u8, 1, 0x7f, 0x80, 0xff] {
                    let mut m = msg.clone();
                    m[i] = v;
                    let _ = parse_notification(&m);
                    // Make len match a longer buffer too.
                    m.extend_from_slice(&[0; 9]);
                    let _ = parse_notification(&m);
                }
            }
        }
    }
}
