"""LayerSplit's budget-aware references: the paced full-information reference and the observation-only pacing."""

from __future__ import annotations

import numpy as np
import pytest

from agents.baselines import (AllServer, BudgetReference, Greedy, Oracle, Pacing, calibrate_energy_price,
                              evaluate)
from offload_env.envs.layer_split import PRESETS, LayerSplitEnv

#: how far (a share of the reference's cost) another policy may beat the reference on the same seeds
TOLERANCE = 0.02
#: the least all-server cost / reference cost of every preset on the test's 4 episodes
HEADROOM_4 = 1.15


def _make(preset: str):
    return lambda: LayerSplitEnv(scenario=preset)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_budget_is_feasible_and_the_reference_is_not_beaten(preset):
    make = _make(preset)
    policies = [BudgetReference(make, episodes=3), Pacing(make, episodes=3), AllServer(), Greedy(), Oracle()]
    frames = {p.name: evaluate(p, make, episodes=4, seed=1000) for p in policies}
    reference = frames.pop("reference")
    assert (reference["requests"] - reference["steps"]).sum() == 0, preset  # the budget lasts a sensible policy
    for name, frame in frames.items():
        value, best = frame["return"].mean(), reference["return"].mean()
        assert best >= value - TOLERANCE * abs(best), (preset, name, value, best)
    # headroom: all-server (the best fixed split in every preset) costs at least 1.2x the reference over 20
    # episodes (benchmarks/headroom.py); over these 4, at least HEADROOM_4
    headroom = frames["all-server"]["return"].mean() / reference["return"].mean()
    assert headroom >= HEADROOM_4, (preset, headroom)


def test_in_the_default_scenario_the_reference_paces_the_budget_the_myopic_oracle_spends():
    make = _make("orin-nano-a100-5g")
    reference, pacing = BudgetReference(), Pacing(make, episodes=3)
    assert pacing.price > 0  # the budget binds here
    frames = {p.name: evaluate(p, make, episodes=6, seed=1000) for p in (reference, pacing, Oracle(), AllServer())}
    assert reference._per_joule > 0  # the last episode priced its joules too
    dropped = {k: (f["requests"] - f["steps"]).mean() for k, f in frames.items()}
    # the reference is calibrated on other seeds
    assert dropped["myopic-oracle"] > 5 and dropped["reference"] < dropped["myopic-oracle"] / 4
    cost = {k: -f["return"].mean() for k, f in frames.items()}
    # the headroom the myopic oracle hid: pacing beats all-server, and the reference beats pacing
    assert cost["reference"] < cost["pacing"] < cost["all-server"] < cost["myopic-oracle"]


def test_the_calibrated_price_is_the_smallest_that_drops_nothing():
    make = _make("orin-nano-a100-5g")
    price, tried = calibrate_energy_price(BudgetReference, make, episodes=2, iterations=6)
    assert tried[0.0][0] > 0  # the myopic choice runs out of energy
    lasting = sorted(p for p, (dropped, _) in tried.items() if dropped == 0)
    short = [p for p, (dropped, _) in tried.items() if dropped > 0]
    assert lasting and max(short) < lasting[0]  # bisection brackets the boundary
    assert price == max(tried, key=lambda p: tried[p][1])


def test_pacing_reads_the_observation_only():
    env = LayerSplitEnv()
    obs, info = env.reset(seed=3)
    policy = Pacing(price=1.0)
    policy.reset(env)

    def forbidden():
        raise AssertionError("pacing read the true state")
    env.unwrapped._sim.evaluate = forbidden
    action = policy.act(obs, info)
    reward, energy = env.unwrapped.split_scores(obs)
    expected = np.where(info["action_mask"].astype(bool), reward - energy / env.unwrapped.energy_reference_j, -np.inf)
    assert action == int(np.argmax(expected))


def test_bad_prices_and_the_continuous_env_are_refused():
    with pytest.raises(ValueError, match="price: expected a finite number >= 0"):
        BudgetReference(price=-1.0)
    with pytest.raises(TypeError, match="give price= or make_env="):
        Pacing()
    with pytest.raises(TypeError, match="needs the discrete LayerSplit env"):
        BudgetReference(price=1.0).reset(LayerSplitEnv(continuous=True))
