//! Directory entries: the payload of READDIR and READDIRPLUS replies.
//!
//! A READDIR reply is a run of records, each a `fuse_dirent` (24 bytes) followed by the
//! name and zero padding up to a multiple of 8 (`FUSE_DIRENT_ALIGN`). READDIRPLUS records
//! are `fuse_direntplus` (a `fuse_entry_out` then a `fuse_dirent`, 152 bytes) + name +
//! padding. The kernel reads records while whole ones remain, and stops at an empty reply.
//!
//! [`DirentWriter`] and [`DirentPlusWriter`] fill a payload buffer (give them exactly the
//! request's `fuse_read_in::size` bytes, or less); [`Dirents`] and [`DirentsPlus`] decode
//! one, for tests and the in-memory transport. Nothing here allocates or panics.
//!
//! # References
//! - `include/uapi/linux/fuse.h` `struct fuse_dirent`, `struct fuse_direntplus`,
//!   `FUSE_DIRENT_SIZE`, `FUSE_DIRENTPLUS_SIZE`
//! - `fs/fuse/readdir.c` `parse_dirfile`, `parse_dirplusfile`

use core::iter::FusedIterator;
use core::mem::size_of;

use crate::kernel::{
    FUSE_NAME_MAX, FUSE_NAME_OFFSET, FUSE_NAME_OFFSET_DIRENTPLUS, fuse_dirent, fuse_dirent_align,
    fuse_direntplus, fuse_entry_out,
};
use crate::pod::{Pod, as_bytes, read_prefix};

/// A directory entry that can't be written, or a malformed record in a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DirentError {
    /// The name is empty (`namelen == 0`; the kernel fails the readdir with EIO).
    EmptyName,
    /// The name is longer than `FUSE_NAME_MAX` (1024) bytes (EIO).
    NameTooLong,
    /// The name contains `/` (EIO) or NUL (which no directory entry can hold).
    InvalidNameByte,
    /// `off == 0`: 0 means "from the start", so the kernel would list the directory again
    /// and again. `off` is the cookie for "resume after this entry" and must be nonzero.
    ZeroOffset,
    /// Decoding only: the reply ends inside a record. (The kernel silently ignores a
    /// trailing partial record; a server never has a reason to send one.)
    Truncated,
}

impl core::fmt::Display for DirentError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            DirentError::EmptyName => "directory entry name is empty",
            DirentError::NameTooLong => "directory entry name is longer than 1024 bytes",
            DirentError::InvalidNameByte => "directory entry name contains '/' or NUL",
            DirentError::ZeroOffset => "directory entry offset is 0 (0 means start)",
            DirentError::Truncated => "reply ends inside a directory entry",
        })
    }
}

impl core::error::Error for DirentError {}

/// `FUSE_DIRENT_SIZE`: the bytes a READDIR record with a `namelen`-byte name takes,
/// padding included.
pub const fn dirent_size(namelen: usize) -> usize {
    fuse_dirent_align(FUSE_NAME_OFFSET + namelen)
}

/// `FUSE_DIRENTPLUS_SIZE`: the bytes a READDIRPLUS record with a `namelen`-byte name takes,
/// padding included.
pub const fn direntplus_size(namelen: usize) -> usize {
    fuse_dirent_align(FUSE_NAME_OFFSET_DIRENTPLUS + namelen)
}

fn check_name(name: &[u8]) -> Result<(), DirentError> {
    if name.is_empty() {
        Err(DirentError::EmptyName)
    } else if name.len() > FUSE_NAME_MAX {
        Err(DirentError::NameTooLong)
    } else if name.iter().any(|&b| b == b'/' || b == 0) {
        Err(DirentError::InvalidNameByte)
    } else {
        Ok(())
    }
}

fn check_entry(off: u64, name: &[u8]) -> Result<(), DirentError> {
    check_name(name)?;
    if off == 0 {
        return Err(DirentError::ZeroOffset);
    }
    Ok(())
}

