"""A second CPython for the kernel-image tests, found the way a user's machine has one.

Looked for, in order, for 3.12, 3.10 and 3.13 (whichever is not the test environment's own minor
version): ``python3.X`` on ``PATH``, then pyenv's versions directory (``$PYENV_ROOT`` or
``~/.pyenv/versions/3.X.*``), then ``/usr/bin`` and ``/usr/local/bin``. Its venv, ``.pythons/python3.X``,
holds only abaco_nb's run-time needs (the project's own cloudpickle version, requests, tqdm, docker)
and numpy; the repository itself comes on ``PYTHONPATH``, so the venv never holds a stale copy.

``python tests/second_python.py`` (run by ``scripts/setup.d/30-second-python.sh``) creates the venv.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MINORS = ("3.12", "3.10", "3.13")
NEEDS = ("requests", "tqdm", "docker", "numpy")


def _works(python: str, minor: str) -> bool:
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and out.stdout.strip() == minor


def find() -> tuple[str, str] | None:
    """``(minor, interpreter path)`` of a CPython other than this one, or None."""
    own = f"{sys.version_info[0]}.{sys.version_info[1]}"
    pyenv = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    for minor in MINORS:
        if minor == own:
            continue
        candidates = [shutil.which(f"python{minor}") or ""]
        candidates += sorted(glob.glob(f"{pyenv}/versions/{minor}.*/bin/python{minor}"), reverse=True)
        candidates += [f"/usr/bin/python{minor}", f"/usr/local/bin/python{minor}"]
        for python in candidates:
            if python and os.path.exists(python) and _works(python, minor):
                return minor, python
    return None


def venv_python(minor: str) -> Path:
    return REPO / ".pythons" / f"python{minor}" / "bin" / "python"


def _cloudpickle_version() -> str:
    import cloudpickle

    return str(cloudpickle.__version__)


def ready(minor: str) -> bool:
    """Whether the venv exists with what the tests import, at the project's cloudpickle version."""
    python = venv_python(minor)
    check = f"import cloudpickle, {', '.join(NEEDS)}; assert cloudpickle.__version__ == {_cloudpickle_version()!r}"
    return python.exists() and subprocess.run([str(python), "-c", check], capture_output=True).returncode == 0


def ensure() -> int:
    found = find()
    if found is None:
        print(f"second python: none of {', '.join(MINORS)} is installed; its tests will skip")
        return 0
    minor, python = found
    if ready(minor):
        print(f"second python: {venv_python(minor).parent.parent} ({python}) ok")
        return 0
    venv = venv_python(minor).parent.parent
    print(f"second python: creating {venv} from {python}")
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    pip = [str(venv_python(minor)), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([*pip, f"cloudpickle=={_cloudpickle_version()}", *NEEDS], check=True)
    return 0 if ready(minor) else 1


if __name__ == "__main__":
    sys.exit(ensure())
