"""The POSIX shell scripts of a wired Pod: `oras-pull`'s, the app's wrapper and
`oras-push`'s. Generated from the plan `wire_pod_spec` makes; they run in any `/bin/sh`
(dash, bash, busybox ash) and never put a credential in a process's arguments."""

from __future__ import annotations

import posixpath
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from constructs_lib.workflow_params import INPUTS_DIR, STAGE_DIR, STATE_DIR, WorkflowParams


@dataclass
class Push:
    """One output as the push container sees it.

    ``copy``: paths (as the wrapper's shell sees them) that the wrapper copies into
    ``cwd/<attempt>`` after the app succeeded; empty when the output is mounted.
    ``pipe``: where the app's stdout goes (the first output only).
    """

    ref: str
    cwd: str
    names: list[str]
    mount: dict[str, Any]
    copy: tuple[str, ...] = ()
    pipe: str | None = None


# --- scripts ---------------------------------------------------------------------------
# Kubernetes expands $(VAR) in command and args and turns $$ into $: the scripts below
# contain neither (a unit test checks), so they reach the shell exactly as written.

_NEXT_ATTEMPT = 'n=0\nwhile [ -e "$s/attempt-$n" ]; do n=$((n+1)); done\n'


def _q(value: str) -> str:
    return shlex.quote(value)


def _auth(password_var: str, command: str) -> str:
    """`command` with credentials from the environment when ORAS_USER is set."""
    return (
        'if [ -n "${ORAS_USER:-}" ]; then\n'
        f'  printf \'%s\' "{password_var}" | {command} -u "$ORAS_USER" --password-stdin\n'
        f"else\n  {command}\nfi"
    )


def _flags(params: WorkflowParams) -> str:
    return "--no-tty" + (" --plain-http" if params.uses_plain_http() else "")


def pull_script(params: WorkflowParams, registry: str, target: str, shown: str) -> str:
    """Pull every input into `target`; `shown` is where the app sees them (for the log)."""
    lines = ["set -u", f"out={_q(target)}"]
    if params.debug:
        lines.append(f"echo {_q(f'oras-pull: registry {registry}, inputs into {shown}')}")
    for uri in params.inputs:
        ref = _q(f"{registry}/{uri}")
        command = f'oras pull {_flags(params)} -o "$out" {ref}'
        lines += [
            f"echo {_q(f'oras-pull: pulling {registry}/{uri}')}",
            _auth("${ORAS_PULL_PASS:-${ORAS_PUSH_PASS:-}}", command)
            + f" || {{ echo {_q(f'oras-pull: pulling {registry}/{uri} failed')} >&2; exit 1; }}",
        ]
    return "\n".join(lines) + "\n"


def _copy_in(copy_in: str, fail: str) -> str:
    """Copy the pulled inputs into `copy_in` (relative to the wrapper's directory)."""
    copy = f"cp -R {_q(INPUTS_DIR + '/.')} {_q(copy_in)}"
    shown = "the working directory" if copy_in == "." else copy_in
    message = _q(f"oras-wrapper: copying the inputs into {shown} failed")
    if copy_in != ".":
        copy = f"{{ mkdir -p {_q(copy_in)} && {copy}; }}"
    return f"{copy} || {{ echo {message} >&2; {fail}; }}"


def inputs_script(copy_in: str, debug: bool) -> str:
    """Copy the inputs into the (run-time) input path, then become the app."""
    lines = ["set -u"]
    if debug:
        lines.append(f"echo {_q(f'oras-wrapper: copying the inputs into {copy_in} in')} "
                     '"$PWD:" >&2')
        lines.append(f"ls -A {_q(INPUTS_DIR)} >&2")
    lines += [_copy_in(copy_in, "exit 1"), 'exec "$@"']
    return "\n".join(lines) + "\n"