/// Writes `head` + `name` + zero padding at `buf[len..]`; the new length, or `None` (and
/// nothing written) if the whole padded record does not fit.
fn write_record<H: Pod>(buf: &mut [u8], len: usize, head: &H, name: &[u8]) -> Option<usize> {
    let reclen = fuse_dirent_align(size_of::<H>() + name.len());
    let record = buf.get_mut(len..)?.get_mut(..reclen)?;
    let (head_bytes, tail) = record.split_at_mut_checked(size_of::<H>())?;
    let (name_bytes, padding) = tail.split_at_mut_checked(name.len())?;
    head_bytes.copy_from_slice(as_bytes(head));
    name_bytes.copy_from_slice(name);
    padding.fill(0);
    Some(len + reclen)
}

fn dirent_head(ino: u64, off: u64, kind: u32, name: &[u8]) -> fuse_dirent {
    fuse_dirent {
        ino,
        off,
        // check_name bounds the length by 1024.
        namelen: name.len() as u32,
        r#type: kind,
    }
}

/// Packs `fuse_dirent` records into a READDIR reply payload.
///
/// # Example
/// ```
/// use ringfuse_abi::dirent::{DirentWriter, Dirents};
/// let mut buf = [0u8; 80];
/// let mut w = DirentWriter::new(&mut buf);
/// assert_eq!(w.push(1, 1, 4 /* DT_DIR */, b"."), Ok(true)); // 24 + 1, padded to 32
/// assert_eq!(w.push(5, 2, 8 /* DT_REG */, b"hello.txt"), Ok(true)); // 24 + 9 -> 40
/// assert_eq!(w.push(6, 3, 8, b"no room left"), Ok(false)); // would end at 112
/// assert_eq!(w.len(), 72);
/// let len = w.len();
/// let names: Vec<&[u8]> = Dirents::new(&buf[..len]).map(|r| r.unwrap().1).collect();
/// assert_eq!(names, [&b"."[..], b"hello.txt"]);
/// ```
#[derive(Debug)]
#[doc(alias = "fuse_dirent")]
pub struct DirentWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl<'b> DirentWriter<'b> {
    /// A writer at the start of `buf`; size `buf` to the request's `size` at most.
    #[inline]
    pub fn new(buf: &'b mut [u8]) -> Self {
        Self { buf, len: 0 }
    }

    /// Appends one entry: inode number `ino`, resume cookie `off` (nonzero), `kind` the
    /// `DT_*` type (`mode >> 12`; not checked), and `name`.
    ///
    /// `Ok(false)` when the padded record does not fit: nothing is written and the payload
    /// so far stays valid, so reply with it. `Err` for an invalid entry (checked first,
    /// whether or not it would fit): empty name, longer than 1024 bytes, containing `/` or
    /// NUL, or `off == 0`.
    ///
    /// # Errors
    ///
    /// A [`DirentError`] for an invalid name or `off == 0`; nothing is written.
    pub fn push(
        &mut self,
        ino: u64,
        off: u64,
        kind: u32,
        name: &[u8],
    ) -> Result<bool, DirentError> {
        check_entry(off, name)?;
        let head = dirent_head(ino, off, kind, name);
        Ok(match write_record(self.buf, self.len, &head, name) {
            Some(len) => {
                self.len = len;
                true
            }
            None => false,
        })
    }

    /// Bytes written so far: the reply's payload length.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no entry has been written (an empty reply ends the listing).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The payload written so far.
    #[inline]
    pub fn written(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }

    /// The size of the whole buffer.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }
}

/// Packs `fuse_direntplus` records into a READDIRPLUS reply payload.
///
/// Every entry with a nonzero `entry.nodeid` other than `.` and `..` counts as a lookup
/// once the kernel reads it; its FORGET will follow.
#[derive(Debug)]
#[doc(alias = "fuse_direntplus")]
pub struct DirentPlusWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl<'b> DirentPlusWriter<'b> {
    /// A writer at the start of `buf`; size `buf` to the request's `size` at most.
    #[inline]
    pub fn new(buf: &'b mut [u8]) -> Self {
        Self { buf, len: 0 }
    }

    /// Appends one entry; `dirent.ino` is taken from `entry.attr.ino` (as libfuse does).
    /// Results as for [`DirentWriter::push`].
    ///
    /// # Errors
    ///
    /// A [`DirentError`] for an invalid name or `off == 0`; nothing is written.
    pub fn push(
        &mut self,
        entry: &fuse_entry_out,
        off: u64,
        kind: u32,
        name: &[u8],
    ) -> Result<bool, DirentError> {
        check_entry(off, name)?;
        let head = fuse_direntplus {
            entry_out: *entry,
            dirent: dirent_head(entry.attr.ino, off, kind, name),
        };
        Ok(match write_record(self.buf, self.len, &head, name) {
            Some(len) => {
                self.len = len;
                true
            }
            None => false,
        })
    }

