//! What the doors beside the webhook need to know: where the server and GitHub are, the API key
//! and its rate limit, where setup saves credentials. Built from `ServeArgs` by `serve`, or by
//! hand in tests.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::Semaphore;

use secrecy::SecretString;
use url::Url;

use super::api::rate_limit::{RateLimit, RateLimiter};
use crate::config::ServeArgs;

#[derive(Debug, Clone)]
pub struct DoorsConfig {
    /// `PUBLIC_URL`: the base of links and of the manifest's webhook and redirect URLs.
    pub public_url: Url,
    /// `GITHUB_URL`: where repositories live and where the manifest is posted.
    pub github_url: Url,
    /// `GITHUB_API_URL`: where the manifest code is converted.
    pub github_api_url: Url,
    /// `BACKSPACE_API_KEY`; `None` turns the HTTP API off.
    pub api_key: Option<SecretString>,
    pub rate_limit: RateLimit,
    /// Where setup saves the app's credentials; `None` keeps them in memory only.
    pub credentials_path: Option<PathBuf>,
    /// `BACKSPACE_WEBHOOK_BYTES_IN_FLIGHT`: webhook body bytes held at once, over all deliveries.
    pub webhook_bytes_in_flight: usize,
}

/// What webhook bodies may hold together unless `BACKSPACE_WEBHOOK_BYTES_IN_FLIGHT` says.
pub const DEFAULT_WEBHOOK_BYTES_IN_FLIGHT: usize = 64 << 20;

impl DoorsConfig {
    /// Defaults for a server at `public_url` talking to github.com.
    pub fn new(public_url: Url) -> Self {
        DoorsConfig {
            public_url,
            github_url: Url::parse("https://github.com").expect("a valid URL"),
            github_api_url: Url::parse("https://api.github.com").expect("a valid URL"),
            api_key: None,
            rate_limit: RateLimit::default(),
            credentials_path: None,
            webhook_bytes_in_flight: DEFAULT_WEBHOOK_BYTES_IN_FLIGHT,
        }
    }

    pub fn from_args(args: &ServeArgs) -> Self {
        DoorsConfig {
            public_url: args.public_url(),
            github_url: args.github_url.clone(),
            github_api_url: args.github_api_url.clone(),
            api_key: args.api_key.clone(),
            rate_limit: RateLimit {
                burst: args.api_burst,
                per_minute: args.api_rate_per_minute,
            },
            credentials_path: Some(args.credentials_path()),
            webhook_bytes_in_flight: usize::try_from(args.front_door.webhook_bytes_in_flight)
                .unwrap_or(usize::MAX),
        }
    }
}

/// The config and the state that goes with it.
#[derive(Debug)]
pub(crate) struct Doors {
    pub config: DoorsConfig,
    pub limiter: RateLimiter,
    /// One permit per webhook body byte held in memory.
    pub webhook_budget: Arc<Semaphore>,
}

impl Doors {
    pub fn new(config: DoorsConfig) -> Self {
        // A semaphore holds at most usize::MAX >> 3 permits.
        let budget = config.webhook_bytes_in_flight.min(Semaphore::MAX_PERMITS);
        Doors {
            limiter: RateLimiter::new(config.rate_limit),
            webhook_budget: Arc::new(Semaphore::new(budget)),
            config,
        }
    }
}
