//! A scripted journey over the whole bot, in the spirit of rust-lang/bors' `BorsTester`: a test
//! sends webhooks, then says what it expects to see on GitHub (the bot's comments, reactions,
//! pushes and pull requests) and how many model calls it expects, one `expect_*` at a time.
//! [`Tester::finish`] fails on anything the bot did that the test did not expect, so a stray
//! comment or a second push cannot go unnoticed.

use std::collections::{HashMap, HashSet};
use std::ops::Deref;
use std::time::Duration;

use backspace::github::IssueNumber;
use backspace::job::JobState;
use backspace::store::Job;

use super::bot::{Bot, Options};
use super::fake_anthropic::Step;
use super::fake_github::{FakeComment, FakePull};

/// What the test has acknowledged so far.
#[derive(Default)]
struct Seen {
    /// Bot comments (issue and review comments), by id.
    comments: HashSet<u64>,
    /// Reactions acknowledged per target (`comment:<id>`, `review:<id>`, `issue:<n>`).
    reactions: HashMap<String, usize>,
    pulls: HashSet<u64>,
    pushes: usize,
    model_calls: usize,
}

pub struct Tester {
    pub bot: Bot,
    seen: Seen,
    /// Issues and pull requests whose comments and reactions `finish` looks at.
    targets: HashSet<u64>,
    /// Comments whose reactions `finish` looks at.
    asked: Vec<(String, u64)>,
    finished: bool,
}

impl Deref for Tester {
    type Target = Bot;
    fn deref(&self) -> &Bot {
        &self.bot
    }
}

impl Tester {
    /// The bot on `octo/app` with `files`, the model scripted with `script`; `None` (a skip)
    /// only outside CI when Docker is missing.
    pub async fn start(files: &[(&str, &str)], script: Vec<Step>) -> Option<Tester> {
        Self::start_with(files, script, Options::default()).await
    }

    pub async fn start_with(
        files: &[(&str, &str)],
        script: Vec<Step>,
        opts: Options,
    ) -> Option<Tester> {
        let bot = Bot::start_with(files, script, opts).await?;
        Some(Tester {
            bot,
            seen: Seen::default(),
            targets: HashSet::new(),
            asked: Vec::new(),
            finished: false,
        })
    }

    /// Opens an issue by the maintainer.
    pub fn open_issue(&mut self, title: &str, body: &str) -> IssueNumber {
        let n = self.bot.issue(title, body);
        self.targets.insert(n.0);
        n
    }

    /// `author` comments `body` on `n`; returns the job it queued (the delivery must queue one).
    pub async fn comment(&mut self, n: IssueNumber, author: &str, body: &str) -> (String, u64) {
        self.targets.insert(n.0);
        let (status, answer, comment) = self.bot.comment(n, author, body).await;
        assert_eq!(status, 202, "{answer}");
        let job = answer["job_id"]
            .as_str()
            .unwrap_or_else(|| panic!("the comment queued no job: {answer}"))
            .to_owned();
        self.asked.push((format!("comment:{comment}"), comment));
        (job, comment)
    }

    /// `author` submits a review of pull request `pr` with `body` and inline `comments` (path,
    /// line, text); returns the job it queued and the review's comment ids.
    pub async fn review(
        &mut self,
        pr: IssueNumber,
        author: &str,
        body: &str,
        comments: &[(&str, u64, &str)],
    ) -> (String, Vec<u64>) {
        self.targets.insert(pr.0);
        let (status, answer, ids) = self.bot.review(pr, author, body, comments).await;
        assert_eq!(status, 202, "{answer}");
        let job = answer["job_id"]
            .as_str()
            .unwrap_or_else(|| panic!("the review queued no job: {answer}"))
            .to_owned();
        (job, ids)
    }

