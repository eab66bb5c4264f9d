//! Total parsing of one FUSE request, in the classic (`/dev/fuse`) and the split
//! (FUSE-over-`io_uring`) layout, and encoding of requests for tests, fuzzing and in-memory
//! transports.
//!
//! # Layouts
//!
//! The kernel describes a request as `fuse_in_header` plus a list of arguments
//! (`fuse_args::in_args`): first the opcode's fixed struct (`fuse_write_in`, ...), then the
//! variable parts (names, data), then, if `total_extlen != 0`, the extension area.
//!
//! - **Classic** ([`Request::parse`]): one `read()` of `/dev/fuse` returns the header and all
//!   arguments concatenated; `fuse_in_header::len` is the number of bytes read.
//! - **Split** ([`Request::parse_split`]): a FUSE-over-`io_uring` entry holds the header in the
//!   128-byte `in_out` area, the fixed struct (`in_args[0]`) in the 128-byte `op_in` area and
//!   every other argument, extensions last, in the payload buffer (`payload_sz` bytes). Since
//!   Linux 6.14 (`fuse_set_zero_arg0`), opcodes without a fixed struct in front of their
//!   variable part have an empty `in_args[0]`, so their `op_in` is empty: `LOOKUP`, `SYMLINK`,
//!   `UNLINK`, `RMDIR`, `REMOVEXATTR`, and also `NOTIFY_REPLY` and `REMOVEMAPPING`, whose
//!   structs travel in the payload. [`fixed_arg_size`] is that split point.
//!
//! Both forms go through one per-opcode table (`parse_args`), which takes the fixed bytes and
//! the variable bytes separately; the classic form merely cuts its body at
//! [`fixed_arg_size`].
//!
//! # What is checked
//!
//! Everything: at least 40 bytes of header; `len` equal to the bytes received; the extension
//! area inside the body and well formed; every fixed struct present; every name
//! NUL-terminated, non-empty and at most [`FUSE_NAME_MAX`] bytes; every data length equal
//! to the `size` the fixed struct declares; no byte left over. Nothing panics and nothing
//! allocates; a malformed request is a [`ParseError`] whose [`ParseError::errno`] is the
//! answer to send (use [`parse_header`] to learn the `unique` to answer).
//!
//! # References
//! - `include/uapi/linux/fuse.h`; `fs/fuse/dev.c` (`fuse_dev_do_read`),
//!   `fs/fuse/dev_uring.c` (`fuse_uring_args_to_ring`), `fs/fuse/fuse_i.h`
//!   (`fuse_set_zero_arg0`).

use core::ffi::CStr;
use core::fmt;
use core::marker::PhantomData;
use core::mem::size_of;

use crate::flags::InitFlags;
use crate::kernel::{
    FUSE_COMPAT_SETXATTR_IN_SIZE, FUSE_EXT_GROUPS, FUSE_MAX_NR_SECCTX, FUSE_NAME_MAX, cuse_init_in,
    fuse_access_in, fuse_batch_forget_in, fuse_bmap_in, fuse_copy_file_range_in, fuse_create_in,
    fuse_ext_header, fuse_fallocate_in, fuse_flush_in, fuse_forget_in, fuse_forget_one,
    fuse_fsync_in, fuse_getattr_in, fuse_getxattr_in, fuse_in_header, fuse_init_in,
    fuse_interrupt_in, fuse_ioctl_in, fuse_link_in, fuse_lk_in, fuse_lseek_in, fuse_mkdir_in,
    fuse_mknod_in, fuse_notify_retrieve_in, fuse_open_in, fuse_poll_in, fuse_read_in,
    fuse_release_in, fuse_removemapping_in, fuse_removemapping_one, fuse_rename_in,
    fuse_rename2_in, fuse_setattr_in, fuse_setupmapping_in, fuse_setxattr_in, fuse_statx_in,
    fuse_supp_groups, fuse_syncfs_in, fuse_write_in,
};
use crate::pod::{self, Pod};
use crate::{Errno, Opcode};

/// `sizeof(struct fuse_in_header)`: 40 bytes in front of every request.
pub const IN_HEADER_SIZE: usize = size_of::<fuse_in_header>();

/// The smallest `fuse_init_in` accepted: `major` and `minor` (libfuse answers shorter ones
/// with `EPROTO`). Kernels before 7.36 send 16 bytes, newer ones 64.
pub const MIN_INIT_IN_SIZE: usize = 8;

/// The longest symlink target accepted, without its NUL: `PATH_MAX - 1`, the VFS limit
/// (`getname()` in `fs/namei.c`). Symlink targets are paths, not names, so
/// [`FUSE_NAME_MAX`] does not apply to them.
pub const SYMLINK_TARGET_MAX: usize = 4095;

/// Whether [`Request::parse_split`] requires `fuse_in_header::len ==
/// 40 + fixed_arg_size + payload.len()`.
///
/// In 6.18 the kernel fills `len` the same way for both transports (`fuse_send_one()` and
/// `fuse_request_queue_background_uring()` in `fs/fuse/dev.c` add up every `in_args[]`
/// size, extensions included), and `fuse_uring_args_to_ring()` copies exactly `in_args[0]`
/// to `op_in` and the rest to the payload, so the sum must match. If a kernel is found that
/// sets `len` differently for ring entries, turn this off: the payload length alone then
/// bounds the request.
pub const SPLIT_LEN_IS_CLASSIC_LEN: bool = true;

/// What INIT negotiated that changes request layouts.
///
/// Only `FUSE_SETXATTR_EXT` does in 7.45: it makes `fuse_setxattr_in` 16 bytes instead of
/// `FUSE_COMPAT_SETXATTR_IN_SIZE` (8). Build it with [`ParseConfig::from_init_flags`] from
/// the flags the server accepted in its INIT reply; before INIT, use the default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ParseConfig {
    /// `FUSE_SETXATTR_EXT` was negotiated: SETXATTR carries the 16-byte `fuse_setxattr_in`.
    pub setxattr_ext: bool,
}

impl ParseConfig {
    /// The layouts of a connection that negotiated `flags` (the server's INIT reply flags).
    #[inline]
    pub const fn from_init_flags(flags: InitFlags) -> Self {
        Self {
            setxattr_ext: flags.contains(InitFlags::SETXATTR_EXT),
        }
    }

    /// This configuration with `setxattr_ext` set to `on`.
    #[inline]
    #[must_use]
    pub const fn with_setxattr_ext(mut self, on: bool) -> Self {
        self.setxattr_ext = on;
        self
    }
}

/// Why a request could not be parsed. Every variant is a protocol violation by the sender;
/// [`ParseError::errno`] is the error to answer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ParseError {
    /// Fewer bytes than a fixed-size part needs (the header, a fixed struct, an extension
    /// header).
    TooShort {
        /// Bytes the part needs.
        needed: usize,
        /// Bytes that were left.
        got: usize,
    },
    /// `fuse_in_header::len` is not the request's real size (classic: bytes read; split:
    /// 40 + fixed struct + payload, see [`SPLIT_LEN_IS_CLASSIC_LEN`]).
    LenMismatch {
        /// `fuse_in_header::len`.
        header: u32,
        /// The real size.
        actual: usize,
    },
    /// A name or path has no NUL terminator before the end of its argument.
    MissingNul,
    /// A name or path is empty.
    EmptyName,
    /// A name is longer than `max` bytes ([`FUSE_NAME_MAX`], or [`SYMLINK_TARGET_MAX`] for
    /// a symlink target).
    NameTooLong {
        /// The limit that was exceeded.
        max: usize,
    },
    /// A data part is not as long as its fixed struct declares (`fuse_write_in::size`,
    /// `fuse_setxattr_in::size`, `fuse_ioctl_in::in_size`, `fuse_notify_retrieve_in::size`,
    /// a record count times the record size).
    SizeMismatch {
        /// Bytes declared.
        declared: usize,
        /// Bytes present.
        actual: usize,
    },
    /// Bytes left over after the opcode's last argument.
    TrailingBytes {
        /// How many.
        extra: usize,
    },
    /// `total_extlen * 8` is larger than the request body.
    ExtensionsTooLong {
        /// `total_extlen * 8`.
        ext_len: usize,
        /// Bytes of body available.
        available: usize,
    },
    /// A `fuse_ext_header::size` is below 8, not a multiple of 8, or runs past the end of
    /// the extension area.
    BadExtension {
        /// Offset of the block in the extension area.
        offset: usize,
        /// Its `size` field.
        size: u32,
    },
    /// A `fuse_supp_groups` extension whose `nr_groups` does not fit in its block.
    BadSuppGroups {
        /// Offset of the block in the extension area.
        offset: usize,
        /// Its `nr_groups` field.
        nr_groups: u32,
    },
}

impl ParseError {
    /// The errno a server should answer the request with: `ENAMETOOLONG` for a name over
    /// the limit, else `EIO` (the request is not what the protocol says, which is how the
    /// kernel itself reports protocol violations).
    #[inline]
    pub const fn errno(&self) -> Errno {
        match self {
            ParseError::NameTooLong { .. } => Errno::ENAMETOOLONG,
            _ => Errno::EIO,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ParseError::TooShort { needed, got } => {
                write!(f, "request too short: needed {needed} bytes, got {got}")
            }
            ParseError::LenMismatch { header, actual } => {
                write!(
                    f,
                    "fuse_in_header.len is {header} but the request has {actual} bytes"
                )
            }
            ParseError::MissingNul => f.write_str("name without NUL terminator"),
            ParseError::EmptyName => f.write_str("empty name"),
            ParseError::NameTooLong { max } => write!(f, "name longer than {max} bytes"),
            ParseError::SizeMismatch { declared, actual } => {
                write!(f, "data of {actual} bytes where {declared} were declared")
            }
            ParseError::TrailingBytes { extra } => {
                write!(f, "{extra} bytes after the last argument")
            }
            ParseError::ExtensionsTooLong { ext_len, available } => write!(
                f,
                "extension area of {ext_len} bytes in a body of {available}"
            ),
            ParseError::BadExtension { offset, size } => {
                write!(f, "extension at offset {offset} has bad size {size}")
            }
            ParseError::BadSuppGroups { offset, nr_groups } => write!(
                f,
                "supplementary groups at offset {offset}: {nr_groups} groups do not fit"
            ),
        }
    }
}

impl core::error::Error for ParseError {}

/// Why a request could not be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EncodeError {
    /// A destination buffer is too small.
    BufferTooSmall {
        /// Bytes needed in that buffer.
        needed: usize,
        /// Its length.
        got: usize,
    },
    /// The request does not fit the header's fields: more than `u32::MAX` bytes in all, or
    /// an extension area over `u16::MAX * 8` bytes.
    TooLong {
        /// The size that does not fit.
        len: usize,
    },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            EncodeError::BufferTooSmall { needed, got } => {
                write!(f, "buffer too small: needed {needed} bytes, got {got}")
            }
            EncodeError::TooLong { len } => write!(f, "request part of {len} bytes too long"),
        }
    }
}

impl core::error::Error for EncodeError {}

/// A run of fixed-size records borrowed from a request (`fuse_forget_one` of `BATCH_FORGET`,
/// `fuse_removemapping_one` of REMOVEMAPPING, the `u32` gids of `fuse_supp_groups`).
///
/// Each record is copied out when iterated, so the bytes need no alignment. Two `Records`
/// are equal when their bytes are.
pub struct Records<'a, T> {
    bytes: &'a [u8],
    _record: PhantomData<T>,
}

/// The `fuse_forget_one` records of a `FUSE_BATCH_FORGET`.
pub type Forgets<'a> = Records<'a, fuse_forget_one>;
/// The `fuse_removemapping_one` records of a `FUSE_REMOVEMAPPING`.
pub type RemoveMappings<'a> = Records<'a, fuse_removemapping_one>;
/// The group ids of a `fuse_supp_groups` extension.
pub type Gids<'a> = Records<'a, u32>;

