//! The JSON enricher's log file: appended to, rotated by size, old files removed by count and
//! by age (SPOD `jsonEnricherOptions`: `auditLogPath`, `auditLogMaxSize` in megabytes,
//! `auditLogMaxBackups`, `auditLogMaxAge` in days).
//!
//! A write that would take the file past its size is preceded by a rotation: the file is
//! renamed to `<stem>-<UTC time>.<ext>` (`audit-2026-12-05T08-00-00.000.log`, the naming of
//! the Go rotation library upstream uses) and a new one is started; then backups beyond the
//! count or older than the age are deleted (only files of exactly that naming in the log's own
//! directory). The log is opened with `O_NOFOLLOW`, created with mode 0600, and must be a
//! regular file: a symlink or FIFO in its place is refused.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::enriched::iso_time;

/// How the log rotates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotatePolicy {
    /// Rotate before a write would take the file past this size.
    pub max_bytes: u64,
    /// Keep at most this many rotated files (all when `None`).
    pub max_backups: Option<u32>,
    /// Remove rotated files older than this (never when `None`).
    pub max_age: Option<Duration>,
}

/// Why the log could not be written.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// The log path names something other than a regular file.
    #[error("{0} is not a regular file: refusing to write the audit log there")]
    NotRegular(PathBuf),
    /// The log path has no file name.
    #[error("{0}: the audit log path must name a file")]
    NoFileName(PathBuf),
}

/// An append-only log rotated by size.
#[derive(Debug)]
pub struct RotatingLog {
    path: PathBuf,
    policy: RotatePolicy,
    file: Option<File>,
    size: u64,
    /// Rotations done.
    pub rotations: u64,
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RotateError {
    let path = path.to_owned();
    move |source| RotateError::Io { op, path, source }
}

impl RotatingLog {
    /// A log at `path` (created on the first write).
    pub fn new(path: impl Into<PathBuf>, policy: RotatePolicy) -> Result<RotatingLog, RotateError> {
        let path = path.into();
        if path.file_name().is_none() {
            return Err(RotateError::NoFileName(path));
        }
        Ok(RotatingLog {
            path,
            policy,
            file: None,
            size: 0,
            rotations: 0,
        })
    }

    fn open(&mut self) -> Result<(), RotateError> {
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&self.path)
            .map_err(|e| {
                // ELOOP: a symlink (O_NOFOLLOW); ENXIO: a FIFO without a reader or a device.
                if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENXIO)) {
                    RotateError::NotRegular(self.path.clone())
                } else {
                    io("opening", &self.path)(e)
                }
            })?;
        let meta = file.metadata().map_err(io("inspecting", &self.path))?;
        if !meta.file_type().is_file() {
            return Err(RotateError::NotRegular(self.path.clone()));
        }
        self.size = meta.size();
        self.file = Some(file);
        Ok(())
    }

    /// Appends `lines` (each gets a line break), rotating first when they would not fit.
    pub fn write_lines(&mut self, lines: &[String], now: SystemTime) -> Result<(), RotateError> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut text = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for line in lines {
            text.push_str(line);
            text.push('\n');
        }
        if self.file.is_none() {
            self.open()?;
        }
        if self.size > 0 && self.size + text.len() as u64 > self.policy.max_bytes {
            self.rotate(now)?;
        }
        let Some(file) = self.file.as_mut() else {
            return Err(RotateError::NotRegular(self.path.clone()));
        };
        file.write_all(text.as_bytes()).map_err(io("writing", &self.path))?;
        self.size += text.len() as u64;
        Ok(())
    }

    /// The name a backup rotated at `now` gets.
    fn backup_name(&self, now: SystemTime) -> PathBuf {
        let ms = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let stamp = iso_time(ms).trim_end_matches('Z').replace(':', "-");
        let (stem, ext) = split_name(&self.path);
        self.path.with_file_name(format!("{stem}-{stamp}{ext}"))
    }

    fn rotate(&mut self, now: SystemTime) -> Result<(), RotateError> {
        self.file = None;
        let mut backup = self.backup_name(now);
        // Two rotations within one millisecond: do not overwrite the first backup.
        let mut n = 1;
        while backup.exists() {
            backup = self.backup_name(now + Duration::from_millis(n));
            n += 1;
        }
        std::fs::rename(&self.path, &backup).map_err(io("rotating", &self.path))?;
        self.rotations += 1;
        self.open()?;
        self.prune(now)
    }

    /// The rotated files of this log, newest first, with their times.
    pub fn backups(&self) -> Result<Vec<(PathBuf, SystemTime)>, RotateError> {
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let (stem, ext) = split_name(&self.path);
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io("listing", dir))? {
            let entry = entry.map_err(io("listing", dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(stamp) = name
                .strip_prefix(&format!("{stem}-"))
                .and_then(|rest| rest.strip_suffix(ext.as_str()))
            else {
                continue;
            };
            if let Some(time) = parse_stamp(stamp) {
                out.push((entry.path(), time));
            }
        }
        out.sort_by_key(|b| std::cmp::Reverse(b.1));
        Ok(out)
    }

    fn prune(&self, now: SystemTime) -> Result<(), RotateError> {
        for (i, (path, time)) in self.backups()?.into_iter().enumerate() {
            let too_many = self.policy.max_backups.is_some_and(|max| i >= max as usize);
            let too_old = self
                .policy
                .max_age
                .is_some_and(|age| now.duration_since(time).is_ok_and(|d| d > age));
            if too_many || too_old {
                std::fs::remove_file(&path).map_err(io("removing", &path))?;
            }
        }
        Ok(())
    }
}

