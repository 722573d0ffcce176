"""Stage 02: QLoRA fine-tuning of the chart VLM (Qwen2.5-VL) on the stage 01 dataset, and its exports.

Backends: ``unsloth`` (CUDA, Colab) and ``hf`` (transformers + peft, CPU or CUDA). Heavy imports (torch,
transformers, unsloth) happen inside functions, so importing this package is cheap.
"""

from .export import ExportPlan, Modelfile, build_modelfile
from .run import export_only, finetune

__all__ = ["ExportPlan", "Modelfile", "build_modelfile", "export_only", "finetune"]
