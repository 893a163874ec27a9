#!/usr/bin/env bash
# Enable the Jupyter server extension in the venv. A wheel install places
# etc/jupyter/jupyter_server_config.d/abaco_nb.json itself (pyproject data-files); an editable install
# (`pip install -e .`, what scripts/test does) does not install data files, so copy it to the same place.
set -euo pipefail
cd "$(dirname "$0")/../.."
dest=.venv/etc/jupyter/jupyter_server_config.d
src=jupyter-config/jupyter_server_config.d/abaco_nb.json
mkdir -p "$dest"
cmp -s "$src" "$dest/abaco_nb.json" || install -m 0644 "$src" "$dest/abaco_nb.json"
