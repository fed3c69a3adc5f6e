//! Process identity, for deciding whether the owner of an upload token or an orphaned
//! node is still running.
//!
//! A pid alone is not an identity: pids are reused. Linux records each process's start
//! time (in clock ticks since boot, `/proc/<pid>/stat` field 22); the pair (pid, start
//! time) names one process for the life of the machine. An owner is *alive* when a
//! process with its pid exists and has the same start time.
//!
//! Where the start time cannot be read (no procfs), the answer is the conservative one:
//! the owner is taken to be alive, so nothing is freed that might still be in use; the
//! age limit of upload tokens is the backstop. Owners are only compared within one
//! machine and one pid namespace: processes sharing a catalog across containers with
//! separate pid namespaces are not supported.

use std::fs;

/// One process: its pid and, when known, its start time in clock ticks since boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessId {
    /// The process id.
    pub pid: u32,
    /// Field 22 of `/proc/<pid>/stat`; `None` where it could not be read.
    pub start: Option<u64>,
}

impl ProcessId {
    /// This process.
    pub fn current() -> Self {
        let pid = std::process::id();
        ProcessId {
            pid,
            start: start_time(pid),
        }
    }

    /// Whether this process is still running (see the module docs).
    pub fn is_alive(&self) -> bool {
        match (self.start, start_time(self.pid)) {
            (Some(recorded), Some(now)) => recorded == now,
            // No such process (procfs works, as our own entry proves).
            (_, None) if start_time(std::process::id()).is_some() => false,
            // No procfs, or no recorded start time: cannot tell, so assume alive.
            _ => true,
        }
    }
}

/// The start time of `pid` from `/proc/<pid>/stat`, if the process exists.
fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

/// Field 22 of a `/proc/<pid>/stat` line. Field 2 is the command name in parentheses and
/// may itself contain spaces and parentheses, so fields are counted after the last `)`.
fn parse_start_time(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // After the command name come fields 3, 4, ...; field 22 is the 20th of them.
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_start_time_after_tricky_command_names() {
        let fields: Vec<String> = (3..=52).map(|i| (i * 10).to_string()).collect();
        let line = format!("1234 (a) b (c) {}", fields.join(" "));
        assert_eq!(parse_start_time(&line), Some(220));
        assert_eq!(parse_start_time("1234 (short) R 1 2"), None);
        assert_eq!(parse_start_time("garbage"), None);
    }

    #[test]
    fn this_process_is_alive_and_a_reaped_child_is_not() {
        let me = ProcessId::current();
        assert!(me.is_alive());
        if me.start.is_none() {
            return; // No procfs here: liveness cannot be decided, nothing to check.
        }
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("the test needs `true` on PATH");
        let pid = child.id();
        child.wait().expect("waiting for `true`");
        let dead = ProcessId {
            pid,
            start: me.start,
        };
        assert!(!dead.is_alive());
        // Same pid as us but a different start time: a reused pid, not us.
        let impostor = ProcessId {
            pid: me.pid,
            start: me.start.map(|s| s + 1),
        };
        assert!(!impostor.is_alive());
    }
}
