//! The eBPF side of the node recorder: one thread owns the loaded recorder and its
//! [`ContainerWatch`] (libbpf objects stay on the thread that made them); the async side talks
//! to it through requests.

use std::sync::mpsc;
use std::thread;

use spo_record::{ContainerOptions, ContainerWatch, LoadOptions, RawRecording, RecordError, Recorder, WatchId};
use tokio::sync::oneshot;

/// A container's recording, with its cgroup directory name.
#[derive(Debug)]
pub struct Collected {
    /// The container's cgroup name (holds its container id).
    pub cgroup: String,
    /// What it did.
    pub recording: RawRecording,
}

enum Request {
    Watch {
        names: Vec<String>,
        options: ContainerOptions,
        reply: oneshot::Sender<Result<Vec<WatchId>, RecordError>>,
    },
    Collect {
        watches: Vec<WatchId>,
        reply: oneshot::Sender<Result<Vec<Collected>, RecordError>>,
    },
    Lost {
        reply: oneshot::Sender<u64>,
    },
    Exited {
        reply: oneshot::Sender<Result<Vec<(WatchId, String)>, RecordError>>,
    },
    CollectOne {
        watch: WatchId,
        cgroup: String,
        reply: oneshot::Sender<Result<Option<Collected>, RecordError>>,
    },
}

/// Why the engine could not answer.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The recorder failed.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The recorder's thread is gone (it panicked or the engine was dropped).
    #[error("the recorder thread has stopped")]
    Stopped,
}

/// The recorder thread's handle. Dropping it ends the thread, which detaches every program.
#[derive(Debug, Clone)]
pub struct Engine {
    tx: mpsc::Sender<Request>,
}

impl Engine {
    /// Loads the recorder and starts watching, on a thread of its own; returns once the
    /// programs are attached (or why they could not be).
    pub fn start() -> Result<Engine, EngineError> {
        let (tx, rx) = mpsc::channel::<Request>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), RecordError>>();
        thread::Builder::new()
            .name("spo-recorder".into())
            .spawn(move || {
                // With the resource programs: AppArmor recordings need them, and they are
                // attached only while a watch records resources.
                let options = LoadOptions {
                    resources: true,
                    ..LoadOptions::default()
                };
                let watch = match Recorder::load_with(&options).and_then(ContainerWatch::start) {
                    Ok(watch) => {
                        let _ = ready_tx.send(Ok(()));
                        watch
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                serve(watch, &rx);
            })
            .map_err(|_| EngineError::Stopped)?;
        ready_rx.recv().map_err(|_| EngineError::Stopped)??;
        Ok(Engine { tx })
    }

    /// Watches the cgroup names of one pod, recording its containers as `options` say.
    pub async fn watch(&self, names: Vec<String>, options: ContainerOptions) -> Result<Vec<WatchId>, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Watch { names, options, reply })
            .map_err(|_| EngineError::Stopped)?;
        Ok(rx.await.map_err(|_| EngineError::Stopped)??)
    }

    /// Stops watching `watches` and returns the recordings of their containers.
    pub async fn collect(&self, watches: Vec<WatchId>) -> Result<Vec<Collected>, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Collect { watches, reply })
            .map_err(|_| EngineError::Stopped)?;
        Ok(rx.await.map_err(|_| EngineError::Stopped)??)
    }

    /// Containers of any watch that ran under a filter and have no process left.
    pub async fn exited(&self) -> Result<Vec<(WatchId, String)>, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Exited { reply })
            .map_err(|_| EngineError::Stopped)?;
        Ok(rx.await.map_err(|_| EngineError::Stopped)??)
    }

    /// Ends the recording of one container (the watch goes on) and returns it.
    pub async fn collect_one(&self, watch: WatchId, cgroup: String) -> Result<Option<Collected>, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::CollectOne { watch, cgroup, reply })
            .map_err(|_| EngineError::Stopped)?;
        Ok(rx.await.map_err(|_| EngineError::Stopped)??)
    }

    /// Containers that were not recorded because every target was taken.
    pub async fn containers_without_target(&self) -> Result<u64, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Lost { reply })
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)
    }
}

/// How often the kernel's file and program events are taken while nothing is asked: its ring
/// buffer holds about 450 events.
const DRAIN_EVERY: std::time::Duration = std::time::Duration::from_millis(50);

fn serve(mut watch: ContainerWatch, rx: &mpsc::Receiver<Request>) {
    let mut drained = std::time::Instant::now();
    loop {
        // Requests may come more often than the drain is due (the exit check, every 100 ms).
        if drained.elapsed() >= DRAIN_EVERY {
            watch.drain();
            drained = std::time::Instant::now();
        }
        let request = match rx.recv_timeout(DRAIN_EVERY) {
            Ok(request) => request,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        match request {
            Request::Watch { names, options, reply } => {
                let result = names.iter().map(|n| watch.watch_with(n, options)).collect();
                let _ = reply.send(result);
            }
            Request::Collect { watches, reply } => {
                let mut out = Vec::new();
                let mut failed = None;
                for w in watches {
                    match watch.unwatch(w) {
                        Ok(found) => out.extend(
                            found
                                .into_iter()
                                .map(|(cgroup, recording)| Collected { cgroup, recording }),
                        ),
                        Err(e) => failed = Some(e),
                    }
                }
                let _ = reply.send(failed.map_or(Ok(out), Err));
            }
            Request::Lost { reply } => {
                let _ = reply.send(watch.containers_without_target());
            }
            Request::Exited { reply } => {
                let _ = reply.send(watch.exited());
            }
            Request::CollectOne {
                watch: w,
                cgroup,
                reply,
            } => {
                let result = watch
                    .collect(w, &cgroup)
                    .map(|found| found.map(|recording| Collected { cgroup, recording }));
                let _ = reply.send(result);
            }
        }
    }
}
