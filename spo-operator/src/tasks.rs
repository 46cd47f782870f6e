//! Background tasks that end with their owner.

use std::future::Future;

use tokio::task::JoinHandle;

/// Tasks spawned by a control loop; dropping the set aborts them, so a loop that returns
/// (shutdown, lost leadership) leaves no watch running behind it.
#[derive(Debug, Default)]
pub struct Tasks(Vec<JoinHandle<()>>);

impl Tasks {
    /// Spawns `task` on the runtime and keeps its handle.
    pub fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        self.0.push(tokio::spawn(task));
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for handle in &self.0 {
            handle.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dropping_the_set_aborts_its_tasks() {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let mut tasks = Tasks::default();
        tasks.spawn(async move {
            let _tx = tx;
            std::future::pending::<()>().await;
        });
        drop(tasks);
        // The sender is dropped with the aborted task, so the channel closes.
        assert!(rx.recv().await.is_none());
    }
}
