"""Stage 02: QLoRA fine-tune of the chart VLM (Qwen2.5-VL-3B-Instruct) on the stage 01 dataset.

Colab (T4 GPU), with or without the repo: upload this file and the dataset folder (training_data.jsonl + images/),
    !pip install unsloth
    !python 02_finetune_colab.py --dataset dataset/training_data.jsonl
then download models/gguf/ (GGUF + vision projector + Modelfile) and run `python 03_serve_ollama.py` locally
(or download models/merged_16bit/ and run `python 02_finetune_colab.py --export-only` in the repo).

In the repo, CPU (transformers + peft; pip install -r requirements-finetune.txt):
    python 02_finetune_colab.py --backend hf --set training.base_model=tiny-random --max-steps 5   # plumbing check
    python 02_finetune_colab.py --backend hf --set training.base_model=/path/to/Qwen2.5-VL-3B-Instruct

Writes under training.output_dir (default models/): lora_adapter/, merged_16bit/, gguf/ (NAME-q4_k_m.gguf,
mmproj-NAME-f16.gguf, Modelfile) and finetune_report.json. Without the repo only the unsloth backend exists and
the defaults below (_STANDALONE_DEFAULTS) stand in for config.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

try:
    from alphasignal.cli import finetune as stage
    from alphasignal.cli import run_stage
except ImportError:  # uploaded alone to Colab: the standalone path below is used
    stage = run_stage = None


# ---- standalone (Colab, no repo): a minimal copy of config defaults, answer check and Modelfile -------------
def _add_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--backend", choices=["unsloth", "hf"], help="training backend (default: training.backend)")
    parser.add_argument("--dataset", help="training_data.jsonl (default: training.dataset_path)")
    parser.add_argument("--max-steps", type=int, help="optimizer steps (overrides epochs)")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N train samples")
    parser.add_argument("--no-gguf", action="store_true", help="skip the GGUF + Modelfile export")
    parser.add_argument("--export-only", action="store_true",
                        help="no training: convert an existing models/merged_16bit/ to GGUF + Modelfile")
    return parser


_STANDALONE_DEFAULTS = {
    "base_model": "unsloth/Qwen2.5-VL-3B-Instruct", "load_in_4bit": True, "lora_r": 16, "lora_alpha": 16,
    "lora_dropout": 0.0, "target_modules": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                            "down_proj"),
    "learning_rate": 2e-4, "epochs": 1.0, "max_steps": 0, "batch_size": 2, "grad_accumulation": 4,
    "max_seq_length": 2048, "eval_samples": 20, "eval_max_new_tokens": 160, "seed": 3407,
    "dataset_path": "dataset/training_data.jsonl", "output_dir": "models", "gguf_quantization": "q4_k_m",
    "ollama_model_name": "alphasignal-vlm"}
_TEMPLATE = ('{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}\n{{- range $i, $_ := .Messages }}'
             '\n{{- $last := eq (len (slice $.Messages $i)) 1 }}\n{{- if eq .Role "user" }}<|im_start|>user\n'
             '{{ .Content }}<|im_end|>\n{{ else if eq .Role "assistant" }}<|im_start|>assistant\n{{ .Content }}'
             '{{ if not $last }}<|im_end|>\n{{ end }}\n{{- end }}\n{{- if and (ne .Role "assistant") $last }}'
             '<|im_start|>assistant\n{{ end }}\n{{- end }}')


def _signal_ok(text: str) -> tuple[bool, str | None]:
    """(is the answer a valid signal, its action): the core rules of alphasignal's TradingSignal."""
    try:
        obj = json.loads(text[text.find("{"):text.rfind("}") + 1])
        act, conf, e = obj["action"], float(obj["confidence"]), float(obj["entry_price"])
        s, t = obj.get("stop_loss"), obj.get("take_profit")
        ok = act in ("BUY", "SELL", "HOLD") and 0 <= conf <= 1 and e > 0
        if act != "HOLD":
            ok = ok and s is not None and t is not None and (s < e < t if act == "BUY" else t < e < s)
        return ok, act
    except (ValueError, KeyError, TypeError, AttributeError):
        return False, None


