//! The kernel loader against a stand-in securityfs and a stand-in apparmor_parser (a shell
//! script that records its calls and edits the stand-in profile list), and the real kernel
//! of this machine, which has no AppArmor.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use spo_apparmor::loader::{DEFAULT_SECURITYFS, KernelLoader, ProfileLoader};
use spo_apparmor::{AppArmorBackend, AppArmorError};
use spo_model::contract::{InstallName, InstallOutcome, NodeSupport, ProfileBackend, RemoveOutcome};

struct Node {
    _dir: tempfile::TempDir,
    root: PathBuf,
    loader: KernelLoader,
}

impl Node {
    fn securityfs(&self) -> PathBuf {
        self.root.join("securityfs")
    }
    fn calls(&self) -> Vec<String> {
        fs::read_to_string(self.root.join("calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
    fn kernel_list(&self) -> String {
        fs::read_to_string(self.securityfs().join("profiles")).expect("profiles")
    }
}

/// A node whose parser runs `script_body` (with $1 the action and $2 the file).
fn node_with(script_body: &str) -> Node {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_path_buf();
    let sfs = root.join("securityfs");
    fs::create_dir_all(&sfs).expect("mkdir");
    fs::write(sfs.join("profiles"), "").expect("profiles");
    let script = root.join("apparmor_parser");
    let text = format!(
        "#!/bin/sh\nSFS='{}'\necho \"$*\" >> '{}'\nfor a; do last=$a; done\nname=$(sed -n 's/^profile \\([^ ]*\\) .*/\\1/p' \"$last\" | head -n 1)\n{script_body}\n",
        sfs.display(),
        root.join("calls").display()
    );
    fs::write(&script, text).expect("script");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod");
    let loader = KernelLoader::new(&sfs, root.join("etc/apparmor.d"), &script);
    Node {
        _dir: dir,
        root,
        loader,
    }
}

const WORKING_PARSER: &str = r#"case "$1" in
  --replace) grep -v "^$name (" "$SFS/profiles" > "$SFS/p.new"; echo "$name (enforce)" >> "$SFS/p.new"; mv "$SFS/p.new" "$SFS/profiles";;
  --remove) grep -v "^$name (" "$SFS/profiles" > "$SFS/p.new"; mv "$SFS/p.new" "$SFS/profiles";;
esac"#;

fn name(s: &str) -> InstallName {
    InstallName::new(s).expect("name")
}

fn text(rule: &str) -> String {
    format!("profile web flags=(enforce) {{\n  {rule}\n}}\n")
}

#[test]
fn loads_once_and_skips_while_unchanged() {
    let node = node_with(WORKING_PARSER);
    let web = name("web");
    assert_eq!(
        node.loader.install(&web, &text("/a r,")).expect("load"),
        InstallOutcome::Written
    );
    let file = node.root.join("etc/apparmor.d/web");
    assert_eq!(fs::read_to_string(&file).expect("file"), text("/a r,"));
    assert_eq!(fs::metadata(&file).expect("meta").permissions().mode() & 0o777, 0o644);
    assert_eq!(node.kernel_list(), "web (enforce)\n");
    assert_eq!(node.calls().len(), 1);
    assert!(
        node.calls()[0].starts_with("--replace --skip-cache "),
        "{:?}",
        node.calls()
    );

    // A resync with the same text runs nothing (upstream re-ran the parser every 30 s).
    for _ in 0..3 {
        assert_eq!(
            node.loader.install(&web, &text("/a r,")).expect("again"),
            InstallOutcome::Unchanged
        );
    }
    assert_eq!(node.calls().len(), 1);

    // A restarted daemon remembers nothing but recognises the file and the kernel's list.
    let restarted = KernelLoader::new(node.securityfs(), node.root.join("etc/apparmor.d"), &node.loader.parser);
    assert_eq!(
        restarted.install(&web, &text("/a r,")).expect("restart"),
        InstallOutcome::Unchanged
    );
    assert_eq!(node.calls().len(), 1);

    // Changed text is loaded.
    assert_eq!(
        node.loader.install(&web, &text("/b r,")).expect("change"),
        InstallOutcome::Written
    );
    assert_eq!(node.calls().len(), 2);

    // Unloaded behind our back: loaded again.
    fs::write(node.securityfs().join("profiles"), "").expect("clear");
    assert_eq!(
        node.loader.install(&web, &text("/b r,")).expect("reload"),
        InstallOutcome::Written
    );
    assert_eq!(node.calls().len(), 3);

    // File edited by hand while the kernel has our text: only the file is rewritten.
    fs::write(&file, "edited").expect("edit");
    assert_eq!(
        node.loader.install(&web, &text("/b r,")).expect("rewrite"),
        InstallOutcome::Written
    );
    assert_eq!(node.calls().len(), 3);
    assert_eq!(fs::read_to_string(&file).expect("file"), text("/b r,"));

    assert_eq!(
        node.loader
            .list()
            .expect("list")
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>(),
        vec!["web"]
    );
    assert_eq!(node.loader.remove(&web).expect("remove"), RemoveOutcome::Removed);
    assert!(!file.exists());
    assert_eq!(node.kernel_list(), "");
    assert!(node.calls()[3].starts_with("--remove "), "{:?}", node.calls());
    assert_eq!(node.loader.remove(&web).expect("again"), RemoveOutcome::NotPresent);
    assert_eq!(node.calls().len(), 4);
}

#[test]
fn a_loaded_profile_without_its_file_is_removed_through_securityfs() {
    let node = node_with(WORKING_PARSER);
    fs::write(node.securityfs().join("profiles"), "web (enforce)\n").expect("seed");
    // The stand-in kernel does not act on .remove, so the loader must notice it is still there.
    let err = node.loader.remove(&name("web")).expect_err("kernel still lists it");
    assert!(matches!(err, AppArmorError::KernelMismatch { .. }), "{err}");
    assert_eq!(
        fs::read_to_string(node.securityfs().join(".remove")).expect(".remove"),
        "web"
    );
}

#[test]
fn parser_failures_and_silent_failures_are_errors() {
    let failing = node_with("echo \"AppArmor parser error for $2 in profile $2 at line 2: syntax error\" >&2\nexit 1");
    let err = failing.loader.install(&name("web"), &text("/a r,")).expect_err("fails");
    let msg = err.to_string();
    assert!(msg.starts_with("loading profile web: "), "{msg}");
    assert!(msg.contains("at line 2: syntax error"), "{msg}");

    let silent = node_with("exit 0");
    let err = silent
        .loader
        .install(&name("web"), &text("/a r,"))
        .expect_err("not listed");
    assert_eq!(
        err.to_string(),
        "loading profile web: apparmor_parser succeeded but the kernel's profile list has no profile web"
    );

    let mut missing = node_with(WORKING_PARSER);
    missing.loader.parser = missing.root.join("no-such-parser");
    let err = missing
        .loader
        .install(&name("web"), &text("/a r,"))
        .expect_err("no parser");
    assert!(matches!(err, AppArmorError::ToolUnavailable { .. }), "{err}");
}

#[test]
fn this_kernel_has_no_apparmor() {
    if Path::new(DEFAULT_SECURITYFS).join("profiles").exists() {
        eprintln!("skipped: this kernel has AppArmor; the test checks the error without it");
        return;
    }
    let loader = KernelLoader::default();
    let err = loader.install(&name("web"), &text("/a r,")).expect_err("no AppArmor");
    assert!(
        err.to_string()
            .starts_with("the kernel has no AppArmor (securityfs has no /sys/kernel/security/apparmor)"),
        "{err}"
    );
    assert!(matches!(loader.list(), Err(AppArmorError::NoAppArmor { .. })));
    let backend = AppArmorBackend::default();
    let NodeSupport::Unsupported { reason } = backend.probe() else {
        panic!("probe says supported")
    };
    assert!(reason.contains("the kernel has no AppArmor"), "{reason}");
    let target: Arc<dyn ProfileLoader> = Arc::new(KernelLoader::new(
        "/nonexistent/securityfs",
        tempfile::tempdir().expect("tempdir").path(),
        "apparmor_parser",
    ));
    assert_eq!(
        backend.remove(&target, &name("web")).expect("remove"),
        RemoveOutcome::NotPresent
    );
}
