"""What a kernel's Python has installed, as files an image can carry (issue 11, "the kernel's environment").

Run by the kernel's own interpreter (``abaco-nb images build --from-kernel``), so ``importlib.metadata``
sees exactly the kernel's distributions. Three questions, answered from the file system only (nothing
here imports the packages it describes, nor ``abaco_nb``, nor Docker):

* which distributions: all of them, or the ones asked for plus their dependency closure (the
  ``Requires-Dist`` of each, markers evaluated for this interpreter, extras left out);
* which files each one installed (its ``RECORD``, limited to its site directory: scripts in ``bin/`` and
  data elsewhere are not needed to import it);
* which files the interpreter itself needs: its executable, the standard library and ``lib-dynload``
  (tests, IDLE, Tk and static libraries trimmed), and the shared libraries ``ldd`` finds for them, at
  the same paths as on this machine, so the image runs the kernel's very interpreter.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.metadata as md
import json
import os
import re
import subprocess
import sys
import sysconfig
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

# Distributions never copied: abaco-nb's own runner goes into the image as files (DESIGN §1).
EXCLUDED = {"abaco-nb"}
# Always present: the executor pickles with it, so the image must carry the very same version.
REQUIRED = ("cloudpickle",)

# Parts of the standard library a function run does not need (and that are large or drag in X11/Tk).
_STDLIB_SKIP_DIRS = {
    "site-packages",
    "dist-packages",
    "test",
    "tests",
    "idlelib",
    "tkinter",
    "turtledemo",
    "ensurepip",
    "lib2to3",
    "__phello__",
}
_DYNLOAD_SKIP = re.compile(r"^(_tkinter|_test|xxlimited|_xxtestfuzz|_ctypes_test|xxsubtype)")
_LDD_LINE = re.compile(r"^\s*(\S+)(?:\s+=>\s+(\S+|not found))?\s*(?:\(0x[0-9a-f]+\))?\s*$")


class KernelEnvError(Exception):
    """The kernel's environment cannot be described as asked (an unknown package, no ldd)."""


def canonical(name: str) -> str:
    """PEP 503 name: ``Scikit_Learn`` and ``scikit-learn`` are one distribution."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Distribution:
    """One installed distribution and the files it brings, relative to its site directory."""

    name: str
    version: str
    site: str
    files: tuple[str, ...]
    modules: tuple[str, ...]  # top-level import names it provides
    editable: bool = False

    @property
    def key(self) -> str:
        return f"{canonical(self.name)}=={self.version}"

    def size(self) -> int:
        total = 0
        for rel in self.files:
            try:
                total += os.lstat(os.path.join(self.site, rel)).st_size
            except OSError:
                pass
        return total


@dataclass
class Interpreter:
    """The kernel's Python: where it lives and what identifies it."""

    executable: str  # real path of the binary (a venv's python is a symlink to it)
    prefix: str
    minor: str
    version: str
    stdlib: list[str] = field(default_factory=list)

    def fingerprint(self) -> str:
        """Changes when the interpreter is rebuilt or replaced (not when packages change)."""
        h = hashlib.sha256(f"{self.executable}\0{self.version}".encode())
        for path in [self.executable, *self.stdlib]:
            try:
                st = os.stat(path)
                h.update(f"{path}\0{st.st_size}\0{int(st.st_mtime)}".encode())
            except OSError:
                pass
        return h.hexdigest()[:16]


def interpreter() -> Interpreter:
    paths = sysconfig.get_paths()
    stdlib = sorted({os.path.realpath(paths["stdlib"]), os.path.realpath(paths["platstdlib"])})
    return Interpreter(
        executable=os.path.realpath(sys.executable),
        prefix=os.path.realpath(sys.base_prefix),
        minor=f"{sys.version_info[0]}.{sys.version_info[1]}",
        version=sys.version.split()[0],
        stdlib=stdlib,
    )


# ---------------------------------------------------------------------------------------------------------
# Distributions
# ---------------------------------------------------------------------------------------------------------


