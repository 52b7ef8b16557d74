# The Backspace bot: `backspace serve` on Debian trixie-slim. Two stages: the release binary is
# built in the Rust image, and only it (with git and CA certificates, which the host-side git
# needs) goes into the runtime image. The sandbox image the agent works in is another image
# (sandbox/Dockerfile, BACKSPACE_SANDBOX_IMAGE); this one never runs agent code.
#
#   docker build -t backspace .
#   docker run -p 3000:3000 -v backspace-data:/data -v /var/run/docker.sock:/var/run/docker.sock backspace

FROM rust:1-trixie AS build
WORKDIR /src
# Dependencies first, so that a source change does not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked --bin backspace \
    && rm -rf src
COPY src src
COPY migrations migrations
COPY app-manifest.json ./
# Newer mtimes than the stub's, so cargo rebuilds the crate itself.
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin backspace

FROM debian:trixie-slim
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="backspace" \
      org.opencontainers.image.description="GitHub App that turns /backspace comments into pull requests written by a sandboxed Claude agent" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="docker.io/library/debian:trixie-slim"
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates git tini \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --create-home --home-dir /home/backspace --shell /usr/sbin/nologin backspace \
    && mkdir -p /data && chown backspace:backspace /data
COPY --from=build /src/target/release/backspace /usr/local/bin/backspace
COPY scripts/docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENV PORT=3000 \
    DATABASE_URL=sqlite:///data/backspace.db \
    LOG_FORMAT=json
WORKDIR /data
EXPOSE 3000
VOLUME ["/data"]
# tini reaps the git processes' orphans and passes SIGTERM on: serve stops taking work, lets
# running jobs finish within their grace period, then releases them.
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/docker-entrypoint.sh"]
CMD ["backspace", "serve"]
