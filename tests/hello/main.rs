//! The `hello` example, mounted for real and used as a user would: one read-only file
//! `hello.txt` = "Hello, world!\n" in a read-only root.
//!
//! Needs root and `/dev/fuse` (see `tests/common`); runs serially.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, reason = "tests may unwrap (STYLE.md rule 31)")]

#[path = "../common/mod.rs"]
mod common;

use std::os::unix::fs::{FileExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::time::Duration;

use common::{Scratch, Server, can_mount, errno, getdents_names, hello_bin, serial, sh, within};
use rustix::io::Errno;

const CONTENT: &[u8] = b"Hello, world!\n";
const T: Duration = Duration::from_secs(10);

#[test]
fn the_file_its_mode_and_the_listing() {
    let _serial = serial();
    if !can_mount() {
        return;
    }
    let scratch = Scratch::new();
    let server = Server::start(&hello_bin(), &scratch.mnt, &[]);
    let file = scratch.mnt.join("hello.txt");

    let f = file.clone();
    assert_eq!(
        within(T, "read", move || std::fs::read(f)).unwrap(),
        CONTENT
    );
    let m = std::fs::metadata(&file).unwrap();
    assert!(m.is_file());
    assert_eq!(m.mode(), 0o100_444);
    assert_eq!(m.len(), CONTENT.len() as u64);
    assert_eq!(m.nlink(), 1);
    let root = std::fs::metadata(&scratch.mnt).unwrap();
    assert!(root.is_dir());
    assert_eq!(root.mode() & 0o7777, 0o555);

    // Reads at an offset, across and past the end.
    let f = std::fs::File::open(&file).unwrap();
    let mut buf = [0_u8; 64];
    let n = f.read_at(&mut buf, 7).unwrap();
    assert_eq!(&buf[..n], b"world!\n");
    assert_eq!(f.read_at(&mut buf, 14).unwrap(), 0);
    assert_eq!(f.read_at(&mut buf, 1000).unwrap(), 0);
    drop(f);

    assert_eq!(common::names(&scratch.mnt).unwrap(), ["hello.txt"]);
    let out = sh(&scratch.mnt, "ls -a; cat hello.txt; ls -l hello.txt", T);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.starts_with(".\n..\nhello.txt\nHello, world!\n-r--r--r-- 1 "),
        "{stdout}"
    );
    drop(server);
    assert_eq!(common::mounts_under(&scratch.mnt), []);
}

#[test]
fn other_names_and_writes_fail() {
    let _serial = serial();
    if !can_mount() {
        return;
    }
    let scratch = Scratch::new();
    let _server = Server::start(&hello_bin(), &scratch.mnt, &[]);
    let mnt = scratch.mnt.clone();
    let results = within(T, "the failing calls", move || {
        let open = |name: &str, write: bool, read: bool| {
            std::fs::OpenOptions::new()
                .read(read)
                .write(write)
                .open(mnt.join(name))
                .map_err(|e| errno(&e))
                .map(drop)
        };
        vec![
            (
                "stat other",
                common::status(std::fs::metadata(mnt.join("other"))),
            ),
            (
                "stat hello.txt/x",
                common::status(std::fs::metadata(mnt.join("hello.txt/x"))),
            ),
            ("open other", open("other", false, true)),
            ("open O_WRONLY", open("hello.txt", true, false)),
            ("open O_RDWR", open("hello.txt", true, true)),
            (
                "open O_RDONLY|O_TRUNC",
                std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(i32::try_from(rustix::fs::OFlags::TRUNC.bits()).unwrap())
                    .open(mnt.join("hello.txt"))
                    .map_err(|e| errno(&e))
                    .map(drop),
            ),
            (
                "truncate",
                common::status(
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open(mnt.join("hello.txt"))
                        .and_then(|f| f.set_len(0)),
                ),
            ),
            (
                "chmod",
                common::status(std::fs::set_permissions(
                    mnt.join("hello.txt"),
                    std::os::unix::fs::PermissionsExt::from_mode(0o666),
                )),
            ),
            (
                "opendir hello.txt",
                common::status(std::fs::read_dir(mnt.join("hello.txt"))),
            ),
        ]
    });
    let want = [
        Err(Errno::NOENT),
        Err(Errno::NOTDIR),
        Err(Errno::NOENT),
        Err(Errno::ACCESS),
        Err(Errno::ACCESS),
        // O_RDONLY|O_TRUNC: the kernel opens, then truncates with SETATTR: refused.
        Err(Errno::ACCESS),
        Err(Errno::ACCESS),
        Err(Errno::ACCESS),
        Err(Errno::NOTDIR),
    ];
    for ((what, got), want) in results.iter().zip(want) {
        assert_eq!(*got, want, "{what}");
    }
    assert_eq!(
        std::fs::read(scratch.mnt.join("hello.txt")).unwrap(),
        CONTENT
    );
}

/// A directory read one entry per `getdents64` call: each call resumes at the previous
/// entry's READDIR offset.
#[test]
fn readdir_with_a_tiny_buffer() {
    let _serial = serial();
    if !can_mount() {
        return;
    }
    let scratch = Scratch::new();
    let _server = Server::start(&hello_bin(), &scratch.mnt, &[]);
    for buf in [32, 40, 64, 4096] {
        let mnt = scratch.mnt.clone();
        let got = within(T, "getdents64", move || getdents_names(&mnt, buf)).unwrap();
        let want: [&[u8]; 3] = [b".", b"..", b"hello.txt"];
        assert_eq!(got, want, "with a {buf}-byte buffer");
    }
}
