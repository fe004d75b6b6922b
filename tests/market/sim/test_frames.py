"""Fast frame encoding (benchmarks, unpaced server) produces exactly what the server sends."""

from __future__ import annotations

import json

import orjson
from websockets.sync.client import connect

from market.upbit.protocol import to_simple
from market.upbit_sim.frames import encode_orderbooks, orderbook_frames
from market.upbit_sim.messages import orderbook_msg
from market.upbit_sim.server import SimConfig, SimulatorThread
from market.upbit_sim.source import BookSnapshot
from market.upbit_sim.synthetic import SyntheticMarket


def test_encoded_frames_match_the_server_message_shape() -> None:
    books, _ = SyntheticMarket("KRW-BTC", seed=5, start_ms=1_000).generate(20)
    for fmt in ("DEFAULT", "SIMPLE", "JSON_LIST", "SIMPLE_LIST"):
        frames = encode_orderbooks("KRW-BTC", books, depth=15, fmt=fmt)
        for i in (0, 19):
            snap = BookSnapshot(
                int(books.ts[i]),
                list(zip(books.ask_px[i].tolist(), books.ask_sz[i].tolist(), strict=True)),
                list(zip(books.bid_px[i].tolist(), books.bid_sz[i].tolist(), strict=True)),
            )
            expected = orderbook_msg("KRW-BTC", snap, 15, "REALTIME")
            if fmt.startswith("SIMPLE"):
                expected = to_simple(expected)
            if fmt.endswith("_LIST"):
                expected = [expected]
            assert orjson.loads(frames[i]) == json.loads(json.dumps(expected))


def test_orderbook_frames_are_reproducible() -> None:
    a = orderbook_frames("KRW-ETH", 100, seed=2)
    assert a == orderbook_frames("KRW-ETH", 100, seed=2)
    assert len(a) == 100 and json.loads(a[0])["code"] == "KRW-ETH"


def test_unpaced_server_streams_every_book_in_order() -> None:
    """speed=0: every book of the seeded model goes out, in order, as fast as the client reads."""
    cfg = SimConfig(markets=["KRW-BTC"], seed=4, speed=0, backfill=False, rate_limits={}, unpaced_chunk=250)
    expected, _ = SyntheticMarket("KRW-BTC", seed=4).generate(25_000)
    rows = expected.ask_sz.tolist()
    with (
        SimulatorThread(cfg) as sim,
        connect(sim.ws_url, open_timeout=5, max_size=None, compression=None) as ws,
    ):
        ws.send(json.dumps([{"ticket": "u"}, {"type": "orderbook", "codes": ["KRW-BTC"]}]))
        first = json.loads(ws.recv(timeout=5))
        assert first["stream_type"] == "SNAPSHOT"
        got = [json.loads(ws.recv(timeout=10)) for _ in range(1000)]
    assert all(m["stream_type"] == "REALTIME" for m in got)
    ts = [m["timestamp"] for m in got]
    assert ts == sorted(ts)
    sizes = [[u["ask_size"] for u in m["orderbook_units"]] for m in got]
    # The stream began before we subscribed: find where (an event deeper than 30 levels repeats a row).
    starts = [i for i, r in enumerate(rows) if r == sizes[0]]
    assert any(sizes == rows[i : i + 1000] for i in starts)  # the same seeded stream, no book skipped
