"""Executor images made from the kernel's own environment, offline (issue 11).

``abaco-nb/kernel:<minor>-<hash>`` runs the kernel's very interpreter with the kernel's installed
distributions, so a function that works in the kernel works in the container (numpy 2.x arrays in and
out, any CPython the kernel runs, not only the ones a Debian release ships). Nothing is pulled from a
registry and no Dockerfile is written by the user. Three levels, each cached by what it contains:

``abaco-nb/kernel-base:<minor>-<interpreter hash>`` (``docker import`` of one tar)
    The kernel's Python at the same path as on this machine (``sys.base_prefix``): its executable, the
    standard library (trimmed) and ``lib-dynload``, the shared libraries ``ldd`` finds for them (glibc
    and its loader included, from this machine), ``/etc/ld.so.cache``, time zones, a busybox shell.
    Its CMD is the function runner.
``abaco-nb/kernel-packages:<minor>-<hash of the (distribution, version) set>`` (one layer)
    Built on the largest cached package image whose set is a subset of the one wanted (or on the
    base): a package added to the kernel then costs one small layer holding only that package (and any
    system library its extension modules load that the image lacks). The distributions' files are the
    ones their ``RECORD`` lists, copied to ``/opt/abaco-nb/site`` (a site directory: ``.pth`` files work).
``abaco-nb/kernel:<minor>-<hash of the set and the runner>`` (one small layer)
    abaco-nb's runner in ``/opt/abaco-nb`` on top, so editing or upgrading abaco-nb costs this layer only.

Layers are made here as tars and loaded with ``docker load`` (:func:`load_layer`).
A second build with the same set is one ``inspect`` (well under a second). Labels carry the Python and
cloudpickle versions (the executor's guard), the interpreter hash and the package set (for the subset
search), and the shared libraries already present.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from . import kernel_env
from .images import (
    IMAGE_LIB_DIR,
    LABEL_CLOUDPICKLE,
    LABEL_HASH,
    LABEL_KIND,
    LABEL_PYTHON,
    ImageBuildError,
    Log,
    _compiled,
    _image_id,
    _image_package_files,
)

KERNEL_REPO = "abaco-nb/kernel"
KERNEL_BASE_REPO = "abaco-nb/kernel-base"
KERNEL_PACKAGES_REPO = "abaco-nb/kernel-packages"  # base + distributions, without the runner
SITE_DIR = f"{IMAGE_LIB_DIR}/site"
LABEL_RUNTIME = "abaco-nb.runtime"  # the interpreter hash both levels share
LABEL_PACKAGES = "abaco-nb.packages"  # "numpy==2.4.6 pandas==3.1.1 ..."
LABEL_LIBS = "abaco-nb.libs"  # host library paths already in the image, space separated
KERNEL_RECIPE = "3"  # bump when the recipe changes in a way the hashed inputs do not show
MAX_LAYERS = 60  # past this many layers, a build starts again from the base (overlay allows 128)

# Makes /opt/abaco-nb/site a real site directory (so .pth files of the distributions are processed)
# whatever the interpreter's own site-packages is; ``site`` imports it from PYTHONPATH at start-up.
SITECUSTOMIZE = f'import site\n\nsite.addsitedir("{SITE_DIR}")\n'


@dataclass
class KernelImage:
    """What ``build_kernel_image`` made or found."""

    ref: str
    built: bool
    seconds: float
    python: str
    cloudpickle: str
    packages: list[str]
    modules: list[str]  # top-level import names the image's distributions provide
    skipped: list[str] = field(default_factory=list)  # editable installs: their code is not in site dirs
    layers_added: int = 0
    bytes_added: int = 0
    parent: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# ---------------------------------------------------------------------------------------------------------
# Tar helpers: files at their host paths, owned by root, readable by any user the container runs as
# ---------------------------------------------------------------------------------------------------------


class _Tree:
    """Entries of an image file tree keyed by absolute path; written as one tar."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[str, str]] = {}  # path -> (kind, host source or link target or data)
        self.data: dict[str, bytes] = {}

    def host_path(self, path: str, follow_dirs: bool = True) -> None:
        """Add ``path`` as this machine resolves it: every symlink on the way (``/lib -> usr/lib``, a
        soname link) becomes a symlink entry, and the file itself is copied at its real path."""
        path = os.path.abspath(path)
        cur = "/"
        parts = path.strip("/").split("/")
        for i, comp in enumerate(parts):
            nxt = os.path.join(cur, comp)
            if os.path.islink(nxt):
                target = os.readlink(nxt)
                if follow_dirs or i == len(parts) - 1:
                    self.entries[nxt] = ("symlink", target)
                resolved = os.path.realpath(nxt)
                if i == len(parts) - 1:
                    self.host_path(resolved, follow_dirs)
                    return
                cur = resolved
            else:
                cur = nxt
        if os.path.isfile(cur):
            self.entries.setdefault(cur, ("file", cur))

    def file(self, path: str, source: str) -> None:
        self.entries.setdefault(path, ("file", source))

    def symlink(self, path: str, target: str) -> None:
        self.entries[path] = ("symlink", target)

    def bytes(self, path: str, data: bytes) -> None:
        self.entries[path] = ("data", path)
        self.data[path] = data

    def size(self) -> int:
        total = 0
        for kind, src in self.entries.values():
            if kind == "file":
                total += os.path.getsize(src)
            elif kind == "data":
                total += len(self.data[src])
        return total

    def write(self, out: BinaryIO, dirs: tuple[str, ...] = ()) -> None:
        """The tree as a tar of its own."""
        with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
            self.add_to(tar, "", dirs)

    def add_to(self, tar: tarfile.TarFile, prefix: str = "", dirs: tuple[str, ...] = ()) -> None:
        """The tree's members into ``tar``; ``prefix`` puts them under a context directory (``root/``)."""
        links = {p for p, (k, _) in self.entries.items() if k == "symlink"}
        parents: set[str] = set(dirs)
        for p in self.entries:
            d = os.path.dirname(p)
            while d not in ("/", "") and d not in parents:
                parents.add(d)
                d = os.path.dirname(d)
        for d in sorted(parents - links):
            info = tarfile.TarInfo(prefix + d.lstrip("/"))
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "/tmp" else 0o755
            tar.addfile(info)
        for p in sorted(self.entries):
            kind, src = self.entries[p]
            name = prefix + p.lstrip("/")
            if kind == "symlink":
                info = tarfile.TarInfo(name)
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, src, 0o777
                tar.addfile(info)
            elif kind == "data":
                data = self.data[src]
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
            else:
                st = os.stat(src)
                info = tarfile.TarInfo(name)
                info.size, info.mtime = st.st_size, int(st.st_mtime)
                mode = stat.S_IMODE(st.st_mode) | 0o444
                info.mode = mode | 0o111 if mode & 0o100 else mode
                with open(src, "rb") as f:
                    tar.addfile(info, f)


