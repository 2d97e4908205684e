"""`orascache`: the command line. `main` chooses jsii's runtime before any command module
(and so cdk8s) is imported; parser.py then loads only the command that runs."""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Callable, Sequence

from sync.render import node_runtime

EXIT_CODES = """\
exit status:
  0  success (diff: no differences)
  1  an error: invalid input, a file or directory that cannot be read or written, an
     unreachable or refusing cluster or git remote (diff: differences found)
  2  a usage error (diff: any error)
every error is printed as `error: ...` on stderr."""


def describe(exc: BaseException) -> str:
    """One line for an error that reached the top: what failed, never a traceback (and
    never the bytes of a file that could hold credentials)."""
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (invalid byte at offset {exc.start})"
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename is not None else ""
        return f"{where}{exc.strerror or exc}"
    kubernetes = sys.modules.get("kubernetes.config.config_exception")
    if kubernetes is not None and isinstance(exc, kubernetes.ConfigException):
        return f"kubeconfig: {exc}"
    kube = sys.modules.get("sync.apply.kube")  # loaded by the commands that talk to a cluster
    if kube is not None and isinstance(exc, kube.Unreachable):
        return f"cannot reach the API server: {exc}"
    if kube is not None and isinstance(exc, kube.ApiError):
        return f"the API server refused: {exc}"
    return f"unexpected {type(exc).__name__}: {exc} (a bug: please report it, with the " \
        "traceback ORASCACHE_TRACEBACK=1 prints)"


def main(argv: Sequence[str] | None = None) -> int:
    node_runtime.prepare()
    from sync.cli.parser import build_parser  # noqa: PLC0415 (after prepare)

    args = build_parser().parse_args(argv)
    failed: int = args.error_code
    try:
        module, name = args.command_function.split(":")
        command: Callable[..., int] = getattr(importlib.import_module(module), name)
        code: int = command(args)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # stdout closed early (`orascache synth x | head`): nothing more to say there.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print("error: output closed before everything was written", file=sys.stderr)
        return failed
    except Exception as exc:  # the last stop: one line, the documented code
        if os.environ.get("ORASCACHE_TRACEBACK"):
            traceback.print_exc()
        print(f"error: {describe(exc)}", file=sys.stderr)
        return failed
    return code
