//! Why the fence token matters: a toy store that refuses any write carrying a lower token than
//! the highest it has seen, and two workers contending for the lock that guards it.
//!
//! Worker A takes the lock, writes, checks that its session is alive, and then stalls before
//! its next write — the way a process stalls in a long GC pause, a swap storm or a suspended
//! VM. Its keepalives stall with it, the cluster expires its session, and worker B gets the
//! lock with a higher token and writes. When A wakes up it still "holds" the lock as far as it
//! knows, and writes. Without fencing that write would silently overwrite B's; with it, the
//! store refuses it.
//!
//! Run it against `lockio dev` (about 6 seconds, most of it A's 5 s session timeout):
//!
//! ```sh
//! cargo run -p lockio-client --example fenced_store
//! ```
//!
//! `LOCKIO_ENDPOINTS=host:port,host:port` points it at another cluster.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lockio_client::{Client, Error, FenceToken};

/// The protected resource: it remembers the highest fence token it has seen and refuses lower
/// ones. This check, in the resource itself, is what makes the lock safe.
#[derive(Default)]
struct FencedStore {
    /// A std mutex: a few instructions per write, never held across an await.
    state: Mutex<StoreState>,
}

#[derive(Default)]
struct StoreState {
    highest: Option<FenceToken>,
    writes: Vec<(FenceToken, String)>,
}

impl FencedStore {
    fn write(&self, token: FenceToken, value: &str) -> Result<(), String> {
        let mut state = self.state.lock().unwrap();
        if let Some(highest) = state.highest {
            if token < highest {
                return Err(format!("fence token {token} is lower than {highest}, the highest this store has seen"));
            }
        }
        state.highest = Some(token);
        state.writes.push((token, value.to_string()));
        Ok(())
    }
}

const RESOURCE: &str = "toy-store";

fn endpoints() -> Vec<String> {
    std::env::var("LOCKIO_ENDPOINTS")
        .unwrap_or_else(|_| "127.0.0.1:5000,127.0.0.1:5001,127.0.0.1:5002".into())
        .split(',')
        .map(str::to_string)
        .collect()
}

/// Worker A, on its own thread and runtime, so that stalling the thread stalls everything A
/// does, its session's keepalives included — as a real pause would. Its own `Client` too: a
/// client's connections belong to the runtime that opened them.
fn worker_a(store: Arc<FencedStore>, locked: mpsc::Sender<()>, b_wrote: mpsc::Receiver<()>) -> Result<bool, Error> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async move {
        let client = Client::new(endpoints())?;
        let session = client.open_session("worker-a", Duration::from_secs(5)).await?;
        let guard = session.lock(RESOURCE).await?;
        let token = guard.fence_token();
        println!("worker-a: holds {RESOURCE} with fence token {token}");
        store.write(token, "written by worker-a").expect("the first write is accepted");
        println!("worker-a: wrote with token {token}: accepted");
        println!("worker-a: session is {:?}; about to write again... and stalls", session.state());
        locked.send(()).unwrap();

        // The stall: this thread (and with it A's runtime and keepalive task) stops until
        // worker B has written, well past A's 5 s session timeout.
        b_wrote.recv_timeout(Duration::from_secs(60)).expect("worker-b writes");

        println!("worker-a: wakes up and writes with token {token}, as it was about to");
        let refused = match store.write(token, "written by worker-a after its stall") {
            Ok(()) => {
                println!("worker-a: accepted: worker-b's write is lost!");
                false
            }
            Err(why) => {
                println!("worker-a: refused by the store: {why}");
                true
            }
        };
        println!("worker-a: its session is now {:?}", session.state());
        drop(guard);
        session.close().await?;
        Ok(refused)
    })
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let client = Client::new(endpoints())?;
    let store = Arc::new(FencedStore::default());
    let (locked_tx, locked) = mpsc::channel();
    let (b_wrote, b_wrote_rx) = mpsc::channel();
    let a = {
        let store = store.clone();
        std::thread::spawn(move || worker_a(store, locked_tx, b_wrote_rx))
    };
    tokio::task::spawn_blocking(move || locked.recv()).await.unwrap().expect("worker-a takes the lock");

    // Worker B: waits in the server's queue; the lock comes to it the moment A's session expires.
    let session = client.open_session("worker-b", Duration::from_secs(10)).await?;
    let started = Instant::now();
    println!("worker-b: waiting for {RESOURCE}");
    let guard = session.lock_wait(RESOURCE, Duration::from_secs(30)).await?;
    let token = guard.fence_token();
    println!("worker-b: got {RESOURCE} after {:.1}s with fence token {token}", started.elapsed().as_secs_f64());
    store.write(token, "written by worker-b").expect("worker-b holds the highest token");
    println!("worker-b: wrote with token {token}: accepted");
    b_wrote.send(()).unwrap();

    let refused = a.join().expect("worker-a runs")?;
    guard.release().await?;
    session.close().await?;
    println!(
        "store: {:?}",
        store.state.lock().unwrap().writes.iter().map(|(t, v)| format!("{t}: {v}")).collect::<Vec<_>>()
    );
    if !refused {
        std::process::exit(1);
    }
    Ok(())
}
