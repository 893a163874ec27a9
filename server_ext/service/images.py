"""Building abaco-nb's own images on a machine that reaches no container registry.

Two images (DESIGN §4 "Images", ``reference/offline-images.md``):

``abaco-nb/test``
    A few-MB image made of Debian's static busybox, whose CMD behaves like ``abacosamples/test`` (the
    seed's reactor walk-through): print ``MSG``, sleep (2 s, or ``$SLEEP``), print the environment and
    the root file system.

``abaco-nb/py3-func``
    The executor image: a minimal Debian tree (``debootstrap --variant=minbase``) with the *same Python
    minor version* as the kernel, the kernel's own ``cloudpickle`` package copied in (so the versions
    match exactly), and ``abaco_nb.actors`` + ``abaco_nb.func_runner`` as a stand-alone package. Its CMD
    is the function runner. Tagged ``latest`` and ``<python minor>-<cloudpickle version>``, and labelled
    with both versions so the executor can refuse a mismatch before anything runs.

Both builds are cached by tag plus a content-hash label, so a second ``build_images()`` only inspects
tags. The Debian base (the slow part, ~30 s) is cached separately as ``abaco-nb/py3-base:<suite>-<minor>``.

Nothing here imports ``abaco_nb``: its in-container modules are copied as files (DESIGN §1).
"""

from __future__ import annotations

import glob
import hashlib
import importlib.metadata
import importlib.util
import io
import os
import py_compile
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

TEST_IMAGE = "abaco-nb/test"
FUNC_IMAGE = "abaco-nb/py3-func"
BASE_REPO = "abaco-nb/py3-base"

LABEL_PYTHON = "abaco-nb.python"
LABEL_CLOUDPICKLE = "abaco-nb.cloudpickle"
LABEL_HASH = "abaco-nb.content-hash"
LABEL_KIND = "abaco-nb.kind"

# Bump when the recipe changes in a way the hashed inputs do not show, to invalidate caches.
RECIPE_VERSION = "1"

# Where the in-image Python package lives; on PYTHONPATH.
IMAGE_LIB_DIR = "/opt/abaco-nb"

# Debian release that ships a given python3 minor version as its python3-minimal.
DEBIAN_SUITE_FOR_PYTHON = {"3.9": "bullseye", "3.11": "bookworm", "3.13": "trixie"}

# The test image's CMD: abacosamples/test's script, with the sleep overridable for tests. The environment
# is printed from /proc because busybox sh (unlike bash) drops variables whose names are not shell names,
# such as `_abaco-Content-Type`, from what its children see.
TEST_SCRIPT = """#!/bin/sh
echo "Contents of MSG: "$MSG
sleep "${SLEEP:-2}"
echo "Environment:"
tr '\\0' '\\n' < /proc/$$/environ
echo "Contents of root file system: "
ls /
"""

# What `import abaco_nb` gives inside the executor image: nothing, so the image needs none of the real
# package's dependencies (Jupyter, requests, ...).
IMAGE_PACKAGE_INIT = '"""abaco-nb in-container helpers (executor image copy)."""\n'

# Files copied from the real package into the image's abaco_nb package.
IMAGE_PACKAGE_FILES = ("actors.py", "func_runner.py", "cell_actor_runner.py")

Log = Callable[[str], Any]


class ImageBuildError(Exception):
    """An image could not be built; the message says why and what to do."""


# ---------------------------------------------------------------------------------------------------------
# Versions: what the kernel has, what an image has
# ---------------------------------------------------------------------------------------------------------


def kernel_versions() -> tuple[str, str]:
    """``(python minor, cloudpickle version)`` of this interpreter — the one the executor pickles with."""
    return f"{sys.version_info.major}.{sys.version_info.minor}", importlib.metadata.version("cloudpickle")


def func_image_tag(python: str | None = None, cloudpickle: str | None = None) -> str:
    """The version tag of the executor image matching the given (default: this kernel's) versions."""
    k_py, k_cp = kernel_versions()
    return f"{python or k_py}-{cloudpickle or k_cp}"


def expected_func_image() -> str:
    """Full reference of the executor image this kernel needs, e.g. ``abaco-nb/py3-func:3.11-3.1.3``."""
    return f"{FUNC_IMAGE}:{func_image_tag()}"


