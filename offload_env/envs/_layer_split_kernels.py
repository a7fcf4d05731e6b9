"""Compiled inner loops of LayerSplit-v0 (numba): the draw of each request, the discrete and the continuous step.

No cost formula is written here: the functions of ``costs``, ``channel`` and
``workload`` bound below are compiled as they are, request parts come from
``costs.SplitModel.token_tables`` and edge-memory fits from
``SplitModel.memory_fit_by_tokens``. The reward terms below are the env's
own, used by its numpy paths too.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from .. import channel, costs, observations, workload

_jit = numba.njit(cache=True, nogil=True, error_model="numpy")
_inline = numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")  # no call, no refcounts

_link_terms = _inline(costs.link_terms)
_erasure = _inline(costs.erasure_from_snr)
_loss = _inline(costs.loss_from_erasure)
_path_loss = _inline(channel.path_loss_coded)
_snr_from_path_loss = _inline(channel.snr_from_path_loss)
_rate = _inline(channel.rate_from_snr)
_tokens = _inline(workload.lognormal_count)
_queue_waits = _inline(costs.queue_waits)
_penalty = _inline(costs.penalty_from_sensitivity)
_observation = _inline(observations.layer_split_observation)
_mask = _inline(observations.layer_split_mask)


def base_reward(total, energy, penalty, deadline, w_latency, w_energy, energy_ref, w_accuracy):
    """The reward of a split before queueing: latency, energy and accuracy terms (floats or arrays)."""
    return -(w_latency * total / deadline + w_energy * energy / energy_ref) - w_accuracy * penalty


def queue_cost(wait, total, deadline, w_latency, w_energy_idle, w_deadline_miss):
    """What waiting ``wait`` seconds costs on top of the base reward, a deadline miss included."""
    return (w_latency / deadline + w_energy_idle) * wait + w_deadline_miss * (total + wait > deadline)


_base_reward = _inline(base_reward)
_queue_cost = _inline(queue_cost)

#: Columns of the current-request table ``req`` (n, len(REQUEST_COLUMNS)); the kernels index them by position.
REQUEST_COLUMNS = ("dt", "prompt", "output", "output_pred", "deadline", "snr_db", "snr_est_db", "share",
                   "uplink_bps", "downlink_bps", "distance", "fading", "loss", "last_split")
(_DT, _PROMPT, _OUTPUT, _PRED, _DEADLINE, _SNR_DB, _SNR_EST, _SHARE, _UP, _DOWN, _DISTANCE, _FADING, _LOSS,
 _HI) = range(len(REQUEST_COLUMNS))
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
#: The numbers of ``p`` (the simulator's ``params``) the kernels read, in order.
PARAM_NAMES = ("rtt_s", "activation_scale", "power_active_w", "power_idle_w", "power_radio_tx_w", "w_latency",
               "w_energy", "energy_ref", "w_accuracy", "w_energy_idle", "w_deadline_miss", "w_invalid", "w_dropped",
               "episode_requests", "min_split", "energy_budget_j", *(f"obs_scale_{k}" for k in range(6)))
_P_OBS_SCALES = PARAM_NAMES.index("obs_scale_0")  # observations.layer_split_scales, in order
# cost fields of a request in affine split form (rows of ``cost_form``)
_C_EDGE, _C_UP, _C_SERVER, _C_DOWN, _C_RTT, _C_TOTAL, _C_ENERGY, _C_BYTES, _C_BASE = range(9)


@_inline
def _fold(x, lo, width):
    """A position on the unfolded walk, reflected into [lo, lo + width]."""
    if width <= 0:
        return lo
    period = 2.0 * width
    folded = (x - lo) - period * math.floor((x - lo) / period)  # no fmod call; clipped for rounding
    folded = min(max(folded, 0.0), period)
    return lo + (period - folded if folded > width else folded)


@_inline
def _power(h):
    """|h|^2 of a complex gain (no hypot call)."""
    return h.real * h.real + h.imag * h.imag


def standard_normal(u):
    """The standard normal quantile of ``u + 2**-54`` for ``u`` in [0, 1) (on numpy's 53-bit grid: never 0 or 1).

    Wichura's algorithm AS241 (PPND16, Applied Statistics 37(3), 1988; also
    Python's ``statistics.NormalDist.inv_cdf``), relative error about 1e-16:
    one uniform per normal, and no transcendental call in 85% of draws.
    """
    q = (u - 0.5) + 2.0 ** -54
    if abs(q) <= 0.425:
        r = 0.180625 - q * q
        num = (((((((2.5090809287301226727e+3 * r + 3.3430575583588128105e+4) * r + 6.7265770927008700853e+4) * r
                   + 4.5921953931549871457e+4) * r + 1.3731693765509461125e+4) * r + 1.9715909503065514427e+3) * r
                + 1.3314166789178437745e+2) * r + 3.3871328727963666080e+0) * q
        den = (((((((5.2264952788528545610e+3 * r + 2.8729085735721942674e+4) * r + 3.9307895800092710610e+4) * r
                   + 2.1213794301586595867e+4) * r + 5.3941960214247511077e+3) * r + 6.8718700749205790830e+2) * r
                + 4.2313330701600911252e+1) * r + 1.0)
        return num / den
    tail = u + 2.0 ** -54 if q < 0.0 else (1.0 - u) - 2.0 ** -54  # exact: the distance to the nearer end, > 0
    r = math.sqrt(-math.log(tail))
    if r <= 5.0:
        r = r - 1.6
        num = (((((((7.74545014278341407640e-4 * r + 2.27238449892691845833e-2) * r + 2.41780725177450611770e-1) * r
                   + 1.27045825245236838258e+0) * r + 3.64784832476320460504e+0) * r + 5.76949722146069140550e+0) * r
                + 4.63033784615654529590e+0) * r + 1.42343711074968357734e+0)
        den = (((((((1.05075007164441684324e-9 * r + 5.47593808499534494600e-4) * r + 1.51986665636164571966e-2) * r
                   + 1.48103976427480074590e-1) * r + 6.89767334985100004550e-1) * r + 1.67638483018380384940e+0) * r
                + 2.05319162663775882187e+0) * r + 1.0)
    else:
        r = r - 5.0
        num = (((((((2.01033439929228813265e-7 * r + 2.71155556874348757815e-5) * r + 1.24266094738807843860e-3) * r
                   + 2.65321895265761230930e-2) * r + 2.96560571828504891230e-1) * r + 1.78482653991729133580e+0) * r
                + 5.46378491116411436990e+0) * r + 6.65790464350110377720e+0)
        den = (((((((2.04426310338993978564e-15 * r + 1.42151175831644588870e-7) * r + 1.84631831751005468180e-5) * r
                   + 7.86869131145613259100e-4) * r + 1.48753612908506148525e-2) * r + 1.36929880922735805310e-1) * r
                + 5.99832206555887937690e-1) * r + 1.0)
    x = num / den
    return -x if q < 0.0 else x


_normal = _inline(standard_normal)


#: The numbers of the request draw, packed in one float64 array (:func:`draw_numbers`): (part, length).
DRAW_NUMBERS = (
    ("scenario", 12),  # arrival rate, deadline lo, hi, distance lo, hi, speed, fading correlation,
                       # output prediction sigma, estimate noise dB, min split, discrete (1.0) or not,
                       # SNR estimate of the previous request (1.0) or of the current one (0.0)
    ("prompt_spec", 4), ("output_spec", 4),  # token specs: median, sigma, min, max
    ("link", 11),  # tx power W, noise W, carrier Hz, path-loss code and its 5 numbers, bandwidth Hz,
                   # downlink / uplink power
    ("loss", 6),  # the numbers of costs.erasure_from_snr, then of costs.loss_from_erasure
)
_SCN, _PROMPT_SPEC, _OUTPUT_SPEC, _LINK, _LOSS_TERMS = \
    np.cumsum([0] + [length for _, length in DRAW_NUMBERS])[:-1].tolist()


def draw_numbers(**parts) -> np.ndarray:
    """The parts of ``DRAW_NUMBERS``, by name, packed into one array (each checked for its length)."""
    packed = []
    for name, length in DRAW_NUMBERS:
        values = [float(v) for v in parts.pop(name)]
        if len(values) != length:
            raise ValueError(f"draw numbers {name!r}: expected {length} values, got {len(values)}")
        packed += values
    if parts:
        raise ValueError(f"draw numbers: unknown parts {sorted(parts)}")
    return np.array(packed)


@_inline
def _snr(distance, fading_power, nums):
    """Linear uplink SNR (``channel.path_loss_coded`` and ``snr_from_path_loss``) with the link of ``nums``."""
    k = _LINK
    pl = _path_loss(distance, nums[k + 2], nums[k + 3], nums[k + 4], nums[k + 5], nums[k + 6], nums[k + 7],
                    nums[k + 8])
    return _snr_from_path_loss(pl, fading_power, 1.0, nums[k], nums[k + 1])


@intrinsic
def _next_double(typingctx, function_address, state_address):
    """Call a bit generator's C ``next_double(state)`` at these addresses (its ctypes interface's)."""
    def codegen(context, builder, signature, args):
        state_type = ir.IntType(8).as_pointer()
        function = builder.inttoptr(args[0], ir.FunctionType(ir.DoubleType(), [state_type]).as_pointer())
        return builder.call(function, [builder.inttoptr(args[1], state_type)])
    return types.float64(types.uintp, types.uintp), codegen


@_inline
def _uniform(generators, i):
    """The next uniform of env i's generator (``generators[i]``: its next_double and state addresses)."""
    return _next_double(generators[i, 0], generators[i, 1])


