"""LayerSplit-v0: split an LLM between an edge device and a server, request by request."""

from __future__ import annotations

import ctypes
import dataclasses
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from .. import costs, observations, profiles
from ..channel import LinkModel
from ..workload import TOKEN_SPEC_EXPECTED, valid_token_spec
from . import _layer_split_kernels as kernels
from . import _validation

__all__ = ["LayerSplitScenario", "PRESETS", "LayerSplitEnv", "LayerSplitVectorEnv", "OBSERVATION_FIELDS"]

#: Hidden-state compression levels of the continuous action, and their bits.
COMPRESSION_LEVELS = costs.ACTIVATION_DTYPES
#: Transmit-power fractions the oracle searches in continuous mode.
ORACLE_POWER_LEVELS = (0.25, 0.5, 1.0)
#: Most prompt + output tokens of a request (the step's cost tables grow with them).
MAX_CONTEXT_TOKENS = 131072
#: Most sub-envs of one LayerSplitVectorEnv.
MAX_VECTOR_ENVS = 1 << 22


@dataclass(frozen=True)
class LayerSplitScenario:
    """Everything that defines a LayerSplit problem; every field is an env keyword argument."""

    model: str = "llama-3.2-3b"  #: model profile (the default does not fit an 8 GB Orin Nano whole)
    edge: str = "jetson-orin-nano-8gb"  #: edge device profile
    server: str = "a100-80gb"  #: edge server device profile
    link: str = "5g-nr"  #: link profile between them
    edge_runtime: str | None = None  #: runtime on the edge (profiles/runtimes; None: the edge device's usual one)
    edge_weight_format: str = "f16"  #: weight format on the edge (another than the server's: the edge holds its layers
    #: quantised; the accuracy that costs is not modelled)
    server_runtime: str | None = None  #: runtime on the server (None: the server device's usual one)
    server_weight_format: str = "f16"  #: weight format on the server
    dtype: str | None = None  #: if set, the ideal roofline of this storage dtype on both sides in place of the
    #: four fields above: the cost model before runtimes, which the results published before them used
    distance_m: tuple[float, float] = (30.0, 300.0)  #: range the device moves in (walk reflected at the ends)
    speed_mps: float = 1.5  #: device speed (pedestrian 1.5, vehicle 15)
    arrival_rate_hz: float = 0.2  #: Poisson arrivals of requests
    prompt_tokens: tuple[float, float, int, int] = (256.0, 0.8, 16, 2048)  #: lognormal (median, sigma, min, max)
    output_tokens: tuple[float, float, int, int] = (32.0, 0.7, 4, 512)  #: lognormal (median, sigma, min, max)
    output_prediction_sigma: float = 0.3  #: lognormal error of the observed expected output length
    deadline_s: tuple[float, float] = (2.0, 8.0)  #: per-request deadline, uniform in this range
    fading_correlation: float = 0.9  #: Gauss-Markov correlation of the fading between requests
    channel_estimate_noise_db: float = 2.0  #: noise of the observed SNR estimate
    #: whose uplink SNR the observation estimates: "previous" (the last request's, as measured when it was sent)
    #: or "current" (this request's, measured just before deciding, as a device tracks its cell's reference signals)
    channel_estimate_of: str = "previous"
    server_load_levels: tuple[float, ...] = (0.0, 0.5, 0.8)  #: background load of the server, per state
    server_load_stay: float = 0.9  #: probability that the load state stays the same between requests
    energy_budget_j: float = 5000.0  #: edge energy per episode (about 25 J a request); exhausting it ends the episode
    episode_requests: int = 200  #: requests per episode (truncation)
    min_split: int = 1  #: privacy: the edge runs at least this many layers (0 allows sending the prompt)
    w_latency: float = 1.0  #: weight of latency / deadline
    w_energy: float = 0.5  #: weight of edge energy / energy_unit_j
    energy_unit_j: float = 25.0  #: the joules that cost w_energy, a price of its own (not tied to the budget)
    w_deadline_miss: float = 2.0  #: penalty when latency exceeds the deadline
    w_accuracy: float = 8.0  #: weight of the accuracy penalty (channel errors and compression)
    w_invalid: float = 1.0  #: penalty for choosing a masked split (a fallback split is served)
    w_dropped: float = 12.0  #: per request left unserved when the budget runs out: a missed deadline with a broken answer costs about 2 + w_deadline_miss + w_accuracy

    @classmethod
    def preset(cls, name: str, **overrides) -> "LayerSplitScenario":
        if name not in PRESETS:
            raise ValueError(f"scenario: expected one of {', '.join(PRESETS)}, got {name!r}")
        return dataclasses.replace(PRESETS[name], **overrides)


#: The preset an env gets when no scenario is named.
DEFAULT_PRESET = "orin-nano-a100-5g"

