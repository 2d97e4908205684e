"""A real node for the local control plane: kubelet + containerd + runc + bridge CNI +
kube-proxy + CoreDNS, pulling images by their real names from a mirror registry.

- kubelet, kube-scheduler and kube-proxy are built from the Go module proxy with the other
  Kubernetes binaries (same wrapper module, same cache, see ``build.py``); containerd, runc,
  the CNI plugins and busybox-static come from Debian's packages (``ensure_node_deps``).
- containerd runs with its own root, state dir and socket under the node's work dir and
  ``restrict_oom_score_adj = true`` (this VM lacks CAP_SYS_RESOURCE). Its registry
  ``config_path`` sends ``docker.io``, ``ghcr.io`` and ``registry.k8s.io`` to the mirror
  registry on the bridge address (``mirror.py``), which holds the images the harness builds
  under their real names: Pods name images as users do, with the default pull policies.
- Pods live on one bridge (``NETWORK``): the node's IP is the bridge's address (the
  kubelet refuses a loopback node IP), CoreDNS listens there too (host process, kubernetes
  plugin, no cache, no forwarding). An iptables chain drops everything from the bridge to
  any other interface, and anything from the bridge to the host other than the bridge's
  own address: DNS, ICMP and the TCP ports opened for the API server (and any a test opens
  with ``Node.allow_port``, e.g. a git server): all traffic stays between the host side of
  the bridge and the Pods.
- kube-proxy (iptables mode, host process) makes ClusterIP Services work from Pods and from
  the host. The API server listens on loopback only; a second listener on the bridge address
  (``tcpforward.py``) and an EndpointSlice for the ``kubernetes`` Service let Pods reach it as
  in any cluster (its certificate names both addresses, ``certs.SERVING_IPS``).
- Teardown removes every process, container, mount, network namespace, the bridge, the
  iptables chains (ours, the kubelet's and kube-proxy's ``KUBE-*``), the ``/oras-cache-node``
  cgroups, and restores the sysctls the kubelet, kube-proxy and the bridge plugin change.

One node per machine at a time (a fixed bridge name and subnet): a machine-wide state
file (``/run/oras-cache-node.json``) records it.

CLI: ``python -m tests.harness.node deps|build|up|down|status``.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.harness import flags, mirror, sync_image
from tests.harness.build import (
    K8S_MODULE,
    KUBE_PROXY_PACKAGE,
    KUBE_SCHEDULER_PACKAGE,
    KUBELET_PACKAGE,
    NODE_PACKAGES,
    BuildError,
    BuildReport,
    _build_group,
    _k8s_ldflags,
    _k8s_targets,
    _Target,
    _version_ok,
    k8s_dir,
    k8s_wrapper_gomod,
)
from tests.harness.certs import client_cert
from tests.harness.cluster import LocalCluster
from tests.harness.health import ClusterError, http_get, tls_context
from tests.harness.images import (
    ALIASES,
    PAUSE_IMAGE,
    build_all,
    coredns_binary,
    oras_binary,
    registry_binary,
)
from tests.harness.kubeconfig import write_kubeconfig
from tests.harness.ports import free_ports
from tests.harness.procs import Component, is_alive, is_ours, log_tail, spawn, terminate
from tests.harness.versions import k8s_version


# ----- the one place for names and subnets ----------------------------------------------
@dataclass(frozen=True)
class Network:
    bridge: str = "orascache0"
    pod_cidr: str = "10.209.0.0/24"
    gateway: str = "10.209.0.1"  # the bridge's address: node IP, CoreDNS, probes' source
    prefix: int = 24
    service_cidr: str = flags.SERVICE_CIDR  # routed to the bridge (nothing leaves the host)
    chain: str = "ORAS-CACHE-NODE"
    cni_name: str = "oras-cache"
    mirror_port: int = mirror.PORT  # the mirror registry, on the gateway (host side only)

    @property
    def mirror(self) -> str:
        return f"{self.gateway}:{self.mirror_port}"


NETWORK = Network()
# README's kustomize overlay points the install at this name ("a mirror"): the mirror serves
# the sync service's image under it too, so tests/e2e/test_install.py applies the overlay
# word for word (its registry gets a hosts.toml like the others).
OVERLAY_REGISTRY = "registry.example.com"
OVERLAY_IMAGE_NAME = f"{OVERLAY_REGISTRY}/mirror/oras-cache-sync"


def mirror_aliases() -> dict[str, tuple[str, ...]]:
    """More names for the node's images: `images.ALIASES`, and the overlay's name of the
    sync service's image (same tag)."""
    name = sync_image.image_name()
    return {**ALIASES, name: (f"{OVERLAY_IMAGE_NAME}:{name.rsplit(':', 1)[1]}",)}
NODE_NAME = "oras-cache-node"
CGROUP_ROOT = "/oras-cache-node"
CLUSTER_DOMAIN = "cluster.local"
LOCK_FILE = Path("/run/oras-cache-node.lock")  # held only while a node starts
STATE_FILE = Path("/run/oras-cache-node.json")  # what runs where, machine-wide
TEMP_PREFIX = "oras-cache-node-"
CNI_BIN_DIR = Path("/usr/lib/cni")
SYSCTLS = (
    "kernel.panic",
    "kernel.panic_on_oops",
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.forwarding",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    # kube-proxy's (it is configured to leave them alone; restored in case it does not)
    "net.ipv4.conf.all.route_localnet",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_tcp_timeout_established",
    "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
)
DEBIAN_PACKAGES = ("containerd", "runc", "containernetworking-plugins", "busybox-static",
                   "iptables")
