"""Real inference: SmolLM2-135M (llama.cpp, in process) as Analyst and Strategist inside the optimizer loop.

The tiny model answers in the right shape with weak judgment and often out-of-range values. The test proves that
whatever it proposes is repaired or rejected by code, and that the stage 05 engine only ever receives configurations
that pass ``validate_params`` (the real engine is wrapped with a recorder, not replaced).
"""

from __future__ import annotations

import pytest

import alphasignal.backtest as bt
from alphasignal.agents.loop import Agents, optimize
from alphasignal.agents.schemas import AnalystReport, StrategistReply
from alphasignal.config import load_config
from alphasignal.errors import ModelError
from alphasignal.providers import BuiltinProvider, ProviderSettings, get_provider
from alphasignal.storage.history import History

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smol(smollm2_gguf):
    return get_provider("llamacpp", model=str(smollm2_gguf),
                        cfg=ProviderSettings(max_retries=2, max_tokens=1200, timeout=900))


def test_smollm2_agents_never_feed_unvalidated_configs_to_the_engine(smol, aapl, tmp_path, monkeypatch, valid_rate):
    seen: list[dict] = []
    real_backtest = bt.backtest

    def recording_backtest(data, strategy, params_list, **kw):  # the real engine, with every call recorded
        for p in params_list:
            assert bt.validate_params(strategy, p) == [], f"unvalidated config reached the engine: {p}"
            seen.append(dict(p))
        return real_backtest(data, strategy, params_list, **kw)

    monkeypatch.setattr(bt, "backtest", recording_backtest)
    cfg = load_config(None, ["optimizer.rounds=1", "optimizer.min_trades=3",
                             "sweep.grid={short_period=[5, 10, 20], long_period=[50, 100], use_ema=[false, true]}",
                             f"optimizer.history_db={tmp_path / 'h.sqlite'}"])
    agents = Agents({"analyst": smol, "strategist": smol, "risk_manager": BuiltinProvider()}, summary_chars=500)
    with History(cfg.optimizer.history_db) as h:
        try:
            run_id = optimize(aapl, cfg, h, agents=agents, progress=False)
        except ModelError as exc:  # a reply that stays invalid after the retries: a clear error, nothing half-run
            assert "raw replies saved to" in str(exc)
            run_id = h.runs()[0].run_id
            assert [r.round_no for r in h.rounds(run_id)] == [0]  # only round 0 was committed
            assert all(bt.validate_params("MA_Crossover", p) == [] for p in seen)
            valid_rate(False)  # an either/or path with a real model: its valid rate is recorded, not hidden
            return
        valid_rate(True)
        msgs = {m.agent: m for m in h.messages(run_id, 1)}
        assert msgs["analyst"].provider == "llamacpp" and msgs["strategist"].provider == "llamacpp"
        assert msgs["analyst"].raw and msgs["strategist"].raw
        AnalystReport.model_validate(msgs["analyst"].parsed)
        StrategistReply.model_validate(msgs["strategist"].parsed)
        props = [p for p in h.proposals(run_id, 1) if p.source == "agent"]
    assert len(props) >= 3
    for p in props:
        raw_ok = not bt.validate_params("MA_Crossover", p.raw_params) if isinstance(p.raw_params, dict) else False
        if not raw_ok:  # garbage or out of range as the model wrote it: never used as is
            assert p.status in {"repaired", "rejected"}, p
            assert p.notes or p.reason
        if p.status == "rejected":
            assert p.reason and p.metrics_is is None
        if p.metrics_is is not None:
            assert bt.validate_params("MA_Crossover", p.params) == [] and p.params in seen
