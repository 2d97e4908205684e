"""YAML read as kubectl reads it (sync/sources/kubeyaml.py) and the file loader built on it."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.apply.applyset import ApplySet
from sync.cli import main
from sync.render.tree import render_paths
from sync.sources import kubeyaml
from sync.sources.files import load

API = "cache.converged-computing.github.io/v1alpha1"
HEAD = """\
apiVersion: cache.converged-computing.github.io/v1alpha1
kind: OrasCache
metadata: {name: c, namespace: ns}
"""


def one(text: str) -> Any:
    (doc,) = kubeyaml.load_all(text)
    return doc


def errors_of(tmp_path: Path, text: str | bytes) -> list[str]:
    path = tmp_path / "c.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return [str(e) for e in load([path]).errors]


def bomb(levels: int = 9) -> str:
    text = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    names = "bcdefghijklmnop"
    for prev, name in zip("a" + names, names[:levels - 1], strict=False):
        text += f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]\n"
    return text


@pytest.mark.parametrize(("text", "value"), [
    ("1:23:20", "1:23:20"),  # no base 60 (PyYAML: 5000)
    ("190:20:30.15", "190:20:30.15"),
    ("2001-12-14", "2001-12-14"),  # timestamps keep their text
    ("2001-13-45", "2001-13-45"),  # PyYAML: ValueError
    ("y", True), ("N", False), ("on", True), ("Off", False),  # go-yaml v2's words
    ("0x1F", 31), ("0o17", 15), ("017", 15), ("0b101", 5), ("1_000", 1000), ("+5", 5),
    ("09", 9), ("1e3", 1000), ("1.0", 1), ("0.5", 0.5), (".5", 0.5),
    ("18446744073709551615", 18446744073709551615),
    ("'1:23:20'", "1:23:20"), ("'y'", "y"), ("!foo bar", "bar"), ("!!int '12'", 12),
    ("!!str 12", "12"), ("!!float 3", 3), ("!!binary aGVsbG8=", "hello"),
])
def test_scalars_resolve_as_go_yaml_v2(text: str, value: Any) -> None:
    got = one(f"v: {text}")["v"]
    assert got == value and type(got) is type(value), got


@pytest.mark.parametrize("text", ["v: .nan", "v: -.inf", "v: !!int abc", "v: !!bool 2",
                                  "? [a]\n: b", "~: 1", "a: 1\nb: 2\na: 3"])
def test_what_kubectl_cannot_send_is_an_error(text: str) -> None:
    with pytest.raises(yaml.YAMLError):
        list(kubeyaml.load_all(text))


def test_keys_become_strings_as_in_sigs_yaml() -> None:
    assert one("{1: a, true: b, 1.5: c, 1e7: d, 0.00001: e, 1234567.0: f}") == {
        "1": "a", "true": "b", "1.5": "c", "1e+07": "d", "1e-05": "e", "1.234567e+06": "f"}


def test_duplicate_keys_are_errors_with_the_line(tmp_path: Path) -> None:
    errors = errors_of(tmp_path, HEAD + "spec:\n  port: 5000\n  replicas: 1\n  port: 80\n")
    assert errors == [f"{tmp_path}/c.yaml:7:3: invalid YAML: mapping key 'port' already "
                      "defined at line 5"]
    # A key that only differs in spelling is the same JSON key.
    assert errors_of(tmp_path, "kind: x\nmetadata: {1: a, '1': b}\n")


def test_merge_keys_may_be_overridden_but_not_repeated() -> None:
    doc = one("base: &b {port: 1, x: 2}\nspec: {<<: *b, port: 5000}\n")
    assert doc["spec"] == {"port": 5000, "x": 2}


def test_base_60_port_is_refused_not_read_as_5000(tmp_path: Path) -> None:
    assert errors_of(tmp_path, HEAD + "spec: {port: 1:23:20}\n") == [
        f"{tmp_path}/c.yaml[0]: spec.port: must be of type integer, got string"]


def test_dates_and_yaml_words_are_what_kubectl_makes_of_them(tmp_path: Path) -> None:
    loaded = load([_write(tmp_path, HEAD + "spec:\n  nodeSelector: {since: 2001-12-14}\n")])
    assert not loaded.errors
    assert loaded.caches[0][1].spec.node_selector == {"since": "2001-12-14"}
    assert errors_of(tmp_path, HEAD + "spec: {nodeSelector: {zone: y}}\n") == [
        f"{tmp_path}/c.yaml[0]: spec.nodeSelector.zone: must be of type string, got boolean"]
    assert errors_of(tmp_path, HEAD + "spec: {nodeSelector: {bad: 2001-13-45}}\n") == []


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_alias_bomb_is_refused_quickly_with_the_file_named(tmp_path: Path) -> None:
    start = time.monotonic()
    errors = errors_of(tmp_path, HEAD + "spec: {}\n---\n" + bomb())
    assert time.monotonic() - start < 1.0
    assert len(errors) == 1
    assert errors[0].startswith(f"{tmp_path}/c.yaml:")
    assert "excessive aliasing" in errors[0]


def test_alias_bomb_of_twelve_levels_does_not_hang(tmp_path: Path) -> None:
    # 9**12 nodes once expanded: the count must never expand it.
    start = time.monotonic()
    assert "excessive aliasing" in errors_of(tmp_path, bomb(12))[0]
    assert time.monotonic() - start < 1.0


def test_ordinary_aliases_are_fine(tmp_path: Path) -> None:
    # One spec shared by 300 caches of a List: ~9000 nodes, most of them from the alias.
    spec = "{nodeSelector: {zone: a, disk: ssd}, tolerations: [{key: k, operator: Exists}]}"
    items = "".join(f"  - {{kind: OrasCache, apiVersion: {API}, metadata: {{name: c{i}}}, "
                    "spec: *spec}\n" for i in range(1, 300))
    text = (f"kind: List\nitems:\n  - {{kind: OrasCache, apiVersion: {API}, "
            f"metadata: {{name: c0}}, spec: &spec {spec}}}\n{items}")
    loaded = load([_write(tmp_path, text)])
    assert not loaded.errors
    assert len(loaded.caches) == 300
    # Anchors do not cross documents.
    assert errors_of(tmp_path, "kind: X\ntol: &t [a]\n---\n" + HEAD + "spec: {x: *t}\n")


def test_anchor_containing_itself_is_refused(tmp_path: Path) -> None:
    assert "contains an alias of itself" in errors_of(tmp_path, HEAD + "spec: &s {x: *s}\n")[0]


def test_go_yaml_ratio_rule() -> None:
    # Under 1000 decoded nodes anything goes; over it, at most 99% from aliases.
    small = "a: &a [" + ", ".join(["1"] * 9) + "]\nb: [" + ", ".join(["*a"] * 90) + "]\n"
    assert one(small)
    big = "a: &a [" + ", ".join(["1"] * 9) + "]\nb: [" + ", ".join(["*a"] * 1200) + "]\n"
    assert len(one(big)["b"]) == 1200  # 13k nodes, 91% from aliases
    with pytest.raises(yaml.YAMLError, match="excessive aliasing"):
        one("a: &a [" + ", ".join(["1"] * 999) + "]\nb: [" + ", ".join(["*a"] * 200) + "]\n")
    assert kubeyaml.allowed_alias_ratio(1000) == 0.99
    assert kubeyaml.allowed_alias_ratio(4_000_000) == 0.10


def test_top_level_list_is_refused(tmp_path: Path) -> None:
    text = "- " + HEAD.replace("\n", "\n  ") + "spec: {}\n"
    assert errors_of(tmp_path, text) == [
        f"{tmp_path}/c.yaml[0]: a document must be an object, got a list (kubectl refuses it "
        "too; a list of objects is written as kind: List with items)"]
    assert "got a scalar" in errors_of(tmp_path, "just words\n")[0]


def test_kind_list_is_expanded_as_kubectl_does(tmp_path: Path) -> None:
    item = HEAD.replace("\n", "\n    ").rstrip() + "\n    spec: {}\n"
    text = "apiVersion: v1\nkind: List\nitems:\n  - " + item + "  - {kind: ConfigMap}\n"
    loaded = load([_write(tmp_path, text)])
    assert not loaded.errors
    assert [(s.rsplit("/", 1)[-1], c.name) for s, c in loaded.caches] == [
        ("c.yaml[0].items[0]", "c")]
    # A typed list's items without kind and apiVersion take the list's (kubectl get -o yaml).
    text = ("apiVersion: cache.converged-computing.github.io/v1alpha1\nkind: OrasCacheList\n"
            "items:\n  - metadata: {name: d}\n    spec: {replicas: 0}\n")
    assert errors_of(tmp_path, text) == [
        f"{tmp_path}/c.yaml[0].items[0]: spec.replicas: must be >= 1"]
    assert errors_of(tmp_path, "kind: List\nitems: 3\n") == [
        f"{tmp_path}/c.yaml[0]: items: must be a list"]
    assert errors_of(tmp_path, "kind: List\nitems: [{kind: List, items: []}]\n") == [
        f"{tmp_path}/c.yaml[0].items[0]: a list inside a list (kubectl refuses it too)"]


def test_non_utf8_file_is_an_error_naming_it(tmp_path: Path) -> None:
    assert errors_of(tmp_path, HEAD.encode() + b"spec: {image: \xff}\n") == [
        f"{tmp_path}/c.yaml: not UTF-8 text (byte 0xff at offset 122)"]


def bomb_in_a_cache(levels: int = 12) -> str:
    """An OrasCache whose accessModes hold the bomb: the validator's duplicate check
    (repr of each item) walked the whole expansion before any type error."""
    return bomb(levels) + HEAD + "spec:\n  storage: {size: 1Gi, accessModes: [*%s, *%s]}\n" % (
        ("abcdefghijklmnop"[levels - 1],) * 2)


def test_synth_refuses_a_bomb_quickly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, bomb_in_a_cache())
    start = time.monotonic()
    assert main(["synth", str(path)]) == 1
    assert time.monotonic() - start < 2.0
    assert f"error: {path}:" in capsys.readouterr().err


def test_git_render_refuses_a_bomb_with_the_repository_path(tmp_path: Path) -> None:
    (tmp_path / "caches").mkdir()
    (tmp_path / "caches" / "a.yaml").write_text(HEAD + "spec: {}\n---\n" + bomb_in_a_cache())
    desired = render_paths([tmp_path / "caches"], ApplySet("s", "default"), "default",
                           root=tmp_path)
    assert not desired.objects
    assert desired.errors[0].startswith("caches/a.yaml:")
    assert "excessive aliasing" in desired.errors[0]


YAMLISH = st.sampled_from(list("ab01:.-_+eExo *&!<>[]{},'\"\n#?|~\t\\yn"))


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.one_of(YAMLISH, st.characters(exclude_categories=["Cs"])),
               max_size=60))  # a decoded file holds no lone surrogates
def test_any_text_is_data_or_a_yaml_error(text: str) -> None:
    with contextlib.suppress(yaml.YAMLError):
        list(kubeyaml.load_all(text))


@pytest.mark.parametrize("text", ["{1e300: a}", "{-1e300: a}", "v: " + "9" * 5000,
                                  "v: 0" + "0" * 5000 + "1", "v: 0x" + "f" * 5000])
def test_huge_numbers_read_as_go_reads_them(text: str) -> None:
    assert list(kubeyaml.load_all(text))