_NEEDED_FILES = (
    Path("/usr/bin/containerd"), Path("/usr/bin/ctr"), Path("/usr/bin/containerd-shim-runc-v2"),
    Path("/usr/sbin/runc"), CNI_BIN_DIR / "bridge", CNI_BIN_DIR / "host-local",
    CNI_BIN_DIR / "loopback", Path("/bin/busybox"), Path("/usr/sbin/iptables"),
)
START_TIMEOUT_S = 90.0


class NodeError(ClusterError):
    """The node could not start (the message says why), or teardown left something behind."""


def _log(message: str) -> None:
    print(f"[node] {message}", file=sys.stderr, flush=True)


# ----- set-up: packages and the kubelet binary -----------------------------------------
def missing_deps() -> list[Path]:
    return [p for p in _NEEDED_FILES if not p.exists()]


def ensure_node_deps() -> None:
    """Install containerd, runc, the CNI plugins, busybox-static and iptables (Debian)."""
    if not missing_deps():
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise NodeError(f"missing {[str(p) for p in missing_deps()]} and cannot apt-get install "
                        f"{' '.join(DEBIAN_PACKAGES)} (needs root on Debian)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _log("apt-get update && apt-get install " + " ".join(DEBIAN_PACKAGES))
    for argv in (["apt-get", "update", "-q"],
                 ["apt-get", "install", "-y", "-q", "--no-install-recommends", *DEBIAN_PACKAGES]):
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise NodeError(f"{' '.join(argv)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    if missing_deps():
        raise NodeError(f"still missing after apt-get install: {missing_deps()}")


def node_targets() -> list[_Target]:
    """kubelet, kube-scheduler and kube-proxy (the control plane has none: Pods need one to
    get a node, Services one to get an address)."""
    kver = k8s_version()
    return [
        _Target(name, k8s_dir(kver), package, _k8s_ldflags(kver), ("--version",),
                f"Kubernetes {kver.version}")
        for name, package in (("kubelet", KUBELET_PACKAGE),
                              ("kube-scheduler", KUBE_SCHEDULER_PACKAGE),
                              ("kube-proxy", KUBE_PROXY_PACKAGE))
    ]


def ensure_node_binaries(report: BuildReport | None = None) -> tuple[Path, Path, Path]:
    """Build kubelet, kube-scheduler and kube-proxy (same version, wrapper module and cache
    as the control plane); return their paths."""
    report = report if report is not None else BuildReport()
    kver, targets = k8s_version(), node_targets()
    if not all(_version_ok(t) for t in targets):
        _build_group([*_k8s_targets(kver), *targets], f"{K8S_MODULE}@{kver.version}",
                     lambda up: k8s_wrapper_gomod(kver, up), report,
                     extra_packages=NODE_PACKAGES)
        if report.steps:
            _log("build times: " + ", ".join(f"{k} {v:.1f} s" for k, v in report.steps.items()))
    return targets[0].path, targets[1].path, targets[2].path


@dataclass(frozen=True)
class NodeBinaries:
    kubelet: Path
    kube_scheduler: Path
    kube_proxy: Path
    coredns: Path
    registry: Path
    oras: Path
    images: dict[str, Path]  # real name -> OCI archive, served by the mirror


def node_images() -> dict[str, Path]:
    """The images the mirror serves: the test images and the sync service's image under the
    name dist/install/ uses (``make image``: minutes cold, seconds warm)."""
    if os.geteuid() != 0:  # mmdebstrap and chroot need root, as the node itself does
        _log("not root: the sync service's image is not built (a node needs root anyway)")
        return build_all()
    node = Path(os.environ.get("JSII_NODE") or sync_image.REPO / ".tools/node_modules/.bin/node")
    if not node.exists():
        raise NodeError(f"{node} is missing (the sync service image needs it): "
                        "run `make bootstrap`")
    sync_image.ensure_tools()
    return {**build_all(), sync_image.image_name(): sync_image.build(node.resolve())}


def ensure_all() -> NodeBinaries:
    """Everything the node needs, built or installed (cached: seconds when warm).

    Cold, the sync image's Debian layer (mmdebstrap: mostly waiting on the archive and the
    disk, 1-2.5 minutes) is made while the Go builds (CPU) run, not after them."""
    ensure_node_deps()
    with ThreadPoolExecutor(max_workers=1) as pool:
        base = pool.submit(_sync_image_base) if os.geteuid() == 0 else None
        kubelet, scheduler, proxy = ensure_node_binaries()
        found = (coredns_binary(), registry_binary(), oras_binary())
        if base is not None:
            base.result()
    return NodeBinaries(kubelet, scheduler, proxy, *found, node_images())


def _sync_image_base() -> None:
    sync_image.ensure_tools()
    sync_image.ensure_base()


# ----- small system helpers -------------------------------------------------------------
def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=60)
    if check and proc.returncode != 0:
        raise NodeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def _sysctl_path(key: str) -> Path:
    return Path("/proc/sys") / key.replace(".", "/")


def read_sysctls() -> dict[str, str]:
    values = {}
    for key in SYSCTLS:
        with contextlib.suppress(OSError):
            values[key] = _sysctl_path(key).read_text().strip()
    return values


def restore_sysctls(saved: dict[str, str]) -> None:
    for key, value in saved.items():
        path = _sysctl_path(key)
        with contextlib.suppress(OSError):
            if path.read_text().strip() != value:
                path.write_text(value + "\n")


def _iptables_rules(net: Network) -> dict[str, list[list[str]]]:
    """Our chains. Forward: from the bridge only back to the bridge. Input (to the host):
    from the bridge only DNS and ICMP to the bridge's own address, and replies."""
    fwd, inp = net.chain, f"{net.chain}-IN"
    return {
        fwd: [
            # Pod to Pod on the same bridge (when br_netfilter hands bridged frames here).
            ["-A", fwd, "-i", net.bridge, "-o", net.bridge, "-j", "RETURN"],
            # Anything from the bridge to any other interface: dropped.
            ["-A", fwd, "-i", net.bridge, "-j", "DROP"],
        ],
        inp: [
            # replies to the host's own connections (kubelet probes, the tests' clients)
            ["-A", inp, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "RETURN"],
            ["-A", inp, "-d", net.gateway, "-p", "udp", "--dport", "53", "-j", "RETURN"],
            ["-A", inp, "-d", net.gateway, "-p", "tcp", "--dport", "53", "-j", "RETURN"],
            ["-A", inp, "-d", net.gateway, "-p", "icmp", "-j", "RETURN"],
            ["-A", inp, "-j", "DROP"],  # the kubelet's port, other host addresses, ...
        ],
    }


def allow_port_rule(net: Network, port: int) -> list[str]:
    """Pods may open TCP connections to this port of the bridge's address (inserted first)."""
    return ["-I", f"{net.chain}-IN", "1", "-d", net.gateway, "-p", "tcp", "--dport", str(port),
            "-j", "RETURN"]


def _jumps(net: Network) -> list[list[str]]:
    return [["FORWARD", "-j", net.chain], ["INPUT", "-i", net.bridge, "-j", f"{net.chain}-IN"]]


def setup_network(net: Network) -> None:
    _run("ip", "link", "add", net.bridge, "type", "bridge")
    _run("ip", "addr", "add", f"{net.gateway}/{net.prefix}", "dev", net.bridge)
    _run("ip", "link", "set", net.bridge, "up")
    _run("ip", "route", "replace", net.service_cidr, "dev", net.bridge)
    for chain, rules in _iptables_rules(net).items():
        _run("iptables", "-w", "-N", chain)
        for rule in rules:
            _run("iptables", "-w", *rule)
    for parent, *jump in _jumps(net):
        _run("iptables", "-w", "-I", parent, "1", *jump)


def teardown_network(net: Network) -> list[str]:
    """Idempotent: remove our iptables rules and chains, the route and the bridge."""
    left: list[str] = []
    for parent, *jump in _jumps(net):
        while _run("iptables", "-w", "-D", parent, *jump, check=False).returncode == 0:
            pass
    for chain in _iptables_rules(net):
        _run("iptables", "-w", "-F", chain, check=False)
        _run("iptables", "-w", "-X", chain, check=False)
        if _run("iptables", "-w", "-n", "-L", chain, check=False).returncode == 0:
            left.append(f"iptables chain {chain}")
    _run("ip", "route", "del", net.service_cidr, "dev", net.bridge, check=False)
    # veths of Pods whose netns is gone vanish with it; any left on our bridge go now.
    for line in _run("ip", "-o", "link", "show", "master", net.bridge, check=False
                     ).stdout.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        _run("ip", "link", "del", name, check=False)
    _run("ip", "link", "del", net.bridge, check=False)
    if _run("ip", "link", "show", net.bridge, check=False).returncode == 0:
        left.append(f"bridge {net.bridge}")
    return left


def kube_chains_cleanup() -> list[str]:
    """Every ``KUBE-*`` chain of the kubelet (canary, hint, firewall) and kube-proxy (services,
    masquerading, ...) and the built-in chains' jumps to them; nobody else on this host uses
    that prefix. Returns what could not be removed."""
    left = []
    for tool in ("iptables", "ip6tables"):
        for table in ("mangle", "nat", "filter"):
            rules = _run(tool, "-w", "-t", table, "-S", check=False).stdout.splitlines()
            for rule in rules:  # "-A INPUT ... -j KUBE-FIREWALL": delete it
                words = shlex.split(rule)
                if (len(words) > 2 and words[0] == "-A" and not words[1].startswith("KUBE-")
                        and "-j" in words and words[words.index("-j") + 1].startswith("KUBE-")):
                    _run(tool, "-w", "-t", table, "-D", *words[1:], check=False)
            chains = [r.split()[1] for r in rules if r.startswith("-N KUBE-")]
            for chain in chains:
                _run(tool, "-w", "-t", table, "-F", chain, check=False)
            for chain in chains:
                _run(tool, "-w", "-t", table, "-X", chain, check=False)
            after = _run(tool, "-w", "-t", table, "-S", check=False).stdout
            left += [f"{tool} -t {table} {line}" for line in after.splitlines()
                     if "KUBE-" in line]
    return left


def _cgroup_dirs() -> list[Path]:
    base = Path("/sys/fs/cgroup")
    return [base / c / CGROUP_ROOT.strip("/") for c in sorted(os.listdir(base))
            if (base / c).is_dir()]


def _pids_under(root: Path) -> set[int]:
    pids: set[int] = set()
    if not root.is_dir():
        return pids
    # os.walk, not Path.rglob: the kubelet removes a container's cgroup while we walk
    # (a restarting container at teardown), and rglob raises on the vanished directory.
    for directory, _, files in os.walk(root):
        if "cgroup.procs" in files:
            with contextlib.suppress(OSError, ValueError):
                text = (Path(directory) / "cgroup.procs").read_text()
                pids.update(int(x) for x in text.split())
    return pids


def kill_cgroup_processes(timeout: float = 10.0) -> None:
    """SIGKILL every process in our cgroup subtree (the containers), until none is left."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = set().union(*(_pids_under(d) for d in _cgroup_dirs()))
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def remove_cgroups() -> list[str]:
    left = []
    for root in _cgroup_dirs():
        if not root.exists():
            continue
        for d in sorted((p for p in root.rglob("*") if p.is_dir()),
                        key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                d.rmdir()
        with contextlib.suppress(OSError):
            root.rmdir()
        if root.exists():
            left.append(str(root))
    return left


def mounts_under(prefixes: list[str]) -> list[str]:
    found = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            point = line.split()[4].replace("\\040", " ")
            if any(point == p or point.startswith(p.rstrip("/") + "/") for p in prefixes):
                found.append(point)
    return found


def unmount_under(prefixes: list[str]) -> list[str]:
    """Unmount (lazily, deepest first) every mount under the prefixes; return what is left."""
    for _ in range(3):
        points = mounts_under(prefixes)
        if not points:
            return []
        for point in sorted(set(points), key=len, reverse=True):
            _run("umount", "-l", point, check=False)
    return mounts_under(prefixes)


def shim_pids(address: Path) -> list[int]:
    """containerd-shim processes started by *our* containerd (matched by its socket path)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"containerd-shim-runc-v2") and str(address).encode() in argv:
            pids.append(int(entry.name))
    return pids


