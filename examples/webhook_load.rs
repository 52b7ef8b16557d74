//! An open-loop load generator for the webhook front door: sends one signed payload at a fixed
//! rate with a fresh `X-GitHub-Delivery` per request, and reports latency measured from each
//! request's scheduled send time (so a slow server cannot hide its queueing, unlike closed-loop
//! tools). Used for BENCHMARKS.md against Backspace and the FastAPI peer alike.
//!
//! cargo run --release --example webhook_load -- URL BODY_FILE SECRET EVENT RATE SECONDS

use std::sync::Arc;
use std::time::{Duration, Instant};

use backspace::webhook::signature::sign;
use tokio::sync::{Mutex, Semaphore};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, body_file, secret, event, rate, seconds] = &args[..] else {
        anyhow::bail!("usage: webhook_load URL BODY_FILE SECRET EVENT RATE SECONDS");
    };
    let body = bytes::Bytes::from(std::fs::read(body_file)?);
    let signature = sign(secret, &body);
    let rate: f64 = rate.parse()?;
    let seconds: f64 = seconds.parse()?;
    let total = (rate * seconds) as u64;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(512)
        .build()?;
    let in_flight = Arc::new(Semaphore::new(512));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(total as usize)));
    let failures = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let run = std::process::id();
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let scheduled = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(scheduled.into()).await;
        let permit = in_flight.clone().acquire_owned().await?;
        let (client, url, body, signature, event) = (
            client.clone(),
            url.clone(),
            body.clone(),
            signature.clone(),
            event.clone(),
        );
        let (latencies, failures) = (latencies.clone(), failures.clone());
        tasks.push(tokio::spawn(async move {
            let res = client
                .post(&url)
                .header("content-type", "application/json")
                .header("x-github-event", event)
                .header("x-github-delivery", format!("load-{run}-{i}"))
                .header("x-hub-signature-256", signature)
                .body(body)
                .send()
                .await;
            let ok = matches!(&res, Ok(r) if r.status().is_success());
            if !ok {
                failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            latencies.lock().await.push(scheduled.elapsed());
            drop(permit);
        }));
    }
    for t in tasks {
        t.await?;
    }
    let elapsed = start.elapsed();
    let mut l = latencies.lock().await.clone();
    l.sort();
    let pct = |p: f64| l[((l.len() as f64 * p) as usize).min(l.len() - 1)];
    println!(
        "requests {} in {:.2}s ({:.0}/s), non-2xx or failed {}, latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        l.len(),
        elapsed.as_secs_f64(),
        l.len() as f64 / elapsed.as_secs_f64(),
        failures.load(std::sync::atomic::Ordering::Relaxed),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.90).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        l[l.len() - 1].as_secs_f64() * 1e3,
    );
    Ok(())
}
