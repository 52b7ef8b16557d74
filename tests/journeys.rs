//! Journeys of a maintainer, told as scripts: a comment goes in, and the test says every
//! comment, reaction, push, pull request and model call it expects; `finish` fails on anything
//! else. What the maintainer reads (the final comment, the pull request's body) is kept as a
//! reviewed snapshot in `tests/snapshots/`.

mod support;
use support::within;

use std::time::Duration;

use backspace::github::IssueNumber;
use backspace::job::{JobResult, JobState};
use support::bot::{edit_script, MAINTAINER};
use support::fake_anthropic::{Reply, Step};
use support::fake_github::FakeCheckRun;
use support::tester::{shown, stable, Tester};

const APP_JS: &str = "export function greet(name) {\n  return 'hi ' + name;\n}\n";
const FILES: &[(&str, &str)] = &[("src/app.js", APP_JS), ("README.md", "# app\n")];

fn greet_script() -> Vec<Step> {
    edit_script("src/app.js", "'hi '", "'Hello, '", "Greet people properly")
}

/// The greet edit, ending with `summary` as the agent's words.
fn greet_saying(summary: &str) -> Vec<Step> {
    let mut script = greet_script();
    script.pop();
    script.push(
        Reply::text(&format!(
            "TITLE: Greet people properly\n\nSUMMARY:\n{summary}"
        ))
        .into(),
    );
    script
}

/// A test command that prints a line, then fails.
const FAILING_TEST: &str = "test: grep -n greet src/app.js && grep -q Goodbye src/app.js\n";

/// `body` without its code (fenced blocks and inline spans), where GitHub links no mention.
fn prose(body: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in body.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            let kept: String = line.split('`').step_by(2).collect();
            out.push_str(&kept);
            out.push('\n');
        }
    }
    out
}

const ROOT_AGENTS: &str = "# For agents\n\nEvery change keeps the greeting polite.\n";
const SRC_AGENTS: &str = "Code under src/ uses single quotes for strings.\n";

/// The only check run on the repository, once it completed.
fn the_check_run(t: &Tester) -> FakeCheckRun {
    let runs = t.gh.check_runs(&t.repo);
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs[0].clone()
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
        let reply = t.await_comment(issue).await;
        // One reply for both: nothing more comes.
        tokio::time::sleep(Duration::from_secs(1)).await;
        insta::assert_snapshot!("denied_reply", reply.body);
        t.finish();
    })
    .await;
}

