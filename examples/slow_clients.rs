//! Slow clients against a server, as an outsider would hold them: COUNT connections kept open at
//! once for SECONDS, half sending half a request head, half sending a whole webhook head with
//! `Content-Length: 20 MiB` and then one body byte every 3 s; a connection the server closes is
//! opened again at once. Reports how many were opened and how long the server took to close
//! them (or that it did not). Used for BENCHMARKS.md with `webhook_load` running beside it.
//!
//! cargo run --release --example slow_clients -- HOST:PORT COUNT SECONDS

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

const HALF_HEAD: &[u8] = b"POST /api/github/webhooks HTTP/1.1\r\nHost: bench\r\nX-GitHub-Event: issue_comment\r\nX-GitHub-Deliv";

fn body_head() -> Vec<u8> {
    format!(
        "POST /api/github/webhooks HTTP/1.1\r\nHost: bench\r\nX-GitHub-Event: issue_comment\r\nX-GitHub-Delivery: slow\r\nX-Hub-Signature-256: sha256={}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{{",
        "0".repeat(64),
        20 << 20
    )
    .into_bytes()
}

/// How one connection ended.
enum End {
    /// The server closed it this long after it was opened.
    Closed(Duration),
    /// Still open when the run ended, this long after it was opened.
    Open(Duration),
    /// Could not connect (refused, out of descriptors).
    Failed,
}

/// One slow connection, held until the server closes it or `until`.
async fn hold(addr: &str, with_body: bool, until: Instant) -> End {
    let opened = Instant::now();
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return End::Failed;
    };
    let first: &[u8] = if with_body { &body_head() } else { HALF_HEAD };
    if s.write_all(first).await.is_err() {
        return End::Closed(opened.elapsed());
    }
    let mut buf = [0u8; 1024];
    loop {
        let tick = tokio::time::sleep(Duration::from_secs(3));
        tokio::select! {
            read = s.read(&mut buf) => match read {
                Ok(0) | Err(_) => return End::Closed(opened.elapsed()),
                Ok(_) => {} // an answer (a 503, a 408): wait for the close
            },
            _ = tick => {
                if Instant::now() >= until {
                    return End::Open(opened.elapsed());
                }
                if s.write_all(b" ").await.is_err() {
                    return End::Closed(opened.elapsed());
                }
            }
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, count, seconds] = &args[..] else {
        anyhow::bail!("usage: slow_clients HOST:PORT COUNT SECONDS");
    };
    let count: usize = count.parse()?;
    let until = Instant::now() + Duration::from_secs(seconds.parse()?);
    let closed = Arc::new(Mutex::new(Vec::new()));
    let open = Arc::new(Mutex::new(Vec::new()));
    let failed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..count {
        let (addr, closed, open, failed) =
            (addr.clone(), closed.clone(), open.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            // Each slot keeps one slow connection open until the end.
            while Instant::now() < until {
                match hold(&addr, i % 2 == 1, until).await {
                    End::Closed(d) => closed.lock().await.push(d),
                    End::Open(age) => open.lock().await.push(age),
                    End::Failed => {
                        failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }));
        // Open them over the first second, not in one burst.
        if i % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    for t in tasks {
        t.await?;
    }
    let mut closed = closed.lock().await.clone();
    closed.sort();
    let open = open.lock().await.clone();
    let failed = failed.load(std::sync::atomic::Ordering::Relaxed);
    let minute = Duration::from_secs(60);
    // Of the connections that were (or would have been) a minute old, how many the server
    // closed within that minute.
    let within_60 = closed.iter().filter(|d| **d <= minute).count();
    let old_enough = closed.len() + open.iter().filter(|a| **a >= minute).count();
    let held = closed.len() + open.len();
    let pct = |p: f64| {
        closed
            .get(((closed.len() as f64 * p) as usize).min(closed.len().saturating_sub(1)))
            .map_or(f64::NAN, |d| d.as_secs_f64())
    };
    println!(
        "slow connections {held} ({count} at once), closed by the server {} ({:.1} % of those a minute old closed within 60 s), still open at the end {}, connects failed {failed}; time to close p50 {:.1} s, p99 {:.1} s",
        closed.len(),
        100.0 * within_60 as f64 / old_enough.max(1) as f64,
        open.len(),
        pct(0.50),
        pct(0.99),
    );
    Ok(())
}
