"""Source stage for files: YAML files and directories in, typed caches or errors out."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from constructs_lib import FieldError, OrasCache, SpecError, is_oras_cache, parse_oras_cache

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


# libyaml's loader when PyYAML has it: the same safe schema, ~10x faster on 1000 files.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_documents(text: str, name: str, result: LoadResult) -> None:
    """Parse one multi-document YAML text; documents of other kinds are ignored."""
    try:
        docs: list[Any] = list(yaml.load_all(text, Loader=SAFE_LOADER))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        problem = getattr(exc, "problem", None) or str(exc)
        result.errors.append(SpecError(where, FieldError("", f"invalid YAML: {problem}")))
        return
    for index, doc in enumerate(docs):
        if not is_oras_cache(doc):
            continue
        source = f"{name}[{index}]"
        parsed = parse_oras_cache(doc, source)
        if isinstance(parsed, list):
            result.errors.extend(parsed)
        else:
            result.caches.append((source, parsed))


def load(paths: Iterable[str | Path]) -> LoadResult:
    result = LoadResult()
    for path in yaml_files(paths):
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            result.errors.append(SpecError(str(path), FieldError("", exc.strerror or str(exc))))
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
