//! The `backspace` command: `serve` runs the GitHub App server. Wiring only; the work lives in
//! the library.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use backspace::config::ServeArgs;
use backspace::server::{self, AppState};
use backspace::store::Store;
use backspace::trigger::TriggerContext;
use backspace::webhook::signature::WebhookSecrets;

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

#[derive(Subcommand)]
enum Command {
    /// Run the GitHub App server (webhooks, health). Without app credentials it starts in setup
    /// mode and says which are missing.
    Serve(ServeArgs),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("backspace: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    backspace::telemetry::init(args.log_format);
    args.validate()?;
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
    let state = match credentials {
        Ok(creds) => {
            tracing::info!(app_id = creds.app_id, "GitHub App credentials loaded");
            AppState::new(store, WebhookSecrets::new(creds.webhook_secrets), trigger)
        }
        Err(missing) => {
            tracing::warn!(%missing, "no GitHub App credentials: setup mode, webhooks are answered 503");
            let note = format!("Backspace is in setup mode: missing {missing}.");
            let state = AppState::setup_mode(store, missing, trigger);
            state.configure(server::DoorsConfig::from_args(&args));
            eprintln!(
                "{note}\nSet them in the environment, or register the app at {}",
                state.setup_link()
            );
            state
        }
    };
    state.configure(server::DoorsConfig::from_args(&args));
    let addr: SocketAddr = format!("{}:{}", args.bind, args.port)
        .parse()
        .with_context(|| format!("invalid listen address {}:{}", args.bind, args.port))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("could not listen on {addr}"))?;
    tracing::info!(%addr, "listening");
    axum::serve(listener, server::router(state.clone()))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("the server failed")?;
    // Let in-flight store writes settle before the pool goes.
    tokio::time::timeout(Duration::from_secs(5), state.store().close())
        .await
        .ok();
    tracing::info!("stopped");
    Ok(())
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
