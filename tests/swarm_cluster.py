"""A two-node Docker Swarm of private daemons, for the swarm runtime's tests and benchmark.

Never touches the machine's own Docker. Each node is a ``dockerd`` started by ``unshare`` in its own
network, mount and hostname namespaces (``dockerd --bridge=none`` deletes any ``docker0`` in the
namespace it starts in, and two daemons in one namespace break overlay networks), with its own
``--config-file`` (so ``/etc/docker/daemon.json`` is not read), data root (a tmpfs of its mount
namespace), exec root, pidfile, unix sockets, key file and cgroup parent, ``--bridge=none`` and
``--iptables=false``. A veth pair joins the two network namespaces and carries 127.0.0.2 (node a, the
manager) and 127.0.0.3 (node b); each namespace keeps only 127.0.0.1 on its ``lo`` so the other's
loopback-range address routes over the veth (``route_localnet``). Each mount namespace has its own
tmpfs at ``<base>/node``: the agents' directory and a second socket of that node's Docker, at the same
path on both nodes and different files on each, as on two machines.

Debian's ``docker-registry`` serves on 127.0.0.2:5000 in node a's network namespace; our images are
copied from the system daemon (``docker save``, read-only for it) into node a and pushed there with
``abaco-nb images push``; node b pulls them. ``stop()`` (also at exit) stops the daemons, kills whatever
is left in their network namespaces, removes their cgroups and the base directory; the namespaces and
their mounts vanish with their last process.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.serve import Served

REGISTRY_PORT = 5000
TOOLS = ("dockerd", "unshare", "nsenter", "ip", "docker", "docker-registry")


def missing_requirements() -> str:
    """Why private daemons cannot run here, or '' when they can."""
    if os.geteuid() != 0:
        return "private Docker daemons need root (namespaces, mounts, veth)"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return f"missing {', '.join(missing)} (scripts/setup.d/50-swarm.sh installs docker-registry)"
    probe = subprocess.run(["unshare", "--net", "--mount", "--uts", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot create namespaces: {probe.stderr.strip()}"
    probe = subprocess.run(
        ["unshare", "--net", "sh", "-c", "ip link add vx0 type vxlan id 42 dstport 4789"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        return f"no vxlan in this kernel (overlay networks): {probe.stderr.strip()}"
    return ""


@dataclass
class PrivateNode:
    name: str
    addr: str
    dir: Path
    holder: subprocess.Popen[bytes] | None = None
    pid: int = 0  # dockerd's pid, inside the namespaces
    netns_inode: int = 0

    @property
    def socket(self) -> str:
        return str(self.dir / "docker.sock")

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket}"

    def client(self):  # type: ignore[no-untyped-def]
        import docker

        return docker.DockerClient(base_url=self.docker_host, timeout=120)

    def nsenter(self) -> list[str]:
        return ["nsenter", "-t", str(self.pid), "-n"]


@dataclass
class Cluster:
    base: Path
    nodes: list[PrivateNode] = field(default_factory=list)
    registry_proc: subprocess.Popen[bytes] | None = None
    others: list[subprocess.Popen[bytes]] = field(default_factory=list)  # services started in the nodes
    stopped: bool = False

    @property
    def manager(self) -> PrivateNode:
        return self.nodes[0]

    @property
    def registry(self) -> str:
        return f"{self.manager.addr}:{REGISTRY_PORT}"

    @property
    def node_dir(self) -> str:
        """Same path on every node, a different tmpfs on each."""
        return str(self.base / "node")

    # -- start ---------------------------------------------------------------------------------------

    def _start_daemon(self, node: PrivateNode, cgroup: str) -> None:
        node.dir.mkdir(parents=True)
        for sub in ("data", "exec"):
            (node.dir / sub).mkdir()
        config = node.dir / "daemon.json"
        config.write_text('{"deprecated-key-path": "%s"}\n' % (node.dir / "key.json"))
        script = node.dir / "inner.sh"
        script.write_text(f"""#!/bin/sh
set -e
hostname abnb-node-{node.name}
mount -t tmpfs -o size=4g tmpfs {node.dir}/data
mount -t tmpfs tmpfs {self.node_dir}
mkdir -p {self.node_dir}/agent
mount -t tmpfs tmpfs /run/docker
ip link set lo up
ip addr del 127.0.0.1/8 dev lo
ip addr add 127.0.0.1/32 dev lo
exec dockerd --config-file {config} --data-root {node.dir}/data --exec-root {node.dir}/exec \\
  --pidfile {node.dir}/docker.pid -H unix://{node.socket} -H unix://{self.node_dir}/docker.sock \\
  --bridge=none --iptables=false --ip-masq=false --userland-proxy=false --cgroup-parent=/{cgroup} \\
  --storage-driver overlay2 --log-level warn
