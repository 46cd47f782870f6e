use spo_model::parse_source;
fn show(name: &str, text: &str) {
    let t = std::time::Instant::now();
    match parse_source(name, text) {
        Ok(docs) => {
            for d in docs {
                println!(
                    "== {name}: {:?} {:?}\n{}",
                    d.kind,
                    match d.outcome {
                        spo_model::Outcome::Valid(_) => "Valid".to_string(),
                        o => format!("{o:?}"),
                    },
                    d.problems
                );
            }
        }
        Err(e) => println!("== {name}: ERR {e}"),
    }
    println!("   ({:?})", t.elapsed());
}
#[test]
fn probe() {
    let av = "apiVersion: security-profiles-operator.x-k8s.io/v1\n";
    show(
        "quantity-int",
        &format!(
            "{av}kind: SecurityProfilesOperatorDaemon\nmetadata: {{name: spod, namespace: x}}\nspec:\n  daemonResourceRequirements:\n    limits:\n      cpu: 1\n"
        ),
    );
    show(
        "no-version",
        "apiVersion: security-profiles-operator.x-k8s.io\nkind: SeccompProfile\nmetadata: {name: a}\nspec: {defaultAction: SCMP_ACT_LOG}\n",
    );
    show(
        "dup-key",
        &format!(
            "{av}kind: SeccompProfile\nmetadata: {{name: a}}\nspec:\n  defaultAction: SCMP_ACT_LOG\n  defaultAction: SCMP_ACT_ALLOW\n"
        ),
    );
    let mut bomb = String::from("a: &a [x,x,x,x,x,x,x,x,x,x]\n");
    for i in 0..9 {
        let prev = if i == 0 { "a".to_string() } else { format!("a{}", i - 1) };
        bomb.push_str(&format!(
            "a{i}: &a{i} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
        ));
    }
    show("bomb", &bomb);
    show(
        "apiversion-int",
        "apiVersion: 1\nkind: SeccompProfile\nmetadata: {name: a}\nspec: {defaultAction: SCMP_ACT_LOG}\n",
    );
    show(
        "selector-int-label",
        &format!(
            "{av}kind: ProfileRecording\nmetadata: {{name: r, namespace: x}}\nspec:\n  kind: SeccompProfile\n  recorder: Bpf\n  podSelector:\n    matchLabels:\n      version: 2\n"
        ),
    );
    show(
        "deep",
        &format!(
            "{av}kind: SeccompProfile\nmetadata: {{name: a}}\nspec: {{defaultAction: SCMP_ACT_LOG, x: {}{}}}\n",
            "[".repeat(5000),
            "]".repeat(5000)
        ),
    );
    show(
        "uint-max",
        &format!(
            "{av}kind: SeccompProfile\nmetadata: {{name: a}}\nspec:\n  defaultAction: SCMP_ACT_ERRNO\n  syscalls:\n  - names: [personality]\n    action: SCMP_ACT_ALLOW\n    args: [{{index: 0, value: 18446744073709551615, op: SCMP_CMP_EQ}}]\n"
        ),
    );
    show(
        "status-warn",
        &format!(
            "{av}kind: SeccompProfile\nmetadata: {{name: a}}\nspec: {{defaultAction: SCMP_ACT_LOG}}\nstatus: {{status: Installed}}\n"
        ),
    );
    show(
        "affinity-weight",
        &format!(
            "{av}kind: SecurityProfilesOperatorDaemon\nmetadata: {{name: spod, namespace: x}}\nspec:\n  scheduling:\n    affinity:\n      nodeAffinity:\n        preferredDuringSchedulingIgnoredDuringExecution:\n        - weight: 1\n          preference:\n            matchExpressions: [{{key: a, operator: In, values: [b]}}]\n"
        ),
    );
    show(
        "yaml-bool-label",
        &format!(
            "{av}kind: SeccompProfile\nmetadata:\n  name: a\n  labels:\n    enabled: yes\nspec: {{defaultAction: SCMP_ACT_LOG}}\n"
        ),
    );
    show(
        "generate-name",
        &format!("{av}kind: SeccompProfile\nmetadata:\n  generateName: rec-\nspec: {{defaultAction: SCMP_ACT_LOG}}\n"),
    );
    show(
        "masked-zero",
        &format!(
            "{av}kind: SeccompProfile\nmetadata: {{name: a}}\nspec:\n  defaultAction: SCMP_ACT_ERRNO\n  syscalls:\n  - names: [clone]\n    action: SCMP_ACT_ALLOW\n    args: [{{index: 0, value: 0, valueTwo: 0, op: SCMP_CMP_MASKED_EQ}}]\n"
        ),
    );
    show(
        "inherit-empty",
        &format!("{av}kind: SelinuxProfile\nmetadata: {{name: a}}\nspec:\n  inherit: []\n"),
    );
    show(
        "separator-in-block",
        &format!(
            "{av}kind: RawSelinuxProfile\nmetadata: {{name: a}}\nspec:\n  policy: |\n    (allow process self (file (read)))\n---\n{av}kind: RawSelinuxProfile\nmetadata: {{name: b}}\nspec:\n  policy: \"(allow process self\n---\n  (file (read)))\"\n"
        ),
    );
    show(
        "kind-list",
        &format!(
            "apiVersion: v1\nkind: List\nitems:\n- {av}  kind: SeccompProfile\n  metadata: {{name: a}}\n  spec: {{defaultAction: SCMP_ACT_LOG}}\n"
        ),
    );
    show(
        "crlf",
        &format!(
            "{av}kind: SeccompProfile\r\nmetadata: {{name: a}}\r\nspec: {{defaultAction: SCMP_ACT_LOG}}\r\n---\r\n{av}kind: SeccompProfile\r\nmetadata: {{name: b}}\r\nspec: {{defaultAction: SCMP_ACT_LOG}}\r\n"
        ),
    );
    show(
        "toleration-op-typo",
        &format!(
            "{av}kind: SecurityProfilesOperatorDaemon\nmetadata: {{name: spod, namespace: x}}\nspec:\n  scheduling:\n    tolerations: [{{key: a, operator: Exist}}]\n"
        ),
    );
    show(
        "json-list",
        r#"[{"apiVersion":"security-profiles-operator.x-k8s.io/v1","kind":"SeccompProfile","metadata":{"name":"a"},"spec":{"defaultAction":"SCMP_ACT_LOG"}}]"#,
    );
    show(
        "trace-errno",
        &format!(
            "{av}kind: SeccompProfile\nmetadata: {{name: a}}\nspec:\n  defaultAction: SCMP_ACT_ERRNO\n  syscalls:\n  - names: [ptrace]\n    action: SCMP_ACT_TRACE\n    errnoRet: 70000\n"
        ),
    );
    show(
        "conflict-same-rule",
        &format!(
            "{av}kind: SeccompProfile\nmetadata: {{name: a}}\nspec:\n  defaultAction: SCMP_ACT_ERRNO\n  syscalls:\n  - names: [read]\n    action: SCMP_ACT_ALLOW\n  - names: [read]\n    action: SCMP_ACT_ERRNO\n    errnoRet: 1\n"
        ),
    );
    show(
        "errno-vs-errno",
        &format!(
            "{av}kind: SeccompProfile\nmetadata: {{name: a}}\nspec:\n  defaultAction: SCMP_ACT_ALLOW\n  syscalls:\n  - names: [ptrace]\n    action: SCMP_ACT_ERRNO\n    errnoRet: 1\n  - names: [ptrace]\n    action: SCMP_ACT_ERRNO\n    errnoRet: 38\n"
        ),
    );
}
