//! The webhook front door through the real router and a real store: GitHub's payload examples,
//! signed, go in; statuses and stored rows come out.

mod support;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use backspace::config::MissingCredentials;
use backspace::job::{JobKind, JobState};
use backspace::server::{router, AppState, MAX_WEBHOOK_BODY};
use backspace::trigger::TriggerContext;
use backspace::webhook::signature::sign;
use serde_json::json;
use support::db;
use support::webhooks::{delivery, fixture, fixture_with, Ingress, SECRET};

fn comment(body: &str) -> Vec<u8> {
    fixture_with(
        "webhooks/issue_comment/created.with-installation.json",
        |v| v["comment"]["body"] = json!(body),
    )
}

#[tokio::test]
async fn every_payload_example_is_accepted_and_recorded() {
    let t = db::sqlite().await;
    let ingress = Ingress::new(t.store.clone());
    let examples = [
        ("ping", "ping/ping.json"),
        ("ping", "ping/with-app_id.json"),
        ("issue_comment", "issue_comment/created.json"),
        (
            "issue_comment",
            "issue_comment/created.with-installation.json",
        ),
        ("issue_comment", "issue_comment/edited.json"),
        ("issue_comment", "issue_comment/deleted.json"),
        ("issues", "issues/labeled.json"),
        ("issues", "issues/opened.json"),
        ("installation", "installation/created.json"),
        ("installation", "installation/deleted.json"),
        (
            "installation_repositories",
            "installation_repositories/added.json",
        ),
        (
            "installation_repositories",
            "installation_repositories/removed.json",
        ),
        ("pull_request", "pull_request/opened.json"),
        (
            "pull_request_review_comment",
            "pull_request_review_comment/created.json",
        ),
    ];
    for (i, (event, file)) in examples.iter().enumerate() {
        let (status, body) = ingress
            .send(delivery(
                event,
                &format!("d-{i}"),
                fixture(&format!("webhooks/{file}")),
            ))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{file}: {body}");
        // A person adding a label queues a job: only the worker can read the repository's
        // `label:` and tell whether it is the trigger label (else the job ends quietly).
        let expected = if *file == "issues/labeled.json" {
            "queued"
        } else {
            "recorded"
        };
        assert_eq!(body["status"], expected, "{file}: {body}");
    }
    assert_eq!(
        t.store.delivery_count().await.unwrap(),
        examples.len() as i64
    );
    // No example is a command; the label is the one job.
    assert_eq!(t.store.job_counts().await.unwrap().queued, 1);
}

#[tokio::test]
async fn a_command_comment_becomes_a_queued_job() {
    let t = db::sqlite().await;
    let ingress = Ingress::new(t.store.clone());
    let (status, body) = ingress
        .send(delivery(
            "issue_comment",
            "d-1",
            comment("/backspace add input validation to the signup form"),
        ))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], "queued");
    let job = t
        .store
        .job(body["job_id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.kind(), JobKind::Run);
    assert_eq!(job.state, JobState::Queued);
    assert_eq!(job.prompt, "add input validation to the signup form");
    assert_eq!(job.repository, "Codertocat/Hello-World");
    assert_eq!(job.requester, "Codertocat");
    assert_eq!(job.installation_id, Some(1));
}

#[tokio::test]
async fn bad_signatures_are_refused_and_store_nothing() {
    let t = db::sqlite().await;
    let ingress = Ingress::new(t.store.clone());
    let body = comment("/backspace fix");
    let good = sign(SECRET, &body);
    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("sha1 prefix", Some(good.replacen("sha256=", "sha1=", 1))),
        ("odd length", Some(good[..good.len() - 1].to_string())),
        ("not hex", Some(format!("sha256={}", "g".repeat(64)))),
        ("empty", Some(String::new())),
        ("another secret", Some(sign("not-the-secret", &body))),
        ("over another body", Some(sign(SECRET, b"{}"))),
    ];
    for (name, header) in cases {
        let mut req = Request::post("/api/github/webhooks")
            .header("x-github-event", "issue_comment")
            .header("x-github-delivery", format!("d-{name}"));
        if let Some(h) = header {
            req = req.header("x-hub-signature-256", h);
        }
        let (status, _) = ingress
            .send(req.body(Body::from(body.clone())).unwrap())
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}");
    }
    assert_eq!(t.store.delivery_count().await.unwrap(), 0);
}