def image_versions(image: str, docker_client: Any = None) -> dict[str, str] | None:
    """Python and cloudpickle versions an image declares in its labels, or None when it declares none
    (an image not built from ``abaco-nb/py3-func``) or is not present locally."""
    import docker

    client = docker_client or docker.from_env()
    try:
        labels = client.api.inspect_image(image)["Config"].get("Labels") or {}
    except docker.errors.ImageNotFound:
        return None
    if LABEL_PYTHON not in labels and LABEL_CLOUDPICKLE not in labels:
        return None
    return {"python": labels.get(LABEL_PYTHON, ""), "cloudpickle": labels.get(LABEL_CLOUDPICKLE, "")}


def version_mismatch(image: str, docker_client: Any = None) -> str | None:
    """A message saying why the kernel cannot run functions in ``image``, or None when it can (or when
    the image declares no versions, in which case the caller may only warn)."""
    versions = image_versions(image, docker_client)
    if versions is None:
        return None
    k_py, k_cp = kernel_versions()
    problems = []
    if versions["python"] and versions["python"] != k_py:
        problems.append(f"Python {versions['python']} in the image, {k_py} in the kernel")
    if versions["cloudpickle"] and versions["cloudpickle"] != k_cp:
        problems.append(f"cloudpickle {versions['cloudpickle']} in the image, {k_cp} in the kernel")
    if not problems:
        return None
    return (
        f"image {image} cannot run functions pickled by this kernel: {'; '.join(problems)}. "
        f"Run `abaco-nb images build` with the kernel's Python to build {expected_func_image()}."
    )


# ---------------------------------------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------------------------------------


def build_images(
    docker_client: Any = None, force: bool = False, log: Log = print, base_image: str | None = None
) -> dict[str, str]:
    """Build (or find cached) every abaco-nb image; returns ``{image name: reference built or found}``.

    ``base_image`` (or env ``ABACO_NB_BASE_IMAGE``) names a registry image such as ``python:3.11-slim``
    to use instead of the Debian base; by default nothing is pulled from any registry.
    """
    import docker

    client = docker_client or docker.from_env(timeout=120)
    return {
        TEST_IMAGE: build_test_image(client, force=force, log=log),
        FUNC_IMAGE: build_func_image(
            client, force=force, log=log, base_image=base_image or os.environ.get("ABACO_NB_BASE_IMAGE")
        ),
    }


def _hash_files(h: Any, files: list[tuple[str, bytes]]) -> None:
    for name, data in sorted(files):
        h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())


def _cached(client: Any, ref: str, content_hash: str) -> str | None:
    """The image id of ``ref`` if present and built from the same inputs."""
    import docker

    try:
        info = client.api.inspect_image(ref)
    except docker.errors.ImageNotFound:
        return None
    if (info["Config"].get("Labels") or {}).get(LABEL_HASH) != content_hash:
        return None
    return str(info["Id"])


def _busybox_path() -> str:
    for candidate in (os.environ.get("ABACO_NB_BUSYBOX"), "/bin/busybox", "/usr/bin/busybox"):
        if candidate and os.path.isfile(candidate):
            return candidate
    raise ImageBuildError(
        "busybox not found: the abaco-nb/test image is made from Debian's static busybox. "
        "Install it with `apt-get install busybox-static` (or set ABACO_NB_BUSYBOX to a static busybox)."
    )