#: Uniforms an episode reads from its env's generator: this many at its start, then UNIFORMS_PER_REQUEST each.
UNIFORMS_AT_START, UNIFORMS_PER_REQUEST = 4, 10


@_jit
def _draw(i, fresh, draws, req):
    """Env i's next request, drawn from its generator into ``req[i]`` (its episode's start first if ``fresh``).

    ``draws``: (generators, distance, direction, fading, load_state,
    last_snr_db, numbers (``DRAW_NUMBERS``), load_cdf, load_levels,
    fit_by_tokens). ``generators[i]`` holds the addresses of env i's bit
    generator's C ``next_double`` and of its state: the draws read that state
    in place, the uniforms ``Generator.random`` would give. A fresh episode
    starts from 4: distance uniform in the range, a random direction, fading from its stationary law, the lowest load. Each
    request reads 10: Poisson arrival, lognormal prompt and output lengths
    (``workload.lognormal_count``), uniform deadline, a walk reflected into the
    distance range, Gauss-Markov fading, the Markov-modulated server load, the
    uplink SNR and rates (``channel``), the accuracy loss of the hidden state
    (``costs``), the deepest split that fits edge memory, and the observation
    entries that depend on the request only (float32, clipped). Updates env i's
    state entries in place.
    """
    generators, distance, direction, fading, load_state, last_snr_db, nums, load_cdf, load_levels, fit_by_tokens = \
        draws
    rate, d_lo, d_hi, x_lo, x_hi = nums[_SCN], nums[_SCN + 1], nums[_SCN + 2], nums[_SCN + 3], nums[_SCN + 4]
    speed, rho, pred_sigma, noise_db = nums[_SCN + 5], nums[_SCN + 6], nums[_SCN + 7], nums[_SCN + 8]
    min_split, discrete, estimate_previous = nums[_SCN + 9], nums[_SCN + 10] != 0.0, nums[_SCN + 11] != 0.0
    width = x_hi - x_lo
    x, d, h, ls = distance[i], direction[i], fading[i], load_state[i]
    if fresh:
        u0, u1, u2, u3 = _uniform(generators, i), _uniform(generators, i), _uniform(generators, i), \
            _uniform(generators, i)
        x = x_lo + width * u0
        d = 1.0 if u1 < 0.5 else -1.0
        h = complex(_normal(u2), _normal(u3)) / math.sqrt(2.0)
        ls = 0
        previous = 10.0 * math.log10(_snr(x, _power(h), nums))
    else:
        previous = last_snr_db[i]
    u0, u1, u2, u3, u4 = (_uniform(generators, i), _uniform(generators, i), _uniform(generators, i),
                          _uniform(generators, i), _uniform(generators, i))
    u5, u6, u7, u8, u9 = (_uniform(generators, i), _uniform(generators, i), _uniform(generators, i),
                          _uniform(generators, i), _uniform(generators, i))
    dt = -math.log1p(-u0) / rate
    z_prompt, z_output, w_re, w_im = _normal(u1), _normal(u2), _normal(u3), _normal(u4)
    z_est, z_pred = _normal(u5), _normal(u6)
    # mobility: a walk that turns back with probability 0.05 per request, reflected into the range
    if u9 < 0.05:
        d = -d
    x = x + d * (speed * dt)
    dist = _fold(x, x_lo, width)
    # Gauss-Markov fading and the Markov-modulated server load
    h = rho * h + (math.sqrt(1.0 - rho * rho) / math.sqrt(2.0)) * complex(w_re, w_im)
    n_levels = load_cdf.shape[0]
    nxt = 0
    for level in range(n_levels):
        nxt += u7 > load_cdf[ls, level]
    ls = min(nxt, n_levels - 1)
    power = _power(h)
    snr = _snr(dist, power, nums)
    snr_db = 10.0 * math.log10(snr)
    k = _PROMPT_SPEC
    prompt = _tokens(z_prompt, nums[k], nums[k + 1], nums[k + 2], nums[k + 3], 0.0)
    k = _OUTPUT_SPEC
    output = _tokens(z_output, nums[k], nums[k + 1], nums[k + 2], nums[k + 3], 0.0)
    r = req[i]
    r[_DT], r[_PROMPT], r[_OUTPUT] = dt, prompt, output
    r[_PRED] = max(output * math.exp(pred_sigma * z_pred), 1.0)
    r[_DEADLINE] = d_lo + (d_hi - d_lo) * u8
    r[_SNR_DB], r[_SNR_EST] = snr_db, (previous if estimate_previous else snr_db) + noise_db * z_est
    r[_SHARE] = 1.0 - load_levels[ls]
    r[_UP] = _rate(nums[_LINK + 9], snr)
    r[_DOWN] = _rate(nums[_LINK + 9], snr * nums[_LINK + 10])
    r[_DISTANCE], r[_FADING] = dist, power
    r[_LOSS] = 0.0
    if discrete:
        k = _LOSS_TERMS
        r[_LOSS] = _loss(_erasure(snr_db, nums[k], nums[k + 1]), nums[k + 2], nums[k + 3], nums[k + 4], nums[k + 5])
    r[_HI] = max(fit_by_tokens[int(prompt + output)], min_split)
    distance[i], direction[i], fading[i], load_state[i], last_snr_db[i] = x, d, h, ls, snr_db


