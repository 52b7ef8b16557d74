//! The `backspace` command: `serve` runs the GitHub App server, `run` a local checkout, `doctor`
//! checks a configuration. Wiring only; the work lives in the library.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing::Instrument as _;

use std::sync::Arc;

use backspace::agent::AgentConfig;
use backspace::config::{AppCredentials, ServeArgs};
use backspace::github::{GithubApp, GithubAppConfig};
use backspace::runner::{RunnerSettings, Services, Workers};
use backspace::sandbox::{new_instance_id, SandboxSettings, Sandboxes};
use backspace::server::{self, AppState, Credentials};
use backspace::store::Store;
use backspace::trigger::TriggerContext;

#[derive(Parser)]
#[command(
    name = "backspace",
    version,
    about = "Turns `/backspace <request>` on GitHub into a pull request"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of its variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the GitHub App server (webhooks, health). Without app credentials it starts in setup
    /// mode and says which are missing.
    Serve(ServeArgs),
    /// Run the agent in the sandbox against a local git checkout, no GitHub: the result is a
    /// commit on a new local branch. Exit codes: 0 committed, 1 failed, 2 bad usage or input,
    /// 3 answered without changing a file.
    Run(backspace::local_run::RunArgs),
    /// Check every part a run needs with the settings `serve` reads (credentials, store, Docker
    /// engine and sandbox image, model, PUBLIC_URL): one line per check; exit 0 when all pass.
    Doctor(ServeArgs),
}