    /// `who` adds `label` to issue `n`; returns the job it queued.
    pub async fn label(&mut self, n: IssueNumber, who: &str, label: &str) -> String {
        self.targets.insert(n.0);
        let (status, answer) = self.bot.label(n, who, label).await;
        assert_eq!(status, 202, "{answer}");
        answer["job_id"]
            .as_str()
            .unwrap_or_else(|| panic!("the label queued no job: {answer}"))
            .to_owned()
    }

    /// Waits for job `id` to end in `state`.
    pub async fn ends(&self, id: &str, state: JobState) -> Job {
        let job = self.bot.finished(id, Duration::from_secs(120)).await;
        assert_eq!(job.state, state, "{:?}", job.result);
        job
    }

    /// The next bot comment on `n` the test has not seen yet, as it stands now.
    pub fn expect_comment(&mut self, n: IssueNumber) -> FakeComment {
        let unseen = self
            .bot
            .bot_comments(n)
            .into_iter()
            .find(|c| !self.seen.comments.contains(&c.id));
        let comment = unseen.unwrap_or_else(|| panic!("no new bot comment on #{}", n.0));
        self.seen.comments.insert(comment.id);
        comment
    }

    /// The next bot comment on `n`, waiting up to 10 s for one that comes from a lane beside the
    /// workers (the one reply to a refused requester).
    pub async fn await_comment(&mut self, n: IssueNumber) -> FakeComment {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !self
            .bot
            .bot_comments(n)
            .iter()
            .any(|c| !self.seen.comments.contains(&c.id))
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no new bot comment on #{}",
                n.0
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.expect_comment(n)
    }

    /// The next reply of the bot in a review thread of pull request `pr`.
    pub fn expect_review_reply(&mut self, pr: IssueNumber) -> FakeComment {
        let bot = self.bot.gh.bot_login();
        let unseen = self
            .bot
            .gh
            .review_comments(&self.bot.repo, pr)
            .into_iter()
            .find(|c| c.author == bot && !self.seen.comments.contains(&c.id));
        let reply = unseen.unwrap_or_else(|| panic!("no new review reply on #{}", pr.0));
        self.seen.comments.insert(reply.id);
        reply
    }

    /// The pull request the test saw last, as it stands now.
    pub fn pull(&self, number: u64) -> FakePull {
        self.bot
            .gh
            .pulls(&self.bot.repo)
            .into_iter()
            .find(|p| p.number == number)
            .unwrap_or_else(|| panic!("no pull request #{number}"))
    }

    /// The reactions on the comment that asked, in the order they were made.
    pub fn expect_reactions(&mut self, comment: u64, expected: &[&str]) {
        assert_eq!(self.bot.gh.reactions_on_comment(comment), expected);
        self.seen
            .reactions
            .insert(format!("comment:{comment}"), expected.len());
    }

    /// The reactions on issue `n` itself (a run started by a label), in order.
    pub fn expect_issue_reactions(&mut self, n: IssueNumber, expected: &[&str]) {
        let got = self.bot.gh.reactions_on_issue(&self.bot.repo, n);
        assert_eq!(got, expected);
        self.seen
            .reactions
            .insert(format!("issue:{}", n.0), expected.len());
    }

    /// The next pull request the test has not seen yet.
    pub fn expect_pull(&mut self) -> FakePull {
        let unseen = self
            .bot
            .gh
            .pulls(&self.bot.repo)
            .into_iter()
            .find(|p| !self.seen.pulls.contains(&p.number));
        let pull = unseen.expect("no new pull request");
        self.seen.pulls.insert(pull.number);
        pull
    }

    /// `n` more pushes were made since the last expectation.
    pub fn expect_pushes(&mut self, n: usize) {
        let pushes = self.pushes();
        assert_eq!(pushes, self.seen.pushes + n, "pushes");
        self.seen.pushes = pushes;
    }

    /// `n` more model calls were made since the last expectation.
    pub fn expect_model_calls(&mut self, n: usize) {
        let calls = self.bot.model.requests().len();
        assert_eq!(calls, self.seen.model_calls + n, "model calls");
        self.seen.model_calls = calls;
    }