@_jit
def draw(envs, fresh, draws, req):
    """:func:`_draw` for envs ``envs`` (their episodes start where ``fresh``)."""
    for j in range(envs.shape[0]):
        _draw(envs[j], fresh[j], draws, req)


@_inline
def _rest(wait, total, energy, deadline, energy_left, dropped_cost, w_latency, w_energy_idle, w_miss):
    """What a split costs beyond its base reward and accuracy: queueing (a miss included), dropped requests."""
    return _queue_cost(wait, total, deadline, w_latency, w_energy_idle, w_miss) + dropped_cost * (energy >= energy_left)


@_jit
def step_discrete(actions, active, dry_run, pending, req, state, by_prompt, by_context, counts, sensitivity, p,
                  rewards, terminated, truncated, info, obs, obs_low, obs_high, mask, draws):
    """Serve the current request of every active env (discrete split actions) and advance its pointer.

    Scores every allowed split in the true state (the myopic oracle: the best
    reward, ties to the shallower split), serves the action (a masked split
    falls back to the nearest allowed one and pays ``w_invalid``) and writes
    rewards, termination and ``info`` (INFO_COLUMNS x envs); then its next
    request is drawn (:func:`_draw`) and arrives (:func:`_arrive`). Inactive
    envs only start their episode where ``pending`` (reset, first request not
    drawn yet). With ``dry_run`` only ``info``'s oracle columns are written and
    no state changes.
    """
    n = actions.shape[0]
    L, n_groups = counts.shape[1] - 1, counts.shape[0]
    F, n_parts = by_prompt.shape[2], by_prompt.shape[1]
    parts, cost_form = np.empty(n_parts), np.empty((9, F))
    total_at, energy_at, base_at = np.empty(L + 1), np.empty(L + 1), np.empty(L + 1)  # at every split
    rest_at, bound_at = np.empty(L + 1), np.empty(L + 1)
    at_served = np.empty(9)
    idle_w, w_accuracy, w_invalid, w_dropped = p[3], p[8], p[11], p[12]
    w_latency, w_energy_idle, w_miss = p[5], p[9], p[10]
    n_requests, min_split = p[13], int(p[14])
    for i in range(n):
        if not (active[i] or dry_run):
            if pending[i]:
                _draw(i, True, draws, req)
                pending[i] = False
            _arrive(i, False, req, state, p, obs, obs_low, obs_high, mask)
            continue
        deadline, loss, hi = req[i, _DEADLINE], req[i, _LOSS], int(req[i, _HI])
        # costs and base reward in affine split form: the token tables' identity, then costs.link_terms
        P = int(req[i, _PROMPT])
        c = P + int(req[i, _OUTPUT]) - 1
        up, down, share = req[i, _UP], req[i, _DOWN], req[i, _SHARE]
        for j in range(F):
            for f in range(n_parts):
                parts[f] = by_prompt[P, f, j] + by_context[c, f, j] - by_context[P, f, j]
            up_bytes, uplink, downlink, server, rtt, total, energy = _link_terms(
                parts[0], parts[1], parts[2], parts[3], parts[4], parts[5], up, down, p[0], share, 1.0, p[1], p[2],
                p[3], p[4])
            cost_form[_C_EDGE, j], cost_form[_C_UP, j], cost_form[_C_SERVER, j] = parts[0], uplink, server
            cost_form[_C_DOWN, j], cost_form[_C_RTT, j], cost_form[_C_TOTAL, j] = downlink, rtt, total
            cost_form[_C_ENERGY, j], cost_form[_C_BYTES, j] = energy, up_bytes
            cost_form[_C_BASE, j] = _base_reward(total, energy, 0.0, deadline, p[5], p[6], p[7], p[8])
        eb, sb, energy_left, steps = state[i, _EB], state[i, _SB], state[i, _ENERGY_LEFT], state[i, _STEPS]
        e0, s0 = _queue_waits(0, L, eb, sb)
        e1, s1 = _queue_waits(1, L, eb, sb)
        eL, sL = _queue_waits(L, L, eb, sb)
        dropped_cost = w_dropped * (n_requests - steps - 1.0)
        # total, energy and base reward at every split (SplitModel.expand's arithmetic)
        for k in range(L + 1):
            total_at[k] = cost_form[_C_TOTAL, 3] * counts[0, k]
            energy_at[k] = cost_form[_C_ENERGY, 3] * counts[0, k]
            base_at[k] = cost_form[_C_BASE, 3] * counts[0, k]
        for k in range(L + 1):
            total_at[k] += cost_form[_C_TOTAL, 2]
            energy_at[k] += cost_form[_C_ENERGY, 2]
            base_at[k] += cost_form[_C_BASE, 2]
        for g in range(1, n_groups):
            for k in range(L + 1):
                total_at[k] += cost_form[_C_TOTAL, 3 + g] * counts[g, k]
                energy_at[k] += cost_form[_C_ENERGY, 3 + g] * counts[g, k]
                base_at[k] += cost_form[_C_BASE, 3 + g] * counts[g, k]
        total_at[0], energy_at[0], base_at[0] = cost_form[_C_TOTAL, 0], cost_form[_C_ENERGY, 0], cost_form[_C_BASE, 0]
        total_at[L], energy_at[L], base_at[L] = cost_form[_C_TOTAL, 1], cost_form[_C_ENERGY, 1], cost_form[_C_BASE, 1]
        best, best_k = -np.inf, -1
        for k in (0, L):  # the ends: their own queue waits, no accuracy penalty
            if min_split <= k <= hi:
                wait = e0 + s0 if k == 0 else eL + sL
                r = base_at[k] - _rest(wait, total_at[k], energy_at[k] + wait * idle_w, deadline, energy_left,
                                       dropped_cost, w_latency, w_energy_idle, w_miss)
                if r > best or (r == best and k < best_k):
                    best, best_k = r, k
        # the interior: one queue wait. Bound each reward with a lower bound of its accuracy penalty, then
        # pay for the penalty's exp only where the bound beats the best so far.
        lo, top = max(min_split, 1), min(hi, L - 1)
        if lo <= top:
            wait = e1 + s1
            idle_energy = wait * idle_w
            for k in range(lo, top + 1):  # branch-free: vectorised
                rest_at[k] = _rest(wait, total_at[k], energy_at[k] + idle_energy, deadline, energy_left,
                                   dropped_cost, w_latency, w_energy_idle, w_miss)
                # exp(x) >= 1 + x + x^2/2 + x^3/6 =: 1 + q for x >= 0, so the penalty 1 - exp(-x) >= q / (1 + q)
                # (shrunk by some ulps for rounding): bound_at >= the reward at k
                x = sensitivity[k] * loss
                q = x * (1.0 + x * (0.5 + x * (1.0 / 6.0)))
                bound_at[k] = (base_at[k] - w_accuracy * (q / (1.0 + q) * (1.0 - 1e-14))) - rest_at[k]
            bound_k, top_bound = lo, bound_at[lo]
            for k in range(lo + 1, top + 1):
                higher = bound_at[k] > top_bound
                top_bound = bound_at[k] if higher else top_bound
                bound_k = k if higher else bound_k
            # the most promising split first, then the others its reward leaves in play
            k = bound_k
            r = (base_at[k] - w_accuracy * _penalty(sensitivity[k], loss)) - rest_at[k]
            if r > best or (r == best and k < best_k):
                best, best_k = r, k
            for k in range(lo, top + 1):
                if bound_at[k] < best or k == bound_k or (bound_at[k] == best and k > best_k):
                    continue
                r = (base_at[k] - w_accuracy * _penalty(sensitivity[k], loss)) - rest_at[k]
                if r > best or (r == best and k < best_k):
                    best, best_k = r, k
        o_wait = e0 + s0 if best_k == 0 else eL + sL if best_k == L else e1 + s1
        info[16, i], info[17, i] = best_k, best
        info[18, i] = total_at[best_k] + o_wait
        info[19, i] = energy_at[best_k] + o_wait * idle_w
        if dry_run:
            continue
        # the action served
        a = actions[i]
        served = min(max(a, min_split), hi)
        invalid = served != a
        edge_wait, server_wait = (e0, s0) if served == 0 else (eL, sL) if served == L else (e1, s1)
        wait = edge_wait + server_wait
        for row in range(9):  # every cost at the served split (SplitModel.at's arithmetic)
            if served == 0:
                at_served[row] = cost_form[row, 0]
            elif served == L:
                at_served[row] = cost_form[row, 1]
            else:
                v = cost_form[row, 3] * counts[0, served]
                v += cost_form[row, 2]
                for g in range(1, n_groups):
                    v += cost_form[row, 3 + g] * counts[g, served]
                at_served[row] = v
        edge_c, server_c, total = at_served[_C_EDGE], at_served[_C_SERVER], at_served[_C_TOTAL]
        energy = at_served[_C_ENERGY] + wait * idle_w
        penalty = _penalty(sensitivity[served], loss)
        r = (at_served[_C_BASE] - w_accuracy * penalty) - _rest(wait, total, energy, deadline, energy_left,
                                                                  dropped_cost, w_latency, w_energy_idle, w_miss)
        rewards[i] = r - w_invalid * invalid
        latency = total + wait
        info[0, i], info[1, i], info[2, i], info[3, i] = served, a, invalid, latency
        info[4, i], info[5, i] = edge_wait, server_wait
        info[6, i], info[7, i], info[8, i], info[9, i] = edge_c, at_served[_C_UP], server_c, at_served[_C_DOWN]
        info[10, i], info[11, i], info[12, i], info[13, i] = at_served[_C_RTT], energy, at_served[_C_BYTES], penalty
        info[14, i], info[15, i] = deadline, latency <= deadline
        # the state after serving
        if served >= 1:
            state[i, _EB] = edge_wait + edge_c
        if served < L:
            state[i, _SB] = wait + server_c
            state[i, _LOAD_OBS] = 1.0 - req[i, _SHARE]
        energy_left -= energy
        steps += 1.0
        state[i, _ENERGY_LEFT], state[i, _STEPS] = energy_left, steps
        terminated[i] = energy_left <= 0.0
        truncated[i] = not terminated[i] and steps >= n_requests
        info[20, i] = n_requests - steps if terminated[i] else 0.0
        _draw(i, False, draws, req)  # the next request arrives
        _arrive(i, True, req, state, p, obs, obs_low, obs_high, mask)