impl<'a, T: Pod> Records<'a, T> {
    /// The records in `bytes`; `None` unless its length is a multiple of the record size.
    pub fn new(bytes: &'a [u8]) -> Option<Self> {
        let whole = bytes
            .len()
            .checked_rem(size_of::<T>())
            .is_some_and(|r| r == 0);
        whole.then_some(Self::from_exact(bytes))
    }

    /// No records.
    pub const fn empty() -> Self {
        Self::from_exact(&[])
    }

    const fn from_exact(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            _record: PhantomData,
        }
    }

    /// The number of records.
    pub fn len(&self) -> usize {
        self.bytes.len().checked_div(size_of::<T>()).unwrap_or(0)
    }

    /// Whether there are no records.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The raw bytes, as on the wire.
    pub const fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The records, copied out one by one.
    pub fn iter(&self) -> RecordsIter<'a, T> {
        RecordsIter {
            rest: self.bytes,
            _record: PhantomData,
        }
    }
}

impl<T> Clone for Records<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Records<'_, T> {}
impl<T> PartialEq for Records<'_, T> {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}
impl<T> Eq for Records<'_, T> {}

impl<T: Pod + fmt::Debug> fmt::Debug for Records<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a, T: Pod> IntoIterator for &Records<'a, T> {
    type Item = T;
    type IntoIter = RecordsIter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<'a, T: Pod> IntoIterator for Records<'a, T> {
    type Item = T;
    type IntoIter = RecordsIter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Iterator over [`Records`].
#[derive(Clone, Debug)]
pub struct RecordsIter<'a, T> {
    rest: &'a [u8],
    _record: PhantomData<T>,
}

impl<T: Pod> Iterator for RecordsIter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        let (record, rest) = pod::read_prefix::<T>(self.rest)?;
        self.rest = rest;
        Some(record)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.rest.len().checked_div(size_of::<T>()).unwrap_or(0);
        (n, Some(n))
    }
}

impl<T: Pod> ExactSizeIterator for RecordsIter<'_, T> {}

/// The extension area at the end of a request (`fuse_in_header::total_extlen` × 8 bytes): a
/// validated sequence of `fuse_ext_header`-prefixed blocks.
///
/// The kernel sends one for MKNOD, MKDIR, CREATE, SYMLINK and TMPFILE when
/// `FUSE_SECURITY_CTX` or `FUSE_CREATE_SUPP_GROUP` was negotiated. Two `Extensions` are
/// equal when their bytes are.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Extensions<'a> {
    bytes: &'a [u8],
}

/// One block of the extension area.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extension<'a> {
    /// Types 0..=31: `fuse_secctx_header` (whose `nr_secctx` is the type) followed by
    /// `nr_secctx` records of `fuse_secctx`, NUL-terminated xattr name and context, each
    /// padded to 8 bytes. The records are left unparsed.
    SecCtx {
        /// `fuse_secctx_header::nr_secctx`.
        nr_secctx: u32,
        /// The block after its 8-byte header, padding included.
        data: &'a [u8],
    },
    /// Type `FUSE_EXT_GROUPS`: `fuse_supp_groups`, the supplementary groups of the caller
    /// (the kernel sends the parent directory's gid when it is one of them).
    SuppGroups(Gids<'a>),
    /// A type this crate does not know.
    Unknown {
        /// `fuse_ext_header::type`.
        kind: u32,
        /// The block after its 8-byte header.
        data: &'a [u8],
    },
}

impl<'a> Extensions<'a> {
    /// No extensions.
    pub const EMPTY: Extensions<'static> = Extensions { bytes: &[] };

    /// Validates `bytes` as an extension area.
    ///
    /// # Errors
    /// [`ParseError::TooShort`] if a block header is cut off, [`ParseError::BadExtension`]
    /// for a bad block size, [`ParseError::BadSuppGroups`] if `nr_groups` overruns its
    /// block.
    pub fn new(bytes: &'a [u8]) -> Result<Self, ParseError> {
        let mut rest = bytes;
        while let Some((_, after)) = next_extension(rest, bytes.len() - rest.len())? {
            rest = after;
        }
        Ok(Self { bytes })
    }

    /// The raw area, as on the wire (`total_extlen * 8` bytes).
    pub const fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Whether the area is empty.
    pub const fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The blocks, in order.
    pub fn iter(&self) -> ExtensionsIter<'a> {
        ExtensionsIter { rest: self.bytes }
    }

    /// The supplementary groups, if the area has a `FUSE_EXT_GROUPS` block.
    pub fn supp_groups(&self) -> Option<Gids<'a>> {
        self.iter().find_map(|e| match e {
            Extension::SuppGroups(gids) => Some(gids),
            _ => None,
        })
    }
}

impl fmt::Debug for Extensions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for &Extensions<'a> {
    type Item = Extension<'a>;
    type IntoIter = ExtensionsIter<'a>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<'a> IntoIterator for Extensions<'a> {
    type Item = Extension<'a>;
    type IntoIter = ExtensionsIter<'a>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Iterator over [`Extensions`].
#[derive(Clone, Debug)]
pub struct ExtensionsIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for ExtensionsIter<'a> {
    type Item = Extension<'a>;
    fn next(&mut self) -> Option<Extension<'a>> {
        // The area was validated by `Extensions::new`, so this never fails; if it did, the
        // iteration would simply end.
        let (ext, rest) = next_extension(self.rest, 0).ok()??;
        self.rest = rest;
        Some(ext)
    }
}

/// Splits the first block off an extension area; `Ok(None)` at its end. `offset` is only
/// used in errors.
fn next_extension(
    bytes: &[u8],
    offset: usize,
) -> Result<Option<(Extension<'_>, &[u8])>, ParseError> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let mut cur = Cursor::new(bytes);
    let head: fuse_ext_header = cur.take()?;
    let bad = ParseError::BadExtension {
        offset,
        size: head.size,
    };
    let size = to_usize(head.size);
    if size < size_of::<fuse_ext_header>() || size % 8 != 0 {
        return Err(bad);
    }
    let (block, rest) = bytes.split_at_checked(size).ok_or(bad)?;
    let data = block
        .get(size_of::<fuse_ext_header>()..)
        .unwrap_or_default();
    let ext = match head.r#type {
        n if n <= FUSE_MAX_NR_SECCTX => Extension::SecCtx { nr_secctx: n, data },
        FUSE_EXT_GROUPS => {
            let mut cur = Cursor::new(data);
            let groups: fuse_supp_groups = cur.take()?;
            let gid_bytes = to_usize(groups.nr_groups).saturating_mul(size_of::<u32>());
            let gids = cur.rest.get(..gid_bytes).ok_or(ParseError::BadSuppGroups {
                offset,
                nr_groups: groups.nr_groups,
            })?;
            Extension::SuppGroups(Records::from_exact(gids))
        }
        kind => Extension::Unknown { kind, data },
    };
    Ok(Some((ext, rest)))
}

/// One FUSE request: its header, its opcode's arguments, and its extensions.
///
/// Borrows names, data and records from the buffer it was parsed from; fixed structs are
/// copied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[doc(alias = "fuse_in_header")]
pub struct Request<'a> {
    /// `struct fuse_in_header`, as received. When encoding, `len`, `opcode` and
    /// `total_extlen` are recomputed from `op` and `extensions`.
    pub header: fuse_in_header,
    /// The opcode and its arguments.
    pub op: Operation<'a>,
    /// The extension area (empty unless `total_extlen != 0`).
    pub extensions: Extensions<'a>,
}

