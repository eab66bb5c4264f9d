//! io_uring (being written)
#![no_std]
