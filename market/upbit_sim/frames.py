"""Fast encoding of order-book arrays into Upbit WebSocket frames (benchmarks, tests, the unpaced server).

``orderbook_frames("KRW-BTC", 100_000)`` returns the byte frames the simulator would send for 100k
consecutive books of the synthetic model (DEFAULT or SIMPLE keys, optionally ``*_LIST``), e.g. to feed a
parser benchmark at full speed without a socket in between.
"""

from __future__ import annotations

import numpy as np
import orjson

from market.dayfiles import BookArrays

from .synthetic import SyntheticMarket, SyntheticParams

_DEFAULT = ("type", "code", "timestamp", "total_ask_size", "total_bid_size", "orderbook_units", "level",
            "stream_type", "ask_price", "bid_price", "ask_size", "bid_size")  # fmt: skip
_SIMPLE = ("ty", "cd", "tms", "tas", "tbs", "obu", "lv", "st", "ap", "bp", "as", "bs")


def encode_orderbooks(
    code: str,
    books: BookArrays,
    *,
    depth: int = 30,
    fmt: str = "DEFAULT",
    stream_type: str = "REALTIME",
) -> list[bytes]:
    """One frame per row of ``books`` (UTF-8 JSON bytes), padded with zero levels up to ``depth``."""
    n = len(books)
    if n == 0:
        return []
    keys = _SIMPLE if fmt.startswith("SIMPLE") else _DEFAULT
    ty, cd, tms, tas_k, tbs_k, obu, lv, st, kap, kbp, kas, kbs = keys
    as_list = fmt.endswith("_LIST")

    def block(a: np.ndarray) -> np.ndarray:
        a = np.nan_to_num(a[:, :depth], nan=0.0)
        if a.shape[1] < depth:
            a = np.pad(a, ((0, 0), (0, depth - a.shape[1])))
        return a

    ap, asz, bp, bsz = block(books.ask_px), block(books.ask_sz), block(books.bid_px), block(books.bid_sz)
    tas = np.round(asz.sum(axis=1), 8).tolist()
    tbs = np.round(bsz.sum(axis=1), 8).tolist()
    apl, asl, bpl, bsl = ap.tolist(), asz.tolist(), bp.tolist(), bsz.tolist()
    ts = books.ts.tolist()
    dumps = orjson.dumps
    out = []
    for i in range(n):
        rows = zip(apl[i], bpl[i], asl[i], bsl[i], strict=True)
        units = [{kap: a, kbp: b, kas: c, kbs: d} for a, b, c, d in rows]
        msg = {ty: "orderbook", cd: code, tms: ts[i], tas_k: tas[i], tbs_k: tbs[i], obu: units, lv: 0}
        msg[st] = stream_type
        out.append(dumps([msg]) if as_list else dumps(msg))
    return out


def orderbook_frames(
    code: str,
    n: int,
    *,
    seed: int = 1,
    start_ms: int = 0,
    depth: int = 30,
    fmt: str = "DEFAULT",
    params: SyntheticParams | None = None,
) -> list[bytes]:
    """``n`` consecutive order-book frames of the seeded synthetic model for ``code``."""
    books, _ = SyntheticMarket(code, seed=seed, start_ms=start_ms, params=params).generate(n)
    return encode_orderbooks(code, books, depth=depth, fmt=fmt)
