"""Fixtures of the kernel-side tests: a real ``abaco-nb serve`` per test module, and IPython's shell
with ``%load_ext abaco_nb`` connected to it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from IPython import get_ipython
from IPython.testing.globalipapp import start_ipython

from tests.serve import Served, start_serve


@pytest.fixture(scope="module")
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    s = start_serve(tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1]))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def ip(served: Served):
    """The one global IPython shell (``start_ipython()`` returns it only on its first call)."""
    shell = start_ipython() or get_ipython()
    shell.run_line_magic("load_ext", "abaco_nb")
    shell.run_line_magic("abaco", f"connect {served.url} --token {served.token}")
    return shell
