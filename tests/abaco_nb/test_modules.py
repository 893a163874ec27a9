"""Which modules a pickled call needs (pure: no service)."""

from __future__ import annotations

import os.path
import sys

import cloudpickle
import numpy as np
import pandas as pd
import scipy.linalg as sl

from abaco_nb import modules

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # as a notebook's functions: by value


def uses_numpy_global(n):
    return np.ones(n)


def uses_pandas_global(x):
    return pd.Series(x)


def uses_a_submodule(a):
    return sl.inv(a)


def uses_only_the_stdlib(p):
    return os.path.join(p, "x")


def test_globals_and_references_name_their_modules() -> None:
    assert "numpy" in modules.function_modules(uses_numpy_global)
    assert "pandas" in modules.function_modules(uses_pandas_global)
    assert "scipy" in modules.function_modules(uses_a_submodule)
    assert "scipy" in modules.function_modules(sl.inv)  # pickled by reference: a STACK_GLOBAL
    assert modules.missing(modules.function_modules(uses_only_the_stdlib), []) == []


def test_arguments_name_the_modules_of_their_types() -> None:
    calls = [((np.ones(2), 3), {"frame": pd.DataFrame()})]
    assert modules.argument_modules(calls) == {"numpy", "pandas"}


class Local:
    """A class of this module, which travels by value (registered above)."""


def test_arguments_of_a_module_sent_by_value_need_nothing() -> None:
    assert modules.argument_modules([((Local(),), {})]) == set()


def test_missing_ignores_what_every_image_has() -> None:
    assert modules.missing({"numpy", "os", "cloudpickle", "abaco_nb", "pandas"}, ["numpy"]) == ["pandas"]


def test_the_advice_names_the_distribution_or_how_to_send_the_module() -> None:
    assert "packages=[..., 'PyYAML']" in modules.how_to_add("yaml")
    assert "register_pickle_by_value(mylocalmod)" in modules.how_to_add("mylocalmod")


def test_a_function_of_a_module_the_image_lacks_names_that_module() -> None:
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    try:
        assert sys.modules[__name__].__name__.split(".")[0] in modules.pickled_modules(
            cloudpickle.dumps(uses_only_the_stdlib)
        )
    finally:
        cloudpickle.register_pickle_by_value(sys.modules[__name__])


def test_a_protocol_2_pickle_with_globals_is_read_too() -> None:
    data = cloudpickle.dumps(np.float64(1.0), protocol=2)
    assert "numpy" in modules.pickled_modules(data)
