#!/usr/bin/env bash
# Installs Debian's `chromium` for the run page's browser test (tests/doors.rs), once: a machine
# that already has it is left alone. Needs root or sudo, and apt.
set -euo pipefail
exec "$(dirname "$0")/install-debian-package.sh" chromium chromium
