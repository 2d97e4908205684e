"""Source stage for files: YAML files and directories in, typed caches or errors out."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from constructs_lib import FieldError, OrasCache, SpecError, is_oras_cache, parse_oras_cache
from sync.sources import kubeyaml

YAML_SUFFIXES = (".yaml", ".yml")


@dataclass
class LoadResult:
    caches: list[tuple[str, OrasCache]] = field(default_factory=list)
    errors: list[SpecError] = field(default_factory=list)


def yaml_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Files given directly, and *.yaml / *.yml under directories, in a stable order."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted(
                p for p in path.rglob("*") if p.suffix in YAML_SUFFIXES and p.is_file()
            )
        else:
            yield path


def parse_documents(text: str, name: str, result: LoadResult) -> None:
    """Parse one multi-document YAML text as kubectl reads it (`sync.sources.kubeyaml`).

    A document with `items` is a list, as kubectl's decoder has it (`kind: List`, or
    `kubectl get -o yaml` output): its items are read as documents, named
    `file[2].items[0]`; a list within a list, a document that is a YAML sequence or a
    scalar are errors (kubectl refuses them too); documents of other kinds are ignored.
    """
    try:
        docs: list[Any] = list(kubeyaml.load_all(text))
    except (yaml.YAMLError, RecursionError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        problem = getattr(exc, "problem", None) or type(exc).__name__
        result.errors.append(SpecError(where, FieldError("", f"invalid YAML: {problem}")))
        return
    for index, doc in enumerate(docs):
        _document(doc, f"{name}[{index}]", result)


def _document(doc: Any, source: str, result: LoadResult, in_list: bool = False) -> None:
    if doc is None:
        return  # an empty document, as kubectl skips it
    if not isinstance(doc, dict):
        kind = "a list" if isinstance(doc, list) else "a scalar"
        result.errors.append(SpecError(source, FieldError(
            "", f"a document must be an object, got {kind} (kubectl refuses it too; a list "
            "of objects is written as kind: List with items)")))
        return
    if "items" in doc:
        if in_list:
            result.errors.append(SpecError(source, FieldError(
                "", "a list inside a list (kubectl refuses it too)")))
        else:
            _list(doc, source, result)
        return
    if not is_oras_cache(doc):
        return
    parsed = parse_oras_cache(doc, source)
    if isinstance(parsed, list):
        result.errors.extend(parsed)
    else:
        result.caches.append((source, parsed))


def _list(doc: dict[str, Any], source: str, result: LoadResult) -> None:
    """Expand a list as kubectl's unstructured decoder does: items without kind and
    apiVersion take the list's apiVersion and its kind without `List`."""
    items = doc["items"]
    if items is None:
        return
    if not isinstance(items, list):
        result.errors.append(SpecError(source, FieldError("items", "must be a list")))
        return
    kind = str(doc.get("kind", "")).removesuffix("List")
    for index, raw in enumerate(items):
        where = f"{source}.items[{index}]"
        if not isinstance(raw, dict):
            result.errors.append(SpecError(where, FieldError("", "must be an object")))
            continue
        item = raw
        if "kind" not in raw and "apiVersion" not in raw:
            item = {"apiVersion": doc.get("apiVersion"), "kind": kind, **raw}
        _document(item, where, result, in_list=True)


def load(paths: Iterable[str | Path]) -> LoadResult:
    result = LoadResult()
    for path in yaml_files(paths):
        try:
            text = path.read_bytes().decode("utf-8")
        except OSError as exc:
            result.errors.append(SpecError(str(path), FieldError("", exc.strerror or str(exc))))
            continue
        except UnicodeDecodeError as exc:
            result.errors.append(SpecError(str(path), FieldError(
                "", f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
                f"{exc.start})")))
            continue
        parse_documents(text, str(path), result)
    _check_unique(result)
    return result


def _check_unique(result: LoadResult) -> None:
    seen: dict[tuple[str | None, str], str] = {}
    for source, cache in result.caches:
        key = (cache.namespace, cache.name)
        if key in seen:
            result.errors.append(
                SpecError(source, FieldError("metadata.name", f"duplicate of {seen[key]}"))
            )
        seen.setdefault(key, source)
