//! Journeys of a maintainer, told as scripts: a comment goes in, and the test says every
//! comment, reaction, push, pull request and model call it expects; `finish` fails on anything
//! else. What the maintainer reads (the final comment, the pull request's body) is kept as a
//! reviewed snapshot in `tests/snapshots/`.

mod support;

use backspace::job::JobState;
use support::bot::{edit_script, MAINTAINER};
use support::fake_anthropic::{Reply, Step};
use support::tester::{stable, Tester};

const APP_JS: &str = "export function greet(name) {\n  return 'hi ' + name;\n}\n";
const FILES: &[(&str, &str)] = &[("src/app.js", APP_JS), ("README.md", "# app\n")];

async fn within<F: std::future::Future<Output = ()>>(secs: u64, f: F) {
    tokio::time::timeout(std::time::Duration::from_secs(secs), f)
        .await
        .expect("the test timed out");
}

fn greet_script() -> Vec<Step> {
    edit_script("src/app.js", "'hi '", "'Hello, '", "Greet people properly")
}

#[tokio::test]
async fn a_command_becomes_one_pull_request_one_comment_and_two_reactions() {
    within(180, async {
        let Some(mut t) = Tester::start(FILES, greet_script()).await else {
            return;
        };
        let issue = t.open_issue("Greeting is rude", "It says hi.");
        let (job, comment) = t
            .comment(issue, MAINTAINER, "/backspace make greet say Hello")
            .await;
        t.ends(&job, JobState::Succeeded).await;
        t.expect_model_calls(4);
        t.expect_pushes(1);
        let pull = t.expect_pull();
        assert_eq!(
            (pull.head.as_str(), pull.base.as_str(), pull.draft),
            ("backspace/1-make-greet-say-hello", "main", false)
        );
        insta::assert_snapshot!("success_pr_body", stable(&pull.body, &[&job]));
        let progress = t.expect_comment(issue);
        insta::assert_snapshot!("success_comment", stable(&progress.body, &[&job]));
        t.expect_reactions(comment, &["eyes", "rocket"]);
        t.finish();
    })
    .await;
}

#[tokio::test]
async fn a_question_is_answered_in_the_comment_without_a_push() {
    within(120, async {
        let script = vec![
            Reply::bash("grep -n greet src/app.js").into(),
            Reply::text(
                "TITLE: Where greet lives\n\nSUMMARY:\n`greet` is defined in src/app.js on line 1.",
            )
            .into(),
        ];
        let Some(mut t) = Tester::start(FILES, script).await else {
            return;
        };
        let issue = t.open_issue("Question", "Where is greet?");
        let (job, comment) = t
            .comment(issue, MAINTAINER, "/backspace where is greet defined?")
            .await;
        t.ends(&job, JobState::Succeeded).await;
        t.expect_model_calls(2);
        let answer = t.expect_comment(issue);
        insta::assert_snapshot!("answer_comment", stable(&answer.body, &[&job]));
        t.expect_reactions(comment, &["eyes", "rocket"]);
        t.finish();
    })
    .await;
}

#[tokio::test]
async fn invalid_settings_fail_with_what_to_fix_and_no_model_call() {
    within(120, async {
        let files = [
            ("src/app.js", APP_JS),
            (".github/backspace.yml", "tset: npm test\n"),
        ];
        let Some(mut t) = Tester::start(&files, greet_script()).await else {
            return;
        };
        let issue = t.open_issue("x", "y");
        let (job, comment) = t.comment(issue, MAINTAINER, "/backspace do it").await;
        t.ends(&job, JobState::Failed).await;
        let failure = t.expect_comment(issue);
        insta::assert_snapshot!("failure_comment", stable(&failure.body, &[&job]));
        t.expect_reactions(comment, &["eyes", "confused"]);
        t.finish();
    })
    .await;
}

#[tokio::test]
async fn a_reader_gets_one_reply_and_starts_nothing() {
    within(120, async {
        let Some(mut t) = Tester::start(FILES, greet_script()).await else {
            return;
        };
        t.gh.add_collaborator(&t.repo, "reader", "read");
        let issue = t.open_issue("x", "y");
        for body in ["/backspace do it", "/backspace do it again"] {
            let (job, _) = t.comment(issue, "reader", body).await;
            t.ends(&job, JobState::Failed).await;
        }
        let reply = t.expect_comment(issue);
        insta::assert_snapshot!("denied_reply", reply.body);
        t.finish();
    })
    .await;
}

/// The tester itself: a reply the test did not expect fails `finish`.
#[tokio::test]
async fn finish_fails_on_a_comment_the_test_did_not_expect() {
    let Some(mut t) = Tester::start(FILES, vec![]).await else {
        return;
    };
    let issue = t.open_issue("x", "y");
    let (job, comment) = t.comment(issue, MAINTAINER, "/backspace help").await;
    t.ends(&job, JobState::Succeeded).await;
    t.expect_reactions(comment, &["eyes"]);
    // The usage was posted, and the test does not say so.
    let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| t.finish()));
    let message = failed.expect_err("finish must fail");
    let message = message
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(message.contains("a comment on #1"), "{message}");
}