/// The arguments of a request, one variant per `enum fuse_opcode` value of 7.45.
///
/// `arg` is the opcode's fixed struct (copied); names are borrowed `CStr`s; data, values and
/// records are borrowed bytes. For data whose length a fixed struct declares (`Write`,
/// `Setxattr`, `Ioctl`, `NotifyReply`), parsing checks the declared `size` against the bytes
/// present; encoding writes both as given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[doc(alias = "fuse_opcode")]
pub enum Operation<'a> {
    /// `FUSE_LOOKUP`: look up `name` in directory `nodeid`.
    Lookup {
        /// Entry name.
        name: &'a CStr,
    },
    /// `FUSE_FORGET`: drop `nlookup` references to `nodeid` (no reply).
    Forget {
        /// `fuse_forget_in`.
        arg: fuse_forget_in,
    },
    /// `FUSE_GETATTR`.
    Getattr {
        /// `fuse_getattr_in`.
        arg: fuse_getattr_in,
    },
    /// `FUSE_SETATTR`.
    Setattr {
        /// `fuse_setattr_in`.
        arg: fuse_setattr_in,
    },
    /// `FUSE_READLINK` (no arguments).
    Readlink,
    /// `FUSE_SYMLINK`: create `name` in directory `nodeid`, pointing at `target`.
    Symlink {
        /// Entry name (first on the wire).
        name: &'a CStr,
        /// Link target (second on the wire), at most [`SYMLINK_TARGET_MAX`] bytes.
        target: &'a CStr,
    },
    /// `FUSE_MKNOD`.
    Mknod {
        /// `fuse_mknod_in`.
        arg: fuse_mknod_in,
        /// Entry name.
        name: &'a CStr,
    },
    /// `FUSE_MKDIR`.
    Mkdir {
        /// `fuse_mkdir_in`.
        arg: fuse_mkdir_in,
        /// Entry name.
        name: &'a CStr,
    },
    /// `FUSE_UNLINK`.
    Unlink {
        /// Entry name.
        name: &'a CStr,
    },
    /// `FUSE_RMDIR`.
    Rmdir {
        /// Entry name.
        name: &'a CStr,
    },
    /// `FUSE_RENAME`: move `old` in `nodeid` to `new` in `arg.newdir`.
    Rename {
        /// `fuse_rename_in`.
        arg: fuse_rename_in,
        /// Old name.
        old: &'a CStr,
        /// New name.
        new: &'a CStr,
    },
    /// `FUSE_LINK`: make `name` in directory `nodeid` a link to `arg.oldnodeid`.
    Link {
        /// `fuse_link_in`.
        arg: fuse_link_in,
        /// New entry name.
        name: &'a CStr,
    },
    /// `FUSE_OPEN`.
    Open {
        /// `fuse_open_in`.
        arg: fuse_open_in,
    },
    /// `FUSE_READ`.
    Read {
        /// `fuse_read_in`.
        arg: fuse_read_in,
    },
    /// `FUSE_WRITE`.
    Write {
        /// `fuse_write_in`.
        arg: fuse_write_in,
        /// `arg.size` bytes of data.
        data: &'a [u8],
    },
    /// `FUSE_STATFS` (no arguments).
    Statfs,
    /// `FUSE_RELEASE`.
    Release {
        /// `fuse_release_in`.
        arg: fuse_release_in,
    },
    /// `FUSE_FSYNC`.
    Fsync {
        /// `fuse_fsync_in`.
        arg: fuse_fsync_in,
    },
    /// `FUSE_SETXATTR`.
    Setxattr {
        /// `fuse_setxattr_in`. Without `FUSE_SETXATTR_EXT` only its first 8 bytes are on
        /// the wire and `setxattr_flags`/`padding` are zero.
        arg: fuse_setxattr_in,
        /// Attribute name.
        name: &'a CStr,
        /// `arg.size` bytes of value.
        value: &'a [u8],
    },
    /// `FUSE_GETXATTR`.
    Getxattr {
        /// `fuse_getxattr_in`.
        arg: fuse_getxattr_in,
        /// Attribute name.
        name: &'a CStr,
    },
    /// `FUSE_LISTXATTR`.
    Listxattr {
        /// `fuse_getxattr_in`.
        arg: fuse_getxattr_in,
    },
    /// `FUSE_REMOVEXATTR`.
    Removexattr {
        /// Attribute name.
        name: &'a CStr,
    },
    /// `FUSE_FLUSH`.
    Flush {
        /// `fuse_flush_in`.
        arg: fuse_flush_in,
    },
    /// `FUSE_INIT`.
    Init {
        /// `fuse_init_in`. Kernels send 16 (before 7.36) or 64 bytes; anything from
        /// [`MIN_INIT_IN_SIZE`] bytes up is accepted and zero-extended, and bytes beyond 64
        /// (a future, larger struct) are ignored rather than failing the mount.
        arg: fuse_init_in,
    },
    /// `FUSE_OPENDIR`.
    Opendir {
        /// `fuse_open_in`.
        arg: fuse_open_in,
    },
    /// `FUSE_READDIR`.
    Readdir {
        /// `fuse_read_in`.
        arg: fuse_read_in,
    },
    /// `FUSE_RELEASEDIR`.
    Releasedir {
        /// `fuse_release_in`.
        arg: fuse_release_in,
    },
    /// `FUSE_FSYNCDIR`.
    Fsyncdir {
        /// `fuse_fsync_in`.
        arg: fuse_fsync_in,
    },
    /// `FUSE_GETLK`.
    Getlk {
        /// `fuse_lk_in`.
        arg: fuse_lk_in,
    },
    /// `FUSE_SETLK`.
    Setlk {
        /// `fuse_lk_in`.
        arg: fuse_lk_in,
    },
    /// `FUSE_SETLKW`.
    Setlkw {
        /// `fuse_lk_in`.
        arg: fuse_lk_in,
    },
    /// `FUSE_ACCESS`.
    Access {
        /// `fuse_access_in`.
        arg: fuse_access_in,
    },
    /// `FUSE_CREATE`.
    Create {
        /// `fuse_create_in`.
        arg: fuse_create_in,
        /// Entry name.
        name: &'a CStr,
    },
    /// `FUSE_INTERRUPT`: `arg.unique` is the request to interrupt.
    Interrupt {
        /// `fuse_interrupt_in`.
        arg: fuse_interrupt_in,
    },
    /// `FUSE_BMAP`.
    Bmap {
        /// `fuse_bmap_in`.
        arg: fuse_bmap_in,
    },
    /// `FUSE_DESTROY` (no arguments).
    Destroy,
    /// `FUSE_IOCTL`.
    Ioctl {
        /// `fuse_ioctl_in`.
        arg: fuse_ioctl_in,
        /// `arg.in_size` bytes of input data.
        data: &'a [u8],
    },
    /// `FUSE_POLL`.
    Poll {
        /// `fuse_poll_in`.
        arg: fuse_poll_in,
    },
    /// `FUSE_NOTIFY_REPLY`: the data asked for by a `FUSE_NOTIFY_RETRIEVE` (no reply).
    NotifyReply {
        /// `fuse_notify_retrieve_in`.
        arg: fuse_notify_retrieve_in,
        /// `arg.size` bytes of file data.
        data: &'a [u8],
    },
    /// `FUSE_BATCH_FORGET` (no reply). `fuse_batch_forget_in::count` is `forgets.len()`.
    BatchForget {
        /// The `fuse_forget_one` records.
        forgets: Forgets<'a>,
    },
    /// `FUSE_FALLOCATE`.
    Fallocate {
        /// `fuse_fallocate_in`.
        arg: fuse_fallocate_in,
    },
    /// `FUSE_READDIRPLUS`.
    Readdirplus {
        /// `fuse_read_in`.
        arg: fuse_read_in,
    },
    /// `FUSE_RENAME2`.
    Rename2 {
        /// `fuse_rename2_in`.
        arg: fuse_rename2_in,
        /// Old name.
        old: &'a CStr,
        /// New name.
        new: &'a CStr,
    },
    /// `FUSE_LSEEK`.
    Lseek {
        /// `fuse_lseek_in`.
        arg: fuse_lseek_in,
    },
    /// `FUSE_COPY_FILE_RANGE`.
    CopyFileRange {
        /// `fuse_copy_file_range_in`.
        arg: fuse_copy_file_range_in,
    },
    /// `FUSE_SETUPMAPPING` (DAX).
    SetupMapping {
        /// `fuse_setupmapping_in`.
        arg: fuse_setupmapping_in,
    },
    /// `FUSE_REMOVEMAPPING` (DAX). `fuse_removemapping_in::count` is `entries.len()`.
    RemoveMapping {
        /// The `fuse_removemapping_one` records.
        entries: RemoveMappings<'a>,
    },
    /// `FUSE_SYNCFS`.
    Syncfs {
        /// `fuse_syncfs_in`.
        arg: fuse_syncfs_in,
    },
    /// `FUSE_TMPFILE`.
    Tmpfile {
        /// `fuse_create_in`.
        arg: fuse_create_in,
        /// Entry name.
        name: &'a CStr,
    },
    /// `FUSE_STATX`.
    Statx {
        /// `fuse_statx_in`.
        arg: fuse_statx_in,
    },
    /// `FUSE_COPY_FILE_RANGE_64`.
    CopyFileRange64 {
        /// `fuse_copy_file_range_in`.
        arg: fuse_copy_file_range_in,
    },
    /// `CUSE_INIT`.
    CuseInit {
        /// `cuse_init_in`.
        arg: cuse_init_in,
    },
    /// An opcode this crate does not know; answer it with `ENOSYS`.
    Unknown {
        /// `fuse_in_header::opcode`.
        opcode: u32,
        /// The arguments, extensions excluded. In the split form this is the payload only
        /// (whatever the kernel put in `op_in` is not kept).
        body: &'a [u8],
    },
}

macro_rules! operation_opcodes {
    ($op:expr, $($variant:ident),* $(,)?) => {
        match $op {
            $( Operation::$variant { .. } => Opcode::$variant, )*
            Operation::Unknown { opcode, .. } => Opcode::from(*opcode),
        }
    };
}

impl Operation<'_> {
    /// The opcode this operation is sent with.
    pub fn opcode(&self) -> Opcode {
        operation_opcodes!(
            self,
            Lookup,
            Forget,
            Getattr,
            Setattr,
            Readlink,
            Symlink,
            Mknod,
            Mkdir,
            Unlink,
            Rmdir,
            Rename,
            Link,
            Open,
            Read,
            Write,
            Statfs,
            Release,
            Fsync,
            Setxattr,
            Getxattr,
            Listxattr,
            Removexattr,
            Flush,
            Init,
            Opendir,
            Readdir,
            Releasedir,
            Fsyncdir,
            Getlk,
            Setlk,
            Setlkw,
            Access,
            Create,
            Interrupt,
            Bmap,
            Destroy,
            Ioctl,
            Poll,
            NotifyReply,
            BatchForget,
            Fallocate,
            Readdirplus,
            Rename2,
            Lseek,
            CopyFileRange,
            SetupMapping,
            RemoveMapping,
            Syncfs,
            Tmpfile,
            Statx,
            CopyFileRange64,
            CuseInit,
        )
    }
}

/// The size of `opcode`'s fixed argument struct (the kernel's `in_args[0]`): what sits in
/// front of the variable part in the classic form and in `op_in` in the split form.
///
/// It is 0 for opcodes with no arguments and for those the kernel sends with an empty
/// `in_args[0]` (`fuse_set_zero_arg0`, Linux 6.14+): `LOOKUP`, `SYMLINK`, `UNLINK`, `RMDIR`,
/// `REMOVEXATTR`, `NOTIFY_REPLY` and `REMOVEMAPPING` (the last two carry their struct in the
/// payload), and for unknown opcodes. `SETXATTR` depends on `cfg`; `INIT` is the full 64
/// bytes (a shorter classic INIT is accepted, see [`Operation::Init`]).
pub fn fixed_arg_size(opcode: Opcode, cfg: &ParseConfig) -> usize {
    match opcode {
        Opcode::Lookup
        | Opcode::Readlink
        | Opcode::Symlink
        | Opcode::Unlink
        | Opcode::Rmdir
        | Opcode::Statfs
        | Opcode::Removexattr
        | Opcode::Destroy
        | Opcode::NotifyReply
        | Opcode::RemoveMapping
        | Opcode::Unknown(_) => 0,
        Opcode::Forget => size_of::<fuse_forget_in>(),
        Opcode::Getattr => size_of::<fuse_getattr_in>(),
        Opcode::Setattr => size_of::<fuse_setattr_in>(),
        Opcode::Mknod => size_of::<fuse_mknod_in>(),
        Opcode::Mkdir => size_of::<fuse_mkdir_in>(),
        Opcode::Rename => size_of::<fuse_rename_in>(),
        Opcode::Link => size_of::<fuse_link_in>(),
        Opcode::Open | Opcode::Opendir => size_of::<fuse_open_in>(),
        Opcode::Read | Opcode::Readdir | Opcode::Readdirplus => size_of::<fuse_read_in>(),
        Opcode::Write => size_of::<fuse_write_in>(),
        Opcode::Release | Opcode::Releasedir => size_of::<fuse_release_in>(),
        Opcode::Fsync | Opcode::Fsyncdir => size_of::<fuse_fsync_in>(),
        Opcode::Setxattr if cfg.setxattr_ext => size_of::<fuse_setxattr_in>(),
        Opcode::Setxattr => FUSE_COMPAT_SETXATTR_IN_SIZE,
        Opcode::Getxattr | Opcode::Listxattr => size_of::<fuse_getxattr_in>(),
        Opcode::Flush => size_of::<fuse_flush_in>(),
        Opcode::Init => size_of::<fuse_init_in>(),
        Opcode::Getlk | Opcode::Setlk | Opcode::Setlkw => size_of::<fuse_lk_in>(),
        Opcode::Access => size_of::<fuse_access_in>(),
        Opcode::Create | Opcode::Tmpfile => size_of::<fuse_create_in>(),
        Opcode::Interrupt => size_of::<fuse_interrupt_in>(),
        Opcode::Bmap => size_of::<fuse_bmap_in>(),
        Opcode::Ioctl => size_of::<fuse_ioctl_in>(),
        Opcode::Poll => size_of::<fuse_poll_in>(),
        Opcode::BatchForget => size_of::<fuse_batch_forget_in>(),
        Opcode::Fallocate => size_of::<fuse_fallocate_in>(),
        Opcode::Rename2 => size_of::<fuse_rename2_in>(),
        Opcode::Lseek => size_of::<fuse_lseek_in>(),
        Opcode::CopyFileRange | Opcode::CopyFileRange64 => size_of::<fuse_copy_file_range_in>(),
        Opcode::SetupMapping => size_of::<fuse_setupmapping_in>(),
        Opcode::Syncfs => size_of::<fuse_syncfs_in>(),
        Opcode::Statx => size_of::<fuse_statx_in>(),
        Opcode::CuseInit => size_of::<cuse_init_in>(),
    }
}

/// Reads the `fuse_in_header` at the front of `bytes`, checking only that it is there.
///
/// Works for both forms (the split form's `in_out` area starts with the header). Use it to
/// learn the `unique` to answer when [`Request::parse`] or [`Request::parse_split`] fails.
///
/// # Errors
/// [`ParseError::TooShort`] if `bytes` is shorter than 40 bytes.
pub fn parse_header(bytes: &[u8]) -> Result<fuse_in_header, ParseError> {
    Cursor::new(bytes).take()
}

impl<'a> Request<'a> {
    /// A request for `op` on `nodeid` with id `unique`, no credentials (0) and no
    /// extensions. `len` and `total_extlen` are left 0; encoding fills them in.
    pub fn new(unique: u64, nodeid: u64, op: Operation<'a>) -> Self {
        let header = fuse_in_header {
            opcode: u32::from(op.opcode()),
            unique,
            nodeid,
            ..fuse_in_header::default()
        };
        Self {
            header,
            op,
            extensions: Extensions::EMPTY,
        }
    }

    /// This request with the caller's `uid`, `gid` and `pid`.
    #[must_use]
    pub fn with_creds(mut self, uid: u32, gid: u32, pid: u32) -> Self {
        self.header.uid = uid;
        self.header.gid = gid;
        self.header.pid = pid;
        self
    }

