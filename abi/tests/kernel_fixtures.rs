//! Parses requests captured from a real Linux 6.18 kernel (`tests/fixtures/*.bin`, see
//! `tests/fixtures/README.md`) and checks every decoded field against
//! `tests/fixtures/MANIFEST.txt`.
//!
//! The manifest was written by `capture.py` from what it knew when it drove each
//! operation (the name it used, the bytes and offset it wrote, the file handles and
//! nodeids its server handed out, ...), checked there by an independent decoder. So the
//! expected values here never come from the parser under test.
//!
//! Every fixture is also cut into the FUSE-over-io_uring layout (header in a 128-byte
//! `in_out` area, the first `fixed_arg_size` bytes in a 128-byte `op_in` area, the rest as
//! payload) and must parse to the same request with `Request::parse_split`.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::too_many_lines,
    clippy::unnecessary_wraps,
    clippy::trivially_copy_pass_by_ref,
    clippy::case_sensitive_file_extension_comparisons
)]

use core::ffi::CStr;
use std::collections::BTreeSet;

use ringfuse_abi::Opcode;
use ringfuse_abi::request::{Extension, Operation, ParseConfig, Request, fixed_arg_size};

macro_rules! fixtures {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_bytes!(concat!("fixtures/", $name)) as &[u8])),*]
    };
}

/// Every fixture file; `fixture_set_matches_manifest_and_directory` keeps this in sync.
static FIXTURES: &[(&str, &[u8])] = fixtures!(
    "01-INIT.bin",
    "02-GETATTR-root.bin",
    "03-LOOKUP-negative.bin",
    "04-MKDIR.bin",
    "05-CREATE.bin",
    "06-WRITE-small.bin",
    "07-WRITE-128k.bin",
    "08-NOTIFY_REPLY.bin",
    "09-GETATTR-fh.bin",
    "10-FSYNC.bin",
    "11-GETLK.bin",
    "12-SETLK-posix.bin",
    "13-SETLKW-posix.bin",
    "14-SETLKW-flock.bin",
    "15-POLL.bin",
    "16-IOCTL.bin",
    "17-FALLOCATE.bin",
    "18-LSEEK-data.bin",
    "19-FLUSH.bin",
    "20-RELEASE-flock.bin",
    "21-OPEN-rdonly.bin",
    "22-READ-page.bin",
    "23-READ-direct.bin",
    "24-SETATTR-ftruncate.bin",
    "25-SETATTR-chmod.bin",
    "26-SETATTR-chown.bin",
    "27-SETATTR-utimens.bin",
    "28-SYMLINK.bin",
    "29-READLINK.bin",
    "30-MKNOD-fifo.bin",
    "31-MKNOD-chr.bin",
    "32-LINK.bin",
    "33-RENAME.bin",
    "34-RENAME2-noreplace.bin",
    "35-RENAME2-exchange.bin",
    "36-STATFS.bin",
    "37-SETXATTR.bin",
    "38-GETXATTR-size0.bin",
    "39-LISTXATTR.bin",
    "40-REMOVEXATTR.bin",
    "41-ACCESS.bin",
    "42-OPENDIR.bin",
    "43-READDIRPLUS-first.bin",
    "44-FSYNCDIR.bin",
    "45-RELEASEDIR.bin",
    "46-TMPFILE.bin",
    "47-COPY_FILE_RANGE_64.bin",
    "48-COPY_FILE_RANGE.bin",
    "49-STATX.bin",
    "50-OPEN-trunc.bin",
    "51-INTERRUPT.bin",
    "52-UNLINK.bin",
    "53-RMDIR.bin",
    "54-FORGET.bin",
    "55-BATCH_FORGET.bin",
    "56-READDIR-first.bin",
    "57-SETXATTR-ext.bin",
    "58-MKDIR-ext.bin",
    "59-CREATE-ext.bin",
    "60-SYMLINK-ext.bin",
    "61-MKDIR-secctx.bin",
);

static MANIFEST: &str = include_str!("fixtures/MANIFEST.txt");