    /// Bytes written so far: the reply's payload length.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no entry has been written.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The payload written so far.
    #[inline]
    pub fn written(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }

    /// The size of the whole buffer.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }
}

/// Splits one record off `rest`: its head, its name and what follows. Checks in the
/// kernel's order (namelen, then whole record present, then the name's bytes), then
/// `off != 0`.
fn next_record<H: Pod>(
    rest: &[u8],
    dirent_of: fn(&H) -> fuse_dirent,
) -> Result<(H, &[u8], &[u8]), DirentError> {
    let (head, after_head) = read_prefix::<H>(rest).ok_or(DirentError::Truncated)?;
    let dirent = dirent_of(&head);
    let namelen = dirent.namelen as usize;
    if namelen == 0 {
        return Err(DirentError::EmptyName);
    }
    if namelen > FUSE_NAME_MAX {
        return Err(DirentError::NameTooLong);
    }
    let reclen = fuse_dirent_align(size_of::<H>() + namelen);
    let next = rest.get(reclen..).ok_or(DirentError::Truncated)?;
    let name = after_head.get(..namelen).ok_or(DirentError::Truncated)?;
    check_entry(dirent.off, name)?;
    Ok((head, name, next))
}

/// Decodes a READDIR reply payload into `(fuse_dirent, name)` pairs.
///
/// Total: on a malformed record it yields one `Err` and then ends (`None` forever). It is
/// stricter than the kernel, which silently drops a trailing partial record and does not
/// check `off` or NUL bytes: here those are [`DirentError::Truncated`],
/// [`DirentError::ZeroOffset`] and [`DirentError::InvalidNameByte`]. Padding bytes are not
/// checked.
#[derive(Clone, Debug)]
pub struct Dirents<'a> {
    rest: &'a [u8],
}

impl<'a> Dirents<'a> {
    /// An iterator over the records of `payload`.
    #[inline]
    pub fn new(payload: &'a [u8]) -> Self {
        Self { rest: payload }
    }
}