#[tokio::test]
async fn rotated_secrets_are_all_accepted() {
    let t = db::sqlite().await;
    let ingress = Ingress::with_secrets(t.store.clone(), &["old-secret", SECRET]);
    let (status, _) = ingress
        .send(delivery(
            "ping",
            "d-new",
            fixture("webhooks/ping/ping.json"),
        ))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let body = fixture("webhooks/ping/ping.json");
    let req = Request::post("/api/github/webhooks")
        .header("x-github-event", "ping")
        .header("x-github-delivery", "d-old")
        .header("x-hub-signature-256", sign("old-secret", &body))
        .body(Body::from(body))
        .unwrap();
    assert_eq!(ingress.send(req).await.0, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn an_oversized_body_is_refused_with_413() {
    let t = db::sqlite().await;
    let ingress = Ingress::new(t.store.clone());
    // Declared too large: refused before reading.
    let req = Request::post("/api/github/webhooks")
        .header("x-github-event", "ping")
        .header("x-github-delivery", "d-1")
        .header("content-length", (MAX_WEBHOOK_BODY + 1).to_string())
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(ingress.send(req).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    // Streamed without a length: cut off at the cap.
    let chunk = bytes::Bytes::from(vec![b' '; 1024 * 1024]);
    let chunks = (0..26).map(move |_| Ok::<_, std::io::Error>(chunk.clone()));
    let req = Request::post("/api/github/webhooks")
        .header("x-github-event", "ping")
        .header("x-github-delivery", "d-2")
        .header("x-hub-signature-256", sign(SECRET, b"{}"))
        .body(Body::from_stream(futures::stream::iter(chunks)))
        .unwrap();
    assert_eq!(ingress.send(req).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(t.store.delivery_count().await.unwrap(), 0);
}

#[tokio::test]
async fn signed_bad_json_is_a_400_naming_the_field() {
    let t = db::sqlite().await;
    let ingress = Ingress::new(t.store.clone());
    let (status, body) = ingress
        .send(delivery(
            "issue_comment",
            "d-1",
            b"{\"action\": \"created\", ".to_vec(),
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let wrong_type = fixture_with("webhooks/issue_comment/created.json", |v| {
        v["issue"]["number"] = json!("one")
    });
    let (status, body) = ingress
        .send(delivery("issue_comment", "d-2", wrong_type))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["field"], "issue.number", "{body}");
    let missing = fixture_with("webhooks/issue_comment/created.json", |v| {
        v.as_object_mut().unwrap().remove("repository");
    });
    let (status, body) = ingress
        .send(delivery("issue_comment", "d-3", missing))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"].as_str().unwrap().contains("repository"),
        "{body}"
    );
    assert_eq!(t.store.delivery_count().await.unwrap(), 0);
}

#[tokio::test]
async fn missing_event_or_delivery_headers_are_a_400() {
    let t = db::sqlite().await;
    let ingress = Ingress::new(t.store.clone());
    let body = fixture("webhooks/ping/ping.json");
    for (event, id) in [
        (None, Some("d-1")),
        (Some("ping"), None),
        (Some("Ping!"), Some("d-2")),
        (Some("ping"), Some("has space")),
    ] {
        let mut req = Request::post("/api/github/webhooks")
            .header("x-hub-signature-256", sign(SECRET, &body));
        if let Some(e) = event {
            req = req.header("x-github-event", e);
        }
        if let Some(i) = id {
            req = req.header("x-github-delivery", i);
        }
        let (status, resp) = ingress
            .send(req.body(Body::from(body.clone())).unwrap())
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{event:?} {id:?}");
        assert!(resp["field"].as_str().unwrap().starts_with("x-github-"));
    }
    assert_eq!(t.store.delivery_count().await.unwrap(), 0);
}

#[tokio::test]
async fn other_events_are_acknowledged_and_ignored() {
    let t = db::sqlite().await;
    let ingress = Ingress::new(t.store.clone());
    let (status, body) = ingress
        .send(delivery(
            "star",
            "d-1",
            b"{\"action\":\"created\"}".to_vec(),
        ))
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::ACCEPTED, Some("recorded"))
    );
    assert_eq!(t.store.delivery_count().await.unwrap(), 1);
}

#[tokio::test]
async fn a_repeated_delivery_id_is_acknowledged_without_a_second_job() {
    for (name, t) in db::all().await {
        let ingress = Ingress::new(t.store.clone());
        let (first, _) = ingress
            .send(delivery(
                "issue_comment",
                "same-id",
                comment("/backspace fix"),
            ))
            .await;
        let (second, body) = ingress
            .send(delivery(
                "issue_comment",
                "same-id",
                comment("/backspace fix"),
            ))
            .await;
        assert_eq!(
            (first, second),
            (StatusCode::ACCEPTED, StatusCode::OK),
            "{name}"
        );
        assert_eq!(body["status"], "duplicate");
        assert_eq!(t.store.job_counts().await.unwrap().queued, 1, "{name}");
    }
}

#[tokio::test]
async fn a_hundred_copies_at_once_through_the_router_make_one_job() {
    for (name, t) in db::all().await {
        let ingress = Ingress::new(t.store.clone());
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let router = ingress.router.clone();
                tokio::spawn(async move {
                    use tower::ServiceExt;
                    router
                        .oneshot(delivery(
                            "issue_comment",
                            "burst",
                            comment("/backspace fix"),
                        ))
                        .await
                        .unwrap()
                        .status()
                })
            })
            .collect();
        let mut statuses = Vec::new();
        for task in tasks {
            statuses.push(task.await.unwrap());
        }
        assert_eq!(
            statuses
                .iter()
                .filter(|s| **s == StatusCode::ACCEPTED)
                .count(),
            1,
            "{name}"
        );
        assert_eq!(
            statuses.iter().filter(|s| **s == StatusCode::OK).count(),
            99,
            "{name}"
        );
        assert_eq!(t.store.job_counts().await.unwrap().queued, 1, "{name}");
        assert_eq!(t.store.delivery_count().await.unwrap(), 1, "{name}");
    }
}

