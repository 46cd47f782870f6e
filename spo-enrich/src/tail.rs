//! Following a log file while its writer appends to it, rotates it and truncates it.
//!
//! auditd rotates by renaming: `audit.log` becomes `audit.log.1` (the older ones shift up,
//! the oldest is deleted) and a new `audit.log` is created. Logrotate's `copytruncate` truncates
//! in place instead. [`LogTail`] follows both without losing or repeating a line:
//!
//! - it reads the open file to its end, and only then looks whether the path now names another
//!   file; if so it reads the old one to its end once more (the writer may have appended before
//!   renaming), then every file rotated after it that it never saw (found among `PATH.1`,
//!   `PATH.2`… by device and inode, so two rotations between polls lose nothing), then the new
//!   file from its start;
//! - a file shorter than what was read of it was truncated: it is read again from its start;
//! - a [`Checkpoint`] (device, inode, offset of the end of the last whole line) taken after the
//!   caller has handled the lines lets a restarted reader go on where it stopped, reading first
//!   what was rotated away meanwhile;
//! - only whole lines are returned; a line longer than the limit is cut (and says so); a line
//!   torn by truncation or left without its end in a rotated file is returned as it is, marked.
//!
//! The path must name a regular file: a symlink, FIFO or device put in its place is refused
//! with an error naming it (the log is opened with `O_NOFOLLOW | O_NONBLOCK` and checked), and
//! what was read so far stays valid.

use std::collections::VecDeque;
use std::fs::{File, Metadata};
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// How many rotated siblings (`PATH.1` … `PATH.N`) are searched for a file read before.
const MAX_ROTATED: u32 = 99;
/// Bytes read per system call.
const CHUNK: usize = 64 * 1024;

/// Why a log could not be followed.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    /// Opening, reading or inspecting the log failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// The path names something other than a regular file.
    #[error("{path} is a {kind}, not a regular file: refusing to read it as a log")]
    NotRegular {
        /// The path.
        path: PathBuf,
        /// What it is (symlink, FIFO, directory, device, socket).
        kind: &'static str,
    },
    /// A saved checkpoint could not be read.
    #[error("checkpoint {text:?}: {why}")]
    Checkpoint {
        /// The text.
        text: String,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// Where a reader stopped: the file (device and inode) and the offset after its last whole line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// Device of the file.
    pub dev: u64,
    /// Inode of the file.
    pub ino: u64,
    /// Bytes of it that were returned as whole lines.
    pub offset: u64,
}

impl Checkpoint {
    /// `dev ino offset`, one line, for a state file.
    pub fn to_line(&self) -> String {
        format!("{} {} {}\n", self.dev, self.ino, self.offset)
    }

    /// Reads what [`Checkpoint::to_line`] wrote.
    pub fn parse(text: &str) -> Result<Checkpoint, TailError> {
        let bad = |why| TailError::Checkpoint {
            text: text.chars().take(100).collect(),
            why,
        };
        let mut fields = text.split_ascii_whitespace().map(str::parse::<u64>);
        let (Some(Ok(dev)), Some(Ok(ino)), Some(Ok(offset)), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(bad("expected three numbers: device, inode, offset"));
        };
        Ok(Checkpoint { dev, ino, offset })
    }
}

/// Where a new reader starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// At the start of the file.
    Beginning,
    /// At its end: only lines written from now on.
    End,
    /// Where a previous reader stopped.
    Resume(Checkpoint),
}

/// A line of the log, without its line break.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The text (bytes that are not UTF-8 replaced).
    pub text: String,
    /// Whether the line is not whole: longer than the limit (the rest is dropped), or torn by a
    /// truncation or a rotation.
    pub cut: bool,
}

/// What happened to the log so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TailStats {
    /// Rotations followed.
    pub rotations: u64,
    /// Truncations seen (the file read again from its start).
    pub truncations: u64,
    /// Times a file with unread lines was gone before it could be read (more rotations than
    /// the writer keeps, while the reader was away): lines were lost there.
    pub gaps: u64,
    /// Lines cut at the length limit.
    pub cut_lines: u64,
}

/// An open file of the log, and how far it was read.
#[derive(Debug)]
struct Open {
    file: File,
    dev: u64,
    ino: u64,
    /// Bytes read from it (returned or waiting in `pending`).
    read: u64,
}

impl Open {
    fn same(&self, meta: &Metadata) -> bool {
        meta.dev() == self.dev && meta.ino() == self.ino
    }
}

