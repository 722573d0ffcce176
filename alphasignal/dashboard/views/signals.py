"""Dashboard page script (see alphasignal/dashboard/signals.py)."""

from alphasignal.dashboard import common, signals

common.guarded(signals.render)
