"""What several commands share: the git source and the registry client from flags."""

from __future__ import annotations

import argparse
from pathlib import Path

from constructs_lib.mounts import REGISTRY_CREDENTIALS_MOUNT
from sync.sources.git import GitSource, GitSourceError, load_credentials, source_from_args
from sync.sources.oras import OciError, Oras


def git_source(args: argparse.Namespace, workdir: Path) -> GitSource:
    return source_from_args(args.repo, args.ref, workdir, args.credentials_file,
                            args.credentials_secret)


def default_namespace(args: argparse.Namespace) -> str:
    return str(args.namespace[0]) if args.namespace else "default"


def registry_client(args: argparse.Namespace, registry: str) -> Oras:
    """The oras client for `registry` with the --registry-credentials-* flags."""
    path = Path(args.registry_credentials_file) if args.registry_credentials_file else (
        Path(REGISTRY_CREDENTIALS_MOUNT) if args.registry_credentials_secret else None)
    try:
        creds = load_credentials(path)
    except GitSourceError as err:
        raise OciError(str(err)) from None
    return Oras(registry, creds, plain_http=args.plain_http)
