"""A compiled forward pass of the single-layer ``LSTMRegressor`` for live serving on CPU, over input
projections cached per feature row.

Why: every second the ml worker predicts ~200 markets from windows of 50 rows, of which only ~5 per market
are new. A framework LSTM recomputes the input projection ``W_ih x + b`` of all 50 rows of every window (two
thirds of its multiply-adds) and needs the windows gathered into one contiguous tensor first. Here each row is
projected once, when its features are stored (``project``), into a ring beside the feature ring; ``forward``
then runs only the recurrence, reading each market's window straight from that ring: one BLAS product
``h @ W_hh`` for all markets per time step, the gate non-linearities vectorised over each market's gates.

Numerics: float32 like torch, with tanh as a rational approximation (max error 3.5e-7 over the reals) and
sigmoid(x) = (1 + tanh(x / 2)) / 2 folded into the weights; outputs equal torch's to ~1e-6 (tested).
Gate order is torch's (input, forget, cell, output).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

# Rational approximation of tanh on [-c, c] (c = 7.905...; tanh(c) rounds to 1 - 3.5e-7 in float32): odd
# numerator of degree 13 over an even denominator of degree 6 - the one Eigen uses for float tanh.
_TANH_CLAMP = 7.90531110763549805
_TANH_P = (
    4.89352455891786e-03,
    6.37261928875436e-04,
    1.48572235717979e-05,
    5.12229709037114e-08,
    -8.60467152213735e-11,
    2.00018790482477e-13,
    -2.76076847742355e-16,
)
_TANH_Q = (4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, 1.19825839466702e-06)

# fastmath: inputs are finite by construction (normalised, NaN -> 0, clipped); error_model "numpy": no
# division-by-zero branch, which would stop the gate loops from vectorising.
_JIT = {"cache": True, "nogil": True, "fastmath": True, "error_model": "numpy"}


@numba.njit(inline="always", **_JIT)
def _tanh(x):  # noqa: ANN001, ANN202
    c = np.float32(_TANH_CLAMP)
    x = min(max(x, -c), c)
    x2 = x * x
    p = x2 * np.float32(_TANH_P[6]) + np.float32(_TANH_P[5])
    p = x2 * p + np.float32(_TANH_P[4])
    p = x2 * p + np.float32(_TANH_P[3])
    p = x2 * p + np.float32(_TANH_P[2])
    p = x2 * p + np.float32(_TANH_P[1])
    p = x2 * p + np.float32(_TANH_P[0])
    q = x2 * np.float32(_TANH_Q[3]) + np.float32(_TANH_Q[2])
    q = x2 * q + np.float32(_TANH_Q[1])
    q = x2 * q + np.float32(_TANH_Q[0])
    return x * p / q


@numba.njit(**_JIT)
def tanh_array(x):  # noqa: ANN001, ANN201
    """The kernel's tanh over a float32 array (tests measure its error against the exact function)."""
    out = np.empty_like(x)
    for i in range(x.size):
        out.flat[i] = _tanh(x.flat[i])
    return out


