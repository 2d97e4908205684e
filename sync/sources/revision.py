"""What the revision pipeline (sync/revision_sync.py) needs from a source: a git clone
(sync/sources/git.py) or an OCI artifact followed by tag (sync/sources/oci.py).

`fetch` names the current revision (a commit, a manifest digest), `checkout` makes its
files a directory, `path_exists` says whether the followed path is in it, `secrets` are
what no message may show. Failures raise
`GitSourceError` (or a subclass): the pipeline then applies and prunes nothing.
"""

from __future__ import annotations

from typing import Protocol

from sync.sources.git import Revision


class RevisionSource(Protocol):
    @property
    def ref(self) -> str: ...

    @property
    def display_url(self) -> str: ...

    def fetch(self) -> str: ...

    def checkout(self, commit: str) -> Revision: ...

    def path_exists(self, commit: str, path: str) -> bool: ...

    def secrets(self) -> list[str]:
        """Credential values to redact from any message about this source."""
        ...

    def close(self) -> None: ...