def dns_query(server: str, name: str, port: int = 53, timeout: float = 2.0) -> list[str]:
    """A minimal A-record lookup over UDP (to check CoreDNS from the host)."""
    qid = os.getpid() & 0xFFFF
    question = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split("."))
    packet = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + question + b"\0" + struct.pack(
        ">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(packet, (server, port))
        data = sock.recv(4096)
    ancount = struct.unpack(">H", data[6:8])[0]
    pos = 12 + len(question) + 1 + 4
    out = []
    for _ in range(ancount):
        if data[pos] & 0xC0 == 0xC0:
            pos += 2
        else:
            while data[pos]:
                pos += data[pos] + 1
            pos += 1
        rtype, _cls, _ttl, rdlen = struct.unpack(">HHIH", data[pos:pos + 10])
        pos += 10
        if rtype == 1 and rdlen == 4:
            out.append(".".join(str(b) for b in data[pos:pos + 4]))
        pos += rdlen
    return out


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


# ----- configuration files ---------------------------------------------------------------
def containerd_config(workdir: Path, sandbox_image: str, hosts_dir: Path) -> str:
    return f"""version = 2
root = "{workdir}/containerd/root"
state = "{workdir}/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{workdir}/containerd.sock"

[ttrpc]
  address = "{workdir}/containerd.ttrpc.sock"

[plugins."io.containerd.internal.v1.opt"]
  path = "{workdir}/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  # This VM lacks CAP_SYS_RESOURCE: without this every sandbox fails with
  # "can't get final child's PID from pipe".
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  max_container_log_line_size = 16384
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{workdir}/cni/net.d"
    max_conf_num = 1
  # One hosts.toml per registry name (docker.io, ghcr.io, ...): all go to the mirror.
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{hosts_dir}"
"""


def cni_config(workdir: Path, net: Network) -> dict[str, object]:
    return {
        "cniVersion": "1.0.0",
        "name": net.cni_name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": net.bridge,
                "isGateway": True,
                "ipMasq": False,  # nothing is NATed out of this host
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(workdir / "cni" / "ipam"),
                    "ranges": [[{"subnet": net.pod_cidr, "gateway": net.gateway}]],
                    "routes": [{"dst": net.pod_cidr}, {"dst": net.service_cidr}],
                },
            },
        ],
    }


