//! The egress proxy against the real Docker engine and the `backspace-sandbox:test` image, with
//! a local HTTP server on the host's loopback standing in for a package registry (reachable
//! because the operator lists 127.0.0.1 by address): what the sandbox reaches through the
//! forwarder, what it is refused and how the refusal is told and reported, that the container
//! still has no interface but loopback, and a whole run from comment to pull request whose setup
//! and agent both fetch through it. `CI=true` turns a missing engine into a failure.

mod support;
use support::{run_id, within};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::Router;
use backspace::egress::{self, Allowlist, Plan, Session};
use backspace::job::JobState;
use backspace::run_event::RunEvent;
use backspace::sandbox::{ExecOutput, ExecSpec, Sandbox, SandboxSettings};
use support::bot::{Bot, Options, MAINTAINER};
use support::docker;
use support::fake_anthropic::{Reply, Step};

fn small_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("README.md"), "# test repo\n").expect("write");
    dir
}

async fn sh(sandbox: &Sandbox, command: &str) -> ExecOutput {
    sandbox
        .exec(ExecSpec::new(command).timeout(Duration::from_secs(60)))
        .await
        .unwrap_or_else(|e| panic!("exec {command:?} failed: {e}"))
}

/// A stand-in package registry on the host's loopback: `GET /pkg/{name}` answers the package's
/// contents and counts the request.
struct Registry {
    port: u16,
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl Registry {
    async fn start() -> Registry {
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        async fn package(
            State(hits): State<Arc<Mutex<HashMap<String, usize>>>>,
            Path(name): Path<String>,
        ) -> String {
            *hits.lock().expect("hits").entry(name.clone()).or_default() += 1;
            format!("contents of {name}\n")
        }
        let app = Router::new()
            .route("/pkg/{name}", get(package))
            .with_state(hits.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Registry { port, hits }
    }

    fn hits(&self, name: &str) -> usize {
        self.hits
            .lock()
            .expect("hits")
            .get(name)
            .copied()
            .unwrap_or(0)
    }
}

fn plan(allow: &str, operator: &str) -> Plan {
    Plan {
        allow: Allowlist::parse(allow).expect("allow"),
        operator: Allowlist::parse(operator).expect("operator"),
        engine_addresses: vec![],
        limits: egress::Limits::default(),
    }
}

fn blocked(events: &mut tokio::sync::mpsc::UnboundedReceiver<RunEvent>) -> Vec<RunEvent> {
    let mut out = vec![];
    while let Ok(e) = events.try_recv() {
        if matches!(e, RunEvent::EgressBlocked { .. }) {
            out.push(e);
        }
    }
    out
}

/// An IPv4 address as one decimal number: a name the allowlist takes as a name and the resolver
/// as that address, the way an allowed name that resolves somewhere private would.
fn decimal(ip: &str) -> String {
    let ip: std::net::Ipv4Addr = ip.parse().expect("ipv4");
    u32::from(ip).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_host_answers_through_the_proxy_and_another_is_refused_with_a_reason() {
    let Some(sandboxes) = docker::sandboxes().await else {
        return;
    };
    let registry = Registry::start().await;
    within(120, async {
        let repo = small_repo();
        let sandbox = sandboxes
            .create(&run_id("egress"), repo.path())
            .await
            .expect("create");
        let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
        let session = Session::start(&sandbox, plan("127.0.0.1", "127.0.0.1"), tx)
            .await
            .expect("the forwarder starts");
        let env = sh(&sandbox, "env | grep -i _proxy= | sort").await;
        assert_eq!(
            env.stdout,
            "HTTPS_PROXY=http://127.0.0.1:3128\nHTTP_PROXY=http://127.0.0.1:3128\n\
             NO_PROXY=localhost,127.0.0.1,::1\nhttp_proxy=http://127.0.0.1:3128\n\
             https_proxy=http://127.0.0.1:3128\nno_proxy=localhost,127.0.0.1,::1\n"
        );
        // Plain HTTP (forwarded) and a CONNECT tunnel (-p), both through HTTP_PROXY; the
        // sandbox's own loopback is in NO_PROXY, so curl is told to ignore it here.
        let url = format!("http://127.0.0.1:{}/pkg/left-pad", registry.port);
        let plain = sh(&sandbox, &format!("curl -fsS --noproxy '' {url}")).await;
        assert_eq!(plain.stdout, "contents of left-pad\n", "{}", plain.stderr);
        let tunnel = sh(&sandbox, &format!("curl -fsS -p --noproxy '' {url}")).await;
        assert_eq!(tunnel.stdout, "contents of left-pad\n", "{}", tunnel.stderr);
        assert_eq!(registry.hits("left-pad"), 2);
        // Still no interface but loopback, and no route: the proxy is the only way out.
        let net = sh(&sandbox, "ls /sys/class/net; ip -4 route; ip -6 route").await;
        assert_eq!(net.stdout, "lo\n", "{}", net.stderr);
        let direct = sh(
            &sandbox,
            &format!(
                "curl -sS -m 5 --noproxy '*' http://172.17.0.1:{}/pkg/x",
                registry.port
            ),
        )
        .await;
        assert_ne!(direct.exit_code, 0);

        // Another host: refused, and the agent reads why.
        let https = sh(&sandbox, "curl -sS https://blocked.example.com/").await;
        assert_ne!(https.exit_code, 0);
        assert!(https.stderr.contains("403"), "{}", https.stderr);
        let http = sh(&sandbox, "curl -sS http://blocked.example.com/simple/").await;
        assert_eq!(
            http.stdout,
            "Backspace's egress proxy refused the connection: blocked.example.com:80 is not in \
             this repository's network.allow (.github/backspace.yml); the run's report says how \
             to allow it.\n"
        );
        let blocks = blocked(&mut events);
        let RunEvent::EgressBlocked {
            host,
            port,
            count,
            command,
            suggested_allow,
            operator_change,
            ..
        } = &blocks[0]
        else {
            panic!("no egress_blocked event: {blocks:?}");
        };
        assert_eq!(
            (host.as_str(), *port, *count),
            ("blocked.example.com", 443, 1)
        );
        assert_eq!(
            command.as_deref(),
            Some("curl -sS https://blocked.example.com/")
        );
        assert_eq!(
            suggested_allow.as_deref(),
            Some(&["127.0.0.1".to_string(), "blocked.example.com".to_string()][..])
        );
        assert_eq!(
            operator_change.as_deref(),
            Some("the operator must first add blocked.example.com to BACKSPACE_EGRESS_ALLOW")
        );
        assert!(matches!(
            &blocks[1],
            RunEvent::EgressBlocked { port: 80, .. }
        ));

        // Stopped (setup_only after setup): no variables, nothing listens.
        let summary = session.stop(&sandbox).await;
        assert!(summary
            .markdown()
            .contains("`blocked.example.com:443` once"));
        let after = sh(
            &sandbox,
            &format!("env | grep -ci proxy; curl -sS -m 5 -x http://127.0.0.1:3128 {url}"),
        )
        .await;
        assert!(after.stdout.starts_with("0\n"), "{}", after.stdout);
        assert_ne!(after.exit_code, 0, "{}", after.stdout);
        sandbox.destroy().await.expect("destroy");
    })
    .await;
}

/// Starts a container on Docker's default bridge (what setup used to join) and returns its id
/// and address.
async fn bridge_neighbour() -> (String, String) {
    let out = tokio::process::Command::new("docker")
        .args([
            "run",
            "-d",
            "--rm",
            "--network",
            "bridge",
            docker::TEST_IMAGE,
            "sleep",
            "120",
        ])
        .output()
        .await
        .expect("docker run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let ip = tokio::process::Command::new("docker")
        .args(["inspect", "-f", "{{.NetworkSettings.IPAddress}}", &id])
        .output()
        .await
        .expect("docker inspect");
    (id, String::from_utf8_lossy(&ip.stdout).trim().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_cannot_reach_the_docker_host_another_container_a_private_address_or_the_metadata_address(
) {
    let Some(sandboxes) = docker::sandboxes().await else {
        return;
    };
    let registry = Registry::start().await;
    let (neighbour, neighbour_ip) = bridge_neighbour().await;
    within(120, async {
        let repo = small_repo();
        let sandbox = sandboxes.create(&run_id("reach"), repo.path()).await.expect("create");
        // Names the operator and the repository both allow, that resolve to places a sandbox
        // must never reach: the Docker host's loopback (where the bot and its database listen),
        // its bridge address, a container on the bridge, a private address, the metadata address.
        let targets = [
            ("localhost".to_string(), "a loopback address"),
            (decimal("172.17.0.1"), "a private address"),
            (decimal(&neighbour_ip), "a private address"),
            (decimal("10.0.0.1"), "a private address"),
            (decimal("169.254.169.254"), "the cloud metadata address"),
        ];
        let names: Vec<&str> = targets.iter().map(|(n, _)| n.as_str()).collect();
        let list = names.join(", ");
        let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
        let session = Session::start(&sandbox, plan(&list, &list), tx)
            .await
            .expect("the forwarder starts");
        for (name, why) in &targets {
            // A raw CONNECT: curl would turn a decimal host into dotted form itself.
            let out = sh(&sandbox, &format!(
                "exec 3<>/dev/tcp/127.0.0.1/3128; printf 'CONNECT {name}:{} HTTP/1.1\\r\\n\\r\\n' >&3; timeout 10 cat <&3",
                registry.port
            ))
            .await;
            assert!(
                out.stdout.contains(&format!("{name}:{} is {why}", registry.port)),
                "{name}: {} {}",
                out.stdout,
                out.stderr
            );
        }
        // Addresses not listed at all are refused before anything else.
        for ip in ["169.254.169.254", "172.17.0.1", neighbour_ip.as_str()] {
            let out = sh(&sandbox, &format!("curl -sS -m 10 http://{ip}/")).await;
            assert!(out.stdout.contains("is not in this repository's network.allow"), "{ip}: {}", out.stdout);
        }
        // And without the proxy there is no route at all.
        for ip in ["169.254.169.254", "172.17.0.1", neighbour_ip.as_str(), "10.0.0.1"] {
            let out = sh(&sandbox, &format!("curl -sS -m 5 --noproxy '*' http://{ip}/")).await;
            assert_ne!(out.exit_code, 0, "{ip}: {}", out.stdout);
            assert!(out.stderr.contains("Couldn't connect") || out.stderr.contains("unreachable"), "{ip}: {}", out.stderr);
        }
        assert_eq!(registry.hits("x"), 0, "nothing reached the host's registry");
        let refused = blocked(&mut events);
        assert!(refused.len() >= targets.len() + 3, "{refused:?}");
        session.stop(&sandbox).await;
        sandbox.destroy().await.expect("destroy");
    })
    .await;
    let _ = tokio::process::Command::new("docker")
        .args(["rm", "-f", &neighbour])
        .output()
        .await;
}

fn settings_file(port: u16) -> String {
    format!(
        "setup: curl -fsS --noproxy '' -o /tmp/setup-pkg http://127.0.0.1:{port}/pkg/setup-dep\n\
         network:\n  allow: [\"127.0.0.1\"]\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_fetches_through_the_proxy_in_setup_and_agent_and_reports_what_was_blocked() {
    let Some(sandboxes) = docker::sandboxes_with(SandboxSettings {
        egress_allow: Allowlist::parse("127.0.0.1, *.example.com").expect("list"),
        ..docker::test_settings()
    })
    .await
    else {
        return;
    };
    let registry = Registry::start().await;
    let port = registry.port;
    let script: Vec<Step> = vec![
        Reply::bash(&format!(
            "curl -fsS --noproxy '' http://127.0.0.1:{port}/pkg/agent-dep"
        ))
        .into(),
        Reply::bash("curl -sS https://fixtures.example.com/data.json").into(),
        Reply::edit(serde_json::json!({
            "command": "create", "path": "NOTES.md", "file_text": "fetched\n"
        }))
        .into(),
        Reply::text("TITLE: Add notes\n\nSUMMARY:\nAdded NOTES.md.").into(),
    ];
    let settings = settings_file(port);
    let files = [
        ("README.md", "# app\n"),
        (".github/backspace.yml", settings.as_str()),
    ];
    let opts = Options {
        sandboxes: Some(sandboxes),
        ..Options::default()
    };
    let Some(bot) = Bot::start_with(&files, script, opts).await else {
        return;
    };
    within(240, async {
        let issue = bot.issue("Needs a fixture", "Fetch it.");
        let (status, answer, _) = bot.comment(issue, MAINTAINER, "/backspace add notes").await;
        assert_eq!(status, 202, "{answer}");
        let job = bot
            .finished(
                answer["job_id"].as_str().expect("job"),
                Duration::from_secs(200),
            )
            .await;
        assert_eq!(job.state, JobState::Succeeded, "{:?}", job.result);
        assert_eq!(
            registry.hits("setup-dep"),
            1,
            "the setup command fetched its package"
        );
        assert_eq!(
            registry.hits("agent-dep"),
            1,
            "the agent fetched its package"
        );
        // The agent read the refusal.
        let results: String = bot
            .model
            .requests()
            .iter()
            .map(|r| r.body.to_string())
            .collect();
        assert!(
            results.contains("CONNECT tunnel failed, response 403"),
            "{results}"
        );
        // The comment and the pull request name it, with the settings change.
        let comment = &bot.bot_comments(issue)[0].body;
        let section = comment
            .find("**🚫 Network blocked:**")
            .map(|at| &comment[at..])
            .unwrap_or_else(|| panic!("no blocked section in {comment}"));
        let section = &section[..section.find("<details>").unwrap_or(section.len())];
        insta::assert_snapshot!("egress_blocked_in_the_comment", section);
        let pulls = bot.gh.pulls(&bot.repo);
        assert!(pulls[0].body.contains(section.trim()), "{}", pulls[0].body);
        let types: Vec<String> = bot
            .events(&job.id)
            .await
            .iter()
            .filter_map(|e| e["type"].as_str().map(str::to_owned))
            .collect();
        assert!(types.contains(&"egress_blocked".to_string()), "{types:?}");
        assert_eq!(bot.containers_of(&job.id).await, 0, "no container is left");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_the_operator_does_not_allow_is_invalid_settings_and_nothing_runs() {
    let files = [
        ("README.md", "# app\n"),
        (".github/backspace.yml", "network:\n  allow: [pypi.org]\n"),
    ];
    let Some(bot) = Bot::start(&files, vec![]).await else {
        return;
    };
    within(120, async {
        let issue = bot.issue("x", "y");
        let (_, answer, _) = bot.comment(issue, MAINTAINER, "/backspace fix it").await;
        let job = bot
            .finished(
                answer["job_id"].as_str().expect("job"),
                Duration::from_secs(100),
            )
            .await;
        assert_eq!(job.state, JobState::Failed);
        let body = &bot.bot_comments(issue)[0].body;
        assert!(
            body.contains("network.allow asks for pypi.org, but this server allows no network"),
            "{body}"
        );
        assert!(body.contains("BACKSPACE_EGRESS_ALLOW"), "{body}");
        assert!(bot.model.requests().is_empty(), "no model call");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_setup_only_the_setup_fetches_and_the_agent_gets_no_network() {
    let Some(sandboxes) = docker::sandboxes_with(SandboxSettings {
        egress_allow: Allowlist::parse("127.0.0.1").expect("list"),
        ..docker::test_settings()
    })
    .await
    else {
        return;
    };
    let registry = Registry::start().await;
    let port = registry.port;
    let script: Vec<Step> = vec![
        Reply::bash(&format!(
            "env | grep -ci _proxy=; curl -sS -m 5 -x http://127.0.0.1:3128 http://127.0.0.1:{port}/pkg/agent-dep"
        ))
        .into(),
        Reply::text("TITLE: No network\n\nSUMMARY:\nThe agent had no network.").into(),
    ];
    let settings = format!(
        "setup: curl -fsS --noproxy '' -o /tmp/setup-pkg http://127.0.0.1:{port}/pkg/setup-dep\n\
         network:\n  allow: [\"127.0.0.1\"]\n  setup_only: true\n"
    );
    let files = [
        ("README.md", "# app\n"),
        (".github/backspace.yml", settings.as_str()),
    ];
    let opts = Options {
        sandboxes: Some(sandboxes),
        ..Options::default()
    };
    let Some(bot) = Bot::start_with(&files, script, opts).await else {
        return;
    };
    within(240, async {
        let issue = bot.issue("Offline", "Check.");
        let (_, answer, _) = bot
            .comment(issue, MAINTAINER, "/backspace check the network")
            .await;
        let job = bot
            .finished(
                answer["job_id"].as_str().expect("job"),
                Duration::from_secs(200),
            )
            .await;
        assert_eq!(job.state, JobState::Succeeded, "{:?}", job.result);
        assert_eq!(
            registry.hits("setup-dep"),
            1,
            "the setup command fetched its package"
        );
        assert_eq!(registry.hits("agent-dep"), 0, "the agent reached nothing");
        let tool_result = bot
            .model
            .requests()
            .last()
            .map(|r| r.body.to_string())
            .unwrap_or_default();
        // No proxy variables, and nothing listens where the forwarder was.
        assert!(
            tool_result.contains("0\\ncurl: (7) Failed to connect to 127.0.0.1 port 3128"),
            "{tool_result}"
        );
    })
    .await;
}