PROGRESS_MIN_BYTES = 50_000_000  # a smaller layer loads in well under a second: no progress lines


class _Progress:
    """A file wrapper that reports how much of the build context Docker has read (for large layers
    only: the runner's small top layer printed "sent 0 of 0 MB" four times)."""

    def __init__(self, f: BinaryIO, total: int, log: Log, what: str) -> None:
        self.f, self.total, self.log, self.what = f, max(total, 1), log, what
        self.done = 0
        self.next_report = 0.25 if total >= PROGRESS_MIN_BYTES else 2.0

    def __len__(self) -> int:  # requests sends a Content-Length instead of chunks
        return self.total

    def read(self, n: int = -1) -> bytes:
        chunk = self.f.read(n)
        self.done += len(chunk)
        if self.done / self.total >= self.next_report and self.next_report <= 1.0:
            self.log(f"{self.what}: sent {self.done / 1e6:.0f} of {self.total / 1e6:.0f} MB")
            self.next_report += 0.25
        return chunk


# ---------------------------------------------------------------------------------------------------------
# The base: the kernel's interpreter and the runner
# ---------------------------------------------------------------------------------------------------------


def _runner_files() -> list[tuple[str, bytes]]:
    """abaco-nb's runner as files under ``/opt/abaco-nb`` (cloudpickle comes from the kernel's site)."""
    return [(n, d) for n, d in _image_package_files() if not n.startswith("cloudpickle/")]


def runtime_hash(interp: kernel_env.Interpreter) -> str:
    """What the base and the package layers depend on: the interpreter and this recipe (not the runner,
    whose edits would otherwise rebuild hundreds of MB of packages)."""
    return hashlib.sha256(f"kernel-base/{KERNEL_RECIPE}/{interp.fingerprint()}".encode()).hexdigest()[:16]


def runner_hash() -> str:
    h = hashlib.sha256(f"kernel-runner/{KERNEL_RECIPE}".encode())
    for name, data in sorted(_runner_files()):
        h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest()[:16]


