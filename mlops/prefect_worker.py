"""A Prefect process worker that stops cleanly on SIGTERM: ``python -m mlops.prefect_worker``.

``prefect worker start`` turns SIGTERM into SIGINT to itself, which raises
``KeyboardInterrupt`` wherever its main thread happens to be. Usually the
worker then stops; on a machine with both cores busy it has stayed up for
more than five minutes after the signal. Here SIGTERM and SIGINT cancel the
worker's task on its own event loop, so it always leaves through its normal
shutdown (its loops cancelled, its API client closed) and exits 0.
``mlops up`` starts the worker this way.

Example:
    >>> options = parse_args(["--pool", "mlops-process", "--name", "w1"])
    >>> options.pool, options.name, options.limit
    ('mlops-process', 'w1', None)
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

__all__ = ["main", "parse_args", "run_worker"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The worker's options: ``--pool`` (required), ``--name``, ``--limit``."""
    parser = argparse.ArgumentParser(
        prog="python -m mlops.prefect_worker", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--pool", required=True, help="the process work pool to poll")
    parser.add_argument("--name", help="the worker's name (Prefect makes one up when missing)")
    parser.add_argument("--limit", type=int, help="flow runs at a time (no limit when missing)")
    return parser.parse_args(argv)


async def run_worker(pool: str, name: str | None = None, limit: int | None = None) -> None:
    """Poll ``pool`` for flow runs until SIGTERM or SIGINT, then shut down the worker."""
    from prefect.workers.process import ProcessWorker

    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, task.cancel)
    worker = ProcessWorker(work_pool_name=pool, name=name, limit=limit)
    try:
        await worker.start()
    except asyncio.CancelledError:
        print(f"Worker {worker.name!r} stopped.", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the worker (see the module docs); 0 after a stop that was asked for."""
    options = parse_args(argv)
    asyncio.run(run_worker(options.pool, options.name, options.limit))
    return 0


if __name__ == "__main__":
    sys.exit(main())
