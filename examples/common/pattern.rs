//! The pattern `examples/slowfs` serves without a backing file (byte `i` of the file is
//! `i % 251`), shared with the latency benchmark's fuser server (`bench/src/latency.rs`) so
//! both fill replies at the same cost.

/// Fills `buf` with the file's bytes from `offset` on: the first period computed, the rest
/// copied from it in doubling runs (each run starts at a multiple of 251, where the pattern
/// repeats). A division per byte cost more than everything else the loop did for a READ
/// (54 % of slowfs's CPU at iodepth 64, measured with `perf record`).
pub(crate) fn fill_pattern(buf: &mut [u8], offset: u64) {
    let first = buf.len().min(251);
    let mut v = (offset % 251) as u8;
    for b in &mut buf[..first] {
        *b = v;
        v = if v == 250 { 0 } else { v + 1 };
    }
    let mut done = first;
    while done < buf.len() {
        let n = done.min(buf.len() - done);
        buf.copy_within(..n, done);
        done += n;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn fill_pattern_matches_the_definition() {
        for offset in [0u64, 1, 250, 251, 12_288, (64 << 20) - 5000] {
            for len in [0usize, 1, 250, 251, 252, 4096, 131_072] {
                let mut buf = vec![0xAA; len];
                super::fill_pattern(&mut buf, offset);
                let bad = (0..len).find(|&k| buf[k] != ((offset + k as u64) % 251) as u8);
                assert_eq!(bad, None, "offset {offset}, length {len}");
            }
        }
    }
}
