#!/bin/sh
# Installs the XMPP servers the testkit starts (Debian packages). The
# packages' own services are not needed: the testkit runs its own instances.
set -eu
if command -v prosody >/dev/null 2>&1 && command -v erl >/dev/null 2>&1 \
    && [ -d /usr/lib/x86_64-linux-gnu/ejabberd-23.01 ]; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends prosody ejabberd
# Package post-install scripts may start system-wide instances on the
# standard ports; the tests do not use them.
service prosody stop >/dev/null 2>&1 || true
service ejabberd stop >/dev/null 2>&1 || true