def _python_env(interp: kernel_env.Interpreter) -> list[str]:
    bindir = os.path.dirname(interp.executable)
    return [
        f"ENV PATH=/usr/local/bin:{bindir}:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
        f"ENV PYTHONPATH={IMAGE_LIB_DIR} PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUTF8=1",
        f'CMD ["{interp.executable}", "-m", "abaco_nb.func_runner"]',
    ]


def build_base(client: Any, interp: kernel_env.Interpreter, log: Log, force: bool = False) -> str:
    """``abaco-nb/kernel-base:<minor>-<hash>``: the kernel's interpreter and the runner, one layer."""
    rh = runtime_hash(interp)
    ref = f"{KERNEL_BASE_REPO}:{interp.minor}-{rh}"
    if not force and _labels(client, ref).get(LABEL_HASH) == rh:
        return ref
    t0 = time.monotonic()
    log(f"{ref}: Python {interp.version} from {interp.prefix} ...")
    tree = _Tree()
    stdlib = kernel_env.stdlib_files(interp)
    tree.host_path(interp.executable)
    for path in stdlib:
        tree.file(path, path)
    elves = [interp.executable] + [p for p in stdlib if ".so" in os.path.basename(p)]
    libs, missing = kernel_env.ldd(elves)
    for lib in sorted(libs | kernel_env.extra_runtime_libs()):
        tree.host_path(lib)
    if missing:
        log(f"{ref}: note: libraries not found on this machine either: {', '.join(sorted(missing))}")
    _add_tree(tree, "/usr/share/zoneinfo")  # zoneinfo and pandas find time zones there
    busybox = next((p for p in ("/bin/busybox", "/usr/bin/busybox") if os.path.isfile(p)), None)
    if busybox:  # a shell for whoever needs one in the container (docker exec, debugging)
        tree.file("/usr/local/bin/busybox", os.path.realpath(busybox))
        shell = "/usr/bin/sh" if tree.entries.get("/bin", ("",))[0] == "symlink" else "/bin/sh"
        tree.symlink(shell, "/usr/local/bin/busybox")
    if os.path.isfile("/etc/ld.so.cache"):
        tree.file("/etc/ld.so.cache", "/etc/ld.so.cache")
    tree.bytes("/etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n")
    tree.bytes("/etc/group", b"root:x:0:\nnogroup:x:65534:\n")
    tree.symlink("/usr/local/bin/python3", interp.executable)
    tree.symlink("/usr/local/bin/python", interp.executable)
    with tempfile.TemporaryDirectory() as tmp:
        _add_python(tree, [("sitecustomize.py", SITECUSTOMIZE.encode())], tmp)
        tar_path = os.path.join(tmp, "rootfs.tar")
        with open(tar_path, "wb") as out:
            tree.write(out, dirs=("/tmp", "/root", SITE_DIR))
        size = os.path.getsize(tar_path)
        previous = _image_id(client, ref)
        client.api.import_image(
            src=tar_path,
            repository=KERNEL_BASE_REPO,
            tag=f"{interp.minor}-{rh}",
            changes=[
                *_python_env(interp),
                f"LABEL {LABEL_HASH}={rh} {LABEL_RUNTIME}={rh} {LABEL_PYTHON}={interp.minor} "
                f"{LABEL_KIND}=kernel-base",
                f'LABEL {LABEL_LIBS}="{" ".join(sorted(libs))}"',
            ],
        )
    if previous and previous != _image_id(client, ref):
        _remove_quietly(client, previous)
    log(f"{ref}: built in {time.monotonic() - t0:.1f} s ({size / 1e6:.0f} MB)")
    return ref


def _add_python(tree: _Tree, files: list[tuple[str, bytes]], tmp: str) -> None:
    """Sources under ``/opt/abaco-nb`` with their bytecode (compiled by this very interpreter)."""
    for name, data in files:
        tree.bytes(f"{IMAGE_LIB_DIR}/{name}", data)
        pyc_name, pyc = _compiled(name, data, tmp)
        tree.bytes(f"{IMAGE_LIB_DIR}/{pyc_name}", pyc)


def _add_tree(tree: _Tree, root: str) -> None:
    """Every file and symlink under a host directory, if it exists."""
    for d, _, files in os.walk(root):
        for f in files:
            path = os.path.join(d, f)
            if os.path.islink(path):
                tree.symlink(path, os.readlink(path))
            elif os.path.isfile(path):
                tree.file(path, path)


