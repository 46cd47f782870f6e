//! A work queue of object names for the node daemon's reconcilers, and the loop that runs
//! them.
//!
//! kube-runtime's `Controller` keeps, per controller, a scheduler hash map, a pending set, a
//! delay-queue slab and a runner table, each keyed by a full `ObjectRef` (name, namespace,
//! resource version and uid as separate strings). A burst of N profiles grows all of them to N
//! entries and none of them ever shrinks again: with two controllers per kind that was 2.5 KB
//! a profile of the daemon's live heap after a burst, as much as the watch caches themselves
//! (docs/benchmarks.md, "Where the live heap goes"). This queue keeps one shared `Arc<str>`
//! per queued name and gives its tables back once a burst has drained.
//!
//! The semantics are those of a controller work queue:
//!
//! - a name is queued at most once; queuing it again keeps the earlier due time;
//! - a name is never worked on twice at once: triggered while it runs, it runs again once
//!   the running pass is done (at the earliest time it was triggered for);
//! - a pass ends with an optional requeue delay (failures, periodic re-checks);
//! - [`run`] works on at most `concurrency` names at once and, when shut down, finishes the
//!   passes under way before returning.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::cache::give_back_unused;

/// A queued name, shared by the queue's tables.
pub type Key = Arc<str>;

#[derive(Debug, Default)]
struct State {
    /// Waiting names by due time, then arrival order.
    due: BTreeSet<(Instant, u64, Key)>,
    /// Each waiting name's place in `due`.
    waiting: HashMap<Key, (Instant, u64)>,
    /// Names being worked on, with the earliest time each was triggered again meanwhile.
    running: HashMap<Key, Option<Instant>>,
    /// Arrival counter (keeps equal due times in order).
    seq: u64,
}

impl State {
    /// Queues `key` for `at`, unless it waits for an earlier time already; a running key is
    /// marked to run again when its pass ends. Returns whether the queue's earliest due time
    /// may have changed.
    fn add(&mut self, key: &str, at: Instant) -> bool {
        if let Some(again) = self.running.get_mut(key) {
            *again = Some(again.map_or(at, |t| t.min(at)));
            return false;
        }
        if let Some((t, seq)) = self.waiting.get(key).copied() {
            if t <= at {
                return false;
            }
            if let Some((_, _, k)) = self.due.take(&(t, seq, Arc::from(key))) {
                self.waiting.remove(key);
                self.insert(k, at);
                return true;
            }
        }
        self.insert(Arc::from(key), at);
        true
    }

    fn insert(&mut self, key: Key, at: Instant) {
        self.seq = self.seq.wrapping_add(1);
        self.waiting.insert(key.clone(), (at, self.seq));
        self.due.insert((at, self.seq, key));
    }

    /// The first name due at `now`, moved to the running set; else when the next one is due.
    fn pop(&mut self, now: Instant) -> Result<Key, Option<Instant>> {
        match self.due.first() {
            Some((at, _, _)) if *at <= now => {}
            first => return Err(first.map(|(at, _, _)| *at)),
        }
        let (_, _, key) = self.due.pop_first().ok_or(None)?;
        self.waiting.remove(&key);
        give_back_unused(&mut self.waiting);
        self.running.insert(key.clone(), None);
        Ok(key)
    }

    /// Ends the pass over `key`: it is queued again for the earlier of the time it was
    /// triggered for meanwhile and `requeue` (counted from `now`).
    fn done(&mut self, key: &Key, requeue: Option<Duration>, now: Instant) {
        let again = self.running.remove(key).flatten();
        give_back_unused(&mut self.running);
        let requeue = requeue.map(|d| now + d);
        let at = match (again, requeue) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(at) = at {
            self.insert(key.clone(), at);
        }
    }
}

/// Names waiting to be worked on; see the module documentation.
#[derive(Debug, Default)]
pub struct WorkQueue {
    state: Mutex<State>,
    wake: Notify,
}

impl WorkQueue {
    /// A new, empty queue.
    pub fn new() -> Arc<Self> {
        Arc::new(WorkQueue::default())
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues `key` to be worked on now.
    pub fn add(&self, key: &str) {
        self.add_at(key, Instant::now());
    }

    /// Queues `key` to be worked on after `delay` (unless it is due earlier already).
    pub fn add_after(&self, key: &str, delay: Duration) {
        self.add_at(key, Instant::now() + delay);
    }

    fn add_at(&self, key: &str, at: Instant) {
        if self.state().add(key, at) {
            self.wake.notify_one();
        }
    }

    /// How many names wait or are being worked on.
    pub fn len(&self) -> usize {
        let s = self.state();
        s.waiting.len() + s.running.len()
    }

    /// Whether no name waits or is being worked on.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn pop(&self) -> Result<Key, Option<Instant>> {
        self.state().pop(Instant::now())
    }

    fn done(&self, key: &Key, requeue: Option<Duration>) {
        self.state().done(key, requeue, Instant::now());
        // A name triggered while it ran may be due now.
        self.wake.notify_one();
    }
}

