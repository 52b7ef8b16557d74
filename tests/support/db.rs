//! Real stores for tests: a SQLite file in a temporary directory, and a fresh database on the
//! Postgres server named by `BACKSPACE_TEST_POSTGRES_URL` (started by `scripts/test-postgres.sh`).
//! With `CI=true` a missing Postgres is a failure, never a skip.

use backspace::store::Store;
use secrecy::SecretString;

pub struct TestStore {
    pub store: Store,
    pub url: SecretString,
    /// The database's name on the Postgres server (None for SQLite).
    pub pg_database: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

pub async fn sqlite() -> TestStore {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let url = SecretString::from(url);
    let store = Store::connect(&url).await.expect("sqlite store");
    TestStore {
        store,
        url,
        pg_database: None,
        _dir: Some(dir),
    }
}

/// A fresh, empty database on the test server, or `None` (and a note) outside CI without one.
pub async fn postgres() -> Option<TestStore> {
    let Ok(base) = std::env::var("BACKSPACE_TEST_POSTGRES_URL") else {
        if in_ci() {
            panic!(
                "CI=true but BACKSPACE_TEST_POSTGRES_URL is not set: run scripts/test-postgres.sh"
            );
        }
        eprintln!("skipping the Postgres half: BACKSPACE_TEST_POSTGRES_URL is not set");
        return None;
    };
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    pg_admin(&format!("CREATE DATABASE {name}")).await;
    let (prefix, _) = base.rsplit_once('/').expect("a URL with a database name");
    let url = SecretString::from(format!("{prefix}/{name}"));
    let store = Store::connect_with(&url, std::time::Duration::from_secs(1))
        .await
        .expect("postgres store");
    Some(TestStore {
        store,
        url,
        pg_database: Some(name),
        _dir: None,
    })
}

/// Both backends: SQLite always, Postgres when available.
pub async fn all() -> Vec<(&'static str, TestStore)> {
    let mut v = vec![("sqlite", sqlite().await)];
    if let Some(pg) = postgres().await {
        v.push(("postgres", pg));
    }
    v
}

/// Runs one statement on the Postgres server's admin database.
pub async fn pg_admin(sql: &str) {
    use sqlx::Connection;
    let base = std::env::var("BACKSPACE_TEST_POSTGRES_URL").expect("BACKSPACE_TEST_POSTGRES_URL");
    let mut admin = sqlx::PgConnection::connect(&base)
        .await
        .expect("postgres server");
    sqlx::raw_sql(sql)
        .execute(&mut admin)
        .await
        .expect("admin statement");
    admin.close().await.ok();
}

/// Takes a test database down for real: no new connections, existing ones killed.
pub async fn pg_outage(db: &str) {
    pg_admin(&format!(
        "ALTER DATABASE {db} ALLOW_CONNECTIONS false; \
         SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'"
    ))
    .await;
}

pub async fn pg_recover(db: &str) {
    pg_admin(&format!("ALTER DATABASE {db} ALLOW_CONNECTIONS true")).await;
}
