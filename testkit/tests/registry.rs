//! The test registry is what tests against it assume: TLS only a client given its CA accepts,
//! a login only its password passes, a listener on 127.0.0.1 alone, and no process left once
//! it is dropped. Checked with curl, a client that shares no code with the registry.

use std::path::Path;
use std::process::Command;

use spo_testkit::registry::Registry;

/// `curl` against `https://HOST/v2/`: the HTTP status it printed and its exit code (60 is
/// "certificate not trusted").
fn curl_v2(reg: &Registry, ca: bool, password: &str) -> (String, Option<i32>) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}"]);
    if ca {
        cmd.arg("--cacert").arg(&reg.ca);
    }
    // A curl config on stdin rather than -u: the password stays out of the process list.
    let out = cmd
        .args(["-K", "-"])
        .arg(format!("https://{}/v2/", reg.host))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("curl stdin");
            writeln!(stdin, "user = \"{}:{password}\"", reg.user)?;
            drop(stdin);
            child.wait_with_output()
        })
        .expect("running curl");
    (String::from_utf8_lossy(&out.stdout).into_owned(), out.status.code())
}

/// The pid the start script recorded.
fn pid_of(reg: &Registry) -> u32 {
    std::fs::read_to_string(reg.dir().join("registry.pid"))
        .expect("registry.pid")
        .trim()
        .parse()
        .expect("registry.pid holds a pid")
}

/// Running, as opposed to gone or a zombie nobody reaped (the script's shell, its parent, has
/// exited, and whoever inherited it may never reap it).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

#[test]
fn v2_answers_only_the_right_password_over_its_own_ca() {
    let Some(reg) = Registry::require() else { return };
    let log = || std::fs::read_to_string(reg.dir().join("registry.log")).unwrap_or_default();

    let (status, code) = curl_v2(&reg, true, &reg.password);
    assert_eq!(
        (status.as_str(), code),
        ("200", Some(0)),
        "right password; log:\n{}",
        log()
    );

    let (status, code) = curl_v2(&reg, true, "not-the-password");
    assert_eq!(
        (status.as_str(), code),
        ("401", Some(0)),
        "wrong password; log:\n{}",
        log()
    );

    // Without the CA curl must refuse the certificate before any HTTP happens.
    let (status, code) = curl_v2(&reg, false, &reg.password);
    assert_eq!((status.as_str(), code), ("000", Some(60)), "no CA; log:\n{}", log());
}

#[test]
fn listens_on_127_0_0_1_only() {
    let Some(reg) = Registry::require() else { return };
    let port: u16 = reg
        .host
        .strip_prefix("127.0.0.1:")
        .and_then(|p| p.parse().ok())
        .expect("host is 127.0.0.1:PORT");
    // Every listening socket on that port, IPv4 and IPv6: (local address hex, state 0A).
    let mut listeners = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state)) = (fields.get(1), fields.get(3)) else {
                continue;
            };
            let Some((addr, hex_port)) = local.split_once(':') else {
                continue;
            };
            if *state == "0A" && u16::from_str_radix(hex_port, 16) == Ok(port) {
                listeners.push(addr.to_owned());
            }
        }
    }
    // 127.0.0.1 in /proc/net/tcp's little-endian hex.
    assert_eq!(listeners, ["0100007F"], "listeners on port {port}");
}

#[test]
fn drop_stops_the_registry_and_removes_its_directory() {
    let Some(reg) = Registry::require() else { return };
    let pid = pid_of(&reg);
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("registry cmdline");
    assert!(
        String::from_utf8_lossy(&cmdline).contains("docker-registry"),
        "pid {pid} is not the registry: {cmdline:?}"
    );
    assert!(running(pid), "registry {pid} not running after start");
    let dir = reg.dir().to_owned();

    drop(reg);

    assert!(!running(pid), "registry {pid} still running after drop");
    assert!(!Path::new(&dir).exists(), "{} left behind", dir.display());
}
