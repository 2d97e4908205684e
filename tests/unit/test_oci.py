"""Pure parts of the OCI artifact support: references, the reproducible layer, the config,
the credentials file handed to oras."""

from __future__ import annotations

import base64
import io
import json
import stat
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from sync.publish.oci import CONTENT_MEDIA_TYPE, CREATED, build_layer, config_blob
from sync.sources.git import Credentials
from sync.sources.oci import OciSourceError, content_layer, unpack
from sync.sources.oras import OciError, Oras, Reference

FILES = {"kustomization.yaml": "resources: []\n", "ns/a.yaml": "kind: A\n",
         "ns/b.yaml": "kind: B\n", "_unnamespaced/c.yaml": "kind: C\n"}


def test_references() -> None:
    ref = Reference.parse("oci://127.0.0.1:5000/caches/rendered:main")
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (
        "127.0.0.1:5000", "caches/rendered", "main", None)
    assert str(ref) == "127.0.0.1:5000/caches/rendered:main"
    assert ref.at("sha256:" + "a" * 64) == "127.0.0.1:5000/caches/rendered@sha256:" + "a" * 64
    pinned = Reference.parse("ghcr.io/org/c@sha256:" + "b" * 64)
    assert pinned.tag is None and pinned.digest == "sha256:" + "b" * 64
    for bad in ("ghcr.io/org/c", "c:latest", "ghcr.io/Org/c:v1", "ghcr.io/org/c:-x", ""):
        with pytest.raises(OciError, match="not an OCI reference"):
            Reference.parse(bad)


def test_layer_is_reproducible_and_holds_exactly_the_files() -> None:
    first = build_layer(FILES)
    again = build_layer(dict(reversed(list(FILES.items()))))
    assert first == again
    assert first.digest != build_layer({**FILES, "ns/a.yaml": "kind: A2\n"}).digest
    header = first.data[:10]
    assert header[4:8] == b"\0\0\0\0"  # no mtime in the gzip header
    with tarfile.open(fileobj=io.BytesIO(first.data), mode="r:gz") as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        assert names == sorted(names)
        assert {m.name for m in members if m.isfile()} == set(FILES)
        assert {m.name for m in members if m.isdir()} == {"ns", "_unnamespaced"}
        for member in members:
            assert (member.uid, member.gid, member.uname, member.gname, member.mtime) == (
                0, 0, "", "", 0)
            if member.isfile():
                handle = tar.extractfile(member)
                assert handle is not None
                assert handle.read().decode() == FILES[member.name]
                assert member.mode == 0o644


def test_layer_refuses_paths_outside_the_tree() -> None:
    for bad in ("/etc/passwd", "../x.yaml", "a/../../x"):
        with pytest.raises(OciError, match="refusing"):
            build_layer({bad: "x"})


def test_config_records_the_uncompressed_digest() -> None:
    layer = build_layer(FILES)
    config = json.loads(config_blob(layer, "2026-12-04T00:00:00Z"))
    assert config["rootfs"] == {"type": "layers", "diff_ids": [layer.diff_id]}
    assert config["created"] == "2026-12-04T00:00:00Z"
    assert CREATED == "org.opencontainers.image.created"


def test_credentials_go_to_a_private_config_file(tmp_path: Path) -> None:
    fake = tmp_path / "oras"
    fake.write_text("#!/bin/sh\necho \"$@\" > \"$(dirname \"$0\")/argv\"\n")
    fake.chmod(0o755)
    oras = Oras("127.0.0.1:5000", Credentials("robot", "pa55:word"), plain_http=True,
                binary=str(fake))
    try:
        oras.run("resolve", "127.0.0.1:5000/r:t", what="resolve")
        argv = (tmp_path / "argv").read_text()
        assert "pa55" not in argv and "--plain-http" in argv
        config = Path(argv.split("--registry-config ")[1].split()[0])
        assert stat.S_IMODE(config.stat().st_mode) == 0o600
        assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700
        auth = json.loads(config.read_text())["auths"]["127.0.0.1:5000"]["auth"]
        assert base64.b64decode(auth) == b"robot:pa55:word"
    finally:
        oras.close()
    assert not config.exists()


