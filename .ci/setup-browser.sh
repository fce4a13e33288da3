#!/usr/bin/env bash
# The course desk's browser tests (tests/test_web_browser.py) and `make screenshots` drive
# Debian's Chromium through Playwright, pointed at /usr/bin/chromium (Playwright never
# downloads a browser here). This installs Chromium when it is missing. Without it the
# browser tests are skipped with the reason, so a failed install is reported, not fatal.
set -uo pipefail

if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
# (fonts-noto-color-emoji: the bot's replies use emoji, e.g. a battle's 🅰️ and 🅱️ sides.)
if [ "$(id -u)" -ne 0 ]; then
  echo "setup-browser: chromium is missing and this is not root; the browser tests will be skipped" >&2
  exit 0
fi
echo "setup-browser: installing Debian's chromium"
export DEBIAN_FRONTEND=noninteractive
if apt-get update -qq && apt-get install -y -qq chromium fonts-noto-color-emoji >/dev/null; then
  chromium --version || true
else
  echo "setup-browser: could not install chromium; the browser tests will be skipped" >&2
fi
exit 0
