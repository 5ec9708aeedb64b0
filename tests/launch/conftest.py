"""A real two-node Ray cluster on this machine (loopback only) for the preflight and launcher tests.

The head has no GPUs; the worker node declares 2 logical GPUs (the cpu platform's worker slots) and starts with
plugins off (``VERL_USE_EXTERNAL_PLUGINS=none``), so the plugin only loads there through the runtime_env the
launcher ships. Both nodes run with an empty HOME (no ~/.netrc) and without WANDB_API_KEY. Every process of the
cluster carries a marker in its environment; teardown stops exactly those (never ``ray stop``, which would end
other Ray clusters on the machine). Ray's temp dir is private, so no other ``ray.init()`` finds this cluster.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LocalCluster:
    gcs: str
    dashboard: str
    marker: str
    temp_dir: Path
    home: Path

    def stop(self) -> int:
        from verl_difficulty.cpu.quickstart import RUN_MARKER, stop_run

        os.environ.pop(RUN_MARKER, None)
        stopped = stop_run(self.marker, grace_s=5.0)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        return stopped


def base_env(marker: str, home: Path) -> dict[str, str]:
    from verl_difficulty.cpu.quickstart import RUN_MARKER

    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RAY_", "WANDB_", "VERL_USE_EXTERNAL", "PYTEST_")) and k != "NETRC"}
    env.update({RUN_MARKER: marker, "HOME": str(home), "PATH": f"{VENV_BIN}:{env.get('PATH', '')}",
                "RAY_USAGE_STATS_ENABLED": "0", "RAY_DEDUP_LOGS": "0", "OMP_NUM_THREADS": "1",
                "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    return env


def start_cluster(tmp: Path) -> LocalCluster:
    marker = uuid.uuid4().hex
    temp_dir = Path(f"/tmp/vdr{marker[:8]}")  # short: Ray's unix socket paths must stay under 108 characters
    home = tmp / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = base_env(marker, home)
    ray = str(VENV_BIN / "ray")
    port, dashboard = free_port(), free_port()
    common = ["--node-ip-address=127.0.0.1", f"--temp-dir={temp_dir}", "--object-store-memory=300000000",
              "--disable-usage-stats"]
    cluster = LocalCluster(f"127.0.0.1:{port}", f"http://127.0.0.1:{dashboard}", marker, temp_dir, home)
    try:
        subprocess.run([ray, "start", "--head", f"--port={port}", "--num-cpus=4", "--num-gpus=0",
                        "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
                        f"--dashboard-agent-listen-port={free_port()}", f"--ray-client-server-port={free_port()}",
                        *common], env=env, check=True, capture_output=True, text=True, timeout=120)
        worker_env = {**env, "VERL_USE_EXTERNAL_PLUGINS": "none"}
        subprocess.run([ray, "start", f"--address=127.0.0.1:{port}", "--num-cpus=8", "--num-gpus=2",
                        f"--dashboard-agent-listen-port={free_port()}", *common], env=worker_env, check=True,
                       capture_output=True, text=True, timeout=120)
        _wait_for_nodes(cluster, 2)
    except BaseException as error:
        cluster.stop()
        if isinstance(error, subprocess.CalledProcessError):
            raise RuntimeError(f"ray start failed: {error.stderr[-2000:]}") from error
        raise
    return cluster


def _wait_for_nodes(cluster: LocalCluster, count: int, timeout_s: float = 120) -> None:
    from verl_difficulty.launch import list_nodes

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if sum(n["alive"] for n in list_nodes(cluster.dashboard)) >= count:
                return
        except Exception:  # noqa: BLE001 - the dashboard is still starting
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"the local cluster did not show {count} nodes in {timeout_s:.0f} s")
        time.sleep(1)


@pytest.fixture(scope="session")
def local_cluster(tmp_path_factory):
    cluster = start_cluster(tmp_path_factory.mktemp("ray_cluster"))
    yield cluster
    cluster.stop()