def kubelet_config(workdir: Path, net: Network, port: int, healthz_port: int) -> dict[str, object]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": net.gateway,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "authentication": {
            # `kubectl logs/exec` through the apiserver, which has no kubelet client
            # certificate here. Only host processes reach this port: the iptables input
            # chain drops everything from the bridge to the host but DNS and ICMP.
            "anonymous": {"enabled": True},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": str(workdir / "ca.crt")},
        },
        "authorization": {"mode": "AlwaysAllow"},
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": CGROUP_ROOT,
        "failSwapOn": False,
        "failCgroupV1": False,  # this machine kind has cgroup v1
        "containerRuntimeEndpoint": f"unix://{workdir}/containerd.sock",
        "clusterDNS": [net.gateway],
        "clusterDomain": CLUSTER_DOMAIN,
        "resolvConf": str(workdir / "resolv.conf"),  # empty: no host resolver leaks in
        "registerNode": True,
        "serializeImagePulls": False,
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "1Mi", "nodefs.available": "1%",
                         "nodefs.inodesFree": "1%", "imagefs.available": "1%"},
        "nodeStatusReportFrequency": "10s",
        "syncFrequency": "5s",
        "fileCheckFrequency": "5s",
        "localStorageCapacityIsolation": True,
        "protectKernelDefaults": False,
        "makeIPTablesUtilChains": False,
        "maxPods": 60,
        "podPidsLimit": -1,
        "shutdownGracePeriod": "0s",
    }


