"""LayerSplit-v0: split an LLM between an edge device and a server, request by request."""

from __future__ import annotations

import bisect
import dataclasses
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from .. import costs, profiles
from ..channel import LinkModel
from ..workload import TOKEN_SPEC_EXPECTED, lognormal_tokens, valid_token_spec

__all__ = ["LayerSplitScenario", "PRESETS", "LayerSplitEnv", "LayerSplitVectorEnv", "OBSERVATION_FIELDS"]

#: Hidden-state compression levels of the continuous action, and their bits.
COMPRESSION_LEVELS = costs.ACTIVATION_DTYPES
#: Transmit-power fractions the oracle searches in continuous mode.
ORACLE_POWER_LEVELS = (0.25, 0.5, 1.0)
#: Uniform draws consumed per request (fixed, so trajectories do not depend on batching).
_DRAWS_PER_STEP = 10
#: Episodes a single discrete LayerSplitEnv draws at once when reset without a seed.
_BANK_EPISODES = 8


@dataclass(frozen=True)
class LayerSplitScenario:
    """Everything that defines a LayerSplit problem; every field is an env keyword argument."""

    model: str = "llama-3.2-3b"  #: model profile (the default does not fit an 8 GB Orin Nano whole)
    edge: str = "jetson-orin-nano-8gb"  #: edge device profile
    server: str = "a100-80gb"  #: edge server device profile
    link: str = "5g-nr"  #: link profile between them
    dtype: str = "float16"  #: weights dtype on both sides
    distance_m: tuple[float, float] = (30.0, 300.0)  #: range the device moves in (walk reflected at the ends)
    speed_mps: float = 1.5  #: device speed (pedestrian 1.5, vehicle 15)
    arrival_rate_hz: float = 0.2  #: Poisson arrivals of requests
    prompt_tokens: tuple[float, float, int, int] = (256.0, 0.8, 16, 2048)  #: lognormal (median, sigma, min, max)
    output_tokens: tuple[float, float, int, int] = (32.0, 0.7, 4, 512)  #: lognormal (median, sigma, min, max)
    output_prediction_sigma: float = 0.3  #: lognormal error of the observed expected output length
    deadline_s: tuple[float, float] = (2.0, 8.0)  #: per-request deadline, uniform in this range
    fading_correlation: float = 0.9  #: Gauss-Markov correlation of the fading between requests
    channel_estimate_noise_db: float = 2.0  #: noise of the observed (one request old) SNR estimate
    server_load_levels: tuple[float, ...] = (0.0, 0.5, 0.8)  #: background load of the server, per state
    server_load_stay: float = 0.9  #: probability that the load state stays the same between requests
    energy_budget_j: float = 5000.0  #: edge energy per episode (about 25 J a request); exhausting it ends the episode
    episode_requests: int = 200  #: requests per episode (truncation)
    min_split: int = 1  #: privacy: the edge runs at least this many layers (0 allows sending the prompt)
    w_latency: float = 1.0  #: weight of latency / deadline
    w_energy: float = 0.5  #: weight of edge energy / (budget / 200 requests)
    w_deadline_miss: float = 2.0  #: penalty when latency exceeds the deadline
    w_accuracy: float = 8.0  #: weight of the accuracy penalty (channel errors and compression)
    w_invalid: float = 1.0  #: penalty for choosing a masked split (a fallback split is served)
    w_dropped: float = 12.0  #: per request left unserved when the budget runs out: a missed deadline with a broken answer costs about 2 + w_deadline_miss + w_accuracy

    @classmethod
    def preset(cls, name: str, **overrides) -> "LayerSplitScenario":
        if name not in PRESETS:
            raise ValueError(f"scenario: expected one of {', '.join(PRESETS)}, got {name!r}")
        return dataclasses.replace(PRESETS[name], **overrides)


PRESETS: dict[str, LayerSplitScenario] = {
    # Llama-3.2-3B on a Jetson Orin Nano 8GB with an A100 edge server over 5G (the default)
    "orin-nano-a100-5g": LayerSplitScenario(),
    # Qwen2.5-1.5B on a Raspberry Pi 5 with an L4 server over Wi-Fi 6 (indoor, short range)
    "pi5-l4-wifi6": LayerSplitScenario(model="qwen2.5-1.5b", edge="raspberry-pi-5", server="l4", link="wifi-6",
                                       distance_m=(2.0, 40.0), speed_mps=1.0, deadline_s=(4.0, 15.0),
                                       energy_budget_j=1500.0),
    # Phi-3-mini on a flagship phone with an H100 edge server over LTE
    "phone-h100-lte": LayerSplitScenario(model="phi-3-mini-4k", edge="snapdragon-8-gen-3", server="h100-sxm",
                                         link="lte", distance_m=(50.0, 1000.0), energy_budget_j=800.0),
    # Llama-3.1-8B on a Jetson AGX Orin in a vehicle with an A100 roadside server over C-V2X
    "vehicle-agx-orin-a100-cv2x": LayerSplitScenario(model="llama-3.1-8b", edge="jetson-agx-orin-64gb",
                                                     server="a100-80gb", link="c-v2x", distance_m=(20.0, 500.0),
                                                     speed_mps=15.0, energy_budget_j=6000.0),
}


def _check_scenario(s: LayerSplitScenario) -> None:
    """Raise ValueError naming the first bad field of ``s``."""
    def need(ok: bool, name: str, expected: str) -> None:
        if not ok:
            raise ValueError(f"LayerSplit scenario field '{name}': expected {expected}, got {getattr(s, name)!r}")

    lo, hi = s.distance_m
    need(0 < lo <= hi, "distance_m", "(min, max) with 0 < min <= max metres")
    need(s.speed_mps >= 0, "speed_mps", "a speed >= 0 m/s")
    need(s.arrival_rate_hz > 0, "arrival_rate_hz", "a rate > 0 requests/s")
    for name in ("prompt_tokens", "output_tokens"):
        need(valid_token_spec(getattr(s, name)), name, TOKEN_SPEC_EXPECTED)
    need(s.output_prediction_sigma >= 0, "output_prediction_sigma", "a lognormal sigma >= 0")
    need(0 < s.deadline_s[0] <= s.deadline_s[1], "deadline_s", "(min, max) with 0 < min <= max seconds")
    need(0 <= s.fading_correlation < 1, "fading_correlation", "a correlation in [0, 1)")
    need(s.channel_estimate_noise_db >= 0, "channel_estimate_noise_db", "a noise std >= 0 dB")
    need(len(s.server_load_levels) >= 1 and all(0 <= x < 1 for x in s.server_load_levels), "server_load_levels",
         "one or more background loads in [0, 1)")
    need(0 <= s.server_load_stay <= 1, "server_load_stay", "a probability in [0, 1]")
    need(s.energy_budget_j > 0, "energy_budget_j", "an energy budget > 0 J")
    need(isinstance(s.episode_requests, int) and s.episode_requests >= 1, "episode_requests", "an integer >= 1")
    need(s.min_split >= 0, "min_split", "an integer >= 0")
    for name in ("w_latency", "w_energy", "w_deadline_miss", "w_accuracy", "w_invalid", "w_dropped"):
        need(getattr(s, name) >= 0, name, "a weight >= 0")
    need(s.dtype in profiles.DTYPE_BYTES, "dtype", "one of " + ", ".join(profiles.DTYPE_BYTES))


def _positive(x: float) -> float:
    return x if x > 0.0 else 0.0


