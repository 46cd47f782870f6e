//! Leader election over a `coordination.k8s.io/v1` Lease, so the manager can run with
//! several replicas and only one acts.
//!
//! The protocol is the one every Kubernetes controller uses, so `kubectl get lease` reads
//! as usual: the holder writes its identity and renews `renewTime` every retry period; a
//! candidate takes the lease over when it has not changed for `leaseDurationSeconds`. Time
//! is never compared across machines: a candidate measures the lease's age on its own
//! clock, from the moment it first saw the current record. Writes are optimistic
//! (`resourceVersion`), so two candidates can never both win the same record.
//!
//! A leader that cannot renew within the renew deadline (shorter than the lease duration)
//! stops acting before anyone else may take over. It does not exit: it goes back to
//! candidate, so an apiserver outage does not become a crash loop of every replica. On a
//! clean shutdown the leader releases the lease, so a standby takes over at once.
//!
//! The decisions ([`observe`], [`decide`], [`must_step_down`]) are pure; [`Elector`] is the
//! IO loop and [`run_while_leading`] starts and stops the work with the leadership.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use spo_model::contract::error_chain;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::error::OperatorError;
use crate::kubeapi;
use crate::server::Endpoints;

/// Settings of the election.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (unique per process).
    pub identity: String,
    /// How long a lease stays valid without renewal.
    pub lease_duration: Duration,
    /// How long a leader keeps acting without a successful renewal.
    pub renew_deadline: Duration,
    /// How often the lease is renewed or looked at.
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// Checks the timings: retry period < renew deadline < lease duration, so a leader
    /// that cannot renew stops before a candidate may take over. The error says which
    /// flag to change.
    pub fn validate(&self) -> Result<(), String> {
        if self.retry_period.is_zero() || self.retry_period >= self.renew_deadline {
            return Err(format!(
                "--retry-period ({:?}) must be above 0 and below --renew-deadline ({:?})",
                self.retry_period, self.renew_deadline
            ));
        }
        if self.renew_deadline >= self.lease_duration {
            return Err(format!(
                "--renew-deadline ({:?}) must be below --lease-duration ({:?}), or two replicas could act at once",
                self.renew_deadline, self.lease_duration
            ));
        }
        if self.identity.is_empty() {
            return Err("the leader identity is empty (--leader-identity)".into());
        }
        Ok(())
    }
}

/// The parts of a Lease the election looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// `holderIdentity` (`None` or empty: free).
    pub holder: Option<String>,
    /// `renewTime`.
    pub renewed: Option<Timestamp>,
    /// `leaseDurationSeconds`.
    pub duration: Duration,
    /// `leaseTransitions`.
    pub transitions: i32,
}

impl Record {
    /// Reads a Lease (`fallback` when it has no duration).
    pub fn of(lease: &Lease, fallback: Duration) -> Record {
        let spec = lease.spec.clone().unwrap_or_default();
        Record {
            holder: spec.holder_identity.filter(|h| !h.is_empty()),
            renewed: spec.renew_time.map(|t| t.0),
            duration: spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map_or(fallback, Duration::from_secs),
            transitions: spec.lease_transitions.unwrap_or(0),
        }
    }
}

/// A record and when this replica first saw it, on its own clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    /// The record.
    pub record: Record,
    /// When it was first seen unchanged.
    pub since: Instant,
}

/// Updates the observation with the record just read: its age restarts whenever it
/// changed (a renewal, a new holder).
pub fn observe(previous: Option<Observation>, record: Record, now: Instant) -> Observation {
    match previous {
        Some(p) if p.record == record => p,
        _ => Observation { record, since: now },
    }
}

/// What to do with the lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// There is no lease: create it, holding it.
    Create,
    /// It is free or expired: take it over.
    Acquire,
    /// We hold it: renew it.
    Renew,
    /// Someone else holds it and it has not expired.
    Follow {
        /// The holder.
        holder: String,
        /// When it expires unless renewed.
        expires_in: Duration,
    },
}

/// Decides the next step from what was observed.
pub fn decide(observed: Option<&Observation>, identity: &str, now: Instant) -> Step {
    let Some(o) = observed else {
        return Step::Create;
    };
    match o.record.holder.as_deref() {
        Some(h) if h == identity => Step::Renew,
        None => Step::Acquire,
        Some(h) => {
            let age = now.saturating_duration_since(o.since);
            if age >= o.record.duration {
                Step::Acquire
            } else {
                Step::Follow {
                    holder: h.to_owned(),
                    expires_in: o.record.duration - age,
                }
            }
        }
    }
}

