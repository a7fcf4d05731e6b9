"""Compiled inner loops of LayerSplit-v0 (numba): the exogenous draws of a block and the discrete step.

The cost formulas are not written here: ``costs.link_terms``,
``costs.queue_waits`` and ``costs.penalty_from_sensitivity`` are compiled as
they are, request parts come from ``costs.SplitModel.token_tables`` and edge
memory fits from ``SplitModel.memory_fit_by_tokens``. The reward terms below
are the env's own, used by its numpy paths too.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from .. import costs

_jit = numba.njit(cache=True, nogil=True, error_model="numpy")
_inline = numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")  # no call, no refcounts

_link_terms = _inline(costs.link_terms)
_queue_waits = _inline(costs.queue_waits)
_penalty = _inline(costs.penalty_from_sensitivity)


def base_reward(total, energy, penalty, deadline, w_latency, w_energy, energy_ref, w_accuracy):
    """The reward of a split before queueing: latency, energy and accuracy terms (floats or arrays)."""
    return -(w_latency * total / deadline + w_energy * energy / energy_ref) - w_accuracy * penalty


def queue_cost(wait, total, deadline, w_latency, w_energy_idle, w_deadline_miss):
    """What waiting ``wait`` seconds costs on top of the base reward, a deadline miss included."""
    return (w_latency / deadline + w_energy_idle) * wait + w_deadline_miss * (total + wait > deadline)


_base_reward = _inline(base_reward)
_queue_cost = _inline(queue_cost)

#: Columns of the per-request table ``req`` (n, block, len(REQUEST_COLUMNS)); the kernels index them by position.
REQUEST_COLUMNS = ("dt", "prompt", "output", "output_pred", "deadline", "snr_db", "snr_est_db", "share",
                   "uplink_bps", "downlink_bps", "distance", "fading", "loss", "last_split", "obs_snr", "obs_prompt",
                   "obs_output", "obs_deadline")
(_DT, _PROMPT, _OUTPUT, _PRED, _DEADLINE, _SNR_DB, _SNR_EST, _SHARE, _UP, _DOWN, _DISTANCE, _FADING, _LOSS, _HI,
 _OBS0) = range(15)  # the first 15 REQUEST_COLUMNS, then 3 more observation entries
#: Columns of the per-env state ``state`` (n, len(STATE_COLUMNS)).
STATE_COLUMNS = ("edge_backlog", "server_backlog", "energy_left", "load_observed", "steps")
_EB, _SB, _ENERGY_LEFT, _LOAD_OBS, _STEPS = range(len(STATE_COLUMNS))
#: Columns of the discrete step's info table (n, len(INFO_COLUMNS)).
INFO_COLUMNS = ("split", "requested_split", "fallback", "latency_s", "edge_queue_s", "server_queue_s",
                "edge_compute_s", "uplink_s", "server_compute_s", "downlink_s", "round_trip_s", "edge_energy_j",
                "uplink_bytes", "accuracy_penalty", "deadline_s", "deadline_met", "oracle_split", "oracle_reward",
                "oracle_latency_s", "oracle_energy_j", "dropped_requests")
INFO_INTS = ("split", "requested_split", "oracle_split", "dropped_requests")
INFO_BOOLS = ("fallback", "deadline_met")
#: Parameters of the discrete step, in the order of ``step_params``.
PARAM_NAMES = ("rtt_s", "activation_scale", "power_active_w", "power_idle_w", "power_radio_tx_w", "w_latency",
               "w_energy", "energy_ref", "w_accuracy", "w_energy_idle", "w_deadline_miss", "w_invalid", "w_dropped",
               "episode_requests", "min_split", "energy_budget_j")
# cost fields of a request in affine split form (rows of ``cost_form``)
_C_EDGE, _C_UP, _C_SERVER, _C_DOWN, _C_RTT, _C_TOTAL, _C_ENERGY, _C_BYTES, _C_BASE = range(9)


@_inline
def _fold(x, lo, width):
    """A position on the unfolded walk, reflected into [lo, lo + width]."""
    if width <= 0:
        return lo
    folded = (x - lo) % (2.0 * width)
    return lo + (2.0 * width - folded if folded > width else folded)


@_jit
def draw_block(u, fresh, start_u, distance, direction, fading, load_state, arrival_rate_hz, deadline_lo, deadline_hi,
               dist_lo, dist_hi, speed_mps, rho, load_cdf, out):
    """Exogenous processes of a block of requests from uniforms ``u`` (m, B, 10).

    Envs with ``fresh`` start an episode from ``start_u`` (m, 4): distance
    uniform in [lo, hi], a random direction, fading from its stationary law,
    the lowest load. Updates the walk (unfolded ``distance``, ``direction``),
    the complex ``fading`` and ``load_state`` of the m envs in place; writes
    per request ``out`` (9, m, B + 1), column 0 being the state before the
    block: inter-arrival time, normals of prompt, output, estimate noise and
    output prediction, deadline, distance folded into [lo, hi], fading power,
    load state.
    """
    m, B = u.shape[0], u.shape[1]
    width = dist_hi - dist_lo
    innov_scale = math.sqrt(1.0 - rho * rho) / math.sqrt(2.0)
    n_levels = load_cdf.shape[0]
    for j in range(m):
        x, d, h, ls = distance[j], direction[j], fading[j], load_state[j]
        if fresh[j]:
            s = start_u[j]
            x = dist_lo + width * s[0]
            d = 1.0 if s[1] < 0.5 else -1.0
            r = math.sqrt(-2.0 * math.log1p(-s[2]))
            h = complex(r * math.cos(2 * math.pi * s[3]), r * math.sin(2 * math.pi * s[3])) / math.sqrt(2.0)
            ls = 0
        out[:, j, 0] = 0.0
        out[6, j, 0], out[7, j, 0] = _fold(x, dist_lo, width), abs(h) ** 2
        for t in range(B):
            uu = u[j, t]
            dt = -math.log1p(-uu[0]) / arrival_rate_hz
            r = math.sqrt(-2.0 * math.log1p(-uu[1]))
            z_prompt, z_output = r * math.cos(2 * math.pi * uu[2]), r * math.sin(2 * math.pi * uu[2])
            r = math.sqrt(-2.0 * math.log1p(-uu[3]))
            w_re, w_im = r * math.cos(2 * math.pi * uu[4]), r * math.sin(2 * math.pi * uu[4])
            r = math.sqrt(-2.0 * math.log1p(-uu[5]))
            z_est, z_pred = r * math.cos(2 * math.pi * uu[6]), r * math.sin(2 * math.pi * uu[6])
            # mobility: a walk that turns back with probability 0.05 per request, reflected into [lo, hi]
            if uu[9] < 0.05:
                d = -d
            x = x + d * (speed_mps * dt)
            # Gauss-Markov fading and the Markov-modulated server load
            h = rho * h + innov_scale * complex(w_re, w_im)
            nxt = 0
            for s in range(n_levels):
                nxt += uu[7] > load_cdf[ls, s]
            ls = min(nxt, n_levels - 1)
            c = t + 1
            out[0, j, c], out[1, j, c], out[2, j, c], out[3, j, c], out[4, j, c] = dt, z_prompt, z_output, z_est, z_pred
            out[5, j, c] = deadline_lo + (deadline_hi - deadline_lo) * uu[8]
            out[6, j, c] = _fold(x, dist_lo, width)
            out[7, j, c] = abs(h) ** 2
            out[8, j, c] = ls
        distance[j], direction[j], fading[j], load_state[j] = x, d, h, ls


@_jit
def fill_block(idx, fresh, ex, prompt, output, output_pred, snr_db, uplink_bps, downlink_bps, loss, last_snr_db,
               load_levels, fit_by_tokens, min_split, estimate_noise_db, obs_scale, obs_low, obs_high, req):
    """Write the block's requests into rows ``idx`` of ``req`` (REQUEST_COLUMNS); ``last_snr_db`` moves on.

    ``snr_db`` (m, B + 1) starts with the state before the block: the first
    estimate of a fresh episode. Observation entries are rounded to float32
    and clipped to the observation bounds, as the observation stores them.
    """
    m, B = prompt.shape
    for j in range(m):
        i = idx[j]
        previous = snr_db[j, 0] if fresh[j] else last_snr_db[i]
        for t in range(B):
            row, c = req[i, t], t + 1
            row[_DT], row[_PROMPT], row[_OUTPUT], row[_PRED] = ex[0, j, c], prompt[j, t], output[j, t], output_pred[j, t]
            row[_DEADLINE], row[_SNR_DB] = ex[5, j, c], snr_db[j, c]
            row[_SNR_EST] = previous + estimate_noise_db * ex[3, j, c]
            previous = snr_db[j, c]
            row[_SHARE] = 1.0 - load_levels[int(ex[8, j, c])]
            row[_UP], row[_DOWN] = uplink_bps[j, t], downlink_bps[j, t]
            row[_DISTANCE], row[_FADING], row[_LOSS] = ex[6, j, c], ex[7, j, c], loss[j, t]
            row[_HI] = max(fit_by_tokens[int(prompt[j, t] + output[j, t])], min_split)
            for q, v in enumerate((row[_SNR_EST], row[_PROMPT], row[_PRED], row[_DEADLINE])):
                o = np.float32(v / obs_scale[q])  # observation entries 0, 1, 2 and 7
                row[_OBS0 + q] = min(max(o, obs_low[q]), obs_high[q])
        last_snr_db[i] = previous


@_inline
def _at_split(form, k, L, counts, out):
    """Every row of quantities in affine split form at split k (``SplitModel.at``'s arithmetic)."""
    if k == 0:
        out[:] = form[:, 0]
    elif k == L:
        out[:] = form[:, 1]
    else:
        for row in range(form.shape[0]):
            v = form[row, 3] * counts[0, k]
            v += form[row, 2]
            for g in range(1, counts.shape[0]):
                v += form[row, 3 + g] * counts[g, k]
            out[row] = v


@_inline
def _expand(form, row, counts, out):
    """Row ``row`` of quantities in affine split form at every split (``SplitModel.expand``'s arithmetic)."""
    L = counts.shape[1] - 1
    for k in range(L + 1):
        out[k] = form[row, 3] * counts[0, k]
    for k in range(L + 1):
        out[k] += form[row, 2]
    for g in range(1, counts.shape[0]):
        for k in range(L + 1):
            out[k] += form[row, 3 + g] * counts[g, k]
    out[0], out[L] = form[row, 0], form[row, 1]


@_inline
def _reward(base, accuracy_cost, wait, total, energy, deadline, energy_left, dropped_cost, w_latency, w_energy_idle,
            w_miss):
    """A split's reward: base - accuracy - queueing (a miss included) - dropped requests if the budget runs out.

    The oracle's interior loop does this arithmetic with the queueing term hoisted (same operations).
    """
    rest = _queue_cost(wait, total, deadline, w_latency, w_energy_idle, w_miss) + dropped_cost * (energy >= energy_left)
    return (base - accuracy_cost) - rest


@_inline
def _request_costs(req_row, by_prompt, by_context, p, parts, cost_form):
    """Costs (8 fields) and base reward (row 9) of one request in affine split form, from the token tables."""
    P = int(req_row[_PROMPT])
    c = P + int(req_row[_OUTPUT]) - 1
    F = cost_form.shape[1]
    deadline = req_row[_DEADLINE]
    for j in range(F):
        for f in range(parts.shape[0]):  # the identity of SplitModel.token_tables
            parts[f] = by_prompt[P, f, j] + by_context[c, f, j] - by_context[P, f, j]
        up_bytes, uplink, downlink, server, rtt, total, energy = _link_terms(
            parts[0], parts[1], parts[2], parts[3], parts[4], parts[5], req_row[_UP], req_row[_DOWN], p[0],
            req_row[_SHARE], 1.0, p[1], p[2], p[3], p[4])
        cost_form[_C_EDGE, j], cost_form[_C_UP, j], cost_form[_C_SERVER, j] = parts[0], uplink, server
        cost_form[_C_DOWN, j], cost_form[_C_RTT, j], cost_form[_C_TOTAL, j] = downlink, rtt, total
        cost_form[_C_ENERGY, j], cost_form[_C_BYTES, j] = energy, up_bytes
        cost_form[_C_BASE, j] = _base_reward(total, energy, 0.0, deadline, p[5], p[6], p[7], p[8])


@_jit
def step_discrete(actions, active, dry_run, ptr, pending, req, state, by_prompt, by_context, counts, sensitivity, p,
                  rewards, terminated, truncated, info, obs, obs_low, obs_high, mask):
    """Serve the current request of every active env (discrete split actions) and advance its pointer.

    Scores every allowed split in the true state (the myopic oracle: the best
    reward, ties to the shallower split), serves the action (a masked split
    falls back to the nearest allowed one and pays ``w_invalid``) and writes
    rewards, termination and ``info`` (INFO_COLUMNS x envs). Then the next
    request arrives (:func:`_arrive`) in every env whose block has one left;
    returns how many envs need a refill first (end of block, or ``pending``).
    With ``dry_run`` only ``info``'s oracle columns are written and no state
    changes.
    """
    n = actions.shape[0]
    L = counts.shape[1] - 1
    F = by_prompt.shape[2]
    parts, cost_form, at_split = np.empty(by_prompt.shape[1]), np.empty((9, F)), np.empty((5, L + 1))
    at_served = np.empty(9)
    idle_w, w_accuracy, w_invalid, w_dropped = p[3], p[8], p[11], p[12]
    w_latency, w_energy_idle, w_miss = p[5], p[9], p[10]
    n_requests, min_split, budget = p[13], int(p[14]), p[15]
    block = req.shape[1]
    refills = 0
    for i in range(n):
        if not (active[i] or dry_run):
            if pending[i] or ptr[i] >= block:
                refills += 1
            else:
                _arrive(i, False, ptr, req, state, p, obs, obs_low, obs_high, mask)
            continue
        row = req[i, ptr[i]]
        _request_costs(row, by_prompt, by_context, p, parts, cost_form)
        deadline, loss, hi = row[_DEADLINE], row[_LOSS], int(row[_HI])
        eb, sb, energy_left, steps = state[i, _EB], state[i, _SB], state[i, _ENERGY_LEFT], state[i, _STEPS]
        e0, s0 = _queue_waits(0, L, eb, sb)
        e1, s1 = _queue_waits(1, L, eb, sb)
        eL, sL = _queue_waits(L, L, eb, sb)
        dropped_cost = w_dropped * (n_requests - steps - 1.0)
        _expand(cost_form, _C_TOTAL, counts, at_split[0])
        _expand(cost_form, _C_ENERGY, counts, at_split[1])
        _expand(cost_form, _C_BASE, counts, at_split[2])
        best, best_k = -np.inf, -1
        for k in (0, L):  # the ends: their own queue waits, no accuracy penalty
            if min_split <= k <= hi:
                wait = e0 + s0 if k == 0 else eL + sL
                r = _reward(at_split[2, k], 0.0, wait, at_split[0, k], at_split[1, k] + wait * idle_w, deadline,
                            energy_left, dropped_cost, w_latency, w_energy_idle, w_miss)
                if r > best or (r == best and k < best_k):
                    best, best_k = r, k
        # the interior: one queue wait. Bound each reward with a lower bound of its accuracy penalty, then
        # pay for the penalty's exp only where the bound beats the best so far.
        lo, top = max(min_split, 1), min(hi, L - 1)
        if lo <= top:
            wait = e1 + s1
            waiting = (w_latency / deadline + w_energy_idle) * wait  # queue_cost's first term, hoisted
            idle_energy = wait * idle_w
            bound_k, bound = -1, -np.inf
            for k in range(lo, top + 1):
                rest = (waiting + w_miss * (at_split[0, k] + wait > deadline)
                        + dropped_cost * (at_split[1, k] + idle_energy >= energy_left))
                at_split[3, k] = rest
                # 1 - exp(-x) >= x / (1 + x) for x >= 0 (shrunk by a few ulps for rounding): >= the reward at k
                x = sensitivity[k] * loss
                at_split[4, k] = (at_split[2, k] - w_accuracy * (x / (1.0 + x) * (1.0 - 1e-15))) - rest
                if at_split[4, k] > bound:
                    bound_k, bound = k, at_split[4, k]
            for k in (bound_k,):  # the most promising split first, then the others the bound cannot rule out
                r = (at_split[2, k] - w_accuracy * _penalty(sensitivity[k], loss)) - at_split[3, k]
                if r > best or (r == best and k < best_k):
                    best, best_k = r, k
            for k in range(lo, top + 1):
                if k == bound_k or at_split[4, k] < best or (at_split[4, k] == best and k > best_k):
                    continue
                r = (at_split[2, k] - w_accuracy * _penalty(sensitivity[k], loss)) - at_split[3, k]
                if r > best or (r == best and k < best_k):
                    best, best_k = r, k
        o_wait = e0 + s0 if best_k == 0 else eL + sL if best_k == L else e1 + s1
        out = info[:, i]
        out[16], out[17] = best_k, best
        out[18] = at_split[0, best_k] + o_wait
        out[19] = at_split[1, best_k] + o_wait * idle_w
        if dry_run:
            continue
        # the action served
        a = actions[i]
        served = min(max(a, min_split), hi)
        invalid = served != a
        edge_wait, server_wait = (e0, s0) if served == 0 else (eL, sL) if served == L else (e1, s1)
        wait = edge_wait + server_wait
        _at_split(cost_form, served, L, counts, at_served)
        edge_c, server_c, total = at_served[_C_EDGE], at_served[_C_SERVER], at_served[_C_TOTAL]
        energy = at_served[_C_ENERGY] + wait * idle_w
        penalty = _penalty(sensitivity[served], loss)
        r = _reward(at_served[_C_BASE], w_accuracy * penalty, wait, total, energy, deadline, energy_left,
                    dropped_cost, w_latency, w_energy_idle, w_miss)
        rewards[i] = r - w_invalid * invalid
        latency = total + wait
        out[0], out[1], out[2], out[3], out[4], out[5] = served, a, invalid, latency, edge_wait, server_wait
        out[6], out[7], out[8], out[9] = edge_c, at_served[_C_UP], server_c, at_served[_C_DOWN]
        out[10], out[11], out[12], out[13] = at_served[_C_RTT], energy, at_served[_C_BYTES], penalty
        out[14], out[15] = deadline, latency <= deadline
        # the state after serving
        if served >= 1:
            state[i, _EB] = edge_wait + edge_c
        if served < L:
            state[i, _SB] = wait + server_c
            state[i, _LOAD_OBS] = 1.0 - row[_SHARE]
        energy_left -= energy
        steps += 1.0
        state[i, _ENERGY_LEFT], state[i, _STEPS] = energy_left, steps
        terminated[i] = energy_left <= 0.0
        truncated[i] = not terminated[i] and steps >= n_requests
        out[20] = n_requests - steps if terminated[i] else 0.0
        ptr[i] += 1
        if pending[i] or ptr[i] >= block:
            refills += 1
        else:
            _arrive(i, True, ptr, req, state, p, obs, obs_low, obs_high, mask)
    return refills


@_inline
def _arrive(i, active, ptr, req, state, p, obs, obs_low, obs_high, mask):
    """The next request reaches env i: its queues drain for the inter-arrival time; observation and mask."""
    budget, n_requests, min_split = p[15], p[13], int(p[14])
    row = req[i, ptr[i]]
    dt = row[_DT] if active else 0.0
    eb = max(state[i, _EB] - dt, 0.0)
    sb = max(state[i, _SB] - dt, 0.0)
    state[i, _EB], state[i, _SB] = eb, sb
    deadline = row[_DEADLINE]
    o = obs[i]
    o[0], o[1], o[2], o[7] = row[_OBS0], row[_OBS0 + 1], row[_OBS0 + 2], row[_OBS0 + 3]
    o[3] = min(max(eb / deadline, obs_low[3]), obs_high[3])
    o[4] = min(max(sb / deadline, obs_low[4]), obs_high[4])
    o[5] = min(max(state[i, _LOAD_OBS], obs_low[5]), obs_high[5])
    o[6] = min(max(state[i, _ENERGY_LEFT] / budget, obs_low[6]), obs_high[6])
    o[8] = min(max(state[i, _STEPS] / n_requests, obs_low[8]), obs_high[8])
    hi = int(row[_HI])
    for k in range(mask.shape[1]):
        mask[i, k] = min_split <= k <= hi


@_jit
def arrive(envs, active, ptr, req, state, p, obs, obs_low, obs_high, mask):
    """:func:`_arrive` for envs ``envs`` (after their refill)."""
    for i in envs:
        _arrive(i, active[i], ptr, req, state, p, obs, obs_low, obs_high, mask)
