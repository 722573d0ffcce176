"""Stage 02: data pipeline on real stage 01 samples, LoRA/QLoRA on a tiny real-architecture Qwen2.5-VL, exports."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, has_module

from alphasignal.config import TrainingConfig
from alphasignal.errors import UsageError
from alphasignal.finetune.data import IGNORE_INDEX, load_samples, parse_answer, score_generations
from alphasignal.finetune.export import OLLAMA_TEMPLATE, ExportPlan, Modelfile, build_modelfile
from alphasignal.prompts import load_prompt
from alphasignal.signals.schemas import TradingSignal

needs_torch = pytest.mark.skipif(not (has_module("torch") and has_module("peft")),
                                 reason="needs the fine-tuning extra: pip install -r requirements-finetune.txt")


@pytest.fixture(scope="module")
def jsonl(small_dataset) -> Path:
    ds, _summary = small_dataset
    return Path(ds.output_dir) / "training_data.jsonl"


def _script_module():
    spec = importlib.util.spec_from_file_location("finetune_script", ROOT / "02_finetune_colab.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ---- data ------------------------------------------------------------------------------------------------
def test_load_samples_reads_splits_images_and_valid_answers(jsonl):
    train, val = load_samples(jsonl, "train"), load_samples(jsonl, "val")
    assert train and val and {s.split for s in train} == {"train"}
    assert all(s.image.is_file() for s in train[:5])
    assert TradingSignal.model_validate_json(train[0].answer).action == train[0].reference_action
    assert train[0].system_prompt == load_prompt("chart_signal").system
    assert len(load_samples(jsonl, "train", limit=3)) == 3


def test_load_samples_bad_input_names_the_fix(tmp_path, jsonl):
    with pytest.raises(UsageError, match="01_generate_dataset"):
        load_samples(tmp_path / "missing.jsonl")
    line = json.loads(jsonl.read_text().splitlines()[0])
    (tmp_path / "d.jsonl").write_text(json.dumps(line) + "\n")  # images/ not copied along
    with pytest.raises(UsageError, match=r"d.jsonl:1: image .* not found"):
        load_samples(tmp_path / "d.jsonl")


def test_parse_and_score_generations(jsonl):
    samples = load_samples(jsonl, "val", limit=3)
    gens = [samples[0].answer, "```json\n" + samples[1].answer + "\n```", "no json here"]
    scores = score_generations(samples, gens)
    assert scores == {"n": 3, "json_valid": 2 / 3, "schema_valid": 2 / 3, "action_accuracy": 2 / 3}
    obj, signal = parse_answer('{"action": "BUY", "confidence": 0.5, "entry_price": 10}')
    assert obj["action"] == "BUY" and signal is None  # BUY without levels is not a valid signal


@pytest.mark.slow  # an integration test (subprocess or a real model/replay): ~3-13 s
@needs_torch
def test_encoder_places_image_tokens_and_masks_everything_but_the_answer(jsonl, tiny_qwen_vl):
    from transformers import AutoTokenizer

    from alphasignal.finetune.data import ChatEncoder, image_processor_class

    tok = AutoTokenizer.from_pretrained(tiny_qwen_vl)
    enc = ChatEncoder(tok, image_processor_class().from_pretrained(tiny_qwen_vl))
    sample = load_samples(jsonl, "train", limit=1)[0]
    f = enc.encode(sample)
    ids, labels = f["input_ids"].tolist(), f["labels"].tolist()
    n_image = int(f["image_grid_thw"][0].prod()) // 4
    assert ids.count(tok.convert_tokens_to_ids("<|image_pad|>")) == n_image > 0
    assert f["pixel_values"].shape[0] == int(f["image_grid_thw"][0].prod())
    start = ids.index(tok.convert_tokens_to_ids("<|vision_start|>"))
    assert ids[start + n_image + 1] == tok.convert_tokens_to_ids("<|vision_end|>")
    learned = [t for t, lab in zip(ids, labels, strict=True) if lab != IGNORE_INDEX]
    assert tok.decode(learned) == sample.answer + "<|im_end|>"
    assert labels[:len(ids) - len(learned)] == [IGNORE_INDEX] * (len(ids) - len(learned))
    # prompt + answer is exactly what the model's own chat template renders for the full conversation
    full = tok.apply_chat_template(sample.messages, tokenize=False)
    assert tok.decode(ids) == full.replace("<|image_pad|>", "<|image_pad|>" * n_image).rstrip("\n")


@needs_torch
def test_collate_left_pads_and_answer_loss_equals_the_models_own_loss(jsonl, tiny_qwen_vl):
    import torch
    from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration

    from alphasignal.finetune.data import ChatEncoder, answer_loss, image_processor_class

    tok = AutoTokenizer.from_pretrained(tiny_qwen_vl)
    enc = ChatEncoder(tok, image_processor_class().from_pretrained(tiny_qwen_vl))
    samples = load_samples(jsonl, "train", limit=6)
    feats = [enc.encode(s) for s in samples[:2]]
    feats.append(enc.encode(dataclasses.replace(samples[2], answer='{"action":"HOLD"}')))  # a shorter one
    batch = enc.collate(feats)
    width = max(len(f["input_ids"]) for f in feats)
    assert batch["input_ids"].shape == (3, width)
    short = len(feats[2]["input_ids"])
    assert batch["attention_mask"][2, :width - short].sum() == 0 and batch["attention_mask"][2, -short:].all()
    assert (batch["labels"][:, -1] != IGNORE_INDEX).all()  # every answer ends at the last position
    assert batch["pixel_values"].shape[0] == sum(f["pixel_values"].shape[0] for f in feats)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_qwen_vl)
    with torch.no_grad():
        ours = answer_loss(model, batch)
        reference = model(**batch).loss
    assert abs(ours.item() - reference.item()) < 1e-4


@needs_torch
@pytest.mark.slow  # ~10 s CPU each
@pytest.mark.parametrize("quantized", [False, True], ids=["lora", "qlora-nf4"])
def test_lora_steps_lower_the_loss_then_save_reload_generate(jsonl, tiny_qwen_vl, tmp_path, quantized):
    if quantized and not has_module("bitsandbytes"):
        pytest.skip("bitsandbytes not installed")
    from alphasignal.finetune import hf

    cfg = TrainingConfig(backend="hf", load_in_4bit=quantized, lora_r=8, lora_alpha=16, learning_rate=2e-2,
                         batch_size=2, grad_accumulation=1, max_steps=6, seed=1)
    model, enc, four_bit = hf.load_base(tiny_qwen_vl, cfg)
    assert four_bit is quantized
    model = hf.add_lora(model, cfg, four_bit)
    batch = load_samples(jsonl, "train", limit=2)  # two samples = one repeated batch
    losses = hf.train(model, enc, batch, cfg)
    assert len(losses) == 6 and losses[-1] < losses[0] - 1.0, losses
    trained = hf.eval_loss(model, enc, batch)
    hf.save_adapter(model, tiny_qwen_vl, tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    assert (tmp_path / "adapter" / "tokenizer.json").is_file()
    reloaded, enc2 = hf.load_with_adapter(tiny_qwen_vl, tmp_path / "adapter", cfg)
    assert abs(hf.eval_loss(reloaded, enc2, batch) - trained) < (0.2 if quantized else 1e-3)
    text = hf.generate(reloaded, enc2, batch[0], max_new_tokens=6)
    assert isinstance(text, str) and len(enc2.tokenizer(text)["input_ids"]) >= 1


@needs_torch
def test_unsloth_backend_without_gpu_says_what_to_do():
    import torch

    from alphasignal.finetune.unsloth_backend import check_available

    cuda = torch.cuda.is_available()
    if cuda and has_module("unsloth"):
        pytest.skip("CUDA and Unsloth are both here: the backend is available, nothing to refuse")
    needle = "unsloth is not installed" if cuda else "needs a CUDA GPU"
    with pytest.raises(UsageError, match=f"{needle}.*--backend hf"):
        check_available()


# ---- exports ---------------------------------------------------------------------------------------------
def test_export_plan_paths_follow_the_config():
    plan = ExportPlan.from_config(TrainingConfig(output_dir="out", ollama_model_name="m", gguf_quantization="Q5_K_M"))
    assert plan.gguf == Path("out/gguf/m-q5_k_m.gguf") and plan.mmproj == Path("out/gguf/mmproj-m-f16.gguf")
    assert plan.modelfile.parent == plan.gguf.parent == plan.mmproj.parent  # Modelfile uses relative FROMs
    assert plan.adapter == Path("out/lora_adapter") and plan.merged == Path("out/merged_16bit")
    assert set(plan.files()) == {"adapter", "merged", "gguf", "mmproj", "modelfile", "report"}


def test_modelfile_embeds_the_stage04_prompt_and_round_trips():
    prompt = load_prompt("chart_signal")
    plan = ExportPlan.from_config(TrainingConfig())
    mf = build_modelfile(plan, prompt.system, prompt.id)
    text = mf.render()
    assert "FROM ./alphasignal-vlm-q4_k_m.gguf\nFROM ./mmproj-alphasignal-vlm-f16.gguf\n" in text
    assert f'SYSTEM """{prompt.system}"""' in text and prompt.id in text
    assert 'PARAMETER stop "<|im_end|>"' in text and "PARAMETER temperature 0" in text
    back = Modelfile.parse(text)
    assert back.froms == mf.froms and back.system == prompt.system and back.template == OLLAMA_TEMPLATE
    req = back.create_request("alphasignal-vlm", {"alphasignal-vlm-q4_k_m.gguf": "sha256:a",
                                                  "mmproj-alphasignal-vlm-f16.gguf": "sha256:b"})
    assert req["files"] == {"alphasignal-vlm-q4_k_m.gguf": "sha256:a", "mmproj-alphasignal-vlm-f16.gguf": "sha256:b"}
    assert req["parameters"] == {"temperature": 0, "num_ctx": 4096, "stop": ["<|im_end|>", "<|endoftext|>"]}
    with pytest.raises(UsageError, match="FROM"):
        Modelfile.parse('SYSTEM """x"""')


def test_standalone_colab_fallback_matches_the_package():
    mod = _script_module()
    defaults = dataclasses.asdict(TrainingConfig())
    assert {k: defaults[k] for k in mod._STANDALONE_DEFAULTS} == mod._STANDALONE_DEFAULTS
    assert mod._TEMPLATE == OLLAMA_TEMPLATE
    cases = ['{"action":"BUY","confidence":0.6,"entry_price":10,"stop_loss":9,"take_profit":12}',
             '{"action":"BUY","confidence":0.6,"entry_price":10,"stop_loss":11,"take_profit":12}',
             '{"action":"SELL","confidence":0.6,"entry_price":10,"stop_loss":11,"take_profit":9}',
             '{"action":"HOLD","confidence":1.5,"entry_price":10}', '{"action":"HOLD","confidence":0.5,'
             '"entry_price":10}', "nonsense"]
    for text in cases:
        assert mod._signal_ok(text)[0] is (parse_answer(text)[1] is not None), text


def test_standalone_colab_recipe_and_modelfile_are_the_packages():
    """The Colab copy trains with the unsloth backend's exact arguments and writes the package's Modelfile, for
    the default config and for changed values (so a new argument on either side fails here)."""
    from alphasignal.finetune import unsloth_backend as ub
    from alphasignal.finetune.export import ExportPlan, Modelfile, build_modelfile

    mod = _script_module()
    changed = dict(mod._STANDALONE_DEFAULTS, lora_r=8, max_steps=7, seed=1, max_seq_length=1024, lora_dropout=0.1)
    for c in (mod._STANDALONE_DEFAULTS, changed):
        cfg = dataclasses.replace(TrainingConfig(), **c)
        assert mod._model_kwargs(c) == ub.model_kwargs(cfg)
        assert mod._peft_kwargs(c) == ub.peft_kwargs(cfg)
        assert mod._trainer_kwargs(c, "out/checkpoints") == ub.trainer_kwargs(cfg, "out/checkpoints")
    assert mod._COLLATOR_KWARGS == ub.COLLATOR_KWARGS
    plan = ExportPlan.from_config(TrainingConfig())
    package = build_modelfile(plan, "You are an analyst.", "chart_signal@1")
    alone = Modelfile.parse(mod._modelfile(list(package.froms), "You are an analyst."))
    assert (alone.froms, alone.system, alone.template, alone.parameters) == (
        package.froms, package.system, package.template, package.parameters)


def test_script_bad_input_exits_2_with_one_line(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "02_finetune_colab.py"), "--backend", "hf", "--dataset",
                           str(tmp_path / "none.jsonl")], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: dataset") and "01_generate_dataset.py" in last


# ---- GGUF (slow: fetches llama.cpp's converter once, converts, loads in llama.cpp) -------------------------
@pytest.mark.slow
def test_tiny_gguf_with_projector_answers_an_image_prompt(tiny_qwen_vl_gguf, jsonl):
    import base64

    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import Qwen25VLChatHandler

    model_path, mmproj = tiny_qwen_vl_gguf
    llm = Llama(str(model_path), chat_handler=Qwen25VLChatHandler(clip_model_path=str(mmproj), verbose=False),
                n_ctx=2048, verbose=False)
    sample = load_samples(jsonl, "val", limit=1)[0]
    url = "data:image/png;base64," + base64.b64encode(sample.image.read_bytes()).decode()
    schema = {"type": "object", "properties": {"action": {"enum": ["BUY", "SELL", "HOLD"]}}, "required": ["action"]}
    out = llm.create_chat_completion(
        messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                               {"type": "text", "text": "signal?"}]}],
        response_format={"type": "json_object", "schema": schema}, max_tokens=16)
    assert json.loads(out["choices"][0]["message"]["content"])["action"] in {"BUY", "SELL", "HOLD"}


@pytest.mark.slow
def test_script_end_to_end_on_cpu_writes_every_artifact(jsonl, tmp_path):
    if not (has_module("torch") and has_module("llama_cpp") and has_module("sentencepiece")):
        pytest.skip("needs requirements-finetune.txt and llama-cpp-python")
    cmd = [sys.executable, str(ROOT / "02_finetune_colab.py"), "--backend", "hf", "--dataset", str(jsonl), "-q",
           "--max-steps", "2", "--limit", "4", "--set", "training.base_model=tiny-random",
           "--set", f"training.output_dir={tmp_path}", "--set", "training.eval_samples=1",
           "--set", "training.eval_max_new_tokens=8",
           "--set", "training.batch_size=2", "--set", "training.grad_accumulation=1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "finetune_report.json").read_text())
    assert report["n_train"] == 4 and len(report["train_losses"]) == 2 and report["eval"]["n"] == 1
    plan = ExportPlan.from_config(TrainingConfig(output_dir=str(tmp_path)))
    for path in (plan.adapter / "adapter_config.json", plan.merged / "config.json", plan.gguf, plan.mmproj):
        assert path.is_file(), path
    text = plan.modelfile.read_text()
    mf = Modelfile.parse(text)
    assert [(plan.gguf_dir / f).resolve() for f in mf.froms] == [plan.gguf.resolve(), plan.mmproj.resolve()]
    assert mf.system == load_prompt("chart_signal").system
    assert text.splitlines()[0].endswith(f"prompt {load_prompt('chart_signal').id}")
    # --export-only re-exports the merged model (what a Colab user does after downloading merged_16bit/)
    plan.gguf.unlink()
    proc = subprocess.run([*cmd[:2], "--export-only", "-q", "--set", f"training.output_dir={tmp_path}"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0 and plan.gguf.is_file(), proc.stderr[-2000:]


def test_training_config_rejects_bad_values_with_the_fix():
    from alphasignal.config import ConfigError, load_config

    for override, needle in (("training.gguf_quantization=q9", "use one of"),
                             ("training.max_seq_length=64", ">= 256"),
                             ("training.ollama_model_name=a b", "without spaces")):
        with pytest.raises(ConfigError, match=needle):
            load_config(overrides=[override])


def test_script_uploaded_alone_runs_its_standalone_path(tmp_path, jsonl):
    """Copied alone into an empty folder (as on Colab), the script must not need the repo."""
    import shutil

    script = shutil.copy(ROOT / "02_finetune_colab.py", tmp_path / "02_finetune_colab.py")
    run_alone = [sys.executable, "-I", script]  # -I: no PYTHONPATH, no cwd on the path
    proc = subprocess.run([*run_alone, "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0 and "--dataset" in proc.stdout and "--set" not in proc.stdout  # not the repo CLI
    proc = subprocess.run([*run_alone, "--dataset", "nope.jsonl"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("error: dataset nope.jsonl not found")
    if not has_module("unsloth"):
        proc = subprocess.run([*run_alone, "--dataset", str(jsonl)], capture_output=True, text=True, cwd=tmp_path)
        assert proc.returncode == 2 and "pip install unsloth" in proc.stderr and "Traceback" not in proc.stderr


def test_gguf_export_bad_input_is_a_one_line_error(tmp_path):
    from alphasignal.errors import ModelError
    from alphasignal.finetune.gguf import convert_to_gguf, quantize

    with pytest.raises(UsageError, match="no config.json"):
        convert_to_gguf(tmp_path, tmp_path / "out", "m")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(UsageError, match="unknown GGUF quantization 'q9'"):
        convert_to_gguf(tmp_path, tmp_path / "out", "m", quant="q9")
    if has_module("llama_cpp"):
        with pytest.raises(UsageError, match=r"cannot quantize .*missing.gguf: no such file"):
            quantize(tmp_path / "missing.gguf", tmp_path / "x.gguf", "q4_k_m")
        (tmp_path / "notes.gguf").write_text("not a model")
        with pytest.raises(UsageError, match=r"notes.gguf: not a GGUF file"):
            quantize(tmp_path / "notes.gguf", tmp_path / "x.gguf", "q4_k_m")
        (tmp_path / "cut.gguf").write_bytes(b"GGUF" + bytes(60))  # the magic, then a truncated header
        with pytest.raises(ModelError, match=r"llama.cpp could not quantize cut.gguf to q4_k_m \(code "):
            quantize(tmp_path / "cut.gguf", tmp_path / "x.gguf", "q4_k_m")
        assert not list(tmp_path.glob("x.gguf*"))  # no half-written output


def test_export_only_refuses_missing_model_and_prompt_mismatch(tmp_path):
    from alphasignal.finetune import export_only
    from alphasignal.finetune.run import prompt_id

    cfg = TrainingConfig(output_dir=str(tmp_path))
    with pytest.raises(UsageError, match="no merged model"):
        export_only(cfg, quiet=True)
    plan = ExportPlan.from_config(cfg)
    plan.merged.mkdir(parents=True)
    (plan.merged / "config.json").write_text("{}")
    plan.report.write_text(json.dumps({"prompt_version": "chart_signal@0"}))
    with pytest.raises(UsageError, match="trained with prompt chart_signal@0 but the repo has chart_signal@"):
        export_only(cfg, quiet=True)
    assert prompt_id("chart_signal@1") == prompt_id("1") == "chart_signal@1"


def test_backends_share_one_protocol_and_never_import_the_driver():
    import ast
    import inspect
    from pathlib import Path

    from alphasignal.finetune.backend import BACKENDS, FinetuneBackend, get_backend

    expected = list(inspect.signature(FinetuneBackend.run).parameters)[1:]
    for name in BACKENDS:
        assert list(inspect.signature(get_backend(name).run).parameters) == expected, name
    folder = Path(__file__).resolve().parents[1] / "alphasignal" / "finetune"
    for path in folder.glob("*.py"):
        if path.name == "__init__.py":
            continue
        imports = [n.module for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.ImportFrom)]
        assert "run" not in imports, f"{path.name} imports the driver (finetune/run.py)"
