//! The Docker sandbox against the real engine and the `backspace-sandbox:test` image: what runs
//! inside, what it cannot do, the limits, the copies in and out, and clean-up on every path.
//! Run with `cargo test --test sandbox`; `CI=true` turns a missing engine into a failure.

#[path = "support/docker.rs"]
mod docker;

use std::collections::BTreeMap;
use std::fs;
use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use backspace::sandbox::{
    ExecOutcome, ExecSpec, HoldReason, Sandbox, SandboxError, SandboxSettings, Sandboxes,
};

/// Every test ends within its own limit.
async fn within<F: Future>(secs: u64, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("test did not finish within {secs}s"))
}

fn run_id(name: &str) -> String {
    format!(
        "t-{name}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

fn small_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("README.md"), "# test repo\n").expect("write");
    fs::create_dir_all(dir.path().join(".git")).expect("mkdir");
    fs::write(dir.path().join(".git/config"), "[core]\n").expect("write");
    dir
}

async fn sh(sandbox: &Sandbox, command: &str) -> backspace::sandbox::ExecOutput {
    sandbox
        .exec(ExecSpec::new(command).timeout(Duration::from_secs(30)))
        .await
        .unwrap_or_else(|e| panic!("exec {command:?} failed: {e}"))
}

/// Waits until the engine holds no container labelled with `run`.
async fn assert_no_container_of_run(sandboxes: &Sandboxes, run: &str) {
    let start = Instant::now();
    loop {
        let left = sandboxes.containers_of_run(run).await.expect("list");
        if left.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "containers of run {run} remain: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn tree_of(root: &Path) -> BTreeMap<String, (Vec<u8>, u32)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (Vec<u8>, u32)>) {
        for entry in fs::read_dir(dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            let meta = fs::symlink_metadata(&path).expect("meta");
            let rel = path
                .strip_prefix(root)
                .expect("prefix")
                .display()
                .to_string();
            if meta.is_dir() {
                walk(root, &path, out);
            } else if meta.is_file() {
                let mode = meta.permissions().mode() & 0o777;
                out.insert(rel, (fs::read(&path).expect("read"), mode));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_and_separate_stdout_and_stderr_come_back() {
    let Some(sandboxes) = docker::sandboxes().await else {
        return;
    };
    within(60, async {
        let repo = small_repo();
        let sandbox = sandboxes
            .create(&run_id("exit"), repo.path())
            .await
            .expect("create");
        let out = sh(&sandbox, "echo out; echo err >&2; exit 3").await;
        assert_eq!(out.exit_code, 3);
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
        assert_eq!(out.outcome, ExecOutcome::Exited);
        assert_eq!(out.truncated_bytes, 0);
        let ok = sh(&sandbox, "cat README.md; pwd").await;
        assert!(ok.success());
        assert_eq!(ok.stdout, "# test repo\n/workspace\n");
        let sub = sandbox
            .exec(ExecSpec::new("mkdir -p a/b && cd a && pwd").timeout(Duration::from_secs(10)))
            .await
            .expect("exec");
        assert_eq!(sub.stdout, "/workspace/a\n");
        let in_dir = sandbox
            .exec(ExecSpec::new("pwd").workdir("a/b"))
            .await
            .expect("exec");
        assert_eq!(in_dir.stdout, "/workspace/a/b\n");
        let quoting = sh(&sandbox, r#"printf '%s\n' "$HOME" '$HOME' "a'b""#).await;
        assert_eq!(quoting.stdout, "/tmp\n$HOME\na'b\n");
        sandbox.destroy().await.expect("destroy");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_output_is_cut_in_the_middle_with_a_marker() {
    let Some(sandboxes) = docker::sandboxes().await else {
        return;
    };
    within(60, async {
        let repo = small_repo();
        let sandbox = sandboxes
            .create(&run_id("cap"), repo.path())
            .await
            .expect("create");
        let out = sandbox
            .exec(ExecSpec::new("seq 1 100000; seq 1 50000 >&2").output_cap(1000))
            .await
            .expect("exec");
        assert!(out.success());
        assert!(out.stdout.starts_with("1\n2\n3\n"), "{}", &out.stdout[..50]);
        assert!(out.stdout.ends_with("99999\n100000\n"));
        assert!(out.stdout.contains(" bytes cut ...]"));
        assert!(out.stdout.len() < 1100);
        assert!(out.stderr.ends_with("50000\n"));
        let stdout_total: u64 = (1..=100_000u64)
            .map(|i| i.to_string().len() as u64 + 1)
            .sum();
        let stderr_total: u64 = (1..=50_000u64)
            .map(|i| i.to_string().len() as u64 + 1)
            .sum();
        assert_eq!(out.truncated_bytes, stdout_total + stderr_total - 2000);
        assert!(out
            .stdout
            .contains(&format!("[... {} bytes cut ...]", stdout_total - 1000)));
        sandbox.destroy().await.expect("destroy");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1mb_file_and_1000_files_round_trip_in_and_out() {
    let Some(sandboxes) = docker::sandboxes().await else {
        return;
    };
    within(120, async {
        let repo = small_repo();
        let big: Vec<u8> = (0..1024 * 1024u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        fs::write(repo.path().join("big.bin"), &big).expect("write");
        // Names past the 100 bytes of a plain tar header (PAX / GNU long names both ways).
        let deep = repo.path().join(format!(
            "{}/{}",
            "long-directory-name".repeat(6),
            "file-with-a-rather-long-name-too.txt".repeat(3)
        ));
        fs::create_dir_all(deep.parent().expect("parent")).expect("mkdir");
        fs::write(&deep, "deep").expect("write");
        std::os::unix::fs::symlink(
            deep.strip_prefix(repo.path()).expect("rel"),
            repo.path().join("to-deep"),
        )
        .expect("symlink");
        for i in 0..1000 {
            let dir = repo.path().join(format!("many/d{}", i % 10));
            fs::create_dir_all(&dir).expect("mkdir");
            fs::write(dir.join(format!("f{i}.txt")), format!("file {i}\n")).expect("write");
        }
        let sandbox = sandboxes
            .create(&run_id("trip"), repo.path())
            .await
            .expect("create");
        let count = sh(
            &sandbox,
            "find many -type f | wc -l; stat -c %s big.bin; stat -c %u many/d3/f3.txt",
        )
        .await;
        assert_eq!(count.stdout, "1000\n1048576\n1000\n");
        assert_eq!(sandbox.read_file("big.bin").await.expect("read"), big);

        let out = tempfile::tempdir().expect("tempdir");
        sandbox.copy_out(out.path()).await.expect("copy out");
        let mut expected = tree_of(repo.path());
        expected.retain(|path, _| !path.starts_with(".git"));
        assert_eq!(tree_of(out.path()), expected);
        assert_eq!(
            fs::read_link(out.path().join("to-deep")).expect("long link comes back"),
            deep.strip_prefix(repo.path()).expect("rel")
        );
        sandbox.destroy().await.expect("destroy");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletions_new_files_and_mode_changes_come_back_without_git() {
    let Some(sandboxes) = docker::sandboxes().await else {
        return;
    };
    within(60, async {
        let repo = small_repo();
        fs::write(repo.path().join("doomed.txt"), "bye").expect("write");
        fs::write(repo.path().join("script.sh"), "echo hi").expect("write");
        fs::create_dir(repo.path().join("olddir")).expect("mkdir");
        fs::write(repo.path().join("olddir/x"), "x").expect("write");
        let sandbox = sandboxes
            .create(&run_id("changes"), repo.path())
            .await
            .expect("create");
        let edit = sh(
            &sandbox,
            "rm doomed.txt && rm -r olddir && chmod +x script.sh && mkdir -p new/dir && \
             echo fresh > new/dir/file.txt && echo changed > README.md && \
             ln -s new/dir/file.txt inner-link && ln script.sh hard-link && echo '[evil]' > .git/config",
        )
        .await;
        assert!(edit.success(), "{edit:?}");
        sandbox
            .write_file("written/by/tool.txt", b"from write_file")
            .await
            .expect("write_file");
        let out = tempfile::tempdir().expect("tempdir");
        sandbox.copy_out(out.path()).await.expect("copy out");
        let o = out.path();
        assert!(!o.join("doomed.txt").exists());
        assert!(!o.join("olddir").exists());
        assert_eq!(
            fs::metadata(o.join("script.sh"))
                .expect("meta")
                .permissions()
                .mode()
                & 0o777,
            0o755
        );
        assert_eq!(
            fs::read_to_string(o.join("new/dir/file.txt")).expect("read"),
            "fresh\n"
        );
        assert_eq!(
            fs::read_to_string(o.join("README.md")).expect("read"),
            "changed\n"
        );
        assert_eq!(
            fs::read_to_string(o.join("written/by/tool.txt")).expect("read"),
            "from write_file"
        );
        assert_eq!(
            fs::read_link(o.join("inner-link")).expect("link"),
            Path::new("new/dir/file.txt")
        );
        let hard = fs::read_to_string(o.join("hard-link")).expect("hard link comes back");
        assert_eq!(hard, "echo hi");
        assert!(
            !o.join(".git").exists(),
            "the sandbox's .git never comes back"
        );
        sandbox.destroy().await.expect("destroy");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_pointing_outside_cannot_make_the_host_read_or_write_outside() {
    let Some(sandboxes) = docker::sandboxes().await else {
        return;
    };
    within(60, async {
        let repo = small_repo();
        let host = tempfile::tempdir().expect("tempdir");
        let secret = host.path().join("secret.txt");
        fs::write(&secret, "host secret").expect("write");
        let dest = host.path().join("dest");
        fs::create_dir(&dest).expect("mkdir");
        let sandbox = sandboxes
            .create(&run_id("symlink"), repo.path())
            .await
            .expect("create");
        let script = format!(
            "ln -s {secret} abs && ln -s ../secret.txt up && ln -s ../../../../../../ root && \
             mkdir sub && ln -s .. sub/parent && ln -s sub/parent/.. chained && \
             ln -s /etc/passwd passwd",
            secret = secret.display()
        );
        assert!(sh(&sandbox, &script).await.success());
        sandbox.copy_out(&dest).await.expect("copy out");
        for name in ["abs", "up", "root", "chained", "passwd"] {
            assert!(
                fs::symlink_metadata(dest.join(name)).is_err(),
                "{name} should not come back"
            );
        }
        // The inner link that stays inside is kept.
        assert_eq!(
            fs::read_link(dest.join("sub/parent")).expect("link"),
            Path::new("..")
        );
        assert_eq!(fs::read_to_string(&secret).expect("read"), "host secret");
        let siblings: Vec<_> = fs::read_dir(host.path())
            .expect("ls")
            .map(|e| e.expect("e").file_name())
            .collect();
        assert_eq!(siblings.len(), 2, "nothing new next to dest: {siblings:?}");
        sandbox.destroy().await.expect("destroy");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_and_write_file_work_with_the_agents_rights() {
    let Some(sandboxes) = docker::sandboxes().await else {
        return;
    };
    within(60, async {
        let repo = small_repo();
        let sandbox = sandboxes
            .create(&run_id("files"), repo.path())
            .await
            .expect("create");
        sandbox
            .write_file("a/b/c.txt", b"abc")
            .await
            .expect("write");
        assert_eq!(sandbox.read_file("a/b/c.txt").await.expect("read"), b"abc");
        assert_eq!(
            sandbox
                .read_file("/workspace/a/b/c.txt")
                .await
                .expect("read"),
            b"abc"
        );
        assert_eq!(sh(&sandbox, "stat -c %u a/b/c.txt").await.stdout, "1000\n");
        sandbox
            .write_file("/tmp/scratch/x", b"tmp")
            .await
            .expect("write tmp");
        assert_eq!(
            sandbox.read_file("/tmp/scratch/x").await.expect("read"),
            b"tmp"
        );
        let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
        sandbox
            .write_file("bin.dat", &binary)
            .await
            .expect("write binary");
        assert_eq!(sandbox.read_file("bin.dat").await.expect("read"), binary);
        assert!(matches!(
            sandbox.read_file("missing.txt").await,
            Err(SandboxError::ReadFile { .. })
        ));
        assert!(matches!(
            sandbox.write_file("/etc/evil", b"x").await,
            Err(SandboxError::WriteFile { .. })
        ));
        sandbox.destroy().await.expect("destroy");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inside_runs_as_non_root_without_capabilities_or_new_privileges() {
    let Some(sandboxes) = docker::sandboxes().await else {
        return;
    };
    within(60, async {
        let repo = small_repo();
        let sandbox = sandboxes
            .create(&run_id("caps"), repo.path())
            .await
            .expect("create");
        let id = sh(&sandbox, "id -u; id -g").await;
        assert_eq!(id.stdout, "1000\n1000\n");
        let status = sh(
            &sandbox,
            "grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status",
        )
        .await;
        for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            assert!(
                status.stdout.contains(&format!("{cap}:\t0000000000000000")),
                "{cap} not empty: {}",
                status.stdout
            );
        }
        assert!(
            status.stdout.contains("NoNewPrivs:\t1"),
            "{}",
            status.stdout
        );
        assert!(
            status.stdout.contains("Seccomp:\t2"),
            "seccomp filter: {}",
            status.stdout
        );
        let su = sh(&sandbox, "unshare -r true || exit 9").await;
        assert_ne!(su.exit_code, 0, "user namespaces must be refused");
        sandbox.destroy().await.expect("destroy");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inside_there_is_no_network_at_all() {
    let Some(sandboxes) = docker::sandboxes().await else {
        return;
    };
    within(90, async {
        let repo = small_repo();
        let sandbox = sandboxes
            .create(&run_id("nonet"), repo.path())
            .await
            .expect("create");
        let links = sh(&sandbox, "ls /sys/class/net").await;
        assert_eq!(links.stdout, "lo\n");
        for (what, command) in [
            ("a DNS name", "getent hosts example.com"),
            ("a DNS name over HTTP", "curl -sS -m 5 https://example.com"),
            ("a public IP", "curl -sS -m 5 http://1.1.1.1"),
            ("the host gateway", "curl -sS -m 5 http://172.17.0.1"),
            (
                "the metadata service",
                "curl -sS -m 5 http://169.254.169.254/latest/meta-data/",
            ),
        ] {
            let out = sh(&sandbox, command).await;
            assert_ne!(out.exit_code, 0, "{what} was reachable: {out:?}");
        }
        sandbox.destroy().await.expect("destroy");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inside_there_is_no_host_environment() {
    std::env::set_var("BACKSPACE_TEST_CANARY", "canary-7f3a9");
    let Some(sandboxes) = docker::sandboxes().await else {
        return;
    };
    within(60, async {
        let repo = small_repo();
        let sandbox = sandboxes
            .create(&run_id("env"), repo.path())
            .await
            .expect("create");
        let env = sh(&sandbox, "env").await;
        assert!(!env.stdout.contains("canary-7f3a9"), "{}", env.stdout);
        assert!(!env.stdout.contains("BACKSPACE_TEST_CANARY"));
        let mut names: Vec<&str> = env
            .stdout
            .lines()
            .filter_map(|l| l.split('=').next())
            .collect();
        names.sort();
        // Only what the sandbox sets (and what shells and Docker add themselves).
        let allowed = [
            "CI", "HOME", "HOSTNAME", "LANG", "OLDPWD", "PATH", "PWD", "SHLVL", "USER", "_",
        ];
        for name in names {
            assert!(allowed.contains(&name), "unexpected variable {name}");
        }
        sandbox.destroy().await.expect("destroy");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_outside_workspace_and_tmp_fail() {
    let Some(sandboxes) = docker::sandboxes().await else {
        return;
    };
    within(60, async {
        let repo = small_repo();
        let sandbox = sandboxes
            .create(&run_id("rofs"), repo.path())
            .await
            .expect("create");
        for path in [
            "/etc/x",
            "/usr/bin/x",
            "/x",
            "/var/x",
            "/var/tmp/x",
            "/root/x",
            "/opt/x",
            "/home/agent/x",
            "/run/x",
            "/dev/x",
            "/sys/fs/cgroup/x",
        ] {
            let out = sh(&sandbox, &format!("echo x > {path}")).await;
            assert_ne!(out.exit_code, 0, "could write {path}");
        }
        assert!(sh(&sandbox, "echo x > /workspace/ok && echo y > /tmp/ok")
            .await
            .success());
        // Programs can run from /tmp (builds and test runners need it).
        let ran = sh(
            &sandbox,
            "printf '#!/bin/sh\\necho ran\\n' > /tmp/t && chmod +x /tmp/t && /tmp/t",
        )
        .await;
        assert_eq!(ran.stdout, "ran\n", "{ran:?}");
        // Every mount point the agent can create a file in: ours, plus Docker's own
        // memory-limited, noexec /dev/shm and /dev/mqueue.
        let writable = sh(
            &sandbox,
            "for m in $(cut -d' ' -f2 /proc/mounts | sort -u); do \
               f=\"$m/.probe-$$\"; (: > \"$f\") 2>/dev/null && rm -f \"$f\" && echo \"$m\"; \
             done; true",
        )
        .await;
        let writable: Vec<&str> = writable.stdout.lines().collect();
        assert_eq!(writable, ["/dev/mqueue", "/dev/shm", "/tmp", "/workspace"]);
        let mounts = sh(&sandbox, "grep ' / ' /proc/mounts").await;
        assert!(
            mounts.stdout.contains(" ro,"),
            "root not read-only: {}",
            mounts.stdout
        );
        sandbox.destroy().await.expect("destroy");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_past_its_time_limit_is_killed_and_reported_timed_out() {
    let Some(sandboxes) = docker::sandboxes().await else {
        return;
    };
    within(60, async {
        let repo = small_repo();
        let run = run_id("timeout");
        let sandbox = sandboxes.create(&run, repo.path()).await.expect("create");
        let started = Instant::now();
        let out = sandbox
            .exec(
                ExecSpec::new("echo before; sleep 30; echo after").timeout(Duration::from_secs(1)),
            )
            .await
            .expect("exec");
        assert_eq!(out.outcome, ExecOutcome::TimedOut);
        assert_eq!(out.stdout, "before\n");
        assert!(started.elapsed() < Duration::from_secs(10));
        // Nothing it started survives it, including background processes.
        let bg = sh(&sandbox, "setsid sleep 1000 & sleep 0.2; echo started").await;
        assert_eq!(bg.stdout, "started\n");
        let left = sh(&sandbox, "ps -eo args | grep -c '^sleep [13]0*$' || true").await;
        assert_eq!(left.stdout, "0\n", "leftover processes");
        assert!(sh(&sandbox, "echo still usable").await.success());
        sandbox.destroy().await.expect("destroy");
        assert_no_container_of_run(&sandboxes, &run).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_exhausts_memory_is_reported_out_of_memory() {
    let settings = SandboxSettings {
        memory_bytes: 256 * 1024 * 1024,
        ..docker::test_settings()
    };
    let Some(sandboxes) = docker::sandboxes_with(settings).await else {
        return;
    };
    within(90, async {
        let repo = small_repo();
        let run = run_id("oom");
        let sandbox = sandboxes.create(&run, repo.path()).await.expect("create");
        let out = sh(
            &sandbox,
            "python3 -c 'b = bytearray(1024 * 1024 * 1024); print(len(b))'",
        )
        .await;
        assert_eq!(out.outcome, ExecOutcome::OutOfMemory, "{out:?}");
        assert_ne!(out.exit_code, 0);
        let after = sh(&sandbox, "echo fine").await;
        assert_eq!(
            after.outcome,
            ExecOutcome::Exited,
            "an old OOM is not counted again"
        );
        assert_eq!(after.stdout, "fine\n");
        sandbox.destroy().await.expect("destroy");
        assert_no_container_of_run(&sandboxes, &run).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_bomb_is_contained_reported_and_the_sandbox_stays_usable() {
    let Some(sandboxes) = docker::sandboxes().await else {
        return;
    };
    within(90, async {
        let repo = small_repo();
        let run = run_id("forkbomb");
        let sandbox = sandboxes.create(&run, repo.path()).await.expect("create");
        let out = sandbox
            .exec(ExecSpec::new("f() { f | f & }; f; sleep 3").timeout(Duration::from_secs(20)))
            .await
            .expect("exec");
        assert_eq!(out.outcome, ExecOutcome::ProcessLimit, "{out:?}");
        let after = sh(&sandbox, "echo alive; ps -e --no-headers | wc -l").await;
        assert!(after.success(), "{after:?}");
        let lines: Vec<&str> = after.stdout.lines().collect();
        assert_eq!(lines[0], "alive");
        let procs: u32 = lines[1].trim().parse().expect("count");
        assert!(procs < 10, "{procs} processes left after the bomb");
        sandbox.destroy().await.expect("destroy");
        assert_no_container_of_run(&sandboxes, &run).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_time_limit_ends_everything_and_removes_the_container() {
    let settings = SandboxSettings {
        run_timeout: Duration::from_secs(4),
        ..docker::test_settings()
    };
    let Some(sandboxes) = docker::sandboxes_with(settings).await else {
        return;
    };
    within(60, async {
        let repo = small_repo();
        let run = run_id("runlimit");
        let sandbox = sandboxes.create(&run, repo.path()).await.expect("create");
        let result = sandbox
            .exec(ExecSpec::new("sleep 60").timeout(Duration::from_secs(60)))
            .await;
        assert!(
            matches!(result, Err(SandboxError::RunTimeLimit { .. })),
            "{result:?}"
        );
        assert_no_container_of_run(&sandboxes, &run).await;
        assert!(matches!(
            sandbox.exec(ExecSpec::new("true")).await,
            Err(SandboxError::RunTimeLimit { .. })
        ));
        drop(sandbox);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_or_panicking_holder_still_removes_its_container() {
    let Some(sandboxes) = docker::sandboxes().await else {
        return;
    };
    within(60, async {
        let repo = small_repo();
        let dropped = run_id("dropped");
        let sandbox = sandboxes
            .create(&dropped, repo.path())
            .await
            .expect("create");
        assert_eq!(
            sandboxes
                .containers_of_run(&dropped)
                .await
                .expect("list")
                .len(),
            1
        );
        drop(sandbox);
        assert_no_container_of_run(&sandboxes, &dropped).await;

        let panicked = run_id("panicked");
        let task = {
            let sandboxes = sandboxes.clone();
            let run = panicked.clone();
            let path = repo.path().to_path_buf();
            tokio::spawn(async move {
                let sandbox = sandboxes.create(&run, &path).await.expect("create");
                let _ = sandbox.exec(ExecSpec::new("true")).await;
                panic!("holder panics with a live sandbox");
            })
        };
        assert!(task.await.is_err());
        assert_no_container_of_run(&sandboxes, &panicked).await;

        let cancelled = run_id("cancelled");
        let sandbox = sandboxes
            .create(&cancelled, repo.path())
            .await
            .expect("create");
        let slow = sandbox.exec(ExecSpec::new("sleep 30"));
        assert!(tokio::time::timeout(Duration::from_millis(500), slow)
            .await
            .is_err());
        drop(sandbox);
        assert_no_container_of_run(&sandboxes, &cancelled).await;
    })
    .await;
}

/// Not a test by itself: the child process of the next test. Creates a sandbox, says so, and
/// waits to be killed.
#[tokio::test]
#[ignore = "helper process for killed_holder_orphan_is_removed_by_the_reaper"]
async fn orphan_holder_child_process() {
    let Ok(run) = std::env::var("BACKSPACE_ORPHAN_RUN") else {
        return;
    };
    let Some(sandboxes) = docker::sandboxes().await else {
        return;
    };
    let repo = small_repo();
    let sandbox = sandboxes.create(&run, repo.path()).await.expect("create");
    println!("READY {}", sandbox.id());
    tokio::time::sleep(Duration::from_secs(120)).await;
    drop(sandbox);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_holder_orphan_is_removed_by_the_reaper() {
    let Some(sandboxes) = docker::sandboxes().await else {
        return;
    };
    within(90, async {
        use std::io::BufRead;
        let run = run_id("orphan");
        let exe = std::env::current_exe().expect("current exe");
        let mut child = std::process::Command::new(exe)
            .args([
                "--exact",
                "orphan_holder_child_process",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("BACKSPACE_ORPHAN_RUN", &run)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("stdout");
        let ready = tokio::task::spawn_blocking(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let line = line.expect("line");
                if line.contains("READY ") {
                    return true;
                }
            }
            false
        })
        .await
        .expect("join");
        assert!(ready, "child never created its sandbox");
        child.kill().expect("kill -9"); // SIGKILL: no destructor, no clean-up runs
        child.wait().expect("wait");
        assert_eq!(
            sandboxes.containers_of_run(&run).await.expect("list").len(),
            1,
            "orphan exists"
        );

        // A fresh instance starting up (another instance id) reaps it.
        let restarted = docker::sandboxes_with(docker::test_settings())
            .await
            .expect("connect");
        assert_ne!(
            restarted.settings().instance_id,
            sandboxes.settings().instance_id
        );
        let removed = restarted.reap().await.expect("reap");
        assert!(removed >= 1);
        assert_no_container_of_run(&sandboxes, &run).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reaper_leaves_live_sandboxes_alone() {
    let Some(sandboxes) = docker::sandboxes().await else {
        return;
    };
    within(60, async {
        let repo = small_repo();
        let run = run_id("live");
        let sandbox = sandboxes.create(&run, repo.path()).await.expect("create");
        sandboxes.reap().await.expect("reap");
        let other = docker::sandboxes().await.expect("connect");
        other.reap().await.expect("reap");
        assert_eq!(
            sandboxes.containers_of_run(&run).await.expect("list").len(),
            1
        );
        assert!(sh(&sandbox, "true").await.success());
        sandbox.destroy().await.expect("destroy");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_is_a_clear_error_and_leaves_nothing() {
    let Some(_) = docker::sandboxes().await else {
        return;
    };
    let settings = SandboxSettings {
        image: "backspace-sandbox:does-not-exist".to_string(),
        ..docker::test_settings()
    };
    let sandboxes = Sandboxes::connect(settings).await.expect("connect");
    within(30, async {
        let repo = small_repo();
        let run = run_id("noimage");
        let result = sandboxes.create(&run, repo.path()).await;
        assert!(
            matches!(result, Err(SandboxError::ImageMissing { .. })),
            "{result:?}"
        );
        assert_no_container_of_run(&sandboxes, &run).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_pool_sandbox_serves_one_run_and_is_as_locked_down() {
    let settings = SandboxSettings {
        warm_pool: 1,
        ..docker::test_settings()
    };
    let Some(sandboxes) = docker::sandboxes_with(settings).await else {
        return;
    };
    within(90, async {
        assert_eq!(sandboxes.warm_up().await.expect("warm up"), 1);
        let repo = small_repo();
        let run = run_id("warm");
        let sandbox = sandboxes.create(&run, repo.path()).await.expect("create");
        assert_eq!(
            sandboxes.containers_of_run(&run).await.expect("list"),
            vec![sandbox.id().to_string()]
        );
        let out = sh(
            &sandbox,
            "cat README.md; id -u; ls /sys/class/net; grep CapEff /proc/self/status",
        )
        .await;
        assert_eq!(
            out.stdout,
            "# test repo\n1000\nlo\nCapEff:\t0000000000000000\n"
        );
        // The pool refills behind the run; the next run gets another container.
        let second_run = run_id("warm2");
        let second = sandboxes
            .create(&second_run, repo.path())
            .await
            .expect("create");
        assert_ne!(second.id(), sandbox.id());
        assert!(sh(
            &second,
            "test ! -e /workspace/leftover && touch /workspace/leftover"
        )
        .await
        .success());
        sandbox.destroy().await.expect("destroy");
        second.destroy().await.expect("destroy");
        sandboxes.drain_pool().await.expect("drain");
        assert_eq!(sandboxes.warm_count(), 0);
        assert_no_container_of_run(&sandboxes, &run).await;
        assert_no_container_of_run(&sandboxes, &second_run).await;
    })
    .await;
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// The numbers of BENCHMARKS.md: create → first exec output (cold), and an exec's round trip.
/// `cargo test --release --test sandbox -- --ignored bench_ --nocapture --test-threads=1`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run explicitly"]
async fn bench_cold_start_and_exec_round_trip() {
    let Some(sandboxes) = docker::sandboxes().await else {
        return;
    };
    within(600, async {
        let repo = small_repo();
        let n = 15;
        let mut cold = Vec::new();
        let mut cold_create = Vec::new();
        for i in 0..n {
            let started = Instant::now();
            let sandbox = sandboxes
                .create(&run_id(&format!("bench{i}")), repo.path())
                .await
                .expect("create");
            cold_create.push(started.elapsed());
            let out = sandbox
                .exec(ExecSpec::new("echo ready"))
                .await
                .expect("exec");
            cold.push(started.elapsed());
            assert_eq!(out.stdout, "ready\n");
            sandbox.destroy().await.expect("destroy");
        }
        let sandbox = sandboxes
            .create(&run_id("bench-rt"), repo.path())
            .await
            .expect("create");
        let mut round_trip = Vec::new();
        for _ in 0..50 {
            let started = Instant::now();
            let out = sandbox.exec(ExecSpec::new("true")).await.expect("exec");
            round_trip.push(started.elapsed());
            assert!(out.success());
        }
        sandbox.destroy().await.expect("destroy");

        let pooled = docker::sandboxes_with(SandboxSettings {
            warm_pool: 1,
            ..docker::test_settings()
        })
        .await
        .expect("connect");
        let mut warm = Vec::new();
        let mut warm_create = Vec::new();
        for i in 0..n {
            pooled.warm_up().await.expect("warm up");
            let started = Instant::now();
            let sandbox = pooled
                .create(&run_id(&format!("benchw{i}")), repo.path())
                .await
                .expect("create");
            warm_create.push(started.elapsed());
            let out = sandbox
                .exec(ExecSpec::new("echo ready"))
                .await
                .expect("exec");
            warm.push(started.elapsed());
            assert_eq!(out.stdout, "ready\n");
            sandbox.destroy().await.expect("destroy");
        }
        pooled.drain_pool().await.expect("drain");
        println!(
            "BENCH create() alone: cold median {:?}, warm pool median {:?}",
            median(cold_create),
            median(warm_create)
        );
        println!(
            "BENCH warm pool create->first output: median {:?} (min {:?}, max {:?}, n={n})",
            median(warm.clone()),
            warm.iter().min().expect("min"),
            warm.iter().max().expect("max"),
        );
        println!(
            "BENCH cold create->first output: median {:?} (min {:?}, max {:?}, n={n})",
            median(cold.clone()),
            cold.iter().min().expect("min"),
            cold.iter().max().expect("max"),
        );
        println!(
            "BENCH exec round trip: median {:?} (min {:?}, max {:?}, n=50)",
            median(round_trip.clone()),
            round_trip.iter().min().expect("min"),
            round_trip.iter().max().expect("max"),
        );
    })
    .await;
}

/// A git repository of about 50 MB: 24 MiB of incompressible data in the working tree and again
/// in `.git`, and 2,000 small files.
fn repo_of_50_mb() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let data: Vec<u8> = (0..24 * 1024 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    fs::write(p.join("data.bin"), data).expect("write");
    for i in 0..2000 {
        let d = p.join(format!("src/m{}", i % 40));
        fs::create_dir_all(&d).expect("mkdir");
        fs::write(d.join(format!("f{i}.rs")), format!("pub fn f{i}() {{}}\n")).expect("write");
    }
    for args in [
        &["init", "-q"][..],
        &["add", "-A"],
        &[
            "-c",
            "user.name=b",
            "-c",
            "user.email=b@b",
            "commit",
            "-qm",
            "x",
        ],
    ] {
        let ok = std::process::Command::new("git")
            .args(args)
            .current_dir(p)
            .status()
            .expect("git")
            .success();
        assert!(ok, "git {args:?}");
    }
    dir
}

/// The sandbox as it was before the disk cap (main at 7c1fcc0): an anonymous volume at
/// `/workspace`, the repository uploaded through Docker's archive API while the container
/// starts. For the before/after benchmark only.
async fn legacy_create(
    docker: &bollard::Docker,
    settings: &SandboxSettings,
    repo: &Path,
) -> String {
    use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountTypeEnum};
    let host_config = HostConfig {
        network_mode: Some("none".into()),
        cap_drop: Some(vec!["ALL".into()]),
        security_opt: Some(vec!["no-new-privileges:true".into()]),
        readonly_rootfs: Some(true),
        tmpfs: Some(std::collections::HashMap::from([(
            "/tmp".to_string(),
            format!("rw,exec,nosuid,nodev,size={},mode=1777", settings.tmp_bytes),
        )])),
        mounts: Some(vec![Mount {
            target: Some("/workspace".into()),
            typ: Some(MountTypeEnum::VOLUME),
            ..Default::default()
        }]),
        memory: Some(settings.memory_bytes),
        memory_swap: Some(settings.memory_bytes),
        nano_cpus: Some((settings.cpus * 1e9) as i64),
        pids_limit: Some(settings.pids_limit),
        ..Default::default()
    };
    let body = ContainerCreateBody {
        image: Some(settings.image.clone()),
        user: Some("1000:1000".into()),
        working_dir: Some("/workspace".into()),
        cmd: Some(vec![
            "/bin/sh".into(),
            "-c".into(),
            "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done".into(),
        ]),
        entrypoint: Some(vec![]),
        labels: Some(std::collections::HashMap::from([(
            backspace::sandbox::LABEL_RUN.to_string(),
            "bench-legacy".to_string(),
        )])),
        network_disabled: Some(true),
        host_config: Some(host_config),
        ..Default::default()
    };
    let id = docker
        .create_container(
            None::<bollard::query_parameters::CreateContainerOptions>,
            body,
        )
        .await
        .expect("create")
        .id;
    // Streamed as it is packed, as main did.
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(16);
    let root = repo.to_path_buf();
    let packing = tokio::task::spawn_blocking(move || {
        let writer = std::io::BufWriter::with_capacity(256 * 1024, Sender(tx));
        backspace::sandbox::pack_into(&root, writer)
            .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
            .map(drop)
    });
    let upload = bollard::query_parameters::UploadToContainerOptionsBuilder::new()
        .path("/workspace")
        .build();
    let body = bollard::body_try_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let start = None::<bollard::query_parameters::StartContainerOptions>;
    let (started, uploaded) = tokio::join!(
        docker.start_container(&id, start),
        docker.upload_to_container(&id, Some(upload), body),
    );
    started.expect("start");
    uploaded.expect("upload");
    packing.await.expect("join").expect("pack");
    id
}

/// The packer's end of the legacy upload.
struct Sender(tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>);

impl std::io::Write for Sender {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(bytes::Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::other("the upload stopped"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One plain exec of `echo ready` as the agent: the same first command for both ways.
async fn plain_echo(docker: &bollard::Docker, id: &str) {
    use futures::StreamExt;
    let config = bollard::models::ExecConfig {
        attach_stdout: Some(true),
        cmd: Some(vec!["echo".into(), "ready".into()]),
        user: Some("1000:1000".into()),
        ..Default::default()
    };
    let exec = docker.create_exec(id, config).await.expect("exec");
    let started = docker.start_exec(&exec.id, None).await.expect("start");
    let bollard::exec::StartExecResults::Attached { mut output, .. } = started else {
        panic!("detached");
    };
    let mut out = Vec::new();
    while let Some(chunk) = output.next().await {
        out.extend_from_slice(&chunk.expect("output").into_bytes());
    }
    assert_eq!(out, b"ready\n");
}

async fn remove(docker: &bollard::Docker, id: &str) {
    let options = bollard::query_parameters::RemoveContainerOptionsBuilder::new()
        .force(true)
        .v(true)
        .build();
    docker
        .remove_container(id, Some(options))
        .await
        .expect("remove");
}

/// BENCHMARKS.md's before/after of the disk cap: create → ready (repository in) → first output
/// of one plain exec, the old way (volume + archive upload) and the new (tmpfs + tar in an
/// exec), alternating, for the small repository and one of 50 MB.
/// `cargo test --release --test sandbox -- --ignored bench_copy_in --nocapture --test-threads=1`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run explicitly"]
async fn bench_copy_in_before_and_after_the_disk_cap() {
    let Some(sandboxes) = docker::sandboxes().await else {
        return;
    };
    let settings = SandboxSettings {
        disk_bytes: 1 << 30,
        ..docker::test_settings()
    };
    let sandboxes = docker::sandboxes_with(settings.clone())
        .await
        .unwrap_or(sandboxes);
    let docker = sandboxes.docker().clone();
    within(1200, async {
        let small = small_repo();
        let big = repo_of_50_mb();
        let n = 11;
        for (name, repo) in [("small", small.path()), ("50 MB", big.path())] {
            let (mut old_ready, mut old_first) = (Vec::new(), Vec::new());
            let (mut new_ready, mut new_first, mut new_exec) = (Vec::new(), Vec::new(), Vec::new());
            for i in 0..n {
                let started = Instant::now();
                let id = legacy_create(&docker, &settings, repo).await;
                old_ready.push(started.elapsed());
                plain_echo(&docker, &id).await;
                old_first.push(started.elapsed());
                remove(&docker, &id).await;

                let started = Instant::now();
                let sandbox = sandboxes
                    .create(&run_id(&format!("benchnew{i}")), repo)
                    .await
                    .expect("create");
                new_ready.push(started.elapsed());
                plain_echo(&docker, sandbox.id()).await;
                new_first.push(started.elapsed());
                let exec_started = Instant::now();
                let out = sandbox
                    .exec(ExecSpec::new("echo ready"))
                    .await
                    .expect("exec");
                new_exec.push(exec_started.elapsed());
                assert_eq!(out.stdout, "ready\n");
                sandbox.destroy().await.expect("destroy");
            }
            let ratio = |a: Duration, b: Duration| b.as_secs_f64() / a.as_secs_f64();
            let (or, nr) = (median(old_ready.clone()), median(new_ready.clone()));
            let (of, nf) = (median(old_first.clone()), median(new_first.clone()));
            println!(
                "BENCH {name} repo: create->ready before {or:?} after {nr:?} (x{:.2}); \
                 create->first output before {of:?} after {nf:?} (x{:.2}); \
                 a wrapped Sandbox::exec after it {:?} (n={n})",
                ratio(or, nr),
                ratio(of, nf),
                median(new_exec),
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_working_directory_is_an_error_not_a_hang() {
    let Some(sandboxes) = docker::sandboxes().await else {
        return;
    };
    within(60, async {
        let repo = small_repo();
        let sandbox = sandboxes
            .create(&run_id("nodir"), repo.path())
            .await
            .expect("create");
        let result = sandbox
            .exec(ExecSpec::new("pwd").workdir("no/such/dir"))
            .await;
        match result {
            Ok(out) => assert!(!out.success(), "{out:?}"),
            Err(e) => assert!(!matches!(e, SandboxError::RunTimeLimit { .. }), "{e}"),
        }
        assert!(sh(&sandbox, "true").await.success());
        sandbox.destroy().await.expect("destroy");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workspace_is_a_sized_tmpfs_and_no_volume_is_made() {
    let Some(sandboxes) = docker::sandboxes().await else {
        return;
    };
    within(60, async {
        let repo = small_repo();
        let sandbox = sandboxes
            .create(&run_id("tmpfs"), repo.path())
            .await
            .expect("create");
        let info = sandboxes
            .docker()
            .inspect_container(
                sandbox.id(),
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .expect("inspect");
        assert!(
            info.mounts.iter().flatten().next().is_none(),
            "no volume, no bind mount: {:?}",
            info.mounts
        );
        let settings = docker::test_settings();
        let df = sh(
            &sandbox,
            "df -B1 --output=target,size /workspace /tmp | tail -n 2",
        )
        .await;
        let sizes: Vec<(String, u64)> = df
            .stdout
            .lines()
            .map(|l| {
                let mut parts = l.split_whitespace();
                let target = parts.next().expect("target").to_string();
                let size = parts.next().expect("size").parse().expect("number");
                (target, size)
            })
            .collect();
        assert_eq!(
            sizes,
            [
                ("/workspace".to_string(), settings.workspace_share()),
                ("/tmp".to_string(), settings.tmp_share())
            ]
        );
        let spec = sandbox.command("echo default");
        assert_eq!(spec.timeout, settings.command_timeout);
        assert_eq!(spec.idle, Some(settings.command_idle));
        assert!(sandbox.exec(spec).await.expect("exec").success());
        sandbox.destroy().await.expect("destroy");
    })
    .await;
}

/// Bytes free on the file system that holds Docker's data (and, here, the host's clones).
fn host_free_bytes() -> u64 {
    let out = std::process::Command::new("df")
        .args(["-B1", "--output=avail", "/var/lib/docker"])
        .output()
        .expect("df");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .expect("df output")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4_gib_write_fails_at_the_disk_cap_and_the_sandbox_goes_on() {
    let Some(sandboxes) = docker::sandboxes().await else {
        return;
    };
    within(120, async {
        let settings = docker::test_settings();
        let repo = small_repo();
        let sandbox = sandboxes
            .create(&run_id("disk"), repo.path())
            .await
            .expect("create");
        let free_before = host_free_bytes();
        let big = sandbox
            .exec(
                ExecSpec::new(
                    "dd if=/dev/zero of=big.bin bs=1M count=4096 2>&1; stat -c %s big.bin",
                )
                .timeout(Duration::from_secs(60)),
            )
            .await
            .expect("exec");
        assert_eq!(big.outcome, ExecOutcome::Exited, "{big:?}");
        assert!(
            big.stdout.contains("No space left on device"),
            "{}",
            big.stdout
        );
        let written: u64 = big
            .stdout
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .expect("size");
        assert!(written <= settings.workspace_share(), "{written}");
        // /tmp is full at its share too: both together hold the cap, no more.
        let tmp = sh(
            &sandbox,
            "dd if=/dev/zero of=/tmp/big bs=1M count=4096 2>&1; stat -c %s /tmp/big",
        )
        .await;
        assert!(tmp.stdout.contains("No space left on device"), "{tmp:?}");
        let in_tmp: u64 = tmp
            .stdout
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .expect("size");
        assert!(written + in_tmp <= settings.disk_bytes);
        // None of it is on the host's disk (other builds write there too: a generous margin,
        // still far below the 4 GiB asked for).
        let dropped = free_before.saturating_sub(host_free_bytes());
        assert!(dropped < 1 << 30, "the host lost {dropped} bytes");
        // With the disk full the processes still have their memory: no OOM kill.
        let memory = sh(
            &sandbox,
            "python3 -c 'b = bytearray(128 * 1024 * 1024); print(len(b))'",
        )
        .await;
        assert_eq!(memory.outcome, ExecOutcome::Exited, "{memory:?}");
        assert_eq!(memory.stdout, "134217728\n");
        assert!(sh(&sandbox, "rm big.bin /tmp/big && echo more > small.txt")
            .await
            .success());
        sandbox.destroy().await.expect("destroy");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bash_loop_at_the_process_limit_is_stopped_soon_and_the_next_command_works() {
    let Some(sandboxes) = docker::sandboxes().await else {
        return;
    };
    within(120, async {
        let repo = small_repo();
        let sandbox = sandboxes
            .create(&run_id("pidloop"), repo.path())
            .await
            .expect("create");
        let started = Instant::now();
        let out = sandbox
            .exec(
                ExecSpec::new("echo looping; while :; do sleep 1000 & done")
                    .timeout(Duration::from_secs(600)),
            )
            .await
            .expect("exec");
        let took = started.elapsed();
        eprintln!("the loop at the process limit was stopped after {took:?}");
        assert_eq!(out.outcome, ExecOutcome::ProcessLimit, "{out:?}");
        assert!(took < Duration::from_secs(30), "stopped after {took:?}");
        assert!(
            out.stderr.contains("[process limit reached"),
            "the agent is told: {}",
            out.stderr
        );
        let after = sh(&sandbox, "echo alive; ps -e --no-headers | wc -l").await;
        assert!(after.success(), "{after:?}");
        let lines: Vec<&str> = after.stdout.lines().collect();
        assert_eq!(lines[0], "alive");
        let procs: u32 = lines[1].trim().parse().expect("count");
        assert!(procs < 10, "{procs} processes left after the loop");
        assert_eq!(
            sh(&sandbox, "true").await.outcome,
            ExecOutcome::Exited,
            "an old hit is not counted again"
        );
        sandbox.destroy().await.expect("destroy");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_prints_nothing_for_the_idle_limit_is_stopped() {
    let Some(sandboxes) = docker::sandboxes().await else {
        return;
    };
    within(90, async {
        let repo = small_repo();
        let sandbox = sandboxes
            .create(&run_id("idle"), repo.path())
            .await
            .expect("create");
        let started = Instant::now();
        let out = sandbox
            .exec(
                ExecSpec::new("echo start; sleep 500 & sleep 100")
                    .timeout(Duration::from_secs(300))
                    .idle(Duration::from_secs(2)),
            )
            .await
            .expect("exec");
        assert_eq!(out.outcome, ExecOutcome::Idle, "{out:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(out.stdout, "start\n");
        assert!(out.stderr.contains("no output for 2 s"), "{}", out.stderr);
        let left = sh(&sandbox, "ps -eo args | grep -c '^sleep [15]00$' || true").await;
        assert_eq!(left.stdout, "0\n", "what it started is killed");
        // Output keeps a command alive, however long it runs.
        let chatty = sandbox
            .exec(
                ExecSpec::new("for i in 1 2 3 4 5; do echo $i; sleep 1; done")
                    .idle(Duration::from_secs(2)),
            )
            .await
            .expect("exec");
        assert!(chatty.success(), "{chatty:?}");
        sandbox.destroy().await.expect("destroy");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_that_leave_the_tree_go_in_as_links_and_are_held_back_on_the_way_out() {
    let Some(sandboxes) = docker::sandboxes().await else {
        return;
    };
    within(60, async {
        let repo = small_repo();
        std::os::unix::fs::symlink("../outside-the-repo", repo.path().join("up-link"))
            .expect("symlink");
        std::os::unix::fs::symlink("/etc/passwd", repo.path().join("abs")).expect("symlink");
        std::os::unix::fs::symlink("README.md", repo.path().join("inner")).expect("symlink");
        let sandbox = sandboxes
            .create(&run_id("links"), repo.path())
            .await
            .expect("a repository with links that leave it goes in");
        let inside = sh(&sandbox, "readlink up-link abs inner; cat inner").await;
        assert_eq!(
            inside.stdout,
            "../outside-the-repo\n/etc/passwd\nREADME.md\n# test repo\n"
        );
        let dest = tempfile::tempdir().expect("tempdir");
        let report = sandbox
            .copy_out_report(dest.path())
            .await
            .expect("copy out");
        let held: Vec<(String, HoldReason)> = report
            .held_back
            .iter()
            .map(|h| (h.path.clone(), h.reason.clone()))
            .collect();
        assert_eq!(
            held,
            [
                (
                    "abs".to_string(),
                    HoldReason::LinkOutside {
                        target: "/etc/passwd".into()
                    }
                ),
                (
                    "up-link".to_string(),
                    HoldReason::LinkOutside {
                        target: "../outside-the-repo".into()
                    }
                ),
            ]
        );
        assert!(fs::symlink_metadata(dest.path().join("up-link")).is_err());
        assert_eq!(
            fs::read_link(dest.path().join("inner")).expect("inner link"),
            Path::new("README.md")
        );
        sandbox.destroy().await.expect("destroy");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_git_takes_for_dot_git_are_refused_at_copy_out_and_listed() {
    let Some(sandboxes) = docker::sandboxes().await else {
        return;
    };
    within(60, async {
        let repo = small_repo();
        let sandbox = sandboxes
            .create(&run_id("dotgit"), repo.path())
            .await
            .expect("create");
        let plant = sh(
            &sandbox,
            "mkdir -p .Git sub/.GIT .GitHub/workflows 'git~1' && echo '[core]' > .Git/config && \
             echo x > sub/.GIT/x && echo y > 'git~1/y' && echo 'on: push' > .GitHub/workflows/x.yml && \
             echo '[evil]' >> .git/config",
        )
        .await;
        assert!(plant.success(), "{plant:?}");
        let dest = tempfile::tempdir().expect("tempdir");
        let report = sandbox.copy_out_report(dest.path()).await.expect("copy out");
        let mut refused: Vec<String> = report.refused();
        refused.sort();
        let reason = backspace::sandbox::git_path::REFUSAL;
        assert_eq!(
            refused,
            [
                format!(".Git: {reason}"),
                format!("git~1: {reason}"),
                format!("sub/.GIT: {reason}"),
            ]
        );
        assert!(!dest.path().join(".Git").exists());
        assert!(!dest.path().join(".git").exists());
        // Not a name git refuses: it comes back, and apply's protected paths deal with it.
        assert!(dest.path().join(".GitHub/workflows/x.yml").exists());
        sandbox.destroy().await.expect("destroy");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_the_agent_made_unreadable_still_come_back() {
    let Some(sandboxes) = docker::sandboxes().await else {
        return;
    };
    within(60, async {
        let repo = small_repo();
        let sandbox = sandboxes
            .create(&run_id("unreadable"), repo.path())
            .await
            .expect("create");
        assert!(sh(
            &sandbox,
            "mkdir -p locked && echo secret > locked/f && chmod 000 README.md locked/f locked"
        )
        .await
        .success());
        let dest = tempfile::tempdir().expect("tempdir");
        let report = sandbox
            .copy_out_report(dest.path())
            .await
            .expect("copy out");
        assert!(report.held_back.is_empty(), "{:?}", report.held_back);
        assert_eq!(
            fs::read_to_string(dest.path().join("README.md")).expect("read"),
            "# test repo\n"
        );
        assert_eq!(
            fs::read_to_string(dest.path().join("locked/f")).expect("read"),
            "secret\n"
        );
        sandbox.destroy().await.expect("destroy");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_larger_than_the_disk_is_an_error_about_the_repository() {
    let settings = SandboxSettings {
        disk_bytes: 32 * 1024 * 1024,
        ..docker::test_settings()
    };
    let Some(sandboxes) = docker::sandboxes_with(settings).await else {
        return;
    };
    within(60, async {
        let repo = small_repo();
        let big = fs::File::create(repo.path().join("big.bin")).expect("create");
        big.set_len(40 * 1024 * 1024).expect("sparse file");
        let run = run_id("toolarge");
        let result = sandboxes.create(&run, repo.path()).await;
        let err = result.expect_err("does not fit");
        assert!(
            matches!(err, SandboxError::RepositoryTooLarge { .. }),
            "{err:?}"
        );
        assert!(err.is_content(), "the repository's content is the problem");
        assert!(err.to_string().contains("BACKSPACE_SANDBOX_DISK"), "{err}");
        assert_no_container_of_run(&sandboxes, &run).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_periodic_reaper_removes_a_crashed_instances_sandbox() {
    // An instance on this host whose process is gone: the highest pid not running.
    let dead_pid = (1..4_000_000u32)
        .rev()
        .find(|pid| !Path::new(&format!("/proc/{pid}")).exists())
        .expect("a free pid");
    let host = backspace::sandbox::new_instance_id();
    let host = host.split(':').next().expect("host");
    let crashed = SandboxSettings {
        instance_id: format!("{host}:{dead_pid}:crashed0"),
        ..docker::test_settings()
    };
    let Some(crashed) = docker::sandboxes_with(crashed).await else {
        return;
    };
    let Some(alive) = docker::sandboxes().await else {
        return;
    };
    within(60, async {
        let repo = small_repo();
        let run = run_id("crashed");
        let sandbox = crashed.create(&run, repo.path()).await.expect("create");
        // As if the process died here: no destroy, no drop guard.
        std::mem::forget(sandbox);
        assert_eq!(alive.containers_of_run(&run).await.expect("list").len(), 1);
        let reaper = alive.spawn_reaper(Duration::from_millis(500));
        assert_no_container_of_run(&alive, &run).await;
        reaper.abort();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_command_is_killed_before_the_next_one_runs() {
    let Some(sandboxes) = docker::sandboxes().await else {
        return;
    };
    within(60, async {
        let repo = small_repo();
        let sandbox = sandboxes
            .create(&run_id("abandon"), repo.path())
            .await
            .expect("create");
        let slow = sandbox.exec(ExecSpec::new("sleep 77"));
        assert!(tokio::time::timeout(Duration::from_millis(700), slow)
            .await
            .is_err());
        let started = Instant::now();
        let out = sh(&sandbox, "ps -eo args | grep -c '^sleep 77$' || true").await;
        assert_eq!(out.stdout, "0\n", "the abandoned command still runs");
        // A background process holding stdout open does not hold the command either.
        let bg = sh(&sandbox, "sleep 88 & echo spawned").await;
        assert_eq!(bg.stdout, "spawned\n");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        sandbox.destroy().await.expect("destroy");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_working_tree_over_the_copy_out_limits_is_refused() {
    let settings = SandboxSettings {
        max_copy_out_bytes: 4096,
        max_copy_out_entries: 50,
        ..docker::test_settings()
    };
    let Some(sandboxes) = docker::sandboxes_with(settings).await else {
        return;
    };
    within(60, async {
        let repo = small_repo();
        let sandbox = sandboxes
            .create(&run_id("toobig"), repo.path())
            .await
            .expect("create");
        assert!(sh(&sandbox, "mkdir many && cd many && touch $(seq 1 100)")
            .await
            .success());
        let dest = tempfile::tempdir().expect("tempdir");
        let result = sandbox.copy_out(dest.path()).await;
        assert!(
            matches!(result, Err(SandboxError::TooManyEntries { limit: 50 })),
            "{result:?}"
        );
        assert!(sh(&sandbox, "rm -r many && head -c 100000 /dev/zero > big")
            .await
            .success());
        let dest = tempfile::tempdir().expect("tempdir");
        let result = sandbox.copy_out(dest.path()).await;
        assert!(
            matches!(result, Err(SandboxError::TooLarge { .. })),
            "{result:?}"
        );
        fs::write(dest.path().join("already-here"), "x").expect("write");
        let not_empty = sandbox.copy_out(dest.path()).await;
        assert!(
            matches!(not_empty, Err(SandboxError::DestinationNotEmpty(_))),
            "{not_empty:?}"
        );
        sandbox.destroy().await.expect("destroy");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_removes_every_container_of_this_instance_and_nothing_else() {
    let settings = SandboxSettings {
        warm_pool: 1,
        ..docker::test_settings()
    };
    let Some(stopping) = docker::sandboxes_with(settings).await else {
        return;
    };
    let Some(other) = docker::sandboxes().await else {
        return;
    };
    within(60, async {
        let repo = small_repo();
        let (a, b, c) = (run_id("shut-a"), run_id("shut-b"), run_id("shut-other"));
        let first = stopping.create(&a, repo.path()).await.expect("create");
        let second = stopping.create(&b, repo.path()).await.expect("create");
        let unrelated = other.create(&c, repo.path()).await.expect("create");
        stopping.warm_up().await.expect("warm up");
        let removed = stopping.shutdown().await.expect("shutdown");
        assert!(removed >= 3, "removed {removed}");
        assert_no_container_of_run(&stopping, &a).await;
        assert_no_container_of_run(&stopping, &b).await;
        assert_eq!(stopping.warm_count(), 0);
        assert!(
            sh(&unrelated, "true").await.success(),
            "another instance's sandbox was touched"
        );
        drop((first, second));
        unrelated.destroy().await.expect("destroy");
    })
    .await;
}