@_jit
def _arrive(i, active, req, state, p, obs, obs_low, obs_high, mask):
    """Env i's request ``req[i]`` arrives: the queues drain for its inter-arrival time (if ``active``);
    observation and mask."""
    min_split = int(p[14])
    dt = req[i, _DT] if active else 0.0
    eb = max(state[i, _EB] - dt, 0.0)
    sb = max(state[i, _SB] - dt, 0.0)
    state[i, _EB], state[i, _SB] = eb, sb
    _observation(obs[i], obs_low, obs_high, p[_P_OBS_SCALES:_P_OBS_SCALES + 6], req[i, _SNR_EST], req[i, _PROMPT],
                 req[i, _PRED], req[i, _DEADLINE], eb, sb, state[i, _LOAD_OBS], state[i, _ENERGY_LEFT],
                 state[i, _STEPS])
    _mask(mask[i], min_split, int(req[i, _HI]))


@_jit
def arrive(envs, active, req, state, p, obs, obs_low, obs_high, mask):
    """:func:`_arrive` for envs ``envs``."""
    for i in envs:
        _arrive(i, active[i], req, state, p, obs, obs_low, obs_high, mask)


#: Columns of the continuous step's info table: the discrete step's, then the compression and power.
CONTINUOUS_INFO_COLUMNS = INFO_COLUMNS + ("compression", "tx_power_fraction", "oracle_compression",
                                          "oracle_tx_power_fraction")