    /// This request with an extension area.
    #[must_use]
    pub fn with_extensions(mut self, extensions: Extensions<'a>) -> Self {
        self.extensions = extensions;
        self
    }

    /// The opcode (from `op`).
    pub fn opcode(&self) -> Opcode {
        self.op.opcode()
    }

    /// Parses one request in the classic form: `bytes` is exactly what one `read()` of
    /// `/dev/fuse` returned.
    ///
    /// # Errors
    /// Any [`ParseError`]; see the module docs for what is checked.
    pub fn parse(bytes: &'a [u8], cfg: &ParseConfig) -> Result<Self, ParseError> {
        let header = parse_header(bytes)?;
        if to_usize(header.len) != bytes.len() {
            return Err(ParseError::LenMismatch {
                header: header.len,
                actual: bytes.len(),
            });
        }
        let body = bytes.get(IN_HEADER_SIZE..).unwrap_or_default();
        let (args, extensions) = split_extensions(body, header.total_extlen)?;
        let opcode = Opcode::from(header.opcode);
        // A short fixed part stays short so that `parse_args` reports how short it is.
        let cut = fixed_arg_size(opcode, cfg).min(args.len());
        let (fixed, var) = args.split_at_checked(cut).unwrap_or((args, &[]));
        Self::from_parts(header, opcode, fixed, var, extensions, *cfg)
    }

    /// Parses one request in the split form of a FUSE-over-`io_uring` entry
    /// (`struct fuse_uring_req_header` plus payload).
    ///
    /// `in_out` is the 128-byte area holding `fuse_in_header`; `op_in` the 128-byte area
    /// whose first [`fixed_arg_size`] bytes are the fixed struct; `payload` the first
    /// `fuse_uring_ent_in_out::payload_sz` bytes of the payload buffer (the other arguments
    /// in classic order, extensions last). With [`SPLIT_LEN_IS_CLASSIC_LEN`], `len` must be
    /// `40 + fixed_arg_size + payload.len()`; for an unknown opcode, whatever part of `len`
    /// the payload does not account for is taken to be in `op_in`.
    ///
    /// # Errors
    /// Any [`ParseError`]; [`ParseError::TooShort`] also if `op_in` is shorter than the
    /// fixed struct.
    pub fn parse_split(
        in_out: &'a [u8],
        op_in: &'a [u8],
        payload: &'a [u8],
        cfg: &ParseConfig,
    ) -> Result<Self, ParseError> {
        let header = parse_header(in_out)?;
        let opcode = Opcode::from(header.opcode);
        let fixed_len = split_fixed_len(&header, opcode, op_in.len(), payload.len(), *cfg)?;
        let fixed = op_in.get(..fixed_len).ok_or(ParseError::TooShort {
            needed: fixed_len,
            got: op_in.len(),
        })?;
        let (var, extensions) = split_extensions(payload, header.total_extlen)?;
        Self::from_parts(header, opcode, fixed, var, extensions, *cfg)
    }

    fn from_parts(
        header: fuse_in_header,
        opcode: Opcode,
        fixed: &'a [u8],
        var: &'a [u8],
        extensions: Extensions<'a>,
        cfg: ParseConfig,
    ) -> Result<Self, ParseError> {
        Ok(Self {
            header,
            op: parse_args(opcode, fixed, var, cfg)?,
            extensions,
        })
    }

    /// Writes the classic form into `buf` and returns its length. The header is
    /// `self.header` with `len`, `opcode` and `total_extlen` computed from `op` and
    /// `extensions`; names get their NUL. Declared sizes (`fuse_write_in::size`, ...) are
    /// written as given, not checked.
    ///
    /// # Errors
    /// [`EncodeError::BufferTooSmall`] if `buf` is too short, [`EncodeError::TooLong`] if
    /// the request does not fit the header's fields.
    pub fn encode(&self, cfg: &ParseConfig, buf: &mut [u8]) -> Result<usize, EncodeError> {
        let (fixed_len, var_len) = self.arg_lens(*cfg)?;
        let total = IN_HEADER_SIZE
            .saturating_add(fixed_len)
            .saturating_add(var_len);
        let header = self.wire_header(total)?;
        let too_small = EncodeError::BufferTooSmall {
            needed: total,
            got: buf.len(),
        };
        if buf.len() < total {
            return Err(too_small);
        }
        let body = pod::write_prefix(buf, &header).ok_or(too_small)?;
        let mut out = Writer::new(body);
        emit_args(&self.op, *cfg, &mut |_, bytes| out.put(bytes))?;
        out.put(self.extensions.as_bytes())?;
        Ok(total)
    }

    /// Writes the split form: the header into `in_out`, the fixed struct into `op_in` (the
    /// rest of `op_in` is left alone), the other arguments and the extensions into
    /// `payload`. Returns the payload length (`payload_sz`). The header is as for
    /// [`Request::encode`], with `len` the full classic length.
    ///
    /// # Errors
    /// [`EncodeError::BufferTooSmall`] if any area is too short, [`EncodeError::TooLong`]
    /// if the request does not fit the header's fields.
    pub fn encode_split(
        &self,
        cfg: &ParseConfig,
        in_out: &mut [u8],
        op_in: &mut [u8],
        payload: &mut [u8],
    ) -> Result<usize, EncodeError> {
        let (fixed_len, var_len) = self.arg_lens(*cfg)?;
        let total = IN_HEADER_SIZE
            .saturating_add(fixed_len)
            .saturating_add(var_len);
        let header = self.wire_header(total)?;
        for (needed, got) in [
            (IN_HEADER_SIZE, in_out.len()),
            (fixed_len, op_in.len()),
            (var_len, payload.len()),
        ] {
            if got < needed {
                return Err(EncodeError::BufferTooSmall { needed, got });
            }
        }
        pod::write_prefix(in_out, &header).ok_or(EncodeError::BufferTooSmall {
            needed: IN_HEADER_SIZE,
            got: 0,
        })?;
        let mut fixed = Writer::new(op_in);
        let mut var = Writer::new(payload);
        emit_args(&self.op, *cfg, &mut |part, bytes| match part {
            Part::Fixed => fixed.put(bytes),
            Part::Var => var.put(bytes),
        })?;
        var.put(self.extensions.as_bytes())?;
        Ok(var_len)
    }

    /// Bytes of fixed part and of variable part (extensions included).
    fn arg_lens(&self, cfg: ParseConfig) -> Result<(usize, usize), EncodeError> {
        let (mut fixed, mut var) = (0usize, 0usize);
        emit_args(&self.op, cfg, &mut |part, bytes| {
            match part {
                Part::Fixed => fixed = fixed.saturating_add(bytes.len()),
                Part::Var => var = var.saturating_add(bytes.len()),
            }
            Ok(())
        })?;
        Ok((fixed, var.saturating_add(self.extensions.as_bytes().len())))
    }

    fn wire_header(&self, total: usize) -> Result<fuse_in_header, EncodeError> {
        let ext_len = self.extensions.as_bytes().len();
        let mut header = self.header;
        header.len = u32::try_from(total).map_err(|_| EncodeError::TooLong { len: total })?;
        header.opcode = u32::from(self.op.opcode());
        header.total_extlen =
            u16::try_from(ext_len / 8).map_err(|_| EncodeError::TooLong { len: ext_len })?;
        Ok(header)
    }
}

/// How many of `op_in`'s bytes belong to the request, checking `len` (split form).
fn split_fixed_len(
    header: &fuse_in_header,
    opcode: Opcode,
    op_in_len: usize,
    payload_len: usize,
    cfg: ParseConfig,
) -> Result<usize, ParseError> {
    let fixed = fixed_arg_size(opcode, &cfg);
    if !SPLIT_LEN_IS_CLASSIC_LEN {
        return Ok(fixed);
    }
    let header_len = to_usize(header.len);
    let mismatch = |fixed: usize| ParseError::LenMismatch {
        header: header.len,
        actual: IN_HEADER_SIZE
            .saturating_add(fixed)
            .saturating_add(payload_len),
    };
    if let Opcode::Unknown(_) = opcode {
        // We don't know this opcode's `in_args[0]`; infer its size from `len`.
        return header_len
            .checked_sub(IN_HEADER_SIZE.saturating_add(payload_len))
            .filter(|&n| n <= op_in_len)
            .ok_or(mismatch(0));
    }
    if header_len
        == IN_HEADER_SIZE
            .saturating_add(fixed)
            .saturating_add(payload_len)
    {
        Ok(fixed)
    } else {
        Err(mismatch(fixed))
    }
}

/// Splits `body` into the arguments and the extension area at its end.
fn split_extensions(body: &[u8], total_extlen: u16) -> Result<(&[u8], Extensions<'_>), ParseError> {
    let ext_len = usize::from(total_extlen) * 8;
    let too_long = ParseError::ExtensionsTooLong {
        ext_len,
        available: body.len(),
    };
    let args_len = body.len().checked_sub(ext_len).ok_or(too_long)?;
    let (args, ext) = body.split_at_checked(args_len).ok_or(too_long)?;
    Ok((args, Extensions::new(ext)?))
}

