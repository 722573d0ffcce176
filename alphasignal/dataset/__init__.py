"""Stage 01: chart windows, labels, time-ordered splits with an embargo, JSONL + images, resumable."""

from .build import JSONL_NAME, build_dataset

__all__ = ["JSONL_NAME", "build_dataset"]
