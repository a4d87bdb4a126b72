"""The replica actor: one model engine that scores shards and writes their part files.

A replica is built once with everything a shard needs except the shard itself (model config,
prompt template, outcome ids and texts, where to write), so a shard travels as four small
integer arrays. It writes each part file itself through ``storage`` (data never funnels through
the driver) and returns counters. Writing is idempotent: a shard whose part file already exists
is skipped, so a shard re-queued after its replica died cannot produce duplicate rows.

Testing hook: ``VALUESCOPE_FAULTS`` (JSON, forwarded to replicas by the driver) injects real
faults: ``die_on_shard`` (list) exits the replica process after scoring those shards and before
writing them, once each (marker files in ``marker_dir`` remember it); ``die_always`` exits on
every shard; ``trace_dir`` gets an empty file named after each shard scoring that starts (so a
test can count work thrown away by faults); ``fail_init`` makes the engine fail to start;
``sleep_s`` slows each shard down; ``error_rate`` turns that share of rows into error rows;
``chatter`` (a count) writes that many engine-like lines to standard output and error at
start-up and on each shard.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from elicit.config import ModeConfig, ModelConfig
from elicit.prompts import PromptTemplate
from elicit.records import RowContext, comparison_rows
from elicit.scorers import Measurements, QueryBatch, make_scorer
from storage import Root, RunLayout
from storage.integrity import verify_part
from storage.writer import write_table


@dataclass(frozen=True)
class ReplicaSetup:
    """Everything a replica needs to score and store shards of one model."""

    root: str
    run_id: str
    model: dict[str, Any]  # ModelConfig as JSON-able data
    mode: dict[str, Any]
    template: PromptTemplate
    outcome_ids: list[str]
    outcome_texts: list[str]
    log_path: str | None = None
    """Engine output goes to this file (``cluster.execution.engine_logs``); None keeps it on
    the worker's own streams (Ray relays them to the driver)."""


class Replica:
    """Scores shards with one engine (wrapped with ``ray.remote`` by the driver)."""

    def __init__(self, setup: ReplicaSetup) -> None:
        if setup.log_path:  # before the engine loads; Ray writes a failed start's traceback here
            from cluster.execution.engine_logs import redirect_output

            redirect_output(setup.log_path)
        self.setup = setup
        self.model = ModelConfig.model_validate(setup.model)
        self.mode = ModeConfig.model_validate(setup.mode)
        self.faults = json.loads(os.environ.get("VALUESCOPE_FAULTS", "{}") or "{}")
        self._chatter("loading")
        if self.faults.get("fail_init"):
            raise RuntimeError("injected fault: the engine failed to start")
        self.layout = RunLayout(Root(setup.root), setup.run_id)
        self.ids = pa.array(setup.outcome_ids, type=pa.string())
        self.scorer = make_scorer(
            self.model, self.mode, setup.template, setup.outcome_texts, setup.outcome_ids
        )

    def ready(self) -> dict[str, Any]:
        """Called once the engine is loaded; reports where the replica runs."""
        return {"pid": os.getpid(), "simulated": self.scorer.simulated}

    def run_shard(
        self,
        round_: int,
        shard: int,
        pair_id: np.ndarray,
        a_idx: np.ndarray,
        b_idx: np.ndarray,
        orientation: np.ndarray,
    ) -> dict[str, Any]:
        """Score one shard and write its part file; returns counters."""
        path = self.layout.part(self.model.name, round_, shard)
        if self.layout.root.exists(path) and verify_part(self.layout.root, path) is None:
            return {
                "shard": shard,
                "rows": len(pair_id),
                "errors": 0,
                "skipped": True,
                "seconds": 0.0,
            }
        start = time.perf_counter()
        if self.faults.get("trace_dir"):  # testing hook: one file per scoring started
            name = f"r{round_}-s{shard}-p{os.getpid()}-{time.time_ns()}"
            open(os.path.join(self.faults["trace_dir"], name), "w").close()
        batch = QueryBatch(pair_id, a_idx, b_idx)
        measurements = self.scorer.score(batch)
        if self.faults:
            self._inject(shard, measurements)
        ctx = RowContext(
            self.setup.run_id,
            self.model.name,
            round_,
            shard,
            self.setup.template.template_id,
            self.mode.kind,
        )
        table = comparison_rows(ctx, batch, orientation, measurements, self.ids)
        self._maybe_die(shard)
        write_table(self.layout.root, path, "comparisons", table)
        errors = sum(e is not None for e in measurements.error)
        return {
            "shard": shard,
            "rows": table.num_rows,
            "errors": errors,
            "skipped": False,
            "seconds": time.perf_counter() - start,
        }

    def _chatter(self, what: str) -> None:
        """Fault ``chatter``: write engine-like output (a progress bar, a warning) to both
        streams at the file-descriptor level, as native engine code does."""
        for k in range(int(self.faults.get("chatter", 0))):
            os.write(1, f"\rchatter {what} {k}: 100%|##########| stdout\n".encode())
            os.write(2, f"chatter {what} {k}: UserWarning: stderr\n".encode())

    def _inject(self, shard: int, measurements: Measurements) -> None:
        self._chatter(f"shard {shard}")
        time.sleep(float(self.faults.get("sleep_s", 0)))
        rate = float(self.faults.get("error_rate", 0))
        if rate:
            hit = np.random.default_rng(shard).random(len(measurements)) < rate
            measurements.error = [
                "injected fault" if h else e for h, e in zip(hit, measurements.error, strict=True)
            ]
            measurements.p_a[hit] = np.nan
            measurements.p_b[hit] = np.nan

    def _maybe_die(self, shard: int) -> None:
        if self.faults.get("die_always"):
            os._exit(1)
        if shard not in self.faults.get("die_on_shard", []):
            return
        marker = os.path.join(self.faults["marker_dir"], f"died-{shard}")
        if not os.path.exists(marker):
            with open(marker, "w") as f:
                f.write(str(os.getpid()))
            os._exit(1)

    def close(self) -> None:
        self.scorer.close()
