"""The service's options, one definition each: the CLI's defaults are these fields'.

Kept free of the kubernetes client and cdk8s, so that building the parser loads neither.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

DriftMode = Literal["correct", "report"]
DRIFT_MODES: tuple[DriftMode, ...] = ("correct", "report")
DEFAULT_HTTP_ADDR = "127.0.0.1:8080"
WEEK = 7 * 24 * 3600.0
# The label `--shard-key` selects caches on (Flux's sharding.fluxcd.io/key, in the
# project's label domain); the cluster source copies it onto each cache's children.
SHARD_LABEL = "sharding.cache.converged-computing.github.io/key"


@dataclass(frozen=True)
class LeaseOptions:
    """client-go's defaults for a controller's Lease, in seconds."""

    name: str = "oras-cache-sync"
    namespace: str = "default"
    identity: str = ""
    duration: int = 15
    renew_deadline: int = 10
    retry_period: int = 2


@dataclass(frozen=True)
class Options:
    """The cluster source (`sync --source cluster`)."""

    namespaces: Sequence[str] | None = None  # None: all namespaces
    workers: int = 8
    batch: int = 64
    resync_period: float = 600.0
    http_addr: str | None = DEFAULT_HTTP_ADDR
    leader_elect: bool = False
    lease: LeaseOptions = LeaseOptions()
    webhook_addr: str | None = None  # serve the admission webhook here (every replica)
    webhook_hosts: Sequence[str] = ()  # names in the serving certificate
    webhook_config: str | None = None  # MutatingWebhookConfiguration whose caBundle we keep
    webhook_cert_validity: float = WEEK
    # tls.crt, tls.key (+ ca.crt) from here, reloaded on change, instead of generating
    webhook_cert_dir: str | None = None
    # On SIGTERM the webhook keeps answering this long (each answer closing its connection):
    # the API server's kept-alive connections to a deleted Pod end without a refused Pod.
    webhook_drain: float = 5.0
    # The service's own namespace ($POD_NAMESPACE): with every namespace synced, the
    # webhook still refuses it and kube-system, as the install's namespaceSelector does.
    own_namespace: str | None = None
    drift: DriftMode = "correct"  # hand edits of fields we set: reverted, or only reported
    # Reconcile only the caches whose shard label has this value ('' : only unlabelled
    # caches); None: every cache, whatever its label (one instance, no sharding).
    shard_key: str | None = None


def shard_lease_name(shard_key: str | None, base: str = LeaseOptions.name) -> str:
    """Each shard elects its own leader: the base name for the unlabelled shard (so an
    unsharded instance hands over to it when an install becomes sharded), base-KEY else."""
    return f"{base}-{shard_key}" if shard_key else base


@dataclass(frozen=True)
class RevisionOptions:
    """The revision sources (`sync --source git` and `--source oci`)."""

    path: str = "."
    namespace: str = "default"  # namespace-less caches, and the ApplySet parent
    applyset_name: str = "orascache-git"
    interval: float = 60.0
    allow_empty: bool = False
    http_addr: str | None = DEFAULT_HTTP_ADDR
    drift_correction: bool = True  # re-apply the applied revision's objects every interval
    drift: DriftMode = "correct"
    render_workers: int | None = None  # helper processes for big renders (None: default)