def kube_proxy_config(kubeconfig: Path, net: Network, healthz_port: int,
                      metrics_port: int) -> dict[str, object]:
    """iptables mode; nothing beyond loopback and the bridge; the host's sysctls left alone."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "mode": "iptables",
        "hostnameOverride": NODE_NAME,
        "bindAddress": net.gateway,
        "clusterCIDR": net.pod_cidr,  # traffic from elsewhere to a Service is masqueraded
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        "nodePortAddresses": [f"{net.gateway}/32"],  # NodePorts on the bridge address only
        "iptables": {
            # true would set net.ipv4.conf.all.route_localnet=1 on the host
            "localhostNodePorts": False,
            "masqueradeAll": False,
            "syncPeriod": "30s",
            "minSyncPeriod": "0s",  # a new Service or endpoint is programmed at once
        },
        # 0: keep the host's conntrack table size and timeouts
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s",
                      "tcpCloseWaitTimeout": "0s"},
        "oomScoreAdj": 0,
    }


def apiserver_endpoint_slice(net: Network, port: int) -> dict[str, object]:
    """The ``kubernetes`` Service's endpoint: the API server's listener on the bridge. The API
    server maintains none itself (``--endpoint-reconciler-type=none``: it advertises 127.0.0.1,
    which no Pod can reach)."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "kubernetes", "namespace": "default",
            "labels": {"kubernetes.io/service-name": "kubernetes",
                       "endpointslice.kubernetes.io/managed-by": "oras-cache-node"},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [net.gateway], "conditions": {"ready": True}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    }


STORAGE_CLASS = "standard"
STORAGE_LABEL = {"app.kubernetes.io/managed-by": "oras-cache-node"}
VOLUMES = 4  # enough for examples/ (persistent: one claim, ha: one shared claim) and tests
VOLUME_SIZE = "20Gi"  # the largest claim in examples/ (ha.yaml)


