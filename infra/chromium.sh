#!/usr/bin/env bash
# Headless Chromium and its WebDriver, for the live feed's browser test (EventSource in a real
# browser: tests/test_live_browser.py). Debian packages; installed when missing.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

command -v chromium >/dev/null && command -v chromedriver >/dev/null || ensure_packages chromium chromium-driver
