#!/usr/bin/env bash
# A second CPython (3.12, 3.10 or 3.13: on PATH or under pyenv) with a small venv in .pythons/python3.X,
# for the test of a kernel on another Python version (tests/abaco_nb/test_kernel_image_executor.py).
# Idempotent; nothing to do on a machine with only one CPython (that test then skips, saying so).
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/python tests/second_python.py