PRESETS: dict[str, LayerSplitScenario] = {
    # Llama-3.2-3B on a Jetson Orin Nano 8GB (MLC) with an A100 edge server (vLLM) over 5G (the default).
    # Headroom (benchmarks/headroom.py): all-server costs 1.2x the full-information reference. Why: the
    # budget (5 kJ) binds for every policy that uses the edge freely (greedy and the myopic oracle drop
    # requests), and using it where the 5G uplink is slow (far from the cell, deep fades) pays, so the
    # decision is when to spend the joules (pacing), not where the model fits.
    "orin-nano-a100-5g": LayerSplitScenario(edge_runtime="mlc-llm", server_runtime="vllm"),
    # Qwen2.5-1.5B on a Raspberry Pi 5 (llama.cpp, Q4_K_M, which the Pi holds whole) with an L4 server
    # (vLLM, f16) over Wi-Fi 6 in a building (2-80 m from the access point).
    # Headroom: the L4 is shared (background load up to 90%) and its queue grows in its busy spells while
    # the Pi idles waiting, and the far rooms' Wi-Fi is slow: there, answering on the Pi pays. All-server
    # spends 4 kJ in the mean episode and more than 5.5 kJ in its worst ones (it drops requests); the
    # reference spends about 4 kJ and drops none, so 5.5 kJ is feasible and binds only the careless.
    # (Was: f16 on the Pi, 2-40 m, loads up to 80%, 1.5 kJ then 4.2 kJ: every policy sent every request.)
    "pi5-l4-wifi6": LayerSplitScenario(model="qwen2.5-1.5b", edge="raspberry-pi-5", server="l4", link="wifi-6",
                                       edge_runtime="llama.cpp", edge_weight_format="q4_k_m",
                                       server_runtime="vllm", distance_m=(2.0, 80.0), speed_mps=1.0,
                                       deadline_s=(4.0, 15.0), server_load_levels=(0.0, 0.6, 0.9),
                                       energy_budget_j=5500.0),
    # Phi-3-mini on a flagship phone (llama.cpp, Q4_0, which it holds whole) with an H100 edge server
    # (vLLM, f16) over LTE, 50-600 m from the cell.
    # Headroom: far from the cell the uplink takes seconds for a prompt's hidden states, so answering on
    # the phone pays there; near it, offloading does. The budget (2.5 kJ, about 12 J a request) binds
    # the greedy and myopic policies (they drop requests) and not the reference (about 1.4 kJ).
    # The phone observes the current uplink SNR (channel_estimate_of="current", 2 dB of noise): a phone
    # tracks its cell's reference signals continuously. With the previous request's, the headroom was all
    # in what the reference knows: pacing closed 0.03 of it, pacing given the current SNR 0.68
    # (benchmarks/headroom.py --information); now pacing closes 0.84.
    # (Was: the previous request's SNR until 2026-12-06 (channel_estimate_of="previous" reproduces those
    # results); f16 on the phone, 50-1,000 m, 800 J then 6 kJ: all-server needed up to 47 kJ at 1 km.)
    "phone-h100-lte": LayerSplitScenario(model="phi-3-mini-4k", edge="snapdragon-8-gen-3", server="h100-sxm",
                                         edge_runtime="llama.cpp", edge_weight_format="q4_0",
                                         server_runtime="vllm", link="lte", distance_m=(50.0, 600.0),
                                         energy_budget_j=2500.0, channel_estimate_of="current"),
    # Llama-3.1-8B on a Jetson AGX Orin (MLC, q4f16_1, which it holds whole) in a vehicle with an A100
    # roadside server (vLLM, f16) over C-V2X, 20-500 m away at 15 m/s.
    # Headroom: the roadside A100 is shared (background load up to 85%) and the link changes fast, so
    # answering in the vehicle pays in the server's busy spells and at range; the budget (7.5 kJ) binds
    # greedy and the myopic oracle (they drop requests), not the reference.
    # (Was: f16 in the vehicle, loads up to 80%: all-server was within 6% of the reference.)
    "vehicle-agx-orin-a100-cv2x": LayerSplitScenario(model="llama-3.1-8b", edge="jetson-agx-orin-64gb",
                                                     edge_runtime="mlc-llm", edge_weight_format="q4f16_1",
                                                     server_runtime="vllm", server="a100-80gb", link="c-v2x",
                                                     distance_m=(20.0, 500.0), speed_mps=15.0,
                                                     server_load_levels=(0.0, 0.5, 0.85),
                                                     energy_budget_j=7500.0),
}


def _check_scenario(s: LayerSplitScenario) -> LayerSplitScenario:
    """``s`` with its numbers as annotated; TypeError or ValueError naming its first bad field (types, then ranges)."""
    def need(ok: bool, name: str, expected: str) -> None:
        if not ok:
            raise ValueError(f"LayerSplit scenario field '{name}': expected {expected}, got {getattr(s, name)!r}")

    s = _validation.check_fields(s, "LayerSplit")
    lo, hi = s.distance_m
    need(0 < lo <= hi, "distance_m", "(min, max) with 0 < min <= max metres")
    need(s.speed_mps >= 0, "speed_mps", "a speed >= 0 m/s")
    need(s.arrival_rate_hz > 0, "arrival_rate_hz", "a rate > 0 requests/s")
    for name in ("prompt_tokens", "output_tokens"):
        need(valid_token_spec(getattr(s, name)), name, TOKEN_SPEC_EXPECTED)
    need(s.prompt_tokens[3] < MAX_CONTEXT_TOKENS, "prompt_tokens", f"a max < {MAX_CONTEXT_TOKENS} tokens")
    need(s.prompt_tokens[3] + s.output_tokens[3] <= MAX_CONTEXT_TOKENS, "output_tokens",
         f"a max <= {MAX_CONTEXT_TOKENS} - the prompt max ({s.prompt_tokens[3]}) tokens")
    need(s.output_prediction_sigma >= 0, "output_prediction_sigma", "a lognormal sigma >= 0")
    need(0 < s.deadline_s[0] <= s.deadline_s[1], "deadline_s", "(min, max) with 0 < min <= max seconds")
    need(0 <= s.fading_correlation < 1, "fading_correlation", "a correlation in [0, 1)")
    need(s.channel_estimate_noise_db >= 0, "channel_estimate_noise_db", "a noise std >= 0 dB")
    need(s.channel_estimate_of in ("previous", "current"), "channel_estimate_of", "'previous' or 'current'")
    need(len(s.server_load_levels) >= 1 and all(0 <= x < 1 for x in s.server_load_levels), "server_load_levels",
         "one or more background loads in [0, 1)")
    need(0 <= s.server_load_stay <= 1, "server_load_stay", "a probability in [0, 1]")
    need(s.energy_budget_j > 0, "energy_budget_j", "an energy budget > 0 J")
    need(s.energy_unit_j > 0, "energy_unit_j", "an energy > 0 J (the joules that cost w_energy)")
    need(s.episode_requests >= 1, "episode_requests", "an integer >= 1")
    need(s.min_split >= 0, "min_split", "an integer >= 0")
    for name in ("w_latency", "w_energy", "w_deadline_miss", "w_accuracy", "w_invalid", "w_dropped"):
        need(getattr(s, name) >= 0, name, "a weight >= 0")
    need(s.dtype is None or s.dtype in profiles.DTYPE_BYTES, "dtype",
         "None or one of " + ", ".join(profiles.DTYPE_BYTES))
    return s


