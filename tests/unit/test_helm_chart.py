"""dist/chart/'s values, without helm (tests/integration/test_helm_chart.py runs helm):
every value is used by a template, documented in docs/sync-service.md, and the marker
substitution refuses a marker that did not land where it was put."""

from __future__ import annotations

import pytest

from constructs_lib.helm_chart import _Marks, chart_files, values, values_table
from sync.render.synth import REPO_ROOT


def test_every_value_is_used_by_a_template() -> None:
    templates = "".join(text for path, text in chart_files().items()
                        if path.startswith("templates/"))
    for value in values():
        assert f".Values.{value.path}" in templates, value.path


def test_the_docs_show_the_values_table() -> None:
    assert values_table() in (REPO_ROOT / "docs/sync-service.md").read_text()


def test_a_line_marker_must_be_alone_on_its_line() -> None:
    marks = _Marks()
    token = marks.line("{{- if x }}")
    with pytest.raises(ValueError, match="not alone"):
        marks.apply(f"key: {token}\n")


def test_a_marker_never_written_is_an_error() -> None:
    marks = _Marks()
    marks.value("{{ x }}")
    with pytest.raises(ValueError, match="never written"):
        marks.apply("key: value\n")
