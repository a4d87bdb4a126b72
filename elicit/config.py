"""Configuration objects of the elicitation stage, as they appear in a spec file.

These are pydantic models (``extra="forbid"``) with a docstring per field; the run spec in
``cluster.spec`` composes them. Cross-field rules live in validators so that a bad spec fails
before any model is loaded.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ScorerKind = Literal["simulated", "hf", "vllm", "openai"]
ModeKind = Literal["logprob", "sample", "reasoning"]
UnparseablePolicy = Literal["skip", "random", "distribution"]
PromptFormat = Literal["auto", "chat", "base"]

FAST_SIMULATED = "simulated-fast"
"""Model name of the index-reading simulated agent (throughput benchmarks only)."""
SIMULATED_NAMES = ("simulated", FAST_SIMULATED)


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)


class ModeConfig(_Config):
    """How an answer is read from the model."""

    kind: ModeKind = "logprob"
    """`logprob`: one forward pass, probability of the two letters (fast path). `sample`: K
    completions parsed for a letter (the paper's protocol). `reasoning`: the model may think
    first and must end with "Answer: A" or "Answer: B"."""

    k: int = Field(10, ge=1, le=1000)
    """Completions per prompt in `sample` and `reasoning` modes."""

    temperature: float = Field(1.0, ge=0.0, le=5.0)
    """Sampling temperature in `sample` and `reasoning` modes."""

    max_tokens: int = Field(10, ge=1, le=32768)
    """Longest completion in `sample` (default 10) and `reasoning` modes (raise it for reasoning)."""

    unparseable: UnparseablePolicy = "skip"
    """What an unparseable completion counts as when P(A) is computed: `skip` (left out),
    `random` (a fair coin) or `distribution` (half to each side, the paper's choice). The raw
    counts are stored whatever is chosen."""

    top_logprobs: int = Field(20, ge=2, le=20)
    """How many next-token log-probabilities to request in `logprob` mode (engines cap this)."""


class PromptConfig(_Config):
    """What the model is asked."""

    template_id: str = "default"
    """Name stored with every row, so results from different wordings can be told apart."""

    template: str | None = None
    """User message with `{option_a}` and `{option_b}` placeholders; null = the built-in
    wording for the mode."""

    system: str | None = "You are a helpful assistant."
    """System message; folded into the user turn for models whose chat template has no system
    role. Null for none."""

    answer_prefix: str = ""
    """Text placed at the start of the assistant turn (e.g. "Answer:"); it changes how much
    probability small chat models put on the two letters."""

    format: PromptFormat = "auto"
    """`chat` uses the tokenizer's chat template, `base` plain text ending in an answer cue,
    `auto` picks chat when the tokenizer has a chat template."""

    base_cue: str = "Answer:"
    """Last line of a base-model prompt, after a blank line."""

    both_orders: bool = True
    """Ask every unordered pair in both orientations (cancels and measures position bias)."""

    @field_validator("template")
    @classmethod
    def _placeholders(cls, value: str | None) -> str | None:
        if value is None:
            return value
        missing = [p for p in ("{option_a}", "{option_b}") if p not in value]
        if missing:
            raise ValueError(
                f"template lacks {' and '.join(missing)}; a template must contain both "
                "{option_a} and {option_b}"
            )
        return value


class ModelConfig(_Config):
    """One model to elicit from, and how to run it."""

    name: str = "smollm2-135m"
    """Registry name (see `valuescope models`), a Hugging Face id, a local folder,
    `simulated` (an agent with known utilities that reads each rendered prompt), or
    `simulated-fast` (the same agent reading outcome indices instead of text: for throughput
    benchmarks only, it cannot see what the prompt shows). Stored in the `model` column."""

    scorer: ScorerKind | None = None
    """Engine: `simulated`, `hf` (transformers), `vllm`, `openai`. Null picks `simulated` for
    the names `simulated` and `simulated-fast`, else `hf`."""

    path: str | None = None
    """Weights folder or HF id to load when it differs from `name`."""

    chat: bool | None = None
    """Whether this is a chat model; null = decide from the tokenizer / registry."""

    system_role: bool | None = None
    """Whether the chat template accepts a system message; null = registry or probe."""

    chat_template_kwargs: dict[str, Any] | None = None
    """Extra variables for the chat template, e.g. `{enable_thinking: false}` for Qwen3's
    hybrid reasoning template. Null = the registry's (Qwen3 entries turn thinking off except in
    `reasoning` mode). Sent to OpenAI-compatible servers as `chat_template_kwargs` (vLLM, SGLang
    read it)."""

    dtype: str = "auto"
    """`auto` (bf16 on GPU, fp32 on CPU), `float32`, `bfloat16` or `float16`."""

    device: str = "auto"
    """`auto`, `cpu` or `cuda` (hf scorer)."""

    batch_size: int = Field(16, ge=1, le=4096)
    """Prompts per forward pass (hf scorer) or per engine call chunk (vllm)."""

    max_context: int | None = Field(None, ge=16)
    """Longest prompt in tokens; longer prompts become error rows. Null = the model's own."""

    gpus_per_replica: float = Field(0, ge=0)
    """GPUs each replica holds (several → a placement group on one node)."""

    tensor_parallel: int = Field(1, ge=1)
    """Tensor-parallel size inside one replica (vllm)."""

    replicas: int | Literal["auto"] = 1
    """Number of replicas (at least 1); `auto` = as many as the cluster's resources fit."""

    base_url: str | None = None
    """OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 (openai scorer). No
    `user:password@` in it: a URL is shown and stored (manifest, `runs.spec`), so credentials
    go in the variable named by `api_key_env`."""

    api_key_env: str | None = None
    """Name of the environment variable that holds the API key; the key itself is never
    written to specs, manifests or results."""

    max_concurrency: int = Field(16, ge=1, le=1024)
    """Requests in flight per replica (openai scorer)."""

    max_retries: int = Field(5, ge=0, le=50)
    """Retries of a failed request (429, 5xx, timeout) with exponential back-off and jitter."""

    timeout_s: float = Field(60.0, gt=0)
    """Per-request timeout (openai scorer)."""

    error_budget: float = Field(0.05, ge=0, le=1)
    """Largest share of failed prompts tolerated before the run stops."""

    seed: int = 0
    """Seed for the simulated agent and for sampling."""

    noise: float = Field(1.0, gt=0, allow_inf_nan=False)
    """Simulated agent: standard deviation of the Thurstonian noise per outcome (the base σ;
    see `noise_spread` and `noise_by_outcome` for outcome-specific σᵢ)."""

    noise_spread: float = Field(0.0, ge=0, le=5, allow_inf_nan=False)
    """Simulated agent: heteroscedastic noise, σᵢ = noise · exp(noise_spread · zᵢ) with zᵢ ~
    N(0, 1) drawn from `seed` (0 = the same σ for every outcome)."""

    noise_by_outcome: dict[str, Annotated[float, Field(gt=0, allow_inf_nan=False)]] | None = None
    """Simulated agent: σᵢ by outcome id (outcomes not listed keep the σ of `noise` and
    `noise_spread`)."""

    position_bias: float = Field(0.0, allow_inf_nan=False)
    """Simulated agent: shift added to the option shown under the letter A (probit units)."""

    label_noise: float = Field(0.0, ge=0, allow_inf_nan=False)
    """Simulated agent: sd of per-prompt noise on the probit scale of P(A) in logprob mode
    (a real model's probabilities are not an exact function of two utilities)."""

    refusal_rate: float = Field(0.0, ge=0, le=1, allow_inf_nan=False)
    """Simulated agent: share of prompts answered with neither letter (logprob mode: the
    letter mass is 0; sample and reasoning modes: every completion is unparseable)."""

    utilities: dict[str, Annotated[float, Field(allow_inf_nan=False)]] | None = None
    """Simulated agent: true utilities by outcome id; null = drawn from N(0, 1) with `seed`."""

    template_sensitivity: float = Field(0.0, ge=0, le=10, allow_inf_nan=False)
    """Simulated agent: sd of a per-wording utility perturbation. The wording is the prompt
    text without the two options and the persona phrases; each wording adds its own seeded
    N(0, sd²) draw to every outcome's utility (0 = the wording does not matter)."""

    persona_offsets: dict[str, dict[str, Annotated[float, Field(allow_inf_nan=False)]]] | None = (
        None
    )
    """Simulated agent: utility offsets applied when a persona appears in the prompt. Key: a
    packaged persona id (`valuescope analyze political` personas, detected by its instruction
    text) or `text:<phrase>` (detected by the phrase). Value: outcome id or glob on outcome ids
    (e.g. `policy-tax-*`) → offset added to those outcomes' utilities (a pattern that matches
    no outcome of the run does nothing)."""

    framing_phrase: str | None = Field(None, min_length=1)
    """Simulated agent: a phrase (e.g. "exactly one of the following") whose presence in the
    prompt triggers the framing effect of `framing_factor`."""

    framing_factor: float = Field(1.0, ge=0, le=10, allow_inf_nan=False)
    """Simulated agent: under the framing phrase, the utilities of outcomes whose text states
    a quantity N move toward the mean of the outcomes with the same N by this factor,
    u → m_N + factor·(u − m_N): differences between entities at equal N (log exchange ratios)
    shrink by it (1 = no effect)."""

    @field_validator("persona_offsets")
    @classmethod
    def _known_personas(
        cls, value: dict[str, dict[str, float]] | None
    ) -> dict[str, dict[str, float]] | None:
        if value is None:
            return value
        from elicit.scorers.reader import persona_phrase

        for key in value:
            persona_phrase(key)  # raises ValueError naming the key
        return value

    @field_validator("replicas")
    @classmethod
    def _some_replicas(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 1 <= value <= 10_000:
            raise ValueError("give a whole number of replicas from 1 to 10000, or `auto`")
        return value

    @field_validator("base_url")
    @classmethod
    def _plain_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018  (raises on a port that is not a number)
        except ValueError:
            raise ValueError("not a URL; write e.g. http://127.0.0.1:8000/v1") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("write an http(s) URL with a host, e.g. http://127.0.0.1:8000/v1")
        if "@" in parts.netloc:
            # refused rather than redacted: the URL is stored in the manifest and runs.spec
            raise ValueError(
                "credentials in the URL (user:password@) are refused, because the URL is stored "
                "and shown; put the key in an environment variable and name it in api_key_env"
            )
        return value

    @model_validator(mode="after")
    def _resolve(self) -> ModelConfig:
        if self.scorer == "openai" and not self.base_url:
            raise ValueError("scorer 'openai' needs base_url (e.g. http://127.0.0.1:8000/v1)")
        if self.tensor_parallel > 1 and self.gpus_per_replica < self.tensor_parallel:
            raise ValueError(
                f"tensor_parallel={self.tensor_parallel} needs gpus_per_replica >= "
                f"{self.tensor_parallel}, got {self.gpus_per_replica}"
            )
        return self

    @property
    def scorer_kind(self) -> ScorerKind:
        """The scorer this model runs on, after defaults."""
        if self.scorer is not None:
            return self.scorer
        if self.name in SIMULATED_NAMES:
            return "simulated"
        return "hf"