// ---------------------------------------------------------------------------------------
// manifest values

#[derive(Clone, Debug, PartialEq, Eq)]
enum Val {
    Int(u64),
    Bytes(Vec<u8>),
    List(Vec<Val>),
}

/// `pattern(OFF,N)`: the bytes `(OFF + i) % 251` for `i` in `0..N`.
fn pattern(off: usize, n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| u8::try_from((off + i) % 251).unwrap())
        .collect()
}

/// Parses one manifest value from the front of `s`; returns it and the rest.
fn parse_val(s: &str) -> (Val, &str) {
    if let Some(rest) = s.strip_prefix('"') {
        let end = rest.find('"').expect("unterminated string");
        let (body, rest) = (&rest[..end], &rest[end + 1..]);
        let mut out = Vec::new();
        let mut bytes = body.bytes();
        while let Some(b) = bytes.next() {
            if b == b'\\' {
                assert_eq!(bytes.next(), Some(b'x'), "only \\xNN escapes are used");
                let hex: Vec<u8> = bytes.by_ref().take(2).collect();
                let hex = core::str::from_utf8(&hex).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
            } else {
                out.push(b);
            }
        }
        (Val::Bytes(out), rest)
    } else if let Some(rest) = s.strip_prefix("pattern(") {
        let end = rest.find(')').unwrap();
        let (off, n) = rest[..end].split_once(',').unwrap();
        let data = pattern(off.parse().unwrap(), n.parse().unwrap());
        (Val::Bytes(data), &rest[end + 1..])
    } else if let Some(mut rest) = s.strip_prefix('[') {
        let mut items = Vec::new();
        loop {
            if let Some(r) = rest.strip_prefix(']') {
                return (Val::List(items), r);
            }
            let (v, r) = parse_val(rest);
            items.push(v);
            rest = r.strip_prefix(',').unwrap_or(r);
        }
    } else {
        let end = s.find([',', ']']).unwrap_or(s.len());
        let n = s[..end]
            .parse()
            .unwrap_or_else(|_| panic!("bad number {s:?}"));
        (Val::Int(n), &s[end..])
    }
}

struct Line {
    file: String,
    facts: Vec<(String, Val)>,
}

fn manifest() -> Vec<Line> {
    MANIFEST
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let l = l.split(" # ").next().unwrap();
            let mut tokens = l.split_whitespace();
            let file = tokens.next().unwrap().to_owned();
            let facts: Vec<(String, Val)> = tokens
                .map(|t| {
                    let (k, v) = t.split_once('=').unwrap_or_else(|| panic!("token {t:?}"));
                    let (val, rest) = parse_val(v);
                    assert!(rest.is_empty(), "{file}: trailing {rest:?} in {t:?}");
                    (k.to_owned(), val)
                })
                .collect();
            let keys: BTreeSet<&str> = facts.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(keys.len(), facts.len(), "{file}: a key appears twice");
            Line { file, facts }
        })
        .collect()
}

fn fixture(name: &str) -> &'static [u8] {
    FIXTURES
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("{name} is in MANIFEST.txt but not in FIXTURES"))
        .1
}

fn config(line: &Line) -> ParseConfig {
    let ext = line
        .facts
        .iter()
        .any(|(k, v)| k == "setxattr_ext" && *v == Val::Int(1));
    ParseConfig::default().with_setxattr_ext(ext)
}

// ---------------------------------------------------------------------------------------
// decoded fields, by the manifest's names

fn int(v: impl Into<u64>) -> Option<Val> {
    Some(Val::Int(v.into()))
}

fn bytes(b: &[u8]) -> Option<Val> {
    Some(Val::Bytes(b.to_vec()))
}

fn cstr(c: &CStr) -> Option<Val> {
    bytes(c.to_bytes())
}

macro_rules! struct_fields {
    ($arg:expr, $key:expr; $($field:ident),* $(,)?) => {
        match $key {
            $( stringify!($field) => int($arg.$field), )*
            _ => None,
        }
    };
}

