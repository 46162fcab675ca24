"""Run a service's command so that stopping it with SIGTERM ends with exit status 0.

Some servers stop cleanly on SIGTERM and then re-raise the signal, so their
exit status is 143 (``-15`` to Python): ``prefect server start`` does, through
uvicorn. Supervisors (systemd, Kubernetes, ``set -e`` scripts) read that as a
failure. ``python -m mlops.clean_exit -- COMMAND...`` runs ``COMMAND`` as a
child in the same process group, passes SIGTERM and SIGINT on, and, once it
exits, exits 0 when the child stopped because it was asked to (status 0, or
killed by the signal that was passed on) and with the child's own status
otherwise (a crash stays a failure: 1, or 128 + the signal's number).

Example:
    >>> import signal
    >>> exit_status(-signal.SIGTERM, asked=signal.SIGTERM), exit_status(-signal.SIGTERM, asked=None)
    (0, 143)
    >>> exit_status(3, asked=signal.SIGTERM), exit_status(0, asked=None)
    (3, 0)
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from types import FrameType

__all__ = ["exit_status", "main", "wrap"]


def wrap(command: list[str]) -> list[str]:
    """``command`` run through this module (same interpreter)."""
    return [sys.executable, "-m", "mlops.clean_exit", "--", *command]


def exit_status(returncode: int, asked: int | None) -> int:
    """The status to exit with: 0 after a stop that was asked for, else the child's (128 + signal)."""
    if asked is not None and returncode in (0, -asked, 128 + asked):
        return 0
    return returncode if returncode >= 0 else 128 - returncode


def main(argv: list[str] | None = None) -> int:
    """Run the command after ``--``; returns the exit status (see the module docs)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        print("usage: python -m mlops.clean_exit -- COMMAND [ARG...]", file=sys.stderr)
        return 2
    asked: list[int] = []
    children: list[subprocess.Popen[bytes]] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        asked.append(signum)
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    children.append(subprocess.Popen(args))
    if asked:  # the signal came while the child was starting
        forward(asked[0], None)
    returncode = children[0].wait()
    return exit_status(returncode, asked[0] if asked else None)


if __name__ == "__main__":
    sys.exit(main())
