//! Where the shared real-world fixtures are: `$BACKSPACE_SHARED_DIR/fixtures`, else
//! `../shared/fixtures` beside the repository (CI clones the repository with `shared/` there).

use std::path::PathBuf;

pub fn shared_fixtures_dir() -> PathBuf {
    std::env::var_os("BACKSPACE_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"))
        .join("fixtures")
}

/// The bytes of `fixtures/<rel>`.
pub fn fixture(rel: &str) -> Vec<u8> {
    let path = shared_fixtures_dir().join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}