def test_errors_are_redacted(tmp_path: Path) -> None:
    fake = tmp_path / "oras"
    secret = "hunter2-secret"
    pair = base64.b64encode(f"u:{secret}".encode()).decode()
    fake.write_text(f"#!/bin/sh\necho 'Error: bad {secret} {pair}' >&2\nexit 1\n")
    fake.chmod(0o755)
    oras = Oras("r.example", Credentials("u", secret), binary=str(fake))
    try:
        with pytest.raises(OciError) as err:
            oras.run("resolve", "r.example/x:y", what="resolving r.example/x:y")
    finally:
        oras.close()
    assert secret not in str(err.value) and pair not in str(err.value)
    assert "resolving r.example/x:y failed: Error: bad ***" in str(err.value)


def test_missing_oras_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("ORASCACHE_ORAS", raising=False)
    with pytest.raises(OciError, match="oras CLI was not found"):
        Oras("r.example")


def test_layer_digest_is_stable_across_processes() -> None:
    """Separate processes give byte-identical archives (the no-new-artifact rule compares
    digests made by different `orascache render` runs)."""
    code = ("from sync.publish.oci import build_layer; import sys; "
            "sys.stdout.write(build_layer({'b/x.yaml': 'x', 'a.yaml': 'a'}).digest)")
    root = Path(__file__).resolve().parents[2]
    digests = {subprocess.run([sys.executable, "-c", code], cwd=root, text=True,
                              capture_output=True, check=True).stdout for _ in range(2)}
    assert digests == {build_layer({"a.yaml": "a", "b/x.yaml": "x"}).digest}


def _tgz(path: Path, build: Callable[[tarfile.TarFile], None]) -> Path:
    with tarfile.open(path, mode="w:gz") as tar:
        build(tar)
    return path


def test_content_layer_choice() -> None:
    flux = {"mediaType": CONTENT_MEDIA_TYPE, "digest": "sha256:f", "size": 10}
    plain = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:p"}
    manifest = {"mediaType": "application/vnd.oci.image.manifest.v1+json"}
    assert content_layer({**manifest, "layers": [plain, flux]}, "r") is flux
    assert content_layer({**manifest, "layers": [plain]}, "r") is plain
    with pytest.raises(OciSourceError, match="has no application"):
        content_layer({**manifest, "layers": [plain, plain]}, "r")
    with pytest.raises(OciSourceError, match="not an image manifest"):
        content_layer({"mediaType": "application/vnd.oci.image.index.v1+json"}, "r")
    with pytest.raises(OciSourceError, match="over the"):
        content_layer({**manifest, "layers": [{**flux, "size": 1 << 40}]}, "r")


def test_unpack_takes_files_and_refuses_links_and_escapes(tmp_path: Path) -> None:
    good = tmp_path / "good.tgz"
    good.write_bytes(build_layer(FILES).data)
    unpack(good, tmp_path / "tree", "r")
    got = {p.relative_to(tmp_path / "tree").as_posix(): p.read_text()
           for p in (tmp_path / "tree").rglob("*") if p.is_file()}
    assert got == FILES

    def link(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo("a.yaml")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)

    def escape(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo("../x.yaml")
        tar.addfile(info, io.BytesIO(b""))

    for name, build, message in (("link", link, "not a regular file"),
                                 ("escape", escape, "leaves the tree")):
        with pytest.raises(OciSourceError, match=message):
            unpack(_tgz(tmp_path / f"{name}.tgz", build), tmp_path / name, "r")
    junk = tmp_path / "junk.tgz"
    junk.write_bytes(b"not gzip at all")
    with pytest.raises(OciSourceError, match="not a valid tar\\+gzip"):
        unpack(junk, tmp_path / "junk", "r")
