"""Vehicular offloading: vehicles share roadside edge servers (RSUs) and the cloud (PettingZoo)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from pettingzoo import ParallelEnv

from .. import costs, mobility, observations, profiles
from ..channel import LinkModel, shared_rate_bps
from ..workload import TOKEN_SPEC_EXPECTED, lognormal_tokens, valid_token_spec
from . import _validation

__all__ = ["VehicularScenario", "VehicularParallelEnv", "TARGET_NAMES", "INFO_KEYS"]

#: Target kinds in the order of ``infos[agent]["target"]``: 0 local, 1..R RSU j-1, R+1 cloud.
TARGET_NAMES = ("local", "rsu", "cloud")
#: Per-step cost breakdown in ``infos[agent]`` (plus action_mask, target, rsu, split, fallback,
#: handover, failed, deadline_met).
INFO_KEYS = ("latency_s", "edge_wait_s", "server_wait_s", "edge_compute_s", "uplink_s", "server_compute_s",
             "downlink_s", "round_trip_s", "handover_s", "edge_energy_j", "uplink_bytes", "deadline_s",
             "reward_own")
_ROADS = ("highway", "grid", "trace")
_SPEED_SCALE_MPS = observations.SPEED_SCALE_MPS
_BLOCK_STEPS = 32  # task blocks drawn and costed ahead (tasks do not depend on actions)
_PART_NAMES = tuple(f.name for f in dataclasses.fields(costs.RequestParts))
#: Upper bounds of the size fields (the env allocates arrays of these sizes).
MAX_VEHICLES, MAX_RSUS, MAX_LANES, MAX_GRID_BLOCKS = 10_000, 1_000, 64, 1_000


@dataclass(frozen=True)
class VehicularScenario:
    """Everything that defines a vehicular problem; every field is an env keyword argument."""

    num_vehicles: int = 8  #: agents vehicle_0 .. vehicle_{N-1}
    num_rsus: int = 3  #: roadside units with an edge GPU each
    road: str = "highway"  #: highway | grid (built-in mobility) | trace (SUMO FCD replay, ``trace_path``)
    road_length_m: float = 2000.0  #: highway length (a ring: vehicles wrap)
    lanes_per_direction: int = 2  #: highway lanes each way
    grid_blocks: int = 4  #: Manhattan grid: blocks per side
    grid_block_m: float = 250.0  #: Manhattan grid: block length
    speed_mps: tuple[float, float] = (20.0, 35.0)  #: per-vehicle speed range (built-in mobility)
    trace_path: str | None = None  #: SUMO ``--fcd-output`` file (road="trace")
    rsu_positions: tuple[tuple[float, float], ...] | None = None  #: default: evenly along the road
    rsu_range_m: float = 400.0  #: coverage radius of an RSU
    model: str = "llama-3.2-1b"  #: the model every vehicle runs (all, part or none of it on board)
    vehicle_device: str = "jetson-agx-orin-64gb"  #: on-board computer
    rsu_device: str = "l4"  #: RSU edge GPU
    cloud_device: str = "h100-sxm"  #: cloud GPU
    link: str = "c-v2x"  #: vehicle-RSU radio link profile
    backhaul: str = "backhaul-fiber"  #: RSU-cloud wired link profile (shared by all RSUs)
    fading: bool = True  #: small-scale fading of the link profile, fresh each step (False: path loss only)
    vehicle_runtime: str | None = None  #: runtime on board (profiles/runtimes; None: the device's usual one, MLC)
    rsu_runtime: str | None = None  #: runtime on the RSU GPU (None: the device's usual one, vLLM)
    cloud_runtime: str | None = None  #: runtime on the cloud GPU (None: the device's usual one, vLLM)
    weight_format: str = "f16"  #: weight format everywhere (a split cuts one model in two)
    dtype: str | None = None  #: if set, the ideal roofline of this storage dtype in place of the four fields
    #: above: the cost model before runtimes, which the results published before them used
    split_fractions: tuple[float, ...] = (0.0, 0.25, 0.5)  #: offloaded splits, as fractions of the layers
    rsu_capacity_tasks: float = 1.0  #: tasks an RSU GPU serves at full speed at once
    #: admission control: an RSU whose GPU backlog exceeds this accepts no task (masked); None: the longest
    #: deadline (a task queued behind more cannot meet any deadline); inf: no admission control
    rsu_admission_backlog_s: float | None = None
    cloud_capacity_tasks: float = 4.0  #: tasks the cloud serves at full speed at once
    handover_delay_s: float = 0.05  #: extra delay of relaying a result to the next RSU
    step_s: float = 5.0  #: time between decisions: each vehicle has one task per step
    prompt_tokens: tuple[float, float, int, int] = (256.0, 0.8, 16, 2048)  #: lognormal (median, sigma, min, max)
    output_tokens: tuple[float, float, int, int] = (64.0, 0.7, 4, 512)  #: lognormal (median, sigma, min, max)
    deadline_s: tuple[float, float] = (2.0, 8.0)  #: per-task deadline, uniform in this range
    max_cycles: int = 100  #: steps per episode (truncation)
    energy_scale_j: float = 100.0  #: energy that costs as much as w_energy
    w_latency: float = 1.0  #: weight of latency / deadline
    w_energy: float = 0.5  #: weight of vehicle energy / energy_scale_j
    w_deadline_miss: float = 2.0  #: penalty of a missed deadline (or a failed handover)
    w_cloud: float = 1.0  #: price of one cloud task
    w_invalid: float = 1.0  #: penalty of a masked action (a fallback is served)
    team_reward_weight: float = 0.0  #: reward = (1 - w) own + w mean over vehicles
    #: pay each vehicle, in place of its own reward, its difference reward (Wolpert and Tumer, 2001): its own
    #: reward plus what its task did to the others' this step (their rewards by the cost model with it, minus
    #: with it run locally, at this step's fading and powers, without handover). The second part does not
    #: depend on its own choice, so a vehicle that maximises it maximises the team's sum, others fixed
    difference_reward: bool = False
    #: before deciding, each vehicle broadcasts its intent, the action ``predicted_rewards`` ranks best for it
    #: alone (what ``greedy`` does); observations gain the others' intents per RSU and the cloud and their
    #: intended RSU compute (intention sharing: Kim et al., "Communication in multi-agent reinforcement
    #: learning: intention sharing", ICLR 2021)
    broadcast_intents: bool = False


def _check_scenario(s: VehicularScenario) -> VehicularScenario:
    """``s`` with its numbers as annotated; TypeError or ValueError naming its first bad field (types, then ranges)."""
    def need(ok: bool, name: str, expected: str) -> None:
        if not ok:
            raise ValueError(f"Vehicular scenario field '{name}': expected {expected}, got {getattr(s, name)!r}")

    s = _validation.check_fields(s, "Vehicular", allow_inf=("rsu_admission_backlog_s",))
    need(1 <= s.num_vehicles <= MAX_VEHICLES, "num_vehicles", f"an integer in [1, {MAX_VEHICLES}]")
    need(1 <= s.num_rsus <= MAX_RSUS, "num_rsus", f"an integer in [1, {MAX_RSUS}]")
    need(s.road in _ROADS, "road", "one of " + ", ".join(_ROADS))
    need(s.road != "trace" or (s.trace_path is not None and os.path.isfile(s.trace_path)), "trace_path",
         "an existing SUMO FCD file when road='trace'")
    need(s.road_length_m > 0, "road_length_m", "a length > 0 m")
    need(1 <= s.lanes_per_direction <= MAX_LANES, "lanes_per_direction", f"an integer in [1, {MAX_LANES}]")
    need(1 <= s.grid_blocks <= MAX_GRID_BLOCKS, "grid_blocks", f"an integer in [1, {MAX_GRID_BLOCKS}]")
    need(s.grid_block_m > 0, "grid_block_m", "a length > 0 m")
    need(len(s.speed_mps) == 2 and 0 < s.speed_mps[0] <= s.speed_mps[1], "speed_mps",
         "(min, max) with 0 < min <= max m/s")
    if s.rsu_positions is not None:
        need(len(s.rsu_positions) == s.num_rsus and all(len(p) == 2 for p in s.rsu_positions), "rsu_positions",
             f"num_rsus ({s.num_rsus}) (x, y) pairs in metres")
    need(s.rsu_range_m > 0, "rsu_range_m", "a radius > 0 m")
    need(s.dtype is None or s.dtype in profiles.DTYPE_BYTES, "dtype",
         "None or one of " + ", ".join(profiles.DTYPE_BYTES))
    need(len(s.split_fractions) >= 1 and all(0 <= f < 1 for f in s.split_fractions), "split_fractions",
         "one or more fractions in [0, 1)")
    need(s.rsu_capacity_tasks > 0, "rsu_capacity_tasks", "a capacity > 0 tasks")
    need(s.rsu_admission_backlog_s is None or s.rsu_admission_backlog_s >= 0,
         "rsu_admission_backlog_s", "None or seconds >= 0 (inf: no admission control)")
    need(s.cloud_capacity_tasks > 0, "cloud_capacity_tasks", "a capacity > 0 tasks")
    need(s.handover_delay_s >= 0, "handover_delay_s", "a delay >= 0 s")
    need(s.step_s > 0, "step_s", "a step > 0 s")
    for name in ("prompt_tokens", "output_tokens"):
        need(valid_token_spec(getattr(s, name)), name, TOKEN_SPEC_EXPECTED)
    need(0 < s.deadline_s[0] <= s.deadline_s[1], "deadline_s", "(min, max) with 0 < min <= max seconds")
    need(s.max_cycles >= 1, "max_cycles", "an integer >= 1")
    need(s.energy_scale_j > 0, "energy_scale_j", "an energy > 0 J")
    for name in ("w_latency", "w_energy", "w_deadline_miss", "w_cloud", "w_invalid"):
        need(getattr(s, name) >= 0, name, "a weight >= 0")
    need(0 <= s.team_reward_weight <= 1, "team_reward_weight", "a weight in [0, 1]")
    return s


def _scenario_from_kwargs(scenario: VehicularScenario | None, overrides: dict) -> VehicularScenario:
    base = scenario if scenario is not None else VehicularScenario()
    if not isinstance(base, VehicularScenario):
        raise TypeError(f"scenario: expected a VehicularScenario or None, got {type(base).__name__}")
    _validation.check_unknown("Vehicular", overrides, [f.name for f in dataclasses.fields(VehicularScenario)])
    converted = {k: tuple(v) if isinstance(v, list) or (isinstance(v, np.ndarray) and v.ndim >= 1) else v
                 for k, v in overrides.items()}
    if isinstance(converted.get("rsu_positions"), tuple):
        converted["rsu_positions"] = tuple(tuple(p) if isinstance(p, (list, tuple, np.ndarray)) else p
                                           for p in converted["rsu_positions"])
    if isinstance(converted.get("trace_path"), os.PathLike):
        converted["trace_path"] = os.fspath(converted["trace_path"])
    return dataclasses.replace(base, **converted)


def _build_mobility(s: VehicularScenario):
    if s.road == "highway":
        return mobility.HighwayMobility(s.num_vehicles, length_m=s.road_length_m,
                                        lanes_per_direction=s.lanes_per_direction, speed_mps=s.speed_mps)
    if s.road == "grid":
        return mobility.GridMobility(s.num_vehicles, blocks=s.grid_blocks, block_m=s.grid_block_m,
                                     speed_mps=s.speed_mps)
    return mobility.TraceMobility(s.trace_path, s.num_vehicles)


def _default_rsu_positions(s: VehicularScenario, bounds) -> np.ndarray:
    """RSUs evenly spaced along the longer side of the area, at its middle (highway: at the roadside)."""
    (x0, y0), (x1, y1) = bounds
    frac = (np.arange(s.num_rsus) + 0.5) / s.num_rsus
    if s.road == "highway":
        return np.stack([x0 + frac * (x1 - x0), np.full(s.num_rsus, y0 - 5.0)], axis=1)
    if (x1 - x0) >= (y1 - y0):
        return np.stack([x0 + frac * (x1 - x0), np.full(s.num_rsus, (y0 + y1) / 2)], axis=1)
    return np.stack([np.full(s.num_rsus, (x0 + x1) / 2), y0 + frac * (y1 - y0)], axis=1)


class VehicularParallelEnv(ParallelEnv):
    """Vehicles offload LLM inference tasks to roadside units (RSUs) or the cloud, all at once each step.

    ## Description

    N vehicles drive (built-in highway or Manhattan grid, or a SUMO trace:
    ``offload_env.mobility``); each carries the same LLM on an on-board
    computer and has one inference task (P prompt tokens, T output tokens, a
    deadline) every ``step_s`` seconds. Each vehicle picks where its task runs:
    locally, on one of the RSUs in range (split at a layer: the vehicle runs
    layers 1..k, the RSU the rest), or in the cloud through an RSU (same
    split choice). All costs come from ``offload_env.costs`` (compute, link
    transfers, round trips, queues, vehicle energy and memory) and
    ``offload_env.channel`` (rates); the env owns the mobility, the task
    draws, the sharing of RSUs and the queues.

    * **Radio**: the uplink rate from vehicle i to RSU j is Shannon over the
      link profile (``c-v2x``) with distance path loss and fresh fading each
      step (``LinkModel``). **Bandwidth sharing**: the vehicles that transmit
      to RSU j in a step (served there or relayed to the cloud) share its
      channel equally in time: each gets rate / count (``shared_rate_bps``),
      uplink and downlink alike.
    * **Cloud**: reached through the in-range RSU with the best mean SNR
      (the relay), then the ``backhaul`` link (store and forward, the backhaul
      shared equally by this step's cloud tasks); round trips pay the radio
      RTT plus the backhaul RTT.
    * **GPU sharing** (processor sharing): the tasks an RSU takes in a step
      share its GPU; each runs at ``server_share = min(1, rsu_capacity_tasks /
      tasks on that RSU)`` (the cloud likewise with ``cloud_capacity_tasks``).
      The GPU is work conserving: its backlog grows by the full-speed compute
      of the tasks it took and drains by ``step_s`` per step; new tasks wait
      for it (``costs.with_queues``). The vehicle's own computer keeps a
      backlog too (``costs.with_queues``'s, minus ``step_s``).
    * **Handover**: a vehicle served by (or relayed through) an RSU that
      leaves the RSU's coverage before its result returns (extrapolating its
      current velocity) gets the result relayed through the backhaul by the
      RSU covering it at that moment: + backhaul RTT + ``handover_delay_s``.
      If no RSU covers it then, the task fails: a deadline miss.

    ## Action Space (per vehicle)

    ``Discrete(1 + (R + 1) S)`` (R RSUs, S ``split_fractions``): 0 runs the
    whole model locally; ``1 + t S + s`` offloads to target t (RSU 0..R-1, R =
    cloud) at split ``round(split_fractions[s] L)``. ``infos[agent]
    ["action_mask"]`` (int8 0/1, as in PettingZoo's classic envs; ``action_masks()``
    gives every vehicle's as bool) marks what is allowed now: local when the whole model
    fits the vehicle's memory; an RSU when it is in range and admits tasks
    (its GPU backlog at most ``rsu_admission_backlog_s``, by default the
    longest deadline: admission control keeps the queue bounded); the cloud
    when any RSU is in range; a split when its on-board part fits memory. At
    least one action is always allowed (local, when nothing else is).

    | action of a vehicle | served | ``fallback`` | reward |
    |---|---|---|---|
    | allowed | as chosen | False | as below |
    | masked (in range), missing or None; continuous: a NaN or inf entry | locally (if local is masked, the first allowed action), full power | True | minus ``w_invalid`` |
    | discrete: not an integer in [0, A-1]; continuous: not numbers of shape (R + 4,) | ValueError / TypeError naming ``actions['vehicle_i']`` | | |

    ``actions`` must be a dict {agent: action} of live agents (TypeError,
    ValueError naming an unknown key). Finite continuous entries outside
    [-1, 1] are clipped.

    With ``continuous=True``: ``Box(-1, 1, (R + 4,))``: a[0 : R+2] are
    target logits (local, RSU 0..R-1, cloud), the target being the argmax
    among allowed targets; a[R+2] -> split ``round((a + 1) / 2 (L - 1))`` for
    offloaded tasks (a split that does not fit memory falls back as above);
    a[R+3] -> transmit-power fraction ``0.1 + 0.45 (a + 1)`` (scales the
    uplink SNR and the radio's power). Infos then carry ``target_mask`` (R + 2)
    and ``split_mask`` (L + 1: the on-board part fits) instead of
    ``action_mask``; ``box_action(a)`` is the Box action served as discrete
    action ``a`` (its target, split and full power).

    ## Observation Space (per vehicle)

    ``Box(4 + 4 R + 5,)`` float32 (``Box(10 + 6 R,)`` with ``broadcast_intents``), clipped to the bounds
    below.

    | index | observation | min | max |
    |---|---|---|---|
    | 0, 1 | own position (x, y), normalised to the area | 0 | 1 |
    | 2, 3 | own velocity (vx, vy) / 40 m/s | -2 | 2 |
    | 4 .. 4+R-1 | distance to RSU j / rsu_range_m (<= 1: in range) | 0 | 10 |
    | 4+R .. | channel estimate to RSU j: mean uplink SNR (dB, path loss only) / 30 | -2 | 3 |
    | 4+2R .. | RSU j's tasks last step / N (broadcast load) | 0 | 1 |
    | 4+3R .. | RSU j's backlog / max deadline | 0 | 10 |
    | 4+4R | prompt tokens / max | 0 | 1 |
    | 5+4R | output tokens / max | 0 | 1 |
    | 6+4R | deadline / max deadline | 0 | 1 |
    | 7+4R | own backlog (on-board queue) / max deadline | 0 | 10 |
    | 8+4R | cloud tasks last step / N | 0 | 1 |
    | 9+4R .. 9+5R-1 | ``broadcast_intents`` only: the other vehicles intending RSU j this step / N | 0 | 1 |
    | 9+5R | ``broadcast_intents`` only: the other vehicles intending the cloud / N | 0 | 1 |
    | 10+5R .. 10+6R-1 | ``broadcast_intents`` only: their intended compute on RSU j (full speed) / max deadline | 0 | 10 |

    With ``broadcast_intents``, every vehicle's intent is the action
    ``predicted_rewards()`` ranks best for it alone (``greedy``'s choice, on
    last step's broadcast loads), as if broadcast (V2X beacons) before anyone
    decides; ``others_intents()`` gives what each vehicle hears. An intent
    commits no one: vehicles still choose freely.

    ``state()`` (for centralised critics) is every vehicle's observation
    concatenated, then the episode's elapsed fraction.

    ## Rewards

    Per vehicle: ``-(w_latency latency / deadline + w_energy energy /
    energy_scale_j + w_deadline_miss [missed or failed] + w_cloud [cloud] +
    w_invalid [fallback])``, then mixed: ``(1 - team_reward_weight) own +
    team_reward_weight mean(own)``. With ``difference_reward``, ``own`` in
    the first term becomes the vehicle's difference reward: own plus the
    sum over the other vehicles of their reward by the cost model with its
    task minus with it run locally (this step's fading and powers, no
    handover); ``infos[agent]["reward_own"]`` stays its own reward.

    ## Starting State

    Built-in mobility: uniform positions and speeds (``speed_mps``); a trace
    starts at its first frame. Empty queues and RSUs.

    ## Episode End

    No termination; every agent is truncated after ``max_cycles`` steps.

    ## Info (per vehicle, each step)

    ``action_mask`` (for the next step), the action served (``target``: 0
    local, 1..R RSU, R+1 cloud; ``rsu``: the RSU used, -1 if none; ``split``;
    ``fallback``), the cost breakdown (``INFO_KEYS``: latency and its parts,
    queue waits, handover delay, vehicle energy, uplink bytes, deadline,
    ``reward_own`` before team mixing), ``handover``, ``failed`` and
    ``deadline_met``.

    ## Arguments

    ``offload_env.vehicular.parallel_env(scenario=None, continuous=False,
    render_mode=None, **fields)``: any ``VehicularScenario`` field by keyword
    (a wrong type, a non-finite number or a value out of range is a
    TypeError / ValueError naming the field).
    ``render_mode="rgb_array"`` draws the road, the RSUs and their coverage,
    the vehicles coloured by their last choice; ``"ansi"`` returns a line of
    text per vehicle (position, last target, backlog) and ``"human"`` prints
    that text to stdout (``render()`` then returns None).

    ## Version History

    * v0: initial version; RSU admission control (``rsu_admission_backlog_s``) added before any published
      result (without it an RSU's backlog grew without bound: 40 s mean latency at 20 vehicles).
      ``broadcast_intents`` and ``difference_reward`` (off by default; off, v0 is unchanged) added later.
    """

    metadata = {"name": "vehicular_v0", "render_modes": ["human", "ansi", "rgb_array"], "render_fps": 2,
                "is_parallelizable": True}

    def __init__(self, scenario: VehicularScenario | None = None, *, continuous: bool = False,
                 render_mode: str | None = None, **fields: Any):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode: expected None or one of {self.metadata['render_modes']}, "
                             f"got {render_mode!r}")
        self.continuous = _validation.check_flag(continuous, "continuous")
        s = self.scenario = _check_scenario(_scenario_from_kwargs(scenario, fields))
        self.render_mode = render_mode
        self.max_cycles = int(s.max_cycles)
        self.admission_backlog_s = float(s.deadline_s[1] if s.rsu_admission_backlog_s is None
                                         else s.rsu_admission_backlog_s)
        self.model = _validation.load_profile(profiles.load_model, s.model, "Vehicular", "model")
        self.vehicle = _validation.load_profile(profiles.load_device, s.vehicle_device, "Vehicular", "vehicle_device")
        self.rsu_device = _validation.load_profile(profiles.load_device, s.rsu_device, "Vehicular", "rsu_device")
        self.cloud_device = _validation.load_profile(profiles.load_device, s.cloud_device, "Vehicular", "cloud_device")
        for side, device in (("vehicle", self.vehicle), ("rsu", self.rsu_device), ("cloud", self.cloud_device)):
            if s.dtype is None:  # each device runs the model under its runtime, in the scenario's format
                _validation.execution(device, getattr(s, f"{side}_runtime"), s.weight_format, None, "Vehicular",
                                      {"runtime": f"{side}_runtime", "weight_format": "weight_format"})
        self.link_profile = _validation.load_profile(profiles.load_link, s.link, "Vehicular", "link")
        self.backhaul_profile = _validation.load_profile(profiles.load_link, s.backhaul, "Vehicular", "backhaul")
        if self.link_profile.medium != "wireless":
            raise ValueError(f"Vehicular scenario field 'link': expected a wireless link profile, got {s.link!r}")
        self.link = LinkModel.from_profile(self.link_profile)
        self.backhaul_bps = float(LinkModel.from_profile(self.backhaul_profile).uplink_rate_bps(0.0))
        #: the vehicle with each server, in split form (what ``costs.request_parts`` builds per call)
        self._split_models = {side: costs.SplitModel(self.model, self.vehicle, device, **self._split_runs(side))
                              for side, device in (("rsu", self.rsu_device), ("cloud", self.cloud_device))}
        self.L = self.model.num_layers
        self.N, self.R = int(s.num_vehicles), int(s.num_rsus)
        self.splits = np.array(sorted({int(round(f * self.L)) for f in s.split_fractions}))
        self.splits = np.minimum(self.splits, self.L - 1)
        S = len(self.splits)
        # action table: 0 local; 1 + t S + s -> target t + 1 (1..R RSU, R+1 cloud), split s
        self.action_target = np.concatenate([[0], np.repeat(np.arange(1, self.R + 2), S)])
        self.action_split = np.concatenate([[self.L], np.tile(self.splits, self.R + 1)])
        self.num_actions = len(self.action_target)

        self.mobility = _build_mobility(s)
        self.rsu_pos = (np.asarray(s.rsu_positions, dtype=np.float64) if s.rsu_positions is not None
                        else _default_rsu_positions(s, self.mobility.bounds))
        (x0, y0), (x1, y1) = self.mobility.bounds
        self._area_lo = np.array([x0, y0])
        self._area_span = np.maximum(np.array([x1 - x0, y1 - y0]), 1.0)
        self.intents = bool(s.broadcast_intents)
        self._obs_scales = observations.vehicular_scales(self._area_lo, self._area_span, s.rsu_range_m, self.N,
                                                         s.prompt_tokens[3], s.output_tokens[3], s.deadline_s[1])

        R = self.R
        #: Where each observation field lies (see the class docstring).
        self.obs_slices = {"position": slice(0, 2), "velocity": slice(2, 4), "rsu_distance": slice(4, 4 + R),
                           "rsu_snr": slice(4 + R, 4 + 2 * R), "rsu_load": slice(4 + 2 * R, 4 + 3 * R),
                           "rsu_backlog": slice(4 + 3 * R, 4 + 4 * R), "prompt_tokens": 4 + 4 * R,
                           "output_tokens": 5 + 4 * R, "deadline": 6 + 4 * R, "own_backlog": 7 + 4 * R,
                           "cloud_load": 8 + 4 * R}
        if self.intents:
            self.obs_slices.update({"rsu_intents": slice(9 + 4 * R, 9 + 5 * R), "cloud_intents": 9 + 5 * R,
                                    "rsu_intent_work": slice(10 + 5 * R, 10 + 6 * R)})
        self.possible_agents = [f"vehicle_{i}" for i in range(self.N)]
        self.agents: list[str] = []
        self.obs_dim = len(observations.vehicular_fields(self.R, self.intents))
        low, high = self._observation_bounds()
        self.observation_spaces = {a: spaces.Box(low, high, dtype=np.float32) for a in self.possible_agents}
        if self.continuous:
            self.action_spaces = {a: spaces.Box(-1.0, 1.0, shape=(self.R + 4,), dtype=np.float32)
                                  for a in self.possible_agents}
        else:
            self.action_spaces = {a: spaces.Discrete(self.num_actions) for a in self.possible_agents}
        self.state_space = spaces.Box(np.append(np.tile(low, self.N), 0.0).astype(np.float32),
                                      np.append(np.tile(high, self.N), 1.0).astype(np.float32), dtype=np.float32)
        self._rng: np.random.Generator | None = None
        self._obs_now: np.ndarray | None = None
        self._heard_now: tuple[np.ndarray, np.ndarray] | None = None  # others_intents() of the current state
        self._last_target = np.zeros(self.N, dtype=np.int64)
        self._agent_index = {a: i for i, a in enumerate(self.possible_agents)}
        self._reset_state()

    # ------------------------------------------------------------------ spaces

    @property
    def num_rsus(self) -> int:
        return self.R

    @property
    def split_points(self) -> tuple[int, ...]:
        """The offloaded splits (layers run on board) that the discrete actions offer."""
        return tuple(int(k) for k in self.splits)

    def action_of(self, target: int, split_index: int = 0) -> int:
        """Discrete action of ``target`` (0 local, 1..R RSU, R+1 cloud) at ``split_points[split_index]``."""
        if not 0 <= target <= self.R + 1:
            raise ValueError(f"target: expected 0 (local), 1..{self.R} (RSU) or {self.R + 1} (cloud), got {target}")
        if not 0 <= split_index < len(self.splits):
            raise ValueError(f"split_index: expected 0..{len(self.splits) - 1}, got {split_index}")
        return 0 if target == 0 else 1 + (target - 1) * len(self.splits) + split_index

    def box_action(self, action: int) -> np.ndarray:
        """The Box action (``continuous=True``) that is served as discrete ``action``: its target's entry 1 and
        the other targets' -1, the split entry at its split, full transmit power."""
        idx = _validation.discrete_action(action, self.num_actions, "action")
        box = -np.ones(self.R + 4, dtype=np.float32)
        box[self.action_target[idx]] = 1.0
        if self.action_target[idx]:
            box[self.R + 2] = 2.0 * self.action_split[idx] / (self.L - 1) - 1.0  # _decode_actions' split, inverted
        box[self.R + 3] = 1.0
        return box

    def observation_space(self, agent: str) -> spaces.Box:
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Space:
        return self.action_spaces[agent]

    def _observation_bounds(self):
        return observations.bounds(observations.vehicular_fields(self.R, self.intents))

    @property
    def observation_names(self) -> tuple[str, ...]:
        """Per-vehicle observation entry names, in order."""
        return tuple(f[0] for f in observations.vehicular_fields(self.R, self.intents))

    @property
    def action_names(self) -> list[str] | None:
        if self.continuous:
            return None
        names = ["local"]
        for target in range(1, self.R + 2):
            where = "cloud" if target == self.R + 1 else f"rsu {target - 1}"
            names += [f"{where}, split {k}" for k in self.splits]
        return names

    @property
    def safe_action(self):
        """What a router serves when it cannot decide: run on board (the documented fallback)."""
        return [1.0] + [-1.0] * (self.R + 3) if self.continuous else 0

    def router_layout(self) -> tuple[dict, dict[str, np.ndarray]]:
        """What the edge router needs to build a vehicle's observation from a request (JSON, arrays)."""
        layout = {"builder": "vehicular", "n_rsus": int(self.R), "scales": self._obs_scales}
        if self.intents:
            layout["intents"] = True
        return layout, {}

    def router_request(self, agent: str) -> dict:
        """What vehicle ``agent`` knows now (the router's request fields), with its action mask."""
        if agent not in self.agents:
            raise ValueError(f"agent: expected a live agent ({', '.join(self.agents[:3])}, ...), got {agent!r}")
        i = self._agent_index[agent]
        req = {"agent": agent, "position_m": self.mobility.positions[i].tolist(),
               "velocity_mps": self.mobility.velocities[i].tolist(), "rsu_distance_m": self.distance[i].tolist(),
               "rsu_snr_db": self.mean_snr_db[i].tolist(), "rsu_tasks": np.asarray(self.rsu_tasks).tolist(),
               "rsu_backlog_s": np.asarray(self.rsu_backlog).tolist(), "prompt_tokens": float(self.prompt[i]),
               "output_tokens": float(self.output[i]), "deadline_s": float(self.deadline[i]),
               "own_backlog_s": float(self.edge_backlog[i]), "cloud_tasks": float(self.cloud_tasks)}
        if self.intents:
            tasks, work = self.others_intents()
            req["intent_tasks"], req["intent_work_s"] = tasks[i].tolist(), work[i].tolist()
        if not self.continuous:
            req["action_mask"] = self.action_masks()[i].astype(int).tolist()
        return req

    # ------------------------------------------------------------------ reset

    def _reset_state(self) -> None:
        self.cycles = 0
        self.edge_backlog = np.zeros(self.N)
        self.rsu_backlog = np.zeros(self.R)
        self.rsu_tasks = np.zeros(self.R)
        self.cloud_tasks = 0.0
        self.cloud_tasks_per_rsu = np.zeros(self.R)
        self._block_ptr = _BLOCK_STEPS

    def reset(self, seed: int | None = None, options: dict | None = None):
        if seed is not None or self._rng is None:
            self._rng, _ = seeding.np_random(seed)
        mob_seed, task_seed, fading_seed = self._rng.integers(0, 2**63, 3)
        self._mob_rng = np.random.default_rng(int(mob_seed))
        self._task_rng = np.random.default_rng(int(task_seed))
        self._fading_rng = np.random.default_rng(int(fading_seed))
        self.agents = self.possible_agents[:]
        self._reset_state()
        self._last_target[:] = 0
        self.mobility.reset(self._mob_rng)
        self._next_task()
        self._update_geometry()
        infos = {a: dict(m) for a, m in zip(self.agents, self._mask_infos())}
        return self._observations(), infos

    # ------------------------------------------------------------------ exogenous processes

    def _draw_block(self) -> None:
        """Draw and cost the next ``_BLOCK_STEPS`` steps of tasks for every vehicle at once."""
        s, rng, shape = self.scenario, self._task_rng, (_BLOCK_STEPS, self.N)

        self._prompt_block = lognormal_tokens(s.prompt_tokens, rng.standard_normal(shape))
        self._output_block = lognormal_tokens(s.output_tokens, rng.standard_normal(shape))
        self._deadline_block = rng.uniform(s.deadline_s[0], s.deadline_s[1], shape)
        rsu, cloud = (self._split_models[side].parts(self._prompt_block, self._output_block)
                      for side in ("rsu", "cloud"))
        # every part of both servers in one array (steps, server: 0 RSU / 1 cloud, part, N, L+1), so that a
        # step picks each vehicle's chosen (server, split) column with one index
        self._parts_block = np.stack([np.stack([getattr(p, k) for k in _PART_NAMES], axis=1) for p in (rsu, cloud)],
                                     axis=1)
        self._fits_block = rsu.feasible  # the on-board part fits the vehicle's memory (either server alike)
        self._block_ptr = 0

    def _split_runs(self, server: str) -> dict:
        """``costs.SplitModel`` keywords of the vehicle with ``server`` (rsu or cloud)."""
        s = self.scenario
        if s.dtype is not None:
            return {"dtype": s.dtype}
        return {"edge_runtime": s.vehicle_runtime, "edge_weight_format": s.weight_format,
                "server_runtime": getattr(s, f"{server}_runtime"), "server_weight_format": s.weight_format}

    def _next_task(self) -> None:
        if self._block_ptr >= _BLOCK_STEPS:
            self._draw_block()
        k = self._block_ptr
        self.prompt = self._prompt_block[k]
        self.output = self._output_block[k]
        self.deadline = self._deadline_block[k]
        self._fits = self._fits_block[k]  # (N, L+1)
        self._parts_now = self._parts_block[k]
        self._block_ptr += 1

    def _update_geometry(self) -> None:
        self._obs_now = self._heard_now = None  # the state moved: observations are computed anew
        diff = self.mobility.positions[:, None, :] - self.rsu_pos[None, :, :]
        self.distance = np.sqrt(np.sum(diff * diff, axis=-1))  # (N, R)
        self.in_range = self.distance <= self.scenario.rsu_range_m
        self.mean_snr_db = 10.0 * np.log10(np.maximum(self.link.uplink_snr(self.distance), 1e-30))
        best = np.where(self.in_range, self.mean_snr_db, -np.inf)
        self.relay = best.argmax(axis=1)  # the cloud's relay RSU (meaningful where any is in range)
        self.any_in_range = self.in_range.any(axis=1)

    # ------------------------------------------------------------------ masks and observations

    def action_masks(self) -> np.ndarray:
        """(N, A) bool: actions allowed now (never an empty row)."""
        fits = self._fits  # the on-board part fits, per split (N, L+1)
        admits = self.rsu_backlog <= self.admission_backlog_s  # admission control of each RSU's GPU queue
        reachable = np.concatenate([np.ones((self.N, 1), bool), self.in_range & admits, self.any_in_range[:, None]],
                                   axis=1)
        mask = reachable[:, self.action_target] & fits[:, self.action_split]
        empty = ~mask.any(axis=1)
        mask[empty, 0] = True
        return mask

    def target_masks(self) -> np.ndarray:
        """(N, R + 2) bool: targets (local, RSU 0..R-1, cloud) with at least one allowed action."""
        mask = self.action_masks()
        return np.stack([mask[:, self.action_target == t].any(axis=1) for t in range(self.R + 2)], axis=1)

    def _mask_infos(self) -> list[dict]:
        """Per vehicle: ``action_mask`` (discrete) or ``target_mask`` + ``split_mask`` (continuous), int8."""
        if not self.continuous:
            return [{"action_mask": m} for m in self.action_masks().astype(np.int8)]
        splits = self._fits.astype(np.int8)
        return [{"target_mask": t, "split_mask": sm} for t, sm in zip(self.target_masks().astype(np.int8), splits)]

    def _observations(self) -> dict[str, np.ndarray]:
        return {a: row for a, row in zip(self.agents, self._observation_array().copy())}

    def _observation_array(self) -> np.ndarray:
        """(N, D) observations of the current state, computed once per reset or step (``state`` reuses them)."""
        if self._obs_now is None:
            space = self.observation_spaces[self.possible_agents[0]]
            obs = np.empty((self.N, self.obs_dim), dtype=np.float32)
            self._obs_now = observations.vehicular_observation(
                obs, space.low, space.high, self._obs_scales, self.mobility.positions, self.mobility.velocities,
                self.distance, self.mean_snr_db, self.rsu_tasks, self.rsu_backlog, self.prompt, self.output,
                self.deadline, self.edge_backlog, self.cloud_tasks, *(self.others_intents() if self.intents else ()))
        return self._obs_now

    def state(self) -> np.ndarray:
        """Global state for centralised critics: all observations, then the elapsed fraction."""
        return np.append(self._observation_array().ravel(), np.float32(self.cycles / self.max_cycles)).astype(
            np.float32)

    # ------------------------------------------------------------------ costs

    def _candidate_costs(self, target, split, power, fading, tx_sharers, gpu_sharers, cloud_sharers):
        """Costs of candidate actions, one costs call for all vehicles: arrays (N, M) -> dict of (N, M).

        ``target``: 0 local, 1..R RSU, R+1 cloud; ``split``: layer; ``power``:
        transmit-power fraction; ``fading`` (N, R) power gains; the sharer
        counts (N, M) include the vehicle itself.
        """
        s, R = self.scenario, self.R
        rows = np.arange(self.N)[:, None]
        # counts of actions that do not use that resource are irrelevant: keep them valid (>= 1)
        tx_sharers, gpu_sharers = np.maximum(tx_sharers, 1.0), np.maximum(gpu_sharers, 1.0)
        cloud_sharers = np.maximum(cloud_sharers, 1.0)
        is_rsu = (target >= 1) & (target <= R)
        is_cloud = target == R + 1
        local = target == 0
        tx_rsu = np.where(is_rsu, target - 1, self.relay[:, None])  # the RSU the vehicle transmits to
        dist, fad = self.distance[rows, tx_rsu], fading[rows, tx_rsu]
        relay_bps = np.where(is_cloud, self.backhaul_bps, np.inf)
        # floor of 1 bit/s: only masked candidates (RSUs far out of range) come near it
        up = shared_rate_bps(np.maximum(self.link.uplink_rate_bps(dist, fad, power), 1.0), tx_sharers, relay_bps,
                             cloud_sharers)
        down = shared_rate_bps(np.maximum(self.link.downlink_rate_bps(dist, fad), 1.0), tx_sharers, relay_bps,
                               cloud_sharers)
        up, down = np.where(local, 1.0, up), np.where(local, 1.0, down)  # unused: nothing is sent at split L
        share = np.where(is_rsu, np.minimum(1.0, s.rsu_capacity_tasks / gpu_sharers),
                         np.where(is_cloud, np.minimum(1.0, s.cloud_capacity_tasks / cloud_sharers), 1.0))
        rtt = self.link_profile.base_rtt_s + np.where(is_cloud, self.backhaul_profile.base_rtt_s, 0.0)
        # the parts of each candidate's own (server, split) only: a last axis of one split, not all L+1
        chosen = self._parts_now[is_cloud.astype(np.intp), :, rows, split]  # (N, M, part)
        parts = costs.RequestParts(**{k: chosen[..., i:i + 1] for i, k in enumerate(_PART_NAMES)})
        sc = costs.link_costs(parts, self.vehicle, up, down, rtt, server_share=share, radio_power_scale=power,
                              check=False)
        server_backlog = np.where(is_rsu, self.rsu_backlog[np.clip(target - 1, 0, R - 1)], 0.0)
        qc = costs.with_queues(sc, self.vehicle, self.edge_backlog[:, None], server_backlog, split=split[..., None],
                               num_layers=self.L)

        shape = target.shape

        def at(a):  # (N, M, 1) or a broadcastable view -> (N, M)
            a = a[..., 0]
            return a if a.shape == shape else np.broadcast_to(a, shape)

        out = {"latency_s": at(qc.latency_s), "edge_wait_s": at(qc.edge_wait_s), "server_wait_s": at(qc.server_wait_s),
               "edge_compute_s": at(sc.edge_compute_s), "uplink_s": at(sc.uplink_s),
               "server_compute_s": at(sc.server_compute_s), "downlink_s": at(sc.downlink_s),
               "round_trip_s": at(sc.round_trip_s), "edge_energy_j": at(qc.edge_energy_j),
               "uplink_bytes": at(sc.uplink_bytes), "edge_backlog_s": at(qc.edge_backlog_s),
               "server_work_s": at(parts.server_compute_s)}
        out["tx_rsu"] = np.where(local, -1, tx_rsu)
        return out

    def _reward(self, latency, energy, deadline, missed, is_cloud, invalid=False):
        s = self.scenario
        return -(s.w_latency * latency / deadline + s.w_energy * energy / s.energy_scale_j
                 + s.w_deadline_miss * missed + s.w_cloud * is_cloud + s.w_invalid * invalid)

    def predicted_rewards(self) -> np.ndarray:
        """(N, A) reward of every action by the cost model, each vehicle alone against the current loads.

        Assumes the vehicle joins last step's broadcast loads (tasks per RSU
        and in the cloud, + itself), mean fading, full power, no handover;
        ignores what the others do now. Masked actions get -inf.
        """
        return self._predicted()[0]

    def others_intents(self) -> tuple[np.ndarray, np.ndarray]:
        """What vehicle i hears when every vehicle broadcasts its intent (the argmax of its
        ``predicted_rewards`` row): (N, R + 1) the other vehicles intending each RSU, then the cloud, and
        (N, R) their intended compute on each RSU in seconds at full speed. Computed once per state."""
        if self._heard_now is None:
            self._heard_now = self._hear_intents()
        return self._heard_now

    def _hear_intents(self) -> tuple[np.ndarray, np.ndarray]:
        reward, c = self._predicted()
        rows = np.arange(self.N)
        best = reward.argmax(axis=1)
        target = self.action_target[best]
        rsu_work = np.where((target >= 1) & (target <= self.R), c["server_work_s"][rows, best], 0.0)
        mine = np.zeros((self.N, self.R + 2))
        mine[rows, target] = 1.0
        tasks = mine[:, 1:].sum(axis=0) - mine[:, 1:]
        work = mine[:, 1:self.R + 1] * rsu_work[:, None]
        return tasks, work.sum(axis=0) - work

    def _predicted(self) -> tuple[np.ndarray, dict]:
        """``predicted_rewards`` and the costs dict of ``_candidate_costs`` it came from."""
        R, A = self.R, self.num_actions
        target = np.broadcast_to(self.action_target, (self.N, A))
        split = np.broadcast_to(self.action_split, (self.N, A))
        tx = np.where((target >= 1) & (target <= R), target - 1, self.relay[:, None])
        transmitting = self.rsu_tasks + self.cloud_tasks_per_rsu  # last step, per RSU
        c = self._candidate_costs(target, split, np.ones((self.N, A)), np.ones((self.N, R)),
                                  transmitting[tx] + 1.0, self.rsu_tasks[np.clip(target - 1, 0, R - 1)] + 1.0,
                                  np.full((self.N, A), self.cloud_tasks + 1.0))
        deadline = self.deadline[:, None]
        reward = self._reward(c["latency_s"], c["edge_energy_j"], deadline, c["latency_s"] > deadline,
                              target == R + 1)
        return np.where(self.action_masks(), reward, -np.inf), c

    def _sharing(self, target: np.ndarray) -> dict[str, np.ndarray]:
        """Who shares what under M joint actions, as ``step`` shares it: targets (N, M) -> per vehicle and
        column ``is_rsu``, ``is_cloud``, ``rsu_of`` and ``tx`` (the RSU whose GPU / radio it uses, -1 none),
        the sharer counts ``tx_sharers``, ``gpu_sharers``, ``cloud_sharers`` (itself included), and per
        column ``gpu_count`` (M, R) and ``cloud_count`` (M,)."""
        R, (N, M) = self.R, target.shape
        is_rsu, is_cloud = (target >= 1) & (target <= R), target == R + 1
        rsu_of = np.where(is_rsu, target - 1, -1)
        tx = np.where(is_rsu, rsu_of, np.where(is_cloud, self.relay[:, None], -1))
        block = np.arange(M) * (R + 1)  # column m counts in [m (R+1), (m+1)(R+1)); slot R: nothing (local)

        def counts(used: np.ndarray) -> np.ndarray:
            flat = (block + np.where(used >= 0, used, R)).ravel()
            return np.bincount(flat, minlength=M * (R + 1)).reshape(M, R + 1).astype(np.float64)

        tx_count, gpu_count = counts(tx), counts(rsu_of)
        cloud_count = is_cloud.sum(axis=0).astype(np.float64)
        cols = np.arange(M)[None, :]
        return {"is_rsu": is_rsu, "is_cloud": is_cloud, "rsu_of": rsu_of, "tx": tx,
                "tx_sharers": tx_count[cols, np.maximum(tx, 0)], "gpu_sharers": gpu_count[cols, np.maximum(rsu_of, 0)],
                "cloud_sharers": np.broadcast_to(cloud_count, (N, M)), "gpu_count": gpu_count[:, :R],
                "cloud_count": cloud_count}

    def _priced(self, target, split, power, fading) -> np.ndarray:
        """(N, M) own reward by the cost model of M joint choices (targets and splits (N, M), transmit powers
        (N, M), fading (N, R)), the vehicles of a column sharing as ``step`` shares."""
        sh = self._sharing(target)
        c = self._candidate_costs(target, split, power, fading, sh["tx_sharers"], sh["gpu_sharers"],
                                  sh["cloud_sharers"])
        deadline = self.deadline[:, None]
        return self._reward(c["latency_s"], c["edge_energy_j"], deadline, c["latency_s"] > deadline, sh["is_cloud"])

    def joint_rewards(self, joint: np.ndarray) -> np.ndarray:
        """(N, M) own reward of every vehicle under each of M joint actions, by the cost model.

        ``joint`` (N, M) holds discrete action indices: column m is one joint
        action (every vehicle's choice). The vehicles of a column share the
        links, RSU GPUs and the cloud as ``step`` shares them, on the current
        backlogs, at mean fading and full power, without handover. A vehicle
        whose action is masked gets -inf. Local tasks share nothing, so a
        vehicle set to local is absent for the others.
        """
        joint = np.asarray(joint, dtype=np.int64)
        if joint.ndim != 2 or joint.shape[0] != self.N:
            raise ValueError(f"joint: expected an (N={self.N}, M) array of action indices, got shape {joint.shape}")
        if joint.size and (joint.min() < 0 or joint.max() >= self.num_actions):
            raise ValueError(f"joint: action indices must be in [0, {self.num_actions - 1}]")
        N, M = joint.shape
        reward = self._priced(self.action_target[joint], self.action_split[joint], np.ones((N, M)),
                              np.ones((N, self.R)))
        allowed = np.take_along_axis(self.action_masks(), joint, axis=1)
        return np.where(allowed, reward, -np.inf)

    # ------------------------------------------------------------------ step

    def _externalities(self, target, split, power, fading) -> np.ndarray:
        """(N,) what each vehicle's task did to the others' rewards: the sum over the others of their reward
        by the cost model under the joint choice minus under it with that vehicle local (absent for them)."""
        alone = np.eye(self.N, dtype=bool)
        joint = np.concatenate([target[:, None], np.where(alone, 0, target[:, None])], axis=1)  # 0: as chosen
        splits = np.concatenate([split[:, None], np.where(alone, self.L, split[:, None])], axis=1)
        reward = self._priced(joint, splits, np.broadcast_to(power[:, None], joint.shape), fading)
        effect = reward[:, :1] - reward[:, 1:]  # [k, m]: vehicle k's reward with m as chosen minus m local
        effect[alone] = 0.0
        return effect.sum(axis=0)

    def _decode_actions(self, actions: dict, mask: np.ndarray):
        """(target served, split served, transmit-power fraction, invalid) for every vehicle."""
        N, R = self.N, self.R
        invalid = np.zeros(N, dtype=bool)
        power = np.ones(N)
        if not self.continuous:
            idx = np.zeros(N, dtype=np.int64)
            for i, agent in enumerate(self.possible_agents):
                a = actions.get(agent)
                if a is None:  # missing: falls back
                    invalid[i] = True
                else:
                    idx[i] = _validation.discrete_action(a, self.num_actions, f"actions[{agent!r}]")
            invalid |= ~mask[np.arange(N), idx]
            split = self.action_split[idx]
        else:
            vec = np.zeros((N, R + 4))
            for i, agent in enumerate(self.possible_agents):
                a = actions.get(agent)
                arr = None if a is None else _validation.box_action(a, (R + 4,), f"actions[{agent!r}]")
                if arr is not None and np.isfinite(arr).all():
                    vec[i] = np.clip(arr, -1.0, 1.0)
                else:  # missing or NaN / inf: falls back
                    invalid[i] = True
            allowed_targets = self.target_masks()
            target = np.where(allowed_targets, vec[:, :R + 2], -np.inf).argmax(axis=1)
            split = np.where(target == 0, self.L, np.rint((vec[:, R + 2] + 1.0) / 2.0 * (self.L - 1)).astype(np.int64))
            power = 0.1 + 0.45 * (vec[:, R + 3] + 1.0)
            invalid |= ~self._fits[np.arange(N), split]
            idx = None
            self._cont_target = target
        fallback = np.where(mask[:, 0], 0, mask.argmax(axis=1))
        if self.continuous:
            target = np.where(invalid, self.action_target[fallback], self._cont_target)
            split = np.where(invalid, self.action_split[fallback], split)
            power = np.where(invalid, 1.0, power)
        else:
            idx = np.where(invalid, fallback, idx)
            target, split = self.action_target[idx], self.action_split[idx]
        return target, split, power, invalid

    def step(self, actions: dict):
        if not self.agents:
            raise RuntimeError("step() called with no live agents: call reset() first")
        if not isinstance(actions, Mapping):
            raise TypeError(f"actions: expected a dict {{agent: action}}, got {type(actions).__name__}")
        for agent in actions:
            if agent not in self._agent_index:
                raise ValueError(f"actions: unknown agent {agent!r}; live agents are {', '.join(self.agents)}")
        s, N, R = self.scenario, self.N, self.R
        mask = self.action_masks()
        deadline = self.deadline
        target, split, power, invalid = self._decode_actions(actions, mask)
        sh = self._sharing(target[:, None])
        is_rsu, is_cloud, rsu_of, tx = (sh[k][:, 0] for k in ("is_rsu", "is_cloud", "rsu_of", "tx"))
        gpu_count, cloud_count = sh["gpu_count"][0], float(sh["cloud_count"][0])
        fading = self.link.sample_fading(self._fading_rng, (N, R)) if s.fading else np.ones((N, R))
        c = self._candidate_costs(target[:, None], split[:, None], power[:, None], fading, sh["tx_sharers"],
                                  sh["gpu_sharers"], sh["cloud_sharers"])
        c = {k: v[:, 0] for k, v in c.items()}
        latency = c["latency_s"]

        # handover: the result returns after the vehicle left its RSU's coverage
        pos, vel = self.mobility.positions, self.mobility.velocities
        offloaded = tx >= 0
        exit_s = mobility.time_to_exit_s(pos, vel, self.rsu_pos, s.rsu_range_m)[np.arange(N), np.maximum(tx, 0)]
        handover = offloaded & (latency > exit_s)
        failed = np.zeros(N, dtype=bool)
        handover_s = np.zeros(N)
        if handover.any():
            end = pos + vel * latency[:, None]
            covered = mobility.time_to_exit_s(end, np.zeros_like(end), self.rsu_pos, s.rsu_range_m).max(axis=1) > 0
            failed = handover & ~covered
            handover_s = np.where(handover & covered, self.backhaul_profile.base_rtt_s + s.handover_delay_s, 0.0)
            latency = latency + handover_s
        met = (latency <= deadline) & ~failed
        own = self._reward(latency, c["edge_energy_j"], deadline, ~met, is_cloud, invalid)
        w = s.team_reward_weight
        paid = own + self._externalities(target, split, power, fading) if s.difference_reward else own
        mixed = (1.0 - w) * paid + w * own.mean()

        # the state after serving: queues drain for one step, loads are broadcast
        self.edge_backlog = np.maximum(c["edge_backlog_s"] - s.step_s, 0.0)
        work = np.bincount(rsu_of[is_rsu], weights=c["server_work_s"][is_rsu], minlength=R)
        self.rsu_backlog = np.maximum(self.rsu_backlog + work - s.step_s, 0.0)
        self.rsu_tasks = gpu_count
        self.cloud_tasks = cloud_count
        self.cloud_tasks_per_rsu = np.bincount(self.relay[is_cloud], minlength=R).astype(np.float64)
        self._last_target = target
        self.cycles += 1
        self.mobility.step(s.step_s, self._mob_rng)
        self._next_task()
        self._update_geometry()
        next_masks = self._mask_infos()

        agents = self.agents
        truncated = self.cycles >= self.max_cycles
        rewards = dict(zip(agents, mixed.tolist()))
        columns = {"target": target.tolist(), "rsu": np.where(offloaded, tx, -1).tolist(), "split": split.tolist(),
                   "fallback": invalid.tolist(), "handover": handover.tolist(), "failed": failed.tolist(),
                   "deadline_met": met.tolist(), "latency_s": latency.tolist(), "handover_s": handover_s.tolist(),
                   "deadline_s": deadline.tolist(), "reward_own": own.tolist()}
        for k in INFO_KEYS:
            if k not in columns:
                columns[k] = c[k].tolist()
        names = list(columns)
        infos = {}
        for i, (agent, values) in enumerate(zip(agents, zip(*columns.values()))):
            info = dict(zip(names, values))
            info.update(next_masks[i])
            infos[agent] = info
        observations = self._observations()
        terminations = dict.fromkeys(agents, False)
        truncations = dict.fromkeys(agents, truncated)
        if truncated:
            self.agents = []
        return observations, rewards, terminations, truncations, infos

    # ------------------------------------------------------------------ render

    def render(self):
        if self.render_mode is None:
            import gymnasium

            gymnasium.logger.warn("render() called with render_mode=None")
            return None
        if self.render_mode == "rgb_array":
            return _render_rgb(self)
        text = self._render_text()
        if self.render_mode == "human":
            print(text, end="")
            return None
        return text

    def _render_text(self) -> str:
        """One line per vehicle: position, the target of its last task, its on-board backlog."""
        R, names = self.R, ["local"] + [f"RSU {j}" for j in range(self.R)] + ["cloud"]
        lines = [f"step {self.cycles}/{self.max_cycles}: RSU backlog (s) "
                 + " ".join(f"{b:.2f}" for b in self.rsu_backlog) + f"; cloud tasks {self.cloud_tasks:.0f}"]
        for i, agent in enumerate(self.possible_agents):
            x, y = self.mobility.positions[i]
            lines.append(f"{agent:>12} at ({x:8.1f}, {y:7.1f}) m -> {names[min(int(self._last_target[i]), R + 1)]:<7} "
                         f"backlog {self.edge_backlog[i]:.2f} s")
        return "\n".join(lines) + "\n"

    def close(self) -> None:
        pass


def _render_rgb(env: VehicularParallelEnv) -> np.ndarray:
    """The road, the RSUs with their coverage, the vehicles coloured by their last target."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Circle

    s = env.scenario
    fig = Figure(figsize=(8, 4), dpi=80)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    (x0, y0), (x1, y1) = env.mobility.bounds
    if s.road == "highway":
        ax.axhspan(y0, y1, color="0.85", zorder=0)
        ax.axhline(0.0, color="white", linewidth=1, zorder=0)
    elif s.road == "grid":
        for v in np.arange(s.grid_blocks + 1) * s.grid_block_m:
            ax.plot([v, v], [y0, y1], color="0.8", linewidth=3, zorder=0)
            ax.plot([x0, x1], [v, v], color="0.8", linewidth=3, zorder=0)
    palette = matplotlib.colormaps["tab10"]
    for j, (x, y) in enumerate(env.rsu_pos):
        ax.add_patch(Circle((x, y), s.rsu_range_m, color=palette(j % 10), alpha=0.12, zorder=1))
        ax.plot(x, y, marker="^", markersize=10, color=palette(j % 10), zorder=3)
    target = env._last_target
    colours = [("0.4" if t == 0 else "black" if t == env.R + 1 else palette((t - 1) % 10)) for t in target]
    pos = env.mobility.positions
    ax.scatter(pos[:, 0], pos[:, 1], c=colours, s=30, edgecolors="white", zorder=4)
    ax.set_xlim(min(x0, env.rsu_pos[:, 0].min()) - s.rsu_range_m * 0.1,
                max(x1, env.rsu_pos[:, 0].max()) + s.rsu_range_m * 0.1)
    ax.set_ylim(min(y0, env.rsu_pos[:, 1].min()) - s.rsu_range_m, max(y1, env.rsu_pos[:, 1].max()) + s.rsu_range_m)
    ax.set_aspect("equal")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.set_title(f"step {env.cycles}: grey local, RSU colour, black cloud")
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
