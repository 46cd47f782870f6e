//! Where the kernel's audit records are read: auditd's log while an audit daemon runs, the
//! kernel log (`/dev/kmsg`) otherwise.
//!
//! The kernel hands each record to the audit daemon when one is registered, and prints it to
//! the kernel log only when none is (where printk keeps at most `printk_ratelimit_burst`
//! records per `printk_ratelimit` seconds). [`AuditSources`] opens both, positioned at their
//! end, and reads what arrives: auditd's log through [`LogTail`] (rotation-safe), the kernel
//! log record by record, noticing records that were overwritten before they were read.

use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use crate::tail::{LogTail, Start};

/// The kernel log device.
pub const KERNEL_LOG: &str = "/dev/kmsg";
/// auditd's log as Debian's auditd writes it.
pub const AUDITD_LOG: &str = "/var/log/audit/audit.log";
/// The longest auditd line kept whole (longer ones are cut; audit records are far shorter).
const MAX_LINE: usize = 64 * 1024;

/// The kernel log, read one record per `read`.
#[derive(Debug)]
pub struct KernelLog {
    file: File,
    buf: Vec<u8>,
    /// The sequence number of the last record read.
    last_seq: Option<u64>,
    /// Records overwritten before they could be read (the ring buffer wrapped).
    pub missed: u64,
}

impl KernelLog {
    /// Opens `/dev/kmsg` (or `path`) at its end, non-blocking.
    pub fn open_at_end(path: impl Into<PathBuf>) -> std::io::Result<KernelLog> {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path.into())?;
        file.seek(SeekFrom::End(0))?;
        Ok(KernelLog {
            file,
            buf: vec![0; 8192],
            last_seq: None,
            missed: 0,
        })
    }

    /// The records' messages that arrived since the last call.
    pub fn poll(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            match self.file.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => {
                    let text = String::from_utf8_lossy(&self.buf[..n]);
                    if let Some(seq) = kmsg_sequence(&text) {
                        if let Some(last) = self.last_seq
                            && seq > last + 1
                        {
                            self.missed += seq - last - 1;
                        }
                        self.last_seq = Some(seq);
                    }
                    out.push(text.into_owned());
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // EPIPE: records were overwritten; the next read goes on after them.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => self.missed += 1,
                Err(_) => break,
            }
        }
        out
    }
}

/// The sequence number of a `/dev/kmsg` record (`prio,seq,usec,flags;message`).
pub fn kmsg_sequence(record: &str) -> Option<u64> {
    let (head, _) = record.split_once(';')?;
    head.split(',').nth(1)?.parse().ok()
}

/// The kernel log and auditd's log, from where they ended when opened.
#[derive(Debug)]
pub struct AuditSources {
    kmsg: Option<KernelLog>,
    auditd: Option<LogTail>,
    /// Why a source could not be opened.
    pub unavailable: Vec<String>,
}

impl AuditSources {
    /// Opens the kernel log and auditd's log (when it exists) at their current end.
    pub fn open_at_end() -> AuditSources {
        let mut unavailable = Vec::new();
        let kmsg = KernelLog::open_at_end(KERNEL_LOG)
            .map_err(|e| unavailable.push(format!("{KERNEL_LOG}: {e}")))
            .ok();
        let auditd = std::path::Path::new(AUDITD_LOG)
            .exists()
            .then(|| {
                LogTail::open(AUDITD_LOG, Start::End, MAX_LINE)
                    .map_err(|e| unavailable.push(e.to_string()))
                    .ok()
            })
            .flatten();
        AuditSources {
            kmsg,
            auditd,
            unavailable,
        }
    }

    /// Whether records come from the kernel log only (rate limited by printk), not auditd.
    pub fn kernel_log_only(&self) -> bool {
        self.kmsg.is_some() && self.auditd.is_none()
    }

    /// Whether any source can be read.
    pub fn readable(&self) -> bool {
        self.kmsg.is_some() || self.auditd.is_some()
    }

    /// Kernel-log records overwritten before they were read.
    pub fn missed(&self) -> u64 {
        self.kmsg.as_ref().map_or(0, |k| k.missed)
    }

    /// The lines that arrived since the last call, from both sources. A failure of auditd's
    /// log (a symlink put in its place, say) is remembered in `unavailable` once.
    pub fn poll(&mut self) -> Vec<String> {
        let mut lines = self.kmsg.as_mut().map(KernelLog::poll).unwrap_or_default();
        if let Some(tail) = &mut self.auditd {
            match tail.poll() {
                Ok(read) => lines.extend(read.into_iter().map(|l| l.text)),
                Err(e) => {
                    let why = e.to_string();
                    if !self.unavailable.contains(&why) {
                        self.unavailable.push(why);
                    }
                }
            }
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kmsg_sequence_numbers() {
        assert_eq!(kmsg_sequence("5,1625,10772590099,-;audit: type=1326 ..."), Some(1625));
        assert_eq!(kmsg_sequence("6,7,0,c,more;x"), Some(7));
        assert_eq!(kmsg_sequence("no header"), None);
        assert_eq!(kmsg_sequence("5,x,1,-;m"), None);
    }
}
