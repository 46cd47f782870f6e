//! The writer against real files, links, FIFOs and device nodes. Device nodes are made in a
//! temporary directory (`mknod`, root only): no test ever writes to the machine's own `/dev`.

use std::fs;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;

use spo_hostio::{HostIoError, WritePolicy, Written, write_file};

const CLI: WritePolicy = WritePolicy::cli(0o644);
const NODE: WritePolicy = WritePolicy::owned_dir(0o600);

fn is_root() -> bool {
    fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// Regular files the directory holds, temporary files included.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_new_file_is_created_with_the_default_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("out.yaml");
    assert_eq!(write_file(&path, b"one", &CLI).expect("write"), Written::Created);
    assert_eq!(fs::read(&path).expect("read"), b"one");
    assert_eq!(fs::metadata(&path).expect("meta").permissions().mode() & 0o7777, 0o644);
    assert_eq!(entries(dir.path()), ["out.yaml"]);
}

#[test]
fn a_replaced_file_keeps_its_mode_and_owner() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("out.json");
    fs::write(&path, b"old content that is longer").expect("seed");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).expect("chmod");
    if is_root() {
        std::os::unix::fs::chown(&path, Some(65534), Some(65534)).expect("chown");
    }
    let before = fs::metadata(&path).expect("meta");
    assert_eq!(write_file(&path, b"new", &CLI).expect("write"), Written::Replaced);
    let after = fs::metadata(&path).expect("meta");
    assert_eq!(fs::read(&path).expect("read"), b"new");
    assert_ne!(before.ino(), after.ino(), "replaced, not rewritten in place");
    assert_eq!(after.mode() & 0o7777, 0o640);
    assert_eq!((after.uid(), after.gid()), (before.uid(), before.gid()));
    assert_eq!(entries(dir.path()), ["out.json"], "no temporary file left");
}

#[test]
fn the_node_policy_sets_the_exact_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("p.json");
    fs::write(&path, b"x").expect("seed");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).expect("chmod");
    write_file(&path, b"y", &NODE).expect("write");
    assert_eq!(fs::metadata(&path).expect("meta").mode() & 0o7777, 0o600);
}

#[test]
fn a_symbolic_link_is_written_through_and_stays_a_link() {
    let dir = tempfile::tempdir().expect("tempdir");
    let real = dir.path().join("real.yaml");
    let link = dir.path().join("link.yaml");
    fs::write(&real, b"old").expect("seed");
    symlink("real.yaml", &link).expect("symlink");
    assert_eq!(write_file(&link, b"new", &CLI).expect("write"), Written::Replaced);
    assert!(fs::symlink_metadata(&link).expect("lstat").file_type().is_symlink());
    assert_eq!(fs::read(&real).expect("read"), b"new");
    assert_eq!(entries(dir.path()), ["link.yaml", "real.yaml"]);
}

#[test]
fn the_node_policy_replaces_a_link_without_following_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outside = tempfile::tempdir().expect("tempdir");
    let victim = outside.path().join("victim");
    fs::write(&victim, b"keep me").expect("seed");
    let link = dir.path().join("p.json");
    symlink(&victim, &link).expect("symlink");
    write_file(&link, b"profile", &NODE).expect("write");
    assert_eq!(fs::read(&victim).expect("read"), b"keep me");
    assert!(fs::symlink_metadata(&link).expect("lstat").file_type().is_file());
    assert_eq!(fs::read(&link).expect("read"), b"profile");
}

#[test]
fn a_link_to_nothing_and_a_directory_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("dangling");
    symlink("missing", &link).expect("symlink");
    let err = write_file(&link, b"x", &CLI).expect_err("dangling link");
    assert!(err.to_string().contains("symbolic link to nothing"), "{err}");
    assert!(!dir.path().join("missing").exists());
    let err = write_file(dir.path(), b"x", &CLI).expect_err("directory");
    assert!(matches!(err, HostIoError::Refused { .. }), "{err:?}");
    assert!(err.to_string().contains("is a directory"), "{err}");
}

#[test]
fn a_fifo_is_written_into_and_stays_a_fifo() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("pipe");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || fs::read(&fifo).expect("read fifo"))
    };
    assert_eq!(
        write_file(&fifo, b"through the pipe", &CLI).expect("write"),
        Written::WroteInto
    );
    assert_eq!(reader.join().expect("reader"), b"through the pipe");
    assert!(!fs::symlink_metadata(&fifo).expect("lstat").file_type().is_file());
}

#[test]
fn a_character_device_stays_a_device() {
    if !is_root() {
        eprintln!("skipped: mknod needs root");
        assert!(std::env::var_os("CI").is_none(), "CI runs as root");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // Our own node for the null device (1, 3), in a temporary directory.
    let null = dir.path().join("null");
    let made = Command::new("mknod")
        .arg(&null)
        .args(["c", "1", "3"])
        .status()
        .expect("mknod");
    assert!(made.success());
    assert_eq!(
        write_file(&null, b"discarded", &CLI).expect("write"),
        Written::WroteInto
    );
    let meta = fs::symlink_metadata(&null).expect("lstat");
    assert!(
        !meta.file_type().is_file(),
        "the device node was replaced by a regular file"
    );
    assert_eq!(entries(dir.path()), ["null"]);
    // And through a link to it, as /dev/stdout is a link.
    let link = dir.path().join("out");
    symlink(&null, &link).expect("symlink");
    assert_eq!(
        write_file(&link, b"discarded", &CLI).expect("write"),
        Written::WroteInto
    );
    assert!(!fs::metadata(&null).expect("stat").file_type().is_file());
}

#[test]
fn a_descriptor_link_is_appended_to_as_a_stream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("redirected.txt");
    let mut held = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(&target)
        .expect("open");
    held.write_all(b"before\n").expect("seed");
    let fd = std::os::fd::AsRawFd::as_raw_fd(&held);
    // What /dev/stdout is when a shell redirected standard output with >>.
    let link = dir.path().join("stdout");
    symlink(format!("/proc/self/fd/{fd}"), &link).expect("symlink");
    assert_eq!(write_file(&link, b"after\n", &CLI).expect("write"), Written::WroteInto);
    let mut all = String::new();
    held.rewind().expect("rewind");
    held.read_to_string(&mut all).expect("read");
    assert_eq!(all, "before\nafter\n");
    assert_eq!(
        fs::metadata(&target).expect("meta").ino(),
        held.metadata().expect("meta").ino(),
        "the redirected file was replaced"
    );
}

#[test]
fn the_node_policy_replaces_a_fifo_without_opening_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("p.json");
    assert!(Command::new("mkfifo").arg(&fifo).status().expect("mkfifo").success());
    // Opening a FIFO for writing would block with no reader: replacing must not open it.
    assert_eq!(write_file(&fifo, b"profile", &NODE).expect("write"), Written::Replaced);
    assert_eq!(fs::read(&fifo).expect("read"), b"profile");
}