def _split_model(s: LayerSplitScenario, model, edge, server) -> costs.SplitModel:
    """The scenario's cost model: each side's runtime and format, or the ideal roofline of ``dtype``."""
    if s.dtype is not None:
        return costs.SplitModel(model, edge, server, dtype=s.dtype)
    runs = {}
    for side, device in (("edge", edge), ("server", server)):
        runtime, weight_format = getattr(s, f"{side}_runtime"), getattr(s, f"{side}_weight_format")
        _validation.execution(device, runtime, weight_format, None, "LayerSplit",
                              {"runtime": f"{side}_runtime", "weight_format": f"{side}_weight_format"})
        runs.update({f"{side}_runtime": runtime, f"{side}_weight_format": weight_format})
    return costs.SplitModel(model, edge, server, **runs)


class _Columns:
    """Named columns of the current requests: ``sim.buf["deadline"]`` is a view (n,)."""

    __slots__ = ("_table",)

    def __init__(self, table: np.ndarray):
        self._table = table

    def __getitem__(self, name: str) -> np.ndarray:
        return self._table[..., _REQUEST_INDEX[name]]


class _Simulator:
    """The dynamics of ``num_envs`` independent LayerSplit envs.

    ``LayerSplitEnv`` is this with one env and ``LayerSplitVectorEnv`` with many,
    so both give the same trajectories for the same seeds. Exogenous processes
    (arrivals, token counts, mobility, fading, server load) do not depend on the
    actions: each request is drawn when it arrives, from a fixed number of
    uniforms of its env's generator (so an episode's draws never depend on the
    others, or on how the envs are stepped). Both steps are compiled
    (``_layer_split_kernels``): they cost each request from
    ``costs.SplitModel.token_tables`` with ``costs.link_terms`` and score every
    allowed action for the oracle; :meth:`evaluate` scores them with numpy
    over ``costs.link_costs`` (the reference the tests hold them to). Only the
    queues and the energy budget depend on the actions.
    """

    def __init__(self, scenario: LayerSplitScenario, num_envs: int, continuous: bool):
        s = self.scenario = _check_scenario(scenario)
        self.model = _validation.load_profile(profiles.load_model, s.model, "LayerSplit", "model")
        self.edge = _validation.load_profile(profiles.load_device, s.edge, "LayerSplit", "edge")
        self.server = _validation.load_profile(profiles.load_device, s.server, "LayerSplit", "server")
        self.link_profile = _validation.load_profile(profiles.load_link, s.link, "LayerSplit", "link")
        if self.link_profile.medium != "wireless":
            raise ValueError(f"LayerSplit scenario field 'link': expected a wireless link profile, got {s.link!r}")
        self.link = LinkModel.from_profile(self.link_profile)
        self.split_model = _split_model(s, self.model, self.edge, self.server)
        self.L = self.model.num_layers
        if s.min_split > self.L:
            raise ValueError(f"LayerSplit scenario field 'min_split': expected an integer in [0, {self.L}] "
                             f"({s.model} has {self.L} layers), got {s.min_split}")
        self.n = num_envs
        self.continuous = continuous
        self.splits = np.arange(self.L + 1)
        self.energy_ref = s.energy_budget_j / s.episode_requests  # the budget's share of one request (pacing)
        self.rngs: list[np.random.Generator | None] = [None] * num_envs
        load_levels = np.asarray(s.server_load_levels, dtype=np.float64)
        self.load_levels = load_levels
        n_levels = len(load_levels)
        move = (1.0 - s.server_load_stay) / max(n_levels - 1, 1)
        self.load_cdf = np.cumsum(np.where(np.eye(n_levels, dtype=bool), s.server_load_stay if n_levels > 1 else 1.0,
                                           move), axis=1)
        # what the compiled step reads: request parts by token counts, memory fits, depth sensitivities
        max_prompt, max_output = int(s.prompt_tokens[3]), int(s.output_tokens[3])
        self.by_prompt, self.by_context = self.split_model.token_tables(max_prompt, max_output)
        self.fit_by_tokens = self.split_model.memory_fit_by_tokens(max_prompt + max_output)
        self.counts = np.asarray(self.split_model.counts, dtype=np.float64)
        self.sensitivity = costs.depth_sensitivity(self.splits, self.L)
        self._w_energy_idle = s.w_energy * self.edge.power_idle_w / s.energy_unit_j
        params = dict(rtt_s=self.link_profile.base_rtt_s, activation_scale=1.0,
                      power_active_w=self.edge.power_active_w, power_idle_w=self.edge.power_idle_w,
                      power_radio_tx_w=self.edge.power_radio_tx_w, w_latency=s.w_latency, w_energy=s.w_energy,
                      energy_ref=s.energy_unit_j, w_accuracy=s.w_accuracy, w_energy_idle=self._w_energy_idle,
                      w_deadline_miss=s.w_deadline_miss, w_invalid=s.w_invalid, w_dropped=s.w_dropped,
                      episode_requests=s.episode_requests, min_split=s.min_split, energy_budget_j=s.energy_budget_j)
        self.obs_scales = observations.layer_split_scales(s.prompt_tokens[3], s.output_tokens[3], s.deadline_s[1],
                                                          s.energy_budget_j, s.episode_requests)
        params.update({f"obs_scale_{k}": v for k, v in enumerate(self.obs_scales)})
        self.params = np.array([params[k] for k in kernels.PARAM_NAMES], dtype=np.float64)
        # the numbers of the compiled request draw (kernels.DRAW_NUMBERS)
        self._draw_numbers = kernels.draw_numbers(
            scenario=(s.arrival_rate_hz, s.deadline_s[0], s.deadline_s[1], s.distance_m[0], s.distance_m[1],
                      s.speed_mps, s.fading_correlation, s.output_prediction_sigma, s.channel_estimate_noise_db,
                      s.min_split, not continuous, s.channel_estimate_of == "previous"),
            prompt_spec=s.prompt_tokens, output_spec=s.output_tokens,
            link=(self.link.tx_power_w, self.link.noise_w, self.link.carrier_hz, *self.link.path_loss_terms(),
                  self.link.bandwidth_hz, self.link.downlink_tx_power_w / self.link.tx_power_w),
            loss=(*costs.erasure_terms(), *costs.accuracy_loss_terms("float16")))
        # state
        n = num_envs
        self.distance = np.zeros(n)
        self.direction = np.ones(n)
        self.fading = np.zeros(n, dtype=np.complex128)
        self.load_state = np.zeros(n, dtype=np.int64)
        self.last_snr_db = np.zeros(n)
        self.generators = np.zeros((n, 2), dtype=np.uintp)  # addresses of each generator's next_double and state
        self.state = np.zeros((n, len(kernels.STATE_COLUMNS)))  # backlogs, energy left, load seen, steps
        self.pending = np.zeros(n, dtype=bool)  # reset, first request not drawn yet
        self.req = np.zeros((n, len(kernels.REQUEST_COLUMNS)))  # each env's current request
        #: the continuous step's numbers (kernels.CONTINUOUS_NUMBERS)
        self._continuous_numbers = kernels.continuous_numbers(
            ORACLE_POWER_LEVELS, [profiles.DTYPE_BYTES[c] / 2.0 for c in COMPRESSION_LEVELS], costs.erasure_terms(),
            [costs.accuracy_loss_terms(c) for c in COMPRESSION_LEVELS])
        self.info_columns = kernels.CONTINUOUS_INFO_COLUMNS if continuous else kernels.INFO_COLUMNS
        ints = kernels.CONTINUOUS_INFO_INTS if continuous else kernels.INFO_INTS
        self.info_ints = [self.info_columns.index(k) for k in ints]
        self.info_bools = [self.info_columns.index(k) for k in kernels.INFO_BOOLS]
        self._all = np.arange(n)

    # state columns, as views (assign in place: ``sim.energy_left[i] = x``)
    edge_backlog = property(lambda self: self.state[:, kernels.STATE_COLUMNS.index("edge_backlog")])
    server_backlog = property(lambda self: self.state[:, kernels.STATE_COLUMNS.index("server_backlog")])
    energy_left = property(lambda self: self.state[:, kernels.STATE_COLUMNS.index("energy_left")])
    load_observed = property(lambda self: self.state[:, kernels.STATE_COLUMNS.index("load_observed")])
    steps = property(lambda self: self.state[:, kernels.STATE_COLUMNS.index("steps")])

    @property
    def buf(self) -> _Columns:
        """The current requests by column name (views of shape (n,))."""
        return _Columns(self.req)

    # ---------------------------------------------------------------- sampling

    def __getstate__(self):  # addresses do not survive pickling
        return {k: v for k, v in self.__dict__.items() if k not in ("generators", "_draws")}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.generators = np.zeros((self.n, 2), dtype=np.uintp)
        for index, rng in enumerate(self.rngs):
            if rng is not None:
                self._bind(index, rng)

    def _bind(self, index: int, rng: np.random.Generator) -> None:
        """Let the kernels draw from ``rng``'s state in place, as ``rng.random()`` would."""
        interface = rng.bit_generator.ctypes  # lives as long as the generator, which self.rngs holds
        self.generators[index] = ctypes.cast(interface.next_double, ctypes.c_void_p).value, interface.state_address
        # what kernels._draw reads (the arrays are updated in place)
        self._draws = (self.generators, self.distance, self.direction, self.fading, self.load_state,
                       self.last_snr_db, self._draw_numbers, self.load_cdf, self.load_levels, self.fit_by_tokens)

    def seed(self, index: int, rng: np.random.Generator) -> None:
        self._bind(index, rng)
        self.rngs[index] = rng

    def reset(self, idx: np.ndarray, draw: bool = True) -> None:
        """Start new episodes in envs ``idx`` (their generators already set).

        Each episode reads 4 uniforms of its env's generator at its start and 10
        per request, in order, nothing else. ``draw=False`` leaves drawing the
        first request to the next step (the vector env's autoreset).
        """
        self.state[idx] = 0.0
        self.energy_left[idx] = self.scenario.energy_budget_j
        self.pending[idx] = True
        if draw:
            self._draw(idx)

    def _draw(self, idx: np.ndarray) -> None:
        """Draw the next request of envs ``idx`` (an episode's first where pending)."""
        kernels.draw(idx, self.pending[idx], self._draws, self.req)
        self.pending[idx] = False

    # ---------------------------------------------------------------- stepping

    def observe(self) -> tuple[np.ndarray, np.ndarray]:
        """(observation (n, 9), action mask (n, L+1)) of every env's current request (the step's own code)."""
        obs = np.empty((self.n, len(OBSERVATION_FIELDS)), dtype=np.float32)
        mask = np.empty((self.n, self.L + 1), dtype=bool)
        kernels.arrive(self._all, np.zeros(self.n, dtype=bool), self.req, self.state, self.params, obs,
                       _LOW64, _HIGH64, mask)  # not active: no time passes
        return obs, mask

    def action_mask(self) -> np.ndarray:
        """(n, L+1) bool: splits that fit edge memory and respect the privacy minimum (never empty)."""
        return self.observe()[1]

    def _base_reward(self, total, energy, penalty, deadline):
        s = self.scenario
        return kernels.base_reward(total, energy, penalty, deadline, s.w_latency, s.w_energy, s.energy_unit_j,
                                   s.w_accuracy)

    def _queue_cost(self, wait, total, deadline):
        s = self.scenario
        return kernels.queue_cost(wait, total, deadline, s.w_latency, self._w_energy_idle, s.w_deadline_miss)

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
        """Score every candidate action for the current requests in the true state (numpy, from ``costs``).

        Returns (mask, costs, penalty, queued, reward, oracle index). Discrete:
        arrays (n, L+1). Continuous: (n, compression, power, L+1) where the
        powers are ``ORACLE_POWER_LEVELS`` plus ``power`` (the chosen one) last.
        """
        n = self.n
        rows = np.arange(n)
        mask = self.action_mask()
        deadline = self.buf["deadline"]
        if self.continuous:
            sc, penalty = self._grid_costs(np.ones(n) if power is None else power)
            qc, reward = self._score(sc, penalty, self.edge_backlog[:, None, None], self.server_backlog[:, None, None],
                                     deadline[:, None, None, None], self.energy_left[:, None, None, None],
                                     self.steps[:, None, None, None])
            grid = np.where(mask[:, None, None, :], reward[:, :, :-1, :], -np.inf).reshape(n, -1)
            o_level, o_power, o_split = np.unravel_index(grid.argmax(axis=1), reward[:, :, :-1, :].shape[1:])
            oracle = (rows, o_level, o_power, o_split)
        else:
            b = self.buf
            sc = costs.link_costs(self._parts(), self.edge, b["uplink_bps"], b["downlink_bps"],
                                  self.link_profile.base_rtt_s, server_share=b["share"], check=False)
            penalty = costs.penalty_from_loss(self.splits, self.L, b["loss"][:, None])
            qc, reward = self._score(sc, penalty, self.edge_backlog, self.server_backlog, deadline[:, None],
                                     self.energy_left[:, None], self.steps[:, None])
            oracle = (rows, np.where(mask, reward, -np.inf).argmax(axis=1))
        return mask, sc, penalty, qc, reward, oracle

    def _parts(self) -> costs.RequestParts:
        """The parts at every split of the current requests."""
        return self.split_model.parts(self.buf["prompt"], self.buf["output"])

    def oracle_actions(self) -> np.ndarray:
        """The full-information myopic oracle's action for every env's current request (the step's own search)."""
        n = self.n
        info = np.zeros((len(self.info_columns), n))
        actions = np.zeros((n, 3)) if self.continuous else np.zeros(n, dtype=np.int64)
        self._step_kernel(actions, np.ones(n, dtype=bool), info, np.zeros(n), np.zeros(n, dtype=bool),
                          np.zeros(n, dtype=bool), np.empty((n, len(OBSERVATION_FIELDS)), dtype=np.float32),
                          np.empty((n, self.L + 1), dtype=bool), dry_run=True)
        split = info[_ORACLE_SPLIT].astype(np.int64)
        if not self.continuous:
            return split
        columns = self.info_columns
        level = info[columns.index("oracle_compression")]
        power = info[columns.index("oracle_tx_power_fraction")]
        return np.stack([2.0 * split / self.L - 1.0, (level - 1) * (2.0 / 3.0), (power - 0.1) / 0.45 - 1.0], axis=1)

    def decode_action(self, action) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(split, compression level, transmit-power fraction) of each env's action."""
        n = self.n
        if self.continuous:
            a = np.clip(np.asarray(action, dtype=np.float64).reshape(n, 3), -1.0, 1.0)
            split = np.rint((a[:, 0] + 1.0) / 2.0 * self.L).astype(np.int64)
            return split, np.digitize(a[:, 1], (-1.0 / 3.0, 1.0 / 3.0)), 0.1 + 0.9 * (a[:, 2] + 1.0) / 2.0
        return np.asarray(action, dtype=np.int64).reshape(n), np.zeros(n, dtype=np.int64), np.ones(n)

    def _step_kernel(self, actions, active, info, rewards, terminated, truncated, obs, mask, dry_run=False) -> None:
        if self.continuous:
            kernels.step_continuous(actions, active, dry_run, self.pending, self.req, self.state, self.by_prompt,
                                    self.by_context, self.counts, self.sensitivity, self.params,
                                    self._continuous_numbers, rewards, terminated, truncated, info, obs, _LOW64,
                                    _HIGH64, mask, self._draws)
        else:
            kernels.step_discrete(actions, active, dry_run, self.pending, self.req, self.state, self.by_prompt,
                                  self.by_context, self.counts, self.sensitivity, self.params, rewards, terminated,
                                  truncated, info, obs, _LOW64, _HIGH64, mask, self._draws)

    def step(self, action, active: np.ndarray, out=None):
        """Serve every active env's request; the next requests arrive.

        Returns (reward, terminated, truncated, info table (``info_columns`` x
        n), observation, action mask), new arrays unless ``out`` holds the
        first four to fill (the caller copies what it keeps).
        """
        n = self.n
        if out is None:
            out = (np.zeros(n), np.zeros(n, dtype=bool), np.zeros(n, dtype=bool),
                   np.zeros((len(self.info_columns), n)))
        rewards, terminated, truncated, info = out
        obs = np.empty((n, len(OBSERVATION_FIELDS)), dtype=np.float32)
        mask = np.empty((n, self.L + 1), dtype=bool)
        if self.continuous:
            actions = np.asarray(action, dtype=np.float64).reshape(n, 3)
        else:
            actions = action if isinstance(action, np.ndarray) and action.dtype == np.int64 else \
                np.asarray(action, dtype=np.int64).reshape(n)
        self._step_kernel(actions, active, info, rewards, terminated, truncated, obs, mask)
        return rewards, terminated, truncated, info, obs, mask

    def myopic_rewards(self, obs: np.ndarray) -> np.ndarray:
        """(n, L+1) rewards predicted from observations only (the greedy baseline's model)."""
        return self.myopic_scores(obs)[1]

    def myopic_scores(self, obs: np.ndarray) -> tuple[costs.QueuedCosts, np.ndarray]:
        """(queued costs, rewards), each (n, L+1), predicted from observations only."""
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
                           steps)

    def _grid_costs(self, power):
        """Continuous mode: costs at every (compression, power, split); the last power is the chosen one."""
        b = self.buf
        parts = self._parts()
        parts = costs.RequestParts(**{k: v[:, None, None, :] for k, v in vars(parts).items()})
        fractions = np.concatenate([np.broadcast_to(ORACLE_POWER_LEVELS, (self.n, len(ORACLE_POWER_LEVELS))),
                                    power[:, None]], axis=1)  # (n, P)
        dist, fading, snr_full = b["distance"][:, None], b["fading"][:, None], b["snr_db"][:, None]
        up = self.link.uplink_rate_bps(dist, fading, fractions)[:, None, :]  # (n, 1, P)
        down = b["downlink_bps"][:, None, None]
        share = b["share"][:, None, None]
        per_level = [costs.link_costs(parts, self.edge, up, down, self.link_profile.base_rtt_s, server_share=share,
                                      radio_power_scale=fractions[:, None, :], activation_dtype=c, check=False)
                     for c in COMPRESSION_LEVELS]
        sc = costs.SplitCosts(**{k: np.concatenate([getattr(x, k) for x in per_level], axis=1)
                                 for k in costs.SplitCosts.__dataclass_fields__})
        snr_db = snr_full + 10.0 * np.log10(fractions)  # (n, P)
        penalty = np.stack([costs.accuracy_penalty(self.splits, self.L, snr_db[:, :, None], c)
                            for c in COMPRESSION_LEVELS], axis=1)
        return sc, penalty


