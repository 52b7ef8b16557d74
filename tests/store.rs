//! The job store against real SQLite and real Postgres: every test runs on both.

mod support;

use std::time::Duration;

use backspace::job::{JobKind, JobRequest, JobSource, JobState};
use backspace::run_event::RunEvent;
use backspace::store::{DeliveryEffect, DeliveryOutcome, InstallationChange, NewDelivery, Store};
use serde_json::json;
use support::db;

fn delivery(id: &str) -> NewDelivery {
    NewDelivery {
        delivery_id: id.into(),
        event: "issue_comment".into(),
        action: Some("created".into()),
        installation_id: Some(7),
        repository: Some("octo/app".into()),
    }
}

fn run_on(number: u64, prompt: &str) -> JobRequest {
    JobRequest {
        kind: JobKind::Run,
        source: JobSource::Comment,
        installation_id: Some(7),
        repository: "octo/app".into(),
        clone_url: Some("https://github.com/octo/app.git".into()),
        default_branch: Some("main".into()),
        number: Some(number),
        is_pull_request: false,
        comment_id: Some(99),
        requester: "alice".into(),
        prompt: prompt.into(),
        context: json!({"title": "t"}),
    }
}

async fn queue(store: &Store, id: &str, job: &JobRequest) -> String {
    match store
        .record_delivery(&delivery(id), DeliveryEffect::Job(job))
        .await
        .unwrap()
    {
        DeliveryOutcome::Stored {
            job_id: Some(j), ..
        } => j,
        other => panic!("{other:?}"),
    }
}

const LEASE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_delivery_and_its_job_are_stored_once() {
    for (name, t) in db::all().await {
        let s = &t.store;
        let job = run_on(1, "add validation");
        let id = queue(s, "d-1", &job).await;
        let stored = s.job(&id).await.unwrap().unwrap();
        assert_eq!(stored.state, JobState::Queued, "{name}");
        assert_eq!(stored.prompt, "add validation");
        assert_eq!(stored.number, Some(1));
        assert_eq!(stored.comment_id, Some(99));
        assert_eq!(stored.context, json!({"title": "t"}));
        assert_eq!(
            s.record_delivery(&delivery("d-1"), DeliveryEffect::Job(&job))
                .await
                .unwrap(),
            DeliveryOutcome::Duplicate,
            "{name}"
        );
        assert_eq!(s.delivery_count().await.unwrap(), 1, "{name}");
        assert_eq!(s.job_counts().await.unwrap().queued, 1, "{name}");
    }
}

#[tokio::test]
async fn a_hundred_copies_of_one_delivery_at_once_make_one_job() {
    for (name, t) in db::all().await {
        let job = run_on(1, "x");
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let s = t.store.clone();
                let job = job.clone();
                tokio::spawn(async move {
                    s.record_delivery(&delivery("same"), DeliveryEffect::Job(&job))
                        .await
                })
            })
            .collect();
        let mut stored = 0;
        for task in tasks {
            if let DeliveryOutcome::Stored { .. } = task.await.unwrap().unwrap() {
                stored += 1;
            }
        }
        assert_eq!(stored, 1, "{name}");
        assert_eq!(t.store.job_counts().await.unwrap().queued, 1, "{name}");
    }
}

#[tokio::test]
async fn jobs_are_claimed_oldest_first_and_one_at_a_time_per_issue() {
    for (name, t) in db::all().await {
        let s = &t.store;
        let a1 = queue(s, "d1", &run_on(1, "first on 1")).await;
        let a2 = queue(s, "d2", &run_on(1, "second on 1")).await;
        let b1 = queue(s, "d3", &run_on(2, "first on 2")).await;
        let c1 = s.claim_next("w1", LEASE).await.unwrap().unwrap();
        assert_eq!(c1.id, a1, "{name}");
        assert_eq!(
            (c1.state, c1.attempts, c1.lease_owner.as_deref()),
            (JobState::Running, 1, Some("w1"))
        );
        // The second job on issue 1 waits for the first; issue 2's job goes ahead.
        let c2 = s.claim_next("w2", LEASE).await.unwrap().unwrap();
        assert_eq!(c2.id, b1, "{name}");
        assert!(s.claim_next("w3", LEASE).await.unwrap().is_none(), "{name}");
        assert!(s
            .finish(&a1, "w1", JobState::Succeeded, &json!({"pr_url": "u"}))
            .await
            .unwrap());
        let c3 = s.claim_next("w3", LEASE).await.unwrap().unwrap();
        assert_eq!(c3.id, a2, "{name}");
        let done = s.job(&a1).await.unwrap().unwrap();
        assert_eq!(done.state, JobState::Succeeded);
        assert_eq!(done.result, Some(json!({"pr_url": "u"})));
        assert!(done.finished_at.is_some());
    }
}

#[tokio::test]
async fn a_lease_is_renewed_only_by_its_owner() {
    for (name, t) in db::all().await {
        let s = &t.store;
        let id = queue(s, "d1", &run_on(1, "x")).await;
        s.claim_next("w1", LEASE).await.unwrap().unwrap();
        assert!(s.renew_lease(&id, "w1", LEASE).await.unwrap(), "{name}");
        assert!(!s.renew_lease(&id, "w2", LEASE).await.unwrap(), "{name}");
        assert!(
            !s.finish(&id, "w2", JobState::Failed, &json!({}))
                .await
                .unwrap(),
            "{name}"
        );
        assert!(s.release(&id, "w1").await.unwrap());
        assert_eq!(s.job(&id).await.unwrap().unwrap().state, JobState::Queued);
    }
}

