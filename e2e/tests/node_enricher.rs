//! The node enricher (`spo-operator enricher`) on the real node (e2e/start-node.sh), reading
//! the real auditd's log (scripts/test starts Debian's auditd): pods run under a seccomp
//! profile that logs some calls (SCMP_ACT_LOG), and the enricher must
//!
//! - print one line per record, attributed to the right namespace, pod and container (also
//!   for a process that exited before its record was read), with upstream's fields, and drop
//!   what `logEnricherFilters` drops;
//! - count the records in `security_profiles_operator_seccomp_profile_audit_total` with
//!   upstream's labels;
//! - write the JSON enricher's per-process lines to `jsonEnricherOptions.auditLogPath`;
//! - after a restart, go on from its checkpoint: records written while it was down are
//!   printed once, records printed before are not printed again;
//! - refuse SPOD settings it cannot use (a relative `auditLogPath`) and keep the previous ones.
//!
//! The profile file is written into the kubelet's seccomp root by the test (the daemon's
//! installing is tested elsewhere); every record comes from the kernel and auditd.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use spo_e2e::node::{NODE_NAME, Node, busybox_pod};
use spo_e2e::{Proc, eventually, free_port, http_get, metric, operator_binary, operator_command, rss_kib};

const NS: &str = "spo-e2e-enricher";
/// Debian's auditd writes here (scripts/auditd).
const AUDITD_LOG: &str = "/var/log/audit/audit.log";
const T: Duration = Duration::from_secs(90);
/// Under the kubelet's seccomp root.
const PROFILE: &str = "spo-e2e-enricher/log-calls.json";

/// Allows everything, logs chdir, umask and mkdir.
const LOGGING_PROFILE: &str = r#"{
  "defaultAction": "SCMP_ACT_ALLOW",
  "syscalls": [{"names": ["chdir", "umask", "mkdir", "mkdirat"], "action": "SCMP_ACT_LOG"}]
}"#;

/// The pod's script: the shell itself changes directory and sets its umask (builtins: a
/// process that lives on while its records are read), then `mkdir` (a process of its own that
/// exits at once), then the shell waits.
fn script(tag: &str) -> String {
    format!("cd /tmp && umask 022 && mkdir -p {tag} && sleep 4 && echo {tag}-done")
}

fn spod(json_log: &Path, json_path_override: Option<&str>) -> String {
    let path = json_path_override.map_or_else(|| json_log.display().to_string(), str::to_owned);
    serde_json::json!({
        "apiVersion": "security-profiles-operator.x-k8s.io/v1",
        "kind": "SecurityProfilesOperatorDaemon",
        "metadata": {"name": "spod", "namespace": NS},
        "spec": {"enricher": {
            "enableLogEnricher": true,
            "logEnricherFilters": r#"[{"priority":10,"level":"None","matchKeys":["syscallName"],"matchValues":["umask"]}]"#,
            "enableJsonEnricher": true,
            "jsonEnricherOptions": {"auditLogPath": path, "auditLogIntervalSeconds": 1},
        }},
    })
    .to_string()
}

/// The enriched lines of `pod` in the enricher's output.
fn lines_of(log: &Path, pod: &str) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let needle = format!("namespace=\"{NS}\" pod=\"{pod}\" container=\"c\"");
    text.lines()
        .filter(|l| l.starts_with("audit timestamp=") && l.contains(&needle))
        .map(str::to_owned)
        .collect()
}

fn start_enricher(dir: &Path, node: &Node, port: u16, run: &str) -> Proc {
    let mut cmd = operator_command(
        &operator_binary(),
        node.kubeconfig(),
        "info,spo_operator=debug,kube=warn",
        &format!("127.0.0.1:{port}"),
    );
    cmd.args(["enricher", "--namespace", NS, "--node-name", NODE_NAME, "--checkpoint"])
        .arg(dir.join("checkpoint"));
    Proc::spawn("enricher", cmd, &dir.join(format!("enricher-{run}.log")))
}

