"""Artifact transfer benchmark: a large file through the platform service against a local file copy.

One file of ``--size-mb`` random bytes goes up through ``mlops.Client.upload``
(the client hashes the file, then streams it; the service hashes the bytes as
they arrive, writes them to a temporary name and renames them under their
digest) and comes back through ``mlops.Client.download`` (the service streams
and re-hashes the stored bytes, the client hashes what arrives and renames it
into place). In the same run, the same file is copied with
``shutil.copyfile`` (the kernel's ``sendfile``, no hashing: the baseline the
throughput ratio is taken against), and with a read → SHA-256 → write loop
(what a copy that checks its bytes costs on this machine).

The service runs in its own process (``service.server.serve``); a thread
samples that process's RSS every 5 ms, so the peak growth over its resting
RSS shows whether memory follows the file's size. A smaller file
(``--small-mb``) is sent the same way for comparison.

Usage:
    .venv/bin/python benchmarks/artifacts.py [--size-mb 200] [--small-mb 20] [--repeats 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from api import free_port, start_ours, stop, wait_http  # noqa: E402

MB = 1 << 20
CHUNK = 1 << 20
TARGET_RATIO = 0.8


def write_random(path: Path, size: int, seed: int) -> None:
    """``size`` pseudo-random bytes (fast: one 8 MiB random block, varied per position)."""
    import random

    block = random.Random(seed).randbytes(8 * MB)
    with path.open("wb") as out:
        written = 0
        while written < size:
            piece = block[: min(len(block), size - written)]
            out.write(written.to_bytes(8, "little") + piece[8:])
            written += len(piece)


def restamp(path: Path, stamp: int) -> None:
    """Change the first bytes in place, so each round uploads content the store does not hold yet."""
    with path.open("r+b") as handle:
        handle.write(stamp.to_bytes(8, "little"))


def hashed_copy(src: Path, dst: Path) -> None:
    digest = hashlib.sha256()
    with src.open("rb") as inp, dst.open("wb") as out:
        for chunk in iter(lambda: inp.read(CHUNK), b""):
            digest.update(chunk)
            out.write(chunk)


class RssSampler:
    """The peak RSS of one process, sampled every 5 ms in a thread while a block runs."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.process = psutil.Process(pid)

    def rss(self) -> int:
        return int(self.process.memory_info().rss)

    @contextmanager
    def peak(self, into: dict[str, int]) -> Iterator[None]:
        done = threading.Event()
        into["before"] = into["peak"] = self.rss()

        def sample() -> None:
            while not done.wait(0.005):
                into["peak"] = max(into["peak"], self.rss())

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()
            into["peak"] = max(into["peak"], self.rss())


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def transfer(client: Any, reg: Any, sampler: RssSampler, src: Path, dst: Path, stamp: int) -> dict[str, Any]:
    """Upload ``src`` (restamped), register it, download it to ``dst``; seconds and RSS for each way."""
    from storage.artifacts import ArtifactRef

    restamp(src, stamp)
    up_rss: dict[str, int] = {}
    sent: dict[str, Any] = {}
    with sampler.peak(up_rss):
        up_s = timed(lambda: sent.update(client.upload(src)))
    ref = ArtifactRef(sent["sha256"], sent["size"])
    mv = reg.create_version("big", framework="custom", artifacts={"model.bin": ref})
    down_rss: dict[str, int] = {}
    with sampler.peak(down_rss):
        down_s = timed(lambda: client.download("big", mv.number, "model.bin", dst))
    if dst.stat().st_size != src.stat().st_size:
        raise AssertionError("the downloaded file has another size")
    dst.unlink()
    return {"upload_s": up_s, "download_s": down_s, "upload_rss": up_rss, "download_rss": down_rss}