def build_test_image(client: Any, force: bool = False, log: Log = print) -> str:
    """``abaco-nb/test:latest`` — static busybox plus the abacosamples/test script, via ``docker import``."""
    ref = f"{TEST_IMAGE}:latest"
    busybox = Path(_busybox_path()).read_bytes()
    h = hashlib.sha256(f"test-image/{RECIPE_VERSION}".encode())
    _hash_files(h, [("busybox", busybox), ("run.sh", TEST_SCRIPT.encode())])
    content_hash = h.hexdigest()[:16]
    if not force and _cached(client, ref, content_hash):
        log(f"{ref}: up to date")
        return ref

    t0 = time.monotonic()
    applets = subprocess.run(
        [_busybox_path(), "--list-full"], check=True, capture_output=True, text=True
    ).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:

        def add_dir(name: str) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)

        def add_file(name: str, data: bytes, mode: int) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))

        for d in ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "tmp", "etc", "root"):
            add_dir(d)
        add_file("bin/busybox", busybox, 0o755)
        add_file("run.sh", TEST_SCRIPT.encode(), 0o755)
        add_file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n", 0o644)
        add_file("etc/group", b"root:x:0:\nnogroup:x:65534:\n", 0o644)
        for applet in applets:
            if applet == "bin/busybox":
                continue
            link = tarfile.TarInfo(applet)
            link.type, link.linkname = tarfile.SYMTYPE, "/bin/busybox"
            tar.addfile(link)
    changes = [
        'CMD ["/bin/sh", "/run.sh"]',
        "ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin",
        f"LABEL {LABEL_HASH}={content_hash} {LABEL_KIND}=test",
    ]
    previous = _image_id(client, ref)
    client.api.import_image_from_data(buf.getvalue(), repository=TEST_IMAGE, tag="latest", changes=changes)
    if previous and previous != _image_id(client, ref):
        _remove_quietly(client, previous)
    log(f"{ref}: built in {time.monotonic() - t0:.1f} s")
    return ref


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (``ABACO_NB_DEBIAN_MIRROR`` overrides). Read at run time
    and never stored, so the repository names no mirror."""
    env = os.environ.get("ABACO_NB_DEBIAN_MIRROR")
    if env:
        return env
    candidates: list[str] = []
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        text = Path(path).read_text(errors="replace")
        for stanza in re.split(r"\n\s*\n", text):
            fields = dict(
                (m.group(1).lower(), m.group(2).strip())
                for m in re.finditer(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.M)
            )
            if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes") == "no":
                continue
            suites = fields.get("suites", "")
            if "security" in suites or "debian" not in fields.get("uris", ""):
                continue
            candidates.extend(fields.get("uris", "").split())
    for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
        if not os.path.isfile(path):
            continue
        for line in Path(path).read_text(errors="replace").splitlines():
            parts = re.sub(r"\[[^\]]*\]", "", line).split()
            if len(parts) >= 3 and parts[0] == "deb" and "security" not in parts[2] and "debian" in parts[1]:
                candidates.append(parts[1])
    if not candidates:
        raise ImageBuildError(
            "no Debian mirror found in /etc/apt/sources.list[.d]; set ABACO_NB_DEBIAN_MIRROR to one"
        )
    return candidates[0]


def build_debian_base(client: Any, python_minor: str, force: bool = False, log: Log = print) -> str:
    """``abaco-nb/py3-base:<suite>-<minor>``: debootstrap minbase + python3-minimal + stdlib, trimmed.

    Needs root (debootstrap) and the machine's Debian mirror; ~30 s once per machine, then cached.
    """
    suite = DEBIAN_SUITE_FOR_PYTHON.get(python_minor)
    if suite is None:
        known = ", ".join(f"{p} ({s})" for p, s in DEBIAN_SUITE_FOR_PYTHON.items())
        raise ImageBuildError(
            f"the kernel runs Python {python_minor}, which no Debian release ships as python3 "
            f"(known: {known}). Functions pickled by Python {python_minor} only run under the same minor "
            f"version: pass a registry base with it (ABACO_NB_BASE_IMAGE=python:{python_minor}-slim) "
            "or run the kernel on one of the versions above."
        )
    ref = f"{BASE_REPO}:{suite}-{python_minor}"
    content_hash = hashlib.sha256(
        f"debian-base/{RECIPE_VERSION}/{suite}/{python_minor}".encode()
    ).hexdigest()[:16]
    if not force and _cached(client, ref, content_hash):
        log(f"{ref}: up to date")
        return ref
    debootstrap = shutil.which("debootstrap") or (
        "/usr/sbin/debootstrap" if os.path.exists("/usr/sbin/debootstrap") else None
    )
    if debootstrap is None:
        raise ImageBuildError(
            "debootstrap not found: the executor image's base is made from Debian packages. "
            "Install it with `apt-get install debootstrap`."
        )
    if os.geteuid() != 0:
        raise ImageBuildError("debootstrap needs root: run `abaco-nb images build` as root (or with sudo)")
    mirror = debian_mirror()
    t0 = time.monotonic()
    log(f"{ref}: debootstrap {suite} (minbase + python{python_minor}), takes ~30 s ...")
    with tempfile.TemporaryDirectory(prefix="abaco-nb-rootfs-") as tmp:
        rootfs = os.path.join(tmp, "rootfs")
        include = f"python3-minimal,libpython{python_minor}-stdlib"
        proc = subprocess.run(
            [debootstrap, "--variant=minbase", f"--include={include}", suite, rootfs, mirror],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise ImageBuildError(
                f"debootstrap failed (exit {proc.returncode}) with mirror {mirror}:\n{tail}"
            )
        if not os.path.exists(os.path.join(rootfs, f"usr/bin/python{python_minor}")):
            raise ImageBuildError(
                f"debootstrap {suite} gave no python{python_minor}; the image's Python must equal the "
                f"kernel's ({python_minor})"
            )
        for trim in (
            "var/cache/apt",
            "usr/share/locale",
            "usr/share/doc",
            "usr/share/man",
            "var/lib/apt/lists",
        ):
            path = os.path.join(rootfs, trim)
            if os.path.isdir(path):
                for entry in os.listdir(path):
                    full = os.path.join(path, entry)
                    if os.path.isdir(full) and not os.path.islink(full):
                        shutil.rmtree(full, ignore_errors=True)
                    else:
                        os.unlink(full)
        tar_path = os.path.join(tmp, "rootfs.tar")
        subprocess.run(["tar", "-C", rootfs, "-cf", tar_path, "."], check=True)
        client.api.import_image(
            src=tar_path,
            repository=BASE_REPO,
            tag=f"{suite}-{python_minor}",
            changes=[
                "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8",
                f"LABEL {LABEL_HASH}={content_hash} {LABEL_PYTHON}={python_minor} {LABEL_KIND}=base",
                'CMD ["python3"]',
            ],
        )
    log(f"{ref}: built in {time.monotonic() - t0:.1f} s")
    return ref


def _package_dir(name: str) -> Path:
    """Directory of an installed package, found without importing it (abaco_nb must not be imported
    from server_ext)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ImageBuildError(f"package {name} is not installed in {sys.executable}")
    return Path(list(spec.submodule_search_locations)[0])