CONTINUOUS_INFO_INTS = INFO_INTS + ("compression", "oracle_compression")
#: What a continuous action with a NaN or inf entry is served as: the deepest split (nearest allowed), float16,
#: full transmit power (as local as the edge allows, like the vehicular env's fallback).
NON_FINITE_ACTION = (1.0, -1.0, 1.0)
#: What the continuous step reads beyond the discrete step's (:func:`continuous_numbers`): (part, length).
CONTINUOUS_NUMBERS = (
    ("oracle_powers", 3),  # the transmit-power fractions the oracle searches
    ("activation_scales", 3),  # bytes of a hidden-state element / 2, per compression level
    ("loss", 14),  # the numbers of costs.erasure_from_snr, then of costs.loss_from_erasure per level (3 x 4)
)
_C_POWERS, _C_SCALES, _C_LOSS = 0, 3, 6


def continuous_numbers(oracle_powers, activation_scales, erasure_terms, loss_terms) -> np.ndarray:
    """The numbers of :data:`CONTINUOUS_NUMBERS`, packed (``loss_terms``: one 4-tuple per compression level)."""
    packed = [float(v) for v in (*oracle_powers, *activation_scales, *erasure_terms)]
    packed += [float(v) for terms in loss_terms for v in terms]
    if len(packed) != sum(length for _, length in CONTINUOUS_NUMBERS):
        raise ValueError(f"continuous numbers: expected {CONTINUOUS_NUMBERS}, got {len(packed)} values")
    return np.array(packed)


