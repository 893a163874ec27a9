"""The process runtime's boundary (``runtimes/sandbox.py``): a uid and a directory per execution, on
the zygote's fork path as on Popen's. Real processes; needs root (the only case that can switch users)
and a Python other users can run (this one may live under a private home, such as /root/.pyenv)."""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from server_ext.service.runtimes.process import ProcessRuntime
from server_ext.service.runtimes.sandbox import ExecUser, Sandbox, UidPool, cannot_run_python
from server_ext.service.runtimes.zygote import Zygote
from tests.server_ext.service.test_zygote import _start, _wait, _wait_for

BASE = 1_900_000_000
REPO = Path(__file__).resolve().parents[3]


PROBE = ExecUser(BASE + 1, BASE + 1)


def _zygote_python() -> tuple[str | None, str]:
    """An interpreter an execution's uid can run for the zygote: this one, or (when this one lives under
    a private home such as /root/.pyenv) the system's of the same minor version, which then finds the
    project and its packages through PYTHONPATH. (None, why) when there is none."""
    if os.geteuid() != 0:
        return None, "not root: the service cannot switch users"
    why = cannot_run_python(PROBE)
    if why is None:
        return sys.executable, ""
    minor = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (f"/usr/bin/{minor}", f"/usr/local/bin/{minor}"):
        if os.path.exists(candidate) and cannot_run_python(PROBE, candidate) is None:
            return candidate, ""
    return None, why


def _skip_unless_isolating() -> str:
    python, why = _zygote_python()
    if python is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the boundary: {why}")
        pytest.skip(why)
    return python


def test_the_uid_pool_never_hands_out_a_uid_in_use() -> None:
    pool = UidPool(BASE, 3)
    users = [pool.acquire() for _ in range(3)]
    assert len({u.uid for u in users}) == 3 and all(
        BASE <= u.uid < BASE + 3 and u.gid == u.uid for u in users
    )
    with pytest.raises(OSError, match="in use"):
        pool.acquire()
    pool.release(users[1])
    assert pool.acquire() == users[1]
    with pytest.raises(ValueError):
        UidPool(0, 10)  # root's and the system's uids are never execution uids


def test_a_sandbox_directory_is_private_and_removed(tmp_path: Path) -> None:
    box = Sandbox(str(tmp_path))
    assert stat.S_IMODE(os.stat(box.root).st_mode) == 0o711
    path = box.make("E1", None)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o700
    (tmp_path / "secret").write_text("x")
    os.symlink(tmp_path / "secret", os.path.join(path, "link"))  # an execution's trap for rmtree
    box.remove("E1")
    box.settle()  # removal runs in the background, off the worker's path
    assert not os.path.exists(path) and (tmp_path / "secret").read_text() == "x"
    box.close()
    assert not os.path.exists(box.root)


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ProcessRuntime]:
    python = _skip_unless_isolating()
    if python != sys.executable:  # the system's interpreter, with the project and the venv's packages
        paths = [str(REPO), *(p for p in sys.path if p.endswith("site-packages"))]
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
    rt = ProcessRuntime(str(tmp_path / "proc"), uids=UidPool(BASE, 1000))
    assert rt.zygote is not None
    rt.zygote.close()
    rt.zygote = Zygote(rt.work_dir, {**rt._pass_through(), "HOME": rt.sandbox.root}, python=python)
    yield rt
    rt.close()


def test_a_zygote_child_runs_as_its_own_uid(isolated: ProcessRuntime, tmp_path: Path) -> None:
    secret = tmp_path / "service-only"
    secret.write_text("service secret")
    os.chmod(secret, 0o600)

    def report() -> None:
        import json
        import os

        try:
            open(str(secret)).read()
            read = "read"
        except PermissionError:
            read = "denied"
        print(
            json.dumps(
                {
                    "uid": os.getuid(),
                    "euid": os.geteuid(),
                    "groups": os.getgroups(),
                    "cwd": os.getcwd(),
                    "ppid": os.getppid(),
                    "home": os.environ["HOME"],
                    "secret": read,
                }
            ),
            flush=True,
        )
        os._exit(0)

    runs = [_start(isolated, tmp_path, report) for _ in range(2)]
    assert isolated.zygote is not None
    seen = []
    for run in runs:
        assert _wait(isolated, run).exit_code == 0, isolated.logs(run)
        _wait_for(lambda r=run: '"uid"' in isolated.logs(r))  # type: ignore[misc]
        seen.append(json.loads(isolated.logs(run).splitlines()[-1]))
    for info, run in zip(seen, runs, strict=True):
        assert info["uid"] == info["euid"] >= BASE and info["groups"] in ([], [info["uid"]])
        assert info["cwd"] == info["home"] == isolated.sandbox.path(run.execution_id)
        assert info["secret"] == "denied"
    assert seen[0]["uid"] != seen[1]["uid"]
    assert all(info["ppid"] == isolated.zygote.pid for info in seen)  # forked by the zygote, not Popen
    for run in runs:
        isolated.remove(run)
        isolated.sandbox.settle()
        assert not os.path.exists(isolated.sandbox.path(run.execution_id))