_REQUEST_INDEX = {k: j for j, k in enumerate(kernels.REQUEST_COLUMNS)}
_ORACLE_SPLIT = kernels.INFO_COLUMNS.index("oracle_split")

#: Observation layout: (name, low, high), defined in ``offload_env.observations`` (the router reads it too).
OBSERVATION_FIELDS = observations.LAYER_SPLIT_FIELDS
OBSERVATION_LOW, OBSERVATION_HIGH = observations.bounds(OBSERVATION_FIELDS)
_LOW64, _HIGH64 = OBSERVATION_LOW.astype(np.float64), OBSERVATION_HIGH.astype(np.float64)


def _scenario_from_kwargs(scenario: str | LayerSplitScenario | None, overrides: dict) -> LayerSplitScenario:
    if isinstance(scenario, LayerSplitScenario):
        base = scenario
    elif scenario is not None and not isinstance(scenario, str):
        raise TypeError(f"scenario: expected None, a preset name ({', '.join(PRESETS)}) or a LayerSplitScenario, "
                        f"got {scenario!r}")
    else:
        base = LayerSplitScenario.preset(scenario or DEFAULT_PRESET)
    _validation.check_unknown("LayerSplit", overrides, [f.name for f in dataclasses.fields(LayerSplitScenario)])
    converted = {k: tuple(v) if isinstance(v, list) or (isinstance(v, np.ndarray) and v.ndim == 1) else v
                 for k, v in overrides.items()}
    return dataclasses.replace(base, **converted)


