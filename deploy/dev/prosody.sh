#!/usr/bin/env bash
# Starts a throwaway Prosody on loopback for trying pubsubd: users alice and bob on
# `localhost` (password `secret`; plaintext allowed, loopback only), and a component slot
# for `pubsub.localhost` with secret `change-me`. Data lives in a temporary directory that
# is removed when you stop the script with Ctrl-C.
#
#   deploy/dev/prosody.sh                                    # c2s on 5222, components on 5347
#   C2S_PORT=15222 COMPONENT_PORT=15347 deploy/dev/prosody.sh
#   USERS="alice bob carol" PASSWORD=secret SECRET=change-me deploy/dev/prosody.sh
set -euo pipefail

C2S_PORT=${C2S_PORT:-5222}
COMPONENT_PORT=${COMPONENT_PORT:-5347}
SECRET=${SECRET:-change-me}
USERS=${USERS:-alice bob}
PASSWORD=${PASSWORD:-secret}

# A port something already listens on would leave Prosody running without it, and
# pubsubd or the examples would then talk to that other server.
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for pair in "C2S_PORT:$C2S_PORT" "COMPONENT_PORT:$COMPONENT_PORT"; do
  var=${pair%%:*} port=${pair#*:}
  if port_taken "$port"; then
    echo "prosody.sh: port $port is already in use on 127.0.0.1; choose another with $var=<port>" >&2
    exit 1
  fi
done

if ! command -v prosody >/dev/null 2>&1; then
  echo "installing prosody (Debian package)..." >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q prosody >/dev/null
fi

dir=$(mktemp -d /tmp/pubsubd-dev-prosody.XXXXXX)
trap 'rm -rf "$dir"' EXIT
trap 'exit 130' INT TERM
mkdir -p "$dir/data"
cat > "$dir/prosody.cfg.lua" <<CFG
run_as_root = true
daemonize = false
pidfile = "$dir/prosody.pid"
data_path = "$dir/data"
log = { info = "*console" }
interfaces = { "127.0.0.1" }
c2s_ports = { $C2S_PORT }
c2s_interfaces = { "127.0.0.1" }
s2s_ports = {}
http_ports = {}
https_ports = {}
component_ports = { $COMPONENT_PORT }
component_interfaces = { "127.0.0.1" }
modules_enabled = { "roster"; "saslauth"; "disco"; "ping"; "register"; "posix"; "offline"; "presence" }
modules_disabled = { "s2s" }
allow_registration = true
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_plain"
VirtualHost "localhost"
Component "pubsub.localhost"
    component_secret = "$SECRET"
CFG
for user in $USERS; do
  prosodyctl --config "$dir/prosody.cfg.lua" register "$user" localhost "$PASSWORD" >/dev/null 2>&1 \
    || { echo "prosody.sh: could not create user $user@localhost" >&2; exit 1; }
done
users_list=$(printf '%s@localhost ' $USERS)
echo "Prosody: users ${users_list}(password $PASSWORD) at 127.0.0.1:$C2S_PORT, component pubsub.localhost (secret $SECRET) at 127.0.0.1:$COMPONENT_PORT" >&2
prosody --config "$dir/prosody.cfg.lua"
