"""Exceptions with the exit code the CLI maps them to: 2 bad input or usage, 3 model, server or GPU, 4 data source."""

from __future__ import annotations


class AlphaSignalError(Exception):
    """Base class: a one-line message that names the problem and the fix."""

    exit_code = 1


class UsageError(AlphaSignalError):
    """Bad input or usage (exit 2)."""

    exit_code = 2


class ModelError(AlphaSignalError):
    """Model server or model reply failure (exit 3)."""

    exit_code = 3


class DeviceError(ModelError):
    """A GPU was asked for and is unusable: no CUDA device, or its libraries missing or broken (exit 3)."""


class DataError(AlphaSignalError):
    """Market data source failure (exit 4)."""

    exit_code = 4


class Interrupted(AlphaSignalError):
    """Ctrl-C after work that was kept: the message says what was kept and how to continue (exit 130)."""

    exit_code = 130


__all__ = ["AlphaSignalError", "DataError", "DeviceError", "Interrupted", "ModelError", "UsageError"]
