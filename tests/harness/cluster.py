"""``LocalCluster``: etcd + kube-apiserver + kube-controller-manager on 127.0.0.1.

No kubelet: Pods are created (StatefulSets, Jobs, GC, RBAC, admission, SSA and
validation are all real) but stay Pending.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from tests.harness import flags
from tests.harness.build import Binaries, ensure_binaries
from tests.harness.certs import client_cert, create_pki
from tests.harness.crds import install_crds
from tests.harness.health import ClusterError, http_get, tls_context, wait_healthy
from tests.harness.kubeconfig import write_kubeconfig
from tests.harness.ports import free_ports, wait_ports_free
from tests.harness.procs import Component, is_alive, is_ours, spawn, terminate
from tests.harness.state import STATE_FILE, ClusterState

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

START_TIMEOUT_S = 60.0
TEMP_PREFIX = "oras-cache-cluster-"
# Files of a previous run in a reused work dir (``.cluster/``) that must not leak into a new one.
_RUN_FILES = ("etcd-data", "pki", "kubeconfigs", "kubeconfig", "logs")


def sweep_stale_workdirs(min_age_s: float = 60.0) -> None:
    """Remove temp work dirs of clusters whose owner was SIGKILLed (components gone too)."""
    for state_file in Path(tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*/{STATE_FILE}"):
        try:
            if time.time() - state_file.stat().st_mtime < min_age_s:
                continue  # maybe still starting
            state = ClusterState.load(state_file.parent)
        except (OSError, ValueError, TypeError):
            continue
        if state is not None and not any(is_ours(c) for c in state.components):
            shutil.rmtree(state_file.parent, ignore_errors=True)


class KubectlError(subprocess.CalledProcessError):
    """A failed kubectl call whose message includes kubectl's stderr."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstderr: {self.stderr}\nstdout: {self.stdout}"