# ---------------------------------------------------------------------------------------------------------
# The kernel image: the distributions on top
# ---------------------------------------------------------------------------------------------------------


def quick_labels(ref: str) -> dict[str, str]:
    """An image's labels straight from the engine's unix socket with the standard library, for the
    cached case a new kernel meets each time; ``{}`` when that is not possible (another ``DOCKER_HOST``,
    no such image, no engine): the caller then goes the SDK's way."""
    import http.client
    import socket
    import urllib.parse

    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        return {}

    class _Unix(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(10)
            self.sock.connect(host[len("unix://") :])

    try:
        conn = _Unix("localhost", timeout=10)
        conn.request("GET", f"/images/{urllib.parse.quote(ref, safe='')}/json")
        answer = conn.getresponse()
        body = answer.read()
        conn.close()
        if answer.status != 200:
            return {}
        return dict((json.loads(body).get("Config") or {}).get("Labels") or {})
    except (OSError, ValueError, http.client.HTTPException):
        return {}


def _labels(client: Any, ref: str) -> dict[str, str]:
    import docker

    try:
        return dict(client.api.inspect_image(ref)["Config"].get("Labels") or {})
    except docker.errors.ImageNotFound:
        return {}


def _best_parent(client: Any, rh: str, wanted: set[str]) -> tuple[str, set[str], set[str]] | None:
    """The cached kernel image (same interpreter and runner) with the most of ``wanted`` and nothing
    else: ``(ref, its packages, its libraries)``."""
    best: tuple[int, str, set[str], set[str]] | None = None
    kind = f"{LABEL_KIND}=kernel-packages"
    for image in client.api.images(filters={"label": [kind, f"{LABEL_RUNTIME}={rh}"]}):
        labels = image.get("Labels") or {}
        have = set((labels.get(LABEL_PACKAGES) or "").split())
        tags = [t for t in image.get("RepoTags") or [] if t.startswith(KERNEL_PACKAGES_REPO + ":")]
        if not tags or not have <= wanted:
            continue
        if best is None or len(have) > best[0]:
            best = (len(have), tags[0], have, set((labels.get(LABEL_LIBS) or "").split()))
    if best is None:
        return None
    layers = len(client.api.inspect_image(best[1])["RootFS"].get("Layers") or [])
    if layers >= MAX_LAYERS:
        return None
    return best[1], best[2], best[3]


def kernel_image_ref(interp: kernel_env.Interpreter, packages: list[str]) -> tuple[str, str]:
    """``(reference, content hash)`` of the kernel image for this interpreter, package set and runner."""
    h = hashlib.sha256(
        f"kernel/{KERNEL_RECIPE}/{packages_hash(interp, packages)}/{runner_hash()}".encode()
    ).hexdigest()[:16]
    return f"{KERNEL_REPO}:{interp.minor}-{h}", h


def packages_hash(interp: kernel_env.Interpreter, packages: list[str]) -> str:
    """The package layers' identity: interpreter base plus the (distribution, version) set."""
    text = f"kernel-packages/{KERNEL_RECIPE}/{runtime_hash(interp)}/{' '.join(sorted(packages))}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_kernel_image(
    client: Any = None, packages: list[str] | None = None, log: Log = print, force: bool = False
) -> KernelImage:
    """Build (or find) the executor image of this interpreter's environment: every installed
    distribution, or ``packages`` with their dependency closure (plus cloudpickle)."""
    t0 = time.monotonic()
    interp = kernel_env.interpreter()
    try:
        names = kernel_env.select(packages)
    except kernel_env.KernelEnvError as exc:
        raise ImageBuildError(str(exc)) from exc
    dists = kernel_env.describe(names)
    skipped = sorted(d.name for d in dists if d.editable)
    dists = [d for d in dists if not d.editable]
    keys = kernel_env.package_set_key(dists)
    ref, content_hash = kernel_image_ref(interp, keys)
    cloudpickle = next(d.version for d in dists if kernel_env.canonical(d.name) == "cloudpickle")
    result = KernelImage(
        ref=ref,
        built=False,
        seconds=0.0,
        python=interp.minor,
        cloudpickle=cloudpickle,
        packages=keys,
        modules=sorted({m for d in dists for m in d.modules}),
        skipped=skipped,
    )
    if not force and client is None and quick_labels(ref).get(LABEL_HASH) == content_hash:
        result.seconds = time.monotonic() - t0  # found without importing the Docker SDK (~0.5 s)
        return result
    import docker

    try:
        client = client or docker.from_env(timeout=300)
        client.ping()
    except Exception as exc:
        raise ImageBuildError(f"no Docker engine answers ({exc}); kernel images need one") from exc
    if not force and _labels(client, ref).get(LABEL_HASH) == content_hash:
        result.seconds = time.monotonic() - t0
        return result
    if skipped:
        log(
            f"{ref}: left out (editable installs, their code is not in a site directory): {', '.join(skipped)}"
        )
    rh = runtime_hash(interp)
    ph = packages_hash(interp, keys)
    packages_ref = f"{KERNEL_PACKAGES_REPO}:{interp.minor}-{ph}"
    if force or _labels(client, packages_ref).get(LABEL_HASH) != ph:
        base = build_base(client, interp, log, force=force)
        result.parent, result.bytes_added = _build_packages(
            client, interp, dists, keys, packages_ref, base, log, force
        )
        result.layers_added += 1
    tree = _Tree()
    with tempfile.TemporaryDirectory() as tmp:
        _add_python(tree, _runner_files(), tmp)
    labels = {
        LABEL_PYTHON: interp.minor,
        LABEL_CLOUDPICKLE: cloudpickle,
        LABEL_HASH: content_hash,
        LABEL_KIND: "kernel",
        LABEL_RUNTIME: rh,
        LABEL_PACKAGES: " ".join(keys),
    }
    previous = _image_id(client, ref)
    load_layer(client, packages_ref, tree, ref, labels, log)  # the runner: a few hundred KB on top
    if previous and previous != _image_id(client, ref):
        _remove_quietly(client, previous)
    result.built = True
    result.layers_added += 1
    result.seconds = time.monotonic() - t0
    log(f"{ref}: built in {result.seconds:.1f} s")
    return result