/// Whether a leader whose last successful renewal was at `last_renewal` must stop acting.
pub fn must_step_down(last_renewal: Instant, now: Instant, renew_deadline: Duration) -> bool {
    now.saturating_duration_since(last_renewal) >= renew_deadline
}

/// The Lease to write for `step` (`Create`, `Acquire` or `Renew`), from the current one.
pub fn lease_for(step: &Step, current: Option<&Lease>, config: &LeaseConfig, now: Timestamp) -> Lease {
    let mut lease = current.cloned().unwrap_or_else(|| Lease {
        metadata: ObjectMeta {
            name: Some(config.name.clone()),
            namespace: Some(config.namespace.clone()),
            ..ObjectMeta::default()
        },
        spec: None,
    });
    let mut spec = lease.spec.take().unwrap_or_default();
    let seconds = i32::try_from(config.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX);
    match step {
        Step::Renew => {
            spec.renew_time = Some(MicroTime(now));
            spec.lease_duration_seconds = Some(seconds);
        }
        Step::Create | Step::Acquire | Step::Follow { .. } => {
            let changed = spec.holder_identity.as_deref() != Some(config.identity.as_str());
            if changed && current.is_some() {
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
            }
            spec = LeaseSpec {
                holder_identity: Some(config.identity.clone()),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_duration_seconds: Some(seconds),
                lease_transitions: Some(spec.lease_transitions.unwrap_or(0)),
                ..spec
            };
        }
    }
    lease.spec = Some(spec);
    lease
}

/// The Lease that gives up leadership at once (free holder, 1 s duration).
fn released(mut lease: Lease, now: Timestamp) -> Lease {
    let mut spec = lease.spec.take().unwrap_or_default();
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(MicroTime(now));
    lease.spec = Some(spec);
    lease
}

/// The running election: a background loop and the leadership it reports.
#[derive(Debug)]
pub struct Elector {
    leading: watch::Receiver<bool>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Elector {
    /// Starts campaigning.
    pub fn start(client: Client, config: LeaseConfig, endpoints: Arc<Endpoints>) -> Elector {
        let (leading_tx, leading) = watch::channel(false);
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(campaign(client, config, endpoints, leading_tx, stop_rx));
        Elector { leading, stop, task }
    }

    /// A receiver that says whether this replica leads.
    pub fn leading(&self) -> watch::Receiver<bool> {
        self.leading.clone()
    }

    /// Stops campaigning and, when leading, releases the lease.
    pub async fn release(self) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(Duration::from_secs(5), self.task).await.is_err() {
            warn!("releasing the leader lease took too long; a standby takes over when it expires");
        }
    }
}

async fn campaign(
    client: Client,
    config: LeaseConfig,
    endpoints: Arc<Endpoints>,
    leading: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let lease_ref = format!("{}/{}", config.namespace, config.name);
    let call_timeout = config.renew_deadline / 2;
    let mut observed: Option<Observation> = None;
    let mut current: Option<Lease> = None;
    let mut last_renewal: Option<Instant> = None;
    let mut last_holder: Option<String> = None;
    loop {
        let attempt = async {
            let lease = kubeapi::get_lease(&client, &config.namespace, &config.name).await?;
            let now = Instant::now();
            observed = lease
                .as_ref()
                .map(|l| observe(observed.take(), Record::of(l, config.lease_duration), now));
            current = lease;
            let step = decide(observed.as_ref(), &config.identity, now);
            let written = match &step {
                Step::Follow { holder, .. } => {
                    if last_holder.as_deref() != Some(holder.as_str()) {
                        info!(lease = %lease_ref, %holder, "another replica leads; standing by");
                        last_holder = Some(holder.clone());
                    }
                    // Someone else holds a valid lease: whatever we believed, we do not lead.
                    last_renewal = None;
                    return Ok::<_, OperatorError>(());
                }
                Step::Create => {
                    let lease = lease_for(&step, None, &config, Timestamp::now());
                    kubeapi::create_lease(&client, &config.namespace, &lease).await?
                }
                Step::Acquire | Step::Renew => {
                    let lease = lease_for(&step, current.as_ref(), &config, Timestamp::now());
                    kubeapi::replace_lease(&client, &config.namespace, &lease).await?
                }
            };
            if let Some(lease) = written {
                if step != Step::Renew {
                    info!(lease = %lease_ref, identity = %config.identity, "acquired the leader lease");
                }
                observed = Some(observe(
                    observed.take(),
                    Record::of(&lease, config.lease_duration),
                    Instant::now(),
                ));
                current = Some(lease);
                last_renewal = Some(now);
                last_holder = Some(config.identity.clone());
            }
            Ok(())
        };
        match tokio::time::timeout(call_timeout, attempt).await {
            // A standby is ready when its lease loop works; a leader's readiness is its
            // controllers' (set once their first lists are complete).
            Ok(Ok(())) if last_renewal.is_none() => endpoints.health.set_ready(true),
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(lease = %lease_ref, error = %error_chain(&e), "leader election request failed"),
            Err(_) => warn!(lease = %lease_ref, "leader election request timed out"),
        }
        if let Some(t) = last_renewal
            && must_step_down(t, Instant::now(), config.renew_deadline)
        {
            warn!(lease = %lease_ref, deadline = ?config.renew_deadline, "could not renew the leader lease in time; stopping to act");
            last_renewal = None;
        }
        let leads = last_renewal.is_some();
        leading.send_if_modified(|l| std::mem::replace(l, leads) != leads);
        endpoints.metrics.set_leader(leads);
        tokio::select! {
            () = tokio::time::sleep(config.retry_period) => {}
            _ = stop.changed() => break,
        }
    }
    // Shutting down: give the lease up so a standby does not wait for it to expire.
    leading.send_replace(false);
    endpoints.metrics.set_leader(false);
    if last_renewal.is_some()
        && let Some(lease) = current
    {
        let lease = released(lease, Timestamp::now());
        match tokio::time::timeout(call_timeout, kubeapi::replace_lease(&client, &config.namespace, &lease)).await {
            Ok(Ok(Some(_))) => info!(lease = %lease_ref, "released the leader lease"),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => warn!(lease = %lease_ref, error = %error_chain(&e), "releasing the leader lease failed"),
            Err(_) => warn!(lease = %lease_ref, "releasing the leader lease timed out"),
        }
    }
}

