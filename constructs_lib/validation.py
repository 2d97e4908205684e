"""Offline validation of OrasCache documents against `schema.py`.

The walker implements the subset of structural OpenAPI that the schema uses (types,
int-or-string, enum, bounds, patterns, required, defaults, unknown fields) and a Python
twin of each CEL rule, so `orascache synth` rejects what the API server would reject,
with every error and its field path, before anything is rendered or applied.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal, localcontext
from functools import cache
from typing import Any

from constructs_lib import schema


@dataclass(frozen=True)
class FieldError:
    """One problem at one field path, e.g. `spec.replicas: must be >= 1`."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


@cache
def _regex(pattern: str) -> re.Pattern[str]:
    """`pattern` as the API server's RE2 reads it, for `search`.

    In RE2 (and ECMA 262, the language of OpenAPI patterns) `$` matches only at the end of
    the text; in Python it also matches before a final newline, so `^[a-z]+$` would pass
    `"foo\\n"`. Each `$` outside a character class becomes `\\Z`.
    """
    out: list[str] = []
    index, in_class = 0, False
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            out.append(pattern[index:index + 2])
            index += 2
            continue
        if in_class:
            in_class = char != "]" or out[-1] in ("[", "[^")
        elif char == "[":
            in_class = True
            if pattern.startswith("[^", index):
                out.append("[^")
                index += 2
                continue
        elif char == "$":
            char = "\\Z"
        out.append(char)
        index += 1
    return re.compile("".join(out))


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


def _type_name(value: Any) -> str:
    for name, types in _JSON_TYPES.items():
        if isinstance(value, types) and not (name == "integer" and isinstance(value, bool)):
            return name
    return "null" if value is None else type(value).__name__


def _check_type(value: Any, node: dict[str, Any]) -> str | None:
    if node.get("x-kubernetes-int-or-string"):
        expected = ["integer", "string"]
    elif "type" in node:
        expected = [node["type"]]
    else:
        return None
    actual = _type_name(value)
    if actual in expected:
        return None
    return f"must be of type {' or '.join(expected)}, got {actual}"


def _check_scalar(value: Any, node: dict[str, Any]) -> list[str]:
    errors: list[str] = []
    if "enum" in node and value not in node["enum"]:
        valid = ", ".join(str(v) for v in node["enum"])
        errors.append(f"unsupported value {value!r}: must be one of {valid}")
    if isinstance(value, str):
        if len(value) < node.get("minLength", 0):
            errors.append(f"must be at least {node['minLength']} characters")
        if "maxLength" in node and len(value) > node["maxLength"]:
            errors.append(f"must be at most {node['maxLength']} characters")
        if "pattern" in node and not _regex(node["pattern"]).search(value):
            errors.append(f"{value!r} does not match {node['pattern']}")
    elif isinstance(value, int) and not isinstance(value, bool):
        if "minimum" in node and value < node["minimum"]:
            errors.append(f"must be >= {node['minimum']}")
        if "maximum" in node and value > node["maximum"]:
            errors.append(f"must be <= {node['maximum']}")
    return errors


def _walk(value: Any, node: dict[str, Any], path: str, errors: list[FieldError]) -> Any:
    """Validate `value`, returning a copy with schema defaults filled in."""
    type_error = _check_type(value, node)
    if type_error:
        errors.append(FieldError(path, type_error))
        return value
    errors.extend(FieldError(path, m) for m in _check_scalar(value, node))
    out: Any
    if isinstance(value, dict):
        out = _walk_object(value, node, path, errors)
    elif isinstance(value, list):
        out = _walk_list(value, node, path, errors)
    else:
        out = value
    if node.get("x-kubernetes-validations") and not errors:
        for rule in node["x-kubernetes-validations"]:
            if not CEL_TWINS[rule["rule"]](out):
                where = _join(path, rule["fieldPath"].lstrip(".")) if "fieldPath" in rule else path
                errors.append(FieldError(where, rule["message"]))
    return out


