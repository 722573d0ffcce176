"""The cluster option: README's command, exactly as written, on a machine with as many cores as workers (two
worker processes each compile the kernel with Numba threads launched from an unchanged environment), and
addresses that are not a Dask scheduler (malformed, silent, HTTP, garbage): one error, no hang."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest

from alphasignal.backtest.distributed import Executor, parse_cluster, probe_scheduler
from alphasignal.errors import ModelError, UsageError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 cores: one per worker of local:2")
def test_readme_cluster_command_local_2_runs_on_two_cores(tmp_path):
    out = tmp_path / "r.csv"
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_NUM_THREADS"}
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "numba")  # a cold cache: each worker compiles
    res = subprocess.run([sys.executable, "05_sweep_backtest.py", "--cluster", "local:2", "--output", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "NUMBA_NUM_THREADS" not in res.stderr and "Traceback" not in res.stderr
    assert "cluster local:2" in res.stdout
    rows = pd.read_csv(out)
    assert len(rows) > 0 and rows["sharpe"].notna().any()


class _Server:
    """A TCP server on 127.0.0.1 that answers each connection with ``reply`` (None: accepts and stays silent;
    b"": hangs up) until closed; a stand-in for what a mistyped cluster address can reach (an HTTP server, a
    stuck process)."""

    def __init__(self, reply: bytes | None) -> None:
        self.reply, self.sock = reply, socket.create_server(("127.0.0.1", 0))
        self.address = f"tcp://127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)
            if self.reply is not None:
                conn.sendall(self.reply)
                if not self.reply:
                    conn.close()  # b"": hang up at once

    def __enter__(self) -> _Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.mark.parametrize(("reply", "says"), [
    (None, "sent no Dask handshake within 2 s"),  # accepts and never answers: the handshake would hang
    (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "does not speak Dask's protocol"),
    (b"\xff" * 64, "does not speak Dask's protocol"),  # Dask would try to allocate 18 EB from this 'size'
    (b"", "closed the connection without a Dask handshake"),
])
def test_a_cluster_address_that_is_not_a_dask_scheduler_is_one_model_error(reply, says):
    with _Server(reply) as server, pytest.raises(ModelError, match=says) as info, \
            Executor(server.address, connect_timeout=2.0):
        pass
    assert "\n" not in str(info.value)


def test_a_cluster_address_where_nothing_listens_is_one_model_error():
    with socket.socket() as bound:  # bound but not listening: the port is ours and refuses connections
        bound.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{bound.getsockname()[1]}"
        with pytest.raises(ModelError, match="cannot reach the Dask scheduler at tcp://127.0.0.1"):
            probe_scheduler(address, 2.0)


@pytest.mark.parametrize("spec", ["tcp://:::::", "tcp://host:port", "tcp://127.0.0.1:99999", "tcp://:8786"])
def test_a_malformed_scheduler_address_is_one_usage_error(spec):
    with pytest.raises(UsageError, match="use tcp://HOST:PORT"):
        parse_cluster(spec)


def test_a_real_scheduler_passes_the_probe_and_is_reached():
    from distributed import LocalCluster

    with LocalCluster(n_workers=0, processes=False, dashboard_address=None, protocol="tcp://",
                      host="127.0.0.1") as cluster:
        probe_scheduler(cluster.scheduler_address, 10.0)
        with Executor(cluster.scheduler_address, connect_timeout=10.0) as ex:
            assert ex.client.scheduler_info()["address"] == cluster.scheduler_address
