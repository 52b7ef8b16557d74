//! The real Docker engine for the tests: checks that it answers and that the sandbox test image
//! `backspace-sandbox:test` exists (building it with `scripts/build-test-image.sh` when it does
//! not). With `CI=true` a missing engine or image fails the test; elsewhere the test is skipped
//! with a message that says why.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use backspace::sandbox::{SandboxSettings, Sandboxes};

pub const TEST_IMAGE: &str = "backspace-sandbox:test";

static IMAGE_BUILD: Mutex<()> = Mutex::new(());

pub fn in_ci() -> bool {
    matches!(
        std::env::var("CI")
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Ok("true" | "1")
    )
}

/// Settings for tests: the test image and limits small enough to hit quickly (a 256 MiB disk,
/// 64 MiB of it `/tmp`).
pub fn test_settings() -> SandboxSettings {
    SandboxSettings {
        image: TEST_IMAGE.to_string(),
        memory_bytes: 512 * 1024 * 1024,
        cpus: 1.0,
        pids_limit: 128,
        disk_bytes: 256 * 1024 * 1024,
        tmp_bytes: 64 * 1024 * 1024,
        command_timeout: Duration::from_secs(60),
        run_timeout: Duration::from_secs(600),
        ..SandboxSettings::default()
    }
}

fn unavailable(why: &str) -> Option<Sandboxes> {
    if in_ci() {
        panic!("Docker sandbox tests cannot run (CI=true makes this a failure): {why}");
    }
    // Straight to fd 2, past libtest's capture, so the skip shows in a normal run.
    let _ = writeln!(std::io::stderr(), "SKIPPED: Docker sandbox test: {why}");
    None
}

/// A connection with `settings`, or None (skip) when no engine or image is available outside
/// CI.
pub async fn sandboxes_with(settings: SandboxSettings) -> Option<Sandboxes> {
    let sandboxes = match Sandboxes::connect(settings).await {
        Ok(s) => s,
        Err(e) => return unavailable(&format!("{e}")),
    };
    match sandboxes.image_present().await {
        Ok(true) => return Some(sandboxes),
        Ok(false) => {}
        Err(e) => return unavailable(&format!("{e}")),
    }
    if let Err(why) = build_test_image() {
        return unavailable(&why);
    }
    match sandboxes.image_present().await {
        Ok(true) => Some(sandboxes),
        _ => unavailable(&format!("image {TEST_IMAGE} still missing after the build")),
    }
}

pub async fn sandboxes() -> Option<Sandboxes> {
    sandboxes_with(test_settings()).await
}

/// Runs `scripts/build-test-image.sh` (once at a time); it reuses an existing image.
pub fn build_test_image() -> Result<(), String> {
    let _one = IMAGE_BUILD
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-test-image.sh");
    let status = std::process::Command::new("bash")
        .arg(&script)
        .status()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{} failed ({status})", script.display()))
    }
}
