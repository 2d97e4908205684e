"""YAML read as kubectl reads it, with its limits, so a file means here what it means there.

kubectl turns each YAML document into JSON with sigs.k8s.io/yaml, which decodes with
go-yaml v2 (`go.yaml.in/yaml/v2`). PyYAML's safe loader reads YAML 1.1 differently:
`1:23:20` is 5000 (base 60), `2001-12-14` a date (and `2001-13-45` an exception), `y` and
`n` strings, NaN a number, and a duplicate key silently keeps the last value. This module
keeps libyaml's parser and replaces the resolver and the constructor:

- plain scalars resolve as go-yaml v2's `resolve()` does (resolve.go): the same words for
  booleans (`y`, `yes`, `on`, ...) and null, Go's integer syntax (`0x`, `0o`, `0b`, a
  leading `0` for octal, `_` ignored), no base 60, timestamps stay the text they were;
- numbers then go through JSON as sigs.k8s.io/yaml sends them: a float with an integral
  value is that integer (`1e3` is 1000), NaN and infinities are refused (encoding/json
  refuses them), map keys become strings (`1` -> "1", `true` -> "true");
- tags only choose how a scalar resolves (`!!int "x"` is an error, as in go-yaml); unknown
  tags are ignored, as go-yaml ignores them;
- a duplicate key is an error, as YAML itself (and go-yaml's strict mode, and the API
  server's strict field validation) says; kubectl alone keeps the last value;
- alias expansion is limited by go-yaml's own rule (decode.go `allowedAliasRatio`, added
  in "Add logic to catch cases of alias abuse", the fix for the API server's billion laughs,
  CVE-2019-11253): once a document has decoded more than 1000 nodes of which more than 100
  came from aliases, aliases may supply at most 99% of them (10% from 4,000,000 nodes
  on). The count is made on the composed graph, where an alias is a shared node, with
  each node's expanded size computed once: the check takes time proportional to the
  file, never to its expansion. An anchor containing its own alias is refused, as in go-yaml.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import struct
from collections.abc import Hashable, Iterator
from typing import Any, ClassVar

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import BaseResolver

_TAG = "tag:yaml.org,2002:"
STR, INT, FLOAT, BOOL, NULL = (f"{_TAG}{t}" for t in ("str", "int", "float", "bool", "null"))
MERGE, BINARY, TIMESTAMP = (f"{_TAG}{t}" for t in ("merge", "binary", "timestamp"))

# go-yaml v2 resolve.go, resolveMapList.
_WORDS: dict[str, tuple[str, Any]] = {
    **{w: (BOOL, True) for w in ("y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE",
                                 "on", "On", "ON")},
    **{w: (BOOL, False) for w in ("n", "N", "no", "No", "NO", "false", "False", "FALSE",
                                  "off", "Off", "OFF")},
    **{w: (NULL, None) for w in ("", "~", "null", "Null", "NULL")},
    **{w: (FLOAT, math.nan) for w in (".nan", ".NaN", ".NAN")},
    **{w: (FLOAT, math.inf) for w in (".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF")},
    **{w: (FLOAT, -math.inf) for w in ("-.inf", "-.Inf", "-.INF")},
    "<<": (MERGE, "<<"),
}
# yamlStyleFloat in resolve.go; a leading '.' goes to Go's ParseFloat, which takes this too.
_GO_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_GO_INT = re.compile(r"([-+]?)(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)")
_INT64 = 1 << 63

# go-yaml v2 decode.go: allowedAliasRatio and the check at the top of unmarshal().
ALIAS_RATIO_RANGE_LOW = 400_000
ALIAS_RATIO_RANGE_HIGH = 4_000_000
ALIAS_RATIO_HIGH, ALIAS_RATIO_LOW = 0.99, 0.10  # allowed at the range's low and high ends
ALIAS_CHECK_ALIASED, ALIAS_CHECK_DECODED = 100, 1000  # no check below either count


def allowed_alias_ratio(decode_count: int) -> float:
    if decode_count <= ALIAS_RATIO_RANGE_LOW:
        return ALIAS_RATIO_HIGH
    if decode_count >= ALIAS_RATIO_RANGE_HIGH:
        return ALIAS_RATIO_LOW
    span = ALIAS_RATIO_RANGE_HIGH - ALIAS_RATIO_RANGE_LOW
    return ALIAS_RATIO_HIGH - (ALIAS_RATIO_HIGH - ALIAS_RATIO_LOW) * (
        decode_count - ALIAS_RATIO_RANGE_LOW) / span


def _go_int(text: str) -> int | None:
    """strconv.ParseInt(text, 0, 64), then ParseUint(text, 0, 64), as resolve.go tries."""
    match = _GO_INT.fullmatch(text)
    if match is None:
        return None
    sign, digits = match.groups()
    prefix = digits[:2].lower()
    if prefix in ("0x", "0o", "0b"):
        value = int(digits[2:], {"0x": 16, "0o": 8, "0b": 2}[prefix])
    elif len(digits) > 1 and digits[0] == "0":
        value = int(digits[1:], 8)
    elif len(digits) > 20:  # more than any 64-bit integer (and than int() converts fast)
        return None
    else:
        value = int(digits)
    if sign == "-":
        value = -value
    if -_INT64 <= value < _INT64 or (not sign and value < 2 * _INT64):
        return value
    return None


def resolve_plain(text: str) -> tuple[str, Any]:
    """(tag, value) of a plain scalar, as go-yaml v2 resolves it into an interface{}."""
    if text in _WORDS:
        return _WORDS[text]
    first = text[0]
    if first == ".":
        if _GO_FLOAT.fullmatch(text):
            return _float(text)
    elif first.isdigit() or first in "+-":
        plain = text.replace("_", "")
        number = _go_int(plain)
        if number is not None:
            return INT, number
        if _GO_FLOAT.fullmatch(plain):
            return _float(plain)
    return STR, text  # timestamps too: into an interface{}, go-yaml keeps their text


def _float(text: str) -> tuple[str, Any]:
    value = float(text)
    if math.isinf(value):  # ParseFloat's range error: resolve.go moves on, to a string
        return STR, text
    return FLOAT, value


def _json_number(value: float, node: Node) -> float | int:
    """The number the API server reads from the JSON sigs.k8s.io/yaml makes of `value`."""
    if not math.isfinite(value):
        raise ConstructorError(None, None, f"unsupported value {value!r} (not valid in "
                               "JSON)", node.start_mark)
    # encoding/json writes integral floats below 1e21 without a fraction; the API server
    # reads those back as integers when they fit in an int64.
    if value.is_integer() and abs(value) < 1e21 and -_INT64 <= int(value) < _INT64:
        return int(value)
    return value


def _float_key(value: float) -> str:
    """strconv.FormatFloat(value, 'g', -1, 32), as sigs.k8s.io/yaml names a float key."""
    if math.isnan(value):
        return ".nan"
    try:
        single = struct.unpack("f", struct.pack("f", value))[0]
    except OverflowError:
        single = math.copysign(math.inf, value)
    if math.isinf(single):  # beyond float32, Go's conversion makes it an infinity too
        return ".inf" if single > 0 else "-.inf"
    digits = next(p for p in range(1, 10)
                  if struct.unpack("f", struct.pack("f", float(f"{single:.{p - 1}e}")))[0]
                  == single)
    exp = int(f"{single:.{digits - 1}e}".split("e")[1])
    if exp < -4 or exp >= 6:  # Go's %g switches to an exponent at 6 for the shortest form
        return f"{single:.{digits - 1}e}"
    return f"{single:.{max(digits - 1 - exp, 0)}f}"


class _Resolver(BaseResolver):
    """Plain scalars resolve as in go-yaml v2; quoted ones are strings."""

    def resolve(self, kind: type[Node], value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is ScalarNode and implicit[0]:
            return resolve_plain(value)[0]
        result: str = super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]
        return result


class _Constructor(SafeConstructor):
    """Values as sigs.k8s.io/yaml hands them to the API server (see the module docstring)."""

    # Everything goes through construct_by_kind: tags only choose how a scalar resolves.
    yaml_constructors: ClassVar[dict[Any, Any]] = {}
    yaml_multi_constructors: ClassVar[dict[Any, Any]] = {}

    def construct_by_kind(self, node: Node) -> Any:
        if isinstance(node, MappingNode):
            return self._mapping(node)
        if isinstance(node, SequenceNode):
            return self._sequence(node)
        return self._scalar(node)

    def _sequence(self, node: SequenceNode) -> Iterator[list[Any]]:
        data: list[Any] = []
        yield data
        data.extend(self.construct_object(child) for child in node.value)

    def _mapping(self, node: MappingNode) -> Iterator[dict[Hashable, Any]]:
        data: dict[Hashable, Any] = {}
        yield data
        data.update(self.construct_mapping(node))

    def _scalar(self, node: Node, *, key: bool = False) -> Any:
        text: str = node.value
        tag = node.tag
        if tag == STR:
            return text
        if tag == BINARY:
            try:
                raw = base64.b64decode(text.encode("ascii"), validate=False)
            except (binascii.Error, UnicodeEncodeError):
                raise ConstructorError(None, None, "invalid base64 in a !!binary value",
                                       node.start_mark) from None
            return raw.decode("utf-8", errors="replace")
        if tag == TIMESTAMP or not tag.startswith(_TAG):
            return text  # unknown tags are ignored; timestamps keep their text
        resolved, value = resolve_plain(text)
        if tag == FLOAT and resolved == INT:
            resolved, value = FLOAT, float(value)
        if resolved != tag:
            short = {t: f"!!{t.removeprefix(_TAG)}" for t in (tag, resolved)}
            raise ConstructorError(None, None, f"cannot decode {short[resolved]} `{text}` "
                                   f"as a {short[tag]}", node.start_mark)
        if resolved == FLOAT and not key:  # keys are named from the float itself
            return _json_number(value, node)
        return value

    def _key(self, node: Node) -> str:
        if node.tag == STR and isinstance(node, ScalarNode):
            return str(node.value)
        if not isinstance(node, ScalarNode):
            raise ConstructorError(None, None, "invalid map key: a map key must be a scalar",
                                   node.start_mark)
        key = self._scalar(node, key=True)
        if isinstance(key, bool):
            return "true" if key else "false"
        if isinstance(key, float):
            return _float_key(key)
        if key is None:
            raise ConstructorError(None, None, "unsupported map key: null", node.start_mark)
        return str(key)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        if not isinstance(node, MappingNode):
            raise ConstructorError(None, None, "expected a mapping", node.start_mark)
        keys: list[str] = []
        seen: dict[str, int] = {}
        merges = False
        for key_node, _ in node.value:
            if key_node.tag == MERGE:
                merges = True
                continue  # keys merged in may be overridden; explicit ones may not repeat
            key = self._key(key_node)
            if key in seen:
                raise ConstructorError(
                    None, None, f"mapping key {key!r} already defined at line {seen[key]}",
                    key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
            keys.append(key)
        if merges:
            self.flatten_mapping(node)
            keys = [self._key(k) for k, _ in node.value]
        return {k: self.construct_object(v, deep=deep)
                for k, (_, v) in zip(keys, node.value, strict=True)}


_Constructor.add_constructor(None, _Constructor.construct_by_kind)  # type: ignore[type-var]


def _loader_class() -> type:
    parser = getattr(getattr(yaml, "cyaml", None), "CParser", None)  # libyaml's, if built
    if parser is None:  # pure-Python PyYAML: the same reading, slower
        from yaml.composer import Composer  # noqa: PLC0415
        from yaml.parser import Parser  # noqa: PLC0415
        from yaml.reader import Reader  # noqa: PLC0415
        from yaml.scanner import Scanner  # noqa: PLC0415

        class PyLoader(Reader, Scanner, Parser, Composer, _Constructor, _Resolver):
            def __init__(self, stream: str) -> None:
                Reader.__init__(self, stream)
                Scanner.__init__(self)
                Parser.__init__(self)
                Composer.__init__(self)
                _Constructor.__init__(self)
                _Resolver.__init__(self)

        return PyLoader

    class CLoader(parser, _Constructor, _Resolver):  # type: ignore[misc, valid-type]
        def __init__(self, stream: str) -> None:
            parser.__init__(self, stream)  # type: ignore[misc]
            _Constructor.__init__(self)
            _Resolver.__init__(self)

    return CLoader


_LOADER = _loader_class()


class AliasError(yaml.YAMLError):
    """A document whose aliases expand too far, or into themselves."""

    def __init__(self, problem: str, mark: Any) -> None:
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = mark


def check_aliases(root: Node) -> int:
    """Refuse a document go-yaml v2 refuses for its aliases; returns its expanded size."""
    sizes: dict[int, int] = {}  # id(node) -> nodes it decodes to, its aliases expanded
    decoded = 1  # the document node
    from_aliases = 0
    # Depth-first in document order: a node met again is an alias (anchors come first).
    stack: list[tuple[Node, Iterator[Node] | None]] = [(root, None)]
    active: set[int] = set()
    partial: list[int] = []
    while stack:
        node, children = stack[-1]
        if children is None:
            ident = id(node)
            if ident in active:
                raise AliasError("an anchor's value contains an alias of itself",
                                 node.start_mark)
            if ident in sizes:  # an alias: the node itself, then its whole expansion
                stack.pop()
                decoded += 1 + sizes[ident]
                from_aliases += sizes[ident]
                if partial:
                    partial[-1] += 1 + sizes[ident]
                if (from_aliases > ALIAS_CHECK_ALIASED and decoded > ALIAS_CHECK_DECODED
                        and from_aliases / decoded > allowed_alias_ratio(decoded)):
                    raise AliasError(
                        f"document contains excessive aliasing: {from_aliases} of its first "
                        f"{decoded} nodes come from aliases (go-yaml's limit, which kubectl "
                        "and the API server apply)", node.start_mark)
                continue
            decoded += 1
            active.add(ident)
            partial.append(1)
            if isinstance(node, MappingNode):
                kids: list[Node] = [n for pair in node.value for n in pair]
            elif isinstance(node, SequenceNode):
                kids = list(node.value)
            else:
                kids = []
            stack[-1] = (node, iter(kids))
            continue
        child = next(children, None)
        if child is not None:
            stack.append((child, None))
            continue
        stack.pop()
        active.discard(id(node))
        size = partial.pop()
        sizes[id(node)] = size
        if partial:
            partial[-1] += size
    return decoded


def load_all(text: str) -> Iterator[Any]:
    """Every document of `text`, as kubectl would send it; raises yaml.YAMLError."""
    aliases = "*" in text  # no alias without its '*': most files skip the count
    loader = _LOADER(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            if aliases:
                check_aliases(node)
            yield loader.construct_document(node)
    finally:
        loader.dispose()