/// A log file followed across rotation and truncation.
#[derive(Debug)]
pub struct LogTail {
    path: PathBuf,
    max_line: usize,
    /// Rotated files still to be read to their end, oldest first (read before `current`).
    backlog: VecDeque<Open>,
    current: Option<Open>,
    /// Where `current` starts to be read when it is opened (a resumed offset), once.
    start_at: Option<u64>,
    /// The unfinished last line, and whether it was already cut at the limit.
    pending: Vec<u8>,
    pending_cut: bool,
    /// The read buffer.
    buf: Vec<u8>,
    /// The file and offset after the last whole line returned.
    done: Option<Checkpoint>,
    /// The last file read to its end because it was rotated away (device, inode): the files
    /// rotated after it are read before the file the path names now.
    last: Option<(u64, u64)>,
    /// Polls in a row that found the rotated files mid-rotation (names shifting).
    unsettled: u32,
    stats: TailStats,
}

/// Polls a reader waits for a rotation in progress to settle before it gives up on the
/// files between (and counts a gap).
const MAX_UNSETTLED_POLLS: u32 = 200;

/// Where a file rotated away is among the rotated files.
enum Lookup {
    /// Found, with the files rotated after it (oldest first).
    Found(Open, Vec<Open>),
    /// Not among them.
    Missing,
    /// The names kept shifting while looking (a rotation in progress): look again later.
    Unsettled,
}

fn kind_of(meta: &Metadata) -> Option<&'static str> {
    let t = meta.file_type();
    if t.is_file() {
        None
    } else if t.is_symlink() {
        Some("symlink")
    } else if t.is_fifo() {
        Some("FIFO")
    } else if t.is_dir() {
        Some("directory")
    } else if t.is_socket() {
        Some("socket")
    } else {
        Some("device")
    }
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> TailError {
    let path = path.to_owned();
    move |source| TailError::Io { op, path, source }
}

/// Opens a regular file without following a symlink and without blocking on a FIFO.
fn open_regular(path: &Path) -> Result<Option<Open>, TailError> {
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        // O_NOFOLLOW on a symlink fails with ELOOP.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(TailError::NotRegular {
                path: path.to_owned(),
                kind: "symlink",
            });
        }
        Err(e) => return Err(io("opening", path)(e)),
    };
    let meta = file.metadata().map_err(io("inspecting", path))?;
    if let Some(kind) = kind_of(&meta) {
        return Err(TailError::NotRegular {
            path: path.to_owned(),
            kind,
        });
    }
    Ok(Some(Open {
        file,
        dev: meta.dev(),
        ino: meta.ino(),
        read: 0,
    }))
}

fn sibling(path: &Path, k: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{k}"));
    PathBuf::from(s)
}

impl LogTail {
    /// Follows the log at `path` (which need not exist yet), cutting lines longer than
    /// `max_line` bytes.
    pub fn open(path: impl Into<PathBuf>, start: Start, max_line: usize) -> Result<LogTail, TailError> {
        let mut tail = LogTail {
            path: path.into(),
            max_line: max_line.max(1),
            backlog: VecDeque::new(),
            current: None,
            start_at: None,
            pending: Vec::new(),
            pending_cut: false,
            buf: vec![0; CHUNK],
            done: None,
            last: None,
            unsettled: 0,
            stats: TailStats::default(),
        };
        match start {
            // The file is opened now, so lines in it are read even when it is rotated away
            // before the first poll.
            // (What is not a regular file is reported by the first poll.)
            Start::Beginning => tail.current = open_regular(&tail.path).ok().flatten(),
            Start::End => {
                if let Some(mut open) = open_regular(&tail.path)? {
                    let end = open.file.seek(SeekFrom::End(0)).map_err(io("seeking", &tail.path))?;
                    open.read = end;
                    tail.done = Some(Checkpoint {
                        dev: open.dev,
                        ino: open.ino,
                        offset: end,
                    });
                    tail.current = Some(open);
                }
            }
            Start::Resume(at) => tail.resume(at)?,
        }
        Ok(tail)
    }

