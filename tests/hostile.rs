//! Hostile and unusual repositories and agent commands, end to end: the real router, store,
//! workers, Docker sandbox and git against the fake GitHub and a scripted model. A disk filled
//! past its cap, a loop at the process limit, links that leave the repository, names git takes
//! for `.git`, tokens in the output, and a local run beside a stash.

mod support;
use support::within;

use std::path::Path;
use std::time::Duration;

use backspace::github::IssueNumber;
use backspace::job::JobState;
use backspace::run_event::RunEvent;
use base64::Engine;
use secrecy::SecretString;
use serde_json::{json, Value};
use support::bot::{Bot, MAINTAINER};
use support::fake_anthropic::{Reply, Step};

const FILES: &[(&str, &str)] = &[("README.md", "# app\n"), ("src/app.js", "hi\n")];
const RUN: Duration = Duration::from_secs(180);

fn finish(title: &str, summary: &str) -> Step {
    Reply::text(&format!("TITLE: {title}\n\nSUMMARY:\n{summary}")).into()
}

fn readme_edit() -> Step {
    Reply::edit(json!({
        "command": "str_replace", "path": "README.md", "old_str": "# app", "new_str": "# The app"
    }))
    .into()
}

/// The `tool` events of a run.
async fn tools(bot: &Bot, job: &str) -> Vec<Value> {
    bot.events(job)
        .await
        .into_iter()
        .filter(|e| e["type"] == "tool")
        .collect()
}

/// What went back to the model as the results of its tool calls.
fn tool_results(model: &support::fake_anthropic::FakeAnthropic) -> String {
    model
        .requests()
        .iter()
        .flat_map(|r| r.body["messages"].as_array().cloned().unwrap_or_default())
        .flat_map(|m| m["content"].as_array().cloned().unwrap_or_default())
        .filter(|block| block["type"] == "tool_result")
        .map(|block| block["content"].to_string())
        .collect()
}

/// Comments `/backspace <request>` on a new issue and waits for the run to end.
async fn run(bot: &Bot, request: &str) -> (IssueNumber, backspace::store::Job) {
    let issue = bot.issue("Hostile", "A test of the sandbox's walls.");
    let (status, answer, _) = bot
        .comment(issue, MAINTAINER, &format!("/backspace {request}"))
        .await;
    assert_eq!(status, 202, "{answer}");
    let job = bot
        .finished(answer["job_id"].as_str().expect("job id"), RUN)
        .await;
    (issue, job)
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test]
async fn a_4_gib_write_fails_at_the_disk_cap_and_the_run_still_opens_its_pull_request() {
    within(300, async {
        let script = vec![
            Reply::bash("dd if=/dev/zero of=big.bin bs=1M count=4096; df -h .").into(),
            readme_edit(),
            finish("Fill the disk", "Tried to write 4 GiB; the disk was full."),
        ];
        let Some(bot) = Bot::start(FILES, script).await else {
            return;
        };
        let (issue, job) = run(&bot, "fill the disk").await;
        assert_eq!(job.state, JobState::Succeeded, "{:?}", job.result);
        let dd = &tools(&bot, &job.id).await[0];
        let output = dd["output"].as_str().expect("output");
        assert!(output.contains("No space left on device"), "{output}");
        // The run went on: the pull request has the README change, and the file the agent
        // filled is over the per-file limit, so it is refused and listed.
        let pulls = bot.gh.pulls(&bot.repo);
        assert_eq!(pulls.len(), 1);
        assert!(pulls[0].body.contains("big.bin"), "{}", pulls[0].body);
        let readme = bot
            .gh
            .file_on_branch(&bot.repo, &pulls[0].head, "README.md")
            .expect("README on the branch");
        assert_eq!(readme, "# The app\n");
        assert!(bot
            .gh
            .file_on_branch(&bot.repo, &pulls[0].head, "big.bin")
            .is_none());
        let comment = &bot.bot_comments(issue)[0].body;
        assert!(comment.contains("Opened pull request"), "{comment}");
        assert!(
            comment.contains("`big.bin`"),
            "the refusal is listed: {comment}"
        );
        assert_eq!(bot.containers_of(&job.id).await, 0);
    })
    .await;
}

