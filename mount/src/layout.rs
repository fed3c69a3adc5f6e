//! Reading a version: finding the extents under a byte range, fetching one extent with
//! its length checked, and checking a layout the store sent before trusting it.

use std::ops::Range;

use bytes::Bytes;

use crate::error::FsError;
use crate::ports::{ContentStore, Extent, FsResult, Layout};

/// Indices of the extents overlapping `[start, end)` (extents are sorted, disjoint).
pub(crate) fn extent_range<K>(layout: &Layout<K>, start: u64, end: u64) -> Range<usize> {
    let first = layout
        .extents
        .partition_point(|e| e.offset.saturating_add(e.len) <= start);
    let last = layout.extents.partition_point(|e| e.offset < end);
    first..last.max(first)
}

/// Rejects layouts that would make reads wrong or panic: unsorted or overlapping extents,
/// empty extents, extents past the size.
pub(crate) fn validate<K>(layout: &Layout<K>) -> FsResult<()> {
    let mut prev_end = 0u64;
    for e in &layout.extents {
        let end = e
            .offset
            .checked_add(e.len)
            .ok_or_else(|| FsError::backend("layout extent overflows"))?;
        if e.len == 0 || e.offset < prev_end || end > layout.size {
            return Err(FsError::backend(format!(
                "malformed layout: extent {}+{} after {prev_end}, size {}",
                e.offset, e.len, layout.size
            )));
        }
        prev_end = end;
    }
    Ok(())
}

/// Fetches one extent's bytes and checks their length.
pub(crate) async fn fetch_extent<C: ContentStore>(
    content: &C,
    extent: &Extent<C::Chunk>,
) -> FsResult<Bytes> {
    let bytes = content.fetch(&extent.chunk).await?;
    if bytes.len() as u64 != extent.len {
        return Err(FsError::backend(format!(
            "chunk at {} has {} bytes, layout says {}",
            extent.offset,
            bytes.len(),
            extent.len
        )));
    }
    Ok(bytes)
}

/// Copies the part of extent `e` (bytes `data`) that overlaps `[start, start+buf.len())`
/// into `buf`.
pub(crate) fn copy_overlap<K>(buf: &mut [u8], start: u64, e: &Extent<K>, data: &[u8]) {
    let end = start + buf.len() as u64;
    let from = e.offset.max(start);
    let to = (e.offset + e.len).min(end);
    if from < to {
        buf[(from - start) as usize..(to - start) as usize]
            .copy_from_slice(&data[(from - e.offset) as usize..(to - e.offset) as usize]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(extents: &[(u64, u64)], size: u64) -> Layout<u64> {
        Layout {
            version: None,
            size,
            extents: extents
                .iter()
                .enumerate()
                .map(|(i, &(offset, len))| Extent {
                    offset,
                    len,
                    chunk: i as u64,
                })
                .collect(),
        }
    }

    #[test]
    fn extent_range_finds_overlaps_across_holes() {
        let l = layout(&[(0, 10), (20, 10), (40, 10)], 60);
        assert_eq!(extent_range(&l, 0, 5), 0..1);
        assert_eq!(extent_range(&l, 10, 20), 1..1, "a hole overlaps nothing");
        assert_eq!(extent_range(&l, 5, 25), 0..2);
        assert_eq!(extent_range(&l, 29, 41), 1..3);
        assert_eq!(extent_range(&l, 50, 60), 3..3);
    }

    #[test]
    fn validate_rejects_what_would_corrupt_reads() {
        assert!(validate(&layout(&[(0, 10), (10, 5)], 15)).is_ok());
        assert!(
            validate(&layout(&[(0, 10), (5, 10)], 20)).is_err(),
            "overlap"
        );
        assert!(
            validate(&layout(&[(10, 10), (0, 5)], 20)).is_err(),
            "unsorted"
        );
        assert!(validate(&layout(&[(0, 10)], 5)).is_err(), "past size");
        assert!(validate(&layout(&[(0, 0)], 5)).is_err(), "empty extent");
        assert!(
            validate(&layout(&[(u64::MAX, 2)], u64::MAX)).is_err(),
            "overflow"
        );
    }
}
