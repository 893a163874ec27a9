"""The ``docker`` runtime: one fresh container per execution, Abaco's container contract.

Each execution is a new container of the actor's image running the image's own CMD (no command is
passed), with the execution's environment, labels that tie it to this service, actor, execution and
worker, and bind mounts for the binary message (``/_abaco_binary_data``, read-only regular file), the
results socket (``/_abaco_results.sock``, read-only; sending datagrams still works) and the service's API
socket (``/_abaco_api.sock``). Containers are unprivileged, drop a few capabilities, cannot gain privileges,
have memory/CPU/pid limits and no network unless the actor is configured otherwise.

Start latency matters (goal: under 10% over a bare ``docker run --rm``), so ``start`` is exactly two
API calls (create, start) and nothing is inspected up front. Per running container two daemon threads
watch it: one blocks in Docker's ``wait`` so an exit is seen at once (``wait()`` just waits on an
event), one samples ``stats`` about once a second for ``cpu``/``io`` — neither slows the execution.

``cpu`` is the last sampled ``cpu_stats.cpu_usage.total_usage`` (cumulative nanoseconds, so it
under-counts by at most one sampling interval; Abaco summed cumulative samples and over-counted).
``io`` is the last sampled bytes of block I/O (read + write) plus network bytes received over all
interfaces; Abaco used only ``eth0`` rx bytes, which is always 0 with networking off, the default here.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import docker
import docker.errors
import requests

from .base import (
    API_SOCKET_PATH,
    BINARY_DATA_PATH,
    LABEL_ACTOR,
    LABEL_EXECUTION,
    LABEL_SERVICE,
    LABEL_WORKER,
    RESULTS_SOCKET_PATH,
    STATE_KEYS,
    ExitInfo,
    ImageCheck,
    Leftover,
    RunningRef,
    RunSpec,
    RuntimeFailure,
    RuntimeUnreachable,
)
from .warm import LABEL_WARM, WarmPool, WarmUnavailable

log = logging.getLogger(__name__)

# Capabilities of Docker's default set that an actor has no business with. SETUID/SETGID/CHOWN/
# DAC_OVERRIDE stay: images that switch users (gosu, su) or fix file ownership at start need them.
DEFAULT_CAP_DROP = ("NET_RAW", "MKNOD", "AUDIT_WRITE", "SETFCAP", "SYS_CHROOT")

# Images we build locally (`abaco-nb images build`) and that no registry has.
LOCAL_IMAGE_PREFIX = "abaco-nb/"


@dataclass
class _Watch:
    """What the runtime knows about one container while it supervises it."""

    container_id: str
    exited: threading.Event = field(default_factory=threading.Event)
    gone: bool = False  # the container vanished before its exit could be read
    cpu: int = 0
    io: int = 0
    exit_info: ExitInfo | None = None
    last_logs: str = ""
    stop_sampling: threading.Event = field(default_factory=threading.Event)


# What the Docker SDK raises when the engine does not answer (socket gone, refused, cut mid-call).
# A connection cut after the headers came (a body read broken off) is the same outage.
UNREACHABLE = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
)


def unreachable(exc: Exception) -> RuntimeUnreachable:
    return RuntimeUnreachable(f"the Docker engine does not answer: {exc}")


def _unlimited(value: Any) -> bool:
    return value is None or str(value).strip() in ("-1", "", "0")


class DockerRuntime:
    """Runs executions as Docker containers through the Docker SDK (see module docstring)."""

    name = "docker"

    def __init__(
        self,
        client: Any = None,
        default_mem_limit: str | None = "1g",
        default_nano_cpus: int | None = 1_000_000_000,
        pids_limit: int | None = 4096,
        network_mode: str = "none",
        cap_drop: tuple[str, ...] | list[str] = DEFAULT_CAP_DROP,
        stats_interval: float = 1.0,
        pull_timeout: float = 300.0,
        name_containers: bool = True,
        warm_dir: str | None = None,
        warm_idle_seconds: float = 300.0,
    ) -> None:
        self.client = client or docker.from_env(timeout=60)
        self.api = self.client.api
        self.default_mem_limit = default_mem_limit
        self.default_nano_cpus = default_nano_cpus
        self.pids_limit = pids_limit
        self.network_mode = network_mode
        self.cap_drop = list(cap_drop)
        self.stats_interval = stats_interval
        self.pull_timeout = pull_timeout
        self.name_containers = name_containers
        self._watches: dict[str, _Watch] = {}
        self._lock = threading.Lock()
        # Warm containers for executions that allow them (RunSpec.warm); see runtimes/warm.py.
        self.warm = WarmPool(self.api, warm_dir, idle_seconds=warm_idle_seconds)

    def close(self) -> None:
        """The service is stopping: no warm container outlives it."""
        self.warm.close()

    def reattached(self, run: RunningRef, results_socket: str, api_socket: str | None) -> None:
        """Containers hold the old paths by bind mount: nothing to redirect."""

    def release_actor(self, actor_id: str) -> None:
        """The actor was deleted or has a new revision: its warm containers go now, not when idle."""
        self.warm.release_actor(actor_id)

    def image_versions(self, image: str) -> dict[str, str] | None:
        """The versions the image's labels declare (``abaco-nb images build`` sets them)."""
        from .. import images

        try:
            return images.image_versions(image, docker_client=self.client)
        except Exception:  # an image that cannot be read declares nothing
            return None

    # -----------------------------------------------------------------------------------------------------
    # Images
    # -----------------------------------------------------------------------------------------------------

    def check_image(self, image: str, pull: bool = False) -> ImageCheck:
        """Present locally → ok (unless ``pull``); else pull. A failed pull says why and, for our own
        images, that they are built with ``abaco-nb images build``. RuntimeUnreachable when the engine
        does not answer: the image's state is unknown, not bad."""
        try:
            present = self._image_present(image)
        except UNREACHABLE as exc:
            raise unreachable(exc) from exc
        if present and not pull:
            return ImageCheck(True)
        if image.startswith(LOCAL_IMAGE_PREFIX):
            # Our own images exist on no registry; pulling the name could fetch a stranger's image.
            if present:
                return ImageCheck(True)
            return ImageCheck(
                False,
                f"image {image} is not present on this Docker engine; abaco-nb images are built on this "
                "machine, not pulled: run `abaco-nb images build`",
            )
        error = self._pull(image)
        if error is None:
            return ImageCheck(True)
        if present:
            # PUT/force re-pulls; an image that only exists locally (ours, or a user's build) stays usable.
            return ImageCheck(True, f"could not pull {image} again ({error}); using the local image")
        return ImageCheck(
            False, f"image {image} is not present on this Docker engine and could not be pulled: {error}"
        )

    def _image_present(self, image: str) -> bool:
        try:
            self.api.inspect_image(image)
            return True
        except docker.errors.ImageNotFound:
            return False
        except docker.errors.APIError as exc:  # e.g. an invalid reference: the pull will say more
            log.debug("inspect_image %s: %s", image, exc)
            return False

    def _pull(self, image: str) -> str | None:
        """Pull ``image``; None on success, else the reason. Bounded by ``pull_timeout`` so a registry
        that never answers cannot hold a worker forever."""
        repository, tag = docker.utils.parse_repository_tag(image)
        if not tag and "@" not in image:
            tag = "latest"
        outcome: dict[str, str | None] = {}

        def pull() -> None:
            try:
                self.api.pull(repository, tag=tag or None)
                outcome["error"] = None
            except docker.errors.APIError as exc:
                outcome["error"] = str(exc.explanation or exc)
            except Exception as exc:  # connection errors, invalid references
                outcome["error"] = str(exc)

        thread = threading.Thread(target=pull, name=f"pull {image}", daemon=True)
        thread.start()
        thread.join(self.pull_timeout)
        if thread.is_alive():
            return f"no answer from the registry within {self.pull_timeout:.0f} s"
        return outcome.get("error", "pull did not finish")

    # -----------------------------------------------------------------------------------------------------
    # Executions
    # -----------------------------------------------------------------------------------------------------

    def _binds(self, spec: RunSpec, contract: bool = True) -> dict[str, dict[str, str]]:
        binds: dict[str, dict[str, str]] = {}

        def bind(host: str, container: str, mode: str, what: str) -> None:
            # A missing source would make Docker create an empty *directory* there: refuse instead.
            if not os.path.exists(host):
                raise RuntimeFailure(
                    f"cannot start execution {spec.execution_id}: {what} {host} does not exist"
                )
            binds[host] = {"bind": container, "mode": mode}

        for mount in spec.mounts:
            mode = mount.get("mode") or mount.get("format") or "ro"
            bind(mount["host_path"], mount["container_path"], "rw" if mode == "rw" else "ro", "mount")
        # A warm container (contract=False) binds its own per-container files instead (runtimes/warm.py).
        if spec.results_socket and contract:
            bind(spec.results_socket, RESULTS_SOCKET_PATH, "ro", "results socket")
        if spec.binary_path:
            if not os.path.isfile(spec.binary_path):
                raise RuntimeFailure(f"binary message {spec.binary_path} is not a regular file")
            if contract:
                bind(spec.binary_path, BINARY_DATA_PATH, "ro", "binary message")
        if spec.api_socket and contract:
            bind(spec.api_socket, API_SOCKET_PATH, "ro", "API socket")
        if spec.privileged and os.path.exists("/var/run/docker.sock"):
            binds["/var/run/docker.sock"] = {"bind": "/var/run/docker.sock", "mode": "rw"}
        return binds

    def _limits(self, spec: RunSpec) -> tuple[str | None, int | None]:
        mem = spec.mem_limit if spec.mem_limit is not None else self.default_mem_limit
        cpus = spec.max_cpus if spec.max_cpus is not None else self.default_nano_cpus
        return mem, cpus

    def _host_config(self, spec: RunSpec, contract: bool = True) -> dict[str, Any]:
        mem, cpus = self._limits(spec)
        kwargs: dict[str, Any] = {
            "binds": self._binds(spec, contract),
            # network_mode applies to every container; an actor configured with networking gets the
            # default bridge when the runtime default is "none".
            "network_mode": "bridge" if spec.network and self.network_mode == "none" else self.network_mode,
            "privileged": bool(spec.privileged),
        }
        if not _unlimited(mem):
            kwargs["mem_limit"] = mem
            kwargs["memswap_limit"] = mem  # no swap beyond the limit: the limit means what it says
        if cpus is not None and not _unlimited(cpus):
            kwargs["nano_cpus"] = int(cpus)
        if not spec.privileged:
            kwargs["cap_drop"] = self.cap_drop
            kwargs["security_opt"] = ["no-new-privileges"]
            if self.pids_limit:
                kwargs["pids_limit"] = self.pids_limit
        host_config: dict[str, Any] = self.api.create_host_config(**kwargs)  # docker-py's HostConfig(dict)
        return host_config

    def start(self, spec: RunSpec) -> RunningRef:
        """A warm container's fork when the execution allows it and one can take it; else create and
        start a fresh container (two API calls). Raise RuntimeFailure with a readable reason."""
        if spec.warm:
            self._binds(spec)  # the same checks (missing files) as for a fresh container
            try:
                return self.warm.start(spec, self._warm_key(spec), lambda: self._host_config(spec, False))
            except WarmUnavailable as exc:
                log.info("execution %s gets a fresh container: %s", spec.execution_id, exc)
        return self._start_fresh(spec)

    def _warm_key(self, spec: RunSpec) -> tuple[Any, ...]:
        """Executions share a warm container only when a fresh one would be made the same way."""
        mounts = tuple(sorted(tuple(sorted(m.items())) for m in spec.mounts))
        return (
            spec.actor_id,
            spec.image,
            *self._limits(spec),
            spec.network,
            spec.privileged,
            spec.user,
            spec.api_socket,
            mounts,
        )

    def _start_fresh(self, spec: RunSpec) -> RunningRef:
        labels = {
            LABEL_SERVICE: spec.service_id,
            LABEL_ACTOR: spec.actor_id,
            LABEL_EXECUTION: spec.execution_id,
            LABEL_WORKER: spec.worker_id,
        }
        environment = {str(k): "" if v is None else str(v) for k, v in spec.environment.items()}
        host_config = self._host_config(spec)
        name = f"abaco-nb_{spec.actor_id}_{spec.execution_id}" if self.name_containers else None
        create = {
            "image": spec.image,
            "environment": environment,
            "labels": labels,
            "host_config": host_config,
            "user": spec.user or None,
            "detach": True,
        }
        try:
            try:
                container = self.api.create_container(name=name, **create)
            except docker.errors.APIError as exc:
                if exc.status_code != 409 or name is None:
                    raise
                # The name is held by an earlier attempt at this execution: names are cosmetic, go on.
                container = self.api.create_container(**create)
        except UNREACHABLE as exc:  # it may have been created: find_leftovers tells, later
            raise unreachable(exc) from exc
        except docker.errors.ImageNotFound as exc:
            raise RuntimeFailure(self._missing_image_message(spec.image)) from exc
        except docker.errors.APIError as exc:
            raise RuntimeFailure(
                f"cannot create a container of {spec.image}: {exc.explanation or exc}"
            ) from exc
        container_id = container["Id"]
        try:
            self.api.start(container_id)
        except UNREACHABLE as exc:  # it may have started: never remove it blindly (it may have run)
            raise unreachable(exc) from exc
        except docker.errors.APIError as exc:
            self._remove_container(container_id)
            raise RuntimeFailure(
                f"cannot start a container of {spec.image}: {exc.explanation or exc}"
            ) from exc
        self._watch(container_id)
        return RunningRef(execution_id=spec.execution_id, ref=container_id, extra={"image": spec.image})

    def _missing_image_message(self, image: str) -> str:
        message = f"image {image} is not present on this Docker engine"
        if image.startswith(LOCAL_IMAGE_PREFIX):
            message += "; run `abaco-nb images build`"
        return message

    def _watch(self, container_id: str) -> _Watch:
        """Start (once) the threads that see the container's exit and sample its stats."""
        with self._lock:
            watch = self._watches.get(container_id)
            if watch is not None:
                return watch
            watch = self._watches[container_id] = _Watch(container_id)
        threading.Thread(
            target=self._wait_thread, args=(watch,), name=f"docker-wait {container_id[:12]}", daemon=True
        ).start()
        threading.Thread(
            target=self._stats_thread, args=(watch,), name=f"docker-stats {container_id[:12]}", daemon=True
        ).start()
        return watch

    def _wait_thread(self, watch: _Watch) -> None:
        """Block in Docker's wait (no timeout) until the container stops; retry transient failures."""
        while not watch.exited.is_set():
            try:
                self.api.wait(watch.container_id, timeout=None)
                break
            except docker.errors.NotFound:
                watch.gone = True
                break
            except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
                log.warning("waiting for container %s: %s; retrying", watch.container_id[:12], exc)
                time.sleep(1.0)
        watch.stop_sampling.set()
        watch.exited.set()

    def _stats_thread(self, watch: _Watch) -> None:
        """Sample cumulative cpu and io while the container runs. Docker publishes stats once a second,
        so each call may block up to a second; that is why this is its own thread."""
        if watch.stop_sampling.wait(min(0.5, self.stats_interval)):
            return
        while not watch.stop_sampling.is_set():
            try:
                stats = self.api.stats(watch.container_id, stream=False, one_shot=True)
            except Exception:  # the container ended or vanished: nothing more to sample
                return
            cpu = int(((stats.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage") or 0)
            blkio = (stats.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []
            io = sum(
                int(e.get("value") or 0) for e in blkio if str(e.get("op", "")).lower() in ("read", "write")
            )
            io += sum(int(n.get("rx_bytes") or 0) for n in (stats.get("networks") or {}).values())
            # Counters read as 0 once the container has stopped: keep the last real sample.
            if cpu > watch.cpu:
                watch.cpu = cpu
            if io > watch.io:
                watch.io = io
            if watch.stop_sampling.wait(self.stats_interval):
                return

    def wait(self, run: RunningRef, timeout: float) -> ExitInfo | None:
        """The exit facts once the container has stopped (read once, then cached), else None."""
        if run.extra.get("warm"):
            return self.warm.wait(run, timeout)
        watch = self._watch(run.ref)
        if not watch.exited.wait(max(0.0, timeout)):
            return None
        if watch.exit_info is None:
            watch.exit_info = self._exit_info(watch)
        return watch.exit_info

    def _exit_info(self, watch: _Watch) -> ExitInfo:
        try:
            state = self.api.inspect_container(watch.container_id)["State"]
        except docker.errors.NotFound:
            state = None
        except UNREACHABLE as exc:  # not cached: the next wait() reads it once Docker answers
            raise unreachable(exc) from exc
        if state is None or watch.gone:
            final: dict[str, Any] = {k: None for k in STATE_KEYS}
            final.update(
                Status="removed",
                Running=False,
                Error=f"container {watch.container_id[:12]} was removed before its exit status was read",
            )
            return ExitInfo(exit_code=-1, final_state=final, cpu=watch.cpu, io=watch.io)
        final_state = {k: state.get(k) for k in STATE_KEYS}
        return ExitInfo(
            exit_code=int(state.get("ExitCode", -1)), final_state=final_state, cpu=watch.cpu, io=watch.io
        )

    def logs(self, run: RunningRef) -> str:
        """Combined stdout and stderr so far; after removal, the last logs read."""
        if run.extra.get("warm"):
            return self.warm.logs(run)
        watch = self._watches.get(run.ref)
        try:
            raw: bytes = self.api.logs(run.ref, stdout=True, stderr=True, stream=False)
            text = raw.decode("utf-8", "replace")
        except UNREACHABLE as exc:
            raise unreachable(exc) from exc
        except docker.errors.NotFound:
            return watch.last_logs if watch else ""
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: being removed; its last logs read are what there is
                raise RuntimeFailure(
                    f"cannot read the logs of {run.ref[:12]}: {exc.explanation or exc}"
                ) from exc
            return watch.last_logs if watch else ""
        if watch is not None:
            watch.last_logs = text
        return text

    def stop(self, run: RunningRef, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds (Docker's stop); a stopped container is fine."""
        if run.extra.get("warm"):
            self.warm.stop(run, grace)
            return
        try:
            if grace <= 0:
                self.api.kill(run.ref)
            else:
                self.api.stop(run.ref, timeout=max(1, math.ceil(grace)))
        except UNREACHABLE as exc:
            raise unreachable(exc) from exc
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code not in (304, 409):  # not running / being removed
                raise RuntimeFailure(
                    f"cannot stop container {run.ref[:12]}: {exc.explanation or exc}"
                ) from exc

    def remove(self, run: RunningRef) -> None:
        """Remove the container (force: also when still running). Idempotent."""
        if run.extra.get("warm"):
            self.warm.remove(run)
            return
        watch = self._watches.pop(run.ref, None)
        if watch is not None:
            watch.stop_sampling.set()
        self._remove_container(run.ref)

    def _remove_container(self, container_id: str) -> None:
        try:
            self.api.remove_container(container_id, force=True)
        except UNREACHABLE as exc:
            raise unreachable(exc) from exc
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: removal already in progress
                raise RuntimeFailure(
                    f"cannot remove container {container_id[:12]}: {exc.explanation or exc}"
                ) from exc

    def find_leftovers(self, service_id: str) -> list[Leftover]:
        """Containers of this service (by label) that still exist, running or not. A warm container of
        an earlier run is reported as never started under its own name, so recovery removes it (its
        executions cannot be re-attached: their zygote was the earlier run's)."""
        try:
            found = self.api.containers(all=True, filters={"label": f"{LABEL_SERVICE}={service_id}"})
        except UNREACHABLE as exc:
            raise unreachable(exc) from exc
        ours = set(self.warm.container_ids())
        leftovers = []
        for c in found:
            labels = c.get("Labels") or {}
            if labels.get(LABEL_WARM):
                if c["Id"] not in ours:
                    leftovers.append(Leftover(f"warm-{c['Id'][:12]}", c["Id"], False, started=False))
                continue
            leftovers.append(
                Leftover(
                    execution_id=labels.get(LABEL_EXECUTION, ""),
                    ref=c["Id"],
                    running=c.get("State") == "running",
                    started=c.get("State") != "created",
                )
            )
        return leftovers

    def attach(self, leftover: Leftover) -> RunningRef:
        """Supervise a container an earlier run of the service started."""
        self._watch(leftover.ref)
        return RunningRef(execution_id=leftover.execution_id, ref=leftover.ref, extra={"attached": True})
