//! Process groups: how a task and everything it started are signalled as one.
//!
//! Every task starts in a new process group whose id is the task's pid. Timeout, cancel and
//! crash recovery signal the whole group, so grandchildren are not orphaned.

/// Sends `signal` to process group `pgid`. Returns false if no such group exists.
pub fn signal_group(pgid: i64, signal: i32) -> bool {
    if pgid <= 1 {
        return false;
    }
    // SAFETY: killpg only sends a signal; pgid > 1 never addresses "every process".
    unsafe { libc::killpg(pgid as libc::pid_t, signal) == 0 }
}

/// True if process group `pgid` still has a live member. Zombies do not count: an orphaned
/// grandchild that was killed stays a zombie until its new parent reaps it, which in some
/// containers never happens.
pub fn group_alive(pgid: i64) -> bool {
    if !signal_group(pgid, 0) {
        return false;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return true;
    };
    let mut saw_proc = false;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().filter(|n| n.bytes().all(|b| b.is_ascii_digit())) else { continue };
        saw_proc = true;
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else { continue };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("");
        let pgrp = fields.nth(1).and_then(|f| f.parse::<i64>().ok());
        if pgrp == Some(pgid) && state != "Z" && state != "X" {
            return true;
        }
    }
    // No /proc to read (macOS): trust the signal check.
    !saw_proc
}

/// This machine's host name ("unknown" if it cannot be read): nodes and workers are shown by it.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates on success.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    if ok {
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "unknown".into()
    }
}

pub const SIGTERM: i32 = libc::SIGTERM;
pub const SIGKILL: i32 = libc::SIGKILL;

/// The start time of process `pid` (clock ticks after boot), to tell it from a later process
/// that reuses the pid. Linux only; `None` elsewhere or if the process is gone.
pub fn process_start_time(pid: i64) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after it follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process group led by `pid` is still the one Agent OS started: the leader's
/// start time matches when it is known; when the leader is gone, members may remain.
pub fn is_our_group(pid: i64, proc_start: Option<i64>) -> bool {
    if !group_alive(pid) {
        return false;
    }
    match (proc_start, process_start_time(pid)) {
        (Some(expected), Some(actual)) => expected == actual,
        // Leader gone (or no /proc): the group still exists and carries our pgid.
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_has_a_start_time() {
        let pid = std::process::id() as i64;
        if cfg!(target_os = "linux") {
            assert!(process_start_time(pid).is_some());
        }
        assert!(!signal_group(0, 0));
        assert!(!signal_group(1, 0));
    }
}
