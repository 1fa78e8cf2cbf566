#!/usr/bin/env bash
# Deployment tests (tests/deploy, tests/e2e/test_{tls,proxy,insecure,dockerfile}_*.py):
# - `ip6-localhost` must resolve to ::1: docker verifies TLS only for names outside 127.0.0.0/8;
# - nginx (TLS-terminating proxy) and debootstrap (the Dockerfile test's offline base image).
set -euo pipefail
grep -Eq '^::1\s.*\bip6-localhost\b' /etc/hosts || echo '::1 ip6-localhost ip6-loopback' >>/etc/hosts
if [ "${SKIP_APT:-0}" != 1 ]; then
  missing=()
  for p in nginx debootstrap; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    made_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_policy=1
    fi
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/tmp/moorage-deploy-apt.log 2>&1 \
      || { tail -20 /tmp/moorage-deploy-apt.log >&2; exit 1; }
    if [ $made_policy = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
  fi
fi
echo "ip6-localhost -> $(getent hosts ip6-localhost | awk '{print $1}'); nginx $(nginx -v 2>&1 | cut -d/ -f2); debootstrap $(dpkg-query -W -f='${Version}' debootstrap)"
