//! What the operator benches share.

use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use kube::api::{Api, PostParams};

/// Creates `n` objects made by `make`, 32 requests in flight; an object that already exists
/// counts as created. Returns the time taken.
pub async fn create_all<K, F>(api: Api<K>, n: usize, make: F) -> Duration
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
    F: Fn(usize) -> K,
{
    let start = Instant::now();
    let pp = PostParams::default();
    stream::iter(0..n)
        .map(|i| {
            let (api, obj, pp) = (api.clone(), make(i), pp.clone());
            async move {
                match api.create(&pp, &obj).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 409 => {}
                    Err(e) => panic!("create: {e}"),
                }
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    start.elapsed()
}