fn main() -> std::process::ExitCode {
    // A `.env` file in the working directory, as Probot reads it (the environment wins). Read
    // before the runtime starts any thread: it sets variables.
    let dotenv = backspace::config::load_dotenv(std::path::Path::new(".env"));
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("backspace: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli, dotenv))
}

async fn run(
    cli: Cli,
    dotenv: Result<Option<Vec<String>>, backspace::config::ConfigError>,
) -> std::process::ExitCode {
    let names = match dotenv {
        Ok(names) => names,
        Err(e) => {
            eprintln!("backspace: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Serve(args) => serve(args, names).await,
        Command::Doctor(args) => {
            return std::process::ExitCode::from(backspace::doctor::main(args).await);
        }
        Command::Run(args) => {
            // Events are printed; logs only when asked for (RUST_LOG).
            if std::env::var_os("RUST_LOG").is_some() {
                let _telemetry =
                    backspace::telemetry::init(backspace::config::LogFormat::Pretty, None);
            }
            return std::process::ExitCode::from(backspace::local_run::main(args).await);
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("backspace: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs, dotenv: Option<Vec<String>>) -> anyhow::Result<()> {
    let telemetry = backspace::telemetry::init(args.log_format, args.otel_endpoint.as_deref());
    if let Some(names) = dotenv {
        tracing::info!(variables = %names.join(", "), "read .env");
    }
    args.validate()?;
    let limits = args.front_door.limits().map_err(anyhow::Error::msg)?;
    args.remember_secrets();
    let store = Store::connect(&args.database_url)
        .await
        .context("could not open the job store at DATABASE_URL")?;
    let trigger = TriggerContext {
        command_word: args.command_word.clone(),
        ..TriggerContext::default()
    };
    let credentials_path = args.credentials_path();
    let credentials = match args.app_credentials()? {
        Ok(creds) => Ok(creds),
        // Credentials registered through /setup on an earlier start.
        Err(missing) => match backspace::setup_store::load_saved_credentials(&credentials_path)? {
            Some(saved) => {
                tracing::info!(path = %credentials_path.display(), "GitHub App credentials read from the credentials file");
                Ok(saved)
            }
            None => Err(missing),
        },
    };
    if let Err(missing) = &credentials {
        tracing::warn!(%missing, "no GitHub App credentials: setup mode, webhooks are answered 503");
    }
    let doors = server::DoorsConfig::from_args(&args);
    let state = AppState::new(store, doors, trigger, credentials);
    backspace::retention::spawn(state.store().clone(), args.retention_days);
    let workers = match state.credentials().app() {
        Some(creds) => {
            tracing::info!(app_id = creds.app_id, "GitHub App credentials loaded");
            Some(start_workers(&args, creds, &state).await?)
        }
        None => {
            let missing = match state.credentials() {
                Credentials::Missing(m) => m.to_string(),
                Credentials::Ready { .. } => String::new(),
            };
            eprintln!(
                "Backspace is in setup mode: missing {missing}.\nSet them in the environment, or register the app at {}",
                state.setup_link()
            );
            None
        }
    };
    state.metrics().install_global();
    for warning in backspace::doctor::startup_warnings(&args, workers.is_some()) {
        tracing::warn!("{warning}");
    }
    if workers.is_none() {
        // The workers (and their engine) start after /setup: say now what the first run needs.
        tokio::spawn(
            warn_without_image(args.sandbox_image.clone())
                .instrument(tracing::info_span!("startup_check")),
        );
    }
    // Setup mode: the workers start when /setup has registered the app, without a restart.
    let late_workers = workers.is_none().then(|| {
        let (args, state) = (args.clone(), state.clone());
        let task = async move {
            let mut registered = state.credentials_watch();
            let creds = {
                let ready = registered.wait_for(|c| c.app().is_some()).await.ok()?;
                ready.app()?.clone()
            };
            match start_workers(&args, &creds, &state).await {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "the app is registered but the workers could not start; restart serve");
                    None
                }
            }
        };
        tokio::spawn(task.instrument(tracing::info_span!("late_workers")))
    });
    let addr: SocketAddr = format!("{}:{}", args.bind, args.port)
        .parse()
        .with_context(|| format!("invalid listen address {}:{}", args.bind, args.port))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("could not listen on {addr}"))?;
    tracing::info!(%addr, "listening");
    let closing = state.clone();
    server::serve(
        listener,
        server::router(state.clone()),
        limits,
        state.metrics().clone(),
        async move {
            shutdown_signal().await;
            // Open event streams end now; otherwise graceful shutdown would wait for them.
            closing.close_streams();
        },
    )
    .await;
    let mut late_workers_started = None;
    if let Some(late) = late_workers {
        if late.is_finished() {
            late_workers_started = late.await.ok().flatten();
        } else {
            late.abort();
        }
    }
    if let Some(w) = workers.or(late_workers_started) {
        w.shutdown().await;
    }
    // Let in-flight store writes settle before the pool goes.
    tokio::time::timeout(Duration::from_secs(5), state.store().close())
        .await
        .ok();
    tracing::info!("stopped");
    // Blocking: the exporter sends its last batch.
    tokio::task::spawn_blocking(move || telemetry.shutdown())
        .await
        .ok();
    Ok(())
}

/// The GitHub client, the sandboxes, the model and the worker pool, for a server with
/// credentials.
async fn start_workers(
    args: &ServeArgs,
    creds: &AppCredentials,
    state: &AppState,
) -> anyhow::Result<Workers> {
    creds.remember_secrets();
    let github = GithubApp::new(GithubAppConfig::new(
        creds.app_id,
        creds.private_key.clone(),
        args.github_api_url.clone(),
    ))
    .context("the GitHub App private key is not usable")?;
    // The app's own login (so its comments never trigger it) is learned in the background:
    // the server answers webhooks at once, even while GitHub is slow.
    {
        let (github, state) = (github.clone(), state.clone());
        let learn_login = async move {
            loop {
                match github.bot_login().await {
                    Ok(login) => {
                        tracing::info!(%login, "the app's own login");
                        state.set_bot_login(login);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not read the app's login from GET /app; trying again in 30 s");
                        tokio::time::sleep(Duration::from_secs(30)).await;
                    }
                }
            }
        };
        tokio::spawn(learn_login.instrument(tracing::info_span!("bot_login")));
    }
    state.set_github(github.clone());

    let instance_id = new_instance_id();
    let sandboxes = Sandboxes::connect(SandboxSettings {
        image: args.sandbox_image.clone(),
        instance_id: instance_id.clone(),
        warm_pool: args.warm_sandboxes,
        disk_bytes: args.sandbox_disk,
        command_idle: args.command_idle_secs,
        egress_allow: args.egress_allow.clone(),
        ..SandboxSettings::default()
    })
    .await
    .context("the workers cannot start without the Docker engine")?;
    state.set_sandboxes(sandboxes.clone());
    if !sandboxes.image_present().await.unwrap_or(false) {
        let fix = backspace::doctor::image_fix(&args.sandbox_image);
        tracing::warn!(image = %args.sandbox_image, "the sandbox image is not on the Docker engine: runs will fail until it is there: {fix}");
    }
    match sandboxes.reap().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(removed = n, "removed sandboxes left behind by a crash"),
        Err(e) => tracing::warn!(error = %e, "could not look for left-behind sandboxes"),
    }
    sandboxes.spawn_reaper(Duration::from_secs(300));
    // GitHub does not redeliver by itself: what it could not deliver is asked for again.
    backspace::redelivery::spawn(
        github.clone(),
        state.store().clone(),
        instance_id.clone(),
        backspace::redelivery::SweepSettings::default(),
    );
    if args.warm_sandboxes > 0 {
        let warm = sandboxes.clone();
        let fill = async move {
            if let Err(e) = warm.warm_up().await {
                tracing::warn!(error = %e, "could not start the warm sandboxes");
            }
        };
        tokio::spawn(fill.instrument(tracing::info_span!("warm_pool")));
    }

    let model = args.model.provider().map_err(anyhow::Error::msg)?;

    let mut settings = RunnerSettings::new(instance_id, args.max_jobs, args.public_url());
    settings.command_word = args.command_word.clone();
    settings.lease = Duration::from_secs(args.lease_secs);
    settings.grace = Duration::from_secs(args.shutdown_grace_secs);
    let services = Services {
        store: state.store().clone(),
        github,
        sandboxes,
        model,
        agent: AgentConfig::default(),
        settings: Arc::new(settings),
        wake: state.wake(),
        run_link: Some({
            let state = state.clone();
            Arc::new(move |run_id: &str| state.run_link(run_id))
        }),
    };
    tracing::info!(max_jobs = args.max_jobs, "workers started");
    Ok(Workers::start(services))
}

/// In setup mode: warns when the Docker engine does not answer or lacks the sandbox image.
async fn warn_without_image(image: String) {
    let settings = SandboxSettings {
        image: image.clone(),
        ..SandboxSettings::default()
    };
    let check = async {
        let sandboxes = Sandboxes::connect(settings).await?;
        sandboxes.image_present().await
    };
    match tokio::time::timeout(Duration::from_secs(10), check).await {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => {
            let fix = backspace::doctor::image_fix(&image);
            tracing::warn!(%image, "the sandbox image is not on the Docker engine: the first run will fail until it is there: {fix}");
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "the Docker engine does not answer: runs need it"),
        Err(_) => tracing::warn!("the Docker engine did not answer within 10 s: runs need it"),
    }
}

/// SIGTERM (Fly.io, Docker) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        tokio::signal::ctrl_c().await.ok();
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: no new requests");
}
