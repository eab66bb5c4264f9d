//! Arbitrary bytes into every decoder a server or a test harness runs on reply-shaped data:
//! classic reply framing and the kernel-rules checker, directory listings, notifications.
//! None of them may panic, and the checker must agree with the framing parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringfuse_abi::Opcode;
use ringfuse_abi::dirent::{Dirents, DirentsPlus};
use ringfuse_abi::notify::parse_notification;
use ringfuse_abi::reply::{check_reply, parse_reply};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, bytes)) = data.split_first() else { return };
    if let Ok((header, payload)) = parse_reply(bytes) {
        let op = Opcode::ALL[usize::from(sel) % Opcode::ALL.len()];
        let hint = u32::from(sel) * 97;
        let _ = check_reply(op, Some(hint), &header, payload);
        let _ = check_reply(op, None, &header, payload);
        assert_eq!(header.len as usize, bytes.len());
    }
    for item in Dirents::new(bytes) {
        if item.is_err() {
            break;
        }
    }
    for item in DirentsPlus::new(bytes) {
        if item.is_err() {
            break;
        }
    }
    let _ = parse_notification(bytes);
});
