"""How the ladder's split by regime and knowledge cut-off reads (the numbers come from
``alphasignal.signals.ladder_sceptic``; docs/sceptic.md): Markdown sections and warning lines from its JSON-ready
dict (rows: rung -> metric -> value, lo, hi, ...)."""

from __future__ import annotations

TITLES = {"accuracy": "accuracy", "balanced_accuracy": "balanced acc.", "log_loss": "log-loss"}
SHOWN = tuple(TITLES)  # the split tables' columns (the JSON carries every metric)


def _cell(iv: dict) -> str:
    return f"{iv['value']:.3f} [{iv['lo']:.3f}, {iv['hi']:.3f}]"


def _table(groups: dict[str, dict]) -> list[str]:
    lines = ["| group | windows (share) | rung | " + " | ".join(TITLES[m] for m in SHOWN) + " |",
             "|---|---|---|" + "---|" * len(SHOWN)]
    for g, sc in groups.items():
        for rung, row in sc["rows"].items():
            cells = " | ".join(_cell(row[m]) for m in SHOWN)
            lines.append(f"| {g} | {sc['n']} ({100 * sc['share']:.1f} %) | {rung} | {cells} |")
    return lines


def ladder_markdown(sc: dict) -> str:
    """The split sections, for the end of the ladder's Markdown (empty without a split)."""
    if not sc:
        return ""
    w, up, down = sc["regime_settings"]
    lines = ["## By market regime", "",
             f"Each test window is classed by its ticker's buy & hold return over the {w} bars to its end: bull "
             f"above {100 * up:.1f} %, bear below {100 * down:.1f} %, sideways between (warm-up: fewer bars). "
             "95 % intervals: the ladder's blocked bootstrap within each group.", "", *_table(sc["regimes"]), ""]
    for s in sc["cutoffs"]:
        lines += [f"## Before / after the {s['rung']} rung's knowledge cut-off ({s['date']}, {s['source']})", "",
                  "'before': windows ending on or before it, which the model may have seen in training.", "",
                  *_table(s["groups"]), ""]
    return "\n".join(lines)


def warning_markdown(sc: dict) -> str:
    """The warnings as Markdown quotes, for the first lines of the ladder's Markdown (empty when none)."""
    return "".join(f"> **Warning:** {x}\n\n" for x in (sc or {}).get("warnings", []))


def warning_text(sc: dict) -> str:
    """The warnings, one a line (empty when none)."""
    return "".join(f"warning: {x}\n" for x in (sc or {}).get("warnings", []))
