#!/usr/bin/env bash
# Installs Debian's `chromium` for the run page's browser test (tests/doors.rs), once: a machine
# that already has it is left alone. Needs root or sudo, and apt.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
command -v chromium >/dev/null
