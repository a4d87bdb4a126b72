"""``valuescope preview``: the rendered prompts of a spec, both orders, without loading a model."""

from __future__ import annotations

import numpy as np

from cluster.spec import RunSpec
from elicit.design import full_graph, orient
from elicit.outcomes import combine, load_outcomes
from elicit.prompts import PromptTemplate


def preview(spec: RunSpec, n: int = 5) -> list[dict[str, str]]:
    """Rendered prompts of the first ``n`` pairs, both orientations, without loading a model.

    Chat models are shown as their chat messages (the tokenizer's template is applied by the
    engine); base-format prompts as the exact text.
    """
    outcomes = combine([load_outcomes(s) for s in spec.outcomes])
    template = PromptTemplate.from_config(spec.prompt, spec.mode.kind)
    i, j = full_graph(len(outcomes))
    rng = np.random.default_rng(0)
    pick = rng.choice(len(i), size=min(n, len(i)), replace=False)
    prompts = orient(i[pick], j[pick], len(outcomes), both_orders=spec.prompt.both_orders)
    order = np.lexsort((prompts.orientation, prompts.pair_id))
    shown = []
    for k in order:
        a, b = outcomes.outcomes[prompts.a_idx[k]], outcomes.outcomes[prompts.b_idx[k]]
        if template.format == "base":
            text = template.base_text(a.text, b.text)
        else:
            msgs = template.messages(a.text, b.text)
            text = "\n".join(f"[{m['role']}] {m['content']}" for m in msgs)
            if template.answer_prefix:
                text += f"\n[assistant] {template.answer_prefix}"
        shown.append(
            {
                "pair": f"{a.id} vs {b.id}",
                "orientation": str(prompts.orientation[k]),
                "prompt": text,
            }
        )
    return shown