def ring_stride(slots: int, gates: int) -> int:
    """Floats per market in a projection ring of ``slots`` rows of ``gates``: padded to an odd number of
    64-byte cache lines. Every market sits at the same slot in a call (same row rate), so with a power-of-two
    stride (64 x 128 floats = 32 KiB) the rows one time step reads would all fall in the same cache sets
    (measured: the forward pass 15 % slower)."""
    lines = -(-slots * gates * 4 // 64)
    return (lines + 1 - lines % 2) * 16


@numba.njit(**_JIT)
def project(z, k, dm, ds, wih_t, bias, mrow, zp):  # noqa: ANN001, ANN201
    """Rows ``z[dm[i], ds[i]]`` (i < k; normalised features) -> slot ``ds[i]`` of market ``dm[i]``'s
    projection ring ``zp`` ([market, slot * G + gate], G = this model's gates; the ring may be wider for a
    larger model): ``row @ wih_t + bias[mrow[dm[i]]]``, one BLAS product for all (``bias`` has one row for
    a market's own model, one per market for a pooled model: its embedding's share of the gates)."""
    F = wih_t.shape[0]
    G = wih_t.shape[1]
    if k == 0:
        return
    rows = np.empty((k, F), dtype=np.float32)
    for i in range(k):
        for f in range(F):
            rows[i, f] = z[dm[i], ds[i], f]
    proj = np.dot(rows, wih_t)
    for i in range(k):
        at = ds[i] * G
        b = bias[mrow[dm[i]]]
        dst = zp[dm[i], at : at + G]
        for j in range(G):
            dst[j] = proj[i, j] + b[j]


@numba.njit(**_JIT)
def forward(midx, first, window, slots, zp, whh_t, head_w, head_b, xs, out):  # noqa: ANN001, ANN201
    """For each k: the LSTM over rows ``first[k] .. first[k] + window - 1`` (absolute row numbers; slot =
    row % ``slots``) of market ``midx[k]``'s projection ring, from a zero state; ``out[k]`` = the linear
    head on the last hidden state (the model's raw output, before ``y_scale``). ``xs``: a float32 work
    buffer of at least ``window * len(midx) * G`` values (reused across calls: no page faults)."""
    H = whh_t.shape[0]
    G = whh_t.shape[1]
    B = midx.shape[0]
    # Each market's window into a step-major buffer first, one market at a time: a sequential read the
    # prefetcher follows. Read step by step from the ring, 200 markets are 200 interleaved streams - more
    # than it tracks - and the forward pass ran 2x slower once other work had evicted the ring.
    x = xs[: window * B * G].reshape((window, B, G))
    for b in range(B):
        zr = zp[midx[b]]
        for q in range(window):
            at = ((first[b] + q) % slots) * G
            src = zr[at : at + G]  # slices: range indices below need no negative-index handling
            dst = x[q, b]
            for j in range(G):
                dst[j] = src[j]
    h = np.zeros((B, H), dtype=np.float32)
    c = np.zeros((B, H), dtype=np.float32)
    rec = np.zeros((B, G), dtype=np.float32)
    t = np.empty(G, dtype=np.float32)
    half = np.float32(0.5)
    for q in range(window):
        if q:  # h is zero at the first step
            np.dot(h, whh_t, rec)
        for b in range(B):
            zr = x[q, b]
            rr = rec[b]
            for j in range(G):
                t[j] = _tanh(zr[j] + rr[j])
            for j in range(H):
                cj = (half + half * t[H + j]) * c[b, j] + (half + half * t[j]) * t[2 * H + j]
                c[b, j] = cj
                h[b, j] = (half + half * t[3 * H + j]) * _tanh(cj)
    for b in range(B):
        acc = np.float32(head_b)
        for j in range(H):
            acc += h[b, j] * head_w[j]
        out[b] = acc


_blas: Any = None


def blas_threads(n: int) -> Any:
    """A context manager capping BLAS - the kernels' ``np.dot`` products - at ``n`` threads (on a small
    shared CPU a second BLAS thread only waits for a busy core). scipy's BLAS, the one numba calls, is loaded
    first: threadpoolctl only sees libraries already loaded when its controller is made."""
    global _blas
    if _blas is None:
        import scipy.linalg.cython_blas  # noqa: F401 - heavy; loaded on the first call, before the controller
        from threadpoolctl import ThreadpoolController  # after scipy's BLAS is loaded (see above)

        _blas = ThreadpoolController()
    return _blas.limit(limits=n, user_api="blas")


@dataclass(frozen=True)
class LSTMWeights:
    """A single-layer ``LSTMRegressor``'s weights as the kernels read them (float32, C-contiguous), with the
    input, forget and output gate columns halved (sigmoid through tanh)."""

    wih_t: np.ndarray  # [F, 4H]
    bias: np.ndarray  # [R, 4H]: b_ih + b_hh (R = 1), plus each market's embedding term for a pooled model
    whh_t: np.ndarray  # [H, 4H]
    head_w: np.ndarray  # [H]
    head_b: float

    @property
    def hidden(self) -> int:
        return int(self.whh_t.shape[0])

    @property
    def gates(self) -> int:
        return int(self.whh_t.shape[1])

    @classmethod
    def of(cls, model: Any) -> LSTMWeights | None:
        """The weights of ``model`` if the kernels compute exactly what it computes (an ``LSTMRegressor``
        with one unidirectional layer, biases, no projection), else None: serve it with torch. A
        ``PooledLSTMRegressor``'s embedding is constant along a window: its input weights times each
        market's embedding are folded into that market's bias row."""
        from mlmodel.nets import LSTMRegressor, PooledLSTMRegressor  # torch: this core does not at import

        if type(model) not in (LSTMRegressor, PooledLSTMRegressor):
            return None
        lstm = model.lstm
        if lstm.num_layers != 1 or lstm.bidirectional or not lstm.bias or getattr(lstm, "proj_size", 0):
            return None

        def arr(t: Any) -> np.ndarray:
            return t.detach().cpu().float().numpy()

        H = lstm.hidden_size
        scale = np.full(4 * H, 0.5, dtype=np.float32)
        scale[2 * H : 3 * H] = 1.0  # the cell candidate is a tanh already
        wih = arr(lstm.weight_ih_l0)
        bias = (arr(lstm.bias_ih_l0) + arr(lstm.bias_hh_l0))[None, :]
        if type(model) is PooledLSTMRegressor:
            F = model.config.n_features
            emb = arr(model.embedding.weight)  # [markets, E]
            bias = bias + emb @ wih[:, F:].T
            wih = wih[:, :F]
        return cls(
            wih_t=np.ascontiguousarray(wih.T * scale),
            bias=np.ascontiguousarray((bias * scale).astype(np.float32)),
            whh_t=np.ascontiguousarray(arr(lstm.weight_hh_l0).T * scale),
            head_w=np.ascontiguousarray(arr(model.head.weight).reshape(-1)),
            head_b=float(arr(model.head.bias).reshape(-1)[0]),
        )

    def forward_windows(self, x: np.ndarray, market: np.ndarray | None = None) -> np.ndarray:
        """[B, W, F] normalised windows -> [B] raw outputs, through ``project`` and ``forward`` (tests and
        benchmarks; live serving keeps the projections in ``mlmodel.live.LiveState``). ``market``: each
        window's embedding row for a pooled model."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        B, W, _ = x.shape
        zp = np.empty((B, ring_stride(W, self.gates)), dtype=np.float32)
        dm = np.repeat(np.arange(B, dtype=np.int64), W)
        ds = np.tile(np.arange(W, dtype=np.int64), B)
        mrow = np.zeros(B, dtype=np.int64) if market is None else np.ascontiguousarray(market, dtype=np.int64)
        project(x, B * W, dm, ds, self.wih_t, self.bias, mrow, zp)
        out = np.empty(B, dtype=np.float32)
        xs = np.empty(W * B * self.gates, dtype=np.float32)
        forward(np.arange(B, dtype=np.int64), np.zeros(B, dtype=np.int64), W, W, zp, self.whh_t, self.head_w,
                self.head_b, xs, out)  # fmt: skip
        return out
