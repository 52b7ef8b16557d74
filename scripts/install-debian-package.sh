#!/usr/bin/env bash
# Installs Debian package PACKAGE when COMMAND is not on PATH, for what a test needs from the
# system (chromium for the browser test, stunnel4 for the Docker-over-TLS test). A machine that
# already has the command is left alone. Needs root or sudo, and apt.
# Usage: scripts/install-debian-package.sh COMMAND PACKAGE
set -euo pipefail
command_name="$1"
package="$2"
if command -v "$command_name" >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "$package" >/dev/null
command -v "$command_name" >/dev/null
