#!/usr/bin/env bash
# Real Abaco clients, each in its own virtual environment: their pins clash with Jupyter's
# (agavepy 0.9.5 pins websocket-client==0.53.0; tapipy pins openapi_core==0.16.0 -> jsonschema<4.18).
# tests/clients/ drives them by subprocess. Idempotent: a venv whose client imports is left alone.
#   .clients/agavepy : agavepy==0.9.5 + the same cloudpickle as the project venv (AbacoExecutor pickles
#                      functions that our runner unpickles with the service's cloudpickle)
#   .clients/tapipy  : tapipy (latest)
set -euo pipefail
cd "$(dirname "$0")/../.."

PY="${CLIENTS_PYTHON:-python3}"
CLOUDPICKLE="$(.venv/bin/python -c 'import cloudpickle; print(cloudpickle.__version__)')"

ensure_client_venv() {
  local dir="$1" check="$2"
  shift 2
  if [ -x "$dir/bin/python" ] && "$dir/bin/python" -W ignore -c "$check" >/dev/null 2>&1; then
    echo "client venv $dir: ok"
    return 0
  fi
  echo "client venv $dir: installing $*"
  rm -rf "$dir"
  "$PY" -m venv "$dir"
  "$dir/bin/python" -m pip install -q --upgrade pip >/dev/null
  "$dir/bin/python" -m pip install -q "$@"
  "$dir/bin/python" -W ignore -c "$check"
}

ensure_client_venv .clients/agavepy \
  "import agavepy, cloudpickle; from agavepy.agave import Agave, load_resource; from agavepy.actors import AbacoExecutor; assert cloudpickle.__version__ == '$CLOUDPICKLE'" \
  agavepy==0.9.5 "cloudpickle==$CLOUDPICKLE"
ensure_client_venv .clients/tapipy \
  "import jwt; from tapipy.tapis import Tapis" \
  tapipy