fn wait_ready(port: u16, enricher: &mut Proc) {
    eventually("the enricher ready (pods listed)", T, || {
        if !enricher.running() {
            return Err("the enricher exited".into());
        }
        match http_get(port, "/readyz") {
            Some((200, _)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
}

#[test]
fn records_of_real_pods_are_enriched_counted_written_as_json_and_resumed_after_a_restart() {
    let Some(node) =
        Node::from_env("records_of_real_pods_are_enriched_counted_written_as_json_and_resumed_after_a_restart")
    else {
        return;
    };
    assert!(
        Path::new(AUDITD_LOG).exists(),
        "auditd's log is missing: scripts/test starts auditd (scripts/auditd start)"
    );
    let k = node.kubectl();
    let dir = tempfile::Builder::new()
        .prefix("spo-e2e-enricher-")
        .tempdir()
        .expect("tempdir")
        .keep();
    k.install_crds();
    k.ok(
        &["apply", "-f", "-"],
        Some(&format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NS}\n")),
    );
    k.ok(&["-n", NS, "delete", "pods", "--all", "--wait=true"], None);
    k.wait_default_service_account(NS);
    let profile = node.seccomp_root().join(PROFILE);
    std::fs::create_dir_all(profile.parent().expect("parent")).expect("profile dir");
    std::fs::write(&profile, LOGGING_PROFILE).expect("profile");
    let json_log = dir.join("json/audit.log");
    k.ok(&["apply", "-f", "-"], Some(&spod(&json_log, None)));

    let port = free_port();
    let mut enricher = start_enricher(&dir, &node, port, "1");
    wait_ready(port, &mut enricher);
    let log1 = dir.join("enricher-1.log");
    eventually("the enricher reading auditd's log", T, || {
        let text = std::fs::read_to_string(&log1).unwrap_or_default();
        text.contains("reading auditd's log").then_some(()).ok_or(text)
    });

    // 1. A pod's records, attributed to it.
    k.ok(
        &["apply", "-f", "-"],
        Some(&busybox_pod(NS, "p1", &script("p1"), Some(PROFILE))),
    );
    // The shell's chdir (runc's init makes one too, before it runs the shell: also the
    // container's).
    let shell_chdir = |l: &&String| l.contains("syscallName=\"chdir\"") && l.contains("busybox\"");
    let lines = eventually("p1's chdir record enriched", T, || {
        let lines = lines_of(&log1, "p1");
        lines
            .iter()
            .any(|l| shell_chdir(&l))
            .then(|| lines.clone())
            .ok_or_else(|| format!("{lines:?}"))
    });
    let chdir = lines.iter().find(shell_chdir).expect("chdir line");
    assert!(
        chdir.starts_with("audit timestamp=\"")
            && chdir.contains(&format!(
                " type=\"seccomp\" node=\"{NODE_NAME}\" namespace=\"{NS}\" pod=\"p1\" container=\"c\" executable=\""
            ))
            && chdir.contains("busybox\" pid=")
            && chdir.contains(" syscallID=80 syscallName=\"chdir\""),
        "{chdir}"
    );
    // umask is logged by the kernel but dropped by logEnricherFilters, whoever made it.
    node.wait_pod_phase(NS, "p1", &["Succeeded"], T).expect("p1 ran");
    std::thread::sleep(Duration::from_secs(2));
    let all = std::fs::read_to_string(&log1).unwrap_or_default();
    assert!(!all.contains("syscallName=\"umask\""), "umask was filtered out:\n{all}");
    // mkdir (not filtered) is there, attributed to the pod although its process exited long
    // before the record was read: the exit log (eBPF) remembered its cgroup.
    let lines = lines_of(&log1, "p1");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("syscallName=\"mkdir\"") || l.contains("syscallName=\"mkdirat\"")),
        "mkdir attributed to p1:\n{all}"
    );
    assert!(all.contains("exit log loaded"), "{all}");
    let auditd = std::fs::read_to_string(AUDITD_LOG).unwrap_or_default();
    assert!(
        auditd
            .lines()
            .any(|l| l.contains("type=SECCOMP") && l.contains(" syscall=95 ")),
        "the kernel logged umask (so the filter, not a missing record, kept it out)"
    );
    let lines = lines_of(&log1, "p1");
    // Each record once.
    let mut stamps: Vec<&str> = lines.iter().filter_map(|l| l.split('"').nth(1)).collect();
    let n = stamps.len();
    stamps.sort_unstable();
    stamps.dedup();
    assert_eq!(stamps.len(), n, "a record printed twice: {lines:#?}");

    // 2. The metric, with upstream's labels.
    let series = format!(
        "security_profiles_operator_seccomp_profile_audit_total{{node=\"{NODE_NAME}\",namespace=\"{NS}\",pod=\"p1\",container=\"c\",syscall=\"chdir\"}}"
    );
    let (_, body) = http_get(port, "/metrics").expect("metrics");
    assert!(metric(&body, &series).is_some_and(|v| v >= 1.0), "{series} in\n{body}");
    assert!(
        !body.contains("syscall=\"umask\""),
        "filtered records are not counted (as upstream)"
    );

    // 3. The JSON enricher's lines (no filter: umask is there, with chdir, for the shell).
    let json = eventually("p1 in the JSON enricher's log", T, || {
        let text = std::fs::read_to_string(&json_log).unwrap_or_default();
        let lines: Vec<Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        let of_p1: Vec<Value> = lines
            .into_iter()
            .filter(|v| v["resource"]["pod"] == "p1" && v["resource"]["namespace"] == NS)
            .collect();
        let calls: Vec<String> = of_p1
            .iter()
            .flat_map(|v| v["syscalls"].as_array().cloned().unwrap_or_default())
            .filter_map(|c| c.as_str().map(str::to_owned))
            .collect();
        (calls.iter().any(|c| c == "chdir") && calls.iter().any(|c| c == "umask"))
            .then_some(of_p1)
            .ok_or(text)
    });
    let first = &json[0];
    assert_eq!(first["version"], "spo/v1_alpha");
    assert_eq!(first["node"], NODE_NAME);
    assert_eq!(first["resource"]["container"], "c");
    let mode = std::fs::metadata(&json_log).map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777);
    assert_eq!(mode.ok(), Some(0o600), "the JSON log is private to the node's root");

    // 4. A setting the enricher cannot use is refused; the previous ones stay.
    k.ok(
        &["apply", "-f", "-"],
        Some(&spod(&json_log, Some("relative/audit.log"))),
    );
    eventually("the refusal logged", T, || {
        let text = std::fs::read_to_string(&log1).unwrap_or_default();
        text.contains("spec.enricher.jsonEnricherOptions.auditLogPath")
            .then_some(())
            .ok_or(text)
    });
    k.ok(&["apply", "-f", "-"], Some(&spod(&json_log, None)));

    // 5. Restart: down while p2 logs; back from the checkpoint.
    assert!(
        enricher.terminate(Duration::from_secs(10)),
        "the enricher stops on SIGTERM"
    );
    let checkpoint = std::fs::read_to_string(dir.join("checkpoint")).expect("checkpoint written");
    assert_eq!(checkpoint.split_whitespace().count(), 3, "{checkpoint}");
    k.ok(
        &["apply", "-f", "-"],
        Some(&busybox_pod(NS, "p2", &script("p2"), Some(PROFILE))),
    );
    // p2's shell makes its chdir record as it starts, then sleeps 4 s: the record is in
    // auditd's log before the enricher is back, and its process still runs when it is read.
    node.wait_pod_phase(NS, "p2", &["Running", "Succeeded"], T)
        .expect("p2 started");
    std::thread::sleep(Duration::from_millis(1500));
    let mut enricher = start_enricher(&dir, &node, port, "2");
    wait_ready(port, &mut enricher);
    let log2 = dir.join("enricher-2.log");
    eventually("p2's chdir enriched after the restart", T, || {
        let lines = lines_of(&log2, "p2");
        lines
            .iter()
            .any(|l| l.contains("syscallName=\"chdir\""))
            .then_some(())
            .ok_or_else(|| format!("{lines:?}"))
    });
    let text2 = std::fs::read_to_string(&log2).unwrap_or_default();
    assert!(text2.contains("resumed=true"), "resumed from the checkpoint:\n{text2}");
    assert!(
        lines_of(&log2, "p1").is_empty(),
        "records printed before the restart are not printed again"
    );
    let (rss, hwm) = rss_kib(enricher.id());
    eprintln!("enricher after the restart: VmRSS {rss} KiB, VmHWM {hwm} KiB");
    node.wait_pod_phase(NS, "p2", &["Succeeded"], T).expect("p2 ran");
    assert!(enricher.terminate(Duration::from_secs(10)));
    k.ok(&["-n", NS, "delete", "pods", "--all", "--wait=false"], None);
    let _ = std::fs::remove_file(&profile);
}