class LocalCluster:
    """A real control plane for tests (temp dir, tied to this process) or ``make demo``.

    ``daemon=True`` lets the processes outlive this Python process (``up``); stop them
    later with ``LocalCluster.attach(workdir).stop()``.
    """

    def __init__(
        self,
        workdir: Path | str | None = None,
        *,
        crds: Sequence[Path | str] = (),
        binaries: Binaries | None = None,
        daemon: bool = False,
        start_timeout: float = START_TIMEOUT_S,
    ) -> None:
        self._own_workdir = workdir is None
        self.workdir = Path(workdir).resolve() if workdir is not None else Path()
        self.crds = [Path(c) for c in crds]
        self.binaries = binaries
        self.daemon = daemon
        self.start_timeout = start_timeout
        self.components: dict[str, Component] = {}
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self.timings: dict[str, float] = {}
        self.apiserver_port = 0
        self._kubectl_path: Path | None = None
        self._started = False

    # ----- paths -------------------------------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (client certificate with O=system:masters)."""
        return self.workdir / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def pki_dir(self) -> Path:
        return self.workdir / "pki"

    @property
    def logs_dir(self) -> Path:
        return self.workdir / "logs"

    @property
    def audit_log(self) -> Path:
        """kube-apiserver's audit log (JSON lines; see flags.AUDIT_POLICY)."""
        return self.logs_dir / "audit.jsonl"

    @property
    def kubectl_path(self) -> Path:
        if self.binaries is not None:
            return self.binaries.kubectl
        if self._kubectl_path is None:
            raise ClusterError("cluster not started: no kubectl path known")
        return self._kubectl_path

    # ----- lifecycle ---------------------------------------------------------------------
    def __enter__(self) -> LocalCluster:
        if not self._started:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, crds: Sequence[Path | str] | None = None) -> LocalCluster:
        """etcd, kube-apiserver (wait /readyz), CRDs (wait Established), then the KCM.

        The CRDs go in before kube-controller-manager because it discovers new kinds
        only every 30 s, which would delay garbage collection of custom objects' dependents.
        """
        if self._started:
            raise ClusterError("cluster already started")
        if crds is not None:
            self.crds = [Path(c) for c in crds]
        began = time.monotonic()
        self.binaries = self.binaries or ensure_binaries()
        self.timings["binaries"] = time.monotonic() - began
        self._prepare_workdir()
        self._started = True
        if not self.daemon:
            atexit.register(self.stop)
        try:
            self._start_all()
        except BaseException:
            self.stop()
            raise
        self.timings["start_total"] = time.monotonic() - began
        return self

    def _prepare_workdir(self) -> None:
        if self._own_workdir:
            sweep_stale_workdirs()
            self.workdir = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
        else:
            self.workdir.mkdir(parents=True, exist_ok=True)
            for name in _RUN_FILES:
                path = self.workdir / name
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
        self.logs_dir.mkdir()

    def _start_all(self) -> None:
        assert self.binaries is not None
        began = time.monotonic()
        pki = create_pki(self.pki_dir)
        self.timings["certs"] = time.monotonic() - began
        etcd_port, peer_port, self.apiserver_port, kcm_port = free_ports(4)
        self._state().save()

        argv = flags.etcd(self.binaries.etcd, self.workdir / "etcd-data", etcd_port, peer_port)
        self._launch("etcd", argv, [etcd_port, peer_port])
        self._wait("etcd", f"http://127.0.0.1:{etcd_port}/health", None)

        policy = self.workdir / "audit-policy.yaml"
        policy.write_text(flags.AUDIT_POLICY)
        argv = flags.kube_apiserver(
            self.binaries.kube_apiserver, pki, etcd_port, self.apiserver_port,
            policy, self.audit_log,
        )
        self._launch("kube-apiserver", argv, [self.apiserver_port])
        self._wait_apiserver()
        write_kubeconfig(
            self.kubeconfig,
            server=self.server,
            ca_cert=pki.ca_cert,
            user="admin",
            client_cert=pki.admin_cert,
            client_key=pki.admin_key,
        )
        self._state().save()

        if self.crds:
            began = time.monotonic()
            install_crds(self, self.crds)
            self.timings["crds"] = time.monotonic() - began

        argv = flags.kube_controller_manager(
            self.binaries.kube_controller_manager, pki, self.kubeconfig, kcm_port
        )
        self._launch("kube-controller-manager", argv, [kcm_port])
        self._wait(
            "kube-controller-manager", f"https://127.0.0.1:{kcm_port}/healthz", tls_context(None)
        )
        self._state().save()

    def stop(self) -> None:
        """SIGTERM each component (SIGKILL after a timeout), check the ports, clean up."""
        atexit.unregister(self.stop)
        if not self._started:
            return
        self._started = False
        for name in reversed(list(self.components)):
            terminate(self.components[name], self._procs.get(name))
        ports = [p for c in self.components.values() for p in c.ports]
        busy = wait_ports_free(ports)
        still = [c.name for c in self.components.values() if is_ours(c)]
        if self.workdir.is_dir():
            ClusterState.remove(self.workdir)
            if self._own_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)
        self._procs.clear()
        if busy or still:
            raise ClusterError(
                f"after stop: ports still busy {busy}, processes still running {still}"
            )

    def restart_apiserver(self) -> float:
        """Stop kube-apiserver (SIGTERM) and start it again on the same port; return seconds."""
        began = time.monotonic()
        component = self.components["kube-apiserver"]
        terminate(component, self._procs.get(component.name))
        busy = wait_ports_free(component.ports)
        if busy:
            raise ClusterError(f"kube-apiserver port {busy} still busy after stop")
        self._procs[component.name] = spawn(component, daemon=self.daemon)
        self._wait_apiserver()
        self._state().save()
        self.timings["restart_apiserver"] = time.monotonic() - began
        return self.timings["restart_apiserver"]

    def restart_component(self, name: str, *, kill: bool = False) -> float:
        """Stop etcd or kube-apiserver (SIGTERM, or SIGKILL with `kill`: a crash) and start
        it again with the same flags, ports and data; return seconds until healthy."""
        began = time.monotonic()
        component = self.components[name]
        proc = self._procs.get(name)
        if kill:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(component.pid, signal.SIGKILL)
            if proc is not None:
                proc.wait(10)
        else:
            terminate(component, proc)
        busy = wait_ports_free(component.ports)
        if busy:
            raise ClusterError(f"{name} port {busy} still busy after stop")
        self._procs[name] = spawn(component, daemon=self.daemon)
        if name == "etcd":
            self._wait("etcd", f"http://127.0.0.1:{component.ports[0]}/health", None)
        else:
            self._wait_apiserver()
        self._state().save()
        return time.monotonic() - began

    @classmethod
    def attach(cls, workdir: Path | str) -> LocalCluster | None:
        """A handle on a cluster started by another process (from its state file)."""
        state = ClusterState.load(Path(workdir).resolve())
        if state is None:
            return None
        cluster = cls(state.workdir)
        cluster.components = {c.name: c for c in state.components}
        cluster.apiserver_port = int(state.server.rsplit(":", 1)[1]) if state.server else 0
        cluster._kubectl_path = Path(state.kubectl) if state.kubectl else None
        cluster._started = True
        return cluster

    def is_running(self) -> bool:
        """Every recorded component alive and the apiserver answering /readyz."""
        expected = {"etcd", "kube-apiserver", "kube-controller-manager"}
        if set(self.components) != expected or not all(
            is_ours(c) for c in self.components.values()
        ):
            return False
        try:
            status, _ = http_get(f"{self.server}/readyz", self._admin_tls(), timeout=3.0)
        except OSError:
            return False
        return status == 200

    # ----- clients -----------------------------------------------------------------------
    def api_client(self, kubeconfig: Path | None = None) -> ApiClient:
        """A kubernetes.client.ApiClient for the admin (or the given) kubeconfig."""
        from kubernetes import config  # noqa: PLC0415 - keep `build`/`down` free of it

        api: ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig or self.kubeconfig)
        )
        return api

    def kubectl(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,
        kubeconfig: Path | None = None,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run the built kubectl, always with an explicit --kubeconfig (never ~/.kube)."""
        # Discovery and OpenAPI caches per cluster: ~/.kube/cache is keyed by host:port,
        # and a later cluster on a reused port would read a stale schema.
        argv = [str(self.kubectl_path), f"--kubeconfig={kubeconfig or self.kubeconfig}",
                f"--cache-dir={self.workdir / 'kube-cache'}", *args]
        proc = subprocess.run(
            argv, input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            raise KubectlError(proc.returncode, argv, proc.stdout, proc.stderr)
        return proc

    def kubeconfig_for_service_account(
        self, namespace: str, name: str, *, expiration_seconds: int = 3600
    ) -> Path:
        """A kubeconfig acting as the ServiceAccount, with a token from the TokenRequest API."""
        from kubernetes import client  # noqa: PLC0415

        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=expiration_seconds)
        )
        with self.api_client() as api:
            response = client.CoreV1Api(api).create_namespaced_service_account_token(
                name, namespace, request
            )
        if response.status is None or not response.status.token:
            raise ClusterError(f"TokenRequest for {namespace}/{name} returned no token")
        token = response.status.token
        path = self.workdir / "kubeconfigs" / f"sa-{namespace}-{name}.kubeconfig"
        return write_kubeconfig(
            path,
            server=self.server,
            ca_cert=self.pki_dir / "ca.crt",
            user=f"system:serviceaccount:{namespace}:{name}",
            token=token,
            namespace=namespace,
        )

    def kubeconfig_for_user(self, user: str, groups: Sequence[str] = ()) -> Path:
        """A kubeconfig with a client certificate for any user and groups (RBAC tests)."""
        out = self.workdir / "kubeconfigs"
        cert, key = client_cert(self.pki_dir, user, tuple(groups), out)
        return write_kubeconfig(
            out / f"{cert.stem}.kubeconfig",
            server=self.server,
            ca_cert=self.pki_dir / "ca.crt",
            user=user,
            client_cert=cert,
            client_key=key,
        )

    def admin_get(self, path: str) -> tuple[int, str]:
        """GET an API path as admin (no client library needed)."""
        return http_get(f"{self.server}{path}", self._admin_tls())

    # ----- internals ---------------------------------------------------------------------
    def _admin_tls(self) -> ssl.SSLContext:
        return tls_context(
            self.pki_dir / "ca.crt", (self.pki_dir / "admin.crt", self.pki_dir / "admin.key")
        )

    def _state(self) -> ClusterState:
        return ClusterState(
            workdir=str(self.workdir),
            server=self.server,
            kubeconfig=str(self.kubeconfig),
            kubectl=str(self.kubectl_path),
            k8s_version=self.binaries.k8s_version if self.binaries else "",
            components=list(self.components.values()),
        )

    def _launch(self, name: str, argv: list[str], ports: list[int]) -> None:
        component = Component(name, argv, str(self.logs_dir / f"{name}.log"), ports=ports)
        self.components[name] = component
        self._procs[name] = spawn(component, daemon=self.daemon)
        self._state().save()

    def _alive(self, name: str) -> bool:
        proc = self._procs.get(name)
        if proc is not None:
            return proc.poll() is None
        return is_alive(self.components[name].pid)

    def _wait(self, name: str, url: str, context: ssl.SSLContext | None) -> None:
        self.timings[name] = wait_healthy(
            name,
            url,
            log=self.components[name].log,
            alive=lambda: self._alive(name),
            context=context,
            timeout=self.start_timeout,
        )

    def _wait_apiserver(self) -> None:
        self._wait("kube-apiserver", f"{self.server}/readyz", self._admin_tls())