@_jit
def step_continuous(actions, active, dry_run, pending, req, state, by_prompt, by_context, counts, sensitivity, p,
                    cont, rewards, terminated, truncated, info, obs, obs_low, obs_high, mask, draws):
    """:func:`step_discrete` for continuous actions (split, compression, transmit power in [-1, 1]^3).

    The action maps to split ``round((a0 + 1) / 2 * L)``, compression level
    (float16 below -1/3, int8 up to 1/3, int4 above) and power fraction
    ``0.1 + 0.9 (a2 + 1) / 2``, which scales the uplink SNR (hence the rate
    and the accuracy loss) and the radio's power. The oracle searches every
    compression level x ``oracle_powers`` x allowed split (ties to the first
    in that order). An action with a NaN or inf entry is served as
    :data:`NON_FINITE_ACTION` with ``requested_split`` -1 and pays
    ``w_invalid``. ``info``: CONTINUOUS_INFO_COLUMNS x envs.
    """
    n = actions.shape[0]
    L, n_groups = counts.shape[1] - 1, counts.shape[0]
    F, n_parts = by_prompt.shape[2], by_prompt.shape[1]
    nums = draws[6]
    k_link = _LINK
    tx_w, noise_w, bandwidth = nums[k_link], nums[k_link + 1], nums[k_link + 9]
    parts, cost_form = np.empty((n_parts, F)), np.empty((9, F))
    total_at, energy_at, base_at = np.empty(L + 1), np.empty(L + 1), np.empty(L + 1)
    fractions = np.empty(4)
    at_served = np.empty(9)
    idle_w, w_accuracy, w_invalid, w_dropped = p[3], p[8], p[11], p[12]
    w_latency, w_energy_idle, w_miss = p[5], p[9], p[10]
    n_requests, min_split = p[13], int(p[14])
    e50, e_slope = cont[_C_LOSS], cont[_C_LOSS + 1]
    for i in range(n):
        if not (active[i] or dry_run):
            if pending[i]:
                _draw(i, True, draws, req)
                pending[i] = False
            _arrive(i, False, req, state, p, obs, obs_low, obs_high, mask)
            continue
        deadline, hi = req[i, _DEADLINE], int(req[i, _HI])
        P = int(req[i, _PROMPT])
        c = P + int(req[i, _OUTPUT]) - 1
        for j in range(F):
            for f in range(n_parts):
                parts[f, j] = by_prompt[P, f, j] + by_context[c, f, j] - by_context[P, f, j]
        down, share, snr_db = req[i, _DOWN], req[i, _SHARE], req[i, _SNR_DB]
        pl = _path_loss(req[i, _DISTANCE], nums[k_link + 2], nums[k_link + 3], nums[k_link + 4], nums[k_link + 5],
                        nums[k_link + 6], nums[k_link + 7], nums[k_link + 8])
        eb, sb, energy_left, steps = state[i, _EB], state[i, _SB], state[i, _ENERGY_LEFT], state[i, _STEPS]
        e0, s0 = _queue_waits(0, L, eb, sb)
        e1, s1 = _queue_waits(1, L, eb, sb)
        eL, sL = _queue_waits(L, L, eb, sb)
        dropped_cost = w_dropped * (n_requests - steps - 1.0)
        # the action; a non-finite one falls back to the deepest split, float16, full power (NON_FINITE_ACTION)
        finite = math.isfinite(actions[i, 0]) and math.isfinite(actions[i, 1]) and math.isfinite(actions[i, 2])
        a0 = min(max(actions[i, 0], -1.0), 1.0) if finite else 1.0
        a1 = min(max(actions[i, 1], -1.0), 1.0) if finite else -1.0
        a2 = min(max(actions[i, 2], -1.0), 1.0) if finite else 1.0
        requested = int(np.rint((a0 + 1.0) / 2.0 * L)) if finite else -1
        level = 0 if a1 < -1.0 / 3.0 else (1 if a1 < 1.0 / 3.0 else 2)
        fractions[0], fractions[1], fractions[2] = cont[_C_POWERS], cont[_C_POWERS + 1], cont[_C_POWERS + 2]
        fractions[3] = 0.1 + 0.9 * (a2 + 1.0) / 2.0
        served = min(max(requested if finite else L, min_split), hi)
        edge_wait, server_wait = (e0, s0) if served == 0 else (eL, sL) if served == L else (e1, s1)
        wait = edge_wait + server_wait
        best, best_k, best_level, best_power = -np.inf, -1, -1, -1
        best_total, best_energy, served_reward, served_energy, penalty = 0.0, 0.0, 0.0, 0.0, 0.0
        for lv in range(3):
            for pw in range(4):
                if dry_run and pw == 3:
                    continue
                fraction = fractions[pw]
                up = _rate(bandwidth, _snr_from_path_loss(pl, req[i, _FADING], fraction, tx_w, noise_w))
                k = _C_LOSS + 2 + 4 * lv
                loss = _loss(_erasure(snr_db + 10.0 * math.log10(fraction), e50, e_slope), cont[k], cont[k + 1],
                             cont[k + 2], cont[k + 3])
                for j in range(F):
                    up_bytes, uplink, downlink, server, rtt, total, energy = _link_terms(
                        parts[0, j], parts[1, j], parts[2, j], parts[3, j], parts[4, j], parts[5, j], up, down, p[0],
                        share, fraction, cont[_C_SCALES + lv], p[2], p[3], p[4])
                    cost_form[_C_EDGE, j], cost_form[_C_UP, j], cost_form[_C_SERVER, j] = parts[0, j], uplink, server
                    cost_form[_C_DOWN, j], cost_form[_C_RTT, j], cost_form[_C_TOTAL, j] = downlink, rtt, total
                    cost_form[_C_ENERGY, j], cost_form[_C_BYTES, j] = energy, up_bytes
                    cost_form[_C_BASE, j] = _base_reward(total, energy, 0.0, deadline, p[5], p[6], p[7], p[8])
                if pw == 3:  # the action's own power: only its compression level and split are served
                    if lv != level:
                        continue
                    _form_at(cost_form, counts, served, L, n_groups, at_served)
                    penalty = _penalty(sensitivity[served], loss)
                    served_energy = at_served[_C_ENERGY] + wait * idle_w
                    served_reward = (at_served[_C_BASE] - w_accuracy * penalty) - _rest(
                        wait, at_served[_C_TOTAL], served_energy, deadline, energy_left, dropped_cost, w_latency,
                        w_energy_idle, w_miss)
                    continue
                _expand_form(cost_form, counts, L, n_groups, total_at, energy_at, base_at)
                for k in range(min_split, hi + 1):
                    k_wait = e0 + s0 if k == 0 else eL + sL if k == L else e1 + s1
                    k_energy = energy_at[k] + k_wait * idle_w
                    r = (base_at[k] - w_accuracy * _penalty(sensitivity[k], loss)) - _rest(
                        k_wait, total_at[k], k_energy, deadline, energy_left, dropped_cost, w_latency, w_energy_idle,
                        w_miss)
                    if r > best:
                        best, best_k, best_level, best_power = r, k, lv, pw
                        best_total, best_energy = total_at[k] + k_wait, k_energy
        info[16, i], info[17, i], info[18, i], info[19, i] = best_k, best, best_total, best_energy
        info[23, i], info[24, i] = best_level, fractions[best_power]
        if dry_run:
            continue
        invalid = served != requested  # always when not finite (requested -1)
        rewards[i] = served_reward - w_invalid * invalid
        edge_c, server_c, latency = at_served[_C_EDGE], at_served[_C_SERVER], at_served[_C_TOTAL] + wait
        info[0, i], info[1, i], info[2, i], info[3, i] = served, requested, invalid, latency
        info[4, i], info[5, i] = edge_wait, server_wait
        info[6, i], info[7, i], info[8, i], info[9, i] = edge_c, at_served[_C_UP], server_c, at_served[_C_DOWN]
        info[10, i], info[11, i], info[12, i], info[13, i] = at_served[_C_RTT], served_energy, at_served[_C_BYTES], penalty
        info[14, i], info[15, i] = deadline, latency <= deadline
        info[21, i], info[22, i] = level, fractions[3]
        # the state after serving (as in step_discrete, written out: a shared inlined helper slowed that step by ~6%)
        if served >= 1:
            state[i, _EB] = edge_wait + edge_c
        if served < L:
            state[i, _SB] = wait + server_c
            state[i, _LOAD_OBS] = 1.0 - req[i, _SHARE]
        energy_left -= served_energy
        steps += 1.0
        state[i, _ENERGY_LEFT], state[i, _STEPS] = energy_left, steps
        terminated[i] = energy_left <= 0.0
        truncated[i] = not terminated[i] and steps >= n_requests
        info[20, i] = n_requests - steps if terminated[i] else 0.0
        _draw(i, False, draws, req)  # the next request arrives
        _arrive(i, True, req, state, p, obs, obs_low, obs_high, mask)


