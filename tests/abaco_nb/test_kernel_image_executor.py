"""``AbacoExecutor()`` with no image, in a kernel with numpy 2.x, scipy and pandas (issue 11): the
seed's examples exactly as written, arrays and frames in and out, on both runtimes; a module the image
lacks named before anything runs; and a kernel on a second CPython version getting its own interpreter
in its image."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import numpy as np
import pandas as pd
import pytest
import scipy.linalg

from abaco_nb import MissingModuleError
from abaco_nb import kernel_image as ki
from abaco_nb.client import Client
from abaco_nb.executor import AbacoExecutor
from tests import second_python as pythons
from tests.serve import Served, start_serve

cloudpickle.register_pickle_by_value(sys.modules[__name__])
REPO = Path(__file__).resolve().parents[2]


def g(std_dev, size):  # the seed's function, verbatim
    A = np.random.normal(0, std_dev, (size, size))
    B = np.random.normal(0, std_dev, (size, size))
    C = np.dot(A, B)
    return C[0]


def solve(a, b):
    return scipy.linalg.solve(a, b)


def describe(frame):
    return frame.describe()


def versions():
    import sys

    return sys.version.split()[0], np.__version__, pd.__version__, scipy.__version__


def imports_inside(x):
    import pandas  # invisible in the pickle: found missing only when it runs

    return pandas.Series([x]).sum()


def seed_examples(ex: AbacoExecutor) -> None:
    """The seed's numpy examples as written, plus arrays and a DataFrame as arguments."""
    arsp = ex.submit(g, 100, 4096)
    (row,) = arsp.result()
    assert isinstance(row, np.ndarray) and row.shape == (4096,)
    arsp = ex.map(g, [[100, 1024] for i in range(8)])
    for a in arsp:
        assert a.result()[0].shape == (1024,)
    a, b = np.random.rand(5, 5) + 5 * np.eye(5), np.random.rand(5)
    (x,) = ex.submit(solve, a, b).result()
    np.testing.assert_allclose(a @ x, b)
    frame = pd.DataFrame({"u": np.arange(10.0), "v": np.arange(10.0) ** 2})
    (summary,) = ex.submit(describe, frame).result()
    pd.testing.assert_frame_equal(summary, frame.describe())


# -- Docker -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dserved(kernel_image: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    s = start_serve(tmp_path_factory.mktemp("kernel-image-docker"), runtime="docker")
    yield s
    s.stop()


@pytest.fixture
def dclient(dserved: Served) -> Client:
    return Client(dserved.url, dserved.token)


@pytest.mark.docker
def test_seed_examples_with_no_image_on_docker(dclient: Client, kernel_image: dict) -> None:
    ex = AbacoExecutor(dclient)
    try:
        assert ex.image == kernel_image["ref"] and ex.image.startswith("abaco-nb/kernel:")
        seed_examples(ex)
        remote = ex.submit(versions).result()[0]
        assert remote == versions()  # the kernel's very interpreter and packages
    finally:
        ex.delete()


@pytest.mark.docker
def test_a_second_executor_builds_nothing(kernel_image: dict) -> None:
    again = ki.build()  # the whole path a new kernel takes, past the in-process memo
    assert again is not None and not again["built"] and again["ref"] == kernel_image["ref"]


@pytest.mark.docker
def test_a_missing_module_is_named_before_the_call_runs(dclient: Client) -> None:
    ex = AbacoExecutor(dclient, packages=["numpy"], progress=False)
    try:
        assert ex.image_build is not None and "pandas" not in " ".join(ex.image_build["packages"])
        assert ex.submit(g, 1, 4).result()[0].shape == (4,)
        sent = len(ex.client.executions(ex.actor_id)["executions"])
        with pytest.raises(MissingModuleError, match=r"'pandas'.*packages=\[") as info:
            ex.submit(describe, pd.DataFrame({"u": [1.0]}))
        assert info.value.name == "pandas"
        with pytest.raises(MissingModuleError, match=r"'scipy'"):
            ex.map(solve, [[np.eye(2), np.ones(2)]])
        assert len(ex.client.executions(ex.actor_id)["executions"]) == sent  # nothing was sent
        # a module imported inside the function only shows when it runs: the same clear error
        with pytest.raises(MissingModuleError, match=r"no module 'pandas'.*packages=") as info:
            ex.submit(imports_inside, 1).result()
        assert info.value.name == "pandas"
    finally:
        ex.delete()