def _name_version(dist: md.Distribution) -> tuple[str, str]:
    """Name and version, from the ``name-version.dist-info`` directory name when there is one (reading
    160 METADATA files costs ~0.1 s; the cached path of a build must stay well under a second)."""
    path = getattr(dist, "_path", None)
    if path is not None and str(path).endswith(".dist-info"):
        stem = os.path.basename(str(path))[: -len(".dist-info")]
        name, sep, version = stem.partition("-")
        if sep and name and version:
            return name, version
    metadata = dist.metadata
    return str(metadata["Name"] or ""), str(metadata["Version"] or "")


def _installed() -> dict[str, md.Distribution]:
    """Canonical name -> the distribution Python would import (the first one on ``sys.path``)."""
    found: dict[str, md.Distribution] = {}
    for dist in md.distributions():
        name = _name_version(dist)[0]
        if name and canonical(name) not in found:
            found[canonical(name)] = dist
    return found


def _marker_holds(marker: str) -> bool:
    """A requirement's environment marker for this interpreter; extras never (they are opt-in)."""
    if "extra" in marker:
        return False
    try:
        from packaging.markers import Marker
    except ImportError:  # no packaging in the kernel: keep the requirement if it is installed at all
        return True
    try:
        return bool(Marker(marker).evaluate())
    except Exception:
        return True


def _requirement_names(dist: md.Distribution) -> list[str]:
    names = []
    for req in dist.requires or []:
        spec, _, marker = req.partition(";")
        if marker.strip() and not _marker_holds(marker.strip()):
            continue
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
        if m:
            names.append(canonical(m.group(1)))
    return names


def _module_owners() -> dict[str, list[str]]:
    """Import name -> canonical distribution names (``sklearn`` -> ``scikit-learn``)."""
    owners: dict[str, list[str]] = {}
    for module, dists in md.packages_distributions().items():
        owners[module] = [canonical(d) for d in dists]
    return owners


def select(packages: Iterable[str] | None = None) -> list[str]:
    """Canonical names of the distributions an image needs: every installed one (``packages=None``), or
    the given ones (distribution or import names) with their dependency closure; always cloudpickle."""
    installed = _installed()
    if packages is None:
        wanted = set(installed) - EXCLUDED
    else:
        wanted = set()
        owners: dict[str, list[str]] | None = None
        stack: list[str] = []
        for raw in packages:
            name = canonical(re.split(r"[\[<>=!~; ]", raw.strip(), maxsplit=1)[0])
            if name in installed:
                stack.append(name)
                continue
            owners = owners if owners is not None else _module_owners()
            match = owners.get(raw.strip()) or owners.get(name.replace("-", "_"))
            if not match:
                raise KernelEnvError(
                    f"package {raw!r} is not installed in this kernel ({sys.executable}): install it "
                    "there first (`%pip install ...`), or leave it out of packages=[...]"
                )
            stack.extend(match)
        stack.extend(REQUIRED)
        while stack:
            name = stack.pop()
            if name in wanted or name in EXCLUDED or name not in installed:
                continue
            wanted.add(name)
            stack.extend(_requirement_names(installed[name]))
    for name in REQUIRED:
        if name not in installed:
            raise KernelEnvError(f"{name} is not installed in this kernel ({sys.executable})")
        wanted.add(name)
    return sorted(wanted)


def _is_editable(dist: md.Distribution) -> bool:
    text = dist.read_text("direct_url.json")
    if not text:
        return False
    try:
        return bool(json.loads(text).get("dir_info", {}).get("editable"))
    except ValueError:
        return False


def _top_level(files: Iterable[str]) -> set[str]:
    modules = set()
    for rel in files:
        first = rel.split("/", 1)[0]
        if first.endswith((".dist-info", ".egg-info", ".data", ".pth")) or first == "__pycache__":
            continue
        if "/" in rel:
            modules.add(first)
        elif first.endswith(".py"):
            modules.add(first[:-3])
        elif first.endswith(".so"):
            modules.add(first.split(".", 1)[0])
    return {m for m in modules if m.isidentifier()}


def _record_paths(dist: md.Distribution) -> list[str] | None:
    """The paths a ``RECORD`` lists (first CSV field), or None without one."""
    text = dist.read_text("RECORD")
    if text is None:
        return None
    if '"' in text:
        return [row[0] for row in csv.reader(text.splitlines()) if row]
    return [line.split(",", 1)[0] for line in text.splitlines() if line]


