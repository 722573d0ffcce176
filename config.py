"""alphasignal configuration: the user-facing face of :mod:`alphasignal.config`.

Every stage reads one frozen :class:`Config`, loaded as defaults -> an optional TOML file (``--config file.toml``)
-> ``--set section.key=value`` overrides, validated once after all overrides. ``python 0N_*.py --show-config``
prints the effective values as TOML. The sections, each a frozen dataclass in ``alphasignal/config.py``:

* ``[dataset]``   :class:`DatasetConfig`   market data and stage 01 (chart dataset)
* ``[training]``  :class:`TrainingConfig`  stage 02 (QLoRA fine-tune, chart CNN)
* ``[serve]``     :class:`ServeConfig`     stage 03 (local model serving)
* ``[pipeline]``  :class:`PipelineConfig`  stage 04 (chart + news -> decision; model servers)
* ``[replay]``    :class:`ReplayConfig`    stage 04 ``--replay`` (decisions traded day by day)
* ``[sweep]``     :class:`SweepConfig`     stage 05 (parameter sweep, walk-forward, DSR, PBO)
* ``[optimizer]`` :class:`OptimizerConfig` stage 06 (multi-LLM optimisation)
* ``[dashboard]`` :class:`DashboardConfig` stage 07 (Streamlit dashboard)

The generic loading machinery (types, TOML, suggestions for unknown keys) is ``alphasignal/configio.py``; see
``docs/configuration.md``.
"""

from alphasignal.config import (  # noqa: F401 - re-exported for users and notebooks
    Config,
    ConfigError,
    DashboardConfig,
    DatasetConfig,
    OptimizerConfig,
    PipelineConfig,
    ReplayConfig,
    ServeConfig,
    SweepConfig,
    TrainingConfig,
    load_config,
    to_toml,
)