#[tokio::test]
async fn bots_and_the_app_itself_start_nothing() {
    let t = db::sqlite().await;
    let ingress = Ingress::new(t.store.clone());
    let by_bot = fixture_with(
        "webhooks/issue_comment/created.with-installation.json",
        |v| {
            v["comment"]["body"] = json!("/backspace fix");
            v["sender"]["login"] = json!("renovate[bot]");
            v["sender"]["type"] = json!("Bot");
        },
    );
    let by_self = fixture_with(
        "webhooks/issue_comment/created.with-installation.json",
        |v| {
            v["comment"]["body"] = json!("/backspace fix");
            v["sender"]["login"] = json!("backspace-test[bot]");
        },
    );
    let (_, a) = ingress.send(delivery("issue_comment", "d-1", by_bot)).await;
    let (_, b) = ingress
        .send(delivery("issue_comment", "d-2", by_self))
        .await;
    assert_eq!(
        (a["reason"].as_str(), b["reason"].as_str()),
        (Some("sender is a bot"), Some("the app's own comment"))
    );
    assert_eq!(t.store.job_counts().await.unwrap().queued, 0);
}

#[tokio::test]
async fn a_deleted_installation_cancels_its_queued_jobs() {
    let t = db::sqlite().await;
    let ingress = Ingress::new(t.store.clone());
    // The comment example's installation id, on an installation event.
    let (_, queued) = ingress
        .send(delivery("issue_comment", "d-1", comment("/backspace fix")))
        .await;
    let deleted = fixture_with("webhooks/installation/deleted.json", |v| {
        v["installation"]["id"] = json!(1)
    });
    assert_eq!(
        ingress
            .send(delivery("installation", "d-2", deleted))
            .await
            .0,
        StatusCode::ACCEPTED
    );
    let job = t
        .store
        .job(queued["job_id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.state, JobState::Cancelled);
}

#[tokio::test]
async fn a_stopped_store_answers_503_so_github_redelivers() {
    for (name, t) in db::all().await {
        let ingress = Ingress::new(t.store.clone());
        t.store.close().await;
        let (status, _) = ingress
            .send(delivery("issue_comment", "d-1", comment("/backspace fix")))
            .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{name}");
        let (health, _) = ingress
            .send(Request::get("/health").body(Body::empty()).unwrap())
            .await;
        assert_eq!(health, StatusCode::SERVICE_UNAVAILABLE, "{name}");
    }
}

#[tokio::test]
async fn a_postgres_outage_answers_503_and_the_redelivery_is_stored_after_it() {
    let Some(t) = db::postgres().await else {
        return;
    };
    let name = t.pg_database.clone().unwrap();
    let ingress = Ingress::new(t.store.clone());
    db::pg_outage(&name).await;
    let (status, _) = ingress
        .send(delivery("issue_comment", "d-1", comment("/backspace fix")))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (health, _) = ingress
        .send(Request::get("/health").body(Body::empty()).unwrap())
        .await;
    assert_eq!(health, StatusCode::SERVICE_UNAVAILABLE);
    db::pg_recover(&name).await;
    // GitHub redelivers with the same id: stored now, exactly once.
    let (status, body) = ingress
        .send(delivery("issue_comment", "d-1", comment("/backspace fix")))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(t.store.job_counts().await.unwrap().queued, 1);
}

#[tokio::test]
async fn health_is_not_ready_until_the_workers_have_an_engine_and_names_what_is_missing() {
    let t = db::sqlite().await;
    let ingress = Ingress::new(t.store.clone());
    for probe in ["/health", "/readyz"] {
        let (status, body) = ingress
            .send(Request::get(probe).body(Body::empty()).unwrap())
            .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{probe}: {body}");
        assert_eq!(body["checks"]["store"], "ok", "{body}");
        assert!(
            body["checks"]["docker"]
                .as_str()
                .is_some_and(|d| d.contains("not connected")),
            "{body}"
        );
    }
    let (status, body) = ingress
        .send(Request::get("/livez").body(Body::empty()).unwrap())
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
}

#[tokio::test]
async fn setup_mode_answers_webhooks_503_and_names_what_is_missing() {
    let t = db::sqlite().await;
    let state = AppState::new(
        t.store.clone(),
        support::webhooks::test_doors(),
        TriggerContext::default(),
        Err(MissingCredentials(vec!["APP_ID", "WEBHOOK_SECRET"])),
    );
    let ingress = Ingress {
        router: router(state.clone()),
        state,
    };
    let (status, body) = ingress
        .send(delivery("ping", "d-1", fixture("webhooks/ping/ping.json")))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("APP_ID, WEBHOOK_SECRET"),
        "{body}"
    );
    // Not ready in setup mode (a load balancer sends runs elsewhere), but alive: /setup works.
    let (health, body) = ingress
        .send(Request::get("/health").body(Body::empty()).unwrap())
        .await;
    assert_eq!(
        (health, body["setup_mode"].as_bool()),
        (StatusCode::SERVICE_UNAVAILABLE, Some(true))
    );
    assert!(
        body["checks"]["credentials"]
            .as_str()
            .is_some_and(|c| c.contains("APP_ID, WEBHOOK_SECRET")),
        "{body}"
    );
    let (live, _) = ingress
        .send(Request::get("/livez").body(Body::empty()).unwrap())
        .await;
    assert_eq!(live, StatusCode::OK);
    // Credentials arrive (the manifest flow): verified from then on, no restart.
    ingress
        .state
        .install_credentials(support::webhooks::credentials(&[SECRET]));
    let (status, _) = ingress
        .send(delivery("ping", "d-2", fixture("webhooks/ping/ping.json")))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(t.store.delivery_count().await.unwrap(), 1);
}

mod random_input {
    //! Random bodies and headers thrown at the endpoint: no panic, and no 5xx but 503.
    use super::*;
    use proptest::prelude::*;

    fn header_value() -> impl Strategy<Value = Option<String>> {
        prop_oneof![
            Just(None),
            "[ -~]{0,80}".prop_map(Some),
            Just(Some("sha256=".to_string() + &"0".repeat(64))),
        ]
    }

    fn body() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..2048),
            "[{}\\[\\]\":,a-z0-9 ]{0,512}".prop_map(String::into_bytes),
            Just(fixture("webhooks/issue_comment/created.json")),
        ]
    }

    fn event() -> impl Strategy<Value = Option<String>> {
        prop_oneof![
            Just(Some("issue_comment".to_string())),
            Just(Some("issues".to_string())),
            Just(Some("installation".to_string())),
            "[a-z_]{1,20}".prop_map(Some),
            header_value(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        #[test]
        fn random_deliveries_never_panic_or_fail_with_5xx(
            body in body(),
            event in event(),
            id in header_value(),
            sig in header_value(),
            signed in any::<bool>(),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let t = db::sqlite().await;
                let ingress = Ingress::new(t.store.clone());
                let mut req = Request::post("/api/github/webhooks");
                if let Some(e) = &event { req = req.header("x-github-event", e.as_str()); }
                if let Some(i) = &id { req = req.header("x-github-delivery", i.as_str()); }
                let sig = if signed { Some(sign(SECRET, &body)) } else { sig };
                if let Some(s) = &sig { req = req.header("x-hub-signature-256", s.as_str()); }
                let (status, _) = ingress.send(req.body(Body::from(body.clone())).unwrap()).await;
                prop_assert!(!status.is_server_error(), "status {status}");
                if !signed {
                    prop_assert_eq!(t.store.delivery_count().await.unwrap(), 0);
                }
                // The same delivery with the store stopped: only 503 among the 5xx.
                t.store.close().await;
                let mut req = Request::post("/api/github/webhooks");
                if let Some(e) = &event { req = req.header("x-github-event", e.as_str()); }
                if let Some(i) = &id { req = req.header("x-github-delivery", i.as_str()); }
                if let Some(s) = &sig { req = req.header("x-hub-signature-256", s.as_str()); }
                let (status, _) = ingress.send(req.body(Body::from(body)).unwrap()).await;
                prop_assert!(!status.is_server_error() || status == StatusCode::SERVICE_UNAVAILABLE, "status {status}");
                Ok(())
            })?;
        }
    }
}

