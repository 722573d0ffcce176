"""Dashboard page script (see alphasignal/dashboard/sweeps.py)."""

from alphasignal.dashboard import common, sweeps

common.guarded(sweeps.render)