/// The per-opcode table shared by both forms: `fixed` is the opcode's fixed struct
/// ([`fixed_arg_size`] bytes, or fewer if the request is short), `var` the remaining
/// arguments without extensions.
#[allow(clippy::too_many_lines)] // one arm per opcode
fn parse_args<'a>(
    opcode: Opcode,
    fixed: &'a [u8],
    var: &'a [u8],
    cfg: ParseConfig,
) -> Result<Operation<'a>, ParseError> {
    use Operation as Op;
    let mut f = Cursor::new(fixed);
    let mut v = Cursor::new(var);
    let op = match opcode {
        Opcode::Lookup => Op::Lookup { name: v.name()? },
        Opcode::Forget => Op::Forget { arg: f.take()? },
        Opcode::Getattr => Op::Getattr { arg: f.take()? },
        Opcode::Setattr => Op::Setattr { arg: f.take()? },
        Opcode::Readlink => Op::Readlink,
        Opcode::Symlink => Op::Symlink {
            name: v.name()?,
            target: v.cstr(SYMLINK_TARGET_MAX)?,
        },
        Opcode::Mknod => Op::Mknod {
            arg: f.take()?,
            name: v.name()?,
        },
        Opcode::Mkdir => Op::Mkdir {
            arg: f.take()?,
            name: v.name()?,
        },
        Opcode::Unlink => Op::Unlink { name: v.name()? },
        Opcode::Rmdir => Op::Rmdir { name: v.name()? },
        Opcode::Rename => Op::Rename {
            arg: f.take()?,
            old: v.name()?,
            new: v.name()?,
        },
        Opcode::Link => Op::Link {
            arg: f.take()?,
            name: v.name()?,
        },
        Opcode::Open => Op::Open { arg: f.take()? },
        Opcode::Read => Op::Read { arg: f.take()? },
        Opcode::Write => {
            let arg: fuse_write_in = f.take()?;
            Op::Write {
                arg,
                data: v.sized(arg.size)?,
            }
        }
        Opcode::Statfs => Op::Statfs,
        Opcode::Release => Op::Release { arg: f.take()? },
        Opcode::Fsync => Op::Fsync { arg: f.take()? },
        Opcode::Setxattr => {
            let arg: fuse_setxattr_in = f.take_zero_extended(fixed_arg_size(opcode, &cfg))?;
            Op::Setxattr {
                arg,
                name: v.name()?,
                value: v.sized(arg.size)?,
            }
        }
        Opcode::Getxattr => Op::Getxattr {
            arg: f.take()?,
            name: v.name()?,
        },
        Opcode::Listxattr => Op::Listxattr { arg: f.take()? },
        Opcode::Removexattr => Op::Removexattr { name: v.name()? },
        Opcode::Flush => Op::Flush { arg: f.take()? },
        Opcode::Init => {
            let bytes = f.rest();
            if bytes.len() < MIN_INIT_IN_SIZE {
                return Err(ParseError::TooShort {
                    needed: MIN_INIT_IN_SIZE,
                    got: bytes.len(),
                });
            }
            // Bytes past 64 would belong to a future, larger `fuse_init_in`.
            v.rest();
            Op::Init {
                arg: pod::read_zero_extended(bytes),
            }
        }
        Opcode::Opendir => Op::Opendir { arg: f.take()? },
        Opcode::Readdir => Op::Readdir { arg: f.take()? },
        Opcode::Releasedir => Op::Releasedir { arg: f.take()? },
        Opcode::Fsyncdir => Op::Fsyncdir { arg: f.take()? },
        Opcode::Getlk => Op::Getlk { arg: f.take()? },
        Opcode::Setlk => Op::Setlk { arg: f.take()? },
        Opcode::Setlkw => Op::Setlkw { arg: f.take()? },
        Opcode::Access => Op::Access { arg: f.take()? },
        Opcode::Create => Op::Create {
            arg: f.take()?,
            name: v.name()?,
        },
        Opcode::Interrupt => Op::Interrupt { arg: f.take()? },
        Opcode::Bmap => Op::Bmap { arg: f.take()? },
        Opcode::Destroy => Op::Destroy,
        Opcode::Ioctl => {
            let arg: fuse_ioctl_in = f.take()?;
            Op::Ioctl {
                arg,
                data: v.sized(arg.in_size)?,
            }
        }
        Opcode::Poll => Op::Poll { arg: f.take()? },
        Opcode::NotifyReply => {
            let arg: fuse_notify_retrieve_in = v.take()?;
            Op::NotifyReply {
                arg,
                data: v.sized(arg.size)?,
            }
        }
        Opcode::BatchForget => {
            let arg: fuse_batch_forget_in = f.take()?;
            Op::BatchForget {
                forgets: v.records(arg.count)?,
            }
        }
        Opcode::Fallocate => Op::Fallocate { arg: f.take()? },
        Opcode::Readdirplus => Op::Readdirplus { arg: f.take()? },
        Opcode::Rename2 => Op::Rename2 {
            arg: f.take()?,
            old: v.name()?,
            new: v.name()?,
        },
        Opcode::Lseek => Op::Lseek { arg: f.take()? },
        Opcode::CopyFileRange => Op::CopyFileRange { arg: f.take()? },
        Opcode::SetupMapping => Op::SetupMapping { arg: f.take()? },
        Opcode::RemoveMapping => {
            let arg: fuse_removemapping_in = v.take()?;
            Op::RemoveMapping {
                entries: v.records(arg.count)?,
            }
        }
        Opcode::Syncfs => Op::Syncfs { arg: f.take()? },
        Opcode::Tmpfile => Op::Tmpfile {
            arg: f.take()?,
            name: v.name()?,
        },
        Opcode::Statx => Op::Statx { arg: f.take()? },
        Opcode::CopyFileRange64 => Op::CopyFileRange64 { arg: f.take()? },
        Opcode::CuseInit => Op::CuseInit { arg: f.take()? },
        Opcode::Unknown(code) => {
            f.rest();
            Op::Unknown {
                opcode: code,
                body: v.rest(),
            }
        }
    };
    f.finish()?;
    v.finish()?;
    Ok(op)
}

/// Which side of the split an encoded piece belongs to.
#[derive(Clone, Copy)]
enum Part {
    /// `in_args[0]`: `op_in` in the split form.
    Fixed,
    /// Every later argument: the payload in the split form.
    Var,
}

/// The inverse of `parse_args`: hands each piece of `op`'s arguments, in wire order, to
/// `put`.
#[allow(clippy::too_many_lines)] // one arm per opcode
fn emit_args<F>(op: &Operation<'_>, cfg: ParseConfig, put: &mut F) -> Result<(), EncodeError>
where
    F: FnMut(Part, &[u8]) -> Result<(), EncodeError>,
{
    use Operation as Op;
    use Part::{Fixed, Var};
    use pod::as_bytes;
    match op {
        Op::Lookup { name }
        | Op::Unlink { name }
        | Op::Rmdir { name }
        | Op::Removexattr { name } => put(Var, name.to_bytes_with_nul()),
        Op::Readlink | Op::Statfs | Op::Destroy => Ok(()),
        Op::Forget { arg } => put(Fixed, as_bytes(arg)),
        Op::Getattr { arg } => put(Fixed, as_bytes(arg)),
        Op::Setattr { arg } => put(Fixed, as_bytes(arg)),
        Op::Symlink { name, target } => {
            put(Var, name.to_bytes_with_nul())?;
            put(Var, target.to_bytes_with_nul())
        }
        Op::Mknod { arg, name } => {
            put(Fixed, as_bytes(arg))?;
            put(Var, name.to_bytes_with_nul())
        }
        Op::Mkdir { arg, name } => {
            put(Fixed, as_bytes(arg))?;
            put(Var, name.to_bytes_with_nul())
        }
        Op::Rename { arg, old, new } => {
            put(Fixed, as_bytes(arg))?;
            put(Var, old.to_bytes_with_nul())?;
            put(Var, new.to_bytes_with_nul())
        }
        Op::Link { arg, name } => {
            put(Fixed, as_bytes(arg))?;
            put(Var, name.to_bytes_with_nul())
        }
        Op::Open { arg } | Op::Opendir { arg } => put(Fixed, as_bytes(arg)),
        Op::Read { arg } | Op::Readdir { arg } | Op::Readdirplus { arg } => {
            put(Fixed, as_bytes(arg))
        }
        Op::Write { arg, data } => {
            put(Fixed, as_bytes(arg))?;
            put(Var, data)
        }
        Op::Release { arg } | Op::Releasedir { arg } => put(Fixed, as_bytes(arg)),
        Op::Fsync { arg } | Op::Fsyncdir { arg } => put(Fixed, as_bytes(arg)),
        Op::Setxattr { arg, name, value } => {
            let bytes = as_bytes(arg);
            let len = fixed_arg_size(Opcode::Setxattr, &cfg);
            put(Fixed, bytes.get(..len).unwrap_or(bytes))?;
            put(Var, name.to_bytes_with_nul())?;
            put(Var, value)
        }
        Op::Getxattr { arg, name } => {
            put(Fixed, as_bytes(arg))?;
            put(Var, name.to_bytes_with_nul())
        }
        Op::Listxattr { arg } => put(Fixed, as_bytes(arg)),
        Op::Flush { arg } => put(Fixed, as_bytes(arg)),
        Op::Init { arg } => put(Fixed, as_bytes(arg)),
        Op::Getlk { arg } | Op::Setlk { arg } | Op::Setlkw { arg } => put(Fixed, as_bytes(arg)),
        Op::Access { arg } => put(Fixed, as_bytes(arg)),
        Op::Create { arg, name } | Op::Tmpfile { arg, name } => {
            put(Fixed, as_bytes(arg))?;
            put(Var, name.to_bytes_with_nul())
        }
        Op::Interrupt { arg } => put(Fixed, as_bytes(arg)),
        Op::Bmap { arg } => put(Fixed, as_bytes(arg)),
        Op::Ioctl { arg, data } => {
            put(Fixed, as_bytes(arg))?;
            put(Var, data)
        }
        Op::Poll { arg } => put(Fixed, as_bytes(arg)),
        Op::NotifyReply { arg, data } => {
            put(Var, as_bytes(arg))?;
            put(Var, data)
        }
        Op::BatchForget { forgets } => {
            let arg = fuse_batch_forget_in {
                count: count_u32(forgets.len())?,
                dummy: 0,
            };
            put(Fixed, as_bytes(&arg))?;
            put(Var, forgets.as_bytes())
        }
        Op::Fallocate { arg } => put(Fixed, as_bytes(arg)),
        Op::Rename2 { arg, old, new } => {
            put(Fixed, as_bytes(arg))?;
            put(Var, old.to_bytes_with_nul())?;
            put(Var, new.to_bytes_with_nul())
        }
        Op::Lseek { arg } => put(Fixed, as_bytes(arg)),
        Op::CopyFileRange { arg } | Op::CopyFileRange64 { arg } => put(Fixed, as_bytes(arg)),
        Op::SetupMapping { arg } => put(Fixed, as_bytes(arg)),
        Op::RemoveMapping { entries } => {
            let arg = fuse_removemapping_in {
                count: count_u32(entries.len())?,
            };
            put(Var, as_bytes(&arg))?;
            put(Var, entries.as_bytes())
        }
        Op::Syncfs { arg } => put(Fixed, as_bytes(arg)),
        Op::Statx { arg } => put(Fixed, as_bytes(arg)),
        Op::CuseInit { arg } => put(Fixed, as_bytes(arg)),
        Op::Unknown { body, .. } => put(Var, body),
    }
}

/// A record count as the kernel's `u32`.
fn count_u32(n: usize) -> Result<u32, EncodeError> {
    u32::try_from(n).map_err(|_| EncodeError::TooLong { len: n })
}

/// A wire `u32` as a length (saturating on 16-bit targets, where it can't be valid anyway).
fn to_usize(n: u32) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// A read position in one argument area; every method is total.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    const fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    /// A fixed struct.
    fn take<T: Pod>(&mut self) -> Result<T, ParseError> {
        let (value, rest) = pod::read_prefix::<T>(self.rest).ok_or(ParseError::TooShort {
            needed: size_of::<T>(),
            got: self.rest.len(),
        })?;
        self.rest = rest;
        Ok(value)
    }

    /// A struct of which the wire carries only the first `len` bytes (compat sizes).
    fn take_zero_extended<T: Pod>(&mut self, len: usize) -> Result<T, ParseError> {
        let (head, rest) = self
            .rest
            .split_at_checked(len)
            .ok_or(ParseError::TooShort {
                needed: len,
                got: self.rest.len(),
            })?;
        self.rest = rest;
        Ok(pod::read_zero_extended(head))
    }

    /// A name: NUL-terminated, non-empty, at most `FUSE_NAME_MAX` bytes.
    fn name(&mut self) -> Result<&'a CStr, ParseError> {
        self.cstr(FUSE_NAME_MAX)
    }

    /// A NUL-terminated, non-empty string of at most `max` bytes.
    fn cstr(&mut self, max: usize) -> Result<&'a CStr, ParseError> {
        // Look no further than `max` bytes plus the NUL.
        let window = self.rest.get(..=max).unwrap_or(self.rest);
        let Ok(s) = CStr::from_bytes_until_nul(window) else {
            return Err(if window.len() > max {
                ParseError::NameTooLong { max }
            } else {
                ParseError::MissingNul
            });
        };
        if s.is_empty() {
            return Err(ParseError::EmptyName);
        }
        let (_, rest) = self
            .rest
            .split_at_checked(s.count_bytes() + 1)
            .ok_or(ParseError::MissingNul)?;
        self.rest = rest;
        Ok(s)
    }

    /// All remaining bytes, which must be exactly `declared` many.
    fn sized(&mut self, declared: u32) -> Result<&'a [u8], ParseError> {
        let data = self.rest();
        let declared = to_usize(declared);
        if data.len() == declared {
            Ok(data)
        } else {
            Err(ParseError::SizeMismatch {
                declared,
                actual: data.len(),
            })
        }
    }

    /// All remaining bytes, which must be exactly `count` records.
    fn records<T: Pod>(&mut self, count: u32) -> Result<Records<'a, T>, ParseError> {
        let declared = to_usize(count).saturating_mul(size_of::<T>());
        let data = self.rest();
        if data.len() == declared {
            Ok(Records::from_exact(data))
        } else {
            Err(ParseError::SizeMismatch {
                declared,
                actual: data.len(),
            })
        }
    }

    /// All remaining bytes.
    fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.rest)
    }

    /// Checks that everything was consumed.
    fn finish(self) -> Result<(), ParseError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(ParseError::TrailingBytes {
                extra: self.rest.len(),
            })
        }
    }
}

