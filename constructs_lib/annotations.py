"""The annotation contract for workflow Pods and Jobs -> typed `WorkflowParams`.

Keys carry the prefix ``oras.converged-computing.github.io/`` (see docs/DESIGN.md's table).
Compatible with the original operator: ``input-uri`` may repeat as ``input-uri_1``,
``input-uri_2``, ... (pulled in that order); ``entrypoint`` and ``oras-entrypoint`` were
URLs of scripts downloaded at start: such URLs are accepted and ignored (nothing is ever
downloaded). A non-URL ``entrypoint`` is the app's command when its container has none
(a JSON list, or a shell-like string split with shlex).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field

from constructs_lib.workflow_params import (
    DEFAULT_CACHE,
    DEFAULT_ORAS_IMAGE,
    Output,
    WorkflowParams,
    valid_name,
    valid_reference,
    valid_registry,
)

PREFIX = "oras.converged-computing.github.io/"
KEYS = (
    "oras-cache",
    "input-uri",
    "input-path",
    "output-uri",
    "output-path",
    "output-pipe",
    "container",
    "registry",
    "oras-env",
    "oras-container",
    "entrypoint",
    "oras-entrypoint",
    "debug",
    "unpack",
)
_LISTED = re.compile(r"^input-uri_([A-Za-z0-9-]+)$")
_URL = re.compile(r"^https?://", re.IGNORECASE)
_BOOLS = {"true": True, "false": False}


class AnnotationError(ValueError):
    """Every problem found in one set of annotations (``errors``, one line each)."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("invalid oras annotations:\n  " + "\n  ".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class ParsedAnnotations:
    """The typed parameters plus what was accepted but deliberately ignored."""

    params: WorkflowParams
    ignored: tuple[str, ...] = field(default=())




def _sort_key(suffix: str) -> tuple[int, int, str]:
    return (0, int(suffix), "") if suffix.isdigit() else (1, 0, suffix)


def _entrypoint(value: str, errors: list[str], key: str) -> tuple[str, ...] | None:
    if value.lstrip().startswith("["):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as err:
            errors.append(f"{key}: not a JSON list of strings ({err.msg})")
            return None
        if not isinstance(parsed, list) or not all(isinstance(p, str) for p in parsed):
            errors.append(f"{key}: not a JSON list of strings")
            return None
        return tuple(parsed)
    try:
        return tuple(shlex.split(value))
    except ValueError as err:
        errors.append(f"{key}: cannot split into words ({err})")
        return None


def _check_value(key: str, value: str) -> str | None:
    if not value:
        return "must not be empty"
    if key in ("input-uri", "output-uri") and not valid_reference(value):
        return f"{value!r} is not a repo/name:tag reference"
    if key == "oras-cache" and not valid_name(value):
        return f"{value!r} is not a valid OrasCache name"
    if key == "registry" and not valid_registry(value):
        return f"{value!r} is not host[:port][/path]"
    if key in ("debug", "unpack") and value.lower() not in _BOOLS:
        return f"must be true or false, got {value!r}"
    return None


def parse_annotations(annotations: Mapping[str, str] | None) -> ParsedAnnotations | None:
    """Typed parameters, or None when no annotation carries the prefix (nothing to wire).

    Raises `AnnotationError` listing every bad annotation (each named in full) and,
    for unknown keys, the valid ones.
    """
    ours = {k[len(PREFIX):]: v for k, v in (annotations or {}).items() if k.startswith(PREFIX)}
    if not ours:
        return None
    errors: list[str] = []
    ignored: list[str] = []
    values, inputs = _read_values(ours, errors)
    entrypoint = _entrypoint_of(values, errors, ignored)
    if "oras-entrypoint" in values:
        ignored.append(f"{PREFIX}oras-entrypoint is ignored: the oras containers' "
                       "scripts are built in")
    errors += _pairing_errors(values, inputs)
    outputs = (
        (Output(values["output-uri"], values.get("output-path")),)
        if "output-uri" in values
        else ()
    )
    if errors:
        raise AnnotationError(errors)
    params = WorkflowParams(
        inputs=tuple(inputs),
        outputs=outputs,
        input_path=values.get("input-path"),
        output_pipe=values.get("output-pipe"),
        cache=values.get("oras-cache", DEFAULT_CACHE),
        registry=values.get("registry"),
        container=values.get("container"),
        oras_image=values.get("oras-container", DEFAULT_ORAS_IMAGE),
        oras_env=values.get("oras-env"),
        entrypoint=entrypoint,
        unpack=_BOOLS[values.get("unpack", "true").lower()],
        debug=_BOOLS[values.get("debug", "false").lower()],
    )
    problems = params.validate()
    if problems:
        raise AnnotationError(problems)
    return ParsedAnnotations(params, tuple(ignored))


def _read_values(ours: Mapping[str, str], errors: list[str]) -> tuple[dict[str, str],
                                                                       list[str]]:
    """Each known key's stripped value, and the inputs in order (input-uri first, then
    input-uri_<n> by n); an unknown key or a bad value is an error."""
    listed: list[tuple[tuple[int, int, str], str]] = []
    values: dict[str, str] = {}
    for key, value in sorted(ours.items()):
        full = PREFIX + key
        match = _LISTED.fullmatch(key)
        if key not in KEYS and not match:
            errors.append(
                f"{full}: unknown annotation (valid: {', '.join(KEYS)}, input-uri_<n>)"
            )
            continue
        problem = _check_value("input-uri" if match else key, value.strip())
        if problem:
            errors.append(f"{full}: {problem}")
            continue
        if match:
            listed.append((_sort_key(match.group(1)), value.strip()))
        else:
            values[key] = value.strip()
    inputs = ([values["input-uri"]] if "input-uri" in values else []) + [
        v for _, v in sorted(listed)
    ]
    return values, inputs


def _entrypoint_of(values: Mapping[str, str], errors: list[str],
                   ignored: list[str]) -> tuple[str, ...] | None:
    if "entrypoint" not in values:
        return None
    if _URL.match(values["entrypoint"]):
        ignored.append(f"{PREFIX}entrypoint is ignored: a script URL (nothing is "
                       "downloaded; the wiring is built in)")
        return None
    entrypoint = _entrypoint(values["entrypoint"], errors, PREFIX + "entrypoint")
    if entrypoint == ():
        errors.append(f"{PREFIX}entrypoint: no command in {values['entrypoint']!r}")
    return entrypoint


def _pairing_errors(values: Mapping[str, str], inputs: list[str]) -> list[str]:
    """Annotations that mean nothing without their partner."""
    errors = []
    if "output-path" in values and "output-uri" not in values:
        errors.append(f"{PREFIX}output-path: set {PREFIX}output-uri too (where to push it)")
    if "output-pipe" in values and "output-uri" not in values:
        errors.append(f"{PREFIX}output-pipe: set {PREFIX}output-uri too (where to push it)")
    if "input-path" in values and not inputs:
        errors.append(f"{PREFIX}input-path: set {PREFIX}input-uri too (what to pull)")
    return errors
