#!/usr/bin/env bash
# Install headless Chromium for the browser tests when no Chromium or Google Chrome is installed, so that
# those tests run instead of failing (tests/conftest.py, fixture `chromium`). Debian or Ubuntu, as root or
# with sudo; GitHub's Ubuntu runners already have Google Chrome, and then this does nothing.
set -euo pipefail
for name in chromium chromium-browser google-chrome google-chrome-stable; do
  if command -v "$name" >/dev/null 2>&1; then
    echo "headless browser for the site tests: $(command -v "$name")"
    exit 0
  fi
done
if ! command -v apt-get >/dev/null 2>&1; then
  echo "no Chromium found and no apt-get to install it: install Chromium or Google Chrome, or set CHROMIUM" >&2
  exit 1
fi
as_root=()
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "installing Chromium needs root: run this script as root or install sudo" >&2
    exit 1
  fi
  as_root=(sudo)
fi
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  chromium fonts-liberation fonts-dejavu-core
browser=$(command -v chromium) || { echo "apt-get installed no chromium command" >&2; exit 1; }
echo "headless browser for the site tests: $browser"