#[tokio::test]
async fn expired_leases_are_retried_once_then_given_up() {
    for (name, t) in db::all().await {
        let s = &t.store;
        let id = queue(s, "d1", &run_on(1, "x")).await;
        s.claim_next("crashed", Duration::from_millis(0))
            .await
            .unwrap()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let (requeued, exhausted) = s.recover_expired(2).await.unwrap();
        assert_eq!((requeued.len(), exhausted.len()), (1, 0), "{name}");
        let again = s
            .claim_next("crashed-again", Duration::from_millis(0))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (again.id.as_str(), again.attempts),
            (id.as_str(), 2),
            "{name}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
        let (requeued, exhausted) = s.recover_expired(2).await.unwrap();
        assert_eq!((requeued.len(), exhausted.len()), (0, 1), "{name}");
        assert_eq!(exhausted[0].id, id);
    }
}

#[tokio::test]
async fn cancel_stops_queued_jobs_and_flags_running_ones() {
    for (name, t) in db::all().await {
        let s = &t.store;
        let running = queue(s, "d1", &run_on(1, "a")).await;
        let queued = queue(s, "d2", &run_on(1, "b")).await;
        let other = queue(s, "d3", &run_on(2, "c")).await;
        s.claim_next("w", LEASE).await.unwrap().unwrap();
        assert_eq!(
            s.request_cancel("octo/app", 1, "cancelled by alice")
                .await
                .unwrap(),
            (1, 1),
            "{name}"
        );
        assert!(s.cancel_requested(&running).await.unwrap());
        assert_eq!(
            s.job(&queued).await.unwrap().unwrap().state,
            JobState::Cancelled
        );
        assert_eq!(
            s.job(&other).await.unwrap().unwrap().state,
            JobState::Queued
        );
        assert!(!s.cancel_requested(&other).await.unwrap());
    }
}

#[tokio::test]
async fn a_deleted_installation_cancels_its_queued_jobs() {
    for (name, t) in db::all().await {
        let s = &t.store;
        let created = InstallationChange {
            id: 7,
            account: "octo".into(),
            state: Some("active"),
            repositories: Some(vec!["octo/app".into(), "octo/lib".into()]),
            added: vec![],
            removed: vec![],
        };
        s.record_delivery(&delivery("i1"), DeliveryEffect::Installation(&created))
            .await
            .unwrap();
        let job = queue(s, "d1", &run_on(1, "x")).await;
        let removed = InstallationChange {
            state: None,
            repositories: None,
            removed: vec!["octo/lib".into()],
            ..created.clone()
        };
        s.record_delivery(&delivery("i2"), DeliveryEffect::Installation(&removed))
            .await
            .unwrap();
        assert_eq!(
            s.installation(7).await.unwrap(),
            Some(("active".into(), vec!["octo/app".into()])),
            "{name}"
        );
        let deleted = InstallationChange {
            state: Some("deleted"),
            repositories: None,
            ..created.clone()
        };
        let out = s
            .record_delivery(&delivery("i3"), DeliveryEffect::Installation(&deleted))
            .await
            .unwrap();
        assert_eq!(
            out,
            DeliveryOutcome::Stored {
                job_id: None,
                cancelled_jobs: 1
            },
            "{name}"
        );
        assert_eq!(
            s.job(&job).await.unwrap().unwrap().state,
            JobState::Cancelled
        );
        assert_eq!(s.installation(7).await.unwrap().unwrap().0, "deleted");
    }
}

#[tokio::test]
async fn run_events_come_back_in_order_from_any_point() {
    for (name, t) in db::all().await {
        let s = &t.store;
        let id = queue(s, "d1", &run_on(1, "x")).await;
        let events = [
            RunEvent::Start {
                run_id: id.clone(),
                repo: Some("octo/app".into()),
                prompt: None,
            },
            RunEvent::progress("sandbox", "ready"),
            RunEvent::AiMessage {
                text: "looking".into(),
            },
        ];
        for (i, e) in events.iter().enumerate() {
            assert_eq!(
                s.append_event(&id, e).await.unwrap(),
                i as i64 + 1,
                "{name}"
            );
        }
        let all = s.events_after(&id, 0).await.unwrap();
        assert_eq!(
            all.iter().map(|e| e.event.clone()).collect::<Vec<_>>(),
            events.to_vec(),
            "{name}"
        );
        let tail = s.events_after(&id, 2).await.unwrap();
        assert_eq!((tail.len(), tail[0].seq), (1, 3), "{name}");
    }
}

#[tokio::test]
async fn concurrent_claimers_never_share_a_job_or_an_issue() {
    for (name, t) in db::all().await {
        let s = &t.store;
        // Ten issues, three jobs each.
        for n in 0..30u64 {
            queue(s, &format!("d{n}"), &run_on(n % 10, "x")).await;
        }
        let tasks: Vec<_> = (0..8)
            .map(|w| {
                let s = s.clone();
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    while let Some(j) = s.claim_next(&format!("w{w}"), LEASE).await.unwrap() {
                        got.push(j);
                    }
                    got
                })
            })
            .collect();
        let mut claimed = Vec::new();
        for task in tasks {
            claimed.extend(task.await.unwrap());
        }
        // Nothing finished, so exactly one job per issue could start.
        assert_eq!(claimed.len(), 10, "{name}");
        let mut numbers: Vec<_> = claimed.iter().map(|j| j.number).collect();
        numbers.sort();
        numbers.dedup();
        assert_eq!(numbers.len(), 10, "{name}");
    }
}

#[tokio::test]
async fn a_second_connection_sees_the_same_sqlite_file() {
    let t = db::sqlite().await;
    queue(&t.store, "d1", &run_on(1, "x")).await;
    let again = Store::connect(&t.url).await.unwrap();
    assert_eq!(again.job_counts().await.unwrap().queued, 1);
}