#[tokio::test]
async fn a_refusal_reply_github_did_not_take_is_posted_once_on_a_later_try() {
    within(120, async {
        let Some(mut t) = Tester::start(FILES, greet_script()).await else {
            return;
        };
        t.gh.add_collaborator(&t.repo, "reader", "read");
        let issue = t.open_issue("x", "y");
        // Every POST of the lane's first try fails, the client's own retries included (GitHub's
        // policy: five attempts).
        let post = "POST /repos/{owner}/{repo}/issues/{issue_number}/comments";
        t.gh.fail(post, 502, None, 5);
        let (job, _) = t.comment(issue, "reader", "/backspace do it").await;
        t.ends(&job, JobState::Failed).await;
        // The first try's five attempts back off for up to 7.5 s, the lane pauses 5 s more.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
        while t.gh.requests_to(post).len() < 6 {
            assert!(tokio::time::Instant::now() < deadline, "no later try");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let reply = t.await_comment(issue).await;
        assert!(
            reply
                .body
                .starts_with("Sorry @reader, only people with write access"),
            "{}",
            reply.body
        );
        assert!(reply.body.contains("<!-- backspace:denied-for:reader -->"));
        // The five refused and the one that went through, and nothing after it.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(t.gh.requests_to(post).len(), 6);
        t.finish();
    })
    .await;
}

#[tokio::test]
async fn a_passing_run_is_checked_follows_agents_md_commits_as_the_bot_user_and_pings_nobody() {
    within(180, async {
        let files = [
            ("src/app.js", APP_JS),
            (".github/backspace.yml", "test: grep -q Hello src/app.js\n"),
            ("AGENTS.md", ROOT_AGENTS),
            ("src/AGENTS.md", SRC_AGENTS),
        ];
        let script = greet_saying("Greets with Hello now. cc @octo/reviewers for a look.");
        let Some(mut t) = Tester::start(&files, script).await else {
            return;
        };
        let issue = t.open_issue("Greeting is rude", "See src/app.js.");
        let (job, comment) = t
            .comment(issue, MAINTAINER, "/backspace make greet say Hello")
            .await;
        t.ends(&job, JobState::Succeeded).await;
        t.expect_model_calls(4);
        t.expect_pushes(1);

        // The repository's own instructions reached the model, the nearest first.
        let system = t.model.requests()[0].body["system"].to_string();
        let (src, root) = (
            system.find("single quotes"),
            system.find("keeps the greeting polite"),
        );
        assert!(src.is_some() && root.is_some() && src < root, "{system}");

        let pull = t.expect_pull();
        assert!(!pull.draft);
        assert_eq!(pull.requested_reviewers, vec![MAINTAINER]);
        assert!(
            pull.body
                .contains("**Instructions followed:** `src/AGENTS.md`, `AGENTS.md`"),
            "{}",
            pull.body
        );
        assert!(
            pull.body
                .contains("**Tests:** ✅ `grep -q Hello src/app.js` passed (exit 0)"),
            "{}",
            pull.body
        );

        // The commit is the bot user's, by its own id, with the requester as co-author.
        let bot = format!(
            "backspace-test[bot] <{}+backspace-test[bot]@users.noreply.github.com>",
            t.gh.bot_user_id()
        );
        let who = t.gh.last_commit(&t.repo, &pull.head, "%an <%ae>|%cn <%ce>");
        assert_eq!(who, Some(format!("{bot}|{bot}")));
        let requester_id = t.gh.user_json(MAINTAINER)["id"].clone();
        let message =
            t.gh.last_commit(&t.repo, &pull.head, "%B")
                .unwrap_or_default();
        let trailer = format!(
            "Co-authored-by: maintainer <{requester_id}+maintainer@users.noreply.github.com>"
        );
        assert!(message.ends_with(&trailer), "{message}");

        // The Checks tab: one run on the pushed commit, linked to the run page, passed.
        let check = the_check_run(&t);
        assert_eq!(check.name, "Backspace");
        assert_eq!(
            Some(check.head_sha.clone()),
            t.gh.branch_sha(&t.repo, &pull.head)
        );
        assert_eq!(check.statuses, vec!["in_progress", "completed"]);
        assert_eq!(check.conclusion.as_deref(), Some("success"));
        assert_eq!(
            check.details_url,
            Some(format!("http://backspace.test/runs/{job}?sig=test"))
        );
        assert_eq!(check.external_id.as_deref(), Some(job.as_str()));

        let progress = t.expect_comment(issue);
        assert!(
            progress
                .body
                .contains("- [x] Checks · ✅ `grep -q Hello src/app.js` passed (exit 0)"),
            "{}",
            progress.body
        );
        // Every edit showed something new: none was for the clock alone.
        let shown: Vec<String> = progress
            .history
            .iter()
            .map(|b| stable(b, &[&job]))
            .collect();
        assert!(shown.windows(2).all(|w| w[0] != w[1]), "{shown:#?}");
        assert!(
            shown[..shown.len() - 1]
                .iter()
                .all(|b| b.contains("`/backspace cancel`")),
            "{shown:#?}"
        );
        // The agent's `@octo/reviewers` pings nobody, in the comment or the pull request.
        for body in [&progress.body, &pull.body] {
            assert!(body.contains("cc @&#8203;octo/reviewers"), "{body}");
            assert!(!prose(body).contains("@octo/reviewers"), "{body}");
        }
        t.expect_reactions(comment, &["eyes", "rocket"]);
        t.finish();
    })
    .await;
}

#[tokio::test]
async fn a_failing_test_opens_a_draft_with_a_cross_and_a_failed_check() {
    within(180, async {
        let files = [
            ("src/app.js", APP_JS),
            (".github/backspace.yml", FAILING_TEST),
        ];
        let Some(mut t) = Tester::start(&files, greet_script()).await else {
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
        assert!(pull.draft, "a failing test opens a draft");
        insta::assert_snapshot!("failed_tests_pr_body", stable(&pull.body, &[&job]));
        let check = the_check_run(&t);
        assert_eq!(check.conclusion.as_deref(), Some("failure"));
        assert_eq!(
            check.output["title"],
            "grep -n greet src/app.js && grep -q Goodbye src/app.js failed (exit 1)"
        );
        assert!(
            check.output["text"]
                .as_str()
                .unwrap_or_default()
                .contains("1:export function greet"),
            "{}",
            check.output
        );
        let progress = t.expect_comment(issue);
        insta::assert_snapshot!("failed_tests_comment", stable(&progress.body, &[&job]));
        t.expect_reactions(comment, &["eyes", "rocket"]);
        t.finish();
    })
    .await;
}

#[tokio::test]
async fn a_review_with_the_command_iterates_with_its_comments_and_answers_in_its_thread() {
    within(240, async {
        let mut script = greet_script();
        script.extend(edit_script(
            "src/app.js",
            "'Hello, '",
            "'Hello, world and '",
            "Greet the world too",
        ));
        let Some(mut t) = Tester::start(FILES, script).await else {
            return;
        };
        let issue = t.open_issue("Greeting is rude", "It says hi.");
        let (first, comment) = t
            .comment(issue, MAINTAINER, "/backspace make greet say Hello")
            .await;
        t.ends(&first, JobState::Succeeded).await;
        t.expect_model_calls(4);
        t.expect_pushes(1);
        let pull = t.expect_pull();
        t.expect_comment(issue);
        t.expect_reactions(comment, &["eyes", "rocket"]);

        let pr = IssueNumber(pull.number);
        let body = "Nearly.\n\n/backspace address my comments";
        let inline = [("src/app.js", 2, "greet the whole world here")];
        let (job, review_comments) = t.review(pr, MAINTAINER, body, &inline).await;
        t.ends(&job, JobState::Succeeded).await;
        t.expect_model_calls(4);
        t.expect_pushes(1);
        assert!(t
            .gh
            .file_on_branch(&t.repo, &pull.head, "src/app.js")
            .unwrap_or_default()
            .contains("'Hello, world and '"));
        // The agent was shown the review's comments, with their file and line.
        let asked = t.model.requests()[4].body.to_string();
        assert!(asked.contains("address my comments"), "{asked}");
        assert!(
            asked.contains("`src/app.js` line 2: greet the whole world here"),
            "{asked}"
        );
        // The answer is in the review's thread, and the run's comment on the pull request.
        let reply = t.expect_review_reply(pr);
        assert_eq!(
            shown(&reply.body),
            "Pushed to this pull request: Greet the world too"
        );
        assert_eq!(
            t.gh.comment_json(reply.id)["in_reply_to_id"],
            review_comments[0]
        );
        let progress = t.expect_comment(pr);
        assert!(
            progress
                .body
                .starts_with(&format!("### ✅ Pushed to pull request [#{}]", pr.0)),
            "{}",
            progress.body
        );
        assert_eq!(t.pull(pull.number).requested_reviewers, vec![MAINTAINER]);
        t.finish();
    })
    .await;
}

#[tokio::test]
async fn a_cancelled_run_says_so_and_what_it_spent() {
    within(120, async {
        let script = vec![
            Reply::bash("echo started").into(),
            Step::Stall(Duration::from_secs(60)),
        ];
        let Some(mut t) = Tester::start(FILES, script).await else {
            return;
        };
        let issue = t.open_issue("x", "y");
        let (job, comment) = t.comment(issue, MAINTAINER, "/backspace slow work").await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while t.model.requests().len() < 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the agent never got to work"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (cancel, cancel_comment) = t.comment(issue, MAINTAINER, "/backspace cancel").await;
        t.ends(&job, JobState::Cancelled).await;
        t.ends(&cancel, JobState::Succeeded).await;
        t.expect_model_calls(2);
        let progress = t.expect_comment(issue);
        insta::assert_snapshot!("cancel_comment", stable(&progress.body, &[&job]));
        let reply = t.expect_comment(issue);
        assert!(
            reply.body.contains("stopping the running job"),
            "{}",
            reply.body
        );
        let Some(JobResult::Cancelled(report)) = t
            .store
            .job(&job)
            .await
            .ok()
            .flatten()
            .and_then(|j| j.result)
        else {
            panic!("a cancelled job");
        };
        assert!(
            report.usage.is_some_and(|u| u.total_input() > 0),
            "{report:?}"
        );
        t.expect_reactions(comment, &["eyes"]);
        t.expect_reactions(cancel_comment, &["eyes"]);
        t.finish();
    })
    .await;
}

#[tokio::test]
async fn a_failure_after_the_agent_worked_still_says_what_it_spent() {
    within(180, async {
        let Some(mut t) = Tester::start(FILES, greet_script()).await else {
            return;
        };
        t.gh.fail("POST /repos/{owner}/{repo}/pulls", 422, None, 5);
        let issue = t.open_issue("x", "y");
        let (job, comment) = t
            .comment(issue, MAINTAINER, "/backspace make greet say Hello")
            .await;
        let ended = t.ends(&job, JobState::Failed).await;
        t.expect_model_calls(4);
        t.expect_pushes(1);
        let Some(JobResult::Failed(report)) = ended.result else {
            panic!("a failure");
        };
        assert!(
            report.usage.is_some_and(|u| u.total_input() > 0),
            "{report:?}"
        );
        let failure = t.expect_comment(issue);
        assert!(
            failure
                .body
                .starts_with("### ❌ Backspace could not finish"),
            "{}",
            failure.body
        );
        assert!(
            failure
                .body
                .contains("**What failed:** opening the pull request"),
            "{}",
            failure.body
        );
        assert!(
            failure.body.contains(" · 2.9k tokens · $0.01"),
            "{}",
            failure.body
        );
        // The pushed commit's check run still ends: no test command, so neutral.
        assert_eq!(the_check_run(&t).conclusion.as_deref(), Some("neutral"));
        t.expect_reactions(comment, &["eyes", "confused"]);
        t.finish();
    })
    .await;
}

#[tokio::test]
async fn the_repositorys_own_label_starts_runs_others_end_quietly_and_help_names_it() {
    within(180, async {
        let files = [
            ("src/app.js", APP_JS),
            (".github/backspace.yml", "label: ai-fix\n"),
        ];
        let script =
            vec![Reply::text("TITLE: Nothing to do\n\nSUMMARY:\nThe greeting is fine.").into()];
        let Some(mut t) = Tester::start(&files, script).await else {
            return;
        };
        let issue = t.open_issue("Greeting", "Is it fine?");
        // The server-wide default is not this repository's label: nothing happens.
        let skipped = t.label(issue, MAINTAINER, "backspace").await;
        let ended = t.ends(&skipped, JobState::Succeeded).await;
        assert!(
            matches!(ended.result, Some(JobResult::Skipped(_))),
            "{:?}",
            ended.result
        );
        t.expect_model_calls(0);
        // Its own label runs.
        let run = t.label(issue, MAINTAINER, "ai-fix").await;
        t.ends(&run, JobState::Succeeded).await;
        t.expect_model_calls(1);
        let answer = t.expect_comment(issue);
        assert!(
            answer.body.starts_with("### 💬 Answered"),
            "{}",
            answer.body
        );
        t.expect_issue_reactions(issue, &["eyes", "rocket"]);
        // And the help says so.
        let (help, comment) = t.comment(issue, MAINTAINER, "/backspace help").await;
        t.ends(&help, JobState::Succeeded).await;
        let usage = t.expect_comment(issue);
        assert!(
            usage.body.contains("Adding the label `ai-fix` to an issue"),
            "{}",
            usage.body
        );
        t.expect_reactions(comment, &["eyes"]);
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