impl<'a> Iterator for Dirents<'a> {
    type Item = Result<(fuse_dirent, &'a [u8]), DirentError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        match next_record::<fuse_dirent>(self.rest, |d| *d) {
            Ok((dirent, name, next)) => {
                self.rest = next;
                Some(Ok((dirent, name)))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

impl FusedIterator for Dirents<'_> {}

/// Decodes a READDIRPLUS reply payload into `(fuse_entry_out, fuse_dirent, name)`.
///
/// Same contract as [`Dirents`]: one `Err` on a malformed record, then the end.
#[derive(Clone, Debug)]
pub struct DirentsPlus<'a> {
    rest: &'a [u8],
}

impl<'a> DirentsPlus<'a> {
    /// An iterator over the records of `payload`.
    #[inline]
    pub fn new(payload: &'a [u8]) -> Self {
        Self { rest: payload }
    }
}

impl<'a> Iterator for DirentsPlus<'a> {
    type Item = Result<(fuse_entry_out, fuse_dirent, &'a [u8]), DirentError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        match next_record::<fuse_direntplus>(self.rest, |d| d.dirent) {
            Ok((plus, name, next)) => {
                self.rest = next;
                Some(Ok((plus.entry_out, plus.dirent, name)))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

impl FusedIterator for DirentsPlus<'_> {}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;
    use crate::Opcode;
    use crate::reply::{check_reply, out_header};

    const DT_DIR: u32 = 4;
    const DT_REG: u32 = 8;

    fn names() -> [&'static [u8]; 5] {
        [b".", b"..", b"abcdefgh", b"a-name-of-17-byte", b"x"]
    }

    #[test]
    fn sizes() {
        assert_eq!(dirent_size(1), 32);
        assert_eq!(dirent_size(8), 32);
        assert_eq!(dirent_size(9), 40);
        assert_eq!(dirent_size(1024), 1048);
        assert_eq!(direntplus_size(1), 160);
        assert_eq!(direntplus_size(8), 160);
        assert_eq!(direntplus_size(9), 168);
    }

    #[test]
    fn layout_and_zero_padding() {
        let mut buf = [0xAAu8; 128];
        let mut w = DirentWriter::new(&mut buf);
        assert_eq!(w.push(7, 1, DT_REG, b"abc"), Ok(true));
        assert_eq!(w.len(), 32);
        assert_eq!(w.push(9, 2, DT_DIR, b"abcdefgh"), Ok(true));
        assert_eq!(w.len(), 64);
        assert_eq!(w.written().len(), 64);
        let len = w.len();
        let rec = &buf[..32];
        assert_eq!(u64::from_ne_bytes(rec[0..8].try_into().unwrap()), 7);
        assert_eq!(u64::from_ne_bytes(rec[8..16].try_into().unwrap()), 1);
        assert_eq!(u32::from_ne_bytes(rec[16..20].try_into().unwrap()), 3);
        assert_eq!(u32::from_ne_bytes(rec[20..24].try_into().unwrap()), DT_REG);
        assert_eq!(&rec[24..27], b"abc");
        assert_eq!(&rec[27..32], &[0; 5], "padding is zero");
        assert_eq!(&buf[56..64], b"abcdefgh", "no padding when aligned");
        assert!(buf[len..].iter().all(|&b| b == 0xAA), "nothing past len");
        assert_eq!(
            check_reply(Opcode::Readdir, Some(128), &out_header(2, len), &buf[..len]),
            Ok(())
        );
    }

    #[test]
    fn plus_layout() {
        let mut buf = [0xAAu8; 400];
        let mut entry = fuse_entry_out {
            nodeid: 11,
            generation: 1,
            ..Default::default()
        };
        entry.attr.ino = 1234;
        entry.attr.mode = 0o40_755;
        let mut w = DirentPlusWriter::new(&mut buf);
        assert_eq!(w.push(&entry, 5, DT_DIR, b"dir"), Ok(true));
        assert_eq!(w.len(), 160);
        let len = w.len();
        assert_eq!(&buf[..128], as_bytes(&entry));
        assert_eq!(u64::from_ne_bytes(buf[128..136].try_into().unwrap()), 1234);
        assert_eq!(u64::from_ne_bytes(buf[136..144].try_into().unwrap()), 5);
        assert_eq!(u32::from_ne_bytes(buf[144..148].try_into().unwrap()), 3);
        assert_eq!(
            u32::from_ne_bytes(buf[148..152].try_into().unwrap()),
            DT_DIR
        );
        assert_eq!(&buf[152..155], b"dir");
        assert_eq!(&buf[155..160], &[0; 5]);
        assert_eq!(buf[160], 0xAA);
        let got: Vec<_> = DirentsPlus::new(&buf[..len]).collect();
        assert_eq!(got.len(), 1);
        let (e, d, n) = got[0].unwrap();
        assert_eq!(
            (e, d.ino, d.off, d.r#type, n),
            (entry, 1234, 5, DT_DIR, &b"dir"[..])
        );
        assert_eq!(
            check_reply(
                Opcode::Readdirplus,
                Some(400),
                &out_header(2, len),
                &buf[..len]
            ),
            Ok(())
        );
    }

    #[test]
    fn exact_fill() {
        let total: usize = names().iter().map(|n| dirent_size(n.len())).sum();
        for (size, expect) in [(total, 5), (total - 1, 4), (total + 7, 5)] {
            let mut buf = std::vec![0u8; size];
            let mut w = DirentWriter::new(&mut buf);
            let mut taken = 0;
            for (i, name) in names().iter().enumerate() {
                if w.push(i as u64 + 100, i as u64 + 1, DT_REG, name).unwrap() {
                    taken += 1;
                } else {
                    break;
                }
            }
            assert_eq!(taken, expect, "buffer of {size}");
            let len = w.len();
            let decoded: Vec<_> = Dirents::new(&buf[..len]).map(Result::unwrap).collect();
            assert_eq!(decoded.len(), expect);
            for (i, (d, n)) in decoded.iter().enumerate() {
                assert_eq!(
                    (d.ino, d.off, d.r#type),
                    (i as u64 + 100, i as u64 + 1, DT_REG)
                );
                assert_eq!(*n, names()[i]);
            }
        }
        // The same for plus records.
        let total: usize = names().iter().map(|n| direntplus_size(n.len())).sum();
        for (size, expect) in [(total, 5), (total - 1, 4)] {
            let mut buf = std::vec![0u8; size];
            let mut w = DirentPlusWriter::new(&mut buf);
            let entry = fuse_entry_out::default();
            let taken = names()
                .iter()
                .take_while(|n| w.push(&entry, 1, DT_REG, n).unwrap())
                .count();
            assert_eq!(taken, expect);
            let len = w.len();
            assert_eq!(DirentsPlus::new(&buf[..len]).count(), expect);
        }
    }

    #[test]
    fn not_fitting_leaves_buffer_valid() {
        let mut buf = [0x11u8; 40];
        let mut w = DirentWriter::new(&mut buf);
        assert_eq!(w.push(1, 1, DT_REG, b"a"), Ok(true));
        assert_eq!(w.push(2, 2, DT_REG, b"b"), Ok(false));
        assert_eq!(w.len(), 32);
        assert_eq!(w.capacity(), 40);
        // A smaller entry still fits? No: 8 bytes left, every record is at least 32.
        assert_eq!(w.push(2, 2, DT_REG, b"c"), Ok(false));
        assert!(buf[32..].iter().all(|&b| b == 0x11));
        let mut empty = [0u8; 0];
        let mut w = DirentWriter::new(&mut empty);
        assert_eq!(w.push(1, 1, DT_REG, b"a"), Ok(false));
        assert!(w.is_empty());
    }

    #[test]
    fn invalid_entries_rejected() {
        let mut buf = [0u8; 4096];
        let long = [b'n'; 1025];
        let mut w = DirentWriter::new(&mut buf);
        assert_eq!(w.push(1, 1, 0, b""), Err(DirentError::EmptyName));
        assert_eq!(w.push(1, 1, 0, &long), Err(DirentError::NameTooLong));
        assert_eq!(w.push(1, 1, 0, &long[..1024]), Ok(true));
        assert_eq!(w.push(1, 1, 0, b"a/b"), Err(DirentError::InvalidNameByte));
        assert_eq!(w.push(1, 1, 0, b"a\0b"), Err(DirentError::InvalidNameByte));
        assert_eq!(w.push(1, 0, 0, b"ok"), Err(DirentError::ZeroOffset));
        assert_eq!(w.len(), 1048);
        // Errors win over "does not fit".
        let mut tiny = [0u8; 8];
        let mut w = DirentWriter::new(&mut tiny);
        assert_eq!(w.push(1, 0, 0, b"ok"), Err(DirentError::ZeroOffset));
        let mut p = DirentPlusWriter::new(&mut buf);
        let e = fuse_entry_out::default();
        assert_eq!(p.push(&e, 1, 0, b""), Err(DirentError::EmptyName));
        assert_eq!(p.push(&e, 1, 0, b"/"), Err(DirentError::InvalidNameByte));
        assert_eq!(p.push(&e, 0, 0, b"x"), Err(DirentError::ZeroOffset));
        assert_eq!(p.push(&e, 1, 0, &long), Err(DirentError::NameTooLong));
        assert!(p.is_empty());
    }

    fn sample_payload() -> Vec<u8> {
        let mut buf = std::vec![0u8; 256];
        let mut w = DirentWriter::new(&mut buf);
        for (i, name) in names().iter().enumerate() {
            assert!(w.push(i as u64, i as u64 + 1, DT_REG, name).unwrap());
        }
        let len = w.len();
        buf.truncate(len);
        buf
    }

    fn sample_plus_payload() -> Vec<u8> {
        let mut buf = std::vec![0u8; 1024];
        let mut w = DirentPlusWriter::new(&mut buf);
        let mut e = fuse_entry_out::default();
        for (i, name) in names().iter().enumerate() {
            e.nodeid = i as u64 + 2;
            assert!(w.push(&e, i as u64 + 1, DT_REG, name).unwrap());
        }
        let len = w.len();
        buf.truncate(len);
        buf
    }

    /// Runs a decoder to the end and checks the contract: at most one `Err`, and last.
    fn drain<T>(it: impl Iterator<Item = Result<T, DirentError>>, bytes: usize) -> usize {
        let mut ok = 0;
        let mut seen_err = false;
        for item in it.take(bytes + 2) {
            assert!(!seen_err, "item after an error");
            match item {
                Ok(_) => ok += 1,
                Err(_) => seen_err = true,
            }
        }
        ok
    }

    #[test]
    fn decoder_errors() {
        let good = sample_payload();
        // namelen 0, too long, a '/' in the name, off 0: each ends iteration with an Err.
        let mut bad = good.clone();
        bad[16..20].copy_from_slice(&0u32.to_ne_bytes());
        let mut it = Dirents::new(&bad);
        assert_eq!(it.next(), Some(Err(DirentError::EmptyName)));
        assert_eq!(it.next(), None);
        assert_eq!(it.next(), None);
        bad[16..20].copy_from_slice(&1025u32.to_ne_bytes());
        assert_eq!(
            Dirents::new(&bad).next(),
            Some(Err(DirentError::NameTooLong))
        );
        let mut bad = good.clone();
        bad[24] = b'/';
        assert_eq!(
            Dirents::new(&bad).next(),
            Some(Err(DirentError::InvalidNameByte))
        );
        let mut bad = good.clone();
        bad[8..16].copy_from_slice(&0u64.to_ne_bytes());
        assert_eq!(
            Dirents::new(&bad).next(),
            Some(Err(DirentError::ZeroOffset))
        );
        // A record whose namelen runs past the end.
        let mut bad = good[..32].to_vec();
        bad[16..20].copy_from_slice(&9u32.to_ne_bytes());
        assert_eq!(Dirents::new(&bad).next(), Some(Err(DirentError::Truncated)));
        // The second record is fine; the first error stops iteration.
        let mut it = Dirents::new(&good[..good.len() - 1]);
        assert_eq!(it.by_ref().flatten().count(), 4);
        assert_eq!(it.next(), None);
    }

    #[test]
    fn decoders_total_on_prefixes_and_mutations() {
        let good = sample_payload();
        let boundaries: Vec<usize> = {
            let mut v = std::vec![0];
            for n in names() {
                v.push(v.last().unwrap() + dirent_size(n.len()));
            }
            v
        };
        for cut in 0..=good.len() {
            let ok = drain(Dirents::new(&good[..cut]), cut);
            let whole = boundaries.iter().filter(|&&b| b > 0 && b <= cut).count();
            assert_eq!(ok, whole, "prefix {cut}");
            let errs = Dirents::new(&good[..cut]).filter(Result::is_err).count();
            assert_eq!(
                errs,
                usize::from(!boundaries.contains(&cut)),
                "prefix {cut}"
            );
        }
        let plus = sample_plus_payload();
        for cut in 0..=plus.len() {
            drain(DirentsPlus::new(&plus[..cut]), cut);
            drain(Dirents::new(&plus[..cut]), cut);
        }
        for payload in [&good, &plus] {
            for i in 0..payload.len() {
                for v in [0u8, 1, 7, 8, 0x2f, 0x80, 0xff] {
                    let mut m = payload.clone();
                    m[i] = v;
                    drain(Dirents::new(&m), m.len());
                    drain(DirentsPlus::new(&m), m.len());
                }
            }
        }
        // Pseudo-random garbage.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut buf = [0u8; 600];
        for _ in 0..2000 {
            for b in &mut buf {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            let len = (x % 600) as usize;
            // Keep namelen fields plausible in half the cases, to get past the first check.
            if x & 1 == 0 {
                buf[16..20].copy_from_slice(&((x >> 8) as u32 % 64).to_ne_bytes());
                buf[144..148].copy_from_slice(&((x >> 16) as u32 % 64).to_ne_bytes());
            }
            drain(Dirents::new(&buf[..len]), len);
            drain(DirentsPlus::new(&buf[..len]), len);
        }
    }

    #[test]
    fn round_trip_plus() {
        let plus = sample_plus_payload();
        let got: Vec<_> = DirentsPlus::new(&plus).map(Result::unwrap).collect();
        assert_eq!(got.len(), 5);
        for (i, (e, d, n)) in got.iter().enumerate() {
            assert_eq!(e.nodeid, i as u64 + 2);
            assert_eq!(d.off, i as u64 + 1);
            assert_eq!(*n, names()[i]);
        }
    }
}
