"""The one seam that runs independent pieces of work: in-process (the default; Dask is not imported) or on a Dask
distributed cluster (``local[:N]`` starts a LocalCluster of N worker processes, ``tcp://HOST:8786`` joins an
existing scheduler).

``Executor.map_chunks(fn, chunks, shared)`` calls ``fn(shared[key], payload)`` for each ``(key, payload)`` chunk
and yields the results in chunk order (the client holds one result at a time). ``shared`` values (price data)
travel once per worker: they are scattered with ``broadcast=True`` and each task refers to them by key. Dask
reruns the tasks of a worker that dies; if the dead worker held the last copy of scattered data (Dask's memory
manager drops replicas it deems spare), the remaining tasks are resubmitted with the data scattered again. A
WorkerPlugin warms the Numba kernel once per worker and caps its threads so that workers x threads <= cores.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import urllib.parse
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from concurrent.futures import CancelledError
from typing import Any

from ..errors import AlphaSignalError, ModelError, UsageError

log = logging.getLogger(__name__)

RESUBMITS = 3  # times the remaining tasks are resubmitted after shared data was lost with a worker
MAX_WORKERS_PER_CORE = 4  # local:N beyond this many per core only adds processes waiting for a core
_THREADS = 0  # Numba threads for tasks of this worker process (set by the plugin; 0 = Numba's default)


def parse_cluster(spec: str) -> tuple[str, int]:
    """``("", 0)`` in-process, ``("local", N)`` for ``local[:N]`` (N defaults to the cores), ``(address, 0)`` for
    ``tcp://HOST:PORT``; anything else is a UsageError naming the accepted forms."""
    spec = spec.strip()
    if not spec:
        return "", 0
    if spec == "local" or spec.startswith("local:"):
        n = spec.partition(":")[2] or str(os.cpu_count() or 1)
        if not n.isdigit() or int(n) < 1:
            raise UsageError(f"cluster {spec!r}: the worker count must be a positive integer, e.g. local:2")
        cores = os.cpu_count() or 1
        if int(n) > MAX_WORKERS_PER_CORE * cores:
            raise UsageError(f"cluster {spec!r} asks for {int(n)} worker processes on {cores} cores: use at most "
                             f"local:{MAX_WORKERS_PER_CORE * cores} (local:{cores} is one worker per core, the "
                             "fastest; each worker is a process with its own memory)")
        return "local", int(n)
    if spec.startswith(("tcp://", "tls://")) and ":" in spec.split("://", 1)[1]:
        _host_port(spec)
        return spec, 0
    raise UsageError(f"cluster {spec!r} is invalid: use local, local:N or tcp://HOST:8786 (empty = in-process)")


def _host_port(address: str) -> tuple[str, int]:
    """(host, port) of ``tcp://HOST:PORT`` (``[::1]`` for IPv6), or one UsageError naming the form."""
    try:
        parts = urllib.parse.urlsplit(address)
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if not host or not port or parts.path not in ("", "/"):
        raise UsageError(f"cluster {address!r} is not a scheduler address: use tcp://HOST:PORT, e.g. "
                         "tcp://127.0.0.1:8786 or tcp://[::1]:8786")
    return host, port


HANDSHAKE_MAX_BYTES = 1 << 20  # a Dask scheduler's first message (its handshake) is a few hundred bytes


def probe_scheduler(address: str, timeout: float) -> None:
    """Before Dask connects: the server at ``tcp://`` ``address`` must send a plausible Dask handshake within
    ``timeout`` s (a Dask scheduler writes its handshake on accept). A server that accepts and stays silent, or
    that sends something else (an HTTP server, garbage), is one ModelError instead of a hang or Dask allocating
    the 'size' read from the garbage. TLS addresses are left to Dask."""
    if not address.startswith("tcp://"):
        return
    host, port = _host_port(address)
    fix = "start a Dask scheduler there (dask scheduler) or fix sweep.cluster"
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            head = b""
            while len(head) < 8:
                chunk = sock.recv(8 - len(head))
                if not chunk:
                    raise ModelError(f"{address} closed the connection without a Dask handshake: {fix}")
                head += chunk
    except TimeoutError:
        raise ModelError(f"{address} accepted the connection but sent no Dask handshake within {timeout:g} s: "
                         f"it is not a Dask scheduler, or it hangs; {fix}") from None
    except OSError as exc:
        raise ModelError(f"cannot reach the Dask scheduler at {address} ({exc.strerror or exc}): {fix}") from None
    size = int.from_bytes(head, "little")
    if not 0 < size <= HANDSHAKE_MAX_BYTES:
        raise ModelError(f"{address} does not speak Dask's protocol (its first message claims {size:,} bytes): "
                         f"{fix}")


