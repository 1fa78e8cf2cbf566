#!/usr/bin/env bash
# Web UI tests (tests/e2e/test_ui_browser.py): Playwright (PyPI, in the test extras) drives Debian's
# chromium headless, since Playwright cannot download its own browsers here; DejaVu for legible screenshots.
set -euo pipefail
if [ "${SKIP_APT:-0}" != 1 ] && ! dpkg-query -W -f='${Status}' chromium 2>/dev/null | grep -q 'install ok installed'; then
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends chromium fonts-dejavu-core >/tmp/moorage-ui-apt.log 2>&1 \
    || { apt-get -o DPkg::Lock::Timeout=600 update -qq && apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
           --no-install-recommends chromium fonts-dejavu-core >/tmp/moorage-ui-apt.log 2>&1; } \
    || { tail -20 /tmp/moorage-ui-apt.log >&2; exit 1; }
fi
echo "chromium: $(/usr/bin/chromium --version 2>/dev/null || echo missing)"
