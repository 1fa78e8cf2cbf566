#!/usr/bin/env bash
# Directory tests (tests/auth/test_directory.py, test_ldap_app.py, tests/e2e/test_ldap_e2e.py): the tests start
# their own OpenLDAP slapd (tests/ldapserver.py) on free loopback ports. The preseed keeps the package from
# creating and starting a system directory on port 389.
set -euo pipefail
if [ "${SKIP_APT:-0}" != 1 ]; then
  missing=()
  for p in slapd ldap-utils; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo 'slapd slapd/no_configuration boolean true' | debconf-set-selections
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/tmp/moorage-ldap-apt.log 2>&1 \
      || { apt-get -o DPkg::Lock::Timeout=600 update -qq && apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
             --no-install-recommends "${missing[@]}" >/tmp/moorage-ldap-apt.log 2>&1; } \
      || { tail -20 /tmp/moorage-ldap-apt.log >&2; exit 1; }
  fi
fi
echo "slapd $(dpkg-query -W -f='${Version}' slapd)"
