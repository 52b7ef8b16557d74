//! The egress proxy's cost: a 50 MB download and small requests from a local HTTP server on
//! the host's loopback, fetched by `curl` directly on the host and by `curl` in a sandbox
//! through the forwarder and the proxy, on the same machine. curl's own timers are read, so the
//! time to start a command in the sandbox is not counted. Run by scripts/bench-egress.sh.
//!
//!     cargo run --release --example egress_bench -- [runs]

use std::time::Duration;

use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use backspace::egress::{Allowlist, Limits, Plan, Session};
use backspace::sandbox::{ExecSpec, Sandbox, SandboxSettings, Sandboxes};

const BIG: u64 = 50 * 1024 * 1024;
const TIMING: &str = "%{time_starttransfer} %{time_total} %{speed_download}";

async fn bytes(Path(n): Path<u64>) -> axum::body::Body {
    let chunk = bytes::Bytes::from(vec![b'x'; 64 * 1024]);
    let count = n.div_ceil(chunk.len() as u64);
    let stream =
        futures::stream::iter((0..count).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    axum::body::Body::from_stream(stream)
}

/// `time_starttransfer time_total speed_download` of each run.
type Timings = Vec<(f64, f64, f64)>;

fn parse(out: &str) -> Option<(f64, f64, f64)> {
    let mut it = out.split_whitespace().map(|v| v.parse::<f64>().ok());
    Some((it.next()??, it.next()??, it.next()??))
}

async fn host_curl(url: &str) -> Option<(f64, f64, f64)> {
    let out = tokio::process::Command::new("curl")
        .args(["-fsS", "-o", "/dev/null", "-w", TIMING, url])
        .output()
        .await
        .ok()?;
    parse(&String::from_utf8_lossy(&out.stdout))
}

async fn sandbox_curl(sandbox: &Sandbox, url: &str) -> Option<(f64, f64, f64)> {
    let command = format!("curl -fsS --noproxy '' -o /dev/null -w '{TIMING}' {url}");
    let spec = ExecSpec::new(command).timeout(Duration::from_secs(300));
    let out = sandbox.exec(spec).await.ok()?;
    parse(&out.stdout)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn report(name: &str, small: &Timings, big: &Timings) {
    let latency = median(small.iter().map(|t| t.1 * 1000.0).collect());
    let first_byte = median(big.iter().map(|t| t.0 * 1000.0).collect());
    let total = median(big.iter().map(|t| t.1).collect());
    let speed = median(big.iter().map(|t| t.2 / 1e6).collect());
    println!(
        "{name:<28} small request {latency:7.2} ms | 50 MB: first byte {first_byte:6.2} ms, \
         total {total:6.3} s, {speed:7.1} MB/s"
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    let app = Router::new().route("/bytes/{n}", get(bytes));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let small_url = format!("http://127.0.0.1:{port}/bytes/1024");
    let big_url = format!("http://127.0.0.1:{port}/bytes/{BIG}");

    let settings = SandboxSettings {
        image: std::env::var("BACKSPACE_SANDBOX_IMAGE")
            .unwrap_or_else(|_| "backspace-sandbox:test".into()),
        ..SandboxSettings::default()
    };
    let sandboxes = Sandboxes::connect(settings).await?;
    let repo = tempfile::tempdir()?;
    std::fs::write(repo.path().join("README.md"), "bench\n")?;
    let sandbox = sandboxes.create("egress-bench", repo.path()).await?;
    let (tx, _events) = tokio::sync::mpsc::unbounded_channel();
    let plan = Plan {
        allow: Allowlist::parse("127.0.0.1")?,
        operator: Allowlist::parse("127.0.0.1")?,
        engine_addresses: vec![],
        limits: Limits::default(),
    };
    let session = Session::start(&sandbox, plan, tx).await?;

    let (mut host_small, mut host_big, mut proxy_small, mut proxy_big) =
        (vec![], vec![], vec![], vec![]);
    for _ in 0..runs * 4 {
        host_small.extend(host_curl(&small_url).await);
        proxy_small.extend(sandbox_curl(&sandbox, &small_url).await);
    }
    for _ in 0..runs {
        host_big.extend(host_curl(&big_url).await);
        proxy_big.extend(sandbox_curl(&sandbox, &big_url).await);
    }
    println!(
        "medians of {} small requests and {runs} downloads of 50 MiB each way",
        runs * 4
    );
    report("direct (host curl)", &host_small, &host_big);
    report("through the egress proxy", &proxy_small, &proxy_big);
    session.stop(&sandbox).await;
    sandbox.destroy().await?;
    Ok(())
}