/// The future that tells a leader's work to stop.
pub type StopFuture = std::pin::Pin<Box<dyn Future<Output = ()> + Send + Sync + 'static>>;

/// Runs `work` while `leading` says so, until `shutdown`: starts it on gaining the lease,
/// stops it (its stop future resolves) on losing it, and starts it again on winning again.
/// Returns when `shutdown` resolves (after `work` returned) or when `work` fails.
pub async fn run_while_leading<W, Fut>(
    mut leading: watch::Receiver<bool>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
    mut work: W,
) -> Result<(), OperatorError>
where
    W: FnMut(StopFuture) -> Fut,
    Fut: Future<Output = Result<(), OperatorError>>,
{
    let shutdown = shutdown.shared();
    loop {
        tokio::select! {
            () = shutdown.clone() => return Ok(()),
            gained = leading.wait_for(|l| *l) => {
                if gained.is_err() {
                    return Ok(()); // The election ended.
                }
            }
        }
        info!("leading: starting");
        let mut lost = leading.clone();
        let (fire, fired) = tokio::sync::oneshot::channel::<()>();
        let watcher = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = shutdown => {}
                    _ = lost.wait_for(|l| !*l) => {}
                }
                let _ = fire.send(());
            })
        };
        let stop: StopFuture = Box::pin(async move {
            let _ = fired.await;
        });
        let result = work(stop).await;
        watcher.abort();
        result?;
        if shutdown.clone().now_or_never().is_some() {
            return Ok(());
        }
        warn!("lost the leader lease: stopped acting; standing by");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> LeaseConfig {
        LeaseConfig {
            namespace: "ns".into(),
            name: "spo-manager".into(),
            identity: "me".into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    fn record(holder: Option<&str>, renewed: i64) -> Record {
        Record {
            holder: holder.map(Into::into),
            renewed: Some(Timestamp::from_second(renewed).expect("time")),
            duration: Duration::from_secs(15),
            transitions: 0,
        }
    }

    #[test]
    fn a_missing_lease_is_created_and_a_free_one_taken() {
        let t0 = Instant::now();
        assert_eq!(decide(None, "me", t0), Step::Create);
        let free = observe(None, record(None, 1), t0);
        assert_eq!(decide(Some(&free), "me", t0), Step::Acquire);
        let mine = observe(None, record(Some("me"), 1), t0);
        assert_eq!(decide(Some(&mine), "me", t0), Step::Renew);
    }

    #[test]
    fn a_held_lease_is_taken_over_only_after_it_stopped_changing_for_its_duration() {
        let t0 = Instant::now();
        let o = observe(None, record(Some("other"), 1), t0);
        assert_eq!(
            decide(Some(&o), "me", t0 + Duration::from_secs(5)),
            Step::Follow {
                holder: "other".into(),
                expires_in: Duration::from_secs(10)
            }
        );
        // Renewed at t0+10: the age restarts from when we saw the renewal.
        let renewed = observe(Some(o.clone()), record(Some("other"), 2), t0 + Duration::from_secs(10));
        assert_eq!(renewed.since, t0 + Duration::from_secs(10));
        assert!(matches!(
            decide(Some(&renewed), "me", t0 + Duration::from_secs(20)),
            Step::Follow { .. }
        ));
        assert_eq!(
            decide(Some(&renewed), "me", t0 + Duration::from_secs(25)),
            Step::Acquire
        );
        // The same record seen again keeps its age.
        let again = observe(Some(o.clone()), record(Some("other"), 1), t0 + Duration::from_secs(14));
        assert_eq!(again.since, t0);
        assert_eq!(decide(Some(&again), "me", t0 + Duration::from_secs(15)), Step::Acquire);
    }

    #[test]
    fn a_leader_steps_down_before_anyone_may_take_over() {
        let c = config();
        c.validate().expect("valid");
        let t0 = Instant::now();
        assert!(!must_step_down(t0, t0 + Duration::from_secs(9), c.renew_deadline));
        assert!(must_step_down(t0, t0 + c.renew_deadline, c.renew_deadline));
        // A candidate needs lease_duration without change, which is longer.
        let o = observe(None, record(Some("leader"), 1), t0);
        assert!(matches!(
            decide(Some(&o), "me", t0 + c.renew_deadline),
            Step::Follow { .. }
        ));
        let bad = LeaseConfig {
            renew_deadline: Duration::from_secs(15),
            ..config()
        };
        assert!(bad.validate().is_err());
        let bad = LeaseConfig {
            retry_period: Duration::from_secs(10),
            ..config()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn leases_written_name_us_and_count_transitions() {
        let c = config();
        let now = Timestamp::from_second(100).expect("time");
        let created = lease_for(&Step::Create, None, &c, now);
        let spec = created.spec.clone().expect("spec");
        assert_eq!(spec.holder_identity.as_deref(), Some("me"));
        assert_eq!(spec.lease_duration_seconds, Some(15));
        assert_eq!(spec.lease_transitions, Some(0));
        assert_eq!(created.metadata.namespace.as_deref(), Some("ns"));

        let mut theirs = created.clone();
        theirs.spec = Some(LeaseSpec {
            holder_identity: Some("other".into()),
            lease_transitions: Some(3),
            ..spec.clone()
        });
        theirs.metadata.resource_version = Some("42".into());
        let taken = lease_for(&Step::Acquire, Some(&theirs), &c, now);
        let tspec = taken.spec.clone().expect("spec");
        assert_eq!(tspec.holder_identity.as_deref(), Some("me"));
        assert_eq!(tspec.lease_transitions, Some(4));
        assert_eq!(
            taken.metadata.resource_version.as_deref(),
            Some("42"),
            "writes are guarded"
        );

        let later = Timestamp::from_second(102).expect("time");
        let renewed = lease_for(&Step::Renew, Some(&taken), &c, later);
        let rspec = renewed.spec.clone().expect("spec");
        assert_eq!(rspec.renew_time, Some(MicroTime(later)));
        assert_eq!(rspec.acquire_time, tspec.acquire_time, "renewal keeps the acquire time");
        assert_eq!(rspec.lease_transitions, Some(4));

        let free = released(renewed, later);
        assert_eq!(Record::of(&free, c.lease_duration).holder, None);
        let o = observe(None, Record::of(&free, c.lease_duration), Instant::now());
        assert_eq!(decide(Some(&o), "other", Instant::now()), Step::Acquire);
    }

    #[tokio::test]
    async fn work_follows_the_leadership() {
        let (tx, rx) = watch::channel(false);
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = runs.clone();
        let supervisor = tokio::spawn(run_while_leading(
            rx,
            async move {
                let _ = done_rx.await;
            },
            move |stop| {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    stop.await;
                    Ok(())
                }
            },
        ));
        let wait_runs = |n: usize| {
            let runs = runs.clone();
            async move {
                while runs.load(std::sync::atomic::Ordering::SeqCst) < n {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            runs.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "no work without the lease"
        );
        tx.send_replace(true);
        wait_runs(1).await;
        tx.send_replace(false);
        tokio::time::sleep(Duration::from_millis(20)).await;
        tx.send_replace(true);
        wait_runs(2).await;
        let _ = done_tx.send(());
        supervisor.await.expect("join").expect("clean end");
    }
}
