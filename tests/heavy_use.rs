//! Hostile and heavy use of the whole bot: a flood of commands from people who may not start
//! runs, and a cancel while every run slot is busy. Real router, store, workers, sandbox and git;
//! fake GitHub and model.

mod support;

use std::time::{Duration, Instant};

use backspace::github::IssueNumber;
use backspace::job::JobState;
use support::bot::{edit_script, Bot, Options, MAINTAINER};
use support::fake_anthropic::Step;

const APP_JS: &str = "export function greet(name) {\n  return 'hi ' + name;\n}\n";
const FILES: &[(&str, &str)] = &[("src/app.js", APP_JS), ("README.md", "# app\n")];
const RUN: Duration = Duration::from_secs(120);
const PERMISSION: &str = "GET /repos/{owner}/{repo}/collaborators/{username}/permission";

async fn within<F: std::future::Future<Output = ()>>(secs: u64, f: F) {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("the test finished in time");
}

/// A writer's command on `issue`: how long until its 👀, and until its pull request.
async fn writer_run(bot: &Bot, issue: IssueNumber, pulls_before: usize) -> (Duration, Duration) {
    let asked = Instant::now();
    let (_, answer, comment) = bot.comment(issue, MAINTAINER, "/backspace greet").await;
    let id = answer["job_id"].as_str().expect("queued").to_owned();
    let mut eyes = None;
    loop {
        if eyes.is_none()
            && bot
                .gh
                .reactions_on_comment(comment)
                .contains(&"eyes".into())
        {
            eyes = Some(asked.elapsed());
        }
        if bot.gh.pulls(&bot.repo).len() > pulls_before {
            break;
        }
        assert!(asked.elapsed() < RUN, "no pull request");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pr = asked.elapsed();
    assert_eq!(bot.finished(&id, RUN).await.state, JobState::Succeeded);
    (eyes.unwrap_or(pr), pr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_readers_300_commands_leave_a_writers_run_as_fast_as_without_them() {
    within(420, async {
        let mut script = edit_script("src/app.js", "'hi '", "'Hello, '", "Greet properly");
        script.extend(edit_script(
            "src/app.js",
            "'hi '",
            "'Hey, '",
            "Greet warmly",
        ));
        let Some(bot) = Bot::start(FILES, script).await else {
            return;
        };
        bot.gh.add_collaborator(&bot.repo, "reader", "read");
        let quiet = writer_run(&bot, bot.issue("first", "greet"), 0).await;
        let issues: Vec<IssueNumber> = (0..30).map(|i| bot.issue(&format!("i{i}"), "x")).collect();
        bot.gh.clear_requests();
        for i in 0..300 {
            let body = format!("/backspace do thing {i}");
            bot.comment(issues[i % 30], "reader", &body).await;
        }
        let flooded = writer_run(&bot, bot.issue("second", "greet"), 1).await;
        eprintln!("quiet: {quiet:?}; behind 300 refused commands: {flooded:?}");
        assert!(
            flooded.0 < Duration::from_secs(1),
            "👀 after {:?}",
            flooded.0
        );
        assert!(
            flooded.1 < quiet.1 + Duration::from_secs(3),
            "{flooded:?} vs {quiet:?}"
        );
        // Each refused command cost at most one permission call, and the reader got one reply
        // per issue (replies go last, at most 20 a minute).
        let deadline = Instant::now() + Duration::from_secs(150);
        loop {
            let replies: usize = issues.iter().map(|n| bot.bot_comments(*n).len()).sum();
            if replies == 30 {
                break;
            }
            assert!(
                replies < 30 && Instant::now() < deadline,
                "{replies} replies"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        for n in &issues {
            assert_eq!(bot.bot_comments(*n).len(), 1, "issue {}", n.0);
        }
        let asked = bot.gh.requests_to(PERMISSION).len();
        assert!(asked <= 300 + 1, "{asked} permission calls");
        eprintln!("permission calls for 300 refused commands and one run: {asked}");
        assert_eq!(bot.model.requests().len(), 8, "only the writer's two runs");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_with_every_run_slot_busy_stops_its_run_within_5_s() {
    within(240, async {
        // Both runs' first model call hangs for a minute.
        let script = vec![
            Step::Stall(Duration::from_secs(60)),
            Step::Stall(Duration::from_secs(60)),
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
        let (a, b) = (bot.issue("a", "x"), bot.issue("b", "y"));
        let (_, run_a, _) = bot.comment(a, MAINTAINER, "/backspace slow a").await;
        let (_, run_b, _) = bot.comment(b, MAINTAINER, "/backspace slow b").await;
        let run_a = run_a["job_id"].as_str().unwrap().to_owned();
        let run_b = run_b["job_id"].as_str().unwrap().to_owned();
        bot.reaches(&run_a, JobState::Running, RUN).await;
        bot.reaches(&run_b, JobState::Running, RUN).await;
        let deadline = Instant::now() + RUN;
        while bot.model.requests().len() < 2 {
            assert!(
                Instant::now() < deadline,
                "the runs never reached the model"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let asked = Instant::now();
        let (_, cancel, _) = bot.comment(a, MAINTAINER, "/backspace cancel").await;
        let job = bot.finished(&run_a, Duration::from_secs(10)).await;
        let took = asked.elapsed();
        assert_eq!(job.state, JobState::Cancelled);
        assert!(took < Duration::from_secs(5), "stopped in {took:?}");
        eprintln!("cancel with both slots busy stopped its run in {took:?}");
        bot.finished(cancel["job_id"].as_str().unwrap(), RUN).await;
        // The other run goes on.
        assert_eq!(
            bot.store.job(&run_b).await.unwrap().unwrap().state,
            JobState::Running
        );
        assert!(bot.gh.pulls(&bot.repo).is_empty());
    })
    .await;
}