# The recipe, as the package's unsloth backend has it (tests compare these with unsloth_backend's functions).
def _model_kwargs(c: dict) -> dict:
    return {"load_in_4bit": c["load_in_4bit"], "use_gradient_checkpointing": "unsloth",
            "max_seq_length": c["max_seq_length"]}


def _peft_kwargs(c: dict) -> dict:
    return {"finetune_vision_layers": True, "finetune_language_layers": True, "finetune_attention_modules": True,
            "finetune_mlp_modules": True, "r": c["lora_r"], "lora_alpha": c["lora_alpha"],
            "lora_dropout": c["lora_dropout"], "bias": "none", "random_state": c["seed"],
            "target_modules": list(c["target_modules"])}


def _trainer_kwargs(c: dict, output_dir: str) -> dict:
    return {"per_device_train_batch_size": c["batch_size"], "gradient_accumulation_steps": c["grad_accumulation"],
            "num_train_epochs": c["epochs"], "max_steps": c["max_steps"] if c["max_steps"] > 0 else -1,
            "learning_rate": c["learning_rate"], "warmup_ratio": 0.05, "lr_scheduler_type": "linear",
            "optim": "adamw_8bit", "weight_decay": 0.01, "seed": c["seed"], "logging_steps": 1, "report_to": "none",
            "output_dir": output_dir, "remove_unused_columns": False, "dataset_text_field": "",
            "dataset_kwargs": {"skip_prepare_dataset": True}, "max_length": c["max_seq_length"]}


_COLLATOR_KWARGS = {"train_on_responses_only": True, "instruction_part": "<|im_start|>user\n",
                    "response_part": "<|im_start|>assistant\n"}
_PARAMETERS = ('PARAMETER temperature 0\nPARAMETER num_ctx 4096\nPARAMETER stop "<|im_end|>"\n'
               'PARAMETER stop "<|endoftext|>"\n')


def _modelfile(froms: list[str], system: str) -> str:
    """The Ollama Modelfile text (tests parse it and compare with the package's)."""
    return ("".join(f"FROM {f}\n" for f in froms) + f'TEMPLATE """{_TEMPLATE}"""\n' + f'SYSTEM """{system}"""\n'
            + _PARAMETERS)


def _imports() -> dict | None:
    """The GPU libraries, or None after printing why they cannot be used here."""
    try:
        import torch
        from PIL import Image
        from trl import SFTConfig, SFTTrainer
        from unsloth import FastVisionModel, is_bf16_supported
        from unsloth.trainer import UnslothVisionDataCollator
    except ImportError as exc:
        print(f"error: {exc.name} is not installed: run pip install unsloth (on a CUDA GPU runtime)", file=sys.stderr)
        return None
    if not torch.cuda.is_available():
        print("error: no CUDA GPU: Runtime > Change runtime type > T4 GPU", file=sys.stderr)
        return None
    return {"torch": torch, "Image": Image, "SFTConfig": SFTConfig, "SFTTrainer": SFTTrainer,
            "FastVisionModel": FastVisionModel, "bf16": is_bf16_supported(), "Collator": UnslothVisionDataCollator}


def _chat(lib: dict, folder: Path, row: dict, answer: bool = True) -> dict:
    """One JSONL line as the Unsloth collator wants it (PIL images; without the answer for generation)."""
    return {"messages": [{"role": m["role"], "content": [
        dict(p, image=lib["Image"].open(folder / p["image"]).convert("RGB")) if p["type"] == "image" else p
        for p in m["content"]]} for m in row["messages"] if answer or m["role"] != "assistant"]}


def _train(lib: dict, c: dict, train: list[dict]) -> tuple:
    fvm = lib["FastVisionModel"]
    model, proc = fvm.from_pretrained(c["base_model"], **_model_kwargs(c))
    model = fvm.get_peft_model(model, **_peft_kwargs(c))
    args = lib["SFTConfig"](**_trainer_kwargs(c, f"{c['output_dir']}/checkpoints"), fp16=not lib["bf16"],
                            bf16=lib["bf16"])
    trainer = lib["SFTTrainer"](model=model, tokenizer=proc, train_dataset=train, args=args,
                                data_collator=lib["Collator"](model, proc, **_COLLATOR_KWARGS))
    trainer.train()
    return model, proc


