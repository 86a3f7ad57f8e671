//! An async worker: axum on tokio, under clutch. On shutdown each worker stops accepting,
//! lets the requests in flight finish, and exits; the master waits for all of them.
//!
//! ```sh
//! cargo run --release --example async
//! curl http://localhost:5000/            # Worker: <id>
//! curl http://localhost:5000/slow &      # answers after 2 s…
//! kill -TERM <master pid>                # …even when a shutdown starts meanwhile
//! ```
//!
//! `PORT`, `HOST` and `WORKERS` as in `examples/hello.rs`. The master needs no runtime:
//! only a worker starts tokio.

use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use clutch_unix::{Cluster, Log, Role, Worker};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let host = std::env::var("HOST").unwrap_or_else(|_| "0.0.0.0".to_owned());
    let port = std::env::var("PORT").unwrap_or_else(|_| "5000".to_owned());
    let mut cluster = Cluster::builder();
    cluster.listen(format!("{host}:{port}")).log(Log::Stderr);
    if let Ok(workers) = std::env::var("WORKERS") {
        cluster.workers(workers.parse()?);
    }
    match cluster.start()? {
        Role::Master(master) => master.run_and_exit(),
        Role::Worker(worker) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            runtime.block_on(serve(worker))
        }
    }
}

async fn serve(mut worker: Worker) -> Result<(), Box<dyn std::error::Error>> {
    let listener = worker
        .take_tcp_listener()
        .ok_or("no TCP listener was passed to this worker")?;
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let app = Router::new()
        .route("/", get(hello))
        .route("/slow", get(slow))
        .with_state(worker.id());
    worker.ready()?;
    // `requested()` is a plain future: axum stops accepting when it completes, then waits
    // for the connections in flight.
    axum::serve(listener, app)
        .with_graceful_shutdown(worker.shutdown().requested())
        .await?;
    Ok(())
}

async fn hello(State(id): State<u64>) -> String {
    format!("Worker: {id}")
}

async fn slow(State(id): State<u64>) -> String {
    tokio::time::sleep(Duration::from_secs(2)).await;
    format!("Worker: {id} (slow)")
}
