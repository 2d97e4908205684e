"""The test node's registry mirror: how an air-gapped cluster pulls images by their real names.

- A distribution registry (the binary ``oras_tools`` builds) runs as a host process on the
  node's bridge address (``Network.gateway``, port :data:`PORT`). It holds every image the
  harness builds (``images.py``, ``sync_image.py``) under its full name as the repository:
  ``docker.io/library/busybox:1.35`` is ``<mirror>/docker.io/library/busybox:1.35``, so the
  same path under two registries never collides.
- containerd's CRI plugin reads ``hosts.toml`` files under its ``config_path`` (containerd
  ``docs/hosts.md``): one per registry name, whose ``server`` is the mirror with the upstream
  name as the path prefix, and ``override_path = true`` because that prefix is not the
  ``/v2`` root the distribution spec assumes. No upstream fallback: nothing leaves the host.
- Pushes are cached: the storage directory is keyed by a hash of what it holds (each name and
  the tarball it comes from, whose file names carry their input hashes), so a warm start
  pushes nothing; a change to any image starts a fresh storage (no garbage to collect) and
  the one older storage is removed.

Only one node runs per machine (``node.py`` checks before it starts the mirror), so the
mirror's storage is never shared by two registries.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.harness.build import BuildError, cache_root

PORT = 5000
COMPLETE = "pushed.json"  # written last: the storage holds every image it names


def mirror_root() -> Path:
    return cache_root() / "node-mirror"


def registry_hosts(names: Mapping[str, Path]) -> list[str]:
    """The registry names to mirror: every name's first component (all are fully qualified)."""
    return sorted({name.split("/", 1)[0] for name in names})


def hosts_toml(address: str, host: str) -> str:
    """The mirror as the one ``[host]`` and as the ``server`` (the fallback: no upstream).
    containerd 1.6 refuses a file without a ``[host]`` table ("invalid `host` tree")."""
    url = f"http://{address}/v2/{host}"
    return (f"# {host} is served by the node's mirror registry; no upstream fallback.\n"
            f'server = "{url}"\n'
            "override_path = true\n\n"
            f'[host."{url}"]\n'
            '  capabilities = ["pull", "resolve"]\n'
            "  override_path = true\n")


def write_hosts_dir(directory: Path, address: str, hosts: list[str]) -> Path:
    """``<directory>/<host>/hosts.toml`` for each host: containerd's ``config_path``."""
    for host in hosts:
        (directory / host).mkdir(parents=True, exist_ok=True)
        (directory / host / "hosts.toml").write_text(hosts_toml(address, host))
    return directory


def storage_key(names: Mapping[str, Path]) -> str:
    content = json.dumps({n: p.name for n, p in sorted(names.items())}, sort_keys=True)
    return hashlib.sha256(content.encode()).hexdigest()[:16]


def storage_dir(names: Mapping[str, Path]) -> Path:
    return mirror_root() / storage_key(names)


def registry_config(storage: Path, address: str) -> str:
    return "\n".join([
        "version: 0.1",
        "log:",
        "  level: warn",
        "  accesslog:",
        "    disabled: true",
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {storage}",
        "http:",
        f"  addr: {address}",
        "",
    ])


def prepare_storage(names: Mapping[str, Path]) -> Path:
    """This set of images' storage directory; older ones are removed (one node at a time)."""
    keep = storage_dir(names)
    mirror_root().mkdir(parents=True, exist_ok=True)
    for other in mirror_root().iterdir():
        if other != keep and other.is_dir():
            shutil.rmtree(other, ignore_errors=True)
    keep.mkdir(exist_ok=True)
    return keep


def is_up(address: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{address}/v2/", timeout=1) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _tag(name: str) -> str:
    return name.rsplit(":", 1)[1]


def _copy(oras: Path, tarball: Path, source_tag: str, address: str, name: str) -> None:
    argv = [str(oras), "cp", "--from-oci-layout", f"{tarball}:{source_tag}",
            "--to-plain-http", f"{address}/{name}"]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600)
    if proc.returncode != 0:
        raise BuildError(f"{' '.join(argv)} failed: {proc.stderr.strip()[-2000:]}")


def push_all(oras: Path, address: str, storage: Path, tarballs: Mapping[str, Path],
             aliases: Mapping[str, tuple[str, ...]]) -> float:
    """Copy each tarball to the mirror under its name and its aliases, unless this storage
    already holds them all; return the seconds it took."""
    began = time.monotonic()
    stamp = storage / COMPLETE
    wanted = {name: str(path) for name, path in tarballs.items()}
    if stamp.is_file():
        return time.monotonic() - began
    jobs = [(tarball, _tag(name), alias) for name, tarball in tarballs.items()
            for alias in (name, *aliases.get(name, ()))]
    # Largest first: the sync image is most of the work.
    jobs.sort(key=lambda job: -job[0].stat().st_size)
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda job: _copy(oras, job[0], job[1], address, job[2]), jobs))
    tmp = stamp.with_suffix(".tmp")
    tmp.write_text(json.dumps(wanted, indent=1, sort_keys=True))
    os.replace(tmp, stamp)
    return time.monotonic() - began
