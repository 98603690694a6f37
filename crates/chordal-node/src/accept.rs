//! Accepting client connections for a front end (RESP, the DHT API):
//! bounded, and stopping when asked.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::warn;

/// Accepts connections on `listener` and runs `serve` for each in its own
/// task, at most `max_connections` at once (more wait in the listen
/// backlog), until `shutdown` completes. Accept errors (out of file
/// descriptors and the like) are logged and retried after a pause.
pub async fn serve_connections<F, Fut>(
    listener: TcpListener,
    max_connections: usize,
    shutdown: impl Future<Output = ()>,
    serve: F,
) -> std::io::Result<()>
where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(max_connections.max(1)));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
        };
        let socket = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => socket,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let connection = serve(socket);
        tokio::spawn(async move {
            connection.await;
            drop(permit);
        });
    }
}
