#!/usr/bin/env bash
# Installs Debian's `stunnel4` for the Docker-over-TLS test (tests/docker_tls.rs), once: it puts
# a TLS endpoint that demands a client certificate in front of the local engine's socket. A
# machine that already has it is left alone. Needs root or sudo, and apt.
set -euo pipefail
if command -v stunnel4 >/dev/null 2>&1 || command -v stunnel >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends stunnel4 >/dev/null
command -v stunnel4 >/dev/null
