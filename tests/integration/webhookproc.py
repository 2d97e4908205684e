"""The sync service's webhook as a local process that the real kube-apiserver calls."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from cryptography import x509
from kubernetes import client
from kubernetes.client import ApiClient

from constructs_lib.install import webhook_configuration

# (configuration name, local port, test namespace) -> MutatingWebhookConfiguration
WebhookConfig = Callable[[str, int, str], dict[str, Any]]


def local_webhook_config(name: str, port: int, namespace: str) -> dict[str, Any]:
    """The installed configuration (constructs_lib.install), pointed at a local URL and
    limited to the test's namespace."""
    return webhook_configuration(
        name, {"url": f"https://127.0.0.1:{port}/mutate"},
        {"matchLabels": {"kubernetes.io/metadata.name": namespace}})


def bundle(api: ApiClient, name: str) -> list[x509.Certificate]:
    """The CAs published in the configuration's first webhook."""
    mwc = client.AdmissionregistrationV1Api(api).read_mutating_webhook_configuration(name)
    pem = mwc.webhooks[0].client_config.ca_bundle
    if not pem:
        return []
    return x509.load_pem_x509_certificates(base64.b64decode(pem))
