#!/bin/sh
# Started as root (the default): hand /var/lib/registry to the moorage user (a fresh bind mount is
# root-owned), then run the command as that user. Started with --user: run the command as is.
set -e
if [ "$(id -u)" = 0 ]; then
    find /var/lib/registry \! -user moorage -exec chown moorage:moorage '{}' +
    exec setpriv --reuid=moorage --regid=moorage --init-groups -- "$@"
fi
exec "$@"