/// Works on the queue's names, at most `concurrency` at once, until `shutdown` resolves;
/// then finishes the passes under way. `work` returns when to look at the name again
/// (`None`: only when it is queued again).
pub async fn run<F, Fut>(queue: Arc<WorkQueue>, concurrency: usize, shutdown: impl Future<Output = ()>, mut work: F)
where
    F: FnMut(Key) -> Fut,
    Fut: Future<Output = Option<Duration>>,
{
    let concurrency = concurrency.max(1);
    let mut passes = FuturesUnordered::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let mut next_due = None;
        while passes.len() < concurrency {
            match queue.pop() {
                Ok(key) => {
                    let pass = work(key.clone());
                    passes.push(async move { (key, pass.await) });
                }
                Err(next) => {
                    next_due = next;
                    break;
                }
            }
        }
        let room = passes.len() < concurrency;
        let sleep = tokio::time::sleep_until(next_due.unwrap_or_else(Instant::now));
        tokio::select! {
            () = &mut shutdown => break,
            Some((key, requeue)) = passes.next(), if !passes.is_empty() => queue.done(&key, requeue),
            () = queue.wake.notified(), if room => {}
            () = sleep, if room && next_due.is_some() => {}
        }
    }
    while let Some((key, requeue)) = passes.next().await {
        queue.done(&key, requeue);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn a_name_waits_once_with_its_earliest_time() {
        let now = t0();
        let mut s = State::default();
        assert!(s.add("a", now + Duration::from_secs(5)));
        assert!(
            !s.add("a", now + Duration::from_secs(9)),
            "a later time changes nothing"
        );
        assert!(s.add("a", now + Duration::from_secs(1)), "an earlier time moves it");
        assert_eq!(s.due.len(), 1);
        assert_eq!(s.waiting.len(), 1);
        assert_eq!(s.pop(now), Err(Some(now + Duration::from_secs(1))));
        assert_eq!(s.pop(now + Duration::from_secs(1)).as_deref(), Ok("a"));
        assert_eq!(s.pop(now + Duration::from_secs(60)), Err(None));
    }

    #[test]
    fn names_come_out_in_due_order_then_arrival_order() {
        let now = t0();
        let mut s = State::default();
        s.add("b", now);
        s.add("a", now);
        s.add("c", now - Duration::from_millis(1));
        let order: Vec<String> = std::iter::from_fn(|| s.pop(now).ok().map(|k| k.to_string())).collect();
        assert_eq!(order, ["c", "b", "a"]);
    }

    #[test]
    fn a_running_name_is_not_handed_out_again_but_reruns_after_its_pass() {
        let now = t0();
        let mut s = State::default();
        s.add("a", now);
        let key = s.pop(now).expect("due");
        assert!(!s.add("a", now), "triggered while running");
        assert_eq!(s.pop(now), Err(None), "not handed out twice at once");
        s.done(&key, Some(Duration::from_secs(30)), now);
        assert_eq!(s.pop(now).as_deref(), Ok("a"), "the trigger beats the requeue");
        s.done(&key, None, now);
        assert_eq!(
            s.pop(now + Duration::from_secs(3600)),
            Err(None),
            "nothing asked for it again"
        );
    }

    #[test]
    fn a_pass_may_requeue_its_name() {
        let now = t0();
        let mut s = State::default();
        s.add("a", now);
        let key = s.pop(now).expect("due");
        s.done(&key, Some(Duration::from_secs(2)), now);
        assert_eq!(
            s.pop(now + Duration::from_secs(1)),
            Err(Some(now + Duration::from_secs(2)))
        );
        assert_eq!(s.pop(now + Duration::from_secs(2)).as_deref(), Ok("a"));
    }

    #[test]
    fn tables_are_given_back_after_a_burst() {
        let now = t0();
        let mut s = State::default();
        for i in 0..10_000 {
            s.add(&format!("profile-{i}"), now);
        }
        let big = s.waiting.capacity();
        assert!(big >= 10_000);
        while let Ok(key) = s.pop(now) {
            s.done(&key, None, now);
        }
        assert!(s.waiting.is_empty() && s.running.is_empty() && s.due.is_empty());
        assert!(
            s.waiting.capacity() <= 64 && s.running.capacity() <= 64,
            "capacity {} (was {big}) and {}",
            s.waiting.capacity(),
            s.running.capacity()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn run_bounds_concurrency_never_overlaps_a_name_and_drains_on_shutdown() {
        let queue = WorkQueue::new();
        for i in 0..20 {
            queue.add(&format!("p{}", i % 10));
        }
        assert_eq!(queue.len(), 10);
        let active = Arc::new(Mutex::new(std::collections::HashSet::<String>::new()));
        let (peak, passes) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let p0_requeued = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let worker = {
            let (queue, active, peak, passes) = (queue.clone(), active.clone(), peak.clone(), passes.clone());
            tokio::spawn(run(
                queue,
                3,
                async move {
                    let _ = stop_rx.await;
                },
                move |key| {
                    let (active, peak, passes) = (active.clone(), peak.clone(), passes.clone());
                    let p0_requeued = p0_requeued.clone();
                    async move {
                        {
                            let mut a = active.lock().expect("lock");
                            assert!(a.insert(key.to_string()), "{key} worked on twice at once");
                            peak.fetch_max(a.len(), Ordering::SeqCst);
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        active.lock().expect("lock").remove(&*key);
                        passes.fetch_add(1, Ordering::SeqCst);
                        // p0's first pass asks to be looked at again later; it was triggered
                        // meanwhile, so it runs once more, at the earlier time.
                        (&*key == "p0" && !p0_requeued.swap(true, Ordering::SeqCst)).then(|| Duration::from_secs(1))
                    }
                },
            ))
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        // Triggered while running: runs once more afterwards.
        queue.add("p0");
        queue.add("p1");
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(queue.is_empty(), "{} left", queue.len());
        assert!(peak.load(Ordering::SeqCst) <= 3, "peak {}", peak.load(Ordering::SeqCst));
        let done = passes.load(Ordering::SeqCst);
        assert_eq!(done, 12, "10 names, then p0 and p1 once more");
        // A pass under way when shutdown comes is finished.
        queue.add("late");
        tokio::time::sleep(Duration::from_millis(1)).await;
        stop_tx.send(()).expect("stop");
        worker.await.expect("worker");
        assert!(active.lock().expect("lock").is_empty());
        assert_eq!(passes.load(Ordering::SeqCst), done + 1);
    }
}
