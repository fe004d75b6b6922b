"""Collector throughput: order-book messages parsed + normalised + persisted per second, on one core.

Stream: the simulator's synthetic order-book model (``market.upbit_sim.synthetic``, unpaced), encoded with
the simulator's own WebSocket encoder (DEFAULT format, 30 levels, the bytes Upbit would send).

Part 1 (in memory, one core, same frames for all):
  * ours     -- ``records.parse_frame`` (typed msgspec decode, struct-packed levels) ->
                 ``Collector.handle_records`` -> ``DayFileWriter`` (Parquet segments every 2 s: temp file +
                 fsync + atomic rename);
  * naive    -- ``json.loads`` + one ``csv.DictWriter.writerow`` per message (the usual first attempt);
  * pyupbit  -- pyupbit's per-message path (``bytes.decode`` + ``json.loads`` + ``multiprocessing.Queue``
                 put/get, what ``pyupbit.WebSocketManager`` does), which does not even persist;
  * ceiling  -- bare ``orjson.loads`` per frame, for scale.
  Rates are per CPU-second of the process (the one-core figure) and per wall second (shared machine).
Part 2 (live, where feasible): the simulator as a separate process (unpaced) streaming over a real socket to
``pyupbit.WebSocketManager`` (its hard-coded URL redirected to the simulator) vs our collector: messages per
wall second (bounded by what the simulator produces) and per CPU-second of each client (its own cost).

Prints medians of ``--repeat`` runs and ratios.  Usage: ``python bench/bench_collector.py [--messages N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import multiprocessing as mp
import os
import queue as queue_mod
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "observator.settings.test")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402

from market.collector import Collector  # noqa: E402
from market.upbit_sim.messages import encode, orderbook_msg  # noqa: E402
from market.upbit_sim.source import BookSnapshot  # noqa: E402
from market.upbit_sim.synthetic import SyntheticMarket  # noqa: E402

MARKETS = ["KRW-BTC", "KRW-ETH", "KRW-XRP", "KRW-SOL"]


def make_frames(n: int, seed: int = 1) -> list[bytes]:
    """``n`` DEFAULT-format orderbook frames from the synthetic model, markets interleaved."""
    per = max(1, n // len(MARKETS))
    streams = []
    for code in MARKETS:
        books, _ = SyntheticMarket(code, seed=seed, start_ms=1_760_000_000_000).generate(per)
        frames = []
        for i in range(len(books)):
            asks = [
                (float(p), float(s)) for p, s in zip(books.ask_px[i], books.ask_sz[i], strict=True) if p > 0
            ]
            bids = [
                (float(p), float(s)) for p, s in zip(books.bid_px[i], books.bid_sz[i], strict=True) if p > 0
            ]
            snap = BookSnapshot(int(books.ts[i]), asks, bids)
            # The simulator's own encoder, so the bytes are what it sends.
            msg = orderbook_msg(code, snap, 30, "REALTIME")
            frames.append(encode(msg, "DEFAULT"))
        streams.append(frames)
    return [f for group in zip(*streams, strict=True) for f in group]


def _rates(n: int, t0: float, c0: float) -> tuple[float, float]:
    """(messages per wall second, messages per CPU second of this process)."""
    return n / (time.perf_counter() - t0), n / max(1e-9, time.process_time() - c0)


def run_ours(frames: list[bytes], workdir: Path) -> tuple[float, float]:
    from market.upbit.records import parse_frame

    collector = Collector(codes=MARKETS, ws_url="ws://127.0.0.1:9/", data_dir=workdir, flush_interval=2.0)
    handle, writer = collector.handle_records, collector.writer
    # Warm-up outside the timing: the first Parquet write imports pyarrow's writer (a one-off at start-up).
    handle(parse_frame(frames[0], int(time.time() * 1000)))
    writer.flush()
    t0, c0 = time.perf_counter(), time.process_time()
    for i, frame in enumerate(frames):
        handle(parse_frame(frame, int(time.time() * 1000)))
        if i & 1023 == 0:
            writer.tick()
    writer.close()
    rates = _rates(len(frames), t0, c0)
    assert collector.counts["orderbook"] == len(frames) + 1
    return rates


def run_naive(frames: list[bytes], workdir: Path) -> tuple[float, float]:
    fields = ["code", "ts", "recv_ts", "total_ask_size", "total_bid_size"] + [
        f"{k}_{i}" for k in ("ask_price", "ask_size", "bid_price", "bid_size") for i in range(1, 31)
    ]
    t0, c0 = time.perf_counter(), time.process_time()
    with open(workdir / "naive.csv", "w", newline="") as fh:
        out = csv.DictWriter(fh, fieldnames=fields)
        out.writeheader()
        for frame in frames:
            d = json.loads(frame)
            row = {"code": d["code"], "ts": d["timestamp"], "recv_ts": int(time.time() * 1000),
                   "total_ask_size": d["total_ask_size"], "total_bid_size": d["total_bid_size"]}  # fmt: skip
            for i, u in enumerate(d["orderbook_units"], 1):
                row[f"ask_price_{i}"] = u["ask_price"]
                row[f"ask_size_{i}"] = u["ask_size"]
                row[f"bid_price_{i}"] = u["bid_price"]
                row[f"bid_size_{i}"] = u["bid_size"]
            out.writerow(row)
        fh.flush()
        os.fsync(fh.fileno())
    return _rates(len(frames), t0, c0)


def run_pyupbit_path(frames: list[bytes], workdir: Path) -> tuple[float, float]:  # noqa: ARG001
    """pyupbit.WebSocketClient: ``queue.put(json.loads(recv.decode('utf8')))``; the user calls ``get()``."""
    q: mp.Queue[Any] = mp.Queue(1000)
    t0, c0 = time.perf_counter(), time.process_time()
    got = 0
    for frame in frames:
        q.put(json.loads(frame.decode("utf8")))
        q.get()
        got += 1
    rates = _rates(got, t0, c0)
    q.close()
    return rates


def run_ceiling(frames: list[bytes], workdir: Path) -> tuple[float, float]:  # noqa: ARG001
    """Only ``orjson.loads`` per frame: no pipeline can beat this with a JSON parser in Python."""
    import orjson

    loads = orjson.loads
    t0, c0 = time.perf_counter(), time.process_time()
    for frame in frames:
        loads(frame)
    return _rates(len(frames), t0, c0)


# ------------------------------------------------------------------------------------------------ live


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError("simulator did not start")


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid`` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def live_pyupbit(ws_url: str, seconds: float) -> tuple[float, float]:
    """(messages per wall second, messages per CPU second of the manager process + the consumer)."""
    import pyupbit.websocket_api as pws
    import websockets

    real_connect = websockets.connect

    def redirected(uri: str, *args: Any, **kwargs: Any) -> Any:
        return real_connect(ws_url, *args, **kwargs)

    pws.websockets.connect = redirected  # type: ignore[attr-defined] # the manager's URL is hard-coded
    wm = pws.WebSocketManager("orderbook", MARKETS, qsize=10000)
    try:
        first = wm.get()  # starts the (forked) process, which inherits the redirect; then streams
        assert isinstance(first, dict) and first.get("type") == "orderbook", first
        got = 0
        t0, c0, child0 = time.perf_counter(), time.process_time(), _proc_cpu(wm.pid)
        while time.perf_counter() - t0 < seconds:
            try:
                wm._WebSocketManager__q.get(timeout=1.0)  # same as wm.get() but bounded
                got += 1
            except queue_mod.Empty:
                break
        wall = time.perf_counter() - t0
        cpu = time.process_time() - c0 + _proc_cpu(wm.pid) - child0
        return got / wall, got / max(cpu, 1e-9)
    finally:
        wm.terminate()
        wm.join(5)
        pws.websockets.connect = real_connect  # type: ignore[attr-defined]


def live_ours(ws_url: str, seconds: float, workdir: Path) -> tuple[float, float]:
    """(messages per wall second, messages per CPU second) of the collector streaming + persisting."""

    async def run() -> tuple[float, float]:
        collector = Collector(codes=MARKETS, ws_url=ws_url, data_dir=workdir, flush_interval=2.0,
                              streamer_options={"types": ("orderbook",)})  # fmt: skip
        task = asyncio.create_task(collector.run())
        while collector.counts["orderbook"] == 0:
            await asyncio.sleep(0.01)
        start_count, t0, c0 = collector.counts["orderbook"], time.perf_counter(), time.process_time()
        await asyncio.sleep(seconds)
        got = collector.counts["orderbook"] - start_count
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        collector.stop()
        await task
        return got / wall, got / max(cpu, 1e-9)

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--live-seconds", type=float, default=2.0)
    parser.add_argument("--no-live", action="store_true")
    args = parser.parse_args()

    t0 = time.perf_counter()
    frames = make_frames(args.messages)
    avg = sum(map(len, frames)) / len(frames)
    print(f"stream: {len(frames):,} order-book frames from the synthetic simulator, {len(MARKETS)} markets, "
          f"30 levels, {avg:,.0f} B/frame (generated in {time.perf_counter() - t0:.1f}s)")  # fmt: skip

    results: dict[str, list[tuple[float, float]]] = {k: [] for k in ("ours", "naive", "pyupbit", "ceiling")}
    runners = {"ours": run_ours, "naive": run_naive, "pyupbit": run_pyupbit_path, "ceiling": run_ceiling}
    for _ in range(args.repeat):
        for name, fn in runners.items():
            workdir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
            try:
                results[name].append(fn(frames, workdir))
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
    wall = {k: statistics.median(r[0] for r in v) for k, v in results.items()}
    cpu = {k: statistics.median(r[1] for r in v) for k, v in results.items()}
    load = os.getloadavg()[0]
    print(f"\nPart 1: in memory, one thread (median of {args.repeat} runs; load average {load:.1f} "
          f"on {os.cpu_count()} CPUs)")  # fmt: skip
    print("  msg/CPU-s = messages per second of this process's CPU time (the one-core figure);")
    print("  msg/wall-s = the same run in wall time, which other processes on the machine share.")
    print(f"  {'':58s} {'msg/CPU-s':>10s} {'msg/wall-s':>11s}")
    labels = {
        "ours": "ours    parse+normalise+persist (msgspec, records, Parquet)",
        "naive": "naive   json.loads + per-row csv writes",
        "pyupbit": "pyupbit decode + json.loads + mp.Queue (no persistence)",
        "ceiling": "(ceiling: bare orjson.loads of each frame, nothing else)",
    }
    for key, label in labels.items():
        print(f"  {label:58s} {cpu[key]:>10,.0f} {wall[key]:>11,.0f}")
    r_naive, r_py = cpu["ours"] / cpu["naive"], cpu["ours"] / cpu["pyupbit"]
    print(f"  ratio ours/naive = {r_naive:.2f}x (wall {wall['ours'] / wall['naive']:.2f}x), "
          f"ours/pyupbit = {r_py:.2f}x (wall {wall['ours'] / wall['pyupbit']:.2f}x), "
          f"ours/bare-parse = {cpu['ours'] / cpu['ceiling']:.0%}")  # fmt: skip
    verdict = "met" if cpu["ours"] >= 50_000 else "NOT met on this machine now"
    print(f"  target >= 50,000 order-book msg/s on one core: {verdict} ({cpu['ours']:,.0f} per CPU-second)")

    if args.no_live:
        return
    port = _free_port()
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="observator.settings.test", OBSERVATOR_ROLE="sim")
    sim = subprocess.Popen(
        [sys.executable, "manage.py", "upbit_sim", "--port", str(port), "--speed", "0", "--no-rate-limits",
         "--markets", ",".join(MARKETS)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        _wait_port(port)
        ws_url = f"ws://127.0.0.1:{port}/websocket/v1"
        live: dict[str, list[tuple[float, float]]] = {"ours": [], "pyupbit": []}
        for _ in range(2):
            workdir = Path(tempfile.mkdtemp(prefix="bench-live-"))
            try:
                live["ours"].append(live_ours(ws_url, args.live_seconds, workdir))
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
            try:
                live["pyupbit"].append(live_pyupbit(ws_url, args.live_seconds))
            except Exception as exc:  # noqa: BLE001 - "where feasible": report, do not fail the bench
                print(f"  pyupbit live run failed: {type(exc).__name__}: {exc}")
        print(f"\nPart 2: live socket, simulator process unpaced, {args.live_seconds:g}s windows, median")
        print("  The simulator's output bounds msg/wall-s; msg/CPU-s is the client's own cost per message.")
        print(f"  {'':58s} {'msg/CPU-s':>10s} {'msg/wall-s':>11s}")
        ours_w = statistics.median(r[0] for r in live["ours"])
        ours_c = statistics.median(r[1] for r in live["ours"])
        print(
            f"  {'ours    UpbitStreamer + Collector (parse + persist)':58s} {ours_c:>10,.0f} {ours_w:>11,.0f}"
        )
        if live["pyupbit"]:
            py_w = statistics.median(r[0] for r in live["pyupbit"])
            py_c = statistics.median(r[1] for r in live["pyupbit"])
            label = "pyupbit WebSocketManager + get() (receive only)"
            print(f"  {label:58s} {py_c:>10,.0f} {py_w:>11,.0f}")
            print(f"  ratio ours/pyupbit per CPU-second = {ours_c / py_c:.2f}x")
    finally:
        os.killpg(sim.pid, signal.SIGTERM)
        try:
            sim.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(sim.pid, signal.SIGKILL)
    _ = np  # numpy is imported for the generator; keep the import explicit


if __name__ == "__main__":
    main()