    /// Pushes that reached the fake (the pack upload, not the ref listing before it).
    fn pushes(&self) -> usize {
        self.bot
            .gh
            .requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/git-receive-pack"))
            .filter(|r| r.status == 200)
            .count()
    }

    /// Fails on anything the bot did that the test did not expect.
    pub fn finish(mut self) {
        self.finished = true;
        let mut unexpected = Vec::new();
        for n in &self.targets {
            for c in self.bot.bot_comments(IssueNumber(*n)) {
                if !self.seen.comments.contains(&c.id) {
                    unexpected.push(format!("a comment on #{n}: {}", c.body));
                }
            }
            for c in self.bot.gh.review_comments(&self.bot.repo, IssueNumber(*n)) {
                if c.author == self.bot.gh.bot_login() && !self.seen.comments.contains(&c.id) {
                    unexpected.push(format!("a review comment on #{n}: {}", c.body));
                }
            }
            let reactions = self
                .bot
                .gh
                .reactions_on_issue(&self.bot.repo, IssueNumber(*n));
            let seen = self.seen.reactions.get(&format!("issue:{n}")).copied();
            if reactions.len() != seen.unwrap_or(0) {
                unexpected.push(format!("reactions on #{n}: {reactions:?}"));
            }
        }
        for (key, id) in &self.asked {
            let reactions = self.bot.gh.reactions_on_comment(*id);
            if reactions.len() != self.seen.reactions.get(key).copied().unwrap_or(0) {
                unexpected.push(format!("reactions on {key}: {reactions:?}"));
            }
        }
        for p in self.bot.gh.pulls(&self.bot.repo) {
            if !self.seen.pulls.contains(&p.number) {
                unexpected.push(format!("pull request #{}: {}", p.number, p.title));
            }
        }
        let pushes = self.pushes();
        if pushes != self.seen.pushes {
            unexpected.push(format!("{} pushes", pushes - self.seen.pushes));
        }
        let calls = self.bot.model.requests().len();
        if calls != self.seen.model_calls {
            unexpected.push(format!("{} model calls", calls - self.seen.model_calls));
        }
        self.bot.gh.assert_requests_fit_openapi();
        assert!(
            unexpected.is_empty(),
            "the bot did what the test did not expect:\n- {}",
            unexpected.join("\n- ")
        );
    }
}

impl Drop for Tester {
    fn drop(&mut self) {
        if !self.finished && !std::thread::panicking() {
            panic!("a Tester must end with finish()");
        }
    }
}

/// What a reader sees of a comment Backspace wrote: its text without the hidden marker a write
/// carries to be found again (`<!-- backspace:write:… -->`).
pub fn shown(body: &str) -> &str {
    match body.rfind("<!-- backspace:write:") {
        Some(i) => body[..i].trim_end(),
        None => body,
    }
}

/// A rendered text a maintainer reads, with what changes from run to run (run ids, times,
/// ports) replaced by stable placeholders, for snapshots.
pub fn stable(text: &str, run_ids: &[&str]) -> String {
    let mut out = text.to_owned();
    for (i, id) in run_ids.iter().enumerate() {
        out = out.replace(id, &format!("<run-{}>", i + 1));
    }
    let mut stable = String::with_capacity(out.len());
    for line in out.lines() {
        stable.push_str(&stable_line(line));
        stable.push('\n');
    }
    stable
}

/// Durations (`⏱ 1m 12s`, `in 3.2 s`) and local ports in one line.
fn stable_line(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find("127.0.0.1:") {
        out.push_str(&rest[..i + "127.0.0.1:".len()]);
        rest = &rest[i + "127.0.0.1:".len()..];
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        out.push_str("<port>");
        rest = &rest[digits..];
    }
    out.push_str(rest);
    if let Some(i) = out.find('⏱') {
        let end = out[i..].find(" · ").map(|j| i + j).unwrap_or(out.len());
        out.replace_range(i..end, "⏱ <duration>");
    }
    out
}
