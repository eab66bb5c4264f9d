//! ringfuse: Linux FUSE filesystems served by one io_uring event loop per CPU.
//!
//! This crate is being built up issue by issue; today it re-exports the protocol crate
//! ([`abi`]) and the io_uring crate ([`ring`]) that the runtime stands on.
#![no_std]

pub use ringfuse_abi as abi;
pub use ringfuse_ring as ring;

pub mod mount;
mod sys;
