//! The contents of a regular file: a sparse map of 4 KiB pages.
//!
//! A page that was never written (or was punched out) is a hole: it reads as zeros, takes no
//! memory, and `SEEK_HOLE` finds it. Every byte at or past `size` is zero (truncation zeroes
//! the tail of the last page), so extending a file never exposes old data.

use std::collections::BTreeMap;

/// Page size of the sparse map (and `st_blksize`).
pub(crate) const PAGE: u64 = 4096;
const PAGE_BYTES: usize = PAGE as usize;

type Page = Box<[u8; PAGE_BYTES]>;

fn zero_page() -> Page {
    Box::new([0; PAGE_BYTES])
}

/// The bytes of one regular file.
#[derive(Debug, Default)]
pub(crate) struct FileData {
    pages: BTreeMap<u64, Page>,
    size: u64,
}

/// The part of page `idx` that the byte range `[start, end)` covers, as offsets in the page.
fn in_page(idx: u64, start: u64, end: u64) -> (usize, usize) {
    let base = idx * PAGE;
    let from = start.max(base) - base;
    let to = end.min(base + PAGE) - base;
    (from as usize, to as usize)
}

impl FileData {
    /// The file size.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Bytes this file costs against the filesystem's capacity: the pages it stores
    /// (written, or allocated by `fallocate`, inside its size or past it), as tmpfs
    /// charges. Holes cost nothing, so a sparse file's size can exceed the capacity.
    pub(crate) fn charge(&self) -> u64 {
        self.pages.len() as u64 * PAGE
    }

    /// Pages of `[offset, end)` not stored yet.
    fn missing(&self, offset: u64, end: u64) -> u64 {
        if end <= offset {
            return 0;
        }
        let (first, last) = (offset / PAGE, (end - 1) / PAGE);
        (last - first + 1) - self.pages.range(first..=last).count() as u64
    }

    /// What [`charge`](Self::charge) would be after a write of `[offset, end)` (or an
    /// allocation of it).
    pub(crate) fn charge_if_written(&self, offset: u64, end: u64) -> u64 {
        self.charge() + self.missing(offset, end) * PAGE
    }

    /// What [`charge`](Self::charge) would be after [`set_size`](Self::set_size)`(size)`:
    /// less when it shrinks (the pages past the end go), the same when it grows (a hole).
    pub(crate) fn charge_if_resized(&self, size: u64) -> u64 {
        if size < self.size {
            self.pages.range(..size.div_ceil(PAGE)).count() as u64 * PAGE
        } else {
            self.charge()
        }
    }

    /// 512-byte blocks of memory the pages take (`st_blocks`).
    pub(crate) fn blocks(&self) -> u64 {
        self.pages.len() as u64 * (PAGE / 512)
    }

    /// Copies the bytes at `offset` into `buf`; returns how many (0 at or past the end).
    pub(crate) fn read(&self, offset: u64, buf: &mut [u8]) -> usize {
        if offset >= self.size || buf.is_empty() {
            return 0;
        }
        let n = (self.size - offset).min(buf.len() as u64);
        let end = offset + n;
        let out = &mut buf[..n as usize];
        out.fill(0);
        for (&idx, page) in self.pages.range(offset / PAGE..=(end - 1) / PAGE) {
            let (from, to) = in_page(idx, offset, end);
            let at = (idx * PAGE + from as u64 - offset) as usize;
            out[at..at + (to - from)].copy_from_slice(&page[from..to]);
        }
        n as usize
    }

    /// Writes `data` at `offset`, extending the file if it ends past the end; the gap
    /// between the old end and `offset` stays a hole. The caller checked that
    /// `offset + data.len()` does not overflow.
    pub(crate) fn write(&mut self, offset: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let end = offset + data.len() as u64;
        for idx in offset / PAGE..=(end - 1) / PAGE {
            let (from, to) = in_page(idx, offset, end);
            let at = (idx * PAGE + from as u64 - offset) as usize;
            let page = self.pages.entry(idx).or_insert_with(zero_page);
            page[from..to].copy_from_slice(&data[at..at + (to - from)]);
        }
        self.size = self.size.max(end);
    }

    /// Truncates or extends to `size`. Extending adds a hole; shrinking frees the pages
    /// past the new end (reserved ones too) and zeroes the rest of the last page.
    pub(crate) fn set_size(&mut self, size: u64) {
        if size < self.size {
            let keep = size.div_ceil(PAGE);
            self.pages.split_off(&keep);
            if size % PAGE != 0 {
                if let Some(page) = self.pages.get_mut(&(size / PAGE)) {
                    page[(size % PAGE) as usize..].fill(0);
                }
            }
        }
        self.size = size;
    }

    /// Allocates (zeroed) pages for `[offset, end)`; with `keep_size` the size stays, else
    /// it grows to `end`. The caller checked `end`.
    pub(crate) fn allocate(&mut self, offset: u64, end: u64, keep_size: bool) {
        if end <= offset {
            return;
        }
        for idx in offset / PAGE..=(end - 1) / PAGE {
            self.pages.entry(idx).or_insert_with(zero_page);
        }
        if !keep_size {
            self.size = self.size.max(end);
        }
    }

