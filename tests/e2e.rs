//! From comment to pull request, end to end: the real router, store, workers, Docker sandbox and
//! git, against the fake GitHub (with git over HTTP) and the scripted fake Messages API.

mod support;
use support::within;

use std::time::Duration;

use backspace::github::IssueNumber;
use backspace::job::JobState;
use serde_json::json;
use support::bot::{edit_script, Bot, Options, MAINTAINER};
use support::fake_anthropic::{Reply, Step};

const APP_TS: &str = "export function greet(name) {\n  return 'hi ' + name;\n}\n";
const FILES: &[(&str, &str)] = &[("src/app.js", APP_TS), ("README.md", "# app\n")];
const RUN: Duration = Duration::from_secs(120);

fn greet_script() -> Vec<Step> {
    edit_script("src/app.js", "'hi '", "'Hello, '", "Greet people properly")
}

#[tokio::test]
async fn a_command_on_an_issue_opens_a_pull_request_with_the_change() {
    within(180, async {
        let Some(bot) = Bot::start(FILES, greet_script()).await else {
            return;
        };
        let issue = bot.issue("Greeting is rude", "It says hi.");
        let (status, answer, comment) = bot
            .comment(issue, MAINTAINER, "/backspace make greet say Hello")
            .await;
        assert_eq!(status, 202, "{answer}");
        let job = bot.finished(answer["job_id"].as_str().unwrap(), RUN).await;
        assert_eq!(job.state, JobState::Succeeded, "{:?}", job.result);

        // The branch holds the change.
        let branch = "backspace/1-make-greet-say-hello";
        let file = bot
            .gh
            .file_on_branch(&bot.repo, branch, "src/app.js")
            .expect("the branch and file");
        assert!(file.contains("'Hello, ' + name"), "{file}");
        // One pull request with the fields.
        let pulls = bot.gh.pulls(&bot.repo);
        assert_eq!(pulls.len(), 1);
        let pr = &pulls[0];
        assert_eq!(
            (pr.head.as_str(), pr.base.as_str(), pr.draft),
            (branch, "main", false)
        );
        assert_eq!(pr.title, "Greet people properly");
        for part in [
            "Changed `src/app.js` as asked.",
            "**Files changed (1):**",
            "- `src/app.js`",
            "Closes #1",
            "Requested by @maintainer",
            "tokens",
        ] {
            assert!(pr.body.contains(part), "{part} not in {}", pr.body);
        }
        // One progress comment, ending with the link; reactions eyes then rocket.
        let comments = bot.bot_comments(issue);
        assert_eq!(comments.len(), 1, "{comments:?}");
        let last = &comments[0].body;
        assert!(last.starts_with("### ✅ Opened pull request [#"), "{last}");
        let pr_url = job.result.as_ref().unwrap().to_json()["pr_url"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            pr_url.ends_with(&format!("/pull/{}", pr.number)),
            "{pr_url}"
        );
        assert!(
            last.contains(&format!("[#{}]({pr_url})", pr.number)),
            "{last}"
        );
        assert!(
            last.contains("[live log](http://backspace.test/runs/"),
            "{last}"
        );
        assert!(
            comments[0].history.len() >= 2,
            "the comment was edited as the run went"
        );
        assert_eq!(bot.gh.reactions_on_comment(comment), vec!["eyes", "rocket"]);
        // The commit: the bot is the author, the requester a co-author.
        let types: Vec<String> = bot
            .events(&job.id)
            .await
            .iter()
            .map(|e| e["type"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(types.first().map(String::as_str), Some("start"));
        assert_eq!(types.last().map(String::as_str), Some("complete"));
        assert!(types.contains(&"pr_created".to_owned()) && types.contains(&"tool".to_owned()));
        assert_eq!(bot.containers_of(&job.id).await, 0, "no container is left");
        bot.gh.assert_requests_fit_openapi();
    })
    .await;
}

#[tokio::test]
async fn a_read_only_commenter_gets_one_polite_reply_and_no_run() {
    within(120, async {
        let Some(bot) = Bot::start(FILES, greet_script()).await else {
            return;
        };
        bot.gh.add_collaborator(&bot.repo, "reader", "read");
        let issue = bot.issue("x", "y");
        let (_, a, _) = bot.comment(issue, "reader", "/backspace do it").await;
        let (_, b, _) = bot.comment(issue, "reader", "/backspace do it again").await;
        for answer in [a, b] {
            let job = bot.finished(answer["job_id"].as_str().unwrap(), RUN).await;
            assert_eq!(job.state, JobState::Failed);
        }
        // The reply is posted by the denial lane, beside the workers: it may come just after.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while bot.bot_comments(issue).is_empty() {
            assert!(tokio::time::Instant::now() < deadline, "no reply");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let replies = bot.bot_comments(issue);
        assert_eq!(replies.len(), 1, "{replies:?}");
        assert!(replies[0].body.contains("only people with write access"));
        assert!(bot.model.requests().is_empty(), "no model call");
        assert!(bot.gh.pulls(&bot.repo).is_empty());
    })
    .await;
}

#[tokio::test]
async fn a_bots_comment_starts_nothing() {
    within(60, async {
        let Some(bot) = Bot::start(FILES, greet_script()).await else {
            return;
        };
        let issue = bot.issue("x", "y");
        bot.gh.add_collaborator(&bot.repo, "helper[bot]", "admin");
        let (status, answer, _) = bot
            .comment(issue, &bot.gh.bot_login(), "/backspace loop forever")
            .await;
        assert_eq!(
            (status.as_u16(), answer["reason"].as_str()),
            (202, Some("the app's own comment"))
        );
        assert_eq!(bot.store.job_counts().await.unwrap().queued, 0);
        assert!(bot.model.requests().is_empty());
    })
    .await;
}

#[tokio::test]
async fn a_run_that_changes_nothing_posts_the_answer_and_opens_no_pull_request() {
    within(120, async {
        let script = vec![
            Reply::bash("grep -n greet src/app.js").into(),
            Reply::text(
                "TITLE: Where greet lives\n\nSUMMARY:\n`greet` is defined in src/app.js on line 1.",
            )
            .into(),
        ];
        let Some(bot) = Bot::start(FILES, script).await else {
            return;
        };
        let issue = bot.issue("Question", "Where is greet?");
        let (_, answer, comment) = bot
            .comment(issue, MAINTAINER, "/backspace where is greet defined?")
            .await;
        let job = bot.finished(answer["job_id"].as_str().unwrap(), RUN).await;
        assert_eq!(job.state, JobState::Succeeded);
        assert_eq!(job.result.as_ref().unwrap().to_json()["status"], "answered");
        assert!(bot.gh.pulls(&bot.repo).is_empty());
        assert!(
            bot.gh
                .branch_sha(&bot.repo, "backspace/1-where-is-greet-defined")
                .is_none(),
            "no branch"
        );
        let comments = bot.bot_comments(issue);
        assert!(
            comments[0]
                .body
                .contains("`greet` is defined in src/app.js on line 1."),
            "{}",
            comments[0].body
        );
        assert!(comments[0].body.starts_with("### 💬 Answered"));
        assert_eq!(bot.gh.reactions_on_comment(comment), vec!["eyes", "rocket"]);
    })
    .await;
}

#[tokio::test]
async fn the_label_runs_with_the_issue_title_and_body() {
    within(180, async {
        let Some(bot) = Bot::start(FILES, greet_script()).await else {
            return;
        };
        let issue = bot.issue("Make greet polite", "Say Hello instead of hi.");
        let (status, answer) = bot.label(issue, MAINTAINER, "backspace").await;
        assert_eq!(status, 202, "{answer}");
        let job = bot.finished(answer["job_id"].as_str().unwrap(), RUN).await;
        assert_eq!(job.state, JobState::Succeeded, "{:?}", job.result);
        assert_eq!(job.prompt, "Make greet polite\n\nSay Hello instead of hi.");
        assert_eq!(bot.gh.pulls(&bot.repo).len(), 1);
        assert_eq!(
            bot.gh.reactions_on_issue(&bot.repo, issue),
            vec!["eyes", "rocket"]
        );
        // The request reached the model.
        let first = &bot.model.requests()[0].body;
        assert!(first.to_string().contains("Say Hello instead of hi."));
    })
    .await;
}

#[tokio::test]
async fn an_invalid_settings_file_is_explained_and_nothing_runs() {
    within(120, async {
        let files = [
            ("src/app.js", APP_TS),
            (".github/backspace.yml", "tset: npm test\n"),
        ];
        let Some(bot) = Bot::start(&files, greet_script()).await else {
            return;
        };
        let issue = bot.issue("x", "y");
        let (_, answer, comment) = bot.comment(issue, MAINTAINER, "/backspace fix it").await;
        let job = bot.finished(answer["job_id"].as_str().unwrap(), RUN).await;
        assert_eq!(job.state, JobState::Failed);
        let body = &bot.bot_comments(issue)[0].body;
        assert!(body.contains("unknown field `tset`"), "{body}");
        assert!(body.contains("Fix .github/backspace.yml"), "{body}");
        assert!(bot.model.requests().is_empty(), "no model call");
        assert_eq!(
            bot.gh.reactions_on_comment(comment),
            vec!["eyes", "confused"]
        );
    })
    .await;
}

#[tokio::test]
async fn a_change_to_a_workflow_file_is_refused_and_the_rest_is_kept() {
    within(180, async {
        let files = [("src/app.js", APP_TS), (".github/workflows/ci.yml", "on: push\n")];
        let script = vec![
            Reply::edit(json!({"command": "create", "path": ".github/workflows/ci.yml", "file_text": "on: push\njobs: {exfiltrate: {}}\n"})).into(),
            Reply::edit(json!({"command": "str_replace", "path": "src/app.js", "old_str": "'hi '", "new_str": "'Hello, '"})).into(),
            Reply::text("TITLE: Greet and tweak CI\n\nSUMMARY:\nDone.").into(),
        ];
        let Some(bot) = Bot::start(&files, script).await else { return };
        let issue = bot.issue("x", "y");
        let (_, answer, _) = bot.comment(issue, MAINTAINER, "/backspace greet and change ci").await;
        let job = bot.finished(answer["job_id"].as_str().unwrap(), RUN).await;
        assert_eq!(job.state, JobState::Succeeded, "{:?}", job.result);
        let branch = "backspace/1-greet-and-change-ci";
        assert_eq!(bot.gh.file_on_branch(&bot.repo, branch, ".github/workflows/ci.yml").as_deref(), Some("on: push\n"));
        assert!(bot.gh.file_on_branch(&bot.repo, branch, "src/app.js").unwrap().contains("Hello"));
        let pr = &bot.gh.pulls(&bot.repo)[0];
        assert!(pr.body.contains("`.github/workflows/ci.yml`: changes under .github/workflows/ are not allowed"), "{}", pr.body);
        assert!(bot.bot_comments(issue)[0].body.contains("refused"));
    })
    .await;
}

#[tokio::test]
async fn a_budget_hit_keeps_the_work_in_a_draft_pull_request() {
    within(180, async {
        let files = [("src/app.js", APP_TS), (".github/backspace.yml", "max_turns: 2\n")];
        let script = vec![
            Reply::edit(json!({"command": "str_replace", "path": "src/app.js", "old_str": "'hi '", "new_str": "'Hello, '"})).into(),
            Reply::bash("echo still working").into(),
            Reply::bash("echo never reached").into(),
        ];
        let Some(bot) = Bot::start(&files, script).await else { return };
        let issue = bot.issue("x", "y");
        let (_, answer, _) = bot.comment(issue, MAINTAINER, "/backspace long task").await;
        let job = bot.finished(answer["job_id"].as_str().unwrap(), RUN).await;
        assert_eq!(job.state, JobState::Succeeded, "{:?}", job.result);
        let pr = &bot.gh.pulls(&bot.repo)[0];
        assert!(pr.draft, "a budget hit opens a draft");
        assert!(pr.body.contains("This is a draft: the agent stopped early"), "{}", pr.body);
        assert!(bot.gh.file_on_branch(&bot.repo, &pr.head, "src/app.js").unwrap().contains("Hello"));
        let comment = &bot.bot_comments(issue)[0].body;
        assert!(comment.contains("turn"), "the comment says which limit: {comment}");
        assert_eq!(bot.model.requests().len(), 2);
    })
    .await;
}

#[tokio::test]
async fn an_iteration_on_the_pull_request_adds_a_commit_to_the_same_branch() {
    within(240, async {
        let mut script = greet_script();
        script.extend(edit_script(
            "src/app.js",
            "'Hello, '",
            "'Hello there, '",
            "Warmer greeting",
        ));
        let Some(bot) = Bot::start(FILES, script).await else {
            return;
        };
        let issue = bot.issue("x", "y");
        let (_, first, _) = bot
            .comment(issue, MAINTAINER, "/backspace make greet say Hello")
            .await;
        bot.finished(first["job_id"].as_str().unwrap(), RUN).await;
        let pr = bot.gh.pulls(&bot.repo)[0].clone();
        let before = bot.gh.branch_sha(&bot.repo, &pr.head).unwrap();
        let (_, second, comment) = bot
            .comment(
                IssueNumber(pr.number),
                MAINTAINER,
                "/backspace make it warmer",
            )
            .await;
        let job = bot.finished(second["job_id"].as_str().unwrap(), RUN).await;
        assert_eq!(job.state, JobState::Succeeded, "{:?}", job.result);
        assert_eq!(bot.gh.pulls(&bot.repo).len(), 1, "no second pull request");
        let after = bot.gh.branch_sha(&bot.repo, &pr.head).unwrap();
        assert_ne!(before, after, "a new commit");
        assert!(bot
            .gh
            .file_on_branch(&bot.repo, &pr.head, "src/app.js")
            .unwrap()
            .contains("'Hello there, '"));
        assert_eq!(bot.gh.reactions_on_comment(comment), vec!["eyes", "rocket"]);
        // The agent saw the pull request and the earlier run.
        let asked = bot.model.requests().last().unwrap().body.to_string();
        assert!(asked.contains("follow-up on pull request"), "{asked}");
    })
    .await;
}

#[tokio::test]
async fn a_review_comment_iterates_with_its_file_and_line_and_answers_in_the_thread() {
    within(240, async {
        let mut script = greet_script();
        script.extend(edit_script(
            "src/app.js",
            "'Hello, '",
            "'Hi there, '",
            "Friendlier greeting",
        ));
        let Some(bot) = Bot::start(FILES, script).await else {
            return;
        };
        let issue = bot.issue("x", "y");
        let (_, first, _) = bot
            .comment(issue, MAINTAINER, "/backspace make greet say Hello")
            .await;
        bot.finished(first["job_id"].as_str().unwrap(), RUN).await;
        let pr = bot.gh.pulls(&bot.repo)[0].clone();
        let (status, second, comment) = bot
            .review_comment(
                IssueNumber(pr.number),
                MAINTAINER,
                "/backspace friendlier here",
                "src/app.js",
                2,
            )
            .await;
        assert_eq!(status, 202, "{second}");
        let job = bot.finished(second["job_id"].as_str().unwrap(), RUN).await;
        assert_eq!(job.state, JobState::Succeeded, "{:?}", job.result);
        assert_eq!(bot.gh.pulls(&bot.repo).len(), 1, "the same pull request");
        assert!(bot
            .gh
            .file_on_branch(&bot.repo, &pr.head, "src/app.js")
            .unwrap()
            .contains("'Hi there, '"));
        // The agent was told where the comment points.
        let asked = bot.model.requests().last().unwrap().body.to_string();
        assert!(
            asked.contains("review comment on `src/app.js` line 2"),
            "{asked}"
        );
        assert!(
            asked.contains("src/app.js line 2"),
            "the diff hunk: {asked}"
        );
        // 👀 then 🚀 on the review comment, and an answer in its thread.
        assert_eq!(
            bot.gh.reactions_on_review_comment(comment),
            vec!["eyes", "rocket"]
        );
        let thread = bot.gh.review_comments(&bot.repo, IssueNumber(pr.number));
        assert!(
            thread
                .iter()
                .any(|c| c.author == bot.gh.bot_login() && c.body.contains("Friendlier greeting")),
            "{thread:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_pull_request_from_a_fork_is_refused_with_a_reply() {
    within(120, async {
        let Some(bot) = Bot::start(FILES, greet_script()).await else {
            return;
        };
        let fork = bot.gh.fork(&bot.repo, "stranger");
        let pr = bot.gh.open_pull(
            &bot.repo,
            "stranger",
            &fork,
            "feature",
            "main",
            "A fork's change",
        );
        let (_, answer, comment) = bot.comment(pr, MAINTAINER, "/backspace tidy this up").await;
        let job = bot.finished(answer["job_id"].as_str().unwrap(), RUN).await;
        assert_eq!(job.state, JobState::Failed);
        let body = &bot.bot_comments(pr)[0].body;
        assert!(body.contains("a fork"), "{body}");
        assert!(
            body.contains("Ask for the change on an issue instead"),
            "{body}"
        );
        assert!(bot.model.requests().is_empty());
        assert_eq!(
            bot.gh.reactions_on_comment(comment),
            vec!["eyes", "confused"]
        );
    })
    .await;
}

#[tokio::test]
async fn cancel_stops_the_running_job_within_seconds_and_says_so() {
    within(180, async {
        // The model thinks for a long time on its second turn.
        let script = vec![
            Reply::bash("echo started").into(),
            Step::Stall(Duration::from_secs(60)),
        ];
        let Some(bot) = Bot::start(FILES, script).await else {
            return;
        };
        let issue = bot.issue("x", "y");
        let (_, answer, _) = bot.comment(issue, MAINTAINER, "/backspace slow work").await;
        let id = answer["job_id"].as_str().unwrap().to_owned();
        bot.reaches(&id, JobState::Running, RUN).await;
        // Wait until the agent is at work.
        let deadline = tokio::time::Instant::now() + RUN;
        while bot.model.requests().len() < 2 {
            assert!(tokio::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let asked = std::time::Instant::now();
        let (_, cancel, cancel_comment) = bot.comment(issue, MAINTAINER, "/backspace cancel").await;
        let job = bot.finished(&id, Duration::from_secs(30)).await;
        assert_eq!(job.state, JobState::Cancelled);
        assert!(
            asked.elapsed() < Duration::from_secs(10),
            "stopped in {:?}",
            asked.elapsed()
        );
        bot.finished(cancel["job_id"].as_str().unwrap(), RUN).await;
        let comments = bot.bot_comments(issue);
        assert!(
            comments
                .iter()
                .any(|c| c.body.starts_with("### ⏹️ Cancelled")),
            "{comments:?}"
        );
        assert!(
            comments
                .iter()
                .any(|c| c.body.contains("stopping the running job")),
            "{comments:?}"
        );
        assert_eq!(bot.gh.reactions_on_comment(cancel_comment), vec!["eyes"]);
        // A cancelled run's sandbox is removed by its drop guard, on a thread of its own: it
        // may go a moment after the job's end is written.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while bot.containers_of(&id).await > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the sandbox was left behind"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(bot.gh.pulls(&bot.repo).is_empty());
    })
    .await;
}

#[tokio::test]
async fn help_and_a_mistyped_command_are_answered_with_the_usage() {
    within(60, async {
        let Some(bot) = Bot::start(FILES, vec![]).await else {
            return;
        };
        let issue = bot.issue("x", "y");
        let (_, a, _) = bot.comment(issue, MAINTAINER, "/backspace help").await;
        let (_, b, typo) = bot.comment(issue, MAINTAINER, "/backspace cancle").await;
        bot.finished(a["job_id"].as_str().unwrap(), RUN).await;
        bot.finished(b["job_id"].as_str().unwrap(), RUN).await;
        let comments = bot.bot_comments(issue);
        assert_eq!(comments.len(), 2);
        assert!(comments
            .iter()
            .all(|c| c.body.contains("/backspace cancel")));
        assert!(
            comments
                .iter()
                .any(|c| c.body.contains("did you mean `cancel`?")),
            "{comments:?}"
        );
        assert_eq!(bot.gh.reactions_on_comment(typo), vec!["confused"]);
    })
    .await;
}

#[tokio::test]
async fn three_issues_with_two_slots_never_run_more_than_two_at_once() {
    within(300, async {
        let mut script = Vec::new();
        for _ in 0..3 {
            script.push(Reply::bash("sleep 1").into());
            script.push(Reply::text("TITLE: Nothing\n\nSUMMARY:\nNothing to change.").into());
        }
        let Some(bot) = Bot::start_with(
            FILES,
            script,
            Options {
                max_jobs: 2,
                ..Options::default()
            },
        )
        .await
        else {
            return;
        };
        let mut ids = Vec::new();
        for i in 0..3 {
            let issue = bot.issue(&format!("question {i}"), "?");
            let (_, answer, _) = bot
                .comment(issue, MAINTAINER, "/backspace look around")
                .await;
            ids.push(answer["job_id"].as_str().unwrap().to_owned());
        }
        let mut spans = Vec::new();
        for id in &ids {
            let job = bot.finished(id, RUN).await;
            assert_eq!(job.state, JobState::Succeeded, "{:?}", job.result);
            spans.push((job.started_at.unwrap(), job.finished_at.unwrap()));
        }
        let most = spans
            .iter()
            .map(|(s, _)| spans.iter().filter(|(a, b)| a <= s && s < b).count())
            .max()
            .unwrap();
        assert!(most <= 2, "{most} ran at once: {spans:?}");
    })
    .await;
}

#[tokio::test]
async fn two_runs_on_one_issue_run_one_after_the_other() {
    within(300, async {
        let script = vec![
            Reply::bash("sleep 1").into(),
            Reply::text("TITLE: A\n\nSUMMARY:\nFirst.").into(),
            Reply::bash("sleep 1").into(),
            Reply::text("TITLE: B\n\nSUMMARY:\nSecond.").into(),
        ];
        let Some(bot) = Bot::start_with(
            FILES,
            script,
            Options {
                max_jobs: 2,
                ..Options::default()
            },
        )
        .await
        else {
            return;
        };
        let issue = bot.issue("x", "y");
        let (_, a, _) = bot.comment(issue, MAINTAINER, "/backspace first").await;
        let (_, b, _) = bot.comment(issue, MAINTAINER, "/backspace second").await;
        let a = bot.finished(a["job_id"].as_str().unwrap(), RUN).await;
        let b = bot.finished(b["job_id"].as_str().unwrap(), RUN).await;
        assert!(
            a.finished_at.unwrap() <= b.started_at.unwrap(),
            "{a:?}\n{b:?}"
        );
        assert_eq!(a.result.unwrap().to_json()["summary"], "First.");
        assert_eq!(b.result.unwrap().to_json()["summary"], "Second.");
    })
    .await;
}

#[tokio::test]
async fn two_instances_on_one_postgres_run_every_job_once() {
    within(300, async {
        let Some(pg) = support::db::postgres().await else {
            return;
        };
        let mut script = Vec::new();
        for _ in 0..4 {
            script.push(Reply::text("TITLE: Nothing\n\nSUMMARY:\nNothing to change.").into());
        }
        let opts = Options {
            max_jobs: 2,
            store: Some(pg),
            start_workers: false,
            ..Options::default()
        };
        let Some(mut bot) = Bot::start_with(FILES, script, opts).await else {
            return;
        };
        let mut ids = Vec::new();
        for i in 0..4 {
            let issue = bot.issue(&format!("q{i}"), "?");
            let (_, answer, _) = bot
                .comment(issue, MAINTAINER, "/backspace anything to do?")
                .await;
            ids.push(answer["job_id"].as_str().unwrap().to_owned());
        }
        bot.start_workers(2, Duration::from_secs(30), "instance-a");
        let other = backspace::runner::Workers::start(bot.services(
            2,
            Duration::from_secs(30),
            "instance-b",
        ));
        for id in &ids {
            let job = bot.finished(id, RUN).await;
            assert_eq!(
                (job.state, job.attempts),
                (JobState::Succeeded, 1),
                "{job:?}"
            );
            let starts = bot
                .events(id)
                .await
                .iter()
                .filter(|e| e["type"] == "start")
                .count();
            assert_eq!(starts, 1, "run {id} started once");
        }
        assert_eq!(bot.model.requests().len(), 4, "one model call per job");
        other.shutdown().await;
        bot.stop_workers().await;
    })
    .await;
}
