//! A remote Docker engine over TCP with TLS client certificates (`DOCKER_HOST=tcp://…`,
//! `DOCKER_TLS_VERIFY=1`, `DOCKER_CERT_PATH`), as the Fly deployment reaches its sandboxes: a
//! whole run from comment to pull request goes through a TLS endpoint that demands a client
//! certificate, and the certificates an operator gets wrong are named.

mod support;

use std::time::Duration;

use backspace::job::JobState;
use backspace::sandbox::{DockerEndpoint, Sandboxes, TlsFiles};
use support::bot::{edit_script, Bot, Options, MAINTAINER};
use support::docker::test_settings;
use support::docker_tls::TlsEngine;

const FILES: &[(&str, &str)] = &[("src/app.js", "export const greet = (n) => 'hi ' + n;\n")];

async fn within<F: std::future::Future<Output = ()>>(secs: u64, f: F) {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("the test timed out");
}

async fn connect(engine: &TlsEngine, certs: &std::path::Path) -> Result<Sandboxes, String> {
    let endpoint = DockerEndpoint::new(&engine.docker_host(), Some(TlsFiles::in_dir(certs)))
        .map_err(|e| e.to_string())?;
    Sandboxes::connect_to(&endpoint, test_settings())
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn a_run_goes_through_an_engine_that_demands_a_client_certificate() {
    within(240, async {
        let Some(engine) = TlsEngine::start() else {
            return;
        };
        // The local engine must have the test image; this builds it when it is missing.
        if support::docker::sandboxes().await.is_none() {
            return;
        }
        let sandboxes = connect(&engine, &engine.good_certs())
            .await
            .expect("the engine over TLS");
        assert!(sandboxes.image_present().await.expect("inspect over TLS"));
        let opts = Options {
            sandboxes: Some(sandboxes),
            ..Options::default()
        };
        let script = edit_script("src/app.js", "'hi '", "'Hello, '", "Greet people properly");
        let Some(bot) = Bot::start_with(FILES, script, opts).await else {
            return;
        };
        let issue = bot.issue("Greeting is rude", "It says hi.");
        let (status, answer, _) = bot
            .comment(issue, MAINTAINER, "/backspace make greet say Hello")
            .await;
        assert_eq!(status, 202, "{answer}");
        let job = bot
            .finished(answer["job_id"].as_str().unwrap(), Duration::from_secs(180))
            .await;
        assert_eq!(job.state, JobState::Succeeded, "{:?}", job.result);
        let file = bot
            .gh
            .file_on_branch(&bot.repo, "backspace/1-make-greet-say-hello", "src/app.js")
            .expect("the branch and file");
        assert!(file.contains("'Hello, ' + n"), "{file}");
        assert_eq!(bot.gh.pulls(&bot.repo).len(), 1);
        let types: Vec<String> = bot
            .events(&job.id)
            .await
            .iter()
            .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert!(
            types.contains(&"tool".to_owned()),
            "commands ran: {types:?}"
        );
        assert_eq!(bot.containers_of(&job.id).await, 0, "no container is left");
    })
    .await;
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_is_refused_with_a_clear_message() {
    within(60, async {
        let Some(engine) = TlsEngine::start() else {
            return;
        };
        let err = connect(&engine, &engine.untrusted_client_certs())
            .await
            .expect_err("the engine must refuse a certificate its CA did not sign");
        assert!(
            err.contains(&engine.docker_host().replace("tcp://", "https://")),
            "{err}"
        );
        assert!(err.contains("refused this client's certificate"), "{err}");
        assert!(err.contains("DOCKER_CERT_PATH"), "{err}");
    })
    .await;
}

#[tokio::test]
async fn an_engine_certificate_that_ca_pem_did_not_sign_is_not_trusted() {
    within(60, async {
        let Some(engine) = TlsEngine::start() else {
            return;
        };
        let err = connect(&engine, &engine.wrong_ca_certs())
            .await
            .expect_err("an engine certificate from an unknown CA must not be trusted");
        assert!(err.contains("engine's certificate is not trusted"), "{err}");
        assert!(err.contains("ca.pem"), "{err}");
    })
    .await;
}

#[tokio::test]
async fn plain_http_to_the_tls_port_says_to_turn_tls_on() {
    within(60, async {
        let Some(engine) = TlsEngine::start() else {
            return;
        };
        let endpoint = DockerEndpoint::new(&engine.docker_host(), None).unwrap();
        let err = Sandboxes::connect_to(&endpoint, test_settings())
            .await
            .expect_err("plain HTTP to a TLS port must fail")
            .to_string();
        assert!(err.contains("DOCKER_TLS_VERIFY=1"), "{err}");
    })
    .await;
}
