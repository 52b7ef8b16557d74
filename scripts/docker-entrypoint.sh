#!/bin/sh
# Runs the command as the unprivileged `backspace` user. Started as root (the default, and what
# Fly.io does), it first hands /data to that user: a freshly mounted volume belongs to root.
set -eu
if [ "$(id -u)" = 0 ]; then
  chown backspace:backspace /data 2>/dev/null || true
  # The Docker socket, when mounted, is reachable by its group: join it.
  if [ -S /var/run/docker.sock ]; then
    gid="$(stat -c %g /var/run/docker.sock)"
    exec setpriv --reuid=backspace --regid=backspace --groups="$gid" -- "$@"
  fi
  exec setpriv --reuid=backspace --regid=backspace --init-groups -- "$@"
fi
exec "$@"
