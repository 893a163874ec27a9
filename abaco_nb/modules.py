"""Which modules a call needs, so a module missing from the image is named before anything runs.

A cloudpickled function names its modules: functions and classes pickled by reference are
``GLOBAL``/``STACK_GLOBAL`` opcodes carrying their module, and a module the function uses as a global
(``np`` in ``np.dot``) is a call of cloudpickle's ``subimport("numpy")``. Reading the opcodes
(``pickletools``) finds both without unpickling anything. Arguments are checked by the type of each one
(an ``ndarray`` needs ``numpy``), which costs nothing per call.
"""

from __future__ import annotations

import pickletools
import sys
import weakref
from collections.abc import Iterable
from typing import Any

# Always importable in the executor image: the standard library, the runner and its pickler.
ALWAYS = frozenset({"builtins", "__main__", "cloudpickle", "abaco_nb", "_abaco_nb"}) | frozenset(
    getattr(sys, "stdlib_module_names", ())
)
_SUBIMPORTS = {"subimport", "dynamic_subimport"}
_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING"}
_NO_PUSH = {"MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT", "FRAME", "PROTO", "STOP", "POP", "POP_MARK"}
_fn_cache: weakref.WeakKeyDictionary[Any, frozenset[str]] = weakref.WeakKeyDictionary()


def pickled_modules(data: bytes) -> set[str]:
    """Top-level names of the modules a pickle refers to (by reference or through ``subimport``)."""
    found: set[str] = set()
    memo: dict[int, Any] = {}
    pushed: list[Any] = []  # what each stack-pushing opcode pushed (a str, or None)
    want_subimport = False
    for op, arg, _ in pickletools.genops(data):
        name = op.name
        if name in _STRING_OPS:
            value: Any = arg
        elif name in ("BINGET", "LONG_BINGET", "GET"):
            value = memo.get(int(arg or 0))
        elif name == "MEMOIZE":
            memo[len(memo)] = pushed[-1] if pushed else None
            continue
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[int(arg or 0)] = pushed[-1] if pushed else None
            continue
        elif name == "GLOBAL":
            module, _, g_attr = str(arg).partition(" ")
            found.add(module.split(".", 1)[0])
            want_subimport = want_subimport or g_attr in _SUBIMPORTS
            value = None
        elif name == "STACK_GLOBAL":
            top, attr = (pushed[-2], pushed[-1]) if len(pushed) >= 2 else (None, None)
            if isinstance(top, str):
                found.add(top.split(".", 1)[0])
            want_subimport = want_subimport or attr in _SUBIMPORTS
            value = None
        elif name in _NO_PUSH:
            continue
        else:
            value = None
        if want_subimport and name != "STACK_GLOBAL" and name != "GLOBAL":
            if isinstance(value, str):  # subimport's argument: the module a global names
                found.add(value.split(".", 1)[0])
            want_subimport = False
        pushed.append(value)
        if len(pushed) > 64:
            del pushed[:32]
    return found


def function_modules(fn: Any) -> frozenset[str]:
    """The modules ``fn`` needs (cached per function object)."""
    try:
        return _fn_cache[fn]
    except (KeyError, TypeError):
        pass
    import cloudpickle

    try:
        modules = frozenset(pickled_modules(cloudpickle.dumps(fn)))
    except Exception:  # pickling fails later with its own message
        modules = frozenset()
    try:
        _fn_cache[fn] = modules
    except TypeError:  # not weak-referenceable (a builtin)
        pass
    return modules


def argument_modules(calls: Iterable[tuple[tuple[Any, ...], dict[str, Any]]]) -> set[str]:
    """Modules of the arguments' types (one level: ``f(array)``, not arrays inside a list)."""
    found = set()
    seen: set[str] = set()
    for args, kwargs in calls:
        for value in (*args, *kwargs.values()):
            module = type(value).__module__
            if module not in seen:
                seen.add(module)
                if module != "builtins" and not _by_value(module):
                    found.add(module.split(".", 1)[0])
    return found


def _by_value(module: str) -> bool:
    """Whether cloudpickle sends this module's classes by value (``register_pickle_by_value``)."""
    try:
        from cloudpickle import cloudpickle as cp

        mod = sys.modules.get(module)
        return mod is not None and bool(cp._is_registered_pickle_by_value(mod))
    except Exception:
        return False


def missing(needed: Iterable[str], available: Iterable[str]) -> list[str]:
    have = set(available) | ALWAYS
    return sorted(m for m in set(needed) if m not in have and not m.startswith("_"))


def how_to_add(module: str, image: str = "") -> str:
    """The advice of a :class:`MissingModuleError`: which distribution to add, or how to send a module
    that no installed distribution provides."""
    import importlib.metadata

    where = f"image {image}" if image else "the executor's image"
    dists = importlib.metadata.packages_distributions().get(module) or []
    if dists:
        names = ", ".join(repr(d) for d in dists)
        return (
            f"{where} has no module {module!r}. Add it: AbacoExecutor(packages=[..., {names}]) "
            f"(or `abaco-nb images build --from-kernel --packages ... {dists[0]}`), or AbacoExecutor() "
            "with no image, which carries every distribution of this kernel."
        )
    source = getattr(sys.modules.get(module), "__file__", None)
    origin = f" (it is {source})" if source else ""
    return (
        f"{where} has no module {module!r}, and no installed distribution of this kernel provides it"
        f"{origin}. Install it in the kernel (`%pip install ...`; editable installs are not carried), "
        f"or send it with the function: cloudpickle.register_pickle_by_value({module})."
    )
