//! What the doors beside the webhook need to know: where the server and GitHub are, the API key
//! and its rate limit, where setup saves credentials. Built from `ServeArgs` by `serve`, or by
//! hand in tests.

use std::path::PathBuf;

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
}

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
        }
    }
}

/// The config and the state that goes with it.
#[derive(Debug)]
pub(crate) struct Doors {
    pub config: DoorsConfig,
    pub limiter: RateLimiter,
}

impl Doors {
    pub fn new(config: DoorsConfig) -> Self {
        Doors {
            limiter: RateLimiter::new(config.rate_limit),
            config,
        }
    }
}