def run(args: argparse.Namespace, work: Path, log: Callable[[str], None]) -> dict[str, Any]:
    from mlops.client import Client
    from storage.keys import ApiKeyStore
    from storage.registry.core import Registry

    home = work / "home"
    home.mkdir()
    reg = Registry.open(f"sqlite:///{home}/mlops.db", str(home / "artifacts"), actor="bench")
    reg.create_model("big")
    key, _ = ApiKeyStore(reg.db).create("bench", "contributor", actor="bench")
    size = args.size_mb * MB
    src, small, dst = work / "big.bin", work / "small.bin", work / "out.bin"
    write_random(src, size, 1)
    write_random(small, args.small_mb * MB, 2)
    port = free_port()
    proc = start_ours(home, port)
    rounds: list[dict[str, Any]] = []
    try:
        wait_http(port, "/api/v1/health", proc)
        sampler = RssSampler(proc.pid)
        with Client(f"http://127.0.0.1:{port}", key) as client:
            resting = sampler.rss()
            warm = transfer(client, reg, sampler, small, dst, 0)  # warms imports and buffers
            small_runs = [transfer(client, reg, sampler, small, dst, i) for i in (1, 2)]
            for i in range(args.repeats):
                log(f"round {i + 1}/{args.repeats}")
                copy_s = timed(lambda: shutil.copyfile(src, dst))
                dst.unlink()
                hashed_s = timed(lambda: hashed_copy(src, dst))
                dst.unlink()
                rounds.append({"copyfile_s": copy_s, "hashed_copy_s": hashed_s,
                               **transfer(client, reg, sampler, src, dst, 100 + i)})  # fmt: skip
    finally:
        stop(proc)
        reg.db.dispose()

    def best(key_: str) -> float:
        return min(r[key_] for r in rounds)

    def growth(runs: list[dict[str, Any]], way: str) -> float:
        return max(r[f"{way}_rss"]["peak"] - resting for r in runs) / MB

    mb = args.size_mb
    result = {
        "size_mb": mb,
        "rounds": rounds,
        "warmup": warm,
        "mb_per_s": {
            "copyfile": mb / best("copyfile_s"),
            "hashed_copy": mb / best("hashed_copy_s"),
            "upload": mb / best("upload_s"),
            "download": mb / best("download_s"),
        },
        "server_rss_mb": {
            "resting": resting / MB,
            f"upload_growth_{mb}mb": growth(rounds, "upload"),
            f"download_growth_{mb}mb": growth(rounds, "download"),
            f"upload_growth_{args.small_mb}mb": growth(small_runs, "upload"),
            f"download_growth_{args.small_mb}mb": growth(small_runs, "download"),
        },
    }
    rates = result["mb_per_s"]
    result["ratios"] = {
        "upload_vs_copyfile": rates["upload"] / rates["copyfile"],
        "download_vs_copyfile": rates["download"] / rates["copyfile"],
        "upload_vs_hashed_copy": rates["upload"] / rates["hashed_copy"],
        "download_vs_hashed_copy": rates["download"] / rates["hashed_copy"],
    }
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument(
        "--small-mb", type=int, default=20, help="a second, smaller file for the RSS comparison"
    )
    parser.add_argument("--repeats", type=int, default=3, help="rounds; the best of each is reported")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="mlops-artifact-bench-"))
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    result: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average_1m_at_start": os.getloadavg()[0]},
    }  # fmt: skip
    try:
        result.update(run(args, work, log))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["machine"]["load_average_1m_at_end"] = os.getloadavg()[0]
    rates, ratios, rss = result["mb_per_s"], result["ratios"], result["server_rss_mb"]
    print(f"| {args.size_mb} MB | MB/s (best of {args.repeats}) | vs copyfile | vs hashed copy |")
    print("|---|---:|---:|---:|")
    for name in ("copyfile", "hashed_copy", "upload", "download"):
        vs = ratios.get(f"{name}_vs_copyfile")
        vh = ratios.get(f"{name}_vs_hashed_copy")
        print(f"| {name} | {rates[name]:.0f} | {'' if vs is None else f'{vs:.0%}'} | "
              f"{'' if vh is None else f'{vh:.0%}'} |")  # fmt: skip
    print(json.dumps({"server_rss_mb": rss}))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
