#!/usr/bin/env bash
# The whole test suite on a fresh machine: starts a throwaway PostgreSQL (installing Debian's
# package if needed), builds the sandbox test image (no registry needed, reused once built),
# installs Debian's chromium for the browser test and stunnel4 for the Docker-over-TLS test, then
# runs cargo test.
# Extra arguments go to cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."

BACKSPACE_TEST_POSTGRES_URL="$(scripts/test-postgres.sh)"
export BACKSPACE_TEST_POSTGRES_URL
echo "postgres for tests: $BACKSPACE_TEST_POSTGRES_URL" >&2

# The sandbox test image (Debian via debootstrap, loaded with docker import; no registry).
scripts/build-test-image.sh

# Headless Chromium for the run page's browser test (Debian's package).
scripts/install-chromium.sh

# stunnel for the Docker-over-TLS test (a TLS endpoint demanding client certificates).
scripts/install-debian-package.sh stunnel4 stunnel4

cargo test "$@"
