//! The Linux FUSE kernel protocol, 7.45 (Linux 6.18), for servers: `#![no_std]`, no
//! `alloc`, no dependencies.
//!
//! Layers, bottom up:
//! - [`kernel`]: every struct and constant of `include/uapi/linux/fuse.h` under the
//!   kernel's names, `#[repr(C)]`, with compile-time size and offset checks;
//! - [`pod`]: the one audited place where bytes become structs ([`pod::read_prefix`],
//!   [`pod::as_bytes`]);
//! - [`Opcode`], [`NotifyCode`], [`flags`] and [`Errno`]: the kernel's numbers as Rust types;
//! - [`request`]: total parsing of one request, classic or split (FUSE-over-io_uring), into a
//!   [`request::Request`] that borrows names and data from the buffer;
//! - [`reply`], [`dirent`] and [`notify`]: encoding of replies, directory entries and
//!   notifications into a caller's `&mut [u8]`.
//!
//! Nothing here allocates, and nothing panics on any input: every malformed request is an
//! error value.
#![no_std]
#![deny(missing_docs)]
#![deny(clippy::indexing_slicing)]
#![doc(test(attr(deny(warnings))))]

#[cfg(feature = "std")]
extern crate std;

pub mod pod;

pub mod kernel;

mod errno;
pub mod flags;
mod opcode;

pub mod dirent;
pub mod notify;
pub mod reply;
pub mod request;

pub use errno::Errno;
pub use opcode::{NotifyCode, Opcode};