/// `audit.log` -> (`audit`, `.log`); a name without extension has an empty one.
fn split_name(path: &Path) -> (String, String) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match name.rfind('.') {
        Some(i) if i > 0 => (name[..i].to_owned(), name[i..].to_owned()),
        _ => (name, String::new()),
    }
}

/// `2026-12-05T08-00-00.000` -> the time, or `None` when it is not exactly that form.
fn parse_stamp(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 23 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b'-' || b[16] != b'-' || b[19] != b'.'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = &s[r];
        t.bytes().all(|c| c.is_ascii_digit()).then(|| t.parse().ok()).flatten()
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec, ms) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    // Days since the epoch of a civil date (inverse of `iso_time`).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2.rem_euclid(400);
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let ms_total = ((days * 86_400 + h * 3600 + mi * 60 + sec) * 1000 + ms)
        .try_into()
        .ok()?;
    Some(UNIX_EPOCH + Duration::from_millis(ms_total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn stamps_read_back() {
        for ms in [0, 951_782_400_123, 1_796_457_384_359] {
            let stamp = iso_time(ms).trim_end_matches('Z').replace(':', "-");
            assert_eq!(parse_stamp(&stamp), Some(at(ms)), "{stamp}");
        }
        for bad in [
            "",
            "2026-12-05T08-00-00",
            "2026-13-05T08-00-00.000",
            "2026-12-05T08:00:00.000",
            "x026-12-05T08-00-00.000",
        ] {
            assert_eq!(parse_stamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn rotates_by_size_and_keeps_backups_by_count_and_age() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        // Someone else's file of a similar name is never touched.
        std::fs::write(dir.path().join("audit-notes.log"), "keep").expect("write");
        let policy = RotatePolicy {
            max_bytes: 100,
            max_backups: Some(2),
            max_age: Some(Duration::from_secs(3600)),
        };
        let mut log = RotatingLog::new(&path, policy).expect("log");
        let line = "x".repeat(39); // 40 bytes with its line break
        let mut now = 1_796_457_384_000;
        for _ in 0..10 {
            log.write_lines(std::slice::from_ref(&line), at(now)).expect("write");
            now += 1000;
        }
        // 2 lines per file: 10 lines make 4 rotations; 2 backups kept.
        assert_eq!(log.rotations, 4);
        assert_eq!(std::fs::read_to_string(&path).expect("read").lines().count(), 2);
        let backups = log.backups().expect("backups");
        assert_eq!(backups.len(), 2, "{backups:?}");
        assert!(backups[0].1 > backups[1].1);
        assert!(dir.path().join("audit-notes.log").exists());
        // An hour and more later, the next rotation removes backups by age too.
        now += 2 * 3600 * 1000;
        for _ in 0..2 {
            log.write_lines(std::slice::from_ref(&line), at(now)).expect("write");
        }
        let backups = log.backups().expect("backups");
        assert_eq!(
            backups.len(),
            1,
            "only the one rotated now is young enough: {backups:?}"
        );
        // A batch larger than the limit is written whole into a fresh file.
        log.write_lines(&vec![line.clone(); 5], at(now + 5)).expect("write");
        assert_eq!(std::fs::read_to_string(&path).expect("read").lines().count(), 5);
    }

    #[test]
    fn a_symlink_or_fifo_at_the_log_path_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "").expect("write");
        let path = dir.path().join("audit.log");
        std::os::unix::fs::symlink(&target, &path).expect("symlink");
        let policy = RotatePolicy {
            max_bytes: 1 << 20,
            max_backups: None,
            max_age: None,
        };
        let mut log = RotatingLog::new(&path, policy).expect("log");
        let err = log
            .write_lines(&["x".into()], SystemTime::now())
            .expect_err("symlink refused");
        assert!(matches!(err, RotateError::NotRegular(_)), "{err}");
        assert_eq!(std::fs::read_to_string(&target).expect("read"), "");
        std::fs::remove_file(&path).expect("rm");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&path)
                .status()
                .expect("mkfifo")
                .success()
        );
        let err = log
            .write_lines(&["x".into()], SystemTime::now())
            .expect_err("fifo refused");
        assert!(matches!(err, RotateError::NotRegular(_)), "{err}");
        assert!(matches!(RotatingLog::new("/", policy), Err(RotateError::NoFileName(_))));
    }
}