def _image_package_files() -> list[tuple[str, bytes]]:
    """``(path under IMAGE_LIB_DIR, content)`` of the Python sources copied into the executor image."""
    files: list[tuple[str, bytes]] = []
    cp_dir = _package_dir("cloudpickle")
    for src in sorted(cp_dir.rglob("*.py")):
        files.append((f"cloudpickle/{src.relative_to(cp_dir)}", src.read_bytes()))
    here = Path(__file__).resolve().parents[2] / "abaco_nb"
    nb_dir = here if here.is_dir() else _package_dir("abaco_nb")
    files.append(("abaco_nb/__init__.py", IMAGE_PACKAGE_INIT.encode()))
    for name in IMAGE_PACKAGE_FILES:
        path = nb_dir / name
        if not path.is_file():
            raise ImageBuildError(f"{path} is missing: the executor image needs abaco_nb/{name}")
        files.append((f"abaco_nb/{name}", path.read_bytes()))
    return files


def _compiled(name: str, source: bytes, tmp: str) -> tuple[str, bytes]:
    """A hash-checked .pyc made by this interpreter (same minor version as the image's, checked), so
    the runner does not recompile cloudpickle on every execution in a container whose tree is fresh."""
    src = os.path.join(tmp, "src.py")
    Path(src).write_bytes(source)
    out = os.path.join(tmp, "out.pyc")
    py_compile.compile(
        src,
        cfile=out,
        dfile=f"{IMAGE_LIB_DIR}/{name}",
        doraise=True,
        invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH,
    )
    d, base = os.path.split(name)
    pyc = os.path.join(d, "__pycache__", f"{base[:-3]}.{sys.implementation.cache_tag}.pyc")
    return pyc, Path(out).read_bytes()


