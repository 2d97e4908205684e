"""Command lines of the three components: every flag, and why it is there, in one place."""

from __future__ import annotations

from pathlib import Path

from tests.harness.certs import Pki

SERVICE_CIDR = "10.0.0.0/24"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"


def etcd(binary: Path, data_dir: Path, client_port: int, peer_port: int) -> list[str]:
    client_url, peer_url = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
    return [
        str(binary),
        "--name=oras-cache",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client_url}",
        f"--advertise-client-urls={client_url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=oras-cache={peer_url}",
        "--unsafe-no-fsync",  # tests only: much faster, the data is thrown away
        "--log-level=warn",
    ]


# Who made which request, for tests that count one client's requests in one namespace:
# kube-apiserver's request metrics are cluster-wide and have no client label, so they also
# count kube-controller-manager cleaning up after earlier tests. Watches are left out
# (long-running, and no test counts them); "blocking" mode writes each event before the
# response goes out, so a test reads its own requests as soon as it has the answers.
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  verbs: [watch]
- level: Metadata
  resources:
  - group: ""
    resources: [services, configmaps, persistentvolumeclaims, events]
  - group: apps
    resources: [statefulsets]
  - group: cache.converged-computing.github.io
- level: None
"""


def kube_apiserver(binary: Path, pki: Pki, etcd_port: int, port: int,
                   audit_policy: Path, audit_log: Path) -> list[str]:
    return [
        str(binary),
        f"--etcd-servers=http://127.0.0.1:{etcd_port}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        "--advertise-address=127.0.0.1",
        "--endpoint-reconciler-type=none",  # required with a loopback advertise address
        f"--cert-dir={pki.serving_cert.parent}",
        f"--tls-cert-file={pki.serving_cert}",
        f"--tls-private-key-file={pki.serving_key}",
        f"--client-ca-file={pki.ca_cert}",
        f"--service-account-key-file={pki.sa_public_key}",
        f"--service-account-signing-key-file={pki.sa_private_key}",
        f"--service-account-issuer={SA_ISSUER}",
        "--authorization-mode=Node,RBAC",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--allow-privileged=true",
        # logs/exec of the test node (tests/harness/node.py): dial its IP, never resolve
        # its name through the host's resolver.
        "--kubelet-preferred-address-types=InternalIP,Hostname",
        "--profiling=false",
        # On SIGTERM, stop waiting for open watches after 2 s instead of --request-timeout
        # (60 s): otherwise every stop and restart ends in a SIGKILL.
        "--shutdown-send-retry-after=true",
        f"--audit-policy-file={audit_policy}",
        f"--audit-log-path={audit_log}",
        "--audit-log-mode=blocking",
        "--audit-log-maxsize=1024",  # MB: one file per session, never rotated under a test
    ]


def kube_controller_manager(binary: Path, pki: Pki, kubeconfig: Path, port: int) -> list[str]:
    # Admin credentials, not --use-service-account-credentials: about 5 s faster start.
    return [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        # No front-proxy CA on this apiserver: do not look for one (it logs errors forever).
        "--authentication-skip-lookup",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--cert-dir={pki.serving_cert.parent / 'kcm'}",
        "--leader-elect=false",
        "--controllers=*",
        f"--service-account-private-key-file={pki.sa_private_key}",
        f"--root-ca-file={pki.ca_cert}",
        f"--cluster-signing-cert-file={pki.ca_cert}",
        f"--cluster-signing-key-file={pki.ca.key_path}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--profiling=false",
    ]
