//! Plain-old-data: the one place where bytes become protocol structs and back.
//!
//! Every FUSE struct is `#[repr(C)]`, has no implicit padding, holds only integers and
//! arrays of integers, and so is valid for every bit pattern. [`Pod`] states that contract;
//! it is implemented only by the `pod_structs!` macro below, which also proves the layout
//! at compile time (size, every field offset, and "no implicit padding" as the sum of the
//! field sizes). The safe helpers [`read_prefix`], [`as_bytes`] and [`write_prefix`] are
//! all the rest of the crate uses.
#![allow(unsafe_code)]

use core::mem::size_of;

/// A type that may be copied from and to any byte slice of its size.
///
/// # Safety
///
/// An implementor must be `#[repr(C)]` (or a primitive integer, or an array of `Pod`), must
/// have no padding bytes, must hold no pointers or references, and every bit pattern of
/// `size_of::<Self>()` bytes must be a valid value. `pod_structs!` checks the first three
/// at compile time; integers satisfy the last.
pub unsafe trait Pod: Copy + 'static {}

macro_rules! impl_pod_primitive {
    ($($t:ty),*) => {$(
        // SAFETY:
        // - a primitive integer has no padding and no pointers;
        // - every bit pattern is a valid integer.
        unsafe impl Pod for $t {}
    )*};
}
impl_pod_primitive!(u8, u16, u32, u64, i16, i32, i64);

// SAFETY:
// - an array has no padding between elements (its stride is the element size), and the
//   element type has none itself (`T: Pod`);
// - every bit pattern of the array is a sequence of valid `T`s.
unsafe impl<T: Pod, const N: usize> Pod for [T; N] {}

/// A value of `T` with every byte zero (valid because `T: Pod`).
#[inline]
pub fn zeroed<T: Pod>() -> T {
    // SAFETY:
    // - `T: Pod` promises the all-zero bit pattern is a valid `T`.
    unsafe { core::mem::zeroed() }
}

/// Copies a `T` off the front of `bytes`, returning it and the rest; `None` if too short.
///
/// Never panics, has no alignment requirement.
#[inline]
pub fn read_prefix<T: Pod>(bytes: &[u8]) -> Option<(T, &[u8])> {
    let (head, rest) = bytes.split_at_checked(size_of::<T>())?;
    // SAFETY:
    // - `head` is exactly `size_of::<T>()` initialized bytes (from `split_at_checked`);
    // - `read_unaligned` has no alignment requirement;
    // - `T: Pod` promises every bit pattern is a valid `T`.
    let value = unsafe { head.as_ptr().cast::<T>().read_unaligned() };
    Some((value, rest))
}

/// Copies a `T` from `bytes`, zero-filling whatever `bytes` lacks and ignoring any excess.
///
/// This is how the kernel treats short "argvar" structs (for example an older
/// `fuse_init_in`). Never panics.
#[inline]
pub fn read_zero_extended<T: Pod>(bytes: &[u8]) -> T {
    let mut value = zeroed::<T>();
    let n = bytes.len().min(size_of::<T>());
    if let (Some(dst), Some(src)) = (as_bytes_mut(&mut value).get_mut(..n), bytes.get(..n)) {
        dst.copy_from_slice(src);
    }
    value
}

/// The bytes of `value`.
#[inline]
pub fn as_bytes<T: Pod>(value: &T) -> &[u8] {
    // SAFETY:
    // - the pointer comes from a reference, so it is non-null, aligned for `u8` and valid for
    //   `size_of::<T>()` bytes for the lifetime of the borrow;
    // - `T: Pod` has no padding, so every one of those bytes is initialized.
    unsafe { core::slice::from_raw_parts(core::ptr::from_ref(value).cast::<u8>(), size_of::<T>()) }
}

/// The bytes of `value`, writable.
#[inline]
fn as_bytes_mut<T: Pod>(value: &mut T) -> &mut [u8] {
    // SAFETY:
    // - the pointer comes from a unique reference, valid and exclusive for the borrow;
    // - `T: Pod` has no padding, so every byte is initialized, and any bytes written leave
    //   a valid `T` (every bit pattern is valid).
    unsafe {
        core::slice::from_raw_parts_mut(core::ptr::from_mut(value).cast::<u8>(), size_of::<T>())
    }
}

/// Copies `value` to the front of `buf`, returning the rest; `None` if `buf` is too short.
#[inline]
pub fn write_prefix<'b, T: Pod>(buf: &'b mut [u8], value: &T) -> Option<&'b mut [u8]> {
    let (head, rest) = buf.split_at_mut_checked(size_of::<T>())?;
    head.copy_from_slice(as_bytes(value));
    Some(rest)
}

/// Declares kernel structs: `#[repr(C)]`, `Copy`, `Debug`, `Eq`, a zeroed `Default`, and a
/// [`Pod`] implementation guarded by compile-time checks of the size, of every field's
/// offset (both as computed by gcc from fuse.h) and of the absence of implicit padding.
macro_rules! pod_structs {
    ($(
        $(#[$meta:meta])*
        pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident : $ty:ty = $off:literal),* $(,)? } = $size:literal;
    )*) => {$(
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub struct $name { $($(#[$fmeta])* pub $field: $ty),* }

        const _: () = assert!(core::mem::size_of::<$name>() == $size);
        const _: () = assert!(0 $(+ core::mem::size_of::<$ty>())* == $size, "implicit padding");
        $(const _: () = assert!(core::mem::offset_of!($name, $field) == $off);)*
        const _: fn() = || {
            fn field_is_pod<T: $crate::pod::Pod>() {}
            $(field_is_pod::<$ty>();)*
        };

        #[allow(unsafe_code)]
        // SAFETY:
        // - `#[repr(C)]` with only `Pod` fields (checked by `field_is_pod` above);
        // - no padding: the field sizes add up to the struct size (asserted above);
        // - no pointers or references: `Pod` fields are integers or arrays of them;
        // - so every bit pattern is a valid value.
        unsafe impl $crate::pod::Pod for $name {}

        impl Default for $name {
            #[inline]
            fn default() -> Self {
                $crate::pod::zeroed()
            }
        }
    )*};
}
pub(crate) use pod_structs;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_prefix_short_is_none() {
        assert_eq!(read_prefix::<u64>(&[1, 2, 3]), None);
        let (v, rest) = read_prefix::<u32>(&[1, 0, 0, 0, 9]).unwrap();
        assert_eq!(v, u32::from_ne_bytes([1, 0, 0, 0]));
        assert_eq!(rest, &[9]);
    }

    #[test]
    fn zero_extended_pads_and_truncates() {
        let v: u64 = read_zero_extended(&[0xff]);
        assert_eq!(v, u64::from_ne_bytes([0xff, 0, 0, 0, 0, 0, 0, 0]));
        let w: u16 = read_zero_extended(&[1, 2, 3, 4]);
        assert_eq!(w, u16::from_ne_bytes([1, 2]));
    }

    #[test]
    fn write_prefix_round_trip() {
        let mut buf = [0u8; 10];
        let rest = write_prefix(&mut buf, &0x0102_0304_u32).unwrap();
        assert_eq!(rest.len(), 6);
        assert_eq!(read_prefix::<u32>(&buf).unwrap().0, 0x0102_0304);
        assert!(write_prefix(&mut [0u8; 3], &1u32).is_none());
    }
}
