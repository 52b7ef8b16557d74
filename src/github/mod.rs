//! The GitHub App client: app JWT, installation tokens, the permission gate, and the REST calls a
//! run needs, with retries and pacing.