@_inline
def _form_at(cost_form, counts, k, L, n_groups, out):
    """Every row of ``cost_form`` at split ``k`` (SplitModel.at's arithmetic)."""
    for row in range(cost_form.shape[0]):
        if k == 0:
            out[row] = cost_form[row, 0]
        elif k == L:
            out[row] = cost_form[row, 1]
        else:
            v = cost_form[row, 3] * counts[0, k]
            v += cost_form[row, 2]
            for g in range(1, n_groups):
                v += cost_form[row, 3 + g] * counts[g, k]
            out[row] = v


@_inline
def _expand_form(cost_form, counts, L, n_groups, total_at, energy_at, base_at):
    """Total, energy and base reward of ``cost_form`` at every split (SplitModel.expand's arithmetic)."""
    for k in range(L + 1):
        total_at[k] = cost_form[_C_TOTAL, 3] * counts[0, k] + cost_form[_C_TOTAL, 2]
        energy_at[k] = cost_form[_C_ENERGY, 3] * counts[0, k] + cost_form[_C_ENERGY, 2]
        base_at[k] = cost_form[_C_BASE, 3] * counts[0, k] + cost_form[_C_BASE, 2]
    for g in range(1, n_groups):
        for k in range(L + 1):
            total_at[k] += cost_form[_C_TOTAL, 3 + g] * counts[g, k]
            energy_at[k] += cost_form[_C_ENERGY, 3 + g] * counts[g, k]
            base_at[k] += cost_form[_C_BASE, 3 + g] * counts[g, k]
    total_at[0], energy_at[0], base_at[0] = cost_form[_C_TOTAL, 0], cost_form[_C_ENERGY, 0], cost_form[_C_BASE, 0]
    total_at[L], energy_at[L], base_at[L] = cost_form[_C_TOTAL, 1], cost_form[_C_ENERGY, 1], cost_form[_C_BASE, 1]