/// The value the parsed request has for manifest key `key`, or `None` if the request has
/// no such field (which fails the test: every fact must be checked).
fn field(req: &Request<'_>, cfg: &ParseConfig, key: &str) -> Option<Val> {
    let h = &req.header;
    match key {
        "opcode" => return int(h.opcode),
        "len" => return int(h.len),
        "nodeid" => return int(h.nodeid),
        "h_unique" => return int(h.unique),
        "h_uid" => return int(h.uid),
        "h_gid" => return int(h.gid),
        "h_pid" => return int(h.pid),
        "h_extlen" => return int(h.total_extlen),
        "h_padding" => return int(h.padding),
        "setxattr_ext" => return int(cfg.setxattr_ext),
        "ext" => {
            let list = req
                .extensions
                .iter()
                .map(|e| match e {
                    Extension::SecCtx { nr_secctx, data } => {
                        Val::List(vec![Val::Int(nr_secctx.into()), Val::Bytes(data.to_vec())])
                    }
                    Extension::SuppGroups(gids) => {
                        let mut payload = u32::try_from(gids.len()).unwrap().to_ne_bytes().to_vec();
                        payload.extend_from_slice(gids.as_bytes());
                        Val::List(vec![Val::Int(32), Val::Bytes(payload)])
                    }
                    Extension::Unknown { kind, data } => {
                        Val::List(vec![Val::Int(kind.into()), Val::Bytes(data.to_vec())])
                    }
                })
                .collect();
            return Some(Val::List(list));
        }
        _ => {}
    }
    let opcode = Opcode::from(h.opcode);
    match (&req.op, key) {
        // Operations without a variable part: their body is exactly the fixed struct.
        (
            Operation::Init { .. }
            | Operation::Open { .. }
            | Operation::Opendir { .. }
            | Operation::Read { .. }
            | Operation::Readdir { .. }
            | Operation::Readdirplus { .. }
            | Operation::Setattr { .. }
            | Operation::Readlink
            | Operation::Statfs
            | Operation::Listxattr { .. },
            "body_len",
        ) => int(u64::try_from(fixed_arg_size(opcode, cfg)).unwrap()),
        // The parser rejects trailing bytes, so "nothing after the names" holds if it parsed.
        (
            Operation::Lookup { .. }
            | Operation::Unlink { .. }
            | Operation::Rmdir { .. }
            | Operation::Removexattr { .. }
            | Operation::Symlink { .. }
            | Operation::Mknod { .. }
            | Operation::Mkdir { .. }
            | Operation::Rename { .. }
            | Operation::Rename2 { .. }
            | Operation::Link { .. }
            | Operation::Getxattr { .. }
            | Operation::Create { .. }
            | Operation::Tmpfile { .. },
            "rest",
        ) => bytes(b""),
        (
            Operation::Lookup { name }
            | Operation::Unlink { name }
            | Operation::Rmdir { name }
            | Operation::Removexattr { name }
            | Operation::Symlink { name, .. }
            | Operation::Mknod { name, .. }
            | Operation::Mkdir { name, .. }
            | Operation::Link { name, .. }
            | Operation::Getxattr { name, .. }
            | Operation::Setxattr { name, .. }
            | Operation::Create { name, .. }
            | Operation::Tmpfile { name, .. },
            "name",
        ) => cstr(name),
        (Operation::Symlink { target, .. }, "target") => cstr(target),
        (Operation::Rename { old, .. } | Operation::Rename2 { old, .. }, "oldname") => cstr(old),
        (Operation::Rename { new, .. } | Operation::Rename2 { new, .. }, "newname") => cstr(new),
        (
            Operation::Write { data, .. }
            | Operation::Ioctl { data, .. }
            | Operation::NotifyReply { data, .. },
            "data",
        ) => bytes(data),
        (Operation::Setxattr { value, .. }, "value") => bytes(value),
        (Operation::Forget { arg }, k) => struct_fields!(arg, k; nlookup),
        (Operation::Getattr { arg }, k) => struct_fields!(arg, k; getattr_flags, dummy, fh),
        (Operation::Setattr { arg }, k) => struct_fields!(arg, k;
            valid, padding, fh, size, lock_owner, atime, mtime, ctime, atimensec, mtimensec,
            ctimensec, mode, unused4, uid, gid, unused5),
        (Operation::Mknod { arg, .. }, k) => struct_fields!(arg, k; mode, rdev, umask, padding),
        (Operation::Mkdir { arg, .. }, k) => struct_fields!(arg, k; mode, umask),
        (Operation::Rename { arg, .. }, k) => struct_fields!(arg, k; newdir),
        (Operation::Rename2 { arg, .. }, k) => struct_fields!(arg, k; newdir, flags, padding),
        (Operation::Link { arg, .. }, k) => struct_fields!(arg, k; oldnodeid),
        (Operation::Open { arg } | Operation::Opendir { arg }, k) => {
            struct_fields!(arg, k; flags, open_flags)
        }
        (
            Operation::Read { arg } | Operation::Readdir { arg } | Operation::Readdirplus { arg },
            k,
        ) => {
            struct_fields!(arg, k; fh, offset, size, read_flags, lock_owner, flags, padding)
        }
        (Operation::Write { arg, .. }, k) => {
            struct_fields!(arg, k; fh, offset, size, write_flags, lock_owner, flags, padding)
        }
        (Operation::Release { arg } | Operation::Releasedir { arg }, k) => {
            struct_fields!(arg, k; fh, flags, release_flags, lock_owner)
        }
        (Operation::Fsync { arg } | Operation::Fsyncdir { arg }, k) => {
            struct_fields!(arg, k; fh, fsync_flags, padding)
        }
        (Operation::Setxattr { arg, .. }, k) => {
            struct_fields!(arg, k; size, flags, setxattr_flags, padding)
        }
        (Operation::Getxattr { arg, .. } | Operation::Listxattr { arg }, k) => {
            struct_fields!(arg, k; size, padding)
        }
        (Operation::Flush { arg }, k) => struct_fields!(arg, k; fh, unused, padding, lock_owner),
        (Operation::Init { arg }, k) => {
            struct_fields!(arg, k; major, minor, max_readahead, flags, flags2)
        }
        (Operation::Getlk { arg } | Operation::Setlk { arg } | Operation::Setlkw { arg }, k) => {
            match k {
                "start" => int(arg.lk.start),
                "end" => int(arg.lk.end),
                "type" => int(arg.lk.r#type),
                "lk_pid" => int(arg.lk.pid),
                _ => struct_fields!(arg, k; fh, owner, lk_flags, padding),
            }
        }
        (Operation::Access { arg }, k) => struct_fields!(arg, k; mask, padding),
        (Operation::Create { arg, .. } | Operation::Tmpfile { arg, .. }, k) => {
            struct_fields!(arg, k; flags, mode, umask, open_flags)
        }
        (Operation::Interrupt { arg }, "int_unique") => int(arg.unique),
        (Operation::Ioctl { arg, .. }, k) => {
            struct_fields!(arg, k; fh, flags, cmd, arg, in_size, out_size)
        }
        (Operation::Poll { arg }, k) => struct_fields!(arg, k; fh, kh, flags, events),
        (Operation::NotifyReply { arg, .. }, k) => {
            struct_fields!(arg, k; dummy1, offset, size, dummy2, dummy3, dummy4)
        }
        (Operation::BatchForget { forgets }, "count") => int(u64::try_from(forgets.len()).unwrap()),
        (Operation::BatchForget { forgets }, "forgets") => Some(Val::List(
            forgets
                .iter()
                .map(|f| Val::List(vec![Val::Int(f.nodeid), Val::Int(f.nlookup)]))
                .collect(),
        )),
        (Operation::Fallocate { arg }, k) => {
            struct_fields!(arg, k; fh, offset, length, mode, padding)
        }
        (Operation::Lseek { arg }, k) => struct_fields!(arg, k; fh, offset, whence, padding),
        (Operation::CopyFileRange { arg } | Operation::CopyFileRange64 { arg }, "copy_len") => {
            int(arg.len)
        }
        (Operation::CopyFileRange { arg } | Operation::CopyFileRange64 { arg }, k) => {
            struct_fields!(arg, k; fh_in, off_in, nodeid_out, fh_out, off_out, flags)
        }
        (Operation::Statx { arg }, k) => {
            struct_fields!(arg, k; getattr_flags, reserved, fh, sx_flags, sx_mask)
        }
        (Operation::Syncfs { arg }, k) => struct_fields!(arg, k; padding),
        _ => None,
    }
}

/// The native (FUSE-over-io_uring) layout of a classic request.
fn split<'a>(raw: &'a [u8], cfg: &ParseConfig) -> ([u8; 128], [u8; 128], &'a [u8]) {
    let mut in_out = [0u8; 128];
    in_out[..40].copy_from_slice(&raw[..40]);
    let opcode = Opcode::from(u32::from_ne_bytes(raw[4..8].try_into().unwrap()));
    let fixed = fixed_arg_size(opcode, cfg);
    // Garbage after the fixed struct: the parser must only look at `fixed` bytes.
    let mut op_in = [0xA5u8; 128];
    op_in[..fixed].copy_from_slice(&raw[40..40 + fixed]);
    (in_out, op_in, &raw[40 + fixed..])
}