def _box_muller(u1: np.ndarray, u2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two independent standard normals from two uniforms in [0, 1)."""
    r = np.sqrt(-2.0 * np.log1p(-u1))
    return r * np.cos(2 * np.pi * u2), r * np.sin(2 * np.pi * u2)


class _Simulator:
    """The dynamics of ``num_envs`` independent LayerSplit envs, vectorised with numpy.

    ``LayerSplitEnv`` is this with one env and ``LayerSplitVectorEnv`` with many,
    so both give the same trajectories for the same seeds. Exogenous processes
    (arrivals, token counts, mobility, fading, server load) do not depend on the
    actions: they are drawn ahead in blocks, from a fixed number of uniforms per
    request, and costed in one vectorised call, in affine split form
    (``costs.SplitModel``: a few numbers per request and cost, read at any split).
    Only the queues and the energy budget depend on the actions. Block sizes
    change the work, never the numbers: an episode's generator yields the same
    uniforms whatever the chunks. A single discrete env draws 8 episodes at a
    time (:meth:`adopt` plays one of them) and keeps per-request tables for its
    scalar step.
    """

    def __init__(self, scenario: LayerSplitScenario, num_envs: int, continuous: bool, block: int,
                 scalar_tables: bool = False):
        _check_scenario(scenario)
        s = self.scenario = scenario
        self.model = profiles.load_model(s.model)
        self.edge = profiles.load_device(s.edge)
        self.server = profiles.load_device(s.server)
        self.link_profile = profiles.load_link(s.link)
        self.link = LinkModel.from_profile(self.link_profile)
        self.split_model = costs.SplitModel(self.model, self.edge, self.server, dtype=s.dtype)
        self.L = self.model.num_layers
        if s.min_split > self.L:
            raise ValueError(f"LayerSplit scenario field 'min_split': expected an integer in [0, {self.L}] "
                             f"({s.model} has {self.L} layers), got {s.min_split}")
        self.n = num_envs
        self.continuous = continuous
        self.block = block
        self.splits = np.arange(self.L + 1)
        self.energy_ref = s.energy_budget_j / s.episode_requests
        self.rngs: list[np.random.Generator | None] = [None] * num_envs
        self.episode_rngs: list[np.random.Generator | None] = [None] * num_envs
        load_levels = np.asarray(s.server_load_levels, dtype=np.float64)
        self.load_levels = load_levels
        n_levels = len(load_levels)
        move = (1.0 - s.server_load_stay) / max(n_levels - 1, 1)
        self.load_cdf = np.cumsum(np.where(np.eye(n_levels, dtype=bool), s.server_load_stay if n_levels > 1 else 1.0,
                                           move), axis=1)
        # state
        n = num_envs
        self.distance = np.zeros(n)
        self.direction = np.ones(n)
        self.fading = np.zeros(n, dtype=np.complex128)
        self.load_state = np.zeros(n, dtype=np.int64)
        self.last_snr_db = np.zeros(n)
        self.edge_backlog = np.zeros(n)
        self.server_backlog = np.zeros(n)
        self.energy_left = np.zeros(n)
        self.load_observed = np.zeros(n)
        self.ptr = np.zeros(n, dtype=np.int64)
        self.pending = np.zeros(n, dtype=bool)  # reset, first block not drawn yet
        self.steps = np.zeros(n, dtype=np.int64)
        B, K = block, self.L + 1
        self.buf: dict[str, np.ndarray] = {}
        for name in ("dt", "prompt", "output", "output_pred", "deadline", "snr_db", "snr_est_db", "share",
                     "uplink_bps", "downlink_bps", "distance", "fading"):
            self.buf[name] = np.zeros((n, B))
        F = self.split_model.form_size
        #: each request's parts in affine split form (costs.SplitModel)
        self.buf_form = costs.RequestParts(**{k: np.zeros((n, B, F), dtype=bool if k == "feasible" else np.float64)
                                              for k in costs.RequestParts.__dataclass_fields__})
        self.buf_hi = np.zeros((n, B), dtype=np.int64)  # the deepest allowed split (see action_mask)
        self.buf_static_obs = np.zeros((n, B, 4), dtype=np.float32)
        if not continuous:
            self.buf_cost_form = np.zeros((n, B, len(_COST_FIELDS), F))  # link costs in affine split form
            self.buf_base_form = np.zeros((n, B, F))  # reward before queueing and accuracy, in that form
            self.buf_loss = np.zeros((n, B))  # costs.accuracy_loss of the hidden state
            self.buf_max_energy = np.zeros((n, B))  # an upper bound of the edge energy over splits
        self.scalar_tables = scalar_tables and not continuous
        if self.scalar_tables:  # per request, what step_single reads (see _oracle_tables)
            self._tables = np.zeros((n, B, 3 * (K - 2) + 6))
            self._block_mask = np.zeros((n, B, K), dtype=bool)
            self._block_base = np.zeros((n, B, K))
            self._block_penalty = np.zeros((n, B, K))
        self._w_energy_idle = scenario.w_energy * self.edge.power_idle_w / self.energy_ref

    # ---------------------------------------------------------------- sampling

    def seed(self, index: int, rng: np.random.Generator) -> None:
        self.rngs[index] = rng

    def reset(self, idx: np.ndarray, refill: bool = True) -> None:
        """Start new episodes in envs ``idx`` (their generators already set).

        ``refill=False`` leaves drawing their first block to the next :meth:`_advance`
        (one refill for the envs that reset and those at the end of a block).
        """
        s = self.scenario
        lo, hi = s.distance_m
        u = np.empty((len(idx), 4))
        for j, i in enumerate(idx):
            # one draw from the env's generator per episode seeds the episode's own stream, so that
            # what an episode leaves undrawn in its block never shifts the next episode
            self.episode_rngs[i] = np.random.default_rng(int(self.rngs[i].integers(0, 2**63)))
            u[j] = self.episode_rngs[i].random(4)
        self.distance[idx] = lo + (hi - lo) * u[:, 0]
        self.direction[idx] = np.where(u[:, 1] < 0.5, 1.0, -1.0)
        z1, z2 = _box_muller(u[:, 2], u[:, 3])
        self.fading[idx] = (z1 + 1j * z2) / np.sqrt(2.0)
        self.load_state[idx] = 0
        self.edge_backlog[idx] = 0.0
        self.server_backlog[idx] = 0.0
        self.energy_left[idx] = s.energy_budget_j
        self.load_observed[idx] = 0.0
        self.steps[idx] = 0
        self.last_snr_db[idx] = self._snr_db(self.distance[idx], np.abs(self.fading[idx]) ** 2)
        if refill:
            self._refill(idx)
        else:
            self.pending[idx] = True

    def _snr_db(self, distance, fading_power, power_fraction=1.0):
        return 10.0 * np.log10(self.link.uplink_snr(distance, fading_power, power_fraction))

    def _refill(self, idx: np.ndarray) -> None:
        """Draw the next block of requests for envs ``idx`` and cost every split of them."""
        s, B = self.scenario, self.block
        m = len(idx)
        drawn = np.empty((m, B, _DRAWS_PER_STEP))
        for j, i in enumerate(idx):
            self.episode_rngs[i].random(out=drawn[j])
        u = np.moveaxis(drawn, -1, 0).copy()  # (draws, m, B): each kind of draw contiguous
        dt = -np.log1p(-u[0]) / s.arrival_rate_hz
        z_prompt, z_output = _box_muller(u[1], u[2])
        w_re, w_im = _box_muller(u[3], u[4])
        z_est, z_pred = _box_muller(u[5], u[6])

        prompt = lognormal_tokens(s.prompt_tokens, z_prompt)
        output = lognormal_tokens(s.output_tokens, z_output)
        output_pred = np.clip(output * np.exp(s.output_prediction_sigma * z_pred), 1.0, None)
        deadline = s.deadline_s[0] + (s.deadline_s[1] - s.deadline_s[0]) * u[8]

        # mobility: a walk on the unfolded line (cumulative sums), folded into [lo, hi] (reflection)
        lo, hi = s.distance_m
        width = hi - lo
        x0, dir0, h, ls = self.distance[idx], self.direction[idx], self.fading[idx], self.load_state[idx]
        direction = dir0[:, None] * np.cumprod(np.where(u[9] < 0.05, -1.0, 1.0), axis=1)
        walk = np.cumsum(np.concatenate([x0[:, None], direction * (s.speed_mps * dt)], axis=1), axis=1)[:, 1:]
        folded = np.mod(walk - lo, 2.0 * width) if width > 0 else np.zeros_like(walk)
        dist = lo + np.where(folded > width, 2.0 * width - folded, folded)
        # fading (Gauss-Markov) and server load (Markov chain): sequential, vectorised over envs
        rho = s.fading_correlation
        innov = np.sqrt(1.0 - rho * rho) * (w_re + 1j * w_im) / np.sqrt(2.0)
        next_load = (u[7][..., None, None] > self.load_cdf[None, None]).sum(axis=-1)  # (m, B, S)
        np.minimum(next_load, len(self.load_levels) - 1, out=next_load)
        fad = np.empty((m, B), dtype=np.complex128)
        load = np.empty((m, B), dtype=np.int64)
        if m == 1:  # plain Python numbers: the same arithmetic, without numpy's per-call overhead
            h1, l1, innov1, next1 = complex(h[0]), int(ls[0]), innov[0].tolist(), next_load[0].tolist()
            fad1, load1 = [], []
            for t in range(B):
                h1 = rho * h1 + innov1[t]
                l1 = next1[t][l1]
                fad1.append(h1)
                load1.append(l1)
            fad[0], load[0] = fad1, load1
            h, ls = fad[:, -1], load[:, -1]
        else:
            rows = np.arange(m)
            for t in range(B):
                h = rho * h + innov[:, t]
                ls = next_load[rows, t, ls]
                fad[:, t], load[:, t] = h, ls
        self.distance[idx], self.direction[idx], self.fading[idx], self.load_state[idx] = (
            walk[:, -1], direction[:, -1], h, ls)

        power = np.abs(fad) ** 2
        snr = self.link.uplink_snr(dist, power)
        snr_db = 10.0 * np.log10(snr)
        uplink_bps, downlink_bps = self.link.rates_from_uplink_snr(snr)
        prev = np.concatenate([self.last_snr_db[idx][:, None], snr_db[:, :-1]], axis=1)
        self.last_snr_db[idx] = snr_db[:, -1]
        b = self.buf
        b["dt"][idx] = dt
        b["prompt"][idx] = prompt
        b["output"][idx] = output
        b["output_pred"][idx] = output_pred
        b["deadline"][idx] = deadline
        b["snr_db"][idx] = snr_db
        b["snr_est_db"][idx] = prev + s.channel_estimate_noise_db * z_est
        b["share"][idx] = 1.0 - self.load_levels[load]
        b["uplink_bps"][idx] = uplink_bps
        b["downlink_bps"][idx] = downlink_bps
        b["distance"][idx] = dist
        b["fading"][idx] = power
        form = self.split_model.form_parts(prompt, output)
        for k, v in vars(form).items():
            getattr(self.buf_form, k)[idx] = v
        # the splits that fit are 0..k (memory grows with k); none deeper than min_split: min_split alone
        fits = self.split_model.last_split_within(form.edge_memory_bytes, self.edge.usable_memory_bytes)
        hi = np.maximum(fits, s.min_split)
        self.buf_hi[idx] = hi
        static = np.empty((m, B, 4), dtype=np.float32)
        static[..., 0] = b["snr_est_db"][idx] / 30.0
        static[..., 1] = prompt / s.prompt_tokens[3]
        static[..., 2] = output_pred / s.output_tokens[3]
        static[..., 3] = deadline / s.deadline_s[1]
        np.clip(static, OBSERVATION_LOW[_STATIC_OBS], OBSERVATION_HIGH[_STATIC_OBS], out=static)
        self.buf_static_obs[idx] = static
        if not self.continuous:
            sc = costs.link_costs(form, self.edge, uplink_bps, downlink_bps, self.link_profile.base_rtt_s,
                                  server_share=b["share"][idx], check=False)  # costs in affine split form
            cost_form = np.stack([getattr(sc, k) for k in _COST_FIELDS], axis=-2)  # (m, B, fields, form)
            base_form = self._base_reward(sc.total_s, sc.edge_energy_j, 0.0, deadline[..., None])
            loss = costs.accuracy_loss(snr_db, "float16")
            max_energy = self.split_model.upper_bound(sc.edge_energy_j)
            self.buf_cost_form[idx] = cost_form
            self.buf_base_form[idx] = base_form
            self.buf_loss[idx] = loss
            self.buf_max_energy[idx] = max_energy
            if self.scalar_tables:
                total, base, penalty = self._split_rewards(cost_form, base_form, loss)
                mask = self._mask(hi)
                self._block_mask[idx] = mask
                self._block_base[idx] = base
                self._block_penalty[idx] = penalty
                self._tables[idx] = self._oracle_tables(total, base, mask)
        self.ptr[idx] = 0
        self.pending[idx] = False

    def _oracle_tables(self, total: np.ndarray, base: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Per request of a block: allowed interior splits sorted by latency, with running-best rewards.

        With the queue wait W of interior splits, the best interior split is the
        best among those with total <= deadline - W (no miss), or the best of all
        with the miss penalty: a binary search instead of a pass over all splits.
        """
        L = self.L
        shape = total.shape[:-1]
        total, base, mask = (x.reshape(-1, L + 1) for x in (total, base, mask))
        interior = mask[:, 1:L]
        tot = np.where(interior, total[:, 1:L], np.inf)
        order = np.argsort(tot, axis=1, kind="stable")
        tot_sorted = np.take_along_axis(tot, order, axis=1)
        val = np.take_along_axis(np.where(interior, base[:, 1:L], -np.inf), order, axis=1)
        best = np.maximum.accumulate(val, axis=1)
        previous = np.concatenate([np.full((len(val), 1), -np.inf), best[:, :-1]], axis=1)
        record = np.maximum.accumulate(np.where(val > previous, np.arange(L - 1), 0), axis=1)
        best_split = np.take_along_axis(order, record, axis=1) + 1
        tables = np.concatenate([tot_sorted, best, best_split, total[:, [0, L]], base[:, [0, L]], mask[:, [0, L]]],
                                axis=1)
        return tables.reshape(shape + (tables.shape[-1],))

    def adopt(self, bank: "_Simulator", j: int) -> None:
        """Play the episode that ``bank`` started in its env ``j`` (its blocks are shared, not copied)."""
        rows = slice(j, j + 1)
        self.buf = {k: v[rows] for k, v in bank.buf.items()}
        self.buf_form = costs.RequestParts(**{k: v[rows] for k, v in vars(bank.buf_form).items()})
        for name in ("buf_hi", "buf_static_obs", "buf_cost_form", "buf_base_form", "buf_loss", "buf_max_energy",
                     "_tables", "_block_mask", "_block_base", "_block_penalty"):
            setattr(self, name, getattr(bank, name)[rows])
        for name in ("distance", "direction", "fading", "load_state", "last_snr_db", "edge_backlog",
                     "server_backlog", "energy_left", "load_observed", "steps", "ptr", "pending"):
            getattr(self, name)[0] = getattr(bank, name)[j]
        self.rngs[0], self.episode_rngs[0] = bank.rngs[j], bank.episode_rngs[j]

    # ---------------------------------------------------------------- stepping

    def _rows(self):
        return np.arange(self.n), self.ptr

    def _mask(self, hi: np.ndarray) -> np.ndarray:
        """Allowed splits: min_split..hi (last axis: splits)."""
        return (self.splits >= self.scenario.min_split) & (self.splits <= hi[..., None])

    def action_mask(self) -> np.ndarray:
        """(n, L+1) bool: splits that fit edge memory and respect the privacy minimum (never empty)."""
        return self._mask(self.buf_hi[self._rows()])

    def _split_rewards(self, cost_form, base_form, loss):
        """Discrete mode: (latency without queues, reward before queueing, accuracy penalty) at every split."""
        total = self.split_model.expand(cost_form[..., _TOTAL, :])
        penalty = costs.penalty_from_loss(self.splits, self.L, loss[..., None])
        base = self.split_model.expand(base_form) - self.scenario.w_accuracy * penalty
        return total, base, penalty

    def observe(self) -> np.ndarray:
        r = self._rows()
        deadline = self.buf["deadline"][r]
        obs = np.empty((self.n, len(OBSERVATION_FIELDS)), dtype=np.float32)
        obs[:, _STATIC_OBS] = self.buf_static_obs[r]
        obs[:, 3] = self.edge_backlog / deadline
        obs[:, 4] = self.server_backlog / deadline
        obs[:, 5] = self.load_observed
        obs[:, 6] = self.energy_left / self.scenario.energy_budget_j
        obs[:, 8] = self.steps / self.scenario.episode_requests
        np.clip(obs, OBSERVATION_LOW, OBSERVATION_HIGH, out=obs)
        return obs

    def _base_reward(self, total, energy, penalty, deadline):
        """The reward of a split before queueing: latency, energy and accuracy terms."""
        s = self.scenario
        return -(s.w_latency * total / deadline + s.w_energy * energy / self.energy_ref) - s.w_accuracy * penalty

    def _queue_cost(self, wait, total, deadline):
        """What waiting ``wait`` seconds costs on top of the base reward (incl. a deadline miss)."""
        s = self.scenario
        return (s.w_latency / deadline + self._w_energy_idle) * wait + s.w_deadline_miss * (total + wait > deadline)

    def _score(self, sc: costs.SplitCosts, penalty: np.ndarray, eb, sb, deadline, energy_left, steps, base=None):
        """Queued costs and reward of every candidate action (last axis: split).

        A candidate whose energy exhausts ``energy_left`` also pays ``w_dropped``
        for each request left in the episode after ``steps`` + 1.
        """
        s = self.scenario
        qc = costs.with_queues(sc, self.edge, eb, sb)
        if base is None:
            base = self._base_reward(sc.total_s, sc.edge_energy_j, penalty, deadline)
        wait = qc.edge_wait_s + qc.server_wait_s
        dropped = s.w_dropped * (s.episode_requests - steps - 1) * (qc.edge_energy_j >= energy_left)
        return qc, base - self._queue_cost(wait, sc.total_s, deadline) - dropped

    def evaluate(self, power: np.ndarray | None = None):
        """Score every candidate action for the current requests in the true state.

        Returns (mask, costs, penalty, queued, reward, oracle index). Discrete:
        arrays (n, L+1). Continuous: (n, compression, power, L+1) where the
        powers are ``ORACLE_POWER_LEVELS`` plus ``power`` (the chosen one) last.
        """
        n = self.n
        r = self._rows()
        rows = np.arange(n)
        mask = self.action_mask()
        deadline = self.buf["deadline"][r]
        if self.continuous:
            sc, penalty = self._grid_costs(r, np.ones(n) if power is None else power)
            qc, reward = self._score(sc, penalty, self.edge_backlog[:, None, None], self.server_backlog[:, None, None],
                                     deadline[:, None, None, None], self.energy_left[:, None, None, None],
                                     self.steps[:, None, None, None])
            grid = np.where(mask[:, None, None, :], reward[:, :, :-1, :], -np.inf).reshape(n, -1)
            o_level, o_power, o_split = np.unravel_index(grid.argmax(axis=1), reward[:, :, :-1, :].shape[1:])
            oracle = (rows, o_level, o_power, o_split)
        else:
            sc = self._split_costs(r)
            _, base, penalty = self._split_rewards(self.buf_cost_form[r], self.buf_base_form[r], self.buf_loss[r])
            qc, reward = self._score(sc, penalty, self.edge_backlog, self.server_backlog, deadline[:, None],
                                     self.energy_left[:, None], self.steps[:, None], base=base)
            oracle = (rows, np.where(mask, reward, -np.inf).argmax(axis=1))
        return mask, sc, penalty, qc, reward, oracle

    def _split_costs(self, r) -> costs.SplitCosts:
        """Discrete mode: the cost breakdown at every split of the requests at rows ``r``."""
        fields = self.split_model.expand(self.buf_cost_form[r])  # (n, fields, L+1)
        return costs.SplitCosts(**{k: (fields[:, _COST_FIELDS.index(k)] if k in _COST_FIELDS else None)
                                   for k in costs.SplitCosts.__dataclass_fields__})

    def _parts(self, r) -> costs.RequestParts:
        """The parts at every split of the requests at rows ``r``."""
        fields = {k: self.split_model.expand(getattr(self.buf_form, k)[r])
                  for k in costs.RequestParts.__dataclass_fields__ if k != "feasible"}
        return costs.RequestParts(**fields, feasible=fields["edge_memory_bytes"] <= self.edge.usable_memory_bytes)

    def oracle_actions(self) -> np.ndarray:
        """The full-information myopic oracle's action for every env's current request."""
        oracle = self.evaluate()[-1]
        if not self.continuous:
            return oracle[1]
        _, level, power, split = oracle
        return np.stack([2.0 * split / self.L - 1.0, (level - 1) * (2.0 / 3.0),
                         (np.asarray(ORACLE_POWER_LEVELS)[power] - 0.1) / 0.45 - 1.0], axis=1)

    def decode_action(self, action) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(split, compression level, transmit-power fraction) of each env's action."""
        n = self.n
        if self.continuous:
            a = np.clip(np.asarray(action, dtype=np.float64).reshape(n, 3), -1.0, 1.0)
            split = np.rint((a[:, 0] + 1.0) / 2.0 * self.L).astype(np.int64)
            return split, np.digitize(a[:, 1], (-1.0 / 3.0, 1.0 / 3.0)), 0.1 + 0.9 * (a[:, 2] + 1.0) / 2.0
        return np.asarray(action, dtype=np.int64).reshape(n), np.zeros(n, dtype=np.int64), np.ones(n)

    def step(self, action: np.ndarray, active: np.ndarray | None = None):
        """Serve the current request of every (active) env; return (reward, terminated, truncated, info)."""
        if not self.continuous:
            return self._step_discrete(action, active)
        s, n = self.scenario, self.n
        r = self._rows()
        rows = np.arange(n)
        deadline = self.buf["deadline"][r]
        split, level, power = self.decode_action(action)
        mask, sc, penalty, qc, reward, opick = self.evaluate(power if self.continuous else None)
        chosen = (rows, level, np.full(n, -1)) if self.continuous else (rows,)
        o_split = opick[-1]
        valid = (split >= 0) & (split <= self.L)
        clipped = np.clip(split, 0, self.L)
        invalid = ~valid | ~mask[rows, clipped]
        if invalid.any():
            dist = np.where(mask, np.abs(self.splits[None, :] - split[:, None]), np.iinfo(np.int64).max)
            served = np.where(invalid, dist.argmin(axis=1), clipped)
        else:
            served = clipped

        pick = chosen + (served,)
        reward_served = reward[pick] - s.w_invalid * invalid
        latency = qc.latency_s[pick]
        energy = qc.edge_energy_j[pick]
        info = {
            "split": served, "requested_split": split, "fallback": invalid,
            "latency_s": latency,
            "edge_queue_s": qc.edge_wait_s[pick], "server_queue_s": qc.server_wait_s[pick],
            "edge_compute_s": sc.edge_compute_s[pick], "uplink_s": sc.uplink_s[pick],
            "server_compute_s": sc.server_compute_s[pick], "downlink_s": sc.downlink_s[pick],
            "round_trip_s": sc.round_trip_s[pick], "edge_energy_j": energy,
            "uplink_bytes": sc.uplink_bytes[pick], "accuracy_penalty": penalty[pick],
            "deadline_s": deadline, "deadline_met": latency <= deadline,
            "oracle_split": o_split, "oracle_reward": reward[opick],
            "oracle_latency_s": qc.latency_s[opick], "oracle_energy_j": qc.edge_energy_j[opick],
        }
        if self.continuous:
            info["compression"] = level
            info["tx_power_fraction"] = power
            info["oracle_compression"] = opick[1]
            info["oracle_tx_power_fraction"] = np.asarray(ORACLE_POWER_LEVELS)[opick[2]]

        return reward_served, *self._advance(active, served, energy, qc.edge_backlog_s[pick],
                                             qc.server_backlog_s[pick], info)

    def _step_discrete(self, action, active):
        """``step`` in discrete mode: the oracle from the block's totals and base rewards.

        Interior splits share one queue wait, so the best of them is the best
        base reward with the deadline-miss penalty where latency exceeds the
        deadline; only envs whose budget a split could exhaust score every
        split in full (the dropped-request penalty).
        """
        s, n, L = self.scenario, self.n, self.L
        r = self._rows()
        rows = np.arange(n)
        deadline = self.buf["deadline"][r]
        split = np.asarray(action, dtype=np.int64).reshape(n)
        cost_form = self.buf_cost_form[r]
        total, base, penalty = self._split_rewards(cost_form, self.buf_base_form[r], self.buf_loss[r])
        mask = self._mask(self.buf_hi[r])
        eb, sb = self.edge_backlog, self.server_backlog
        e0, s0 = costs.queue_waits(0, L, eb, sb)
        eI, sI = costs.queue_waits(1, L, eb, sb)
        eL, sL = costs.queue_waits(L, L, eb, sb)
        w0, wI, wL = e0 + s0, eI + sI, eL + sL
        # the oracle: split 0, the best interior split, split L (ties to the shallower, as an argmax)
        miss = total[:, 1:L] > (deadline - wI)[:, None]
        interior = np.where(mask[:, 1:L], base[:, 1:L] - s.w_deadline_miss * miss, -np.inf)
        k_interior = interior.argmax(axis=1)
        v_interior = interior[rows, k_interior] - self._queue_cost(wI, -np.inf, deadline)
        v0 = np.where(mask[:, 0], base[:, 0] - self._queue_cost(w0, total[:, 0], deadline), -np.inf)
        vL = np.where(mask[:, L], base[:, L] - self._queue_cost(wL, total[:, L], deadline), -np.inf)
        o_split = np.where(v_interior > v0, k_interior + 1, 0)
        o_value = np.maximum(v0, v_interior)
        o_split = np.where(vL > o_value, L, o_split)
        o_value = np.maximum(o_value, vL)
        # the split served
        clipped = np.clip(split, 0, L)
        invalid = (split != clipped) | ~mask[rows, clipped]
        if invalid.any():
            dist = np.where(mask, np.abs(self.splits[None, :] - split[:, None]), np.iinfo(np.int64).max)
            served = np.where(invalid, dist.argmin(axis=1), clipped)
        else:
            served = clipped
        edge_wait = np.where(served == 0, e0, np.where(served == L, eL, eI))
        server_wait = np.where(served == 0, s0, np.where(served == L, sL, sI))
        wait = edge_wait + server_wait
        total_served = total[rows, served]
        reward = base[rows, served] - self._queue_cost(wait, total_served, deadline)
        # envs where some split could exhaust the budget: every split scored with the dropped requests
        near = self.buf_max_energy[r] + np.maximum(eb, sb) * self.edge.power_idle_w >= self.energy_left
        if near.any():
            i = np.flatnonzero(near)
            ri = (i, self.ptr[i])
            _, full = self._score(self._split_costs(ri), penalty[i], eb[i], sb[i], deadline[i, None],
                                  self.energy_left[i, None], self.steps[i, None], base=base[i])
            o_split[i] = np.where(mask[i], full, -np.inf).argmax(axis=1)
            o_value[i] = full[np.arange(len(i)), o_split[i]]
            reward[i] = full[np.arange(len(i)), served[i]]
        reward = reward - s.w_invalid * invalid
        fields = self.split_model.at(cost_form, served[:, None])  # (n, fields) at the served split
        edge_c, uplink, server_c, downlink, rtt, _, energy_base, up_bytes = fields.T
        latency = total_served + wait
        energy = energy_base + wait * self.edge.power_idle_w
        o_wait = np.where(o_split == 0, w0, np.where(o_split == L, wL, wI))
        info = {
            "split": served, "requested_split": split, "fallback": invalid, "latency_s": latency,
            "edge_queue_s": edge_wait, "server_queue_s": server_wait, "edge_compute_s": edge_c, "uplink_s": uplink,
            "server_compute_s": server_c, "downlink_s": downlink, "round_trip_s": rtt, "edge_energy_j": energy,
            "uplink_bytes": up_bytes, "accuracy_penalty": penalty[rows, served],
            "deadline_s": deadline, "deadline_met": latency <= deadline, "oracle_split": o_split,
            "oracle_reward": o_value, "oracle_latency_s": total[rows, o_split] + o_wait,
            "oracle_energy_j": self.split_model.at(cost_form[:, _ENERGY], o_split) + o_wait * self.edge.power_idle_w,
        }
        edge_backlog = np.where(served >= 1, edge_wait + edge_c, eb)
        server_backlog = np.where(served < L, wait + server_c, sb)
        return reward, *self._advance(active, served, energy, edge_backlog, server_backlog, info)

    def _advance(self, active, served, energy, edge_backlog, server_backlog, info):
        """The state after serving (active envs only), then the next request: (terminated, truncated, info)."""
        s, n = self.scenario, self.n
        r = self._rows()
        if active is None:
            active = np.ones(n, dtype=bool)
        edge_backlog = np.where(active, edge_backlog, self.edge_backlog)
        server_backlog = np.where(active, server_backlog, self.server_backlog)
        self.energy_left = np.where(active, self.energy_left - energy, self.energy_left)
        self.load_observed = np.where(active & (served < self.L), 1.0 - self.buf["share"][r], self.load_observed)
        self.steps = self.steps + active
        terminated = active & (self.energy_left <= 0.0)
        truncated = active & ~terminated & (self.steps >= s.episode_requests)
        info["dropped_requests"] = np.where(terminated, s.episode_requests - self.steps, 0)
        # the next request arrives
        self.ptr = self.ptr + active
        full = np.flatnonzero((self.ptr >= self.block) | self.pending)
        if len(full):
            self._refill(full)
        dt = np.where(active, self.buf["dt"][self._rows()], 0.0)
        self.edge_backlog = np.maximum(edge_backlog - dt, 0.0)
        self.server_backlog = np.maximum(server_backlog - dt, 0.0)
        return terminated, truncated, info

    def myopic_rewards(self, obs: np.ndarray) -> np.ndarray:
        """(n, L+1) rewards predicted from observations only (the greedy baseline's model)."""
        s = self.scenario
        snr_db = obs[:, 0] * 30.0
        prompt = np.maximum(np.round(obs[:, 1] * s.prompt_tokens[3]), 1.0)
        output = np.maximum(np.round(obs[:, 2] * s.output_tokens[3]), 1.0)
        deadline = np.maximum(obs[:, 7] * s.deadline_s[1], 1e-9)
        share = np.clip(1.0 - obs[:, 5], 1e-3, 1.0)
        up, down = self.link.rates_from_uplink_snr(10.0 ** (snr_db / 10.0))
        parts = self.split_model.parts(prompt, output)
        sc = costs.link_costs(parts, self.edge, up, down, self.link_profile.base_rtt_s, server_share=share)
        penalty = costs.accuracy_penalty(self.splits, self.L, snr_db[:, None], "float16")
        energy_left = obs[:, 6:7] * s.energy_budget_j
        steps = np.round(obs[:, 8:9] * s.episode_requests)
        return self._score(sc, penalty, obs[:, 3] * deadline, obs[:, 4] * deadline, deadline[:, None], energy_left,
                           steps)[1]

    def step_single(self, action: int):
        """``step`` for one env in discrete mode, with scalars: the same numbers, several times faster.

        Reads the block's base rewards, masks and costs in affine split form; the
        oracle searches the interior splits with :meth:`_oracle_tables`, or scores
        every split when one could exhaust the energy budget. Models with more
        than one layer group take the vectorised path.
        """
        s, L = self.scenario, self.L
        if self.split_model.form_size != 4:
            return self._step_single_slow(action)
        b = int(self.ptr[0])
        eb, sb = float(self.edge_backlog[0]), float(self.server_backlog[0])
        energy_left, steps = float(self.energy_left[0]), int(self.steps[0])
        deadline = float(self.buf["deadline"][0, b])
        idle_w = self.edge.power_idle_w
        cost_form = self.buf_cost_form[0, b].tolist()  # per cost field: (at 0, at L, a, b): a + b k inside
        mask = self._block_mask[0, b]
        base = self._block_base[0, b]
        e0, s0 = costs.queue_waits(0, L, eb, sb)
        eI, sI = costs.queue_waits(1, L, eb, sb)
        eL, sL = costs.queue_waits(L, L, eb, sb)
        w0, wI, wL = e0 + s0, eI + sI, eL + sL
        near = self.buf_max_energy[0, b] + max(eb, sb) * idle_w >= energy_left
        if near:  # some split could exhaust the budget: score every split, dropped requests included
            rewards = self._rewards_near(cost_form, base.tolist(), w0, wI, wL, deadline, energy_left, steps)
            o_split, o_value = -1, -np.inf
            for k in np.flatnonzero(mask).tolist():
                if rewards[k] > o_value:
                    o_split, o_value = k, rewards[k]
        else:  # the oracle: split 0, the best interior split, split L
            row = self._tables[0, b].tolist()
            n_int = L - 1
            tot_sorted, best, best_split = row[:n_int], row[n_int:2 * n_int], row[2 * n_int:3 * n_int]
            ends_total, ends_base, ends_mask = row[-6:-4], row[-4:-2], row[-2:]
            j = bisect.bisect_right(tot_sorted, deadline - wI)
            o_split, o_value = -1, -np.inf
            if ends_mask[0]:
                o_split, o_value = 0, ends_base[0] - self._queue_cost(w0, ends_total[0], deadline)
            if best[-1] > -np.inf:
                value, k = (best[j - 1], int(best_split[j - 1])) if j else (-np.inf, -1)
                if best[-1] - s.w_deadline_miss > value:
                    value, k = best[-1] - s.w_deadline_miss, int(best_split[-1])
                value -= self._queue_cost(wI, -np.inf, deadline)  # the miss is already in value
                if value > o_value:
                    o_split, o_value = k, value
            if ends_mask[1]:
                value = ends_base[1] - self._queue_cost(wL, ends_total[1], deadline)
                if value > o_value:
                    o_split, o_value = L, value
        # the action served
        served, invalid = action, not (0 <= action <= L and mask[action])
        if invalid:
            allowed = np.flatnonzero(mask)
            served = int(allowed[np.argmin(np.abs(allowed - action))])
        edge_c, uplink, server_c, downlink, rtt, total, energy_base, up_bytes = (
            [f[0] for f in cost_form] if served == 0 else [f[1] for f in cost_form] if served == L
            else [f[3] * served + f[2] for f in cost_form])  # SplitModel.at's arithmetic
        edge_wait, server_wait = (e0, s0) if served == 0 else (eL, sL) if served == L else (eI, sI)
        wait = edge_wait + server_wait
        if near:
            reward = rewards[served] - s.w_invalid * invalid
        else:
            reward = float(base[served]) - self._queue_cost(wait, total, deadline) - s.w_invalid * invalid
        latency = total + wait
        energy = energy_base + wait * idle_w
        o_wait = w0 if o_split == 0 else wL if o_split == L else wI
        o_total, o_energy = ((f[0] if o_split == 0 else f[1] if o_split == L else f[3] * o_split + f[2])
                             for f in (cost_form[_TOTAL], cost_form[_ENERGY]))
        energy_left -= energy
        steps += 1
        terminated = energy_left <= 0.0
        truncated = not terminated and steps >= s.episode_requests
        info = {
            "split": served, "requested_split": action, "fallback": invalid, "latency_s": latency,
            "edge_queue_s": edge_wait, "server_queue_s": server_wait, "edge_compute_s": edge_c,
            "uplink_s": uplink, "server_compute_s": server_c, "downlink_s": downlink, "round_trip_s": rtt,
            "edge_energy_j": energy, "uplink_bytes": up_bytes,
            "accuracy_penalty": float(self._block_penalty[0, b, served]), "deadline_s": deadline,
            "deadline_met": latency <= deadline, "oracle_split": o_split, "oracle_reward": o_value,
            "oracle_latency_s": o_total + o_wait, "oracle_energy_j": o_energy + o_wait * idle_w,
            "dropped_requests": s.episode_requests - steps if terminated else 0,
        }
        # the state after serving, then the next request
        if served >= 1:
            eb = edge_wait + edge_c
        if served < L:
            sb = wait + server_c
            self.load_observed[0] = 1.0 - self.buf["share"][0, b]
        self.energy_left[0] = energy_left
        self.steps[0] = steps
        b += 1
        if b >= self.block:
            self._refill(np.array([0]))
            b = 0
        self.ptr[0] = b
        dt = float(self.buf["dt"][0, b])
        eb, sb = _positive(eb - dt), _positive(sb - dt)
        self.edge_backlog[0], self.server_backlog[0] = eb, sb
        next_deadline = float(self.buf["deadline"][0, b])
        obs = self.buf_static_obs[0, b, _STATIC_TO_OBS]  # a new array, with the dynamic slots to fill
        obs[3] = min(eb / next_deadline, _HIGH[3])
        obs[4] = min(sb / next_deadline, _HIGH[4])
        obs[5] = min(max(self.load_observed[0], 0.0), 1.0)
        obs[6] = min(max(energy_left / s.energy_budget_j, 0.0), 1.0)
        obs[8] = min(steps / s.episode_requests, 1.0)
        info["action_mask"] = self._block_mask[0, b].copy()
        return obs, reward, terminated, truncated, info

    def _rewards_near(self, cost_form, base, w0, wI, wL, deadline, energy_left, steps) -> list[float]:
        """step_single: the reward of every split as :meth:`_score` gives it (scalars, same arithmetic)."""
        s, L, idle_w = self.scenario, self.L, self.edge.power_idle_w
        total_f, energy_f = cost_form[_TOTAL], cost_form[_ENERGY]
        dropped = s.w_dropped * (s.episode_requests - steps - 1)
        rewards = []
        for k in range(L + 1):
            if k == 0:
                wait, total, energy = w0, total_f[0], energy_f[0]
            elif k == L:
                wait, total, energy = wL, total_f[1], energy_f[1]
            else:
                wait, total, energy = wI, total_f[3] * k + total_f[2], energy_f[3] * k + energy_f[2]
            exhausts = energy + wait * idle_w >= energy_left
            rewards.append(base[k] - self._queue_cost(wait, total, deadline) - dropped * exhausts)
        return rewards

    def _step_single_slow(self, action: int):
        """``step_single`` through the vectorised path (near the end of the energy budget)."""
        rewards, terminated, truncated, info_arrays = self.step(np.array([action]))
        info = {k: v[0].item() for k, v in info_arrays.items()}
        info["action_mask"] = self.action_mask()[0].copy()
        return self.observe()[0], float(rewards[0]), bool(terminated[0]), bool(truncated[0]), info

    def _grid_costs(self, r, power):
        """Continuous mode: costs at every (compression, power, split); the last power is the chosen one."""
        b = self.buf
        parts = self._parts(r)
        parts = costs.RequestParts(**{k: v[:, None, None, :] for k, v in vars(parts).items()})
        fractions = np.concatenate([np.broadcast_to(ORACLE_POWER_LEVELS, (self.n, len(ORACLE_POWER_LEVELS))),
                                    power[:, None]], axis=1)  # (n, P)
        dist, fading, snr_full = b["distance"][r][:, None], b["fading"][r][:, None], b["snr_db"][r][:, None]
        up = self.link.uplink_rate_bps(dist, fading, fractions)[:, None, :]  # (n, 1, P)
        down = b["downlink_bps"][r][:, None, None]
        share = b["share"][r][:, None, None]
        per_level = [costs.link_costs(parts, self.edge, up, down, self.link_profile.base_rtt_s, server_share=share,
                                      radio_power_scale=fractions[:, None, :], activation_dtype=c, check=False)
                     for c in COMPRESSION_LEVELS]
        sc = costs.SplitCosts(**{k: np.concatenate([getattr(x, k) for x in per_level], axis=1)
                                 for k in costs.SplitCosts.__dataclass_fields__})
        snr_db = snr_full + 10.0 * np.log10(fractions)  # (n, P)
        penalty = np.stack([costs.accuracy_penalty(self.splits, self.L, snr_db[:, :, None], c)
                            for c in COMPRESSION_LEVELS], axis=1)
        return sc, penalty


#: Cost fields kept per block in discrete mode (and, with the penalty, per served request).
_COST_FIELDS = ("edge_compute_s", "uplink_s", "server_compute_s", "downlink_s", "round_trip_s", "total_s",
                "edge_energy_j", "uplink_bytes")
_ENERGY = _COST_FIELDS.index("edge_energy_j")
_TOTAL = _COST_FIELDS.index("total_s")
#: Observation entries that depend only on the request (precomputed per block).
_STATIC_OBS = [0, 1, 2, 7]

#: Observation layout: (name, low, high). Documented in LayerSplitEnv's docstring.
OBSERVATION_FIELDS = (
    ("snr_estimate", -2.0, 3.0),
    ("prompt_tokens", 0.0, 1.0),
    ("expected_output_tokens", 0.0, 4.0),
    ("edge_backlog", 0.0, 10.0),
    ("server_backlog", 0.0, 10.0),
    ("server_load_observed", 0.0, 1.0),
    ("energy_left", 0.0, 1.0),
    ("deadline", 0.0, 1.0),
    ("episode_progress", 0.0, 1.0),
)
OBSERVATION_LOW = np.array([f[1] for f in OBSERVATION_FIELDS], dtype=np.float32)
OBSERVATION_HIGH = np.array([f[2] for f in OBSERVATION_FIELDS], dtype=np.float32)
_HIGH = OBSERVATION_HIGH.tolist()
#: Gathers the 4 static entries into observation order; slots 3-6 are overwritten.
_STATIC_TO_OBS = [0, 1, 2, 0, 0, 0, 0, 3, 0]


def _scenario_from_kwargs(scenario: str | LayerSplitScenario | None, overrides: dict) -> LayerSplitScenario:
    if isinstance(scenario, LayerSplitScenario):
        base = scenario
    else:
        base = LayerSplitScenario.preset(scenario or "orin-nano-a100-5g")
    unknown = set(overrides) - {f.name for f in dataclasses.fields(LayerSplitScenario)}
    if unknown:
        raise TypeError(f"LayerSplit got unknown argument(s) {', '.join(sorted(unknown))}; scenario fields are "
                        + ", ".join(f.name for f in dataclasses.fields(LayerSplitScenario)))
    converted = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return dataclasses.replace(base, **converted)


def _spaces(sim: _Simulator, continuous: bool):
    obs_space = spaces.Box(OBSERVATION_LOW, OBSERVATION_HIGH, dtype=np.float32)
    if continuous:
        act_space = spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float32)
    else:
        act_space = spaces.Discrete(sim.L + 1)
    return obs_space, act_space