def _walk_list(value: list[Any], node: dict[str, Any], path: str, errors: list[FieldError],
           ) -> list[Any]:
    if "minItems" in node and len(value) < node["minItems"]:
        errors.append(FieldError(path, f"must have at least {node['minItems']} items"))
    if "maxItems" in node and len(value) > node["maxItems"]:
        errors.append(FieldError(path, f"must have at most {node['maxItems']} items"))
    if node.get("x-kubernetes-list-type") == "set":
        # A set's items are scalars (the others get their type error below); comparing
        # only those never walks a nested or aliased value (repr of one 990 lists deep
        # raised RecursionError; of a billion laughs, never returned).
        scalars = [(type(v), v) for v in value if isinstance(v, (str, int, float, bool))]
        if len(set(scalars)) < len(scalars):
            errors.append(FieldError(path, "must not contain duplicates"))
    items = node.get("items", {})
    return [_walk(v, items, f"{path}[{i}]", errors) for i, v in enumerate(value)]


def _walk_object(
    value: dict[str, Any], node: dict[str, Any], path: str, errors: list[FieldError]
) -> dict[str, Any]:
    props: dict[str, Any] = node.get("properties", {})
    extra = node.get("additionalProperties")
    out: dict[str, Any] = {}
    for key, child in value.items():
        declared = key in props or isinstance(extra, dict)
        if declared and child is None:
            continue  # the API server prunes nulls of non-nullable fields before defaulting
        if not isinstance(key, str):
            errors.append(FieldError(path, f"keys must be strings, got {key!r}"))
        elif key in props:
            out[key] = _walk(child, props[key], _join(path, key), errors)
        elif isinstance(extra, dict):
            out[key] = _walk(child, extra, _join(path, key), errors)
        elif props:
            known = ", ".join(sorted(props))
            errors.append(FieldError(_join(path, key), f"unknown field (known: {known})"))
    for key in node.get("required", []):
        if value.get(key) is None:
            errors.append(FieldError(_join(path, key), "required"))
    if "maxProperties" in node and len(value) > node["maxProperties"]:
        errors.append(FieldError(path, f"must have at most {node['maxProperties']} properties"))
    for key, child in props.items():
        if key not in out and "default" in child:
            out[key] = child["default"]
    return out


def _has(obj: dict[str, Any], *keys: str) -> bool:
    for key in keys:
        if not isinstance(obj, dict) or key not in obj:
            return False
        obj = obj[key]
    return True


# Go's strings.TrimSpace (and CEL's trim()) removes Unicode White_Space, which is not the
# set Python's str.strip() removes (that one also takes \x1c-\x1f).
_GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + (
    "\u2028\u2029\u202f\u205f\u3000")
_BINARY = {f"{p}i": 1024 ** (i + 1) for i, p in enumerate("KMGTPE")}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_SPEC_RESOURCES_RULE = schema.SPEC_SCHEMA["properties"]["resources"][
    "x-kubernetes-validations"][0]["rule"]
_QUANTITY = re.compile(r"([+-]?)([0-9]*\.?[0-9]*)(.*)")
_MAX_QUANTITY = Decimal(2**63 - 1)
_NANO = Decimal("1e-9")


def quantity(value: int | str) -> Decimal:
    """A valid quantity's value as resource.ParseQuantity has it: non-zero magnitudes
    rounded up to 1n and capped at 2^63-1, as the API server compares them."""
    sign, number, suffix = _QUANTITY.fullmatch(str(value)).groups()  # type: ignore[union-attr]
    with localcontext() as ctx:
        ctx.prec, ctx.Emax, ctx.Emin = 100, 999_999_999, -999_999_999
        amount = Decimal(number)
        if suffix in _BINARY:
            amount *= _BINARY[suffix]
        elif suffix in _DECIMAL:
            amount = amount.scaleb(_DECIMAL[suffix])
        else:
            amount = amount.scaleb(int(suffix[1:]))
        amount = min(amount, _MAX_QUANTITY)
        if amount:
            amount = max(_NANO, (amount / _NANO).to_integral_value(ROUND_CEILING) * _NANO)
    return -amount if sign == "-" else amount