# -- the process runtime ----------------------------------------------------------------------------


def test_seed_examples_with_no_image_on_the_process_runtime(served: Served) -> None:
    ex = AbacoExecutor(Client(served.url, served.token))
    try:
        seed_examples(ex)
    finally:
        ex.delete()


def test_without_a_kernel_image_the_executor_uses_py3_func(served: Served, monkeypatch) -> None:
    monkeypatch.setenv(ki.ENV_SWITCH, "0")
    client = Client(served.url, served.token)
    ex = AbacoExecutor(client, progress=False)
    try:
        assert ex.image.startswith("abaco-nb/py3-func:") and ex.image_modules is None
        assert ex.submit(g, 1, 3).result()[0].shape == (3,)  # the service's Python has numpy here
    finally:
        ex.delete()
    with pytest.raises(ki.KernelImageError, match="packages=.*needs a kernel image"):
        AbacoExecutor(client, packages=["numpy"])


def test_no_docker_engine_means_no_kernel_image(monkeypatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    assert ki.build(["numpy"]) is None
    assert not ki.is_local("https://tacc.tapis.io") and ki.is_local("http://127.0.0.1:8888/abaco")


# -- a kernel on a second CPython version ----------------------------------------------------------

SECOND_KERNEL = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np
    from abaco_nb import Client
    from abaco_nb.executor import AbacoExecutor, VersionMismatchError

    def g(std_dev, size):
        A = np.random.normal(0, std_dev, (size, size))
        B = np.random.normal(0, std_dev, (size, size))
        return np.dot(A, B)[0]

    def where():
        import sys
        return sys.version.split()[0], sys.executable

    client = Client(os.environ["URL"], os.environ["TOKEN"])
    ex = AbacoExecutor(client, progress=False)
    try:
        out = {"image": ex.image, "where": ex.submit(where).result()[0],
               "shape": list(ex.submit(g, 100, 256).result()[0].shape),
               "map": [r.result()[0].shape[0] for r in ex.map(g, [[100, 64] for i in range(4)])]}
    finally:
        ex.delete()
    try:
        AbacoExecutor(client, image=os.environ["OTHER_IMAGE"])
        out["guard"] = "not refused"
    except VersionMismatchError as exc:
        out["guard"] = str(exc)
    out["kernel"] = [sys.version.split()[0], os.path.realpath(sys.executable)]
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def second_python() -> str:
    found = pythons.find()
    if found is None:
        pytest.skip(f"no second CPython ({', '.join(pythons.MINORS)}) on PATH or under pyenv")
    minor, interpreter = found
    if not pythons.ready(minor):
        message = f"Python {minor} ({interpreter}) has no test venv: run scripts/setup.d/30-second-python.sh"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return str(pythons.venv_python(minor))


@pytest.mark.docker
def test_a_kernel_on_another_python_gets_its_own_interpreter(
    second_python: str, dserved: Served, kernel_image: dict, tmp_path: Path
) -> None:
    script = tmp_path / "kernel.py"
    script.write_text(SECOND_KERNEL)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "URL": dserved.url,
        "TOKEN": dserved.token,
        "OTHER_IMAGE": kernel_image["ref"],  # this environment's image: another Python minor version
    }
    proc = subprocess.run(
        [second_python, str(script)], capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["image"].startswith(f"abaco-nb/kernel:{out['kernel'][0].rsplit('.', 1)[0]}-")
    assert out["where"] == out["kernel"]  # same version, same path: the kernel's own interpreter
    assert out["shape"] == [256] and out["map"] == [64] * 4
    assert "cannot run functions pickled by this kernel" in out["guard"]


# -- by hand: %abaco image ---------------------------------------------------------------------------


@pytest.mark.docker
def test_the_image_magic_builds_what_the_executor_uses(ip, kernel_image: dict) -> None:
    from IPython.core.error import UsageError

    notice = ip.run_line_magic("abaco", "image")
    assert str(notice).startswith(f"{kernel_image['ref']}: up to date; Python ")
    with pytest.raises(UsageError, match="'no-such-dist-xyz' is not installed"):
        ip.run_line_magic("abaco", "image --packages no-such-dist-xyz")