    fn resume(&mut self, at: Checkpoint) -> Result<(), TailError> {
        self.done = Some(at);
        match std::fs::symlink_metadata(&self.path) {
            Ok(meta) if meta.dev() == at.dev && meta.ino() == at.ino => {
                self.start_at = Some(at.offset);
                return Ok(());
            }
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io("inspecting", &self.path)(e)),
        }
        // Rotated away while we were not reading: find it among the rotated files, read it
        // from the offset, then (in `poll`) the files rotated after it.
        match self.newer_than(at.dev, at.ino)? {
            Lookup::Found(mut old, _) => {
                old.read = at.offset;
                seek_to(&mut old, &self.path, &mut self.stats)?;
                self.backlog.push_back(old);
                self.last = Some((at.dev, at.ino));
            }
            Lookup::Missing | Lookup::Unsettled => self.stats.gaps += 1,
        }
        Ok(())
    }

    /// The rotated file with this identity, opened, and the files rotated after it (oldest
    /// first).
    fn newer_than(&self, dev: u64, ino: u64) -> Result<Lookup, TailError> {
        // Open the candidates first, then check that the names did not shift meanwhile (a
        // rotation in progress renames them one by one, leaving one name missing at a time).
        for attempt in 0..5 {
            if attempt > 0 {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            let mut opened = Vec::new();
            let mut found = None;
            let mut misses = 0;
            for k in 1..=MAX_ROTATED {
                let path = sibling(&self.path, k);
                let Some(open) = open_regular(&path)? else {
                    misses += 1;
                    if misses == 2 {
                        break;
                    }
                    continue;
                };
                misses = 0;
                let hit = open.dev == dev && open.ino == ino;
                opened.push((path, open));
                if hit {
                    found = Some(opened.len() - 1);
                    break;
                }
            }
            let stable = opened
                .iter()
                .all(|(path, open)| std::fs::symlink_metadata(path).is_ok_and(|meta| open.same(&meta)));
            if !stable {
                continue;
            }
            let Some(at) = found else { return Ok(Lookup::Missing) };
            let mut files: Vec<Open> = opened.into_iter().map(|(_, open)| open).collect();
            let old = files.remove(at);
            files.reverse();
            return Ok(Lookup::Found(old, files));
        }
        Ok(Lookup::Unsettled)
    }

    /// What happened to the log so far.
    pub fn stats(&self) -> TailStats {
        self.stats
    }

    /// Where the lines returned so far end, to resume there after a restart (save it after
    /// handling the lines). `None` before any file was seen.
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        self.done
    }

    /// The lines written since the last call, in order. Lines read before a failure are
    /// returned first; the failure (a symlink in the log's place, say) on the next call, when
    /// it persists.
    pub fn poll(&mut self) -> Result<Vec<Line>, TailError> {
        let mut out = Vec::new();
        match self.poll_into(&mut out) {
            Err(e) if out.is_empty() => Err(e),
            _ => Ok(out),
        }
    }

    fn poll_into(&mut self, out: &mut Vec<Line>) -> Result<(), TailError> {
        while let Some(mut old) = self.backlog.pop_front() {
            self.drain(&mut old, out)?;
            self.flush_torn(out);
        }
        loop {
            if self.current.is_none() {
                let Some(mut open) = open_regular(&self.path)? else {
                    return Ok(());
                };
                if let Some(offset) = self.start_at.take() {
                    open.read = offset;
                    seek_to(&mut open, &self.path, &mut self.stats)?;
                }
                // Files rotated between the last one read and this one (opened first, so a
                // rotation meanwhile puts it in the list, where the list is cut).
                if let Some((dev, ino)) = self.last.take() {
                    let lookup = self.newer_than(dev, ino)?;
                    let rotated_kept = || open_regular(&sibling(&self.path, 1)).is_ok_and(|f| f.is_some());
                    // Mid-rotation (names shifting, or the first rotated name not there yet):
                    // nothing is decided; the next poll looks again, up to a bound.
                    let wait = match lookup {
                        Lookup::Unsettled => true,
                        Lookup::Missing => !rotated_kept(),
                        Lookup::Found(..) => false,
                    };
                    if wait && self.unsettled < MAX_UNSETTLED_POLLS {
                        self.unsettled += 1;
                        self.last = Some((dev, ino));
                        return Ok(());
                    }
                    self.unsettled = 0;
                    match lookup {
                        Lookup::Found(_, newer) => {
                            let unread = newer.into_iter().take_while(|f| (f.dev, f.ino) != (open.dev, open.ino));
                            for mut file in unread {
                                self.stats.rotations += 1;
                                self.drain(&mut file, out)?;
                                self.flush_torn(out);
                            }
                        }
                        // Gone from the rotated files while others are kept (or the names
                        // never settled): the writer rotated more often than it keeps files
                        // before we got here, and the files between are lost.
                        Lookup::Unsettled => self.stats.gaps += 1,
                        Lookup::Missing if rotated_kept() => self.stats.gaps += 1,
                        // No rotated files at all: the log is not kept after rotation.
                        Lookup::Missing => {}
                    }
                }
                self.current = Some(open);
            }
            let Some(mut current) = self.current.take() else {
                return Ok(());
            };
            let drained = self.drain(&mut current, out);
            if let Err(e) = drained {
                self.current = Some(current);
                return Err(e);
            }
            let meta = match std::fs::symlink_metadata(&self.path) {
                Ok(meta) => meta,
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    // Renamed, and the new file not created yet: keep reading the old one.
                    self.current = Some(current);
                    return Ok(());
                }
                Err(e) => {
                    self.current = Some(current);
                    return Err(io("inspecting", &self.path)(e));
                }
            };
            if current.same(&meta) {
                self.current = Some(current);
                return Ok(());
            }
            if let Some(kind) = kind_of(&meta) {
                self.current = Some(current);
                return Err(TailError::NotRegular {
                    path: self.path.clone(),
                    kind,
                });
            }
            // Rotated: the old file to its end (the writer may have appended before renaming),
            // then (above) the files rotated after it and the new one.
            self.stats.rotations += 1;
            self.drain(&mut current, out)?;
            self.flush_torn(out);
            self.last = Some((current.dev, current.ino));
        }
    }

    /// Reads `open` to its end, returning whole lines; a file shorter than what was read of it
    /// was truncated and is read again from its start.
    fn drain(&mut self, open: &mut Open, out: &mut Vec<Line>) -> Result<(), TailError> {
        let len = open.file.metadata().map_err(io("inspecting", &self.path))?.len();
        if len < open.read {
            self.stats.truncations += 1;
            self.flush_torn(out);
            open.read = 0;
            open.file.seek(SeekFrom::Start(0)).map_err(io("seeking", &self.path))?;
            self.done = Some(Checkpoint {
                dev: open.dev,
                ino: open.ino,
                offset: 0,
            });
        }
        let mut buf = std::mem::take(&mut self.buf);
        let result = self.read_lines(open, &mut buf, out);
        self.buf = buf;
        result
    }

    fn read_lines(&mut self, open: &mut Open, buf: &mut [u8], out: &mut Vec<Line>) -> Result<(), TailError> {
        loop {
            let n = match open.file.read(buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(io("reading", &self.path)(e)),
            };
            let start = open.read;
            open.read += n as u64;
            let mut from = 0;
            for (i, &b) in buf[..n].iter().enumerate() {
                if b == b'\n' {
                    self.take(&buf[from..i]);
                    out.push(self.finish_line());
                    from = i + 1;
                    self.done = Some(Checkpoint {
                        dev: open.dev,
                        ino: open.ino,
                        offset: start + from as u64,
                    });
                }
            }
            self.take(&buf[from..n]);
        }
    }

    /// Adds bytes to the unfinished line, up to the limit.
    fn take(&mut self, bytes: &[u8]) {
        let room = self.max_line.saturating_sub(self.pending.len());
        if bytes.len() > room {
            if !self.pending_cut {
                self.stats.cut_lines += 1;
            }
            self.pending_cut = true;
        }
        self.pending.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn finish_line(&mut self) -> Line {
        let line = Line {
            text: String::from_utf8_lossy(&self.pending).into_owned(),
            cut: self.pending_cut,
        };
        self.pending.clear();
        self.pending_cut = false;
        line
    }

    /// An unfinished line whose file ended for good (rotated away or truncated).
    fn flush_torn(&mut self, out: &mut Vec<Line>) {
        if !self.pending.is_empty() || self.pending_cut {
            let mut line = self.finish_line();
            line.cut = true;
            out.push(line);
        }
    }
}

/// Positions a resumed file at its offset, or at its start when it is now shorter (truncated).
fn seek_to(open: &mut Open, path: &Path, stats: &mut TailStats) -> Result<(), TailError> {
    let len = open.file.metadata().map_err(io("inspecting", path))?.len();
    if len < open.read {
        stats.truncations += 1;
        open.read = 0;
    }
    open.file
        .seek(SeekFrom::Start(open.read))
        .map_err(io("seeking", path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_read_back() {
        let c = Checkpoint {
            dev: 2049,
            ino: 77,
            offset: 12345,
        };
        assert_eq!(Checkpoint::parse(&c.to_line()).expect("parse"), c);
        for bad in ["", "1 2", "1 2 3 4", "a b c", "1 2 -3"] {
            let e = Checkpoint::parse(bad).expect_err("refused").to_string();
            assert!(e.contains("device, inode, offset"), "{bad:?}: {e}");
        }
    }
}
