#!/usr/bin/env bash
# Debian's chromium for the real-browser test: installed when missing (as root, or with sudo when available).
# When it truly cannot be installed, stop with one line that says what to run.
set -uo pipefail
command -v chromium >/dev/null 2>&1 && exit 0
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "make test: the browser test needs Debian's chromium; run 'sudo apt-get install -y chromium' once, then 'make test' again" >&2
    exit 1
  fi
fi
echo "installing Debian's chromium for the browser test (once)..." >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null 2>&1 || true
if ! $SUDO apt-get install -y -qq chromium >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
  echo "make test: could not install chromium; run 'apt-get install -y chromium' (as root), then 'make test' again" >&2
  exit 1
fi