// ---------------------------------------------------------------------------------------
// tests

#[test]
fn every_fixture_matches_its_manifest_facts() {
    let lines = manifest();
    assert!(lines.len() >= 50, "manifest has only {} lines", lines.len());
    let mut checked = 0usize;
    let mut failures = Vec::new();
    for line in &lines {
        let raw = fixture(&line.file);
        let cfg = config(line);
        let req = match Request::parse(raw, &cfg) {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{}: parse failed: {e}", line.file));
                continue;
            }
        };
        assert!(
            !matches!(req.op, Operation::Unknown { .. }),
            "{}: opcode {} decoded as Unknown",
            line.file,
            req.header.opcode
        );
        assert_eq!(
            u32::from(req.op.opcode()),
            req.header.opcode,
            "{}",
            line.file
        );
        assert!(line.facts.len() >= 4, "{}: too few facts", line.file);
        for (key, want) in &line.facts {
            let got = field(&req, &cfg, key);
            if got.as_ref() != Some(want) {
                failures.push(format!(
                    "{}: {key}: manifest says {want:?}, parser gives {got:?}",
                    line.file
                ));
            }
            checked += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked > 400, "only {checked} facts checked");
}

#[test]
fn every_fixture_parses_identically_in_the_split_layout() {
    for line in manifest() {
        let raw = fixture(&line.file);
        let cfg = config(&line);
        let classic = Request::parse(raw, &cfg).unwrap();
        let (in_out, op_in, payload) = split(raw, &cfg);
        let native = Request::parse_split(&in_out, &op_in, payload, &cfg)
            .unwrap_or_else(|e| panic!("{}: parse_split failed: {e}", line.file));
        assert_eq!(native, classic, "{}", line.file);
    }
}