def _spaces(sim: _Simulator, continuous: bool):
    obs_space = spaces.Box(OBSERVATION_LOW, OBSERVATION_HIGH, dtype=np.float32)
    if continuous:
        act_space = spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float32)
    else:
        act_space = spaces.Discrete(sim.L + 1)
    return obs_space, act_space



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

    ``Discrete(L + 1)``: the split k (an int, a numpy integer or a 0-d
    integer array). ``info["action_mask"]`` (and ``action_masks()``; int8
    0/1, as ``action_space.sample(mask=...)`` takes it) marks the splits
    whose edge part (weights + KV cache) fits the edge's memory and that
    respect ``min_split`` (privacy: the raw prompt never leaves the device
    when ``min_split >= 1``).

    With ``continuous=True``: ``Box(-1, 1, (3,))``, a[0] -> split
    ``round((a0 + 1) / 2 * L)``; a[1] -> hidden-state compression: float16
    below -1/3, int8 up to 1/3, int4 above; a[2] -> transmit-power fraction
    ``0.1 + 0.9 (a2 + 1) / 2`` (scales the uplink SNR and the radio's power).
    Finite entries outside [-1, 1] are clipped.

    | action | served | ``info["fallback"]`` | reward |
    |---|---|---|---|
    | allowed split | as chosen | False | as below |
    | masked split (in range) | the nearest allowed split (ties to the shallower) | True | minus ``w_invalid`` |
    | continuous with a NaN or inf entry | the deepest allowed split, float16, full power; ``requested_split`` -1 | True | minus ``w_invalid`` |
    | out of range, not an integer, wrong shape or dtype | ValueError / TypeError naming ``action`` | | |

    ## Observation Space

    ``Box(9,)`` float32, clipped to the bounds below. The agent sees a noisy
    channel estimate (by default one request old) and the load seen on its
    last server use, not the true current channel or load.

    | index | observation | min | max |
    |---|---|---|---|
    | 0 | uplink SNR (dB) of the previous request (``channel_estimate_of="previous"``, the default) or of this one ("current"), + N(0, channel_estimate_noise_db), / 30 | -2 | 3 |
    | 1 | prompt tokens / max prompt tokens | 0 | 1 |
    | 2 | expected output tokens (true T x lognormal error) / max output tokens | 0 | 4 |
    | 3 | edge backlog (s of earlier work left) / deadline | 0 | 10 |
    | 4 | server backlog / deadline | 0 | 10 |
    | 5 | server background load seen on the last request served by the server | 0 | 1 |
    | 6 | edge energy budget left / budget | 0 | 1 |
    | 7 | this request's deadline / max deadline | 0 | 1 |
    | 8 | requests served so far / ``episode_requests`` | 0 | 1 |

    ## Rewards

    ``-(w_latency * latency / deadline + w_energy * edge energy / energy_unit_j``
    + w_deadline_miss * [latency > deadline] + w_accuracy * accuracy penalty)``,
    minus ``w_invalid`` for a fallback action (masked or non-finite), and minus ``w_dropped`` per request
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
    request. With ``continuous=True`` also the ``compression`` level (0 float16,
    1 int8, 2 int4) and ``tx_power_fraction`` served, and the oracle's
    (``oracle_compression``, ``oracle_tx_power_fraction``: it searches every
    level x powers 0.25, 0.5, 1 x allowed split). Agents must not act on the
    oracle's fields.

    ## Arguments

    ``gymnasium.make("offload_env/LayerSplit-v0", scenario="orin-nano-a100-5g",
    continuous=False, render_mode=None, **fields)``: ``scenario`` is a preset
    name (``PRESETS``) or a ``LayerSplitScenario``; any scenario field can be
    overridden by keyword (model, edge, server, link, distance_m, speed_mps,
    arrival_rate_hz, prompt_tokens, output_tokens, deadline_s, energy_budget_j,
    min_split, the reward weights...). Each request is drawn when it arrives,
    from 10 uniforms of the env's generator (4 more at an episode's start).

    Both steps and the request draws are compiled with numba (the first
    env of a new install compiles them once, about 40 s, then loads them
    from numba's cache); they evaluate the formulas of ``costs``, ``channel``
    and ``workload`` compiled as they are, and tests check them against those
    modules' numpy results.

    ## Vectorized environment

    ``gymnasium.make_vec("offload_env/LayerSplit-v0", num_envs=1024,
    vectorization_mode="vector_entry_point")`` builds ``LayerSplitVectorEnv``:
    all sub-envs in one process (compiled loops), the same trajectories as
    this env for the same seeds. Its ``step`` takes int actions of shape
    ``(num_envs,)`` (continuous: numbers ``(num_envs, 3)``); anything else
    is a ValueError naming ``actions``.

    ## Version History

    * v0: initial version; ``channel_estimate_of`` added later (default "previous": the observation as before).
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(self, scenario: str | LayerSplitScenario | None = None, *, continuous: bool = False,
                 render_mode: str | None = None, **fields: Any):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode: expected None or one of {self.metadata['render_modes']}, "
                             f"got {render_mode!r}")
        self.continuous = _validation.check_flag(continuous, "continuous")
        self.scenario = _scenario_from_kwargs(scenario, fields)
        self.render_mode = render_mode
        self._sim = _Simulator(self.scenario, 1, self.continuous)
        self.scenario = self._sim.scenario  # numbers as annotated
        self._active = np.ones(1, dtype=bool)
        self._action = np.zeros(1, dtype=np.int64)  # the discrete action, as the kernel reads it
        self._out = (np.zeros(1), np.zeros(1, dtype=bool), np.zeros(1, dtype=bool),
                     np.zeros((len(self._sim.info_columns), 1)))  # filled by each step, read into Python values
        self._mask = None
        self.num_layers = self._sim.L
        self.observation_space, self.action_space = _spaces(self._sim, self.continuous)
        self._last: dict | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if self._sim.rngs[0] is not self.np_random:  # a new generator (seeded, or set by the user)
            self._sim.seed(0, self.np_random)
        self._sim.reset(np.array([0]))
        self._last = None
        obs, mask = self._sim.observe()
        self._mask = mask[0].view(np.int8)
        return obs[0], {"action_mask": self._mask.copy()}

    def step(self, action):
        if self._sim.rngs[0] is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        sim = self._sim
        if self.continuous:
            action = _validation.box_action(action, (3,))
        else:
            self._action[0] = _validation.discrete_action(action, sim.L + 1)
            action = self._action
        rewards, terminated, truncated, table, obs, mask = sim.step(action, self._active, self._out)
        values = table[:, 0].tolist()
        for j in sim.info_ints:
            values[j] = int(values[j])
        for j in sim.info_bools:
            values[j] = bool(values[j])
        info = dict(zip(sim.info_columns, values))
        self._mask = mask[0].view(np.int8)
        info["action_mask"] = self._mask.copy()
        self._last = info
        return obs[0], float(rewards[0]), bool(terminated[0]), bool(truncated[0]), info

    #: Observation entry names, in order.
    observation_names = tuple(f[0] for f in OBSERVATION_FIELDS)

    @property
    def action_names(self) -> list[str] | None:
        return None if self.continuous else [f"split {k}" for k in range(self.num_layers + 1)]

    @property
    def safe_action(self):
        """What a router serves when it cannot decide: as local as the edge allows (the deepest split)."""
        return list(kernels.NON_FINITE_ACTION) if self.continuous else self.num_layers

    def router_layout(self) -> tuple[dict, dict[str, np.ndarray]]:
        """What the edge router needs to build this env's observation and mask from a request (JSON, arrays)."""
        return ({"builder": "layer_split", "scales": self._sim.obs_scales.tolist(),
                 "min_split": int(self.scenario.min_split)},
                {"env.fit_by_tokens": np.asarray(self._sim.fit_by_tokens, dtype=np.int64)})

    def router_request(self) -> dict:
        """The current request as the edge box knows it (the router's request fields), with the env's mask."""
        if self._mask is None:
            raise gym.error.ResetNeeded("call reset() before router_request()")
        c = {k: float(v[0]) for k, v in (("snr_estimate_db", self._sim.buf["snr_est_db"]),
                                         ("prompt_tokens", self._sim.buf["prompt"]),
                                         ("expected_output_tokens", self._sim.buf["output_pred"]),
                                         ("deadline_s", self._sim.buf["deadline"]))}
        sim = self._sim
        c.update(edge_backlog_s=float(sim.edge_backlog[0]), server_backlog_s=float(sim.server_backlog[0]),
                 server_load_observed=float(sim.load_observed[0]), energy_left_j=float(sim.energy_left[0]),
                 requests_served=float(sim.steps[0]), action_mask=self._mask.tolist())
        return c

    def action_masks(self) -> np.ndarray:
        """Allowed splits for the current request, int8 0/1 (sb3-contrib's MaskablePPO calls this)."""
        if self._mask is None:
            raise gym.error.ResetNeeded("call reset() before action_masks()")
        return self._mask.copy()

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

    def split_scores(self, obs: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(reward, edge energy in J) of every split for the current request, arrays (L+1,).

        From the true state (privileged, as the oracle's) when ``obs`` is None;
        else predicted from ``obs`` alone, as :meth:`myopic_rewards`. Splits at
        full transmit power and float16 hidden states; the energy includes the
        idle power while queued.
        """
        if obs is None:
            if self.continuous:
                raise TypeError("split_scores() from the true state needs the discrete env (continuous=False)")
            _, _, _, queued, reward, _ = self._sim.evaluate()
        else:
            queued, reward = self._sim.myopic_scores(np.asarray(obs, dtype=np.float64)[None, :])
        return reward[0], queued.edge_energy_j[0]

    @property
    def energy_reference_j(self) -> float:
        """The energy one request may spend for the budget to last the episode (budget / requests)."""
        return float(self._sim.energy_ref)

    def render(self):
        if self.render_mode is None:
            gym.logger.warn("render() called with render_mode=None")
            return None
        sim = self._sim
        b = sim.buf
        total = costs.link_costs(sim._parts(), sim.edge, b["uplink_bps"], b["downlink_bps"],
                                 sim.link_profile.base_rtt_s, server_share=b["share"]).total_s[0]
        deadline = b["deadline"][0]
        mask = sim.action_mask()[0]
        chosen = None if self._last is None else self._last["split"]
        if self.render_mode == "ansi":
            lines = [f"request: prompt {int(b['prompt'][0])} tok, deadline {deadline:.2f} s"
                     + ("" if chosen is None else f"; last split {chosen}, latency {self._last['latency_s']:.3f} s")]
            for k in range(sim.L + 1):
                bar = "#" * int(min(total[k] / deadline, 2.0) * 20)
                lines.append(f"{k:3d} {'.' if mask[k] else 'x'} {total[k]:8.3f}s {bar}")
            return "\n".join(lines) + "\n"
        return _render_rgb(total, mask, chosen, deadline)


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
    ``seed + i``. ``infos`` hold one array per key (with the ``_key`` masks);
    ``infos["action_mask"]`` and ``action_masks()`` are (num_envs, L + 1) int8.
    Actions: ints (num_envs,) in [0, L] (continuous: numbers (num_envs, 3),
    NaN or inf served as in :class:`LayerSplitEnv`); ValueError otherwise.
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, scenario: str | LayerSplitScenario | None = None, *,
                 continuous: bool = False, render_mode: str | None = None, **fields: Any):
        num_envs = _validation.check_count(num_envs, "num_envs", 1, MAX_VECTOR_ENVS)
        if render_mode is not None:
            raise ValueError(f"render_mode: expected None (LayerSplitVectorEnv does not render; use LayerSplitEnv), "
                             f"got {render_mode!r}")
        self.continuous = _validation.check_flag(continuous, "continuous")
        self.scenario = _scenario_from_kwargs(scenario, fields)
        self.num_envs = num_envs
        self.render_mode = None
        self._sim = _Simulator(self.scenario, num_envs, self.continuous)
        self.scenario = self._sim.scenario  # numbers as annotated
        self.single_observation_space, self.single_action_space = _spaces(self._sim, self.continuous)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._prev_done = np.zeros(num_envs, dtype=bool)
        self._ones = np.ones(num_envs, dtype=bool)
        self._mask: np.ndarray | None = None

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
        obs, mask = self._sim.observe()
        self._mask = mask.view(np.int8)
        return obs, {"action_mask": self._mask, "_action_mask": self._ones}

    def step(self, actions):
        if self._sim.rngs[0] is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        if self.continuous:
            actions = _validation.vector_box_actions(actions, self.num_envs, 3)
        else:
            actions = _validation.vector_discrete_actions(actions, self.num_envs, self._sim.L + 1)
        done_before = self._prev_done
        served = ~done_before
        if done_before.any():  # next-step autoreset: these envs reset instead of stepping
            idx = np.flatnonzero(done_before)
            self._sim.reset(idx, draw=False)
        sim = self._sim
        rewards, terminated, truncated, table, obs, mask = sim.step(actions, served)
        infos = dict(zip(sim.info_columns, table))
        for j in sim.info_ints:
            infos[sim.info_columns[j]] = table[j].astype(np.int64)
        for j in sim.info_bools:
            infos[sim.info_columns[j]] = table[j].astype(bool)
        for k in list(infos):
            infos["_" + k] = served
        self._mask = mask.view(np.int8)
        infos["action_mask"] = self._mask
        infos["_action_mask"] = self._ones
        self._prev_done = terminated | truncated
        return obs, rewards, terminated, truncated, infos

    def action_masks(self) -> np.ndarray:
        """(num_envs, L + 1) int8 0/1: each sub-env's allowed splits now (``infos["action_mask"]``)."""
        if self._mask is None:
            raise gym.error.ResetNeeded("call reset() before action_masks()")
        return self._mask.copy()