#[tokio::test]
async fn a_loop_at_the_process_limit_is_stopped_within_30_s_and_the_next_command_runs() {
    within(300, async {
        let script = vec![
            Reply::bash("while :; do sleep 1000 & done").into(),
            Reply::bash("echo next command; ps -e --no-headers | wc -l").into(),
            finish("Nothing", "The loop was stopped."),
        ];
        let Some(bot) = Bot::start(FILES, script).await else {
            return;
        };
        let (_, job) = run(&bot, "start processes forever").await;
        assert_eq!(job.state, JobState::Succeeded, "{:?}", job.result);
        let tools = tools(&bot, &job.id).await;
        let looped = &tools[0];
        let took = looped["duration_ms"].as_u64().expect("duration");
        assert!(took < 30_000, "the loop ran {took} ms");
        let output = looped["output"].as_str().expect("output");
        assert!(output.contains("process limit reached"), "{output}");
        let next = tools[1]["output"].as_str().expect("output");
        assert!(next.starts_with("next command\n"), "{next}");
        let left: u32 = next
            .lines()
            .nth(1)
            .expect("count")
            .trim()
            .parse()
            .expect("n");
        assert!(left < 10, "{left} processes after the stop");
        // The model was told too.
        let told = bot
            .model
            .requests()
            .iter()
            .any(|r| format!("{r:?}").contains("process limit reached"));
        assert!(told, "the agent heard why its command ended");
    })
    .await;
}

/// A repository on the fake GitHub whose `main` also holds links that leave it.
fn add_links_to_main(bot: &Bot) {
    let token = bot.gh.issue_token(&bot.repo);
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
    let header = format!("http.extraHeader=Authorization: Basic {basic}");
    let work = tempfile::tempdir().expect("tempdir");
    let url = bot.gh.clone_url(&bot.repo);
    git(
        work.path(),
        &["-c", &header, "clone", "-q", &url, "checkout"],
    );
    let dir = work.path().join("checkout");
    std::os::unix::fs::symlink("../outside-the-repo", dir.join("up-link")).expect("symlink");
    std::os::unix::fs::symlink("/etc/passwd", dir.join("abs")).expect("symlink");
    git(&dir, &["add", "-A"]);
    git(
        &dir,
        &[
            "-c",
            "user.name=dev",
            "-c",
            "user.email=dev@example.com",
            "commit",
            "-qm",
            "links that leave the tree",
        ],
    );
    git(&dir, &["-c", &header, "push", "-q", "origin", "main"]);
}

/// The mode and target of a link on a branch, as git stores it.
fn link_on(bot: &Bot, branch: &str, path: &str) -> (String, Option<String>) {
    let bare = tempfile::tempdir().expect("tempdir");
    let token = bot.gh.issue_token(&bot.repo);
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
    let header = format!("http.extraHeader=Authorization: Basic {basic}");
    let url = bot.gh.clone_url(&bot.repo);
    git(
        bare.path(),
        &["-c", &header, "clone", "-q", "--bare", &url, "r.git"],
    );
    let r = bare.path().join("r.git");
    let tree = git(&r, &["ls-tree", branch, "--", path]);
    let mode = tree
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    let target = bot.gh.file_on_branch(&bot.repo, branch, path);
    (mode, target)
}

// Several threads: the test's own git talks to the fake GitHub on this runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_that_leave_the_repository_go_in_and_come_back_byte_for_byte() {
    within(300, async {
        let script = vec![
            Reply::bash("readlink up-link abs; ls -l up-link abs").into(),
            readme_edit(),
            finish("Title the README", "Changed the title."),
            // The second run only answers.
            Reply::bash("readlink up-link").into(),
            finish("About the links", "up-link points out of the repository."),
        ];
        let Some(bot) = Bot::start(FILES, script).await else {
            return;
        };
        add_links_to_main(&bot);
        let (_, job) = run(&bot, "title the README").await;
        assert_eq!(job.state, JobState::Succeeded, "{:?}", job.result);
        let seen = tools(&bot, &job.id).await[0]["output"]
            .as_str()
            .expect("output")
            .to_owned();
        assert!(
            seen.starts_with("../outside-the-repo\n/etc/passwd\n"),
            "{seen}"
        );
        let pulls = bot.gh.pulls(&bot.repo);
        assert_eq!(pulls.len(), 1);
        assert_eq!(
            job.result.as_ref().expect("result").to_json()["files_changed"],
            json!(["README.md"]),
            "the links are not changes"
        );
        for (path, target) in [("up-link", "../outside-the-repo"), ("abs", "/etc/passwd")] {
            assert_eq!(
                link_on(&bot, &pulls[0].head, path),
                ("120000".to_string(), Some(target.to_string())),
                "{path}"
            );
        }
        assert!(
            !pulls[0].body.contains("refused to commit"),
            "nothing refused: {}",
            pulls[0].body
        );

        // Beside the same links, a run that changes nothing opens nothing.
        let (_, answer) = run(&bot, "where does up-link point?").await;
        assert_eq!(answer.state, JobState::Succeeded, "{:?}", answer.result);
        assert_eq!(
            answer.result.as_ref().expect("result").to_json()["status"],
            "answered"
        );
        assert_eq!(bot.gh.pulls(&bot.repo).len(), 1, "no second pull request");
    })
    .await;
}

