"""The wrapper module that builds a Flux controller from the Go module proxy
(tests/harness/flux.py): the controller's replaces carried over, its ./api made the
published module, refused versions substituted."""

from __future__ import annotations

import pytest

from tests.harness.build import BuildError
from tests.harness.flux import Controller, replaces, wrapper_gomod

UPSTREAM = """module github.com/fluxcd/kustomize-controller

go 1.26.0

replace github.com/fluxcd/kustomize-controller/api => ./api

// Replace digest lib to master to gather access to BLAKE3.
replace github.com/opencontainers/go-digest => github.com/opencontainers/go-digest v1.0.1-0.2

require (
\tgithub.com/fluxcd/kustomize-controller/api v1.9.6
\tgithub.com/fluxcd/pkg/artifact v0.18.3
\tk8s.io/api v0.34.1 // indirect
)

replace (
\tsigs.k8s.io/kustomize/api => sigs.k8s.io/kustomize/api v0.21.1
\tgopkg.in/yaml.v3 v3.0.0 => gopkg.in/yaml.v3 v3.0.1 // CVE
)
"""
KC = Controller("kustomize-controller", "github.com/fluxcd/kustomize-controller", "v1.9.6")


def test_replaces_single_line_and_block_with_versions_and_comments() -> None:
    assert replaces(UPSTREAM) == [
        ("github.com/fluxcd/kustomize-controller/api", "./api"),
        ("github.com/opencontainers/go-digest",
         "github.com/opencontainers/go-digest v1.0.1-0.2"),
        ("sigs.k8s.io/kustomize/api", "sigs.k8s.io/kustomize/api v0.21.1"),
        ("gopkg.in/yaml.v3 v3.0.0", "gopkg.in/yaml.v3 v3.0.1"),
    ]


def test_wrapper_requires_the_controller_and_maps_its_api_to_the_published_module() -> None:
    gomod = wrapper_gomod(KC, UPSTREAM)
    lines = [line.strip() for line in gomod.splitlines()]
    assert lines[0] == "module oras-cache.local/flux-kustomize-controller"
    assert "go 1.26.0" in lines
    assert "require github.com/fluxcd/kustomize-controller v1.9.6" in lines
    assert ("github.com/fluxcd/kustomize-controller/api => "
            "github.com/fluxcd/kustomize-controller/api v1.9.6") in lines
    assert "sigs.k8s.io/kustomize/api => sigs.k8s.io/kustomize/api v0.21.1" in lines
    assert "gopkg.in/yaml.v3 v3.0.0 => gopkg.in/yaml.v3 v3.0.1" in lines
    # The version the proxy refuses, only because upstream requires exactly it.
    assert "github.com/fluxcd/pkg/artifact => github.com/fluxcd/pkg/artifact v0.18.0" in lines
    assert "=> ./" not in gomod
    assert "artifact" not in wrapper_gomod(KC, UPSTREAM.replace("v0.18.3", "v0.18.9"))


def test_an_unknown_local_replace_is_an_error() -> None:
    with pytest.raises(BuildError, match="cannot map"):
        wrapper_gomod(KC, UPSTREAM + "replace example.com/other => ../other\n")
