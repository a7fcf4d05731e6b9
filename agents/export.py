"""Export a trained agent to a pickle-free artifact for the edge router (:mod:`offload_env.router`).

``export(agent, path, env_id=..., env_kwargs=...)`` writes a folder of
``params.npz`` (the policy's arrays) and ``manifest.json`` (the env and its
scenario, the observation layout, the action mapping, the decision rule as
data, the agent's family and hyper-parameters, and the sha256 of every
file); :mod:`offload_env.router.artifact` documents the format.

| agent | exported as |
|---|---|
| SB3 DDPG, TD3 | the actor MLP, ``box`` output: tanh, unscaled to the action bounds, clipped (as SB3's ``predict``) |
| SB3 MaskablePPO | the policy MLP and action head, ``argmax`` after the action mask |
| SB3 PPO, DQN | the policy MLP and action head (the Q-network for DQN), ``argmax`` |
| bandits | ``linear_scores``: LinUCB's and cost-aware LinUCB's scores; LinTS and epsilon-greedy by their greedy rule |
| quality router | ``quality_router``: its deterministic rule (its link, per-topic term table, ridge terms, cost model, cost weight and pacing price); the request carries the topic |
| MADRL (MAPPO, IPPO, FedPPO) | the actor (shared with a one-hot agent id, or one per agent), ``argmax`` after the mask |
| MADDPG | the actor (shared or one per agent), ``box`` output: tanh in [-1, 1] |
| deep_aif (discrete actions, any horizon) | ``ensemble_efe``: its ensemble, preference and information floor; the rollout's state change past the first step; the Box variant (CEM) does not export |
| pymdp_aif | ``pomdp_efe``: its binning of the observation, A (its Dirichlet counts normalised, as it uses them), B, C, D, the policies, pymdp's weights of the information gain about A; the choice's target action |
| RLlib PPO | its actor (RLlib's encoder and policy head, shared by every agent of a PettingZoo env), ``argmax`` after the mask |

SB3's observation normalisation is frozen into the artifact. Exporting
needs torch for SB3 and MADRL agents (to read their weights) and pymdp for
pymdp_aif; loading the artifact never does.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

from offload_env.router.artifact import write_artifact

from .protocol import ExportNotAvailable

__all__ = ["export", "policy_of", "env_layout"]


def _torch_layers(modules, arrays: dict, prefix: str) -> list[dict]:
    """The manifest layers of a torch ``nn.Sequential`` (Linear, LayerNorm, activations, Flatten)."""
    from torch import nn

    simple = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.ELU: "elu", nn.SiLU: "silu",
              nn.Identity: "identity"}
    layers: list[dict] = []
    for i, m in enumerate(modules):
        key = f"{prefix}{len(layers)}"
        if isinstance(m, nn.Linear):
            arrays[f"{key}.weight"] = m.weight.detach().cpu().numpy().T.astype(np.float32)
            bias = m.bias.detach().cpu().numpy() if m.bias is not None else np.zeros(m.out_features)
            arrays[f"{key}.bias"] = bias.astype(np.float32)
            layers.append({"op": "linear", "weight": f"{key}.weight", "bias": f"{key}.bias"})
        elif isinstance(m, nn.LayerNorm):
            if len(m.normalized_shape) != 1 or not m.elementwise_affine:
                raise ExportNotAvailable(f"{prefix}{i}: only a 1-d LayerNorm with affine weights exports")
            arrays[f"{key}.weight"] = m.weight.detach().cpu().numpy().astype(np.float32)
            arrays[f"{key}.bias"] = m.bias.detach().cpu().numpy().astype(np.float32)
            layers.append({"op": "layer_norm", "weight": f"{key}.weight", "bias": f"{key}.bias", "eps": float(m.eps)})
        elif isinstance(m, nn.LeakyReLU) and m.negative_slope == 0.01:
            layers.append({"op": "leaky_relu"})
        elif type(m) in simple:
            layers.append({"op": simple[type(m)]})
        elif isinstance(m, nn.Flatten):
            continue
        elif isinstance(m, nn.Sequential):
            layers += _torch_layers(list(m), arrays, f"{key}.")
        else:
            raise ExportNotAvailable(f"{prefix}{i}: no export for the layer {type(m).__name__}")
    return layers


def _sb3_policy(agent) -> tuple[dict, dict]:
    from stable_baselines3.common.torch_layers import FlattenExtractor

    model, arrays = agent.model, {}
    inp: dict[str, Any] = {}
    norm = agent.obs_normalization
    if norm is not None:
        arrays["input.mean"], arrays["input.var"] = norm.mean.astype(np.float64), norm.var.astype(np.float64)
        inp["normalize"] = {"mean": "input.mean", "var": "input.var", "clip": norm.clip, "epsilon": norm.epsilon}
    if agent.algo in ("ddpg", "td3"):
        if not isinstance(model.actor.features_extractor, FlattenExtractor):
            raise ExportNotAvailable(f"{agent.name}: only SB3's flatten feature extractor exports")
        layers = _torch_layers(list(model.actor.mu), arrays, "actor.")
        if layers[-1]["op"] != "tanh":
            raise ExportNotAvailable(f"{agent.name}: expected the actor to end in tanh")
        space = model.action_space
        output = {"type": "box", "squash": "tanh", "low": space.low.tolist(), "high": space.high.tolist()}
        return {"type": "mlp", "input": inp, "layers": layers[:-1], "output": output}, arrays
    policy = model.policy
    if agent.algo == "dqn":
        net = model.q_net
        extractor, modules = net.features_extractor, list(net.q_net)
    else:
        extractor = policy.pi_features_extractor if hasattr(policy, "pi_features_extractor") else \
            policy.features_extractor
        modules = [*policy.mlp_extractor.policy_net, policy.action_net]
    if not isinstance(extractor, FlattenExtractor):
        raise ExportNotAvailable(f"{agent.name}: only SB3's flatten feature extractor exports")
    layers = _torch_layers(modules, arrays, "policy.")
    output = {"type": "argmax", "mask": agent.algo == "maskable_ppo"}
    return {"type": "mlp", "input": inp, "layers": layers, "output": output}, arrays


def _bandit_policy(agent) -> tuple[dict, dict]:
    from . import bandits

    router = agent.router
    if type(router).__name__ == "QualityRouter":  # its deterministic rule, without the Thompson draw
        pacing = router.price(0.0)
        return {"type": "quality_router", "link": router.link, "n_topics": router.n_groups,
                "cost_weight": router.cost_weight, "pacing_price": pacing,
                **{k: k for k in ("topic_term", "theta", "theta_cost", "mean_cost")}}, router.decision_arrays()
    if not isinstance(router, bandits._Ridge):
        raise ExportNotAvailable(f"{agent.name}: no export for the router {type(router).__name__}")
    router.flush()  # exact: the buffered rank-1 terms folded into A_inv
    arrays = {"theta": router.theta.copy()}
    spec: dict[str, Any] = {"type": "linear_scores", "theta": "theta", "alpha": 0.0, "price": 0.0}
    if isinstance(router, bandits.LinUCB):
        arrays["A_inv"] = router.A_inv.copy()
        spec.update(A_inv="A_inv", alpha=float(router.alpha))
    if isinstance(router, bandits.CostAwareLinUCB):
        arrays["theta_cost"] = router.theta_cost.copy()
        spec.update(theta_cost="theta_cost", price=float(router.nu) / router.budget_per_step)
    return spec, arrays


def _madrl_policy(agent) -> tuple[dict, dict]:
    from .madrl.common import GroupedMLP

    arrays: dict[str, np.ndarray] = {}
    inp: dict[str, Any] = {}
    if agent.config.agent_id:
        inp["agent_id"] = {"n_agents": agent.n_agents}
    output: dict[str, Any] = {"type": "argmax", "mask": True}
    if agent.algo == "maddpg":  # a = tanh(actor(o)) in [-1, 1]: the box head with the identity unscaling
        output = {"type": "box", "squash": "tanh", "low": [-1.0] * agent.action_dim,
                  "high": [1.0] * agent.action_dim}
    spec: dict[str, Any] = {"type": "mlp", "input": inp, "agents": list(agent.agent_names), "output": output}
    actor = agent.actor
    if isinstance(actor, GroupedMLP):
        layers: list[dict] = []
        if actor.norm is not None:
            layers += _torch_layers([actor.norm], arrays, "actor.norm.")
        last = len(actor.weights) - 1
        for i, (w, b) in enumerate(zip(actor.weights, actor.biases)):
            arrays[f"actor.{i}.weight"] = w.detach().cpu().numpy().astype(np.float32)
            arrays[f"actor.{i}.bias"] = b.detach().cpu().numpy().astype(np.float32)
            layers.append({"op": "linear", "weight": f"actor.{i}.weight", "bias": f"actor.{i}.bias"})
            if i < last:
                layers.append({"op": "relu"})
        spec.update(groups=agent.n_agents, layers=layers)
    else:
        spec["layers"] = _torch_layers(list(actor), arrays, "actor.")
    return spec, arrays


def _aif_policy(agent) -> tuple[dict, dict]:
    """deep_aif on discrete actions, at any horizon: its ensemble and the EFE rule (``ensemble_efe``)."""
    cfg, model = agent.config, agent.model
    if not agent.discrete:
        raise ExportNotAvailable(f"{agent.name}: deep_aif on a Box action space decides by the cross-entropy "
                                 "method, whose candidate sequences are drawn from the agent's own random generator "
                                 "(its state moves with every decision): a router serving requests in any order "
                                 "cannot reproduce them; only discrete actions export")
    if not agent._fitted:
        raise ExportNotAvailable(f"{agent.name}: deep_aif is not fitted yet (it acts uniformly at random until "
                                 f"learning_starts = {cfg.learning_starts} steps): nothing to export")
    k, n_out = len(agent.outcomes.names), model.n_out

    def numpy(t):
        return t.detach().cpu().numpy().astype(np.float32)
    arrays = {f"ensemble.{i}.weight": numpy(layer.weight) for i, layer in enumerate(model.layers)}
    arrays.update({f"ensemble.{i}.bias": numpy(layer.bias) for i, layer in enumerate(model.layers)})
    head_w, head_b = numpy(model.head.weight), numpy(model.head.bias)
    arrays["ensemble.head.weight"] = np.concatenate([head_w[..., :k], head_w[..., n_out:n_out + k]], axis=-1)
    arrays["ensemble.head.bias"] = np.concatenate([head_b[..., :k], head_b[..., n_out:n_out + k]], axis=-1)
    arrays.update({"ensemble.x_mean": numpy(model.x_mean), "ensemble.x_std": numpy(model.x_std),
                   "ensemble.y_mean": numpy(model.y_mean)[:k], "ensemble.y_std": numpy(model.y_std)[:k],
                   "ensemble.max_logvar": numpy(model.max_logvar)[:k],
                   "ensemble.min_logvar": numpy(model.min_logvar)[:k],
                   "ensemble.preference": numpy(agent.preference),
                   "ensemble.floor": ((cfg.information_floor * numpy(model.y_std)[:k]) ** 2).astype(np.float32)})
    if cfg.horizon > 1:  # the predicted change of the observation carries the rollout to the next step
        arrays.update({"ensemble.delta_weight": head_w[..., k:n_out], "ensemble.delta_bias": head_b[..., k:n_out],
                       "ensemble.delta_mean": numpy(model.y_mean)[k:], "ensemble.delta_std": numpy(model.y_std)[k:],
                       "ensemble.state_low": agent.obs_low.astype(np.float32),
                       "ensemble.state_high": agent.obs_high.astype(np.float32)})
    spec = {"type": "ensemble_efe", "n_actions": agent.n_actions, "epistemic_weight": float(cfg.epistemic_weight),
            "horizon": int(cfg.horizon),
            "outcomes": list(agent.outcomes.names),
            "layers": [{"weight": f"ensemble.{i}.weight", "bias": f"ensemble.{i}.bias"}
                       for i in range(len(model.layers))],
            "head_weight": "ensemble.head.weight", "head_bias": "ensemble.head.bias",
            **{key: f"ensemble.{key}" for key in ("x_mean", "x_std", "y_mean", "y_std", "max_logvar", "min_logvar",
                                                  "preference", "floor")}}
    if cfg.horizon > 1:
        spec.update({key: f"ensemble.{key}" for key in ("delta_weight", "delta_bias", "delta_mean", "delta_std",
                                                          "state_low", "state_high")})
    return spec, arrays


def _pymdp_policy(agent) -> tuple[dict, dict]:
    """pymdp_aif: its binning, A (as it uses them), B, C, D, policies and the parameter-information weights
    (pymdp's own ``spm_wnorm`` of pA), for ``pomdp_efe``."""
    from pymdp.maths import spm_wnorm

    from offload_env.router.bins import Argmax, Bins

    model, pa = agent.model, agent._agent
    readers = [read for _, read, _ in model.context]
    if model.targets is None or not all(isinstance(r, (Bins, Argmax)) for r in readers):
        raise ExportNotAvailable(f"{agent.name}: its model's context readers or choices are code, not data "
                                 "(offload_env.router.bins and DiscreteModel.targets export)")
    if pa.inference_algo != "fpi" or not pa.use_utility or pa.use_inductive or pa.pB is not None:
        raise ExportNotAvailable(f"{agent.name}: pomdp_efe computes fixed-point inference and utility plus "
                                 "information gain, without inductive planning or learned B")

    def one(x):  # the batch of one
        return np.asarray(x[0], dtype=np.float32)
    arrays = {f"pomdp.A.{m}": one(a) for m, a in enumerate(pa.A)}
    arrays.update({f"pomdp.B.{f}": one(b) for f, b in enumerate(pa.B)})
    arrays.update({f"pomdp.C.{m}": one(c) for m, c in enumerate(pa.C)})
    arrays.update({f"pomdp.D.{f}": one(d) for f, d in enumerate(pa.D)})
    arrays["pomdp.policies"] = np.asarray(pa.policies.policy_arr, dtype=np.int64)
    arrays["pomdp.targets"] = np.asarray(model.targets, dtype=np.float64)
    spec: dict[str, Any] = {
        "type": "pomdp_efe", "obs_dim": agent.obs_dim, "n_actions": agent.n_actions,
        "context": [dict(r.spec(), name=name) for (name, r, _) in model.context],
        "A": [f"pomdp.A.{m}" for m in range(len(pa.A))], "A_dependencies": [list(d) for d in pa.A_dependencies],
        "B": [f"pomdp.B.{f}" for f in range(len(pa.B))], "B_dependencies": [list(d) for d in pa.B_dependencies],
        "C": [f"pomdp.C.{m}" for m in range(len(pa.C))], "D": [f"pomdp.D.{f}" for f in range(len(pa.D))],
        "policies": "pomdp.policies", "targets": "pomdp.targets", "pending": 0, "num_iter": int(pa.num_iter),
        "states_info_gain": bool(pa.use_states_info_gain), "wA": None,
        "outcomes": [o.name for o in model.outcomes], "gamma": float(agent.config.gamma)}
    if pa.use_param_info_gain:  # the weights of the information gain about A: pymdp's, as the agent scores them
        for m, p in enumerate(pa.pA):
            arrays[f"pomdp.wA.{m}"] = np.asarray(spm_wnorm(p[0]) * (p[0] > 0), dtype=np.float32)
        spec["wA"] = [f"pomdp.wA.{m}" for m in range(len(pa.pA))]
    return spec, arrays


def policy_of(agent) -> tuple[dict, dict[str, np.ndarray], dict]:
    """(policy section, arrays, agent section) of ``agent``'s manifest; ExportNotAvailable if it has none."""
    from .bandit_agent import BanditAgent
    from .registry import AGENTS

    algo = getattr(agent, "algo", None)
    family = AGENTS[algo].kind if algo in AGENTS else None
    if isinstance(agent, BanditAgent):
        spec, arrays = _bandit_policy(agent)
        hyper = dict(agent.params)
    elif family == "sb3":
        spec, arrays = _sb3_policy(agent)
        hyper = dict(agent.hyperparams, normalize_obs=agent.normalize_obs)
    elif family == "madrl":
        spec, arrays = _madrl_policy(agent)
        hyper = dict(dataclasses.asdict(agent.config), normalize_obs=agent.normalize_obs)
    elif family == "rllib":  # the actor it acts with already (agents.rllib.agent): no Ray, no torch
        spec, arrays = agent.policy_spec, dict(agent.policy_arrays)
        hyper = dataclasses.asdict(agent.config)
    elif family == "aif":
        spec, arrays = _aif_policy(agent)
        hyper = dataclasses.asdict(agent.config)
    elif family == "pymdp":
        spec, arrays = _pymdp_policy(agent)
        hyper = dataclasses.asdict(agent.config)
    else:
        raise ExportNotAvailable(f"{getattr(agent, 'name', agent)!r}: no export for agents of type "
                                 f"{type(agent).__name__}")
    info = {"family": family, "algo": algo, "name": agent.name, "seed": getattr(agent, "seed", None),
            "num_timesteps": int(agent.num_timesteps), "hyperparameters": hyper}
    return spec, arrays, info


def _space_section(space) -> dict:
    from gymnasium import spaces

    if isinstance(space, spaces.Discrete):
        return {"type": "discrete", "n": int(space.n)}
    if isinstance(space, spaces.Box):
        return {"type": "box", "low": space.low.tolist(), "high": space.high.tolist()}
    raise ExportNotAvailable(f"no export for the action space {space}")


def env_layout(env_id: str, env_kwargs: dict | None = None) -> tuple[dict, dict, dict[str, np.ndarray]]:
    """(observation section, action section, arrays) of an env: the layout an artifact's policy reads and
    writes, the env's own request layout for the router (``router_layout``) and its ``safe_action``."""
    import gymnasium as gym

    import offload_env

    kwargs = dict(env_kwargs or {})
    if offload_env.is_parallel_env(env_id):
        env = offload_env.make_parallel(env_id, **kwargs)
        first = env.possible_agents[0]
        obs_space, act_space, base = env.observation_space(first), env.action_space(first), env
    else:
        env = gym.make(env_id, **kwargs)
        obs_space, act_space, base = env.observation_space, env.action_space, env.unwrapped
    try:
        names = list(getattr(base, "observation_names", None) or
                     [f"obs_{i}" for i in range(int(np.prod(obs_space.shape)))])
        observation = {"names": names, "low": obs_space.low.tolist(), "high": obs_space.high.tolist()}
        arrays: dict[str, np.ndarray] = {}
        if hasattr(base, "router_layout"):
            observation["router"], arrays = base.router_layout()
        action = _space_section(act_space)
        if getattr(base, "action_names", None) is not None:
            action["names"] = list(base.action_names)
        if getattr(base, "safe_action", None) is not None:
            action["safe_default"] = base.safe_action
    finally:
        env.close()
    return observation, action, arrays


def export(agent, path: str | os.PathLike, *, env_id: str, env_kwargs: dict | None = None) -> Path:
    """Write ``agent``'s artifact folder at ``path`` for the env ``env_id`` (with ``env_kwargs``); return it."""
    from offload_env import __version__

    spec, arrays, info = policy_of(agent)
    observation, action, env_arrays = env_layout(env_id, env_kwargs)
    arrays.update(env_arrays)
    manifest = {"project_version": __version__, "env": {"id": env_id, "kwargs": dict(env_kwargs or {})},
                "observation": observation, "action": action, "policy": spec, "agent": info}
    return write_artifact(path, manifest, arrays)