#[tokio::test]
async fn names_git_takes_for_dot_git_and_workflows_in_any_case_are_refused_and_listed() {
    within(300, async {
        let script = vec![
            Reply::bash(
                "mkdir -p .Git sub/.GIT .GitHub/workflows && \
                 printf '[core]\\n\\tfsmonitor = touch /tmp/pwned\\n' > .Git/config && \
                 echo x > sub/.GIT/x && echo 'on: push' > .GitHub/workflows/x.yml",
            )
            .into(),
            readme_edit(),
            finish("Plant", "Planted files."),
        ];
        let Some(bot) = Bot::start(FILES, script).await else {
            return;
        };
        let (issue, job) = run(&bot, "plant git files").await;
        assert_eq!(job.state, JobState::Succeeded, "{:?}", job.result);
        let pulls = bot.gh.pulls(&bot.repo);
        assert_eq!(pulls.len(), 1);
        let body = &pulls[0].body;
        for refused in [".Git", "sub/.GIT", ".GitHub/workflows/x.yml"] {
            assert!(body.contains(refused), "{refused} not listed in {body}");
        }
        let head = &pulls[0].head;
        for path in [".Git/config", "sub/.GIT/x", ".GitHub/workflows/x.yml"] {
            assert!(
                bot.gh.file_on_branch(&bot.repo, head, path).is_none(),
                "{path}"
            );
        }
        assert_eq!(
            job.result.as_ref().expect("result").to_json()["files_changed"],
            json!(["README.md"])
        );
        let comment = &bot.bot_comments(issue)[0].body;
        assert!(comment.contains(".Git"), "{comment}");
    })
    .await;
}

#[tokio::test]
async fn tokens_of_every_form_are_redacted_from_events_comments_and_the_model() {
    within(300, async {
        let tail = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789";
        let tokens = [
            format!("ghs_{tail}"),
            format!("ghs_v1.{tail}.Zz9"),
            format!("ghp_{tail}"),
            format!("gho_{tail}"),
            format!("ghu_{tail}"),
            format!("ghr_{tail}"),
            format!("github_pat_11AAAAAAA0_{tail}"),
            format!("sk-ant-api03-{tail}"),
            format!("sk-proj-{tail}"),
            format!("sk-{tail}{tail}"),
        ];
        // The webhook secret, as the server registers it at start-up.
        backspace::redact::remember(&SecretString::from(
            support::fake_github::WEBHOOK_SECRET.to_string(),
        ));
        let printing = format!("printf '%s\\n' {}", tokens.join(" "));
        let script = vec![
            Reply::bash(&printing).into(),
            finish(
                "Tokens",
                &format!(
                    "I saw {} and {}.",
                    tokens[0],
                    support::fake_github::WEBHOOK_SECRET
                ),
            ),
        ];
        let Some(bot) = Bot::start(FILES, script).await else {
            return;
        };
        let (issue, job) = run(&bot, "print some tokens").await;
        assert_eq!(job.state, JobState::Succeeded, "{:?}", job.result);
        let events = serde_json::to_string(&bot.events(&job.id).await).expect("json");
        let comment = bot.bot_comments(issue)[0].body.clone();
        let results = tool_results(&bot.model);
        assert!(results.contains("[redacted]"), "{results}");
        for token in &tokens {
            let start = &token[..token.len().min(12)];
            assert!(!events.contains(token.as_str()), "{start}… in the events");
            assert!(!comment.contains(token.as_str()), "{start}… in the comment");
        }
        assert!(!events.contains(support::fake_github::WEBHOOK_SECRET));
        assert!(!comment.contains(support::fake_github::WEBHOOK_SECRET));
        assert!(events.contains("[redacted]"));
        for token in &tokens {
            assert!(
                !results.contains(token.as_str()),
                "the tool result sent {}…",
                &token[..10]
            );
        }
    })
    .await;
}

