"""The test node's configuration files: what containerd pulls from, what kube-proxy binds."""

from __future__ import annotations

import tomllib
from pathlib import Path

from tests.harness import images, mirror
from tests.harness.node import (
    NETWORK,
    allow_port_rule,
    apiserver_endpoint_slice,
    containerd_config,
    kube_proxy_config,
    mirror_aliases,
)


def test_every_image_name_is_mirrored_without_upstream_fallback(tmp_path: Path) -> None:
    names = {n: Path("x.tar") for n in [images.PAUSE_IMAGE, images.BUSYBOX_IMAGE,
                                        images.REGISTRY_IMAGE, images.ORAS_IMAGE,
                                        "ghcr.io/converged-computing/oras-cache-sync:0.1.0",
                                        *[a for al in mirror_aliases().values() for a in al]]}
    hosts = mirror.registry_hosts(names)
    assert hosts == ["docker.io", "ghcr.io", "registry.example.com", "registry.k8s.io"]
    directory = mirror.write_hosts_dir(tmp_path / "certs.d", NETWORK.mirror, hosts)
    for host in hosts:
        parsed = tomllib.loads((directory / host / "hosts.toml").read_text())
        # the upstream name as the path prefix: docker.io/library/busybox and a
        # ghcr.io/library/busybox would never collide in the mirror
        url = f"http://10.209.0.1:5000/v2/{host}"
        assert parsed == {"server": url, "override_path": True, "host": {url: {
            "capabilities": ["pull", "resolve"], "override_path": True}}}
    assert "ubuntu:latest" in " ".join(images.ALIASES[images.BUSYBOX_IMAGE])
    assert "ghcr.io/oras-project/registry:latest" in images.ALIASES[images.REGISTRY_IMAGE]
    # README's overlay names this image; the e2e test applies it as written.
    assert mirror_aliases()["ghcr.io/converged-computing/oras-cache-sync:0.1.0"] == (
        "registry.example.com/mirror/oras-cache-sync:0.1.0",)


def test_containerd_reads_the_hosts_dir(tmp_path: Path) -> None:
    config = tomllib.loads(containerd_config(tmp_path, images.PAUSE_IMAGE, tmp_path / "h"))
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["registry"] == {"config_path": str(tmp_path / "h")}
    assert cri["sandbox_image"] == "registry.k8s.io/pause:3.10"


def test_kube_proxy_listens_on_loopback_and_leaves_the_host_alone() -> None:
    config = kube_proxy_config(Path("/k"), NETWORK, 1, 2)
    assert config["mode"] == "iptables"
    assert config["healthzBindAddress"] == "127.0.0.1:1"
    assert config["metricsBindAddress"] == "127.0.0.1:2"
    assert config["nodePortAddresses"] == ["10.209.0.1/32"]
    assert config["iptables"]["localhostNodePorts"] is False  # type: ignore[index]
    assert config["conntrack"] == {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s",
                                   "tcpCloseWaitTimeout": "0s"}


def test_the_api_server_endpoint_and_its_port_on_the_bridge() -> None:
    slice_ = apiserver_endpoint_slice(NETWORK, 6443)
    assert slice_["endpoints"] == [{"addresses": ["10.209.0.1"], "conditions": {"ready": True}}]
    assert slice_["ports"] == [{"name": "https", "port": 6443, "protocol": "TCP"}]
    rule = allow_port_rule(NETWORK, 6443)
    assert rule[:3] == ["-I", "ORAS-CACHE-NODE-IN", "1"]
    assert rule[3:] == ["-d", "10.209.0.1", "-p", "tcp", "--dport", "6443", "-j", "RETURN"]