def threads_per_worker(workers_on_host: int, cores: int | None = None) -> int:
    """Numba threads for each of ``workers_on_host`` single-task workers so that workers x threads <= cores."""
    return max(1, (cores or os.cpu_count() or 1) // max(1, workers_on_host))


def apply_threads() -> None:
    """Inside a task: cap Numba's threads (set per thread, so every task sets it) to this worker's share."""
    if _THREADS:
        import numba

        numba.set_num_threads(min(_THREADS, numba.config.NUMBA_NUM_THREADS))


class WarmKernel:
    """WorkerPlugin body: sets this worker's Numba thread share and runs ``warm()`` once (compiling the kernel or
    loading it from Numba's disk cache) before the worker's first task. Subclassed from Dask's WorkerPlugin at
    registration, so this module imports Dask only when a cluster is used."""

    name = "alphasignal-warm-kernel"

    def __init__(self, warm: Callable[[], None] | None, host_workers: Mapping[str, int], threads: int = 0) -> None:
        self.warm, self.host_workers, self.threads = warm, dict(host_workers), threads

    async def setup(self, worker: Any) -> None:
        global _THREADS
        host = worker.address.split("://")[-1].rsplit(":", 1)[0]
        _THREADS = self.threads or threads_per_worker(self.host_workers.get(host, 1))
        if self.warm is not None:
            await asyncio.to_thread(_warm_with_threads, self.warm)


def _warm_with_threads(warm: Callable[[], None]) -> None:
    apply_threads()
    warm()


class Executor:
    """A context manager around the chosen place of work; see the module docstring."""

    def __init__(self, cluster: str = "", *, connect_timeout: float = 10.0,
                 warm: Callable[[], None] | None = None, numba_threads: int = 0) -> None:
        self.address, self.n_local = parse_cluster(cluster)
        self.connect_timeout, self.warm, self.numba_threads = connect_timeout, warm, numba_threads
        self.client: Any = None
        self._cluster: Any = None

    @property
    def workers(self) -> int:
        """Workers doing the work (1 in-process)."""
        if self.client is None:
            return 1
        return max(1, len(self.client.scheduler_info()["workers"]))

    def __enter__(self) -> Executor:
        if not self.address:
            return self
        from distributed import Client, LocalCluster

        try:
            if self.address == "local":
                # No NUMBA_NUM_THREADS in the workers' environment: Numba re-reads the environment at every
                # compile and refuses a value other than the one its threads were launched with, which Dask's
                # nanny does not keep stable. Each task caps its threads with set_num_threads (apply_threads).
                self._cluster = LocalCluster(n_workers=self.n_local, threads_per_worker=1, processes=True,
                                             dashboard_address=None)
                self.client = Client(self._cluster, timeout=self.connect_timeout)
            else:
                probe_scheduler(self.address, self.connect_timeout)
                self.client = Client(self.address, timeout=self.connect_timeout)
        except (OSError, TimeoutError) as exc:
            self.__exit__()
            raise ModelError(f"cannot reach the Dask scheduler at {self.address} within {self.connect_timeout:g} s "
                             f"({type(exc).__name__}): start it (dask scheduler) or fix sweep.cluster") from None
        self.warm_workers(self.warm)
        return self

    def warm_workers(self, warm: Callable[[], None] | None) -> None:
        """(Re-)register the WorkerPlugin: each worker takes its Numba thread share and runs ``warm()`` if given
        (:meth:`__enter__` registers the constructor's; call this when the warm-up needs data loaded after the
        scheduler was reached). Nothing to do in-process."""
        self.warm = warm
        if self.client is None:
            return
        try:
            self._register_plugin()
        except Exception as exc:
            self.__exit__()
            _raise_if_environment(exc)
            raise

    def _register_plugin(self) -> None:
        from distributed import WorkerPlugin

        hosts: dict[str, int] = {}
        for addr in self.client.scheduler_info()["workers"]:
            host = addr.split("://")[-1].rsplit(":", 1)[0]
            hosts[host] = hosts.get(host, 0) + 1
        plugin = type("WarmKernelPlugin", (WarmKernel, WorkerPlugin), {})(self.warm, hosts, self.numba_threads)
        self.client.register_plugin(plugin, name=WarmKernel.name)

    def __exit__(self, *exc: object) -> None:
        if self.client is not None:
            self.client.close()
        if self._cluster is not None:
            self._cluster.close()
        self.client = self._cluster = None

    def map_chunks(self, fn: Callable[[Any, Any], Any], chunks: Iterable[tuple[Hashable, Any]],
                   shared: Mapping[Hashable, Any]) -> Iterator[Any]:
        """``fn(shared[key], payload)`` for each ``(key, payload)``, results in chunk order."""
        chunks = list(chunks)
        if self.client is None:
            for key, payload in chunks:
                yield fn(shared[key], payload)
            return
        tasks = self._submit(fn, chunks, shared)
        lost = 0
        try:
            i = 0
            while i < len(chunks):
                try:
                    result = tasks[i].result()
                except CancelledError:  # a dead worker took the last copy of shared data with it
                    lost += 1
                    if lost > RESUBMITS:
                        raise
                    log.warning("shared data was lost with a worker: resubmitting the %d remaining tasks",
                                len(chunks) - i)
                    self.client.cancel([t for t in tasks if t is not None])
                    tasks[i:] = self._submit(fn, chunks[i:], shared)
                    continue
                except Exception as exc:
                    _raise_if_environment(exc)
                    raise
                tasks[i] = None  # release it on the workers: the client keeps one result at a time
                i += 1
                yield result
        finally:
            self.client.cancel([t for t in tasks if t is not None])

    def _submit(self, fn: Callable[[Any, Any], Any], chunks: list[tuple[Hashable, Any]],
                shared: Mapping[Hashable, Any]) -> list[Any]:
        """Scatter the shared values the chunks need to every worker, then submit one task per chunk."""
        keys = list(dict.fromkeys(key for key, _ in chunks))
        futures = self.client.scatter([shared[k] for k in keys], broadcast=True, hash=False)
        by_key = dict(zip(keys, futures, strict=True))
        return self.client.map(fn, [by_key[k] for k, _ in chunks], [p for _, p in chunks], pure=False)


def _raise_if_environment(exc: Exception) -> None:
    """A scheduler or worker that cannot import this project is a one-line server error (exit 3)."""
    text = str(exc)
    if not isinstance(exc, AlphaSignalError) and ("No module named" in text or "deserialization" in text):
        first = text.splitlines()[0] if text else type(exc).__name__
        raise ModelError(f"the Dask cluster cannot load alphasignal's tasks ({first}): start `dask scheduler` and "
                         "`dask worker` in the repository root with PYTHONPATH set to it, with the same "
                         "requirements installed") from None


def map_chunks(fn: Callable[[Any, Any], Any], chunks: Iterable[tuple[Hashable, Any]],
               shared: Mapping[Hashable, Any], *, cluster: str = "", connect_timeout: float = 10.0,
               warm: Callable[[], None] | None = None) -> list[Any]:
    """One-shot :meth:`Executor.map_chunks` (in-process unless ``cluster`` is set); results in chunk order."""
    with Executor(cluster, connect_timeout=connect_timeout, warm=warm) as ex:
        return list(ex.map_chunks(fn, chunks, shared))
