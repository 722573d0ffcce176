"""dataset_card.md: what is in the dataset, how it was split and labelled, and the config hash."""

from __future__ import annotations


def dataset_card(summary: dict, ds) -> str:
    """Markdown card from ``build.summarise`` output and the DatasetConfig."""
    rows = []
    for split, s in summary["splits"].items():
        lab = s["labels"]
        rng = f"{s['first_window_end']} .. {s['last_window_end']}" if s["samples"] else "-"
        rows.append(f"| {split} | {s['samples']} | {lab['BUY']} | {lab['SELL']} | {lab['HOLD']} | {rng} |")
    mode = ("volatility-scaled: z = forward return / (sigma * sqrt(horizon))" if ds.label_mode == "volatility"
            else "absolute forward return")
    rebase = ("Charts show no dates, ticker or price axis, and every price in the text (prompt last close, label "
              "levels, price indicators) is rebased so the last close is 100; `price_scale` on each line converts "
              "back (rebased = real * price_scale)." if ds.hide_context
              else "Charts show dates, prices and the ticker; prices are real (price_scale = 1).")
    return f"""# alphasignal chart dataset

- samples: {summary['samples']}; config hash `{summary['config_hash']}` (settings + data; same hash -> byte-identical
  `training_data.jsonl`)
- tickers: {', '.join(ds.tickers)}; source {ds.source}; range {ds.start} .. {ds.end}; interval {ds.interval}
- window {ds.window} bars, stride {ds.stride}, horizon {ds.horizon}; image {ds.image_size}x{ds.image_size},
  style {ds.style}, volume {ds.volume_panel}, moving averages {list(ds.moving_averages)}, Bollinger {ds.bollinger}

## Splits (time-ordered by window end; embargo {summary['embargo']} bars)

| split | samples | BUY | SELL | HOLD | window ends |
|---|---|---|---|---|---|
{chr(10).join(rows)}

Windows of an earlier split whose label bars come within {summary['embargo']} bars of the next split's period are
dropped, so no label bar of one split lies in, or next to, another split's label bars.

## Labels

Action from the forward return over {ds.horizon} bars after the window ({mode}): BUY at >= {ds.buy_threshold},
SELL at <= {ds.sell_threshold}, else HOLD. Entry = last close; stop / take-profit = {ds.stop_atr} / {ds.take_profit_atr}
x ATR({ds.atr_period}) from entry (capped at 45% of entry); confidence from |z| (BUY/SELL |z|/(1+|z|), HOLD
1/(1+|z|), clipped to [0.05, 0.95]). The rationale names only indicators up to the window end.

{rebase}

## Format

One JSON object per line: `id`, `messages` (system / user with `images/<id>.png` + text / assistant with the
TradingSignal JSON), `split`, `ticker`, `window_start`, `window_end`, `label_end`, `horizon`, `forward_return`,
`price_scale`, `indicators`, `label`, `prompt_version`. Image paths are relative to this folder.
"""
