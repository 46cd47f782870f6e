//! Why the manager keeps its own leader election (`spo-operator/src/leader.rs`) instead of
//! the `kube-lease-manager` crate (0.13.1, the one that works with kube 5): the crate fails
//! the guarantee that two replicas never act at once across a partition. Its leadership is
//! "the Lease I last read names me"; nothing steps a leader down by its own clock when its
//! renewals stop getting through, and it sets no timeout on its requests, so a leader cut off
//! from the apiserver keeps saying it leads while a standby that still reaches the apiserver
//! waits out the lease and takes it.
//!
//! The same partition, with the same relay and timings, is run against our election in
//! `operator_resilience.rs` (`a_leader_cut_off_steps_down_before_another_leads`), which passes.
//! This test passes while the crate still fails; if it starts failing, the crate has learned
//! to step down and the choice in docs/decisions.md ("Leader election") should be made again.
//!
//! Needs the shared test apiserver (`SPO_E2E_KUBECONFIG`).

use std::time::{Duration, Instant};

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use spo_e2e::{FreezableProxy, Kubectl, kubeconfig};

const NS: &str = "spo-e2e-lease-manager";
const LEASE: &str = "klm";
/// The manager's e2e lease timings (`FAST_LEASE`): a 3 s lease; the crate renews `grace`
/// seconds before it expires, so 1 s of grace renews about every 2 s, as our 2 s deadline.
const DURATION: u64 = 3;
const GRACE: u64 = 1;

async fn client(kubeconfig: &std::path::Path) -> Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .expect("client config");
    Client::try_from(config).expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_lease_manager_lets_a_cut_off_leader_act_beside_the_new_one() {
    let Some(kc) = kubeconfig("kube_lease_manager_lets_a_cut_off_leader_act_beside_the_new_one") else {
        return;
    };
    let k = Kubectl::new(kc.clone());
    let _ = k.run(&["create", "namespace", NS], None);
    k.ok(&["-n", NS, "delete", "lease", LEASE, "--ignore-not-found"], None);
    let tmp = tempfile::tempdir().expect("tempdir");
    let (proxy, relayed) = FreezableProxy::for_kubeconfig(&kc, tmp.path());

    let manager = |client: Client, id: &'static str| async move {
        LeaseManagerBuilder::new(client, LEASE)
            .with_namespace(NS)
            .with_identity(id)
            .with_duration(DURATION)
            .with_grace(GRACE)
            .build()
            .await
            .expect("lease manager")
    };
    // a reaches the apiserver through the relay; b directly.
    let (a_leads, a_task) = manager(client(&relayed).await, "klm-a").await.watch().await;
    let t0 = Instant::now();
    while !*a_leads.borrow() {
        assert!(t0.elapsed() < Duration::from_secs(30), "a never took the free lease");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (b_leads, b_task) = manager(client(&kc).await, "klm-b").await.watch().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(*a_leads.borrow() && !*b_leads.borrow(), "a leads, b stands by");

    // The partition. Sample both every 20 ms for up to 20 s, or until both have led at once
    // for longer than our election's bound lets a cut-off leader act (4 s).
    proxy.freeze();
    let cut = Instant::now();
    let mut a_stopped: Option<Duration> = None;
    let mut both_since: Option<Duration> = None;
    let mut both_for = Duration::ZERO;
    while cut.elapsed() < Duration::from_secs(20) {
        let (a, b) = (*a_leads.borrow(), *b_leads.borrow());
        if !a && a_stopped.is_none() {
            a_stopped = Some(cut.elapsed());
        }
        if a && b {
            let since = *both_since.get_or_insert(cut.elapsed());
            both_for = cut.elapsed() - since;
            if both_for > Duration::from_secs(4) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "kube-lease-manager, leader cut off: it stopped leading after {a_stopped:?}; the standby \
         led from {both_since:?}; both said they led for {both_for:?}"
    );
    assert_eq!(
        a_stopped, None,
        "the cut-off leader stepped down: re-evaluate the crate (docs/decisions.md)"
    );
    assert!(
        both_for > Duration::from_secs(4),
        "two leaders for only {both_for:?} (from {both_since:?}): re-evaluate the crate (docs/decisions.md)"
    );

    // Healed. Both managers release when their receivers go.
    proxy.thaw();
    drop((a_leads, b_leads));
    for task in [a_task, b_task] {
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
    k.ok(&["-n", NS, "delete", "lease", LEASE, "--ignore-not-found"], None);
}