def _evaluate(lib: dict, c: dict, model, proc, folder: Path, val: list[dict]) -> tuple[float, float]:
    """(valid signal share, action accuracy) over the first ``eval_samples`` val lines."""
    lib["FastVisionModel"].for_inference(model)
    valid = hits = 0
    for row in val[:c["eval_samples"]]:
        msgs = _chat(lib, folder, row, answer=False)["messages"]
        image = next(p["image"] for m in msgs for p in m["content"] if p["type"] == "image")
        inputs = proc(image, proc.apply_chat_template(msgs, add_generation_prompt=True), add_special_tokens=False,
                      return_tensors="pt").to("cuda")
        out = model.generate(**inputs, max_new_tokens=c["eval_max_new_tokens"], do_sample=False)
        ok, act = _signal_ok(proc.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))
        valid, hits = valid + ok, hits + (act == json.loads(row["messages"][-1]["content"][0]["text"])["action"])
    n = max(1, min(len(val), c["eval_samples"]))
    return valid / n, hits / n


def _export(c: dict, model, proc, system: str) -> int:
    out_dir, quant = Path(c["output_dir"]), c["gguf_quantization"]
    model.save_pretrained(out_dir / "lora_adapter")
    proc.save_pretrained(out_dir / "lora_adapter")
    model.save_pretrained_merged(str(out_dir / "merged_16bit"), proc, save_method="merged_16bit")
    try:
        model.save_pretrained_gguf(str(out_dir / "gguf"), proc, quantization_method=quant)
    except Exception as exc:  # Unsloth's GGUF export of vision models depends on its llama.cpp build
        print(f"error: GGUF export failed ({exc}): download {out_dir / 'merged_16bit'} and run "
              "python 02_finetune_colab.py --export-only in the repo", file=sys.stderr)
        return 3
    ggufs = sorted((out_dir / "gguf").rglob("*.gguf"))
    froms = [f"./{p.relative_to(out_dir / 'gguf')}" for p in ggufs if quant in p.name.lower() or "mmproj" in p.name]
    (out_dir / "gguf" / "Modelfile").write_text(_modelfile(froms, system))
    return 0


def _standalone(argv: list[str] | None = None) -> int:
    args = _add_args(argparse.ArgumentParser(description=__doc__.splitlines()[0])).parse_args(argv)
    c = dict(_STANDALONE_DEFAULTS, max_steps=args.max_steps or _STANDALONE_DEFAULTS["max_steps"])
    path = Path(args.dataset or c["dataset_path"])
    if not path.is_file():
        print(f"error: dataset {path} not found: upload training_data.jsonl and images/, or pass --dataset PATH",
              file=sys.stderr)
        return 2
    lib = _imports()
    if lib is None:
        return 2
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    train = [_chat(lib, path.parent, r) for r in rows if r["split"] == "train"][:args.limit or None]
    val = [r for r in rows if r["split"] == "val"]
    t0 = time.time()
    print(f"[1/4] {len(train)} train / {len(val)} val samples")
    print(f"[2/4] loading {c['base_model']} in 4-bit and training (answer-only loss)")
    model, proc = _train(lib, c, train)
    print(f"    {time.time() - t0:.0f} s, peak GPU {lib['torch'].cuda.max_memory_reserved() / 2**30:.2f} GiB")
    print(f"[3/4] evaluating {min(len(val), c['eval_samples'])} val generations")
    valid, accuracy = _evaluate(lib, c, model, proc, path.parent, val)
    print(f"    valid signals {valid:.0%}, action accuracy {accuracy:.0%}")
    print("[4/4] exporting adapter, merged 16-bit, GGUF + projector, Modelfile")
    system = next(p["text"] for p in rows[0]["messages"][0]["content"] if p["type"] == "text")
    if _export(c, model, proc, system):
        return 3
    print(f"done in {time.time() - t0:.0f} s: download {Path(c['output_dir']) / 'gguf'} and run "
          "python 03_serve_ollama.py")
    return 0


if __name__ == "__main__":
    sys.exit(_standalone() if stage is None else run_stage(stage, __doc__))
