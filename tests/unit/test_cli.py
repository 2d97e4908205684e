"""Every CLI error path: one `error: ...` line, the documented exit code, no traceback."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sync.cli import files, main

CACHE = """\
apiVersion: cache.converged-computing.github.io/v1alpha1
kind: OrasCache
metadata: {name: a, namespace: team}
spec: {}
"""


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(args)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


@pytest.fixture
def cache_file(tmp_path: Path) -> Path:
    path = tmp_path / "a.yaml"
    path.write_text(CACHE)
    return path


def test_non_utf8_input_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.yaml").write_bytes(b"kind: OrasCache\nmetadata: {name: \xe9}\n")
    code, err = run(["synth", str(tmp_path / "bad.yaml")], capsys)
    assert code == 1
    assert f"error: {tmp_path}/bad.yaml: not UTF-8 text" in err


@pytest.mark.parametrize("below", ["", "sub"])
def test_output_path_that_is_a_file(tmp_path: Path, cache_file: Path, below: str,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "file"
    target.write_text("mine\n")
    code, err = run(["synth", str(cache_file), "-o", str(target / below)], capsys)
    assert code == 1
    assert err.startswith(f"error: {target}")
    assert target.read_text() == "mine\n"
    code, err = run(["crd", "-o", str(target / "crd.yaml")], capsys)
    assert (code, err.startswith("error: ")) == (1, True)


def test_diff_with_a_missing_kubeconfig_is_an_error_not_a_difference(
    tmp_path: Path, cache_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing"
    code, err = run(["diff", str(cache_file), "--kubeconfig", str(missing)], capsys)
    assert code == 2  # 1 would mean "differences"
    assert err == f"error: {missing}: No such file or directory\n"
    code, err = run(["diff", str(cache_file), "--kubeconfig", str(tmp_path)], capsys)
    assert (code, err) == (2, f"error: {tmp_path}: Is a directory\n")


def test_diff_with_a_broken_kubeconfig(tmp_path: Path, cache_file: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "kubeconfig").write_text("apiVersion: v1\nkind: Config\n")
    code, err = run(["diff", str(cache_file), "--kubeconfig", str(tmp_path / "kubeconfig")],
                    capsys)
    assert code == 2
    assert err.startswith("error: kubeconfig: ")
    (tmp_path / "kubeconfig").write_bytes(b"\xffsecret")
    code, err = run(["diff", str(cache_file), "--kubeconfig", str(tmp_path / "kubeconfig")],
                    capsys)
    assert (code, err) == (2, "error: not UTF-8 text (invalid byte at offset 0)\n")


def test_diff_against_an_unreachable_api_server(tmp_path: Path, cache_file: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "kubeconfig").write_text("""\
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
""")
    code, err = run(["diff", str(cache_file), "--kubeconfig", str(tmp_path / "kubeconfig")],
                    capsys)
    assert code == 2
    assert err.startswith("error: "), err


def test_sync_with_a_missing_kubeconfig(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing"
    code, err = run(["sync", "--kubeconfig", str(missing), "--log-format", "text"], capsys)
    assert (code, err) == (1, f"error: {missing}: No such file or directory\n")


def test_an_unexpected_exception_is_one_line_with_the_commands_code(
    monkeypatch: pytest.MonkeyPatch, cache_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def boom(*_: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(files, "cache_files", boom)
    code, err = run(["synth", str(cache_file)], capsys)
    assert code == 1
    assert err.startswith("error: unexpected RuntimeError: boom")


def test_exit_codes_are_documented_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "exit status:" in out and "diff: any error" in out
    assert out.count("\n") > 10 and "the sync service" in out  # what the tool does


def test_sync_options_are_grouped_by_source(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["sync", "--help"])
    out = capsys.readouterr().out
    groups = [line for line in out.splitlines() if line and not line.startswith(" ")]
    for title in ("cluster source", "leader election", "admission webhook", "git source",
                  "OCI source", "revision sources", "OCI registry"):
        assert any(g.startswith(title) for g in groups), (title, groups)
    git = out[out.index("git source"):out.index("OCI source")]
    assert "--repo" in git and "--workers" not in git


def test_importing_the_cli_does_no_work() -> None:
    """No jsii runtime choice, no cdk8s, no kubernetes client at import: `main` does that."""
    probe = ("import os, sys, sync, sync.cli, sync.cli.parser\n"
             "print('JSII_RUNTIME' in os.environ, 'NODE_OPTIONS' in os.environ,\n"
             "      'kubernetes' in sys.modules, 'git' in sys.modules)\n")
    env = {k: v for k, v in os.environ.items() if k not in (
        "JSII_RUNTIME", "NODE_OPTIONS", "ORASCACHE_JSII_KERNEL_PID")}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=120, check=True, env=env).stdout
    assert out.split() == ["False", "False", "False", "False"]


def test_the_installed_command_prints_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_bytes(b"\xff\xfe")
    target = tmp_path / "file"
    target.write_text("x")
    for args, code in ((["synth", str(tmp_path / "bad.yaml")], 1),
                       (["synth", str(tmp_path / "bad.yaml"), "-o", str(target)], 1),
                       (["diff", str(tmp_path), "--kubeconfig", str(tmp_path / "no")], 2)):
        proc = subprocess.run([sys.executable, "-m", "sync.cli", *args], capture_output=True,
                              text=True, timeout=120, check=False)
        assert proc.returncode == code, proc.stderr
        assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr


def test_crd_output_never_replaces_a_device_or_fifo(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    code, err = run(["crd", "-o", str(fifo)], capsys)
    assert (code, err) == (1, f"error: {fifo}: not a regular file\n")
    assert stat.S_ISFIFO(fifo.stat().st_mode)


@pytest.mark.parametrize(("args", "message"), [
    (["--source", "git"], "--source git needs --repo URL"),
    (["--source", "oci"], "--source oci needs --artifact REF"),
    (["--source", "git", "--repo", "file:///r", "-n", "a", "-n", "b"],
     "--source git takes one --namespace"),
    (["--trigger-secret", "t"], "POST /trigger is served by --source git and oci only"),
    (["--webhook-cert-dir", "/d"], "--webhook-cert-dir needs --webhook-addr"),
    (["--shard-key", "Shard_1"], "--shard-key 'Shard_1': use lower-case letters"),
    (["--shard-key", "a-"], "--shard-key 'a-': use lower-case letters"),
])
def test_sync_option_combinations_are_usage_errors_before_any_connection(
        args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(["sync", "--log-format", "text", "--kubeconfig", "/nonexistent/k",
                     *args], capsys)
    assert code == 2, err
    assert err.startswith(f"error: {message}")


def test_a_trigger_token_needs_the_http_address(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    token = tmp_path / "token"
    token.write_text("s" * 32)
    base = ["sync", "--log-format", "text", "--source", "git", "--repo", "file:///r",
            "--kubeconfig", "/nonexistent/k"]
    code, err = run([*base, "--trigger-token-file", str(token), "--http-addr", ""], capsys)
    assert (code, err) == (2, "error: POST /trigger needs --http-addr\n")
    code, err = run([*base, "--trigger-token-file", str(tmp_path / "missing")], capsys)
    assert code == 1 and err.startswith("error: ") and "missing" in err


def test_drift_mode_option_for_both_sources() -> None:
    from sync.cli.parser import build_parser  # noqa: PLC0415
    from sync.options import Options, RevisionOptions  # noqa: PLC0415

    parser = build_parser()
    assert parser.parse_args(["sync"]).drift == "correct"
    assert parser.parse_args(["sync", "--drift", "report"]).drift == "report"
    assert parser.parse_args(["sync", "--source", "git", "--repo", "file:///r", "--drift",
                              "report"]).drift == "report"
    assert Options().drift == "correct" and RevisionOptions().drift == "correct"
    with pytest.raises(SystemExit):
        parser.parse_args(["sync", "--drift", "ignore"])


def test_each_shard_has_its_own_lease_and_label_selectors() -> None:
    from sync.cli.parser import build_parser  # noqa: PLC0415
    from sync.cli.service import cluster_options  # noqa: PLC0415
    from sync.cluster_reconcile import cache_selector, child_selector  # noqa: PLC0415

    parser = build_parser()

    def options(*args: str) -> tuple[str | None, str]:
        opts = cluster_options(parser.parse_args(["sync", *args]))
        return opts.shard_key, opts.lease.name

    assert options() == (None, "oras-cache-sync")
    assert options("--shard-key", "") == ("", "oras-cache-sync")
    assert options("--shard-key", "b-2") == ("b-2", "oras-cache-sync-b-2")
    assert options("--shard-key", "b", "--lease-name", "x") == ("b", "x")
    key = "sharding.cache.converged-computing.github.io/key"
    owner = "cache.converged-computing.github.io/cache"
    assert (cache_selector(None), child_selector(None)) == (None, owner)
    assert (cache_selector(""), child_selector("")) == (f"!{key}", f"{owner},!{key}")
    assert (cache_selector("b"), child_selector("b")) == (f"{key}=b", f"{owner},{key}=b")


def test_a_shard_serving_the_webhook_still_watches_every_cache() -> None:
    """The webhook is not sharded: it must find any cache a Pod names, while the shard's
    reconciles see only its own caches and children."""
    from sync.apply.kube import Kube  # noqa: PLC0415
    from sync.cluster_service import SyncService  # noqa: PLC0415
    from sync.options import Options  # noqa: PLC0415

    def selectors(options: Options) -> tuple[bool, list[str | None], list[str | None]]:
        service = SyncService(Kube(None), options)  # type: ignore[arg-type]
        try:
            return (service.webhook_caches is service.caches,
                    [i.label_selector for i in service.caches.informers],
                    [i.label_selector for i in service.webhook_caches.informers])
        finally:
            service.applier.close()
            service.reconciler.events.close()

    key = "sharding.cache.converged-computing.github.io/key"
    assert selectors(Options(shard_key="a", webhook_addr="127.0.0.1:0", http_addr=None)) == (
        False, [f"{key}=a"], [None])
    assert selectors(Options(shard_key="a", http_addr=None)) == (True, [f"{key}=a"],
                                                                 [f"{key}=a"])
    assert selectors(Options(webhook_addr="127.0.0.1:0", http_addr=None)) == (True, [None],
                                                                              [None])