def _base_python_minor(client: Any, base: str) -> str:
    """Python minor version inside a base image: its label, else by running it once."""
    labels = client.api.inspect_image(base)["Config"].get("Labels") or {}
    if labels.get(LABEL_PYTHON):
        return str(labels[LABEL_PYTHON])
    out: bytes = client.containers.run(
        base,
        ["python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        remove=True,
        network_mode="none",
    )
    return out.decode().strip()


def _ensure_registry_base(client: Any, base: str, log: Log) -> str:
    import docker

    try:
        client.api.inspect_image(base)
    except docker.errors.ImageNotFound:
        log(f"{base}: pulling ...")
        try:
            client.images.pull(base)
        except docker.errors.APIError as exc:
            raise ImageBuildError(
                f"base image {base} is not present and cannot be pulled ({exc.explanation or exc}); "
                "unset ABACO_NB_BASE_IMAGE to build the base from Debian packages instead"
            ) from exc
    return base


def build_func_image(
    client: Any, force: bool = False, log: Log = print, base_image: str | None = None
) -> str:
    """``abaco-nb/py3-func:<minor>-<cloudpickle>`` (and ``:latest``): base + cloudpickle + runner."""
    python_minor, cp_version = kernel_versions()
    version_tag = func_image_tag(python_minor, cp_version)
    ref = f"{FUNC_IMAGE}:{version_tag}"

    if base_image:
        base = _ensure_registry_base(client, base_image, log)
    else:
        base = build_debian_base(client, python_minor, force=force, log=log)
    base_minor = _base_python_minor(client, base)
    if base_minor != python_minor:
        raise ImageBuildError(
            f"base image {base} has Python {base_minor} but the kernel runs {python_minor}; "
            "functions only unpickle under the same minor version"
        )
    base_id = client.api.inspect_image(base)["Id"]

    files = _image_package_files()
    h = hashlib.sha256(f"py3-func/{RECIPE_VERSION}/{base_id}/{python_minor}/{cp_version}".encode())
    _hash_files(h, files)
    content_hash = h.hexdigest()[:16]
    image_id = None if force else _cached(client, ref, content_hash)
    previous = _image_id(client, ref)
    if image_id:
        log(f"{ref}: up to date")
    else:
        t0 = time.monotonic()
        dockerfile = "\n".join(
            [
                f"FROM {base}",
                f"COPY lib {IMAGE_LIB_DIR}",
                f"ENV PYTHONPATH={IMAGE_LIB_DIR} PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1",
                f'LABEL {LABEL_PYTHON}="{python_minor}" {LABEL_CLOUDPICKLE}="{cp_version}" '
                f'{LABEL_HASH}="{content_hash}" {LABEL_KIND}="py3-func"',
                'CMD ["python3", "-m", "abaco_nb.func_runner"]',
                "",
            ]
        )
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar, tempfile.TemporaryDirectory() as tmp:

            def add(name: str, data: bytes) -> None:
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))

            add("Dockerfile", dockerfile.encode())
            for name, data in files:
                add(f"lib/{name}", data)
                pyc_name, pyc = _compiled(name, data, tmp)
                add(f"lib/{pyc_name}", pyc)
        buf.seek(0)
        try:
            image, _ = client.images.build(
                fileobj=buf, custom_context=True, tag=ref, rm=True, forcerm=True, pull=False
            )
        except Exception as exc:  # docker.errors.BuildError / APIError: say which image failed
            raise ImageBuildError(f"building {ref} failed: {exc}") from exc
        image_id = image.id
        log(f"{ref}: built in {time.monotonic() - t0:.1f} s")
    client.api.tag(image_id, FUNC_IMAGE, "latest")
    if previous and previous != image_id:
        _remove_quietly(client, previous)
    return ref


def _image_id(client: Any, ref: str) -> str | None:
    import docker

    try:
        return str(client.api.inspect_image(ref)["Id"])
    except docker.errors.ImageNotFound:
        return None


def _remove_quietly(client: Any, image_id: str) -> None:
    """Drop an image a rebuild replaced, so rebuilds do not pile up dangling images; an image still used
    by a container (or by another tag) stays."""
    import docker

    try:
        client.api.remove_image(image_id, noprune=False)
    except docker.errors.APIError:
        pass