def _build_packages(
    client: Any,
    interp: kernel_env.Interpreter,
    dists: list[kernel_env.Distribution],
    keys: list[str],
    packages_ref: str,
    base: str,
    log: Log,
    force: bool,
) -> tuple[str, int]:
    """``abaco-nb/kernel-packages:...``: the distributions' files as one layer on the largest cached
    subset (or the base). Returns the parent it was built on and the bytes added."""
    rh = runtime_hash(interp)
    parent = None if force else _best_parent(client, rh, set(keys))
    if parent is None:
        base_labels = _labels(client, base)
        parent = (base, set(), set((base_labels.get(LABEL_LIBS) or "").split()))
    parent_ref, have, have_libs = parent
    new = [d for d in dists if d.key not in have]
    tree = _Tree()
    for dist in new:
        for rel in dist.files:
            src = os.path.join(dist.site, rel)
            dest = f"{SITE_DIR}/{rel}"
            if os.path.islink(src):
                tree.symlink(dest, os.readlink(src))
            elif os.path.isfile(src):
                tree.file(dest, src)
    sites = {d.site for d in dists}
    libs, missing = kernel_env.ldd(kernel_env.shared_objects(new))
    host_libs = {
        p
        for p in libs
        if not any(p.startswith(s + os.sep) for s in sites) and not p.startswith(interp.prefix + os.sep)
    }
    for lib in sorted(host_libs - have_libs):
        tree.host_path(lib, follow_dirs=False)
    bundled = {os.path.basename(rel) for d in new for rel in d.files}
    missing -= bundled  # a wheel's own libraries (``scipy.libs``), found at run time through each other
    if missing:
        log(f"{packages_ref}: note: libraries the kernel cannot find either: {', '.join(sorted(missing))}")
    size = tree.size()
    log(
        f"{packages_ref}: {len(new)} of {len(dists)} distributions to add ({size / 1e6:.0f} MB) on {parent_ref} ..."
    )
    labels = {
        LABEL_HASH: packages_hash(interp, keys),
        LABEL_KIND: "kernel-packages",
        LABEL_RUNTIME: rh,
        LABEL_PACKAGES: " ".join(keys),
        LABEL_LIBS: " ".join(sorted(have_libs | host_libs)),
    }
    previous = _image_id(client, packages_ref)
    load_layer(client, parent_ref, tree, packages_ref, labels, log)
    if previous and previous != _image_id(client, packages_ref):
        _remove_quietly(client, previous)
    return parent_ref, size