def storage_objects(volumes_dir: Path) -> list[dict[str, object]]:
    """The node's storage, as a bare-metal cluster's local volumes: a default StorageClass
    ``standard`` (the name kind and minikube use, and examples/persistent.yaml) with no
    provisioner, and ``VOLUMES`` pre-created hostPath PersistentVolumes below the node's work
    dir (removed with it), each offering ReadWriteOnce and ReadWriteMany: on one node a
    directory is shared by every Pod that mounts it. Retain: a released volume is not reused
    (a hostPath volume has no deleter); the node is thrown away after a run anyway."""
    meta: dict[str, object] = {"labels": dict(STORAGE_LABEL)}
    objects: list[dict[str, object]] = [{
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {**meta, "name": STORAGE_CLASS, "annotations": {
            "storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "kubernetes.io/no-provisioner",
        "reclaimPolicy": "Retain",
        "volumeBindingMode": "Immediate",
    }]
    for index in range(VOLUMES):
        name = f"{NODE_NAME}-volume-{index}"
        objects.append({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {**meta, "name": name},
            "spec": {
                "capacity": {"storage": VOLUME_SIZE},
                "accessModes": ["ReadWriteOnce", "ReadWriteMany"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": STORAGE_CLASS,
                "hostPath": {"path": str(volumes_dir / name), "type": "DirectoryOrCreate"},
            },
        })
    return objects


def corefile(kubeconfig: Path, net: Network, health_port: int) -> str:
    # No `cache` (a cached NXDOMAIN right after a Pod becomes Ready is a flake), no
    # `forward` (nothing leaves this host): names outside the cluster get SERVFAIL/NXDOMAIN.
    return f""".:53 {{
    bind {net.gateway}
    errors
    health 127.0.0.1:{health_port}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig} admin
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 0
    }}
    loop
    reload
}}
"""


# ----- the node -----------------------------------------------------------------------------
def _load_state() -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return None
    return data


class Node:
    """kube-scheduler + containerd + kubelet + CoreDNS joined to ``cluster``.

    A context manager for tests (work dir in /tmp, processes tied to this process), or
    ``daemon=True`` with a ``workdir`` for ``make cluster-up NODE=1`` (stopped later with
    ``Node.attach().stop()``). The machine-wide state file records what runs, so a node
    left behind by a SIGKILLed run is cleaned up by the next start, and a live one is
    never touched.
    """

    def __init__(self, cluster: LocalCluster | None, *, net: Network = NETWORK,
                 daemon: bool = False, workdir: Path | None = None) -> None:
        self.cluster = cluster
        self.net = net
        self.daemon = daemon
        self._own_workdir = workdir is None
        self.workdir = Path(workdir).resolve() if workdir is not None else Path()
        self.components: dict[str, Component] = {}
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._sysctls: dict[str, str] = {}
        self.timings: dict[str, float] = {}
        self._started = False
        self.images: dict[str, Path] = {}
        self.kubelet_port = 0

    @property
    def address(self) -> Path:
        return self.workdir / "containerd.sock"

    @property
    def logs_dir(self) -> Path:
        return self.workdir / "logs"

    def __enter__(self) -> Node:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- state ---
    def _save_state(self) -> None:
        STATE_FILE.write_text(json.dumps({
            "workdir": str(self.workdir), "own_workdir": self._own_workdir,
            "owner_pid": os.getpid(), "daemon": self.daemon, "sysctls": self._sysctls,
            "components": [c.to_json() for c in self.components.values()],
        }, indent=1))

    @classmethod
    def attach(cls, cluster: LocalCluster | None = None) -> Node | None:
        """A handle on the node recorded in the machine's state file (to stop it)."""
        state = _load_state()
        if state is None:
            return None
        node = cls(cluster, workdir=Path(state["workdir"]))
        node._own_workdir = bool(state.get("own_workdir"))
        node.daemon = bool(state.get("daemon"))
        node._sysctls = dict(state.get("sysctls", {}))
        node.components = {c["name"]: Component(**c) for c in state.get("components", [])}
        node._started = True
        return node

    def is_running(self) -> bool:
        return bool(self.components) and all(is_ours(c) for c in self.components.values())

    # --- start ---
    def start(self) -> Node:
        if os.geteuid() != 0:
            raise NodeError("a node needs root (bridge, iptables, mounts, cgroups)")
        if self.cluster is None:
            raise NodeError("a node needs a running control plane")
        began = time.monotonic()
        binaries = ensure_all()
        self.images = binaries.images
        self.timings["ensure"] = time.monotonic() - began
        with open(LOCK_FILE, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two starts at once: one after the other
            previous = Node.attach()
            if previous is not None:
                alive = [c.name for c in previous.components.values() if is_ours(c)]
                owner = int((_load_state() or {}).get("owner_pid", 0))
                if owner != os.getpid() and is_alive(owner) and not previous.daemon:
                    alive.append(f"its starter, pid {owner}")  # still starting
                if alive:
                    raise NodeError(
                        f"another test node is running on this machine ({', '.join(alive)} in "
                        f"{previous.workdir}); one node at a time (fixed bridge and subnet). "
                        "Stop it with `python -m tests.harness.node down`")
                _log(f"cleaning up a node left behind in {previous.workdir}")
                previous.stop(check=False)
            self._sweep_network()
            self._prepare_workdir()
            self._sysctls = read_sysctls()
            self._started = True
            self._save_state()
        if not self.daemon:
            atexit.register(self.stop)
        try:
            self._start(binaries)
            self._apply_storage(self.cluster)
        except BaseException:
            self.stop(check=False)
            raise
        self.timings["start_total"] = time.monotonic() - began
        return self

    def _prepare_workdir(self) -> None:
        if self._own_workdir:
            self.workdir = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
        else:
            unmount_under([str(self.workdir)])
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir.mkdir(parents=True)
        self.logs_dir.mkdir()

    def _sweep_network(self) -> None:
        """Our fixed names (bridge, chain, cgroup root) from a run whose state file is lost."""
        kill_cgroup_processes()
        remove_cgroups()
        teardown_network(self.net)
        kube_chains_cleanup()

    def _start(self, binaries: NodeBinaries) -> None:
        net = self.net
        cluster = self.cluster
        assert cluster is not None
        for d in _cgroup_dirs():
            d.mkdir(exist_ok=True)
        setup_network(net)
        self.allow_port(cluster.apiserver_port)

        # The mirror first: the pushes (none when warm) run while the rest starts.
        t0 = time.monotonic()
        pushes = ThreadPoolExecutor(max_workers=1)
        pushed = pushes.submit(mirror.push_all, binaries.oras, net.mirror,
                               self._start_mirror(binaries), self.images, mirror_aliases())
        self._start_apiserver_listener(cluster)
        self.timings["mirror_and_listener"] = time.monotonic() - t0

        t0 = time.monotonic()
        (self.workdir / "cni" / "net.d").mkdir(parents=True)
        (self.workdir / "cni" / "net.d" / "10-oras-cache.conflist").write_text(
            json.dumps(cni_config(self.workdir, net), indent=2))
        hosts_dir = mirror.write_hosts_dir(self.workdir / "certs.d", net.mirror,
                                           mirror.registry_hosts(self._mirror_catalogue()))
        config = self.workdir / "containerd.toml"
        config.write_text(containerd_config(self.workdir, PAUSE_IMAGE, hosts_dir))
        self._launch("containerd", ["/usr/bin/containerd", "--config", str(config),
                                    "--log-level", "warn"])
        self._wait("containerd", lambda: _run("ctr", "--address", str(self.address),
                                              "version", check=False).returncode == 0)
        self.timings["containerd"] = time.monotonic() - t0

        # From here on everything starts at once.
        t0 = time.monotonic()
        kport, healthz, dns_health, sched_port, proxy_health, proxy_metrics = free_ports(6)
        self.kubelet_port = kport
        admin = cluster.kubeconfig
        self._launch("kube-scheduler", [
            str(binaries.kube_scheduler), f"--kubeconfig={admin}",
            f"--authentication-kubeconfig={admin}", f"--authorization-kubeconfig={admin}",
            "--authentication-skip-lookup", "--bind-address=127.0.0.1",
            f"--secure-port={sched_port}", f"--cert-dir={self.workdir / 'scheduler-pki'}",
            "--leader-elect=false", "--profiling=false",
        ])
        pki = cluster.pki_dir
        shutil.copy(pki / "ca.crt", self.workdir / "ca.crt")
        cert, key = client_cert(pki, f"system:node:{NODE_NAME}", ("system:nodes",),
                                self.workdir / "pki")
        kubeconfig = write_kubeconfig(self.workdir / "kubelet.kubeconfig",
                                      server=cluster.server, ca_cert=pki / "ca.crt",
                                      user=f"system:node:{NODE_NAME}", client_cert=cert,
                                      client_key=key)
        (self.workdir / "resolv.conf").write_text("")
        kconf = self.workdir / "kubelet.json"
        kconf.write_text(json.dumps(kubelet_config(self.workdir, net, kport, healthz), indent=2))
        self._launch("kubelet", [
            str(binaries.kubelet), f"--config={kconf}", f"--kubeconfig={kubeconfig}",
            f"--root-dir={self.workdir / 'kubelet'}", f"--cert-dir={self.workdir / 'kubelet-pki'}",
            f"--hostname-override={NODE_NAME}", f"--node-ip={net.gateway}", "--v=1",
        ])
        self._launch_kube_proxy(binaries, cluster, proxy_health, proxy_metrics)
        core = self.workdir / "Corefile"
        core.write_text(corefile(cluster.kubeconfig, net, dns_health))
        self._launch("coredns", [str(binaries.coredns), "-conf", str(core), "-dns.port", "53"])
        self._wait("kubelet", self._node_ready)
        self.timings["node_ready"] = time.monotonic() - t0
        self._wait("kube-scheduler", lambda: self._https_ok(
            f"https://127.0.0.1:{sched_port}/healthz"))
        self._wait("coredns", lambda: self._http_ok(f"http://127.0.0.1:{dns_health}/health")
                   and self._dns_ok())
        # 200 once the first sync of the rules is done (503 until then).
        self._wait("kube-proxy", lambda: self._http_ok(
            f"http://127.0.0.1:{proxy_health}/healthz"))
        try:
            self.timings["push"] = pushed.result(timeout=900)
        except BuildError as err:
            raise NodeError(f"pushing the images to the mirror failed: {err}") from err
        finally:
            pushes.shutdown()
        self.timings["all_ready"] = time.monotonic() - t0

    def _apply_storage(self, cluster: LocalCluster) -> None:
        began = time.monotonic()
        cluster.kubectl("apply", "-f", "-", input=json.dumps(
            {"apiVersion": "v1", "kind": "List",
             "items": storage_objects(self.workdir / "volumes")}))
        self.timings["storage"] = time.monotonic() - began

    def _start_mirror(self, binaries: NodeBinaries) -> Path:
        """The mirror registry on the bridge address; returns its storage directory."""
        storage = mirror.prepare_storage(self._mirror_catalogue())
        config = self.workdir / "mirror.yml"
        config.write_text(mirror.registry_config(storage, self.net.mirror))
        self._launch("mirror", [str(binaries.registry), "serve", str(config)],
                     env={"OTEL_TRACES_EXPORTER": "none"})
        self._wait("mirror", lambda: mirror.is_up(self.net.mirror))
        return storage

    def _start_apiserver_listener(self, cluster: LocalCluster) -> None:
        """The API server's second listener, on the bridge address and the same port, and
        the ``kubernetes`` Service's endpoint there."""
        net, port = self.net, cluster.apiserver_port
        self._launch("apiserver-listener", [
            sys.executable, "-m", "tests.harness.tcpforward", f"{net.gateway}:{port}",
            f"127.0.0.1:{port}"])
        self._wait("apiserver-listener", lambda: _port_open(net.gateway, port))
        cluster.kubectl("apply", "-f", "-", input=json.dumps(
            apiserver_endpoint_slice(net, port)))

    def _launch_kube_proxy(self, binaries: NodeBinaries, cluster: LocalCluster,
                           healthz_port: int, metrics_port: int) -> None:
        # As the user the default RBAC binds to system:node-proxier.
        pki = cluster.pki_dir
        cert, key = client_cert(pki, "system:kube-proxy", (), self.workdir / "pki")
        kubeconfig = write_kubeconfig(self.workdir / "kube-proxy.kubeconfig",
                                      server=cluster.server, ca_cert=pki / "ca.crt",
                                      user="system:kube-proxy", client_cert=cert,
                                      client_key=key)
        config = self.workdir / "kube-proxy.json"
        config.write_text(json.dumps(kube_proxy_config(kubeconfig, self.net, healthz_port,
                                                       metrics_port), indent=2))
        self._launch("kube-proxy", [str(binaries.kube_proxy), f"--config={config}", "--v=1"])

    def _mirror_catalogue(self) -> dict[str, Path]:
        """Every name the mirror serves (aliases included) -> its archive."""
        names = dict(self.images)
        for name, aliases in mirror_aliases().items():
            names.update(dict.fromkeys(aliases, self.images[name]))
        return names

    def allow_port(self, port: int) -> None:
        """Let Pods open TCP connections to ``port`` on the bridge's address (e.g. a git
        server a test runs there); removed with the chain at teardown."""
        _run("iptables", "-w", *allow_port_rule(self.net, port))

    def _dns_ok(self) -> bool:
        try:
            return bool(dns_query(self.net.gateway, f"kubernetes.default.svc.{CLUSTER_DOMAIN}"))
        except OSError:
            return False

    @staticmethod
    def _https_ok(url: str) -> bool:
        try:
            return http_get(url, tls_context(None), timeout=1.0)[0] == 200
        except OSError:
            return False

    @staticmethod
    def _http_ok(url: str) -> bool:
        try:
            return http_get(url, None, timeout=1.0)[0] == 200
        except OSError:
            return False

    def _node_ready(self) -> bool:
        assert self.cluster is not None
        try:
            status, body = self.cluster.admin_get(f"/api/v1/nodes/{NODE_NAME}")
        except OSError:
            return False
        if status != 200:
            return False
        conditions = json.loads(body).get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def _launch(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        component = Component(name, argv, str(self.logs_dir / f"{name}.log"), env=env or {})
        self.components[name] = component
        self._procs[name] = spawn(component, daemon=self.daemon)
        self._save_state()

    def _wait(self, name: str, ready: Callable[[], bool],
              timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        proc = self._procs[name]
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise NodeError(f"{name} exited with {proc.returncode}:\n"
                                f"{log_tail(self.components[name].log)}")
            if ready():
                return
            time.sleep(0.1)
        raise NodeError(f"{name} not ready after {timeout:.0f} s:\n"
                        f"{log_tail(self.components[name].log)}")

    def ctr(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``ctr -n k8s.io`` against this node's containerd."""
        return _run("/usr/bin/ctr", "--address", str(self.address), "-n", "k8s.io", *args,
                    check=False)

    # --- stop ---
    def _terminate(self, name: str) -> None:
        if name in self.components:
            terminate(self.components[name], self._procs.get(name), timeout=10.0)

    def stop(self, check: bool = True) -> None:
        """Stop everything and remove what the node made; raise if something is left."""
        atexit.unregister(self.stop)
        if not self._started:
            return
        self._started = False
        for name in ("kube-proxy", "coredns", "kubelet", "kube-scheduler"):
            self._terminate(name)
        kill_cgroup_processes()  # the containers: their shims then exit on their own
        for name in ("containerd", "mirror", "apiserver-listener"):
            self._terminate(name)
        left: list[str] = []
        if self.workdir != Path():
            for pid in shim_pids(self.address):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            left += [f"mount {m}" for m in unmount_under([str(self.workdir)])]
        left += teardown_network(self.net)
        left += kube_chains_cleanup()
        left += [f"cgroup {c}" for c in remove_cgroups()]
        restore_sysctls(self._sysctls)
        still = [c.name for c in self.components.values() if is_ours(c)]
        if self.workdir != Path() and not left and self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if not still:
            STATE_FILE.unlink(missing_ok=True)
        self._procs.clear()
        if self.cluster is not None and self.cluster.apiserver_port:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                self.cluster.kubectl("delete", "node", NODE_NAME, "--ignore-not-found",
                                     "--wait=false", check=False, timeout=10)
                self.cluster.kubectl("delete", "endpointslice", "kubernetes", "-n", "default",
                                     "--ignore-not-found", "--wait=false", check=False,
                                     timeout=10)
                self.cluster.kubectl("delete", "storageclasses,persistentvolumes", "-l",
                                     ",".join(f"{k}={v}" for k, v in STORAGE_LABEL.items()),
                                     "--ignore-not-found", "--wait=false", check=False,
                                     timeout=10)
        if check and (left or still):
            raise NodeError(f"after stop: left behind {left}, processes still running {still}")


# ----- CLI: python -m tests.harness.node deps|build|up|down|status ----------------------
def main(argv: list[str] | None = None) -> int:
    import argparse  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="python -m tests.harness.node", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("deps", help="apt-get install containerd, runc, CNI plugins, busybox-static")
    sub.add_parser("build", help="deps, kubelet, kube-scheduler, CoreDNS and the images")
    for name in ("up", "down", "status"):
        cmd = sub.add_parser(name, help=f"{name} the node of a `python -m tests.harness up` "
                                        "cluster")
        cmd.add_argument("--dir", default=".cluster", help="the cluster's work dir")
    args = parser.parse_args(argv)
    try:
        if args.command == "deps":
            ensure_node_deps()
        elif args.command == "build":
            began = time.monotonic()
            found = ensure_all()
            print(f"# verified in {time.monotonic() - began:.1f} s")
            print(f"KUBELET={found.kubelet}\nKUBE_SCHEDULER={found.kube_scheduler}\n"
                  f"COREDNS={found.coredns}")
            for image, tarball in found.images.items():
                print(f"IMAGE {image} {tarball}")
        elif args.command == "up":
            cluster = LocalCluster.attach(args.dir)
            if cluster is None or not cluster.is_running():
                print(f"no running cluster in {args.dir}: run `make cluster-up` first")
                return 1
            existing = Node.attach(cluster)
            if existing is not None and existing.is_running():
                print(f"node already running in {existing.workdir} (nothing to do)")
                return 0
            started = Node(cluster, daemon=True, workdir=Path(args.dir) / "node").start()
            print(f"node {NODE_NAME} Ready in {started.timings['start_total']:.1f} s "
                  f"(bridge {started.net.bridge} {started.net.gateway}, CoreDNS on "
                  f"{started.net.gateway}:53); images: {', '.join(started.images)}")
            print(f"  logs: {started.logs_dir}/\n  stop: make cluster-down")
        elif args.command == "down":
            recorded = Node.attach(LocalCluster.attach(args.dir))
            mine = (Path(args.dir) / "node").resolve()
            if recorded is None or recorded.workdir != mine:
                print(f"no node of {args.dir} recorded (nothing to do)")
                return 0
            recorded.stop()
            print(f"node in {recorded.workdir} stopped and cleaned up")
        else:
            recorded = Node.attach()
            if recorded is None or not recorded.is_running():
                print("no node running")
                return 1
            print(f"node running in {recorded.workdir}")
    except (NodeError, BuildError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
