"""The annotation contract (docs: shared DESIGN.md) -> WorkflowParams."""

from __future__ import annotations

import pytest

from constructs_lib.annotations import KEYS, PREFIX, AnnotationError, parse_annotations
from constructs_lib.workflow_params import DEFAULT_ORAS_IMAGE, Output, WorkflowParams


def parse(annotations: dict[str, str]) -> WorkflowParams:
    parsed = parse_annotations(annotations)
    assert parsed is not None
    return parsed.params


def test_no_oras_annotations_means_nothing_to_wire() -> None:
    assert parse_annotations(None) is None
    assert parse_annotations({"other.io/x": "1", "app": "y"}) is None


def test_defaults_are_the_original_operators() -> None:
    params = parse({PREFIX + "input-uri": "a/b:1"})
    assert params == WorkflowParams(inputs=("a/b:1",))
    assert params.cache == "oras" and params.unpack and not params.debug
    assert params.oras_image == DEFAULT_ORAS_IMAGE


def test_every_annotation() -> None:
    params = parse({
        PREFIX + "oras-cache": "cache-a",
        PREFIX + "input-uri": "in/zero:1",
        PREFIX + "input-uri_10": "in/ten:1",
        PREFIX + "input-uri_2": "in/two:1",
        PREFIX + "input-uri_1": "in/one:1",
        PREFIX + "input-path": "/inputs",
        PREFIX + "output-uri": "out/x:1",
        PREFIX + "output-path": "/outputs/result.txt",
        PREFIX + "output-pipe": "/outputs/log.txt",
        PREFIX + "container": "app",
        PREFIX + "registry": "registry.example.com/team",
        PREFIX + "oras-env": "creds",
        PREFIX + "oras-container": "ghcr.io/oras-project/oras:v1.3.6",
        PREFIX + "entrypoint": '["/bin/app", "--flag", "two words"]',
        PREFIX + "debug": "True",
        PREFIX + "unpack": "false",
        "unrelated.io/key": "ignored",
    })
    assert params == WorkflowParams(
        inputs=("in/zero:1", "in/one:1", "in/two:1", "in/ten:1"),
        outputs=(Output("out/x:1", "/outputs/result.txt"),),
        input_path="/inputs",
        output_pipe="/outputs/log.txt",
        cache="cache-a",
        registry="registry.example.com/team",
        container="app",
        oras_image="ghcr.io/oras-project/oras:v1.3.6",
        oras_env="creds",
        entrypoint=("/bin/app", "--flag", "two words"),
        unpack=False,
        debug=True,
    )


def test_script_urls_are_accepted_and_never_downloaded() -> None:
    parsed = parse_annotations({
        PREFIX + "input-uri": "a:1",
        PREFIX + "entrypoint": "https://raw.githubusercontent.com/x/y/main/entrypoint.sh",
        PREFIX + "oras-entrypoint": "https://example.com/oras-entrypoint.sh",
    })
    assert parsed is not None
    assert parsed.params.entrypoint is None
    assert len(parsed.ignored) == 2 and all("entrypoint" in i for i in parsed.ignored)


def test_a_plain_entrypoint_is_split_like_a_shell() -> None:
    params = parse({PREFIX + "output-uri": "o:1", PREFIX + "entrypoint": "python3 'my app.py'"})
    assert params.entrypoint == ("python3", "my app.py")


def test_every_error_at_once_each_naming_its_annotation() -> None:
    with pytest.raises(AnnotationError) as info:
        parse_annotations({
            PREFIX + "input-uri": "",
            PREFIX + "input_uri": "a:1",
            PREFIX + "debug": "yes",
            PREFIX + "oras-cache": "Not_A_Name",
            PREFIX + "output-uri": "has space:1",
            PREFIX + "output-uri_1": "b:1",
            PREFIX + "entrypoint": "[1, 2]",
        })
    errors = info.value.errors
    assert f"{PREFIX}input-uri: must not be empty" in errors
    assert f"{PREFIX}debug: must be true or false, got 'yes'" in errors
    assert f"{PREFIX}oras-cache: 'Not_A_Name' is not a valid OrasCache name" in errors
    assert f"{PREFIX}output-uri: 'has space:1' is not a repo/name:tag reference" in errors
    assert f"{PREFIX}entrypoint: not a JSON list of strings" in errors
    unknown = [e for e in errors if "unknown annotation" in e]
    assert [e.split(":")[0] for e in unknown] == [f"{PREFIX}input_uri", f"{PREFIX}output-uri_1"]
    for key in KEYS:
        assert key in unknown[0], "the error lists every valid annotation"
    assert len(errors) == 7


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        ({"output-path": "/x"}, "output-path: set oras.converged-computing.github.io/output-uri"),
        ({"output-pipe": "/x"}, "output-pipe: set oras.converged-computing.github.io/output-uri"),
        ({"input-path": "/x"}, "input-path: set oras.converged-computing.github.io/input-uri"),
        ({"input-uri": "a:1", "input-uri_1": "a:1"}, "input 'a:1' is listed twice"),
        ({"input-uri": "a:1", "registry": "https://r.example.com"}, "registry: "),
        ({"output-uri": "o:1", "entrypoint": "'unclosed"}, "entrypoint: cannot split"),
    ],
)
def test_inconsistent_annotations(annotations: dict[str, str], message: str) -> None:
    with pytest.raises(AnnotationError, match=message):
        parse_annotations({PREFIX + k: v for k, v in annotations.items()})