_INFO_SCALARS = ("latency_s", "edge_queue_s", "server_queue_s", "edge_compute_s", "uplink_s", "server_compute_s",
                 "downlink_s", "round_trip_s", "edge_energy_j", "uplink_bytes", "accuracy_penalty", "deadline_s",
                 "oracle_reward", "oracle_latency_s", "oracle_energy_j", "tx_power_fraction",
                 "oracle_tx_power_fraction")


class LayerSplitEnv(gym.Env):
    """Split an LLM between an edge device and a server, one inference request per step.

    ## Description

    Each step one request (a prompt of P tokens that will generate T tokens)
    arrives at an edge device. The agent picks the split point k: the edge
    runs decoder layers 1..k, sends the hidden state over a wireless link and
    the server runs layers k+1..L and the LM head (k = 0: all on the server,
    k = L: all on the edge). Costs come from ``offload_env.costs`` (roofline
    compute, link transfers and a round trip per generated token at interior
    splits, edge energy and memory); the env owns only the state: a
    time-correlated (Gauss-Markov) Rayleigh channel over a moving distance, a
    Markov-modulated background load on the server, the edge and server
    queues (a pipeline: requests wait for earlier work on each side) and an
    edge energy budget. This is the problem of Chen et al. (2024), "Adaptive
    layer splitting for wireless LLM inference in edge computing", with
    resource dynamics that make it sequential.

    ## Action Space

    ``Discrete(L + 1)``: the split k. ``info["action_mask"]`` (and
    ``action_masks()``) marks the splits whose edge part (weights + KV cache)
    fits the edge's memory and that respect ``min_split`` (privacy: the raw
    prompt never leaves the device when ``min_split >= 1``). A masked split is
    not an error: the nearest allowed split is served (ties to the shallower)
    and ``w_invalid`` is subtracted; ``info["fallback"]`` says so.

    With ``continuous=True``: ``Box(-1, 1, (3,))``, a[0] -> split
    ``round((a0 + 1) / 2 * L)``; a[1] -> hidden-state compression: float16
    below -1/3, int8 up to 1/3, int4 above; a[2] -> transmit-power fraction
    ``0.1 + 0.9 (a2 + 1) / 2`` (scales the uplink SNR and the radio's power).

    ## Observation Space

    ``Box(9,)`` float32, clipped to the bounds below. The agent sees a delayed,
    noisy channel estimate and the load seen on its last server use, not the
    true current channel or load.

    | index | observation | min | max |
    |---|---|---|---|
    | 0 | uplink SNR of the previous request (dB) + N(0, channel_estimate_noise_db), / 30 | -2 | 3 |
    | 1 | prompt tokens / max prompt tokens | 0 | 1 |
    | 2 | expected output tokens (true T x lognormal error) / max output tokens | 0 | 4 |
    | 3 | edge backlog (s of earlier work left) / deadline | 0 | 10 |
    | 4 | server backlog / deadline | 0 | 10 |
    | 5 | server background load seen on the last request served by the server | 0 | 1 |
    | 6 | edge energy budget left / budget | 0 | 1 |
    | 7 | this request's deadline / max deadline | 0 | 1 |
    | 8 | requests served so far / ``episode_requests`` | 0 | 1 |

    ## Rewards

    ``-(w_latency * latency / deadline + w_energy * edge energy / (budget / episode_requests)
    + w_deadline_miss * [latency > deadline] + w_accuracy * accuracy penalty)``,
    minus ``w_invalid`` for a masked action, and minus ``w_dropped`` per request
    left in the episode when the energy budget runs out (so that ending early
    never pays). Latency includes queueing. The
    accuracy penalty (``costs.accuracy_penalty``) grows as the uplink SNR drops
    and the compression coarsens, and shrinks with the split depth (Chen et al.
    2024: the same noise hurts perplexity less deeper in the model); it is 0
    at k = 0 (token ids) and k = L (nothing sent).

    ## Starting State

    Distance uniform in ``distance_m``, fading drawn from its stationary law,
    idle server and queues, a full energy budget.

    ## Episode End

    Terminated when the energy budget is exhausted; truncated after
    ``episode_requests`` requests (200 by default; the env truncates itself,
    so ``spec.max_episode_steps`` is None).

    ## Info

    Every step: the served request's full cost breakdown (``latency_s``,
    ``edge_queue_s``, ``server_queue_s``, ``edge_compute_s``, ``uplink_s``,
    ``server_compute_s``, ``downlink_s``, ``round_trip_s``, ``edge_energy_j``,
    ``uplink_bytes``, ``accuracy_penalty``, ``deadline_s``, ``deadline_met``),
    the ``split`` served, and the full-information myopic oracle's choice for
    the same request and state (``oracle_split``, ``oracle_reward``,
    ``oracle_latency_s``, ``oracle_energy_j``); ``dropped_requests`` (the requests
    left unserved when the budget ran out, else 0); ``action_mask`` for the next
    request. Agents must not act on the oracle's fields.

    ## Arguments

    ``gymnasium.make("offload_env/LayerSplit-v0", scenario="orin-nano-a100-5g",
    continuous=False, render_mode=None, **fields)``: ``scenario`` is a preset
    name (``PRESETS``) or a ``LayerSplitScenario``; any scenario field can be
    overridden by keyword (model, edge, server, link, distance_m, speed_mps,
    arrival_rate_hz, prompt_tokens, output_tokens, deadline_s, energy_budget_j,
    min_split, the reward weights...). ``block`` (requests drawn per call, default
    a whole episode up to 256) changes speed and memory, never the trajectories.

    ## Vectorized environment

    ``gymnasium.make_vec("offload_env/LayerSplit-v0", num_envs=1024,
    vectorization_mode="vector_entry_point")`` builds ``LayerSplitVectorEnv``:
    numpy over all sub-envs in one process, the same trajectories as this env
    for the same seeds.

    ## Version History

    * v0: initial version.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(self, scenario: str | LayerSplitScenario | None = None, *, continuous: bool = False,
                 render_mode: str | None = None, block: int | None = None, **fields: Any):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode: expected None or one of {self.metadata['render_modes']}, "
                             f"got {render_mode!r}")
        self.scenario = _scenario_from_kwargs(scenario, fields)
        self.continuous = bool(continuous)
        self.render_mode = render_mode
        block = block or min(self.scenario.episode_requests + 1, 256)  # a whole episode, and its last observation
        self._sim = _Simulator(self.scenario, 1, self.continuous, block, scalar_tables=True)
        # discrete: episodes are drawn _BANK_EPISODES at a time (one vectorised call), then played one by one
        self._banks = {} if self.continuous else {
            size: _Simulator(self.scenario, size, False, block, scalar_tables=True) for size in (1, _BANK_EPISODES)}
        self._bank, self._bank_next = None, 0
        self.num_layers = self._sim.L
        self.observation_space, self.action_space = _spaces(self._sim, self.continuous)
        self._last: dict | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if self.continuous:
            self._sim.seed(0, self.np_random)
            self._sim.reset(np.array([0]))
        else:
            if seed is not None or self._bank is None or self._bank_next == self._bank.n:
                # the episodes' own generators are seeded in order from np_random, as one at a time would be
                self._bank = self._banks[1 if seed is not None else _BANK_EPISODES]
                for i in range(self._bank.n):
                    self._bank.seed(i, self.np_random)
                self._bank.reset(np.arange(self._bank.n))
                self._bank_next = 0
            self._sim.adopt(self._bank, self._bank_next)
            self._bank_next += 1
        self._last = None
        return self._sim.observe()[0], {"action_mask": self._sim.action_mask()[0]}

    def step(self, action):
        if self._sim.rngs[0] is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        if not self.continuous:
            obs, reward, terminated, truncated, info = self._sim.step_single(int(action))
            self._last = info
            return obs, reward, terminated, truncated, info
        act = np.asarray(action, dtype=np.float64).reshape(1, 3)
        rewards, terminated, truncated, info_arrays = self._sim.step(act)
        info = {k: (v[0].item() if isinstance(v, np.ndarray) else v) for k, v in info_arrays.items()}
        info["action_mask"] = self._sim.action_mask()[0]
        self._last = info
        return self._sim.observe()[0], float(rewards[0]), bool(terminated[0]), bool(truncated[0]), info

    def action_masks(self) -> np.ndarray:
        """Allowed splits for the current request (sb3-contrib's MaskablePPO calls this)."""
        return self._sim.action_mask()[0]

    def oracle_action(self):
        """The full-information myopic oracle's action for the current request (privileged)."""
        action = self._sim.oracle_actions()[0]
        return action.astype(np.float32) if self.continuous else int(action)

    def myopic_rewards(self, obs: np.ndarray) -> np.ndarray:
        """Reward of every split predicted by the cost model from an observation alone.

        The state is read off ``obs`` (delayed noisy SNR, expected output
        length, backlogs, last seen server load); what the agent cannot see
        is not used. Splits at full transmit power and float16 hidden states.
        """
        return self._sim.myopic_rewards(np.asarray(obs, dtype=np.float64)[None, :])[0]

    def render(self):
        if self.render_mode is None:
            gym.logger.warn("render() called with render_mode=None")
            return None
        sim = self._sim
        r = (np.arange(1), sim.ptr)
        total = costs.link_costs(sim._parts(r), sim.edge, sim.buf["uplink_bps"][r], sim.buf["downlink_bps"][r],
                                 sim.link_profile.base_rtt_s, server_share=sim.buf["share"][r]).total_s[0]
        mask = sim.action_mask()[0]
        chosen = None if self._last is None else self._last["split"]
        if self.render_mode == "ansi":
            lines = [f"request: prompt {int(sim.buf['prompt'][r][0])} tok, deadline {sim.buf['deadline'][r][0]:.2f} s"
                     + ("" if chosen is None else f"; last split {chosen}, latency {self._last['latency_s']:.3f} s")]
            for k in range(sim.L + 1):
                bar = "#" * int(min(total[k] / sim.buf["deadline"][r][0], 2.0) * 20)
                lines.append(f"{k:3d} {'.' if mask[k] else 'x'} {total[k]:8.3f}s {bar}")
            return "\n".join(lines) + "\n"
        return _render_rgb(total, mask, chosen, sim.buf["deadline"][r][0])


def _render_rgb(total: np.ndarray, mask: np.ndarray, chosen: int | None, deadline: float) -> np.ndarray:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = Figure(figsize=(6, 3), dpi=80)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colours = np.where(mask, "tab:blue", "lightgrey").astype(object)
    if chosen is not None:
        colours[chosen] = "tab:orange"
    ax.bar(np.arange(len(total)), total, color=list(colours))
    ax.axhline(deadline, color="tab:red", linestyle="--", linewidth=1)
    ax.set_xlabel("split k (layers on the edge)")
    ax.set_ylabel("latency without queues (s)")
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


class LayerSplitVectorEnv(VectorEnv):
    """``num_envs`` LayerSplit envs stepped together with numpy (next-step autoreset).

    Same arguments as :class:`LayerSplitEnv` plus ``num_envs``. Sub-env i seeded with
    ``seed + i`` follows the same trajectory as ``LayerSplitEnv`` seeded with
    ``seed + i``. ``infos`` hold one array per key (with the ``_key`` masks).
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, scenario: str | LayerSplitScenario | None = None, *,
                 continuous: bool = False, render_mode: str | None = None,
                 block: int | None = None, **fields: Any):
        if num_envs < 1:
            raise ValueError(f"num_envs: expected an integer >= 1, got {num_envs}")
        if render_mode is not None:
            raise ValueError("LayerSplitVectorEnv does not render; use LayerSplitEnv")
        self.scenario = _scenario_from_kwargs(scenario, fields)
        self.num_envs = num_envs
        self.continuous = bool(continuous)
        self.render_mode = None
        self._sim = _Simulator(self.scenario, num_envs, self.continuous, block or max(4, 4096 // num_envs))
        self.single_observation_space, self.single_action_space = _spaces(self._sim, self.continuous)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._prev_done = np.zeros(num_envs, dtype=bool)
        self._ones = np.ones(num_envs, dtype=bool)

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict | None = None):
        if seed is None or isinstance(seed, int):
            seeds = [None if seed is None else seed + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"seed: expected {self.num_envs} seeds, got {len(seeds)}")
        for i, sd in enumerate(seeds):
            if sd is not None or self._sim.rngs[i] is None:
                self._sim.seed(i, np.random.default_rng(sd) if sd is None else gym.utils.seeding.np_random(sd)[0])
        self._sim.reset(np.arange(self.num_envs))
        self._prev_done[:] = False
        return self._sim.observe(), {"action_mask": self._sim.action_mask(), "_action_mask": self._ones}

    def step(self, actions):
        if self._sim.rngs[0] is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        actions = np.asarray(actions)
        done_before = self._prev_done
        served = ~done_before
        if done_before.any():  # next-step autoreset: these envs reset instead of stepping
            idx = np.flatnonzero(done_before)
            self._sim.reset(idx, refill=False)
        rewards, terminated, truncated, info = self._sim.step(actions, active=served)
        rewards = np.where(served, rewards, 0.0)
        obs = self._sim.observe()
        infos = dict(info)
        for k in list(infos):
            infos["_" + k] = served
        infos["action_mask"] = self._sim.action_mask()
        infos["_action_mask"] = self._ones
        self._prev_done = terminated | truncated
        return obs, rewards.astype(np.float64), terminated, truncated, infos
