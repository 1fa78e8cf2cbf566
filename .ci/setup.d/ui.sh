#!/usr/bin/env bash
# Web UI tests (tests/ui/test_browser.py): Playwright drives Debian's chromium headless (Playwright
# cannot download its own browsers here); the oras CLI they push referrers with comes with oras's tests.
set -euo pipefail
if [ "${SKIP_APT:-0}" != 1 ] && ! dpkg-query -W -f='${Status}' chromium 2>/dev/null | grep -q 'install ok installed'; then
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends chromium fonts-dejavu-core >/tmp/moorage-ui-apt.log 2>&1 \
    || { apt-get -o DPkg::Lock::Timeout=600 update -qq && apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
           --no-install-recommends chromium fonts-dejavu-core >/tmp/moorage-ui-apt.log 2>&1; } \
    || { tail -20 /tmp/moorage-ui-apt.log >&2; exit 1; }
fi
echo "chromium: $(/usr/bin/chromium --version 2>/dev/null || echo missing)"
