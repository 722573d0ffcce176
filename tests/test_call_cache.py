"""The model-call cache (``alphasignal/providers/cache.py``) against real HTTP servers on 127.0.0.1.

Fast tests: a scripted OpenAI-compatible server started here answers fixed, valid JSON and counts the requests it
serves (a real model's replies cannot be known in advance). Slow tests: the Ollama-API-compatible test server with
real SmolLM2 inference (``tests/ollama_compat_server.py``; ``GET /_test/requests`` counts its requests).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from fixtures_llm import SMOLLM2_OLLAMA_NAME, start_ollama_compat
from PIL import Image
from test_signals_servers import ScriptedHandler

from alphasignal.providers import (
    CacheError,
    CallBudgetExceeded,
    Completion,
    Message,
    ProviderSettings,
    get_provider,
    usage_scope,
)
from alphasignal.providers.cache import CallCache, call_key
from alphasignal.providers.ollama import OllamaProvider
from alphasignal.providers.openai_compat import OpenAICompatProvider
from alphasignal.signals.schemas import NewsSentiment

ROOT = Path(__file__).resolve().parents[1]
NEWS_REPLY = {"sentiment": "BEARISH", "intensity": 0.6, "key_factors": ["guidance cut"]}
CHART_REPLY = {"action": "SELL", "confidence": 0.5, "entry_price": 100.0, "stop_loss": 103.0, "take_profit": 94.0,
               "rationale": "lower highs and lower lows"}
SYSTEM, USER = "You are a news analyst. Answer with JSON only.", "News: the company cut its guidance."


class _Scripted(ScriptedHandler):
    """OpenAI-compatible (GET /v1/models from the misbehaving server's handler) with a valid reply for the news or
    chart call and fixed token counts; ``self.server.posts`` counts the chat requests."""

    def do_POST(self) -> None:
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.posts += 1
        news = "news analyst" in json.dumps(req["messages"][0])
        self._send({"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                    "choices": [{"index": 0, "finish_reason": "stop", "message": {
                        "role": "assistant", "content": json.dumps(NEWS_REPLY if news else CHART_REPLY)}}],
                    "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}})


@pytest.fixture
def scripted():
    """The scripted server: yields it (``.url`` is the OpenAI base URL, ``.posts`` the chat requests so far)."""
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    srv.daemon_threads, srv.posts = True, 0
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/v1"
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _provider(url: str, cache: Path, mode: str, **settings: object):
    return get_provider("openai", model="m", cfg=ProviderSettings(openai_base_url=url, call_cache=str(cache),
                                                                  cache_mode=mode, **settings))


def _ask(provider):
    return provider.structured(NewsSentiment, SYSTEM, USER)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------------ the key
def test_key_covers_everything_that_shapes_a_reply() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    msgs = [Message("system", "s"), Message("user", "u", (b"\x89PNG-1",))]

    def key(cls=OpenAICompatProvider, model="m", messages=msgs, json_schema=schema, **settings) -> str:
        return call_key(cls(model, ProviderSettings(**settings)), messages, json_schema)

    variants = [key(), key(cls=OllamaProvider), key(model="m2"), key(temperature=0.7), key(max_tokens=100),
                key(openai_method="function_calling"), key(json_schema={**schema, "required": ["a"]}),
                key(messages=[Message("system", "s2"), msgs[1]]),
                key(messages=[msgs[0], Message("user", "u", (b"\x89PNG-2",))]),  # only the image bytes differ
                key(messages=[*msgs, Message("assistant", "x")])]
    assert len(set(variants)) == len(variants)
    # ... and nothing else: timeouts, hosts and retries do not change a reply
    assert key() == key(timeout=5.0, openai_base_url="http://elsewhere:1/v1", max_retries=0)


# ------------------------------------------------------------------------------------------------ modes
def test_use_refresh_off_against_a_counting_server(scripted, tmp_path: Path) -> None:
    cache = tmp_path / "calls.sqlite"
    first = _ask(_provider(scripted.url, cache, "use"))
    assert scripted.posts == 1 and first.tokens_in == 11 and first.tokens_out == 7  # miss: one request, stored
    with usage_scope() as usage:
        again = _ask(_provider(scripted.url, cache, "use"))  # a new provider, as in a new run
    assert scripted.posts == 1 and usage.calls == 0 and usage.cache_hits == 1 and usage.tokens_in == 0
    assert again == first  # value, raw text, recorded latency, tokens: the same Reply
    _ask(_provider(scripted.url, cache, "refresh"))
    assert scripted.posts == 2 and len(CallCache(cache)) == 1  # refresh: called again, overwrote the one record
    off = _provider(scripted.url, cache, "off")
    _ask(off), _ask(off)
    assert scripted.posts == 4


def test_budget_stops_before_the_request_that_would_exceed_it(scripted, tmp_path: Path) -> None:
    provider = _provider(scripted.url, tmp_path / "c.sqlite", "off")
    with usage_scope(max_calls=1) as usage:
        _ask(provider)
        with pytest.raises(CallBudgetExceeded, match="max_calls=1 reached"):
            _ask(provider)
    assert scripted.posts == 1 and usage.calls == 1
    with usage_scope(max_tokens_total=10) as usage:  # one call spends 18
        _ask(provider)
        with pytest.raises(CallBudgetExceeded, match="max_tokens_total=10"):
            _ask(provider)
    assert scripted.posts == 2 and usage.tokens_in + usage.tokens_out == 18
    cached = _provider(scripted.url, tmp_path / "c.sqlite", "use")
    _ask(cached)
    with usage_scope(max_calls=1):  # cache hits are not model calls: they never spend the budget
        for _ in range(3):
            _ask(cached)
    assert scripted.posts == 3


_WRITER = """
import sys
from alphasignal.providers import Completion
from alphasignal.providers.cache import CallCache
cache, i = CallCache(sys.argv[1]), sys.argv[2]
for n in range(100):
    cache.put(f"{i}-{n}", "p", "m", Completion(f"reply {i} {n}", 1, 2, 0.5))
"""


def test_parallel_processes_write_one_file(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    writers = [subprocess.Popen([sys.executable, "-c", _WRITER, str(path), str(i)], cwd=ROOT,
                                stderr=subprocess.PIPE, text=True) for i in range(4)]
    errors = [w.communicate(timeout=120)[1] for w in writers]
    assert [w.returncode for w in writers] == [0, 0, 0, 0], errors
    cache = CallCache(path)
    assert len(cache) == 400 and str(cache.get("2-99")) == "reply 2 99" and cache.get("3-0").cached
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# ------------------------------------------------------------------------------------------------ bad files
def _smashed(path: Path) -> None:
    cache = CallCache(path)
    cache.put("k", "p", "m", Completion("x"))
    cache.close()
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)
    path.write_bytes(bytes(data))


def _foreign(path: Path) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE invoices (id INTEGER)")
    con.commit()
    con.close()


def _lookalike(path: Path) -> None:  # tables named like ours, but not marked as ours
    con = sqlite3.connect(path)
    con.executescript("CREATE TABLE calls (id INTEGER); CREATE TABLE cache_meta (key TEXT, value TEXT);")
    con.commit()
    con.close()


def _other_format(path: Path) -> None:  # ours, written by a version with another format
    CallCache(path).close()
    con = sqlite3.connect(path)
    con.execute("UPDATE cache_meta SET value = '99' WHERE key = 'format'")
    con.commit()
    con.close()


@pytest.mark.parametrize("make, needle", [
    (lambda p: p.write_text("hello, not a database\n" * 10), "not an SQLite file"),
    (_foreign, "another program"),
    (_lookalike, "another program"),
    (_smashed, "corrupt"),
    (_other_format, "has format 99"),
], ids=["text", "foreign-sqlite", "lookalike", "corrupt", "other-format"])
def test_bad_cache_file_is_refused_and_never_modified(tmp_path: Path, make, needle: str) -> None:
    path = tmp_path / "calls.sqlite"
    make(path)
    before = _digest(path)
    with pytest.raises(CacheError, match=needle) as err:
        CallCache(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value) and "pipeline.call_cache" in str(err.value)
    assert _digest(path) == before


def test_bad_cache_file_is_one_line_exit_2_before_any_work(tmp_path: Path) -> None:
    path = tmp_path / "calls.sqlite"
    _smashed(path)
    before = _digest(path)
    proc = subprocess.run([sys.executable, str(ROOT / "04_signal_pipeline.py"), "--demo", "--provider", "openai",
                           "--cache", "use", "--set", f"pipeline.call_cache={path}",  # no server: the cache is first
                           "--set", "pipeline.openai_base_url=http://127.0.0.1:9/v1", "--output", "out.json"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: call cache") and str(path) in err[0] and "corrupt" in err[0]
    assert "pipeline.call_cache" in err[0]
    assert _digest(path) == before and not (tmp_path / "out.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calls.sqlite"]  # nothing written beside it either


# ------------------------------------------------------------------------------------------------ stage 04 CLI
def _stage04(tmp_path: Path, url: str, *extra: str) -> subprocess.CompletedProcess:
    Image.new("RGB", (96, 96), "white").save(tmp_path / "c.png")
    args = ["--image", "c.png", "--news", "The company cut its guidance.", "--last-close", "100",
            "--provider", "openai", "--vlm-model", "m", "--llm-model", "m", "--set", f"pipeline.openai_base_url={url}",
            "--set", f"pipeline.call_cache={tmp_path / 'calls.sqlite'}", *extra]
    return subprocess.run([sys.executable, str(ROOT / "04_signal_pipeline.py"), *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "HOME": str(tmp_path)})


@pytest.mark.slow  # an integration test (subprocess or a real model/replay): ~3-13 s
def test_stage04_cached_rerun_makes_no_request_and_writes_the_same_bytes(scripted, tmp_path: Path) -> None:
    first = _stage04(tmp_path, scripted.url, "--cache", "use", "--output", "a.json")
    assert first.returncode == 0, first.stderr
    assert scripted.posts == 2 and "model calls: 2 sent, 0 from the cache" in first.stderr
    second = _stage04(tmp_path, scripted.url, "--cache", "use", "--output", "b.json")
    assert second.returncode == 0, second.stderr
    assert scripted.posts == 2 and "model calls: 0 sent, 2 from the cache" in second.stderr
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    meta = json.loads((tmp_path / "a.json").read_text())["meta"]
    assert meta["usage"] == {"model_calls": 2, "tokens_in": 22, "tokens_out": 14,
                             "model_latency_s": round(meta["calls"]["vlm"]["latency_s"]
                                                      + meta["calls"]["sentiment"]["latency_s"], 4)}
    refreshed = _stage04(tmp_path, scripted.url, "--cache", "refresh", "--output", "c.json")
    assert refreshed.returncode == 0 and scripted.posts == 4 and "2 sent, 0 from the cache" in refreshed.stderr


# ------------------------------------------------------------------------------------------------ real SmolLM2
def _chats(server) -> int:  # noqa: ANN001
    """Model requests the Ollama-compatible test server has served so far."""
    import httpx

    counts = httpx.get(f"{server.url}/_test/requests", timeout=10).json()["requests"]
    return sum(counts.get(f"POST {p}", 0) for p in ("/api/chat", "/api/generate", "/v1/chat/completions"))


@pytest.mark.slow
def test_real_ollama_server_miss_hit_refresh_off(ollama_server, tmp_path: Path) -> None:  # noqa: ANN001
    def provider(mode: str):
        return get_provider("ollama", model=SMOLLM2_OLLAMA_NAME, cfg=ProviderSettings(
            ollama_host=ollama_server.url, call_cache=str(tmp_path / "c.sqlite"), cache_mode=mode, max_retries=0,
            max_tokens=96, raw_dir=str(tmp_path / "raw")))

    def ask(p):  # noqa: ANN001, ANN202 - SmolLM2 may answer out of contract: then the error is the outcome
        try:
            return _ask(p)
        except Exception as exc:  # noqa: BLE001
            return f"{type(exc).__name__}: {str(exc).split(';')[0]}"

    start = _chats(ollama_server)
    miss = ask(provider("use"))
    assert _chats(ollama_server) == start + 1
    hit = ask(provider("use"))
    assert _chats(ollama_server) == start + 1 and hit == miss
    if not isinstance(miss, str):
        assert miss.tokens_out > 0 and miss.tokens_in > 0  # the server's prompt_eval_count / eval_count
    ask(provider("refresh"))
    assert _chats(ollama_server) == start + 2
    off = provider("off")
    ask(off), ask(off)
    assert _chats(ollama_server) == start + 4


@pytest.mark.slow
def test_real_stage04_demo_cached_rerun_is_silent_and_byte_identical(ollama_server, tmp_path: Path) -> None:  # noqa: ANN001
    def run(out: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(ROOT / "04_signal_pipeline.py"), "--demo", "--provider", "ollama", "--llm-model",
             SMOLLM2_OLLAMA_NAME, "--set", "pipeline.vlm_provider=builtin", "--set",
             f"pipeline.ollama_host={ollama_server.url}", "--set", f"pipeline.call_cache={tmp_path / 'c.sqlite'}",
             "--set", "pipeline.max_retries=1", "--cache", "use", "--output", out],
            cwd=tmp_path, capture_output=True, text=True, timeout=600, env={**os.environ, "HOME": str(tmp_path)})

    start = _chats(ollama_server)
    first = run("a.json")
    made = _chats(ollama_server) - start
    assert made >= 1, first.stderr
    second = run("b.json")
    assert _chats(ollama_server) - start == made  # the second run sent nothing
    assert second.returncode == first.returncode and second.stderr.count("0 sent") == 1, second.stderr
    if first.returncode == 0:
        assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
        assert json.loads((tmp_path / "a.json").read_text())["meta"]["usage"]["model_calls"] == made
    else:  # SmolLM2 gave no valid reply: the cached replay fails the same way, in one line (the file the raw
        # replies are saved to is named by the time)
        def error(p: subprocess.CompletedProcess) -> str:
            return p.stderr.splitlines()[-1].split("; raw replies saved to")[0]

        assert first.returncode == 3 and error(first) == error(second)


@pytest.mark.slow
def test_real_stage06_cached_rerun_is_silent_and_records_the_same_messages(ollama_server, tmp_path: Path) -> None:  # noqa: ANN001
    # --provider ollama for the Risk Manager; the builtin Analyst and Strategist keep the run short (SmolLM2 on 2
    # cores needs minutes per long reply) and deterministic, so the Risk Manager is asked the same thing twice.
    def run(name: str) -> tuple[subprocess.CompletedProcess, list[tuple]]:
        db = tmp_path / f"{name}.sqlite"
        proc = subprocess.run(
            [sys.executable, str(ROOT / "06_multi_llm_optimize.py"), "--provider", "ollama", "--rounds", "1",
             "--cache", "use", "--set", f"pipeline.ollama_host={ollama_server.url}",
             "--set", f"pipeline.call_cache={tmp_path / 'c.sqlite'}", "--set", "pipeline.max_retries=0",
             "--set", "optimizer.analyst_provider=builtin", "--set", "optimizer.strategist_provider=builtin",
             "--set", f"optimizer.risk_model={SMOLLM2_OLLAMA_NAME}", "--set", "optimizer.max_tokens=400",
             "--set", "dataset.source=offline", "--set", "dataset.start=2015-01-01", "--set", "dataset.end=2020-12-31",
             "--set", "sweep.grid={short_period=[5, 10, 20], long_period=[50, 100], use_ema=[false, true]}",
             "--set", "optimizer.min_trades=3", "--set", f"optimizer.history_db={db}",
             "--output-dir", str(tmp_path / name), "-q"],
            cwd=tmp_path, capture_output=True, text=True, timeout=900, env={**os.environ, "HOME": str(tmp_path)})
        rows = []
        if db.exists():
            con = sqlite3.connect(db)
            rows = con.execute("SELECT round_no, agent, provider, model, raw, parsed, latency_s FROM messages "
                               "ORDER BY id").fetchall()
            con.close()
        # the builtin agents' latencies are measured anew each run; a model call's is replayed from the cache
        return proc, [r if r[2] != "builtin" else r[:-1] for r in rows]

    start = _chats(ollama_server)
    first, first_msgs = run("a")
    made = _chats(ollama_server) - start
    assert first.returncode == 0 and made >= 1, first.stderr
    second, second_msgs = run("b")
    assert second.returncode == 0 and _chats(ollama_server) - start == made, second.stderr  # nothing sent
    assert [m[1] for m in first_msgs if m[2] == "ollama"] == ["risk_manager"]
    assert second_msgs == first_msgs  # same raw replies and parsed answers; the model call's recorded latency


CANNED_NEWS = json.dumps({"sentiment": "NEUTRAL", "intensity": 0.1, "key_factors": ["estimates"]})


@pytest.mark.slow
def test_real_replay_cached_rerun_sends_nothing_and_writes_the_same_bytes(tmp_path: Path) -> None:
    # the news model is the loopback Ollama-API server's canned model (one fixed, grounded reply over real HTTP):
    # the packaged small models seldom give a reply that passes the grounding checks (README's model table), and
    # what is tested here is that the cache, not the model, answers the second run
    with start_ollama_compat({}, canned={"news:canned": CANNED_NEWS}) as server:
        _replay_twice(server, tmp_path)


def _replay_twice(ollama_server, tmp_path: Path) -> None:  # noqa: ANN001
    news = tmp_path / "news.csv"
    days = ["2012-06-04", "2012-06-05", "2012-06-06", "2012-06-07", "2012-06-08"]
    news.write_text("timestamp,ticker,headline\n" + "".join(
        f"{d}T13:00:00Z,GOOG,Google {'beats estimates' if i % 2 else 'misses estimates and cuts guidance'}\n"
        for i, d in enumerate(days)), encoding="utf-8")

    def run(name: str, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(ROOT / "04_signal_pipeline.py"), "--replay", "--tickers", "GOOG", "--start", days[0],
             "--end", days[-1], "--news-file", str(news), "--provider", "builtin", "--llm-model", "news:canned",
             "--set", "pipeline.llm_provider=ollama", "--set", f"pipeline.ollama_host={ollama_server.url}",
             "--set", "pipeline.max_retries=1", "--cache", "use",
             "--set", f"pipeline.call_cache={tmp_path / 'c.sqlite'}",
             "--set", "dataset.source=offline", "--set", f"replay.output_dir={tmp_path / name}",
             "--set", "replay.random_runs=2", "--set", "replay.bootstrap=100", "--set", "replay.fsync=false", "-q",
             *extra],
            cwd=tmp_path, capture_output=True, text=True, timeout=900, env={**os.environ, "HOME": str(tmp_path)})

    start = _chats(ollama_server)
    first = run("a")
    made = _chats(ollama_server) - start
    # days with the same headlines ask the same news question: the first run may already answer one from the cache
    assert first.returncode == 0 and 2 <= made <= len(days), first.stderr
    # a fresh output folder: no journal to resume from, every decision is made again; one at a time, a budget of
    # 3 calls stops a run once it has sent 2 (each decision may make 2), but cache hits spend none of it
    second = run("b", "--set", "pipeline.concurrency=1", "--set", "replay.max_calls=3")
    assert second.returncode == 0, second.stderr
    assert _chats(ollama_server) - start == made  # ... from the cache: not one model request
    for name in ("decisions.jsonl", "trades.csv", "equity.csv", "replay_report.md", "replay.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    decisions = [json.loads(line) for line in (tmp_path / "a" / "decisions.jsonl").read_text().splitlines()]
    assert len(decisions) == len(days)
    assert all(d["decision"]["meta"]["calls"]["sentiment"]["provider"] == "ollama" for d in decisions)
