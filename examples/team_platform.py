"""A team shares one platform: the service, keys and roles, remote registration, two reviewers, the console.

The admin starts ``mlops server`` on the machine that holds the metadata
database and the artifact store, and makes one API key per person with
``mlops keys create``. Everyone else needs only the service's URL and their
key: here a data scientist registers a version with its files from an empty
``MLOPS_HOME`` (no database, no store), asks for production, and two
reviewers approve with their own keys; the audit log names each of them. The
console (the same service, at ``/``) shows the result to anyone signed in.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from mlops.client import Client

MODEL = "churn"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _mlops(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "mlops.cli", *args], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"mlops {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def _wait_for(url: str, process: subprocess.Popen[bytes], deadline_s: float = 60.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mlops server exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"mlops server did not answer at {url}")


def main() -> dict[str, Any]:
    """Run the team's workflow against a real ``mlops server``; return what happened."""
    server_home = Path(os.environ.get("MLOPS_HOME", ".mlops")).resolve() / "server"
    server_env = {**os.environ, "MLOPS_HOME": str(server_home), "MLOPS_USER": "admin"}
    server_env.pop("MLOPS_API_URL", None)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    keys = {
        who: json.loads(_mlops("keys", "create", who, "--role", role, "--json", env=server_env))["key"]
        for who, role in [
            ("admin", "admin"),
            ("dana", "contributor"),
            ("rui", "reviewer"),
            ("sam", "reviewer"),
        ]
    }
    print(f"keys made for admin, dana (contributor), rui and sam (reviewers) in {server_home}")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlops.cli", "server", "--port", str(port)],
        env=server_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(url, server)
        print(f"mlops server listening at {url} (console at {url}/)")
        laptop = Path(tempfile.mkdtemp(prefix="laptop-"))
        weights = laptop / "model.json"
        weights.write_text(json.dumps({"coef": [0.4, -1.2, 0.07], "intercept": 0.1}))
        with Client(url, keys["admin"]) as admin:
            admin.set_reviewer("rui", ["ml"])
            admin.set_reviewer("sam", ["risk"])
        with Client(url, keys["dana"]) as dana:
            dana.create_model(MODEL, description="Monthly churn risk", tags={"team": "growth"})
            version = dana.create_version(
                MODEL, framework="custom", artifacts={"model.json": weights}, metrics={"auc": 0.87}
            )
            staging = dana.request_promotion(MODEL, version.number, "staging", reason="beats the baseline")
        print(f"dana registered {MODEL} version {version.number} from an empty home and asked for staging")
        with Client(url, keys["rui"]) as rui:
            decided = rui.approve(staging.id, comment="offline metrics hold")
        print(f"  rui approved staging: {decided.status}")
        with Client(url, keys["dana"]) as dana:
            request = dana.request_promotion(
                MODEL, version.number, "production", reason="staging looked good"
            )
        for reviewer in ("rui", "sam"):
            with Client(url, keys[reviewer]) as client:
                decided = client.approve(request.id, comment=f"{reviewer}: checked")
            print(
                f"  {reviewer} approved production: {decided.status} "
                f"({decided.approvals}/{decided.required_approvals})"
            )
        with Client(url, keys["rui"]) as rui:
            stage = rui.get_version(MODEL, version.number).stage
            chain = rui.verify_audit()
            actors = {e.actor for e in rui.audit_entries(limit=1000)}
        print(
            f"{MODEL} version {version.number} is now in {stage}; "
            f"audit chain ok={chain.ok}, actors {sorted(actors)}"
        )
        with httpx.Client(base_url=url, follow_redirects=True) as browser:
            browser.post("/login", data={"key": keys["sam"], "next": f"/models/{MODEL}"})
            page = browser.get(f"/models/{MODEL}")
        shown = f'/models/{MODEL}/versions/{version.number}"' in page.text
        print(
            f"console page /models/{MODEL} as sam: HTTP {page.status_code}, "
            f"lists version {version.number}: {shown}"
        )
        leftovers = sorted(p.name for p in laptop.iterdir())
        return {
            "stage": stage,
            "audit_ok": chain.ok,
            "actors": actors,
            "console_shows": shown,
            "laptop": leftovers,
        }
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(30)
        print(f"mlops server stopped (exit code {code})")


if __name__ == "__main__":
    main()
