//! The user's API: what a filesystem is written against. The [`Filesystem`] trait
//! ([`fs`]), its per-call context [`Cx`] ([`cx`]), the typed in-place replies ([`reply`]),
//! and the values they carry: attributes and entries ([`attr`]), open and rename flags
//! ([`open_flags`]). It sits on the loop's [`state`](crate::state) (a `Cx` reaches the
//! ring, the slots and the notification buffers through it) and knows nothing of the loop
//! itself, the session or mounting; the loop is what calls it.

pub(crate) mod attr;
pub(crate) mod cx;
pub(crate) mod fs;
pub(crate) mod open_flags;
pub mod reply;
