"""Wireless link models: rate, path loss, fading, traces (THE place for link formulas).

Pure numpy and vectorised: every function takes scalars or arrays and
broadcasts them. Randomness only through a ``numpy.random.Generator`` passed
in by the caller (never the global ``np.random`` state), so the same seed gives
the same draws. Units are in the names: ``_hz``, ``_w``, ``_dbm``, ``_db``,
``_m``, ``_s``, ``_bps``; "gain" and "power" without a unit are linear power
ratios. Bad inputs raise ``ValueError`` whose message starts with the
argument's name.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "SPEED_OF_LIGHT", "PATH_LOSS_MODELS", "FADING_MODELS", "MIN_DISTANCE_M", "CLARKE_COHERENCE",
    "db_to_linear", "linear_to_db", "dbm_to_watts", "watts_to_dbm", "noise_power_w",
    "shannon_rate_bps", "path_loss_db", "gain_from_path_loss",
    "rayleigh_power", "rician_power", "nakagami_power", "bessel_j0", "doppler_hz",
    "GaussMarkovFading", "TraceLink", "LinkModel", "shared_rate_bps",
]

SPEED_OF_LIGHT = 299_792_458.0  #: m/s

PATH_LOSS_MODELS = ("free_space", "log_distance", "macro_128_1", "3gpp_umi", "3gpp_uma")
FADING_MODELS = ("none", "rayleigh", "rician", "nakagami")

#: Shortest distance (m) each path-loss model is evaluated at; shorter ones are
#: clipped to it (so d = 0 gives a finite loss). ``log_distance`` clips at its
#: ``reference_distance_m``; ``macro_128_1`` at the 35 m minimum UE-eNB
#: distance of 3GPP TR 36.814 Table A.2.1.1-2; the TR 38.901 models at the
#: 10 m lower end of their validity range (Table 7.4.1-1).
MIN_DISTANCE_M = {"free_space": 1.0, "log_distance": None, "macro_128_1": 35.0, "3gpp_umi": 10.0, "3gpp_uma": 10.0}

#: Clarke/Jakes coherence time Tc = 0.423 / f_D (Rappaport, "Wireless
#: Communications", eq. 5.40c), used to turn a profile's ``coherence_time_s``
#: into a maximum Doppler shift.
CLARKE_COHERENCE = 0.423

_PATH_LOSS_PARAMS = {
    "free_space": (),
    "log_distance": ("exponent", "reference_distance_m", "reference_loss_db"),
    "macro_128_1": (),
    "3gpp_umi": ("los",),
    "3gpp_uma": ("los",),
}
#: path_loss keys of a link profile that are not inputs of the mean path loss
_PATH_LOSS_EXTRA_KEYS = ("model", "shadowing_std_db")

# --------------------------------------------------------------------------
# input checks


def _array(value, name: str) -> np.ndarray:
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a number or an array of numbers, got {value!r}") from None


def _checked(value, name: str, *, low: float | None = None, low_open: bool = False,
             high: float | None = None) -> np.ndarray:
    """``value`` as a float64 array; ValueError naming ``name`` unless finite and within the bounds."""
    arr = _array(value, name)
    bad = ~np.isfinite(arr)
    if low is not None:
        bad |= (arr <= low) if low_open else (arr < low)
    if high is not None:
        bad |= arr > high
    if bad.any():
        want = "finite values"
        if low is not None:
            want += f" {'>' if low_open else '>='} {low:g}"
        if high is not None:
            want += f"{' and' if low is not None else ''} <= {high:g}"
        raise ValueError(f"{name}: expected {want}, got {arr[bad].flat[0]!r}")
    return arr


def _check_rng(rng) -> None:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: expected a numpy.random.Generator (np.random.default_rng(seed)), "
                        f"got {type(rng).__name__}")


# --------------------------------------------------------------------------
# units


def db_to_linear(db):
    """Power ratio of ``db`` decibels: 10^(dB/10)."""
    return 10.0 ** (_array(db, "db") / 10.0)


def linear_to_db(x):
    """Decibels of a power ratio ``x`` >= 0: 10 log10(x) (-inf for 0)."""
    x = _checked(x, "x", low=0.0)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(x)


def dbm_to_watts(dbm):
    """Watts of a power in dBm: 10^((dBm - 30)/10)."""
    return 10.0 ** ((_array(dbm, "dbm") - 30.0) / 10.0)


def watts_to_dbm(w):
    """dBm of a power ``w`` >= 0 in watts: 10 log10(w) + 30 (-inf for 0)."""
    w = _checked(w, "w", low=0.0)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(w) + 30.0


def noise_power_w(bandwidth_hz, noise_psd_dbm_per_hz=-174.0, noise_figure_db=0.0):
    """Receiver noise power in W: N0 (dBm/Hz) + noise figure (dB) over ``bandwidth_hz`` (Hz).

    The default N0 = -174 dBm/Hz is thermal noise kT at 290 K.
    """
    b = _checked(bandwidth_hz, "bandwidth_hz", low=0.0, low_open=True)
    psd = _checked(noise_psd_dbm_per_hz, "noise_psd_dbm_per_hz")
    nf = _checked(noise_figure_db, "noise_figure_db", low=0.0)
    return dbm_to_watts(psd + nf) * b


def shannon_rate_bps(bandwidth_hz, tx_power_w, channel_gain, noise_power_w):
    """Shannon capacity in bit/s: ``B log2(1 + p g / N)``.

    ``bandwidth_hz`` B (Hz) >= 0, ``tx_power_w`` p (W) >= 0, ``channel_gain`` g
    (linear power gain, path loss x fading) >= 0, ``noise_power_w`` N (W) > 0.
    """
    b = _checked(bandwidth_hz, "bandwidth_hz", low=0.0)
    p = _checked(tx_power_w, "tx_power_w", low=0.0)
    g = _checked(channel_gain, "channel_gain", low=0.0)
    n = _checked(noise_power_w, "noise_power_w", low=0.0, low_open=True)
    return rate_from_snr(b, p * g / n)


# --------------------------------------------------------------------------
# path loss


def _free_space_db(d, f):
    return 20.0 * np.log10(4.0 * np.pi * d * f / SPEED_OF_LIGHT)


def _path_loss_params(model: str, params: dict) -> dict:
    """Validated parameters of ``model`` (ValueError naming the bad one)."""
    if model not in _PATH_LOSS_PARAMS:
        raise ValueError(f"model: expected a path-loss model, one of {', '.join(PATH_LOSS_MODELS)}; got {model!r}")
    allowed = _PATH_LOSS_PARAMS[model]
    for key in params:
        if key not in allowed:
            raise ValueError(f"{key}: not a parameter of path-loss model {model!r} "
                             f"(its parameters: {', '.join(allowed) or 'none'})")
    out = dict(params)
    if model == "log_distance":
        if "exponent" not in out:
            raise ValueError("exponent: path-loss model 'log_distance' needs its path-loss exponent n")
        out["exponent"] = float(_checked(out["exponent"], "exponent", low=0.0, low_open=True))
        out["reference_distance_m"] = float(_checked(out.get("reference_distance_m", 1.0), "reference_distance_m",
                                                     low=0.0, low_open=True))
        if out.get("reference_loss_db") is not None:
            out["reference_loss_db"] = float(_checked(out["reference_loss_db"], "reference_loss_db"))
        else:
            out["reference_loss_db"] = None
    if model in ("3gpp_umi", "3gpp_uma"):
        los = out.get("los", False)
        if not isinstance(los, (bool, np.bool_)):
            raise ValueError(f"los: expected true or false, got {los!r}")
        out["los"] = bool(los)
    return out


def _path_loss_unchecked(d, f, model: str, p: dict):
    """Path loss in dB; ``d`` (m) >= 0 and ``f`` (Hz) > 0 arrays, ``p`` validated."""
    return path_loss_coded(d, f, *_coded_path_loss(model, p, f))


def _coded_path_loss(model: str, p: dict, f) -> tuple:
    """(code, minimum distance, exponent, reference distance, reference loss, los) of a validated model."""
    code = PATH_LOSS_MODELS.index(model)
    if model == "log_distance":
        d0 = p["reference_distance_m"]
        ref = _free_space_db(d0, f) if p["reference_loss_db"] is None else p["reference_loss_db"]
        return code, float(d0), float(p["exponent"]), float(d0), float(ref), False
    return code, float(MIN_DISTANCE_M[model]), 0.0, 1.0, 0.0, bool(p.get("los", False))


def path_loss_coded(d, f, code, min_distance, exponent, reference_distance, reference_loss, los):
    """Path loss in dB of model ``PATH_LOSS_MODELS[code]`` (see :func:`path_loss_db`), unchecked.

    The arithmetic of every model in one function of numbers: it runs on
    arrays and, compiled as it is, in the envs' kernels.
    """
    d = np.maximum(d, min_distance)
    if code == 0:  # free space
        return 20.0 * np.log10(4.0 * np.pi * d * f / SPEED_OF_LIGHT)
    if code == 1:  # log distance
        return reference_loss + 10.0 * exponent * np.log10(d / reference_distance)
    if code == 2:  # 128.1 + 37.6 log10(d / 1 km)
        return 128.1 + 37.6 * np.log10(d / 1000.0)
    # 3GPP TR 38.901 V17.0.0 Table 7.4.1-1 (fc in GHz inside the logs, in Hz in d'_BP)
    h_ut = 1.5
    h_bs = 10.0 if code == 3 else 25.0
    h_e = 1.0  # UMi: 1 m; UMa: 1 m with probability 1 / (1 + C), C = 0 for h_UT < 13 m
    log_fc = np.log10(f / 1e9)
    log_d3d = np.log10(np.sqrt(d ** 2 + (h_bs - h_ut) ** 2))
    d_bp = 4.0 * (h_bs - h_e) * (h_ut - h_e) * f / SPEED_OF_LIGHT
    if code == 3:  # UMi street canyon
        pl1 = 32.4 + 21.0 * log_d3d + 20.0 * log_fc
        pl2 = 32.4 + 40.0 * log_d3d + 20.0 * log_fc - 9.5 * np.log10(d_bp ** 2 + (h_bs - h_ut) ** 2)
        nlos = 35.3 * log_d3d + 22.4 + 21.3 * log_fc - 0.3 * (h_ut - 1.5)
    else:  # UMa
        pl1 = 28.0 + 22.0 * log_d3d + 20.0 * log_fc
        pl2 = 28.0 + 40.0 * log_d3d + 20.0 * log_fc - 9.0 * np.log10(d_bp ** 2 + (h_bs - h_ut) ** 2)
        nlos = 13.54 + 39.08 * log_d3d + 20.0 * log_fc - 0.6 * (h_ut - 1.5)
    los_pl = pl1 * (d <= d_bp) + pl2 * (d > d_bp)  # exact: one term is x 1, the other x 0
    return los_pl if los else np.maximum(los_pl, nlos)


def snr_from_path_loss(path_loss_db, fading_power, tx_power_fraction, tx_power_w, noise_w):
    """Linear SNR ``p_tx x fraction x 10^(-PL/10) x fading / noise``, unchecked (arrays or compiled)."""
    gain = 10.0 ** (-path_loss_db / 10.0)
    return tx_power_w * tx_power_fraction * gain * fading_power / noise_w


def rate_from_snr(bandwidth_hz, snr):
    """``B log2(1 + SNR)`` in bit/s, unchecked (arrays or compiled; :func:`shannon_rate_bps` checks)."""
    return bandwidth_hz * np.log2(1.0 + snr)


def path_loss_db(distance_m, carrier_hz, model, **params):
    """Mean (median, no shadowing) path loss in dB at ``distance_m`` (m) and ``carrier_hz`` (Hz).

    Models and their ``params``:

    - ``free_space``: Friis, ``20 log10(4 pi d f / c)``.
    - ``log_distance`` (``exponent`` n, required; ``reference_distance_m`` d0,
      default 1 m; ``reference_loss_db``, default free space at d0):
      ``PL(d0) + 10 n log10(d / d0)`` (Rappaport, "Wireless Communications",
      eq. 4.68).
    - ``macro_128_1``: ``128.1 + 37.6 log10(d / 1 km)``, 3GPP TR 36.814 Table
      A.2.1.1.2-3 macro cell (2 GHz), the model of the offloading literature;
      it ignores ``carrier_hz``.
    - ``3gpp_umi`` / ``3gpp_uma`` (``los``: true or false, default false):
      3GPP TR 38.901 Table 7.4.1-1, UMi street canyon / UMa. ``distance_m`` is
      the 2D distance; UE height 1.5 m, BS height 10 m (UMi) / 25 m (UMa),
      d3D = sqrt(d2D^2 + (h_BS - h_UT)^2). LOS is PL1 up to the breakpoint
      d'_BP = 4 (h_BS - 1)(h_UT - 1) f / c (effective environment height 1 m)
      and PL2 beyond; NLOS is max(PL_LOS, PL'_NLOS). Valid for d2D <= 5 km
      (extrapolated beyond) and 0.5-100 GHz.

    Distances below ``MIN_DISTANCE_M[model]`` (1 m, d0, 35 m, 10 m) are clipped
    to it rather than giving -inf. Broadcasts ``distance_m`` with ``carrier_hz``.
    """
    d = _checked(distance_m, "distance_m", low=0.0)
    f = _checked(carrier_hz, "carrier_hz", low=0.0, low_open=True)
    return _path_loss_unchecked(d, f, model, _path_loss_params(model, params))


def gain_from_path_loss(pl_db):
    """Linear channel power gain of a path loss in dB: 10^(-PL/10)."""
    return 10.0 ** (-_array(pl_db, "pl_db") / 10.0)


# --------------------------------------------------------------------------
# small-scale fading (power gains |h|^2 with E|h|^2 = 1)


def rayleigh_power(rng: np.random.Generator, size=None):
    """|h|^2 of Rayleigh fading, h ~ CN(0, 1): Exp(1), mean 1, variance 1."""
    _check_rng(rng)
    return rng.exponential(1.0, size)


def rician_power(rng: np.random.Generator, size=None, k_factor_db=3.0):
    """|h|^2 of Rician fading with K factor ``k_factor_db`` (dB, LOS / scattered power).

    h = sqrt(K/(K+1)) + sqrt(1/(K+1)) CN(0, 1): mean 1, variance (2K+1)/(K+1)^2.
    ``k_factor_db`` may be an array broadcastable to ``size``.
    """
    _check_rng(rng)
    k = db_to_linear(_checked(k_factor_db, "k_factor_db"))
    los = np.sqrt(k / (k + 1.0))
    sigma = np.sqrt(1.0 / (2.0 * (k + 1.0)))
    re = los + sigma * rng.standard_normal(size)
    im = sigma * rng.standard_normal(size)
    return re * re + im * im


def nakagami_power(rng: np.random.Generator, size=None, m=1.0):
    """|h|^2 of Nakagami-m fading: Gamma(shape m, scale 1/m), mean 1, variance 1/m (m >= 0.5; m = 1 is Rayleigh)."""
    _check_rng(rng)
    m = _checked(m, "m", low=0.5)
    return rng.gamma(m, 1.0 / m, size)


# --------------------------------------------------------------------------
# time correlation


def bessel_j0(x):
    """Bessel function of the first kind, order 0 (no scipy); |error| < 1e-12 for any finite ``x``.

    |x| <= 200: midpoint rule on J0(x) = (2/pi) int_0^{pi/2} cos(x sin t) dt,
    whose error on this periodic integrand is about 2 J_{4n}(x), negligible
    with n = 16 + |x|/4 nodes. |x| > 200: Hankel's asymptotic expansion
    (Abramowitz & Stegun 9.2.5, 9.2.9-10) to the x^-5 term.
    """
    x = _checked(x, "x")
    ax = np.abs(x).ravel()
    out = np.empty_like(ax)
    small = ax <= _J0_ASYMPTOTIC_FROM
    xs = ax[small]
    if xs.size:
        n = 16 + int(np.ceil(xs.max() / 4.0))
        s = np.sin((np.arange(n) + 0.5) * (0.5 * np.pi / n))
        vals = np.empty_like(xs)
        chunk = max(1, (1 << 20) // n)  # bounds the temporary at ~8 MB
        for i in range(0, xs.size, chunk):
            vals[i:i + chunk] = np.cos(np.multiply.outer(xs[i:i + chunk], s)).mean(axis=-1)
        out[small] = vals
    xl = ax[~small]
    if xl.size:
        z2 = 1.0 / (xl * xl)
        p = 1.0 - z2 * (9.0 / 128.0 - z2 * (11025.0 / 98304.0))
        q = (-1.0 + z2 * (75.0 / 128.0 - z2 * (893025.0 / 491520.0))) / (8.0 * xl)
        chi = xl - 0.25 * np.pi
        out[~small] = np.sqrt(2.0 / (np.pi * xl)) * (p * np.cos(chi) - q * np.sin(chi))
    return out.reshape(x.shape)


_J0_ASYMPTOTIC_FROM = 200.0


def doppler_hz(speed_mps, carrier_hz):
    """Maximum Doppler shift in Hz: f_D = v f_c / c (``speed_mps`` in m/s, ``carrier_hz`` in Hz)."""
    v = _checked(speed_mps, "speed_mps", low=0.0)
    f = _checked(carrier_hz, "carrier_hz", low=0.0, low_open=True)
    return v * f / SPEED_OF_LIGHT


class GaussMarkovFading:
    """Time-correlated fading of ``shape`` independent links (first-order Gauss-Markov).

    The scattered component follows ``h_t = rho h_{t-1} + sqrt(1 - rho^2) w_t``
    with w_t ~ CN(0, 1), so h_t ~ CN(0, 1) at every step (stationary) and
    E[h_t conj(h_{t-1})] = rho. The complex gain is ``g = sqrt(K/(K+1)) +
    sqrt(1/(K+1)) h`` (Rician with a fixed-phase LOS path; K = 0, Rayleigh,
    when ``k_factor_db`` is None) and :meth:`step` returns the power gains
    |g|^2 (mean 1).

    ``rho`` (in [-1, 1], scalar or broadcastable to ``shape``) is given, or
    follows Jakes' model rho = J0(2 pi f_D T) from ``doppler_hz`` f_D (Hz) and
    ``step_s`` T (s); see also :meth:`from_speed`. The state ``h`` (complex
    array of ``shape``, None before :meth:`reset`) can be read and assigned
    (:attr:`state`) so that an environment can copy or restore it.
    """

    def __init__(self, shape=(), rho=None, *, doppler_hz=None, step_s=None, k_factor_db=None):
        self.shape = (int(shape),) if np.ndim(shape) == 0 else tuple(int(s) for s in shape)
        if any(s < 0 for s in self.shape):
            raise ValueError(f"shape: expected non-negative sizes, got {shape!r}")
        if rho is None:
            if doppler_hz is None or step_s is None:
                raise ValueError("rho: give rho, or doppler_hz and step_s for Jakes' correlation J0(2 pi f_D T)")
            fd = _checked(doppler_hz, "doppler_hz", low=0.0)
            ts = _checked(step_s, "step_s", low=0.0)
            rho = bessel_j0(2.0 * np.pi * fd * ts)
        elif doppler_hz is not None or step_s is not None:
            raise ValueError("rho: give either rho or doppler_hz and step_s, not both")
        rho = _checked(rho, "rho", low=-1.0, high=1.0)
        try:
            if np.broadcast_shapes(rho.shape, self.shape) != self.shape:
                raise ValueError
        except ValueError:
            raise ValueError(f"rho: expected a scalar or an array broadcastable to shape {self.shape}, "
                             f"got shape {rho.shape}") from None
        self.rho = float(rho) if rho.ndim == 0 else rho
        self._innovation = np.sqrt(1.0 - rho ** 2)
        self.k_factor_db = None if k_factor_db is None else float(_checked(k_factor_db, "k_factor_db"))
        k = 0.0 if k_factor_db is None else float(db_to_linear(self.k_factor_db))
        self.los = float(np.sqrt(k / (k + 1.0)))  #: amplitude of the LOS path
        self.scatter = float(np.sqrt(1.0 / (k + 1.0)))  #: amplitude scale of the scattered part
        self.h: np.ndarray | None = None

    @classmethod
    def from_speed(cls, shape, speed_mps, carrier_hz, step_s, *, k_factor_db=None) -> "GaussMarkovFading":
        """Jakes-correlated fading for a receiver moving at ``speed_mps`` (m/s), stepped every ``step_s`` (s)."""
        return cls(shape, doppler_hz=doppler_hz(speed_mps, carrier_hz), step_s=step_s, k_factor_db=k_factor_db)

    def _cn(self, rng):
        z = rng.standard_normal((2,) + self.shape)
        return (z[0] + 1j * z[1]) * np.sqrt(0.5)

    def reset(self, rng: np.random.Generator):
        """Draw h from its stationary law CN(0, 1); return the power gains."""
        _check_rng(rng)
        self.h = self._cn(rng)
        return self.power()

    def step(self, rng: np.random.Generator):
        """Advance one step; return the power gains (array of ``shape``)."""
        _check_rng(rng)
        if self.h is None:
            raise RuntimeError("GaussMarkovFading.step: call reset(rng) first")
        self.h = self.rho * self.h + self._innovation * self._cn(rng)
        return self.power()

    def gain(self):
        """Complex amplitude gain g = LOS + scattered part (array of ``shape``)."""
        if self.h is None:
            raise RuntimeError("GaussMarkovFading.gain: call reset(rng) first")
        return self.los + self.scatter * self.h

    def power(self):
        """Power gains |g|^2 (mean 1)."""
        g = self.gain()
        return g.real ** 2 + g.imag ** 2

    @property
    def state(self):
        """A copy of the scattered component h (None before :meth:`reset`)."""
        return None if self.h is None else self.h.copy()

    @state.setter
    def state(self, value):
        if value is None:
            self.h = None
            return
        h = np.array(value, dtype=np.complex128)
        if h.shape != self.shape:
            raise ValueError(f"state: expected a complex array of shape {self.shape}, got shape {h.shape}")
        self.h = h


# --------------------------------------------------------------------------
# measured traces


class TraceLink:
    """A link whose rate follows a measured trace of (time_s, bandwidth_bps), looping.

    ``path``: a CSV file with a header row naming the columns ``time_s`` and
    ``bandwidth_bps`` (others are ignored); times strictly increasing, rates
    >= 0. Row i's rate holds from its time to the next row's (piecewise
    constant) or ramps linearly to it (``interpolate=True``). The loop lasts
    ``period_s``, by default the trace's span plus its last interval (so a
    trace of n samples every dt loops every n dt); after the last row the rate
    holds (or ramps back to the first row's) until the loop restarts. Times
    ``t`` given to :meth:`rate_at` are on the trace's clock (its first row is
    at ``times_s[0]``), wrapped into the loop.
    """

    COLUMNS = ("time_s", "bandwidth_bps")

    def __init__(self, path, *, interpolate: bool = False, period_s: float | None = None):
        path = Path(path)
        times, rates = self._read(path)
        self._init(times, rates, interpolate, period_s, str(path))
        self.path = path

    @classmethod
    def from_arrays(cls, times_s, rates_bps, *, interpolate: bool = False,
                    period_s: float | None = None) -> "TraceLink":
        """A trace from arrays of times (s) and rates (bit/s) instead of a file."""
        obj = cls.__new__(cls)
        times = _array(times_s, "times_s").ravel()
        rates = _array(rates_bps, "rates_bps").ravel()
        if times.shape != rates.shape:
            raise ValueError(f"rates_bps: expected as many rates as times ({times.size}), got {rates.size}")
        for i, (t, r) in enumerate(zip(times, rates)):
            cls._check_row(t, r, i, times[i - 1] if i else None, "trace", "index")
        obj._init(times, rates, interpolate, period_s, "trace")
        obj.path = None
        return obj

    @staticmethod
    def _check_row(t, r, row, prev, where, row_word):
        if not np.isfinite(t):
            raise ValueError(f"{where}: {row_word} {row}, column time_s: expected a finite time, got {t!r}")
        if not (np.isfinite(r) and r >= 0):
            raise ValueError(f"{where}: {row_word} {row}, column bandwidth_bps: expected a rate >= 0, got {r!r}")
        if prev is not None and t <= prev:
            raise ValueError(f"{where}: {row_word} {row}, column time_s: expected times strictly increasing, "
                             f"got {t!r} after {prev!r}")

    @classmethod
    def _read(cls, path: Path):
        try:
            with open(path, newline="", encoding="utf-8") as fh:
                reader = csv.reader(fh)
                header = next((r for r in reader if r), None)
                if header is None:
                    raise ValueError(f"{path}: empty file, expected a header row with columns time_s, bandwidth_bps")
                names = [h.strip() for h in header]
                missing = [c for c in cls.COLUMNS if c not in names]
                if missing:
                    raise ValueError(f"{path}: row {reader.line_num}: header has no column {', '.join(missing)} "
                                     f"(expected time_s, bandwidth_bps; got {', '.join(names)})")
                ti, ri = names.index("time_s"), names.index("bandwidth_bps")
                times, rates = [], []
                for row in reader:
                    if not row or all(not c.strip() for c in row):
                        continue
                    line = reader.line_num
                    values = []
                    for col, idx in (("time_s", ti), ("bandwidth_bps", ri)):
                        cell = row[idx].strip() if idx < len(row) else ""
                        try:
                            values.append(float(cell))
                        except ValueError:
                            raise ValueError(f"{path}: row {line}, column {col}: expected a number, "
                                             f"got {cell!r}") from None
                    cls._check_row(values[0], values[1], line, times[-1] if times else None, str(path), "row")
                    times.append(values[0])
                    rates.append(values[1])
        except OSError as exc:
            raise ValueError(f"{path}: cannot be read: {exc}") from None
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path}: not a UTF-8 text file: {exc}") from None
        return np.asarray(times, dtype=np.float64), np.asarray(rates, dtype=np.float64)

    def _init(self, times, rates, interpolate, period_s, where):
        if times.size == 0:
            raise ValueError(f"{where}: expected at least one data row, got none")
        span = float(times[-1] - times[0])
        if period_s is None:
            if times.size < 2:
                raise ValueError(f"{where}: period_s: a one-row trace needs an explicit period_s")
            period_s = span + float(times[-1] - times[-2])
        period_s = float(_checked(period_s, "period_s", low=0.0, low_open=True))
        if period_s <= span:
            raise ValueError(f"period_s: expected more than the trace's span {span!r} s, got {period_s!r}")
        self.times_s = times
        self.rates_bps = rates
        self.period_s = period_s
        self.interpolate = bool(interpolate)
        # one loop plus the wrap point, for linear interpolation back to the first row
        self._xp = np.append(times, times[0] + period_s)
        self._fp = np.append(rates, rates[0])

    def rate_at(self, t):
        """Rate in bit/s at time(s) ``t`` (s, any shape), the trace looping every ``period_s``."""
        t = _checked(t, "t")
        u = self.times_s[0] + np.mod(t - self.times_s[0], self.period_s)
        if self.interpolate:
            return np.interp(u, self._xp, self._fp)
        idx = np.searchsorted(self.times_s, u, side="right") - 1
        return self.rates_bps[np.clip(idx, 0, self.times_s.size - 1)]

    def mean_rate_bps(self) -> float:
        """Time-average rate over one loop (bit/s)."""
        dt = np.diff(self._xp)
        if self.interpolate:
            return float(np.sum(dt * (self._fp[:-1] + self._fp[1:]) / 2.0) / self.period_s)
        return float(np.sum(dt * self.rates_bps) / self.period_s)


# --------------------------------------------------------------------------
# link profiles


@dataclass(frozen=True)
class LinkModel:
    """Rates of one link profile as functions of distance, fading and transmit power.

    Build it with :meth:`from_profile`. Powers in W, noise in W over the whole
    bandwidth; ``path_loss`` and ``fading`` are the profile's mappings as
    sorted ``(key, value)`` tuples (hashable). A ``wired`` link has only
    ``rate_bps``, returned whatever the distance.
    """

    medium: str
    bandwidth_hz: float = 0.0
    carrier_hz: float = 0.0
    tx_power_w: float = 0.0
    downlink_tx_power_w: float = 0.0
    noise_w: float = 0.0
    path_loss: tuple = ()
    fading: tuple = ()
    rate_bps: float = 0.0
    name: str = ""
    _pl_model: str = field(default="", init=False, repr=False, compare=False)
    _pl_params: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        where = f"link {self.name!r}: " if self.name else ""
        if self.medium not in ("wireless", "wired"):
            raise ValueError(f"{where}medium: expected wireless or wired, got {self.medium!r}")
        if self.medium == "wired":
            _checked(self.rate_bps, f"{where}rate_bps", low=0.0, low_open=True)
            return
        for name in ("bandwidth_hz", "carrier_hz", "tx_power_w", "noise_w"):
            _checked(getattr(self, name), f"{where}{name}", low=0.0, low_open=True)
        _checked(self.downlink_tx_power_w, f"{where}downlink_tx_power_w", low=0.0, low_open=True)
        pl = dict(self.path_loss)
        model = pl.get("model")
        if model not in PATH_LOSS_MODELS:
            raise ValueError(f"{where}path_loss.model: expected one of {', '.join(PATH_LOSS_MODELS)}, got {model!r}")
        if "shadowing_std_db" in pl:
            _checked(pl["shadowing_std_db"], f"{where}path_loss.shadowing_std_db", low=0.0)
        try:
            params = _path_loss_params(model, {k: v for k, v in pl.items() if k not in _PATH_LOSS_EXTRA_KEYS})
        except ValueError as exc:
            raise ValueError(f"{where}path_loss.{exc}") from None
        object.__setattr__(self, "_pl_model", model)
        object.__setattr__(self, "_pl_params", params)
        fd = dict(self.fading)
        fmodel = fd.get("model", "none")
        if fmodel not in FADING_MODELS:
            raise ValueError(f"{where}fading.model: expected one of {', '.join(FADING_MODELS)}, got {fmodel!r}")
        if fmodel == "rician":
            if "k_factor_db" not in fd:
                raise ValueError(f"{where}fading.k_factor_db: rician fading needs its K factor (dB)")
            _checked(fd["k_factor_db"], f"{where}fading.k_factor_db")
        if fmodel == "nakagami":
            if "m" not in fd:
                raise ValueError(f"{where}fading.m: nakagami fading needs its shape m (>= 0.5)")
            _checked(fd["m"], f"{where}fading.m", low=0.5)
        if fd.get("coherence_time_s") is not None:
            _checked(fd["coherence_time_s"], f"{where}fading.coherence_time_s", low=0.0, low_open=True)

    @classmethod
    def from_profile(cls, link) -> "LinkModel":
        """The model of ``link``: any object with the link-profile attributes of profiles/README.md.

        Wireless: ``bandwidth_hz``, ``carrier_hz``, ``tx_power_dbm`` (uplink),
        ``downlink_tx_power_dbm`` (None: same as uplink),
        ``noise_psd_dbm_per_hz`` (None: -174), ``noise_figure_db`` (None: 0),
        ``path_loss`` and ``fading`` mappings. Wired: ``rate_bps``.
        """
        name = str(getattr(link, "name", "") or "")
        where = f"link {name!r}: " if name else ""
        medium = getattr(link, "medium", None)
        if medium == "wired":
            return cls(medium="wired", rate_bps=float(_checked(getattr(link, "rate_bps", None), f"{where}rate_bps",
                                                               low=0.0, low_open=True)), name=name)
        if medium != "wireless":
            raise ValueError(f"{where}medium: expected wireless or wired, got {medium!r}")

        def number(attr, default=None):
            value = getattr(link, attr, None)
            if value is None:
                if default is None:
                    raise ValueError(f"{where}{attr}: required for a wireless link")
                value = default
            return float(_checked(value, f"{where}{attr}"))

        tx_dbm = number("tx_power_dbm")
        dl_dbm = number("downlink_tx_power_dbm", tx_dbm)
        bandwidth = number("bandwidth_hz")
        psd = number("noise_psd_dbm_per_hz", -174.0)
        nf = number("noise_figure_db", 0.0)
        try:
            noise = float(noise_power_w(bandwidth, psd, nf))
        except ValueError as exc:
            raise ValueError(f"{where}{exc}") from None
        path_loss = getattr(link, "path_loss", None) or {}
        fading = getattr(link, "fading", None) or {}
        return cls(
            medium="wireless", bandwidth_hz=bandwidth, carrier_hz=number("carrier_hz"),
            tx_power_w=float(dbm_to_watts(tx_dbm)), downlink_tx_power_w=float(dbm_to_watts(dl_dbm)), noise_w=noise,
            path_loss=tuple(sorted(dict(path_loss).items())), fading=tuple(sorted(dict(fading).items())), name=name,
        )

    # -- large scale ------------------------------------------------------

    def _wireless(self, what: str) -> None:
        if self.medium != "wireless":
            raise ValueError(f"{what}: link {self.name!r} is wired; it has a fixed rate_bps, no path loss or SNR")

    def path_loss_db(self, distance_m):
        """Mean path loss in dB at ``distance_m`` (m), by the profile's model (no shadowing)."""
        self._wireless("path_loss_db")
        d = _checked(distance_m, "distance_m", low=0.0)
        return _path_loss_unchecked(d, self.carrier_hz, self._pl_model, self._pl_params)

    def mean_gain(self, distance_m):
        """Linear power gain of the mean path loss at ``distance_m`` (m)."""
        return gain_from_path_loss(self.path_loss_db(distance_m))

    @property
    def shadowing_std_db(self) -> float:
        """Log-normal shadowing standard deviation of the profile (dB; 0 when it gives none)."""
        return float(dict(self.path_loss).get("shadowing_std_db", 0.0))

    def sample_shadowing(self, rng: np.random.Generator, size=None):
        """Log-normal shadowing power factors 10^(X/10), X ~ N(0, shadowing_std_db^2) (median 1)."""
        _check_rng(rng)
        return 10.0 ** (self.shadowing_std_db * rng.standard_normal(size) / 10.0)

    # -- SNR and rates ----------------------------------------------------

    def uplink_snr(self, distance_m, fading_power=1.0, tx_power_fraction=1.0):
        """Linear uplink SNR: p_tx x fraction x mean gain x fading power / noise."""
        self._wireless("uplink_snr")
        d = _checked(distance_m, "distance_m", low=0.0)
        fad = _checked(fading_power, "fading_power", low=0.0)
        frac = _checked(tx_power_fraction, "tx_power_fraction", low=0.0, high=1.0)
        pl = path_loss_coded(d, self.carrier_hz, *self.path_loss_terms())
        return snr_from_path_loss(pl, fad, frac, self.tx_power_w, self.noise_w)

    def path_loss_terms(self) -> tuple:
        """The profile's model as the numbers after (distance, carrier) of :func:`path_loss_coded` (compiled code)."""
        self._wireless("path_loss_terms")
        return _coded_path_loss(self._pl_model, self._pl_params, self.carrier_hz)

    def downlink_snr(self, distance_m, fading_power=1.0):
        """Linear downlink SNR (base-station power ``downlink_tx_power_w``, same path and noise)."""
        pl = self.path_loss_db(distance_m)
        fad = _checked(fading_power, "fading_power", low=0.0)
        return snr_from_path_loss(pl, fad, 1.0, self.downlink_tx_power_w, self.noise_w)

    def _wired_rate(self, *args):
        for name, value in zip(("distance_m", "fading_power", "tx_power_fraction"), args):
            _checked(value, name, low=0.0)
        return np.full(np.broadcast_shapes(*(np.shape(a) for a in args)), self.rate_bps)

    def uplink_rate_bps(self, distance_m, fading_power=1.0, tx_power_fraction=1.0):
        """Uplink (device to base station) Shannon rate in bit/s; broadcasts its arguments.

        ``fading_power``: small-scale power gain (1 = mean); ``tx_power_fraction``
        in [0, 1] of ``tx_power_w``. Wired: ``rate_bps``.
        """
        if self.medium == "wired":
            return self._wired_rate(distance_m, fading_power, tx_power_fraction)
        return rate_from_snr(self.bandwidth_hz, self.uplink_snr(distance_m, fading_power, tx_power_fraction))

    def downlink_rate_bps(self, distance_m, fading_power=1.0):
        """Downlink (base station to device) Shannon rate in bit/s. Wired: ``rate_bps``."""
        if self.medium == "wired":
            return self._wired_rate(distance_m, fading_power)
        return rate_from_snr(self.bandwidth_hz, self.downlink_snr(distance_m, fading_power))

    def rates_from_uplink_snr(self, snr):
        """(uplink, downlink) rates in bit/s given a linear uplink SNR (same path, base-station power downlink)."""
        self._wireless("rates_from_uplink_snr")
        snr = _checked(snr, "snr", low=0.0)
        down_snr = snr * (self.downlink_tx_power_w / self.tx_power_w)
        return rate_from_snr(self.bandwidth_hz, snr), rate_from_snr(self.bandwidth_hz, down_snr)

    # -- small scale ------------------------------------------------------

    @property
    def fading_model(self) -> str:
        """The profile's fading model: none, rayleigh, rician or nakagami."""
        return dict(self.fading).get("model", "none")

    def sample_fading(self, rng: np.random.Generator, size=None):
        """Independent small-scale power gains (mean 1) by the profile's fading model (``none``: ones)."""
        _check_rng(rng)
        f = dict(self.fading)
        model = f.get("model", "none")
        if model == "rayleigh":
            return rayleigh_power(rng, size)
        if model == "rician":
            return rician_power(rng, size, f["k_factor_db"])
        if model == "nakagami":
            return nakagami_power(rng, size, f["m"])
        return np.ones(() if size is None else size)

    def correlated_fading(self, shape, step_s, *, speed_mps=None) -> GaussMarkovFading:
        """A :class:`GaussMarkovFading` for this profile's Rayleigh or Rician fading, stepped every ``step_s`` (s).

        Doppler from ``speed_mps`` (m/s) if given, else from the profile's
        ``fading.coherence_time_s``: f_D = 0.423 / Tc (Clarke).
        """
        model = self.fading_model
        if model not in ("rayleigh", "rician"):
            raise ValueError(f"fading.model: correlated fading needs rayleigh or rician, link {self.name!r} "
                             f"has {model!r}")
        k = dict(self.fading).get("k_factor_db") if model == "rician" else None
        if speed_mps is not None:
            fd = doppler_hz(speed_mps, self.carrier_hz)
        else:
            tc = dict(self.fading).get("coherence_time_s")
            if tc is None:
                raise ValueError(f"speed_mps: link {self.name!r} gives no fading.coherence_time_s; pass speed_mps")
            fd = CLARKE_COHERENCE / float(tc)
        return GaussMarkovFading(shape, doppler_hz=fd, step_s=step_s, k_factor_db=k)


# --------------------------------------------------------------------------
# sharing


def shared_rate_bps(rate_bps, sharers=1, relay_rate_bps=np.inf, relay_sharers=1):
    """Rate in bit/s one transmitter gets on a link shared equally, optionally relayed over a second hop.

    Sharing rule: the ``sharers`` transmitters on a link get equal time shares
    (round-robin / TDMA scheduling), so each gets ``rate_bps / sharers``. A
    relay hop (store and forward, e.g. RSU backhaul to the cloud) shared by
    ``relay_sharers`` adds its per-bit time: ``1 / (sharers / rate_bps +
    relay_sharers / relay_rate_bps)``. Broadcasts over all arguments.
    """
    rate = _checked(rate_bps, "rate_bps", low=0.0, low_open=True)
    n = np.asarray(sharers, dtype=np.float64)
    m = np.asarray(relay_sharers, dtype=np.float64)
    if np.any(n < 1) or np.any(m < 1):
        raise ValueError(f"sharers, relay_sharers: expected counts >= 1, got {sharers!r}, {relay_sharers!r}")
    return 1.0 / (n / rate + m / np.asarray(relay_rate_bps, dtype=np.float64))
