"""`sync`: run the service for the cluster source, or a revision source (git, oci)."""

from __future__ import annotations

import argparse
import os
import re
import socket
import sys
import tempfile
from pathlib import Path

from sync.apply.kube import Kube, load_api_client
from sync.cli.common import default_namespace, git_source, registry_client
from sync.cluster_service import StartupError, SyncService, preflight
from sync.options import LeaseOptions, Options, RevisionOptions, shard_lease_name
from sync.report import logs
from sync.revision_service import RevisionService
from sync.revision_sync import RevisionSync
from sync.serve.trigger import TriggerAuth, TriggerConfigError, token_path
from sync.sources.git import GitSourceError
from sync.sources.oci import OciSource
from sync.sources.oras import OciError, Reference
from sync.sources.revision import RevisionSource

# A label value that also fits a Lease name (a DNS subdomain) after "oras-cache-sync-".
SHARD_KEY = re.compile(r"[a-z0-9]([-a-z0-9]{0,48}[a-z0-9])?")


class UsageError(Exception):
    """A bad combination of sync options: printed as `error: ...`, exit `code`."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def cmd_sync(args: argparse.Namespace) -> int:
    logs.setup(args.log_level, args.log_format)
    try:
        if args.source == "cluster":
            return sync_cluster(args)
        return sync_revisions(args)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.code


def cluster_options(args: argparse.Namespace) -> Options:
    if args.trigger_token_file or args.trigger_secret:
        raise UsageError("POST /trigger is served by --source git and oci only")
    if args.webhook_cert_dir and not args.webhook_addr:
        raise UsageError("--webhook-cert-dir needs --webhook-addr")
    shard_key = args.shard_key
    if shard_key and not SHARD_KEY.fullmatch(shard_key):
        raise UsageError(f"--shard-key {shard_key!r}: use lower-case letters, digits and '-' "
                         "(at most 50, starting and ending with a letter or digit): it is a "
                         "label value and part of the Lease name")
    pod_namespace = os.environ.get("POD_NAMESPACE")
    lease = LeaseOptions(
        name=args.lease_name or shard_lease_name(shard_key),
        namespace=args.lease_namespace or pod_namespace or LeaseOptions.namespace,
        identity=args.identity or os.environ.get("POD_NAME")
        or f"{socket.gethostname()}-{os.getpid()}",
        duration=args.lease_duration, renew_deadline=args.renew_deadline,
        retry_period=args.retry_period)
    return Options(
        namespaces=None if args.all_namespaces else args.namespace, workers=args.workers,
        http_addr=args.http_addr, resync_period=args.resync_period,
        leader_elect=args.leader_elect, lease=lease,
        webhook_addr=args.webhook_addr, webhook_hosts=tuple(args.webhook_host or ()),
        webhook_config=args.webhook_config, webhook_cert_validity=args.webhook_cert_validity,
        webhook_cert_dir=args.webhook_cert_dir, webhook_drain=args.webhook_drain,
        drift=args.drift, own_namespace=pod_namespace or None, shard_key=shard_key)


def sync_cluster(args: argparse.Namespace) -> int:
    options = cluster_options(args)
    try:
        kube = Kube(load_api_client(args.kubeconfig))
        preflight(kube, options.namespaces)
        service = SyncService(kube, options)  # may refuse e.g. an unusable --webhook-cert-dir
    except StartupError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return service.run()


def revision_setup(args: argparse.Namespace) -> tuple[RevisionOptions, TriggerAuth | None]:
    """What the git and OCI sources share: their options and the /trigger token."""
    if args.source == "git" and not args.repo:
        raise UsageError("--source git needs --repo URL")
    if args.source == "oci" and not args.artifact:
        raise UsageError("--source oci needs --artifact REF")
    if args.namespace and len(args.namespace) > 1:
        raise UsageError(f"--source {args.source} takes one --namespace (for namespace-less "
                         "caches and the ApplySet parent)")
    trigger = None
    token = token_path(args.trigger_token_file, args.trigger_secret)
    if token is not None:
        try:
            trigger = TriggerAuth.from_file(token)
        except TriggerConfigError as err:
            raise UsageError(str(err), 1) from None
        if not args.http_addr:
            raise UsageError("POST /trigger needs --http-addr")
    options = RevisionOptions(
        path=args.path, namespace=default_namespace(args), applyset_name=args.applyset_name,
        interval=args.interval, allow_empty=args.allow_empty, http_addr=args.http_addr or None,
        drift_correction=args.drift_correction, drift=args.drift,
        render_workers=args.render_workers)
    return options, trigger


def sync_revisions(args: argparse.Namespace) -> int:
    """The git source, or the OCI source through the same revision pipeline."""
    options, trigger = revision_setup(args)
    # A git clone is kept between fetches; without --git-dir it lives as long as the
    # process, as an unpacked artifact does.
    with tempfile.TemporaryDirectory(prefix=f"orascache-{args.source}-") as tmp:
        source: RevisionSource
        try:
            if args.source == "git":
                source = git_source(args, Path(args.git_dir or tmp))
            else:
                ref = Reference.parse(args.artifact)
                source = OciSource(ref, registry_client(args, ref.registry), Path(tmp))
        except (GitSourceError, OciError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        kube = Kube(load_api_client(args.kubeconfig))
        return RevisionService(RevisionSync(kube, source, options), options, trigger).run()