/// An append position in one output area.
struct Writer<'b> {
    buf: &'b mut [u8],
    pos: usize,
}

impl<'b> Writer<'b> {
    fn new(buf: &'b mut [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        let end = self.pos.saturating_add(bytes.len());
        let got = self.buf.len();
        let dst = self
            .buf
            .get_mut(self.pos..end)
            .ok_or(EncodeError::BufferTooSmall { needed: end, got })?;
        dst.copy_from_slice(bytes);
        self.pos = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::string::ToString;
    use std::vec;
    use std::vec::Vec;

    use super::*;
    use crate::kernel::{
        FUSE_BATCH_FORGET, FUSE_GETATTR, FUSE_INIT, FUSE_LOOKUP, FUSE_MKNOD, FUSE_READLINK,
        FUSE_RENAME, FUSE_SETXATTR, FUSE_SYMLINK, FUSE_URING_OP_IN_OUT_SZ, FUSE_WRITE, fuse_secctx,
    };

    const COMPAT: ParseConfig = ParseConfig {
        setxattr_ext: false,
    };
    const EXT: ParseConfig = ParseConfig { setxattr_ext: true };

    static FORGETS: [fuse_forget_one; 3] = [
        fuse_forget_one {
            nodeid: 5,
            nlookup: 2,
        },
        fuse_forget_one {
            nodeid: 9,
            nlookup: 1,
        },
        fuse_forget_one {
            nodeid: 0x1234_5678_9abc,
            nlookup: u64::MAX,
        },
    ];
    static MAPPINGS: [fuse_removemapping_one; 2] = [
        fuse_removemapping_one {
            moffset: 0x20_0000,
            len: 4096,
        },
        fuse_removemapping_one {
            moffset: 0x40_0000,
            len: 8192,
        },
    ];

    fn c(bytes: &'static [u8]) -> &'static CStr {
        CStr::from_bytes_with_nul(bytes).unwrap()
    }

    /// A `T` whose bytes are `seed, seed+1, ...`, so misplaced fields show.
    fn pat<T: Pod>(seed: u8) -> T {
        let bytes: [u8; 128] = core::array::from_fn(|i| seed.wrapping_add(i as u8));
        pod::read_zero_extended(&bytes)
    }

    /// One operation per opcode, with every field non-trivial.
    #[allow(clippy::too_many_lines)]
    fn sample(opcode: Opcode, cfg: ParseConfig) -> Operation<'static> {
        use Operation as Op;
        match opcode {
            Opcode::Lookup => Op::Lookup {
                name: c(b"hello\0"),
            },
            Opcode::Forget => Op::Forget { arg: pat(1) },
            Opcode::Getattr => Op::Getattr { arg: pat(2) },
            Opcode::Setattr => Op::Setattr { arg: pat(3) },
            Opcode::Readlink => Op::Readlink,
            Opcode::Symlink => Op::Symlink {
                name: c(b"link\0"),
                target: c(b"../some/target\0"),
            },
            Opcode::Mknod => Op::Mknod {
                arg: pat(4),
                name: c(b"fifo\0"),
            },
            Opcode::Mkdir => Op::Mkdir {
                arg: pat(5),
                name: c(b"dir\0"),
            },
            Opcode::Unlink => Op::Unlink { name: c(b"gone\0") },
            Opcode::Rmdir => Op::Rmdir { name: c(b"d\0") },
            Opcode::Rename => Op::Rename {
                arg: pat(6),
                old: c(b"old\0"),
                new: c(b"new-name\0"),
            },
            Opcode::Link => Op::Link {
                arg: pat(7),
                name: c(b"hard\0"),
            },
            Opcode::Open => Op::Open { arg: pat(8) },
            Opcode::Read => Op::Read { arg: pat(9) },
            Opcode::Write => Op::Write {
                arg: fuse_write_in { size: 5, ..pat(10) },
                data: b"ab\0de",
            },
            Opcode::Statfs => Op::Statfs,
            Opcode::Release => Op::Release { arg: pat(11) },
            Opcode::Fsync => Op::Fsync { arg: pat(12) },
            Opcode::Setxattr => {
                let mut arg = fuse_setxattr_in { size: 3, ..pat(13) };
                if !cfg.setxattr_ext {
                    // Not on the wire without FUSE_SETXATTR_EXT.
                    arg.setxattr_flags = 0;
                    arg.padding = 0;
                }
                Op::Setxattr {
                    arg,
                    name: c(b"user.k\0"),
                    value: b"v\0v",
                }
            }
            Opcode::Getxattr => Op::Getxattr {
                arg: pat(14),
                name: c(b"user.k\0"),
            },
            Opcode::Listxattr => Op::Listxattr { arg: pat(15) },
            Opcode::Removexattr => Op::Removexattr {
                name: c(b"user.k\0"),
            },
            Opcode::Flush => Op::Flush { arg: pat(16) },
            Opcode::Init => Op::Init { arg: pat(17) },
            Opcode::Opendir => Op::Opendir { arg: pat(18) },
            Opcode::Readdir => Op::Readdir { arg: pat(19) },
            Opcode::Releasedir => Op::Releasedir { arg: pat(20) },
            Opcode::Fsyncdir => Op::Fsyncdir { arg: pat(21) },
            Opcode::Getlk => Op::Getlk { arg: pat(22) },
            Opcode::Setlk => Op::Setlk { arg: pat(23) },
            Opcode::Setlkw => Op::Setlkw { arg: pat(24) },
            Opcode::Access => Op::Access { arg: pat(25) },
            Opcode::Create => Op::Create {
                arg: pat(26),
                name: c(b"new.txt\0"),
            },
            Opcode::Interrupt => Op::Interrupt { arg: pat(27) },
            Opcode::Bmap => Op::Bmap { arg: pat(28) },
            Opcode::Destroy => Op::Destroy,
            Opcode::Ioctl => Op::Ioctl {
                arg: fuse_ioctl_in {
                    in_size: 4,
                    ..pat(29)
                },
                data: &[1, 2, 3, 4],
            },
            Opcode::Poll => Op::Poll { arg: pat(30) },
            Opcode::NotifyReply => Op::NotifyReply {
                arg: fuse_notify_retrieve_in { size: 6, ..pat(31) },
                data: b"retrvd",
            },
            Opcode::BatchForget => Op::BatchForget {
                forgets: Records::new(pod::as_bytes(&FORGETS)).unwrap(),
            },
            Opcode::Fallocate => Op::Fallocate { arg: pat(32) },
            Opcode::Readdirplus => Op::Readdirplus { arg: pat(33) },
            Opcode::Rename2 => Op::Rename2 {
                arg: pat(34),
                old: c(b"a\0"),
                new: c(b"b\0"),
            },
            Opcode::Lseek => Op::Lseek { arg: pat(35) },
            Opcode::CopyFileRange => Op::CopyFileRange { arg: pat(36) },
            Opcode::SetupMapping => Op::SetupMapping { arg: pat(37) },
            Opcode::RemoveMapping => Op::RemoveMapping {
                entries: Records::new(pod::as_bytes(&MAPPINGS)).unwrap(),
            },
            Opcode::Syncfs => Op::Syncfs { arg: pat(38) },
            Opcode::Tmpfile => Op::Tmpfile {
                arg: pat(39),
                name: c(b"tmp\0"),
            },
            Opcode::Statx => Op::Statx { arg: pat(40) },
            Opcode::CopyFileRange64 => Op::CopyFileRange64 { arg: pat(41) },
            Opcode::CuseInit => Op::CuseInit { arg: pat(42) },
            Opcode::Unknown(opcode) => Op::Unknown {
                opcode,
                body: b"\x01\x02\x03",
            },
        }
    }

    fn sample_request(opcode: Opcode, cfg: ParseConfig) -> Request<'static> {
        Request::new(
            0x1000 + 2 * u64::from(u32::from(opcode)),
            77,
            sample(opcode, cfg),
        )
        .with_creds(1000, 100, 4242)
    }