    /// Zeroes `[offset, end)`, freeing the pages it covers entirely (they become holes).
    pub(crate) fn punch_hole(&mut self, offset: u64, end: u64) {
        if end <= offset {
            return;
        }
        let first = offset / PAGE;
        let last = (end - 1) / PAGE;
        let mut emptied = Vec::new();
        for (&idx, page) in self.pages.range_mut(first..=last) {
            let (from, to) = in_page(idx, offset, end);
            if from == 0 && to == PAGE_BYTES {
                emptied.push(idx);
            } else {
                page[from..to].fill(0);
            }
        }
        for idx in emptied {
            self.pages.remove(&idx);
        }
    }

    /// `SEEK_DATA`: the first offset at or after `offset` inside a page that holds data;
    /// `None` (ENXIO) if there is none before the end of the file.
    pub(crate) fn seek_data(&self, offset: u64) -> Option<u64> {
        if offset >= self.size {
            return None;
        }
        let (&idx, _) = self.pages.range(offset / PAGE..).next()?;
        let at = offset.max(idx * PAGE);
        (at < self.size).then_some(at)
    }

    /// `SEEK_HOLE`: the first offset at or after `offset` in a hole, where the end of the
    /// file counts as one; `None` (ENXIO) if `offset` is at or past the end.
    pub(crate) fn seek_hole(&self, offset: u64) -> Option<u64> {
        if offset >= self.size {
            return None;
        }
        let mut idx = offset / PAGE;
        for (&present, _) in self.pages.range(idx..) {
            if present != idx {
                break;
            }
            idx += 1;
        }
        Some(offset.max(idx * PAGE).min(self.size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(d: &FileData) -> Vec<u8> {
        let mut buf = vec![0xaa; d.size() as usize + 10];
        let n = d.read(0, &mut buf);
        buf.truncate(n);
        buf
    }

    #[test]
    fn write_read_across_pages() {
        let mut d = FileData::default();
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        d.write(100, &data);
        assert_eq!(d.size(), 10_100);
        let all = read_all(&d);
        assert!(all[..100].iter().all(|&b| b == 0));
        assert_eq!(&all[100..], &data[..]);
        let mut small = [0u8; 5];
        assert_eq!(d.read(4094, &mut small), 5);
        assert_eq!(&small, &data[3994..3999]);
        assert_eq!(d.read(10_100, &mut small), 0);
        assert_eq!(d.read(10_098, &mut small), 2);
    }

    #[test]
    fn sparse_write_leaves_hole() {
        let mut d = FileData::default();
        d.write(3 * PAGE + 1, b"x");
        assert_eq!(d.size(), 3 * PAGE + 2);
        assert_eq!(d.blocks(), 8);
        assert_eq!(d.seek_data(0), Some(3 * PAGE), "data starts with its page");
        assert_eq!(d.seek_hole(0), Some(0));
        assert_eq!(d.seek_hole(3 * PAGE), Some(3 * PAGE + 2));
        assert_eq!(d.seek_data(3 * PAGE + 2), None);
    }

    #[test]
    fn shrink_zeroes_tail_and_extend_reads_zero() {
        let mut d = FileData::default();
        d.write(0, &[7; 6000]);
        d.set_size(10);
        d.set_size(6000);
        let all = read_all(&d);
        assert_eq!(&all[..10], &[7; 10]);
        assert!(all[10..].iter().all(|&b| b == 0));
        assert_eq!(d.blocks(), 8, "the second page was freed");
    }

    #[test]
    fn punch_and_allocate() {
        let mut d = FileData::default();
        d.write(0, &[1; 3 * PAGE_BYTES]);
        d.punch_hole(100, 2 * PAGE + 50);
        let all = read_all(&d);
        assert!(all[..100].iter().all(|&b| b == 1));
        assert!(all[100..2 * PAGE_BYTES + 50].iter().all(|&b| b == 0));
        assert!(all[2 * PAGE_BYTES + 50..].iter().all(|&b| b == 1));
        assert_eq!(d.seek_hole(0), Some(PAGE));
        assert_eq!(d.seek_data(PAGE), Some(2 * PAGE));
        d.allocate(0, 5 * PAGE, true);
        assert_eq!(d.size(), 3 * PAGE);
        assert_eq!(d.charge(), 5 * PAGE);
        assert_eq!(d.seek_hole(0), Some(3 * PAGE), "EOF is the only hole left");
        d.set_size(PAGE);
        assert_eq!(d.charge(), PAGE);
        d.allocate(PAGE, 2 * PAGE, false);
        assert_eq!(d.size(), 2 * PAGE);
    }

    #[test]
    fn only_stored_pages_are_charged() {
        let mut d = FileData::default();
        // One byte at 2 GiB + 1: one page, whatever the size.
        assert_eq!(d.charge_if_written((2 << 30) + 1, (2 << 30) + 2), PAGE);
        d.write((2 << 30) + 1, b"x");
        assert_eq!((d.size(), d.charge(), d.blocks()), ((2 << 30) + 2, PAGE, 8));
        // A huge extension is a hole.
        assert_eq!(d.charge_if_resized(999_999_999_999_999), PAGE);
        d.set_size(999_999_999_999_999);
        assert_eq!(d.charge(), PAGE);
        // Writing over a stored page costs nothing more; next to it, one page.
        assert_eq!(d.charge_if_written(2 << 30, (2 << 30) + 10), PAGE);
        assert_eq!(
            d.charge_if_written((2 << 30) + PAGE, (2 << 30) + PAGE + 1),
            2 * PAGE
        );
        // Shrinking below the page frees it.
        assert_eq!(d.charge_if_resized(1 << 30), 0);
    }
}
