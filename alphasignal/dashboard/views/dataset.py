"""Dashboard page script (see alphasignal/dashboard/dataset.py)."""

from alphasignal.dashboard import common, dataset

common.guarded(dataset.render)