""")
        log = open(node.dir / "dockerd.log", "wb")
        node.holder = subprocess.Popen(
            [
                "unshare",
                "--net",
                "--mount",
                "--uts",
                "--propagation",
                "private",
                "--fork",
                "--kill-child",
                "sh",
                str(script),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _wait_daemon(self, node: PrivateNode, deadline: float) -> None:
        import docker

        while True:
            if node.holder is not None and node.holder.poll() is not None:
                raise RuntimeError(f"dockerd of node {node.name} exited: {self._log(node)}")
            try:
                node.pid = int((node.dir / "docker.pid").read_text())
                docker.DockerClient(base_url=node.docker_host, timeout=5).ping()
                node.netns_inode = os.stat(f"/proc/{node.pid}/ns/net").st_ino
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"dockerd of node {node.name} did not answer: {self._log(node)}"
                    ) from None
                time.sleep(0.2)

    def _log(self, node: PrivateNode) -> str:
        try:
            return (node.dir / "dockerd.log").read_text()[-3000:]
        except OSError:
            return ""

    def _link(self) -> None:
        a, b = self.nodes
        run = lambda *cmd: subprocess.run(cmd, check=True, capture_output=True)  # noqa: E731
        run(
            *a.nsenter(),
            "ip",
            "link",
            "add",
            "veth-a",
            "type",
            "veth",
            "peer",
            "name",
            "veth-b",
            "netns",
            f"/proc/{b.pid}/ns/net",
        )
        for node, dev, peer in ((a, "veth-a", b.addr), (b, "veth-b", a.addr)):
            script = (
                f"ip link set {dev} up && ip addr add {node.addr}/32 dev {dev} && "
                f"ip route add {peer}/32 dev {dev} src {node.addr} && "
                f"sysctl -qw net.ipv4.conf.all.route_localnet=1 net.ipv4.conf.{dev}.route_localnet=1 "
                f"net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.{dev}.rp_filter=0"
            )
            run(*node.nsenter(), "sh", "-c", script)

    def _swarm(self) -> None:
        a, b = self.nodes
        ca, cb = a.client(), b.client()
        ca.swarm.init(advertise_addr=a.addr, listen_addr=f"{a.addr}:2377")
        token = ca.swarm.attrs["JoinTokens"]["Worker"]
        cb.swarm.join(
            remote_addrs=[f"{a.addr}:2377"],
            join_token=token,
            advertise_addr=b.addr,
            listen_addr=f"{b.addr}:2377",
        )
        deadline = time.monotonic() + 60
        while len([n for n in ca.nodes.list() if n.attrs["Status"]["State"] == "ready"]) < 2:
            if time.monotonic() > deadline:
                raise RuntimeError("node b did not become ready in the swarm")
            time.sleep(0.2)

    def _start_registry(self) -> None:
        reg = self.base / "registry"
        reg.mkdir()
        (reg / "config.yml").write_text(
            f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {reg}/data\n"
            f"  delete:\n    enabled: true\nhttp:\n  addr: {self.registry}\n"
        )
        log = open(reg / "registry.log", "wb")
        self.registry_proc = subprocess.Popen(
            [*self.manager.nsenter(), "docker-registry", "serve", str(reg / "config.yml")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        probe = (
            f"import socket; socket.create_connection(('{self.manager.addr}', {REGISTRY_PORT}), timeout=1)"
        )
        deadline = time.monotonic() + 30
        while subprocess.run(
            [*self.manager.nsenter(), sys.executable, "-c", probe], capture_output=True
        ).returncode:
            if time.monotonic() > deadline:
                raise RuntimeError(f"docker-registry did not start: {(reg / 'registry.log').read_text()}")
            time.sleep(0.2)

    def load_images(self, names: list[str]) -> None:
        """Copy images from the system daemon (``docker save`` only reads it) into the manager node."""
        save = subprocess.Popen(["docker", "save", *names], stdout=subprocess.PIPE)
        load = subprocess.run(
            ["docker", "-H", self.manager.docker_host, "load", "-q"],
            stdin=save.stdout,
            capture_output=True,
            text=True,
        )
        assert save.stdout is not None
        save.stdout.close()
        if save.wait() != 0 or load.returncode != 0:
            raise RuntimeError(f"copying {names} into the private daemon failed: {load.stderr}")

    def push_images(self) -> str:
        """``abaco-nb images push --registry`` against the manager node's Docker: the real command."""
        out = subprocess.run(
            [sys.executable, "-m", "server_ext", "images", "push", "--registry", self.registry],
            env={**os.environ, "DOCKER_HOST": self.manager.docker_host},
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            raise RuntimeError(f"abaco-nb images push failed: {out.stdout}{out.stderr}")
        return out.stdout

    def label(self, node: PrivateNode, key: str, value: str) -> None:
        client = self.manager.client()
        target = next(
            n for n in client.nodes.list() if n.attrs["Description"]["Hostname"] == f"abnb-node-{node.name}"
        )
        spec = target.attrs["Spec"]
        spec.setdefault("Labels", {})[key] = value
        target.update(spec)

    # -- stop ----------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Tear everything down; safe to call twice and after a partial start."""
        if self.stopped:
            return
        self.stopped = True
        for proc in [*self.others, self.registry_proc]:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        for node in self.nodes:
            if node.pid:
                try:
                    os.kill(node.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 20
        for node in self.nodes:
            while node.pid and _alive(node.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
        for node in self.nodes:
            if node.netns_inode:
                _kill_netns(node.netns_inode)
            if node.holder is not None:
                if node.holder.poll() is None:
                    node.holder.kill()
                node.holder.wait()
        for node in self.nodes:
            _remove_cgroup(self._cgroup(node))
        shutil.rmtree(self.base, ignore_errors=True)

    def _cgroup(self, node: PrivateNode) -> str:
        return f"{self.base.name}-{node.name}"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def _kill_netns(inode: int) -> None:
    """SIGKILL every process in the network namespace ``inode``: all of them were started by us
    (containerd, shims, containers, services run inside the node)."""
    for _ in range(50):
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if os.stat(f"/proc/{entry}/ns/net").st_ino == inode:
                        found.append(int(entry))
                except OSError:
                    pass
        if not found:
            return
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)


def _remove_cgroup(name: str) -> None:
    root = Path("/sys/fs/cgroup")
    for controller in [root, *root.iterdir()] if root.exists() else []:
        top = controller / name
        if not top.is_dir():
            continue
        for dirpath, _dirs, _files in os.walk(top, topdown=False):
            try:
                os.rmdir(dirpath)
            except OSError:
                pass


def start_cluster(images: list[str]) -> Cluster:
    """Two private daemons in a swarm, a registry, our ``images`` pushed. Raises with the reason."""
    base = Path(tempfile.mkdtemp(prefix="abnb-sw-", dir="/tmp"))
    cluster = Cluster(base)
    atexit.register(cluster.stop)
    try:
        (base / "node").mkdir()
        cluster.nodes = [PrivateNode("a", "127.0.0.2", base / "a"), PrivateNode("b", "127.0.0.3", base / "b")]
        for node in cluster.nodes:
            cluster._start_daemon(node, cluster._cgroup(node))
        deadline = time.monotonic() + 60
        for node in cluster.nodes:
            cluster._wait_daemon(node, deadline)
        cluster._link()
        cluster._swarm()
        cluster._start_registry()
        cluster.load_images(images)
        cluster.push_images()
    except BaseException:
        cluster.stop()
        raise
    return cluster


def start_swarm_serve(
    cluster: Cluster, tmp: Path, db: Path | None = None, extra: tuple[str, ...] = ()
) -> Served:
    """``abaco-nb serve --runtime swarm`` inside the manager node's network namespace (where the swarm's
    addresses are), reached from here through its API unix socket. ``tmp`` is under the cluster's own
    directory, not pytest's rotating basetemp, which a concurrent pytest run may prune."""
    tmp.mkdir(parents=True, exist_ok=True)
    db = db or tmp / "abaco.db"
    conn = tmp / f"conn-{time.monotonic_ns()}.json"
    log = tmp / f"serve-{time.monotonic_ns()}.log"
    cmd = [
        *cluster.manager.nsenter(), sys.executable, "-m", "server_ext", "serve", "--runtime", "swarm",
        "--host", cluster.manager.addr, "--port", "0", "--db", str(db), "--token", "swarm-token",
        "--connection-file", str(conn), "--swarm-registry", cluster.registry,
        "--swarm-agent-dir", f"{cluster.node_dir}/agent",
        "--swarm-node-docker-socket", f"{cluster.node_dir}/docker.sock", *extra,
    ]  # fmt: skip
    env = {**os.environ, "DOCKER_HOST": cluster.manager.docker_host}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=Path(__file__).parents[1]
        )
    cluster.others.append(proc)
    deadline = time.monotonic() + 60
    while not conn.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"abaco-nb serve --runtime swarm did not start: {log.read_text()}")
        time.sleep(0.05)
    time.sleep(0.05)
    info = json.loads(conn.read_text())
    forwarder = Forwarder(info["api_socket"])
    return Served(url=forwarder.url, token="swarm-token", proc=proc, db=db, log=log)


class Forwarder:
    """TCP on the host's 127.0.0.1 -> a unix socket: how the tests (in the host's network namespace)
    reach a service that listens inside node a's namespace, through its API unix socket."""

    def __init__(self, unix_path: str) -> None:
        from server_ext.service.runtimes.swarm_agent import pipe

        self.unix_path = unix_path
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self._pipe = pipe
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        inner = socket.socket(socket.AF_UNIX)
        try:
            inner.connect(self.unix_path)
            self._pipe(conn, inner)
        except OSError:
            pass
        finally:
            inner.close()
            conn.close()

    def close(self) -> None:
        self.sock.close()
