"""Checks that run before anything is written or started: a bad input fails here, in one line.

A spec that validates can still name things that are not there: an outcome file with a bad
row, a pairs file with unknown ids, a Hugging Face model that does not exist or is not in the
offline cache. Found inside a replica they cost a Ray start, files under the results root and
a page of worker traceback; found here they cost a second and leave the root as it was.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from cluster.errors import SpecError

if TYPE_CHECKING:
    from cluster.spec import RunSpec
    from elicit.config import ModelConfig
    from elicit.outcomes import OutcomeSet


def preflight(spec: RunSpec, *, models: bool = True) -> OutcomeSet:
    """Load every input the spec names and (``models``, on a local run) check every model
    can be found; returns the combined outcome set.

    Raises:
        ElicitError / SpecError: one line naming the file, field or model and what to do.
    """
    from elicit.design import load_pairs
    from elicit.outcomes import combine, load_outcomes
    from elicit.prompts import PromptTemplate

    outcomes = combine([load_outcomes(s) for s in spec.outcomes])
    PromptTemplate.from_config(spec.prompt, spec.mode.kind)
    if spec.design.kind == "pairs" and spec.design.pairs_file:
        load_pairs(spec.design.pairs_file, outcomes.index())
    # Models are looked for only when the replicas run on this machine (a private local Ray):
    # on a cluster the workers' folders, cache and tokens are not the driver's.
    local = not spec.execution.ray_address and not os.environ.get("RAY_ADDRESS", "").strip()
    for model in spec.models if models and local else ():
        check_model(model)
    return outcomes


def check_model(model: ModelConfig) -> None:
    """Refuse a model the hf/vllm engine could not load: unknown name, missing folder, or a
    Hugging Face id that the hub (or, offline, the local cache) does not have.

    Only the model's ``config.json`` is fetched (kilobytes); the weights are left to the
    replicas. Simulated and openai models need nothing here.
    """
    if model.scorer_kind not in ("hf", "vllm"):
        return
    from pathlib import Path

    from elicit.models import lookup

    name = model.path or model.name
    if model.path and Path(model.path).expanduser().is_dir():
        return
    entry = lookup(name)  # ModelNotFoundError: neither registry, folder nor owner/name
    if entry.source in ("packaged", "local"):
        return
    _check_hub(model.name, entry.hf_id)


def _check_hub(name: str, repo_id: str) -> None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    try:
        hf_hub_download(repo_id, "config.json")
    except GatedRepoError:
        raise SpecError(
            f"model {name!r}: {repo_id} is gated on the Hugging Face Hub; accept its licence "
            "on the hub and set HF_TOKEN"
        ) from None
    except RepositoryNotFoundError:
        raise SpecError(
            f"model {name!r}: no model {repo_id!r} on the Hugging Face Hub (check the id; a "
            "private model needs HF_TOKEN)"
        ) from None
    except LocalEntryNotFoundError:
        where = "HF_HUB_OFFLINE is set" if offline else "the Hugging Face Hub cannot be reached"
        raise SpecError(
            f"model {name!r}: {repo_id} is not in the local Hugging Face cache and {where}; "
            "download it first (huggingface-cli download ID) or give a local folder"
        ) from None
    except OSError as exc:  # e.g. an entry without config.json, a cache that cannot be read
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SpecError(f"model {name!r}: {repo_id} cannot be loaded: {first}") from None