#[test]
fn truncated_or_misconfigured_fixtures_are_rejected() {
    for line in manifest() {
        let raw = fixture(&line.file);
        let cfg = config(&line);
        assert!(
            Request::parse(&raw[..raw.len() - 1], &cfg).is_err(),
            "{}: one byte short still parses",
            line.file
        );
        // SETXATTR's fixed struct is 8 or 16 bytes depending on INIT: the wrong choice must
        // not silently produce a request.
        if Opcode::from(line_opcode(raw)) == Opcode::Setxattr {
            let wrong = cfg.with_setxattr_ext(!cfg.setxattr_ext);
            assert!(
                Request::parse(raw, &wrong).is_err(),
                "{}: parses with the wrong SETXATTR_EXT setting",
                line.file
            );
        }
    }
}

fn line_opcode(raw: &[u8]) -> u32 {
    u32::from_ne_bytes(raw[4..8].try_into().unwrap())
}

fn by_suffix(suffix: &str) -> (&'static str, &'static [u8]) {
    let hits: Vec<_> = FIXTURES
        .iter()
        .filter(|(n, _)| n.ends_with(suffix))
        .collect();
    assert_eq!(hits.len(), 1, "fixtures ending in {suffix}");
    *hits[0]
}

/// A few facts spelled out, so that the test cannot pass vacuously if the manifest reader
/// broke.
#[test]
fn spot_checks_independent_of_the_manifest() {
    let cfg = ParseConfig::default();
    let parse = |suffix| Request::parse(by_suffix(suffix).1, &cfg).unwrap();

    let Operation::Init { arg } = parse("-INIT.bin").op else {
        panic!("INIT")
    };
    assert_eq!((arg.major, arg.minor), (7, 45));

    let Operation::Lookup { name } = parse("-LOOKUP-negative.bin").op else {
        panic!("LOOKUP")
    };
    assert_eq!(name.to_bytes(), b"d");

    let r = parse("-WRITE-small.bin");
    let Operation::Write { arg, data } = r.op else {
        panic!("WRITE")
    };
    assert_eq!((arg.offset, arg.size, data), (0, 5, &b"hello"[..]));

    let Operation::Write { arg, data } = parse("-WRITE-128k.bin").op else {
        panic!("WRITE")
    };
    assert_eq!((arg.offset, arg.size), (65536, 131_072));
    assert_eq!(data, pattern(0, 131_072).as_slice());

    let Operation::Symlink { name, target } = parse("-SYMLINK.bin").op else {
        panic!("SYMLINK")
    };
    assert_eq!(
        (name.to_bytes(), target.to_bytes()),
        (&b"l"[..], &b"target/of/link"[..])
    );

    let Operation::Setxattr { arg, name, value } = parse("-SETXATTR.bin").op else {
        panic!("SETXATTR")
    };
    assert_eq!(
        (arg.size, arg.flags, name.to_bytes()),
        (9, 1, &b"user.x"[..])
    );
    assert_eq!(value, b"value\0one");

    let Operation::Rename2 { arg, old, new } = parse("-RENAME2-exchange.bin").op else {
        panic!("RENAME2")
    };
    assert_eq!(arg.flags, 2); // RENAME_EXCHANGE
    assert_eq!((old.to_bytes(), new.to_bytes()), (&b"l"[..], &b"fifo2"[..]));

    let Operation::Tmpfile { name, .. } = parse("-TMPFILE.bin").op else {
        panic!("TMPFILE")
    };
    assert_eq!(name.to_bytes(), b"/");

    let r = parse("-MKDIR-ext.bin");
    assert_eq!(r.header.total_extlen, 3);
    let Operation::Mkdir { name, .. } = r.op else {
        panic!("MKDIR")
    };
    assert_eq!(name.to_bytes(), b"sub");
    let gids: Vec<u32> = r.extensions.supp_groups().unwrap().iter().collect();
    assert_eq!(gids, [4321]);

    let r = parse("-INTERRUPT.bin");
    let Operation::Interrupt { arg } = r.op else {
        panic!("INTERRUPT")
    };
    assert_eq!(r.header.unique, arg.unique | 1);
}

#[test]
fn fixture_set_matches_manifest_and_directory() {
    let table: BTreeSet<&str> = FIXTURES.iter().map(|(n, _)| *n).collect();
    assert_eq!(table.len(), FIXTURES.len(), "duplicate in FIXTURES");
    let lines = manifest();
    let listed: BTreeSet<&str> = lines.iter().map(|l| l.file.as_str()).collect();
    assert_eq!(listed, table, "MANIFEST.txt and FIXTURES differ");
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let on_disk: BTreeSet<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".bin"))
        .collect();
    let on_disk: BTreeSet<&str> = on_disk.iter().map(String::as_str).collect();
    assert_eq!(on_disk, table, "fixtures directory and FIXTURES differ");
    for line in &lines {
        let raw = fixture(&line.file);
        assert!(raw.len() <= 140 * 1024, "{} is too large", line.file);
    }
}