def describe(names: Iterable[str]) -> list[Distribution]:
    """The named distributions with their files (from ``RECORD``) and import names."""
    installed = _installed()
    out = []
    for name in names:
        dist = installed[name]
        site = os.path.realpath(str(dist.locate_file("")))
        files: list[str] = []
        record = _record_paths(dist)
        for entry in record or []:
            rel = os.path.normpath(entry)
            if rel.startswith("..") or os.path.isabs(rel):
                continue  # a script in bin/ or data elsewhere; existence is checked when copying
            files.append(rel)
        if record is None:  # no RECORD (a distro package): its import names' directories
            for top in (dist.read_text("top_level.txt") or "").split():
                base = os.path.join(site, top)
                if os.path.isdir(base):
                    files.extend(
                        os.path.relpath(os.path.join(d, f), site) for d, _, fs in os.walk(base) for f in fs
                    )
                elif os.path.isfile(base + ".py"):
                    files.append(top + ".py")
        dist_name, version = _name_version(dist)
        out.append(
            Distribution(
                name=dist_name,
                version=version,
                site=site,
                files=tuple(files),
                modules=tuple(sorted(_top_level(files))),
                editable=_is_editable(dist),
            )
        )
    return out


def package_set_key(dists: Iterable[Distribution]) -> list[str]:
    """``["numpy==2.4.6", ...]``: what a kernel image is cached by."""
    return sorted(d.key for d in dists)


# ---------------------------------------------------------------------------------------------------------
# The interpreter's own files and shared libraries
# ---------------------------------------------------------------------------------------------------------


def stdlib_files(interp: Interpreter) -> list[str]:
    """Absolute paths of the standard library files to carry (trimmed; ``.pyc`` of optimisation levels
    1 and 2 left out: nothing runs with ``-O``)."""
    out: list[str] = []
    for root in interp.stdlib:
        for d, dirs, files in os.walk(root):
            rel = os.path.relpath(d, root)
            if rel == ".":
                dirs[:] = [x for x in dirs if x not in _STDLIB_SKIP_DIRS and not x.startswith("config-")]
            else:
                dirs[:] = [x for x in dirs if x not in _STDLIB_SKIP_DIRS]
            for f in files:
                if ".opt-1." in f or ".opt-2." in f or f.endswith(".a"):
                    continue
                if os.path.basename(d) == "lib-dynload" and _DYNLOAD_SKIP.match(f):
                    continue
                out.append(os.path.join(d, f))
    return out


def ldd(paths: Iterable[str]) -> tuple[set[str], set[str]]:
    """``(libraries, missing)``: absolute paths of the shared libraries (and the dynamic loader) the
    given ELF files load, as this machine resolves them; and sonames it cannot find."""
    paths = [p for p in paths if _is_elf(p)]
    libs: set[str] = set()
    missing: set[str] = set()
    for i in range(0, len(paths), 400):
        try:
            proc = subprocess.run(["ldd", *paths[i : i + 400]], capture_output=True, text=True, check=False)
        except FileNotFoundError as exc:
            raise KernelEnvError("ldd not found: it finds the shared libraries the image needs") from exc
        for line in proc.stdout.splitlines():
            m = _LDD_LINE.match(line)
            if not m or line.endswith(":"):
                continue
            name, target = m.group(1), m.group(2)
            if target == "not found":
                missing.add(name)
            elif target:
                libs.add(target)
            elif name.startswith("/"):
                libs.add(name)  # the dynamic loader
    return {p for p in libs if os.path.exists(p)}, missing


def _is_elf(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def extra_runtime_libs() -> set[str]:
    """Libraries glibc loads at run time without a DT_NEEDED (``libgcc_s`` for thread cancellation)."""
    out = set()
    for d in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib"):
        p = os.path.join(d, "libgcc_s.so.1")
        if os.path.exists(p):
            out.add(p)
            break
    return out


def shared_objects(dists: Iterable[Distribution]) -> list[str]:
    """Absolute paths of the ELF shared objects the distributions install."""
    out = []
    for dist in dists:
        for rel in dist.files:
            if ".so" in Path(rel).name:
                out.append(os.path.join(dist.site, rel))
    return out