def prune(
    client: Any = None, older_than_hours: float = 168.0, log: Log = print, only: set[str] | None = None
) -> list[str]:
    """Remove kernel images (all three levels) created more than ``older_than_hours`` ago, except those
    whose layers a newer kernel image builds on (its package image and base). An image a container uses
    stays (Docker refuses, quietly). Each package set a kernel ever had leaves images behind, and
    nothing else removes them. ``only``: consider these tags alone. Returns the tags removed."""
    import docker

    client = client or docker.from_env(timeout=120)
    cutoff = time.time() - older_than_hours * 3600
    old: list[tuple[list[str], list[str]]] = []
    kept_layers: list[list[str]] = []
    for kind in ("kernel", "kernel-packages", "kernel-base"):
        for image in client.api.images(filters={"label": [f"{LABEL_KIND}={kind}"]}):
            tags = [t for t in image.get("RepoTags") or [] if t.startswith("abaco-nb/kernel")]
            if not tags:
                continue
            layers = list(client.api.inspect_image(image["Id"])["RootFS"].get("Layers") or [])
            if only is not None:
                kept = [t for t in tags if t not in only]
                tags = [t for t in tags if t in only]
                if kept:
                    kept_layers.append(layers)
                if not tags:
                    continue
            if int(image.get("Created") or 0) > cutoff:
                kept_layers.append(layers)
            else:
                old.append((tags, layers))
    removed = []
    for tags, layers in old:  # top level first, so what is left below is free by then
        if any(len(k) > len(layers) and k[: len(layers)] == layers for k in kept_layers):
            continue  # a newer image is built on it: removing it would only cost a rebuild later
        try:
            for tag in tags:
                client.api.remove_image(tag)
            removed.extend(tags)
            log(f"{tags[0]}: removed")
        except docker.errors.APIError as exc:
            log(f"{tags[0]}: kept ({exc.explanation or exc})")
    return removed


class _HashingWriter:
    """Writes through to a file while computing the sha256 Docker names the layer by (its diff id)."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.sha = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        return self.f.write(data)

    def tell(self) -> int:
        return self.f.tell()


def load_layer(client: Any, parent_ref: str, tree: _Tree, ref: str, labels: dict[str, str], log: Log) -> None:
    """Tag ``ref`` as ``parent_ref`` plus one layer holding ``tree``, via ``docker load`` of an archive
    made here (the parent's layers are named by their diff ids and not sent: Docker has them). One
    write and one extraction of the new files, where ``docker build``'s ``COPY`` takes three passes."""
    parent = client.api.inspect_image(parent_ref)
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with tempfile.TemporaryFile() as layer, tempfile.TemporaryFile() as archive:
        writer = _HashingWriter(layer)
        with tarfile.open(fileobj=writer, mode="w", format=tarfile.GNU_FORMAT) as tar:  # type: ignore[call-overload]
            tree.add_to(tar)
        layer_size = layer.tell()
        diff_ids = [*(parent["RootFS"].get("Layers") or []), f"sha256:{writer.sha.hexdigest()}"]
        config = dict(parent["Config"] or {})
        config["Labels"] = {**(config.get("Labels") or {}), **labels}
        image_config = json.dumps(
            {
                "architecture": parent.get("Architecture") or "amd64",
                "os": parent.get("Os") or "linux",
                "created": created,
                "config": config,
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
                "history": [{"created": created, "created_by": "abaco-nb kernel image"} for _ in diff_ids],
            }
        ).encode()
        config_name = hashlib.sha256(image_config).hexdigest() + ".json"
        layer_names = [f"{i}/layer.tar" for i in range(len(diff_ids))]
        manifest = json.dumps([{"Config": config_name, "RepoTags": [ref], "Layers": layer_names}]).encode()
        with tarfile.open(fileobj=archive, mode="w", format=tarfile.GNU_FORMAT) as tar:
            for name, data in ((config_name, image_config), ("manifest.json", manifest)):
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
            info = tarfile.TarInfo(layer_names[-1])
            info.size, info.mode = layer_size, 0o644
            layer.seek(0)
            tar.addfile(info, layer)
        total = archive.tell()
        archive.seek(0)
        try:
            answer = client.api.load_image(_Progress(archive, total, log, ref))
            for chunk in answer or []:
                if isinstance(chunk, dict) and chunk.get("error"):
                    raise ImageBuildError(f"loading {ref} failed: {chunk['error']}")
        except docker_errors() as exc:
            raise ImageBuildError(f"loading {ref} failed: {exc}") from exc


def docker_errors() -> type[Exception]:
    import docker

    return docker.errors.APIError  # type: ignore[no-any-return]


def _remove_quietly(client: Any, image_id: str) -> None:
    from .images import _remove_quietly as remove

    remove(client, image_id)
