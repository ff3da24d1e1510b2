#!/bin/sh
# HEALTHCHECK of the Switchboard image. It finds the role from the container's command line:
#   switchboard-gateway: GET https://127.0.0.1:<port>/health/ready must answer 2xx (certificate not checked);
#   auth, placement, session-store: their gRPC port accepts a TCP connection (no gRPC health client in the image);
#   anything else (agent, admin commands, `switchboard up`): the container running is enough.
# The port is the one of SWITCHBOARD_LISTEN when set, else the role's default.
set -eu
cmd=$(tr '\0' ' ' < /proc/1/cmdline)
port_of() { case "${SWITCHBOARD_LISTEN:-}" in *:*) echo "${SWITCHBOARD_LISTEN##*:}" ;; *) echo "$1" ;; esac; }
case "$cmd" in
  *switchboard-gateway*) exec curl -fsk -o /dev/null --max-time 3 "https://127.0.0.1:$(port_of 8443)/health/ready" ;;
  *switchboard-auth*) port=$(port_of 7001) ;;
  *switchboard-placement*) port=$(port_of 7002) ;;
  *switchboard-session-store*) port=$(port_of 7003) ;;
  *) exit 0 ;;
esac
exec bash -c "exec 3<>/dev/tcp/127.0.0.1/$port"