#[tokio::test]
async fn an_unreachable_store_fails_within_seconds() {
    // A store that cannot be reached fails fast enough for GitHub's 10 s delivery timeout.
    let url = secrecy::SecretString::from("postgres://nobody@127.0.0.1:1/none".to_string());
    let started = std::time::Instant::now();
    let res = backspace::store::Store::connect_with(&url, Duration::from_secs(1)).await;
    assert!(res.is_err());
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_replayed_body_under_a_new_delivery_id_starts_nothing() {
    for (name, t) in db::all().await {
        let ingress = Ingress::new(t.store.clone());
        let body = comment("/backspace fix");
        let (first, _) = ingress
            .send(delivery("issue_comment", "original", body.clone()))
            .await;
        assert_eq!(first, StatusCode::ACCEPTED, "{name}");
        // The same signed body, a new delivery id: a replay.
        let (status, answer) = ingress
            .send(delivery("issue_comment", "replayed", body))
            .await;
        assert_eq!(status, StatusCode::OK, "{name}: {answer}");
        assert_eq!(answer["status"], "replay", "{name}");
        // The same comment and body in another envelope (signed anew): a replay too.
        let resent = fixture_with(
            "webhooks/issue_comment/created.with-installation.json",
            |v| {
                v["comment"]["body"] = json!("/backspace fix");
                v["sender"]["site_admin"] = json!(true);
            },
        );
        let (_, answer) = ingress
            .send(delivery("issue_comment", "re-enveloped", resent))
            .await;
        assert_eq!(answer["status"], "replay", "{name}");
        // The comment edited to ask for something new runs.
        let edited = fixture_with(
            "webhooks/issue_comment/created.with-installation.json",
            |v| v["comment"]["body"] = json!("/backspace fix it differently"),
        );
        let (status, _) = ingress
            .send(delivery("issue_comment", "new-body", edited))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{name}");
        assert_eq!(t.store.job_counts().await.unwrap().queued, 2, "{name}");
        assert_eq!(t.store.delivery_count().await.unwrap(), 4, "{name}");
    }
}

#[tokio::test]
async fn a_label_event_runs_once_per_issue_label_and_time() {
    let t = db::sqlite().await;
    let ingress = Ingress::new(t.store.clone());
    let labeled = |at: &str, extra: bool| {
        fixture_with("webhooks/issues/labeled.json", |v| {
            v["label"]["name"] = json!("backspace");
            v["issue"]["updated_at"] = json!(at);
            v["installation"] = json!({ "id": 7 });
            if extra {
                v["sender"]["site_admin"] = json!(true);
            }
        })
    };
    let (s1, _) = ingress
        .send(delivery(
            "issues",
            "l-1",
            labeled("2026-01-01T00:00:00Z", false),
        ))
        .await;
    let (_, again) = ingress
        .send(delivery(
            "issues",
            "l-2",
            labeled("2026-01-01T00:00:00Z", true),
        ))
        .await;
    let (s3, _) = ingress
        .send(delivery(
            "issues",
            "l-3",
            labeled("2026-01-02T00:00:00Z", false),
        ))
        .await;
    assert_eq!((s1, s3), (StatusCode::ACCEPTED, StatusCode::ACCEPTED));
    assert_eq!(again["status"], "replay", "{again}");
    assert_eq!(t.store.job_counts().await.unwrap().queued, 2);
}

#[tokio::test]
async fn a_redelivery_of_a_delivery_that_never_ran_still_runs() {
    let t = db::sqlite().await;
    let ingress = Ingress::new(t.store.clone());
    let body = comment("/backspace fix");
    // The store is down when GitHub first delivers: 503, nothing stored.
    t.store.close().await;
    let (status, _) = ingress
        .send(delivery("issue_comment", "lost", body.clone()))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let store = backspace::store::Store::connect(&t.url).await.unwrap();
    let ingress = Ingress::new(store.clone());
    // GitHub's redelivery keeps the delivery id and the body.
    let (status, answer) = ingress.send(delivery("issue_comment", "lost", body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(store.job_counts().await.unwrap().queued, 1);
}

#[tokio::test]
async fn a_command_from_someone_plainly_without_write_access_makes_no_job_and_one_denial() {
    for (name, t) in db::all().await {
        let ingress = Ingress::new(t.store.clone());
        for i in 0..30 {
            let body = fixture_with(
                "webhooks/issue_comment/created.with-installation.json",
                |v| {
                    v["comment"]["id"] = json!(1000 + i);
                    v["comment"]["body"] = json!(format!("/backspace do thing {i}"));
                    v["comment"]["author_association"] = json!("NONE");
                },
            );
            let (status, answer) = ingress
                .send(delivery("issue_comment", &format!("flood-{i}"), body))
                .await;
            assert_eq!(status, StatusCode::ACCEPTED, "{name}: {answer}");
            assert_eq!(answer["reason"], "the requester has no write access");
        }
        assert_eq!(t.store.job_counts().await.unwrap().queued, 0, "{name}");
        let taken = t.store.take_unanswered_denials(100).await.unwrap();
        assert_eq!(taken.len(), 1, "{name}: {taken:?}");
        assert_eq!(taken[0].attempts_before, 0, "{name}");
        assert!(t
            .store
            .take_unanswered_denials(100)
            .await
            .unwrap()
            .is_empty());
    }
}
