"""Dashboard page script (see alphasignal/dashboard/runs.py)."""

from alphasignal.dashboard import common, runs

common.guarded(runs.render)