def app_script(
    pipe: str | None, debug: bool, *, copy_in: str | None = None,
    copies: Sequence[tuple[str, Sequence[str]]] = (), make_pipe_dir: bool = False,
) -> str:
    """Run "$@" (the original command), keep its exit code, mark completion.

    Only for paths resolved at run time: `copy_in` (copy the inputs there first),
    `copies` ((stage directory, paths) to copy after the app exited 0) and
    `make_pipe_dir` (create the pipe's directory before the app starts).
    """
    redirect = f" >{_q(pipe)}" if pipe else ""
    lines = [
        # Traps first: a signal that arrives before the app has started is held and
        # passed on as soon as it has (otherwise it would kill this wrapper, not the app).
        "child= pending=",
        "trap 'if [ -n \"$child\" ]; then kill -TERM \"$child\" 2>/dev/null; "
        "else pending=TERM; fi' TERM",
        "trap 'if [ -n \"$child\" ]; then kill -INT \"$child\" 2>/dev/null; "
        "else pending=INT; fi' INT",
        f"s={_q(STATE_DIR)}",
        _NEXT_ATTEMPT.rstrip("\n"),
        ': >"$s/attempt-$n"',
    ]
    # Failing before the app ran: recorded like an app exiting 1, so nothing is pushed.
    fail = "printf '1\\n' >\"$s/exit-$n\"; : >\"$s/done-$n\"; exit 1"
    if debug and (copy_in is not None or copies):
        lines.append('echo "oras-wrapper: relative paths are resolved in $PWD" >&2')
    if copy_in is not None:
        lines.append(_copy_in(copy_in, fail))
    pipe_dir = posixpath.dirname(pipe) if pipe and make_pipe_dir else ""
    if pipe_dir not in ("", ".", "/"):
        message = _q(f"oras-wrapper: creating {pipe_dir} for the output-pipe failed")
        lines.append(f"mkdir -p {_q(pipe_dir)} || {{ echo {message} >&2; {fail}; }}")
    if debug:
        lines.append('echo "oras-wrapper: attempt $n: running $*" >&2')
    lines += [
        # stdin stays the container's (a background job would get /dev/null).
        "exec 3<&0",
        f'"$@" <&3 3<&-{redirect} &',
        "child=$!",
        "exec 3<&-",
        '[ -n "$pending" ] && kill "-$pending" "$child" 2>/dev/null',
        "while :; do",
        '  wait "$child"',
        "  code=$?",
        # wait returns early when a trap ran; the child is still there then.
        '  kill -0 "$child" 2>/dev/null || break',
        "done",
    ]
    for stage, paths in copies:
        target = f'{_q(stage)}/"$n"'
        shown = " ".join(paths)
        message = _q(f"oras-wrapper: the app exited 0 but copying {shown} to {stage} "
                     "failed: nothing is pushed")
        sources = " ".join(_q(p) for p in paths)
        lines += [
            'if [ "$code" = 0 ]; then',
            f"  {{ mkdir -p {target} && cp -R {sources} {target}/; }} || "
            f"{{ echo {message} >&2; code=1; }}",
            "fi",
        ]
    lines += [
        "printf '%s\\n' \"$code\" >\"$s/exit-$n\"",
        ': >"$s/done-$n"',
        'exit "$code"',
    ]
    return "\n".join(lines) + "\n"


def push_script(params: WorkflowParams, pushes: Sequence[Push], restart: str) -> str:
    """Wait for the app's run to finish and push its outputs if it exited 0.

    Never: one run. OnFailure: runs until one succeeds, whose outputs are pushed.
    Always: the app runs again after every exit, so this container never exits (kubelet
    would restart it too, as a crash loop): it pushes after each successful run and
    waits for the next. Restarted after a failed push, it starts at the latest finished
    run, so the push is retried and older runs are not pushed again.
    """
    steps = _push_steps(params, pushes)
    wait = ['  while [ ! -e "$s/done-$n" ]; do sleep 1; done', '  read -r code <"$s/exit-$n"']
    skipped = 'echo "oras-push: the app exited with $code (attempt $n): nothing pushed" >&2'
    lines = ["set -u", f"s={_q(STATE_DIR)}", "n=0"]
    if restart == "Always":
        return "\n".join([
            *lines, "push() {", *(f"  {line}" for step in steps for line in step.split("\n")),
            "}",
            'while [ -e "$s/done-$((n+1))" ]; do n=$((n+1)); done',
            "while :; do", *wait,
            f'  if [ "$code" = 0 ]; then push; else {skipped}; fi',
            "  n=$((n+1))", "done",
        ]) + "\n"
    lines += [
        "while :; do", *wait,
        '  [ "$code" = 0 ] && break',
        f"  {skipped}",
        "  n=$((n+1))" if restart == "OnFailure" else "  exit 0",
        "done",
    ]
    return "\n".join(lines + steps) + "\n"


def _push_steps(params: WorkflowParams, pushes: Sequence[Push]) -> list[str]:
    """Push every output of run "$n"; exit 1 on the first failure."""
    lines: list[str] = []
    for index, push in enumerate(pushes):
        if params.debug:
            shown = " ".join(push.names)
            lines.append(f"echo {_q(f'oras-push: {push.ref} <- {shown} in {push.cwd}')}")
        names = " ".join(_q(n) for n in push.names)
        fail = f"{{ echo {_q(f'oras-push: pushing {push.ref} failed')} >&2; exit 1; }}"
        attempt = '/"$n"' if push.copy else ""  # copied per attempt by the wrapper
        lines.append(f"cd {_q(push.cwd)}{attempt} || {fail}")
        if not params.unpack:  # directories as plain .tar.gz files, never unpacked on pull
            stage = _q(f"{STAGE_DIR}/{index}")
            lines += [f"rm -rf {stage} && mkdir -p {stage} || {fail}", "set --"]
            for name in push.names:
                archive = _q(name + ".tar.gz")
                lines.append(
                    f"if [ -d {_q(name)} ]; then tar -czf {stage}/{archive} {_q(name)} && "
                    f"set -- \"$@\" {archive}; else cp -p {_q(name)} {stage}/ && "
                    f"set -- \"$@\" {_q(name)}; fi || {fail}"
                )
            lines.append(f"cd {stage} || {fail}")
            names = '"$@"'
        command = f"oras push {_flags(params)} {_q(push.ref)} {names}"
        lines.append(_auth("${ORAS_PUSH_PASS:-}", command) + f" || {fail}")
    lines.append("echo 'oras-push: done'")
    return lines