    /// Secctx block (one context, 40 bytes) then supp groups (one gid, 16 bytes).
    fn ext_area() -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(pod::as_bytes(&fuse_ext_header {
            size: 40,
            r#type: 1,
        }));
        v.extend_from_slice(pod::as_bytes(&fuse_secctx {
            size: 4,
            padding: 0,
        }));
        v.extend_from_slice(b"security.selinux\0ctx\0");
        v.resize(40, 0);
        v.extend_from_slice(pod::as_bytes(&fuse_ext_header {
            size: 16,
            r#type: FUSE_EXT_GROUPS,
        }));
        v.extend_from_slice(pod::as_bytes(&fuse_supp_groups { nr_groups: 1 }));
        v.extend_from_slice(&1234u32.to_ne_bytes());
        v
    }

    /// Encodes `req` both ways, parses both back, and checks everything survived and that
    /// the split pieces concatenate to the classic bytes.
    fn round_trip(req: &Request<'_>, cfg: ParseConfig) {
        let opcode = req.opcode();
        let mut buf = vec![0u8; 8192];
        let n = req.encode(&cfg, &mut buf).unwrap();
        let classic = &buf[..n];
        let mut want = req.header;
        want.len = n as u32;
        want.opcode = u32::from(opcode);
        want.total_extlen = (req.extensions.as_bytes().len() / 8) as u16;

        let got = Request::parse(classic, &cfg).unwrap_or_else(|e| panic!("{opcode}: {e}"));
        assert_eq!(got.header, want, "{opcode}");
        assert_eq!(got.op, req.op, "{opcode}");
        assert_eq!(got.extensions, req.extensions, "{opcode}");
        assert_eq!(parse_header(classic), Ok(want));

        let mut in_out = [0u8; 128];
        let mut op_in = [0u8; 128];
        let mut payload = vec![0u8; 8192];
        let sz = req
            .encode_split(&cfg, &mut in_out, &mut op_in, &mut payload)
            .unwrap();
        let fixed = fixed_arg_size(opcode, &cfg);
        let mut joined = Vec::new();
        joined.extend_from_slice(&in_out[..IN_HEADER_SIZE]);
        joined.extend_from_slice(&op_in[..fixed]);
        joined.extend_from_slice(&payload[..sz]);
        assert_eq!(joined, classic, "{opcode}: split pieces != classic bytes");

        let got = Request::parse_split(&in_out, &op_in, &payload[..sz], &cfg)
            .unwrap_or_else(|e| panic!("{opcode} split: {e}"));
        assert_eq!(got.header, want, "{opcode}");
        assert_eq!(got.op, req.op, "{opcode}");
        assert_eq!(got.extensions, req.extensions, "{opcode}");
    }

    #[test]
    fn every_opcode_round_trips_classic_and_split() {
        for cfg in [COMPAT, EXT] {
            for &opcode in Opcode::ALL {
                round_trip(&sample_request(opcode, cfg), cfg);
            }
            round_trip(&sample_request(Opcode::Unknown(7), cfg), cfg);
            round_trip(&sample_request(Opcode::Unknown(9999), cfg), cfg);
        }
    }

    #[test]
    fn extensions_round_trip_and_iterate() {
        let area = ext_area();
        let ext = Extensions::new(&area).unwrap();
        for opcode in [
            Opcode::Mknod,
            Opcode::Mkdir,
            Opcode::Create,
            Opcode::Symlink,
            Opcode::Tmpfile,
        ] {
            for cfg in [COMPAT, EXT] {
                round_trip(&sample_request(opcode, cfg).with_extensions(ext), cfg);
            }
        }
        let blocks: Vec<Extension<'_>> = ext.iter().collect();
        assert_eq!(blocks.len(), 2);
        match blocks[0] {
            Extension::SecCtx { nr_secctx, data } => {
                assert_eq!(nr_secctx, 1);
                assert_eq!(data, &area[8..40]);
            }
            other => panic!("{other:?}"),
        }
        let gids: Vec<u32> = ext.supp_groups().unwrap().iter().collect();
        assert_eq!(gids, [1234]);
        assert_eq!(Extensions::EMPTY.iter().count(), 0);
        assert_eq!(Extensions::EMPTY.supp_groups(), None);
    }

    #[test]
    fn records_iterate_by_value() {
        let forgets = Forgets::new(pod::as_bytes(&FORGETS)).unwrap();
        assert_eq!(forgets.len(), 3);
        assert_eq!(forgets.iter().len(), 3);
        assert_eq!(forgets.iter().collect::<Vec<_>>(), FORGETS);
        assert!(Forgets::new(&[0; 17]).is_none());
        assert!(Forgets::empty().is_empty());
        // Unaligned bytes are fine: records are copied out.
        let mut unaligned = vec![0u8; 1];
        unaligned.extend_from_slice(pod::as_bytes(&FORGETS));
        let forgets = Forgets::new(&unaligned[1..]).unwrap();
        assert_eq!(forgets.iter().nth(2), Some(FORGETS[2]));
    }

    #[test]
    fn fixed_arg_sizes() {
        for op in [
            Opcode::Lookup,
            Opcode::Symlink,
            Opcode::Unlink,
            Opcode::Rmdir,
            Opcode::Removexattr,
            Opcode::NotifyReply,
            Opcode::RemoveMapping,
            Opcode::Readlink,
            Opcode::Statfs,
            Opcode::Destroy,
        ] {
            assert_eq!(fixed_arg_size(op, &EXT), 0, "{op}");
        }
        assert_eq!(fixed_arg_size(Opcode::Write, &COMPAT), 40);
        assert_eq!(fixed_arg_size(Opcode::Setxattr, &COMPAT), 8);
        assert_eq!(fixed_arg_size(Opcode::Setxattr, &EXT), 16);
        assert_eq!(fixed_arg_size(Opcode::Init, &COMPAT), 64);
        assert_eq!(fixed_arg_size(Opcode::Setattr, &COMPAT), 88);
        for &op in Opcode::ALL {
            assert!(fixed_arg_size(op, &EXT) <= FUSE_URING_OP_IN_OUT_SZ);
        }
        let flags = InitFlags::SETXATTR_EXT | InitFlags::ASYNC_READ;
        assert_eq!(ParseConfig::from_init_flags(flags), EXT);
        assert_eq!(ParseConfig::default().with_setxattr_ext(true), EXT);
    }

    #[test]
    fn split_layout_of_name_first_opcodes() {
        let req = Request::new(2, 1, Operation::Lookup { name: c(b"abc\0") });
        let (mut in_out, mut op_in, mut payload) = ([0u8; 128], [0xAAu8; 128], [0u8; 64]);
        let sz = req
            .encode_split(&COMPAT, &mut in_out, &mut op_in, &mut payload)
            .unwrap();
        assert_eq!(&payload[..sz], b"abc\0");
        assert_eq!(op_in, [0xAA; 128], "op_in must stay untouched");
        assert_eq!(parse_header(&in_out).unwrap().len, 44);

        // NOTIFY_REPLY: its struct is in the payload, op_in is empty.
        let req = sample_request(Opcode::NotifyReply, COMPAT);
        let mut payload = [0u8; 64];
        let sz = req
            .encode_split(&COMPAT, &mut in_out, &mut op_in, &mut payload)
            .unwrap();
        assert_eq!(sz, 40 + 6);
        assert_eq!(&payload[40..sz], b"retrvd");
    }

    #[test]
    fn split_len_must_cover_fixed_and_payload() {
        let req = sample_request(Opcode::Write, COMPAT);
        let (mut in_out, mut op_in, mut payload) = ([0u8; 128], [0u8; 128], [0u8; 64]);
        let sz = req
            .encode_split(&COMPAT, &mut in_out, &mut op_in, &mut payload)
            .unwrap();
        assert_eq!(sz, 5);
        let err = Request::parse_split(&in_out, &op_in, &payload[..4], &COMPAT).unwrap_err();
        assert_eq!(
            err,
            ParseError::LenMismatch {
                header: 85,
                actual: 84
            }
        );
        // An op_in area too short for the fixed struct.
        let err = Request::parse_split(&in_out, &op_in[..20], &payload[..sz], &COMPAT);
        assert_eq!(
            err,
            Err(ParseError::TooShort {
                needed: 40,
                got: 20
            })
        );
        assert_eq!(
            Request::parse_split(&in_out[..39], &op_in, &payload[..sz], &COMPAT),
            Err(ParseError::TooShort {
                needed: 40,
                got: 39
            })
        );
    }

    #[test]
    fn split_unknown_opcode_takes_op_in_from_len() {
        let header = fuse_in_header {
            len: 40 + 16 + 3,
            opcode: 4000,
            unique: 8,
            ..fuse_in_header::default()
        };
        let mut in_out = [0u8; 128];
        pod::write_prefix(&mut in_out, &header).unwrap();
        let op_in = [7u8; 128];
        let req = Request::parse_split(&in_out, &op_in, b"xyz", &COMPAT).unwrap();
        assert_eq!(
            req.op,
            Operation::Unknown {
                opcode: 4000,
                body: b"xyz"
            }
        );
        // More than op_in can hold is a length mismatch.
        let mut in_out = [0u8; 128];
        pod::write_prefix(
            &mut in_out,
            &fuse_in_header {
                len: 40 + 129,
                ..header
            },
        )
        .unwrap();
        assert!(matches!(
            Request::parse_split(&in_out, &op_in, b"", &COMPAT),
            Err(ParseError::LenMismatch { header: 169, .. })
        ));
    }

    // ---- malformed classic requests ----

    fn raw(opcode: u32, body: &[u8], total_extlen: u16) -> Vec<u8> {
        let header = fuse_in_header {
            len: (IN_HEADER_SIZE + body.len()) as u32,
            opcode,
            unique: 42,
            nodeid: 1,
            total_extlen,
            ..fuse_in_header::default()
        };
        let mut v = pod::as_bytes(&header).to_vec();
        v.extend_from_slice(body);
        v
    }

    fn parse(bytes: &[u8]) -> Result<Request<'_>, ParseError> {
        Request::parse(bytes, &COMPAT)
    }

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    #[test]
    fn header_errors() {
        let short = ParseError::TooShort { needed: 40, got: 0 };
        assert_eq!(parse(&[]), Err(short));
        assert_eq!(parse_header(&[]), Err(short));
        let bytes = raw(FUSE_GETATTR, &[0; 16], 0);
        assert_eq!(
            parse(&bytes[..39]),
            Err(ParseError::TooShort {
                needed: 40,
                got: 39
            })
        );
        // `len` larger than what was read...
        let mut long = bytes.clone();
        long[0] += 1;
        assert_eq!(
            parse(&long),
            Err(ParseError::LenMismatch {
                header: 57,
                actual: 56
            })
        );
        // ...and smaller.
        let mut extra = bytes.clone();
        extra.push(0);
        assert_eq!(
            parse(&extra),
            Err(ParseError::LenMismatch {
                header: 56,
                actual: 57
            })
        );
        // The header is still readable for the error reply.
        assert_eq!(parse_header(&extra).unwrap().unique, 42);
    }

    #[test]
    fn truncated_fixed_struct() {
        assert_eq!(
            parse(&raw(FUSE_WRITE, &[0; 20], 0)),
            Err(ParseError::TooShort {
                needed: 40,
                got: 20
            })
        );
        assert_eq!(
            parse(&raw(FUSE_GETATTR, &[], 0)),
            Err(ParseError::TooShort { needed: 16, got: 0 })
        );
    }

    #[test]
    fn name_errors() {
        assert_eq!(
            parse(&raw(FUSE_LOOKUP, b"abc", 0)),
            Err(ParseError::MissingNul)
        );
        assert_eq!(
            parse(&raw(FUSE_LOOKUP, b"\0", 0)),
            Err(ParseError::EmptyName)
        );
        assert_eq!(
            parse(&raw(FUSE_LOOKUP, b"", 0)),
            Err(ParseError::MissingNul)
        );

        let mut name = vec![b'a'; 1024];
        name.push(0);
        let ok = raw(FUSE_LOOKUP, &name, 0);
        match parse(&ok).unwrap().op {
            Operation::Lookup { name } => assert_eq!(name.count_bytes(), 1024),
            other => panic!("{other:?}"),
        }
        name.insert(0, b'a');
        let too_long = ParseError::NameTooLong { max: FUSE_NAME_MAX };
        assert_eq!(parse(&raw(FUSE_LOOKUP, &name, 0)), Err(too_long));
        assert_eq!(too_long.errno(), Errno::ENAMETOOLONG);
        name.pop();
        assert_eq!(parse(&raw(FUSE_LOOKUP, &name, 0)), Err(too_long));

        // Symlink targets are paths: longer than a name is fine, up to PATH_MAX - 1.
        let mut target = vec![b't'; SYMLINK_TARGET_MAX];
        target.push(0);
        let body = cat(&[b"l\0", &target]);
        assert!(parse(&raw(FUSE_SYMLINK, &body, 0)).is_ok());
        target.insert(0, b't');
        let body = cat(&[b"l\0", &target]);
        assert_eq!(
            parse(&raw(FUSE_SYMLINK, &body, 0)),
            Err(ParseError::NameTooLong {
                max: SYMLINK_TARGET_MAX
            })
        );
        assert_eq!(
            parse(&raw(FUSE_SYMLINK, b"l\0", 0)),
            Err(ParseError::MissingNul)
        );
    }

    #[test]
    fn rename_missing_second_name() {
        let arg = fuse_rename_in { newdir: 3 };
        let body = cat(&[pod::as_bytes(&arg), b"old\0"]);
        assert_eq!(
            parse(&raw(FUSE_RENAME, &body, 0)),
            Err(ParseError::MissingNul)
        );
        let body = cat(&[pod::as_bytes(&arg), b"old\0new"]);
        assert_eq!(
            parse(&raw(FUSE_RENAME, &body, 0)),
            Err(ParseError::MissingNul)
        );
    }

    #[test]
    fn trailing_bytes() {
        assert_eq!(
            parse(&raw(FUSE_LOOKUP, b"a\0x", 0)),
            Err(ParseError::TrailingBytes { extra: 1 })
        );
        assert_eq!(
            parse(&raw(FUSE_GETATTR, &[0; 19], 0)),
            Err(ParseError::TrailingBytes { extra: 3 })
        );
        assert_eq!(
            parse(&raw(FUSE_READLINK, &[0], 0)),
            Err(ParseError::TrailingBytes { extra: 1 })
        );
        let rename = cat(&[&[0; 8], b"a\0b\0c"]);
        assert_eq!(
            parse(&raw(FUSE_RENAME, &rename, 0)),
            Err(ParseError::TrailingBytes { extra: 1 })
        );
    }

    #[test]
    fn declared_sizes_must_match() {
        let arg = fuse_write_in {
            size: 10,
            ..fuse_write_in::default()
        };
        for (len, actual) in [(9, 9), (11, 11)] {
            let body = cat(&[pod::as_bytes(&arg), &vec![0; len]]);
            assert_eq!(
                parse(&raw(FUSE_WRITE, &body, 0)),
                Err(ParseError::SizeMismatch {
                    declared: 10,
                    actual
                })
            );
        }
        let arg = fuse_setxattr_in {
            size: 4,
            ..fuse_setxattr_in::default()
        };
        let body = cat(&[&pod::as_bytes(&arg)[..8], b"user.a\0", b"abc"]);
        assert_eq!(
            parse(&raw(FUSE_SETXATTR, &body, 0)),
            Err(ParseError::SizeMismatch {
                declared: 4,
                actual: 3
            })
        );
        let forget = fuse_batch_forget_in { count: 3, dummy: 0 };
        let body = cat(&[
            pod::as_bytes(&forget),
            pod::as_bytes(&[FORGETS[0], FORGETS[1]]),
        ]);
        assert_eq!(
            parse(&raw(FUSE_BATCH_FORGET, &body, 0)),
            Err(ParseError::SizeMismatch {
                declared: 48,
                actual: 32
            })
        );
        let huge = fuse_batch_forget_in {
            count: u32::MAX,
            dummy: 0,
        };
        assert!(matches!(
            parse(&raw(FUSE_BATCH_FORGET, pod::as_bytes(&huge), 0)),
            Err(ParseError::SizeMismatch { actual: 0, .. })
        ));
    }

    #[test]
    fn setxattr_layout_follows_config() {
        let arg = fuse_setxattr_in {
            size: 2,
            flags: 1,
            setxattr_flags: 9,
            padding: 0,
        };
        let ext_body = cat(&[pod::as_bytes(&arg), b"user.a\0", b"xy"]);
        let bytes = raw(FUSE_SETXATTR, &ext_body, 0);
        assert_eq!(
            Request::parse(&bytes, &EXT).unwrap().op,
            Operation::Setxattr {
                arg,
                name: c(b"user.a\0"),
                value: b"xy"
            }
        );
        // Read with the 8-byte compat header, the same bytes are garbage.
        assert!(Request::parse(&bytes, &COMPAT).is_err());
        let compat_body = cat(&[&pod::as_bytes(&arg)[..8], b"user.a\0", b"xy"]);
        let bytes = raw(FUSE_SETXATTR, &compat_body, 0);
        let Operation::Setxattr { arg: got, .. } = Request::parse(&bytes, &COMPAT).unwrap().op
        else {
            panic!()
        };
        assert_eq!(
            got,
            fuse_setxattr_in {
                setxattr_flags: 0,
                ..arg
            }
        );
    }

    #[test]
    fn init_sizes() {
        let full: fuse_init_in = pat(3);
        let bytes = pod::as_bytes(&full);
        for len in [8, 16, 64] {
            let Operation::Init { arg } = parse(&raw(FUSE_INIT, &bytes[..len], 0)).unwrap().op
            else {
                panic!()
            };
            assert_eq!(pod::as_bytes(&arg)[..len], bytes[..len]);
            assert!(pod::as_bytes(&arg)[len..].iter().all(|&b| b == 0));
        }
        assert_eq!(
            parse(&raw(FUSE_INIT, &bytes[..7], 0)),
            Err(ParseError::TooShort { needed: 8, got: 7 })
        );
        let longer = cat(&[bytes, &[0xEE; 16]]);
        assert_eq!(
            parse(&raw(FUSE_INIT, &longer, 0)).unwrap().op,
            Operation::Init { arg: full }
        );
    }

    #[test]
    fn extension_errors() {
        let mknod = cat(&[pod::as_bytes(&fuse_mknod_in::default()), b"n\0"]);
        let with_ext = |ext: &[u8]| raw(FUSE_MKNOD, &cat(&[&mknod, ext]), (ext.len() / 8) as u16);
        let block =
            |size: u32, kind: u32| pod::as_bytes(&fuse_ext_header { size, r#type: kind }).to_vec();

        // total_extlen beyond the body.
        assert_eq!(
            parse(&raw(FUSE_GETATTR, &[0; 16], 3)),
            Err(ParseError::ExtensionsTooLong {
                ext_len: 24,
                available: 16
            })
        );
        assert_eq!(
            parse(&with_ext(&block(0, FUSE_EXT_GROUPS))),
            Err(ParseError::BadExtension { offset: 0, size: 0 })
        );
        let mut not_multiple = block(12, FUSE_EXT_GROUPS);
        not_multiple.resize(16, 0);
        assert_eq!(
            parse(&with_ext(&not_multiple)),
            Err(ParseError::BadExtension {
                offset: 0,
                size: 12
            })
        );
        let mut past_end = block(24, 200);
        past_end.resize(16, 0);
        assert_eq!(
            parse(&with_ext(&past_end)),
            Err(ParseError::BadExtension {
                offset: 0,
                size: 24
            })
        );
        // A bad second block is reported at its offset.
        let mut second = block(8, 0);
        second.extend_from_slice(&block(4, 5));
        assert_eq!(
            parse(&with_ext(&second)),
            Err(ParseError::BadExtension { offset: 8, size: 4 })
        );
        // nr_groups larger than its block.
        let mut groups = block(16, FUSE_EXT_GROUPS);
        groups.extend_from_slice(&2u32.to_ne_bytes());
        groups.extend_from_slice(&7u32.to_ne_bytes());
        assert_eq!(
            parse(&with_ext(&groups)),
            Err(ParseError::BadSuppGroups {
                offset: 0,
                nr_groups: 2
            })
        );
        // Unknown kinds and empty secctx blocks are fine.
        let mut fine = block(16, 77);
        fine.extend_from_slice(&[9; 8]);
        fine.extend_from_slice(&block(8, 0));
        let req_bytes = with_ext(&fine);
        let req = parse(&req_bytes).unwrap();
        let blocks: Vec<_> = req.extensions.iter().collect();
        assert_eq!(
            blocks,
            [
                Extension::Unknown {
                    kind: 77,
                    data: &[9; 8]
                },
                Extension::SecCtx {
                    nr_secctx: 0,
                    data: &[]
                }
            ]
        );
        assert_eq!(
            Extensions::new(&[0; 4]),
            Err(ParseError::TooShort { needed: 8, got: 4 })
        );
    }

    #[test]
    fn unknown_opcodes_are_not_errors() {
        for opcode in [7, 19, 54, 4095, u32::MAX] {
            assert_eq!(
                parse(&raw(opcode, b"xyz", 0)).unwrap().op,
                Operation::Unknown {
                    opcode,
                    body: b"xyz"
                }
            );
        }
    }

    #[test]
    fn errors_display_and_map_to_errno() {
        let errors = [
            ParseError::TooShort { needed: 8, got: 1 },
            ParseError::LenMismatch {
                header: 1,
                actual: 2,
            },
            ParseError::MissingNul,
            ParseError::EmptyName,
            ParseError::SizeMismatch {
                declared: 1,
                actual: 2,
            },
            ParseError::TrailingBytes { extra: 1 },
            ParseError::ExtensionsTooLong {
                ext_len: 8,
                available: 0,
            },
            ParseError::BadExtension { offset: 0, size: 0 },
            ParseError::BadSuppGroups {
                offset: 0,
                nr_groups: 9,
            },
        ];
        for e in errors {
            assert_eq!(e.errno(), Errno::EIO, "{e:?}");
            assert!(!e.to_string().is_empty());
        }
        assert!(
            EncodeError::TooLong { len: 1 }
                .to_string()
                .contains("too long")
        );
    }

    #[test]
    fn encode_errors() {
        let req = sample_request(Opcode::Write, COMPAT);
        let mut buf = [0u8; 84];
        assert_eq!(
            req.encode(&COMPAT, &mut buf),
            Err(EncodeError::BufferTooSmall {
                needed: 85,
                got: 84
            })
        );
        let (mut in_out, mut op_in, mut payload) = ([0u8; 128], [0u8; 39], [0u8; 64]);
        assert_eq!(
            req.encode_split(&COMPAT, &mut in_out, &mut op_in, &mut payload),
            Err(EncodeError::BufferTooSmall {
                needed: 40,
                got: 39
            })
        );
        let mut op_in = [0u8; 40];
        assert_eq!(
            req.encode_split(&COMPAT, &mut in_out, &mut op_in, &mut payload[..4]),
            Err(EncodeError::BufferTooSmall { needed: 5, got: 4 })
        );
    }

    // ---- robustness ----

    /// Valid requests in classic form, for the prefix and mutation tests.
    fn corpus() -> Vec<(Vec<u8>, ParseConfig)> {
        let area = ext_area();
        let ext = Extensions::new(&area).unwrap();
        let mut out = Vec::new();
        for (opcode, cfg) in [
            (Opcode::Write, COMPAT),
            (Opcode::Rename2, COMPAT),
            (Opcode::Setxattr, EXT),
            (Opcode::BatchForget, COMPAT),
            (Opcode::NotifyReply, COMPAT),
            (Opcode::RemoveMapping, COMPAT),
            (Opcode::Mknod, COMPAT),
        ] {
            let mut req = sample_request(opcode, cfg);
            if opcode == Opcode::Mknod {
                req = req.with_extensions(ext);
            }
            let mut buf = vec![0u8; 4096];
            let n = req.encode(&cfg, &mut buf).unwrap();
            buf.truncate(n);
            out.push((buf, cfg));
        }
        out
    }

    #[test]
    fn every_prefix_is_handled() {
        for (bytes, cfg) in corpus() {
            for cut in 0..bytes.len() {
                assert!(Request::parse(&bytes[..cut], &cfg).is_err());
                // Also with `len` fixed up, so that the body parsers see the short input.
                if cut >= IN_HEADER_SIZE {
                    let mut prefix = bytes[..cut].to_vec();
                    prefix[..4].copy_from_slice(&(cut as u32).to_ne_bytes());
                    let _ = Request::parse(&prefix, &cfg);
                    let _ = Request::parse_split(&prefix, &[], &prefix[IN_HEADER_SIZE..], &cfg);
                }
            }
            assert!(Request::parse(&bytes, &cfg).is_ok());
        }
    }

    #[test]
    fn every_one_byte_mutation_is_handled() {
        for (bytes, cfg) in corpus() {
            let mut m = bytes.clone();
            for i in 0..m.len() {
                let orig = m[i];
                for v in 0..=255u8 {
                    m[i] = v;
                    for cfg in [cfg, COMPAT, EXT] {
                        if let Ok(req) = Request::parse(&m, &cfg) {
                            // Whatever parses must re-encode to the same bytes, except for
                            // what the model drops on purpose: `fuse_batch_forget_in::dummy` and INIT
                            // bytes past 64. Those must at least re-parse to the same request.
                            let mut again = vec![0u8; m.len() + 64];
                            let n = req.encode(&cfg, &mut again).unwrap();
                            let lossy = matches!(
                                req.op,
                                Operation::Init { .. } | Operation::BatchForget { .. }
                            );
                            if !lossy {
                                assert_eq!(&again[..n], &m[..], "mutation at {i} to {v}");
                            }
                            let back = Request::parse(&again[..n], &cfg).unwrap();
                            assert_eq!((back.op, back.extensions), (req.op, req.extensions));
                            assert_eq!(back.header.unique, req.header.unique);
                        }
                    }
                    // The same bytes, cut at every plausible split point.
                    let body = &m[IN_HEADER_SIZE..];
                    let _ = Request::parse_split(&m, body, &[], &cfg);
                    let _ = Request::parse_split(&m, &[], body, &cfg);
                }
                m[i] = orig;
            }
        }
    }

    #[test]
    fn random_bytes_are_handled() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut buf = [0u8; 256];
        for round in 0..20_000u32 {
            let len = IN_HEADER_SIZE + (next() % 200) as usize;
            for b in &mut buf[..len] {
                *b = next() as u8;
            }
            let opcode = Opcode::ALL[(round as usize) % Opcode::ALL.len()];
            let header = fuse_in_header {
                len: len as u32,
                opcode: u32::from(opcode),
                total_extlen: (next() % 4) as u16,
                ..fuse_in_header::default()
            };
            pod::write_prefix(&mut buf, &header).unwrap();
            for cfg in [COMPAT, EXT] {
                let _ = Request::parse(&buf[..len], &cfg);
                let split = IN_HEADER_SIZE + fixed_arg_size(opcode, &cfg).min(len - IN_HEADER_SIZE);
                let _ = Request::parse_split(
                    &buf[..len],
                    &buf[IN_HEADER_SIZE..split],
                    &buf[split..len],
                    &cfg,
                );
            }
        }
    }
}
