#!/usr/bin/env bash
# The swarm runtime's tests (tests/server_ext/test_swarm.py) run two private dockerd in their own
# namespaces (tests/swarm_cluster.py) and a local registry: Debian's docker-registry package. Its
# systemd unit is not wanted (the tests start `docker-registry serve` with their own config on
# 127.0.0.2 inside a private network namespace): where apt just started it on :5000, stop it again.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib.sh
fresh=0
dpkg -s docker-registry >/dev/null 2>&1 || fresh=1
ensure_system_packages docker-registry iproute2 util-linux
if [ "$fresh" = 1 ] && command -v systemctl >/dev/null && systemctl is-active -q docker-registry 2>/dev/null; then
  systemctl disable --now docker-registry || true
fi
