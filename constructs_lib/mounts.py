"""Where the install's Deployments mount Secrets, and where the sync service reads them:
one definition for both sides (the service only ever reads files, never the Secrets API)."""

from __future__ import annotations

GIT_CREDENTIALS_MOUNT = "/etc/orascache/git-credentials"
REGISTRY_CREDENTIALS_MOUNT = "/etc/orascache/registry-credentials"
TRIGGER_MOUNT = "/etc/orascache/trigger"