def _qualified_name(key: str) -> bool:
    return bool(_regex(schema.QUALIFIED_NAME_PATTERN).search(key)) and (
        "/" not in key or key.index("/") <= 253)


def _requests_within_limits(resources: dict[str, Any]) -> bool:
    requests, limits = resources.get("requests", {}), resources.get("limits", {})
    return all(quantity(requests[k]) <= quantity(limits[k]) for k in requests if k in limits)


# Python twins of the CEL rules in schema.py, keyed by the rule text; a unit test checks
# every rule has one, and the integration oracle checks that they agree with the server.
CEL_TWINS: dict[str, Callable[[Any], bool]] = {
    "self.replicas <= 1 || (has(self.secrets) && has(self.secrets.registryHttp))": (
        lambda s: s["replicas"] <= 1 or _has(s, "secrets", "registryHttp")
    ),
    "self.replicas <= 1 || (has(self.storage) && 'ReadWriteMany' in self.storage.accessModes)": (
        lambda s: s["replicas"] <= 1
        or (_has(s, "storage") and "ReadWriteMany" in s["storage"]["accessModes"])
    ),
    "!self.deploy || !has(self.registry)": lambda s: not s["deploy"] or not _has(s, "registry"),
    "self == self.trim()": lambda s: s == s.strip(_GO_SPACE),
    "!('ReadWriteOncePod' in self) || size(self) == 1": (
        lambda m: "ReadWriteOncePod" not in m or len(m) == 1
    ),
    f"self.all(k, k in {schema.CONTAINER_RESOURCES})": (
        lambda m: all(k in schema.CONTAINER_RESOURCES for k in m)
    ),
    _SPEC_RESOURCES_RULE: _requests_within_limits,
    f"self.all(k, {schema.qualified_name_rule('k')})": lambda m: all(map(_qualified_name, m)),
    f"!has(self.key) || self.key == '' || ({schema.qualified_name_rule('self.key')})": (
        lambda t: not t.get("key") or _qualified_name(t["key"])
    ),
    "(has(self.key) && self.key != '') || (has(self.operator) && self.operator == 'Exists')": (
        lambda t: bool(t.get("key")) or t.get("operator") == "Exists"
    ),
    "!has(self.operator) || self.operator != 'Exists' || !has(self.value) || self.value == ''": (
        lambda t: t.get("operator") != "Exists" or not t.get("value")
    ),
    "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')": (
        lambda t: "tolerationSeconds" not in t or t.get("effect") == "NoExecute"
    ),
    f"size(self.metadata.name) <= {schema.MAX_NAME_LENGTH}": (
        lambda o: len(o["metadata"]["name"]) <= schema.MAX_NAME_LENGTH
    ),
    f"self.metadata.name.matches('{schema.NAME_PATTERN}')": (
        lambda o: bool(_regex(schema.NAME_PATTERN).search(o["metadata"]["name"]))
    ),
}


def validate_spec(spec: Any, path: str = "spec") -> tuple[dict[str, Any], list[FieldError]]:
    """Validate an OrasCache spec; returns the defaulted spec and every error found."""
    errors: list[FieldError] = []
    defaulted = _walk(spec, schema.SPEC_SCHEMA, path, errors)
    return defaulted, errors


def validate_metadata(metadata: Any) -> list[FieldError]:
    """Check the name rules the CRD enforces at the root, plus the namespace shape."""
    if not isinstance(metadata, dict):
        return [FieldError("metadata", f"must be of type object, got {_type_name(metadata)}")]
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        return [FieldError("metadata.name", "required")]
    errors = [
        FieldError("metadata.name", rule["message"].removeprefix("metadata.name "))
        for rule in schema.openapi_schema()["x-kubernetes-validations"]
        if not CEL_TWINS[rule["rule"]]({"metadata": metadata})
    ]
    namespace = metadata.get("namespace")
    if namespace is not None and (
        not isinstance(namespace, str)
        or len(namespace) > 63
        or not _regex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$").search(namespace)
    ):
        errors.append(FieldError("metadata.namespace", f"{namespace!r} is not a valid namespace"))
    return errors
