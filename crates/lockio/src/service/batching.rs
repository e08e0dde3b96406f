//! `run_batches`: the shape the proposer, the forwarder and the read barrier share. Requests
//! queue on a channel; each time one of `in_flight` slots is free, everything queued (up to
//! `max_batch`) becomes one batch, handled on its own task. Under light load a batch is one
//! request, sent at once; under heavy load the requests that arrive while batches are in flight
//! form the next one.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, Semaphore};

/// Runs until the channel closes.
pub async fn run_batches<T, F, Fut>(mut queue: mpsc::Receiver<T>, in_flight: usize, max_batch: usize, mut handle: F)
where
    F: FnMut(Vec<T>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(in_flight));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let Some(first) = queue.recv().await else { return };
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let work = handle(batch);
        tokio::spawn(async move {
            work.await;
            drop(slot);
        });
    }
}