/// A git repository with one commit on `main`, and a stash holding a secret.
fn repo_with_a_stash(secret: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    std::fs::create_dir_all(p.join("src")).expect("mkdir");
    std::fs::write(p.join("src/app.js"), "hi\n").expect("write");
    let id = ["-c", "user.name=Dev", "-c", "user.email=dev@example.com"];
    git(p, &["init", "-q", "-b", "main"]);
    git(p, &["add", "-A"]);
    git(p, &[id[0], id[1], id[2], id[3], "commit", "-qm", "first"]);
    std::fs::write(p.join("src/app.js"), format!("const KEY = '{secret}';\n")).expect("write");
    git(p, &[id[0], id[1], id[2], id[3], "stash", "-q"]);
    git(p, &["config", "user.name", "Dev"]);
    git(p, &["config", "user.email", "dev@example.com"]);
    dir
}

/// `backspace run` on `repo` with the model scripted, through the real sandbox; the outcome,
/// the fake model (for what it was sent) and the events. `None` (a skip) only outside CI.
async fn run_locally(
    repo: &Path,
    prompt: &str,
    script: Vec<Step>,
) -> Option<(
    backspace::local_run::LocalOutcome,
    support::fake_anthropic::FakeAnthropic,
    Vec<RunEvent>,
)> {
    let sandboxes = support::docker::sandboxes().await?;
    let model = support::fake_anthropic::FakeAnthropic::start(script).await;
    let req = backspace::local_run::prepare(repo, None, prompt)
        .await
        .expect("prepare");
    let agent = backspace::agent::Agent::new(
        support::bot::model_provider(&model),
        backspace::agent::AgentConfig::default(),
    );
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let outcome = backspace::local_run::run_local(&sandboxes, &agent, &req, &tx)
        .await
        .expect("run");
    drop(tx);
    let mut events = Vec::new();
    while let Some(e) = rx.recv().await {
        events.push(e);
    }
    Some((outcome, model, events))
}

#[tokio::test]
async fn a_local_runs_sandbox_cannot_read_a_stashed_blob() {
    within(240, async {
        let secret = "stashed-secret-5e1f0c";
        let repo = repo_with_a_stash(secret);
        let blob = git(repo.path(), &["rev-parse", "stash@{0}:src/app.js"]);
        let script = vec![
            Reply::bash(&format!(
                "git cat-file -p {blob} || echo no-such-blob; \
                 git cat-file --batch-all-objects --batch | grep -c {secret} || true; \
                 git stash list | wc -l"
            ))
            .into(),
            finish("Nothing", "Looked around."),
        ];
        let Some((outcome, model, events)) =
            run_locally(repo.path(), "look for secrets", script).await
        else {
            return;
        };
        assert_eq!(outcome.exit_code(), 3, "{outcome:?}");
        let output = events
            .iter()
            .find_map(|e| match e {
                RunEvent::Tool { output, .. } => Some(output.clone()),
                _ => None,
            })
            .expect("the command ran");
        assert!(output.starts_with("no-such-blob\n0\n0\n"), "{output}");
        let results = tool_results(&model);
        assert!(results.contains("no-such-blob"), "{results}");
        assert!(
            !results.contains(secret),
            "the stashed secret reached the model"
        );
        // The user's stash is where it was.
        assert_eq!(git(repo.path(), &["stash", "list"]).lines().count(), 1);
    })
    .await;
}

#[tokio::test]
async fn a_local_run_never_writes_the_checkouts_git_config_through_dot_git_aliases() {
    within(240, async {
        let repo = repo_with_a_stash("unused-secret-123");
        let config_before = std::fs::read(repo.path().join(".git/config")).expect("config");
        let script = vec![
            Reply::bash(
                "mkdir -p .Git && printf '[core]\\n\\tfsmonitor = touch /tmp/pwned\\n' > .Git/config \
                 && echo 'const greeting = 1;' > src/app.js",
            )
            .into(),
            finish("Greeting", "Changed app.js."),
        ];
        let Some((outcome, _, _)) = run_locally(repo.path(), "change app.js", script).await else {
            return;
        };
        let backspace::local_run::LocalOutcome::Committed {
            branch,
            files,
            refused,
            ..
        } = outcome
        else {
            panic!("expected a commit: {outcome:?}");
        };
        assert_eq!(files, ["src/app.js"]);
        assert!(refused.iter().any(|r| r.path == ".Git"), "{refused:?}");
        assert_eq!(
            std::fs::read(repo.path().join(".git/config")).expect("config"),
            config_before
        );
        let tree = git(repo.path(), &["ls-tree", "-r", "--name-only", &branch]);
        assert_eq!(tree, "src/app.js");
    })
    .await;
}
