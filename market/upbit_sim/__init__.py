"""A local Upbit: the same REST/WebSocket protocol, backed by a matching engine and a market source.

Pure Python (no Django). Pieces:

* ``engine``     price-time-priority matching engine: accounts (balance/locked/avg_buy_price), orders
                 (limit, market buy by KRW ``price``, market sell by ``volume``, ``best``, ioc/fok/post_only),
                 fees, ticks, minimum totals; user orders trade against the source's book;
* ``synthetic``  seeded queue-reactive + Hawkes order-book model (any number of markets, Upbit tick grid);
* ``replay``     recorded day files (``market.dayfiles``) or the real 2018 KRW-ADA sample, 1x/Nx, looping;
* ``stats``      tickers, candles and recent trades derived from the stream;
* ``frames``     fast Upbit frame encoding of order-book arrays (benchmarks);
* ``server``     the small core: config, shared state, the aiohttp app, ``SimulatorThread`` for tests and
                 ``run_simulator`` for ``manage.py upbit_sim``; around it, one module a concern:
                 ``feed`` (pacing, publishing), ``quotation_api`` / ``exchange_api`` (REST handlers),
                 ``websocket`` (sockets, fan-out), ``auth`` (keys, JWT), ``ratelimit`` (buckets, 429s),
                 ``controls`` (the ``/_sim`` test controls), ``messages`` / ``responses`` (wire shapes).

In a test::

    from market.upbit_sim.server import SimConfig, SimulatorThread
    from market.upbit.protocol import build_jwt

    with SimulatorThread(SimConfig(markets=["KRW-BTC"], seed=1)) as sim:
        acct = sim.create_account(krw="1000000", assets={"BTC": "0.01"})
        token = build_jwt(acct["access_key"], acct["secret_key"], None)
        requests.get(sim.rest_url + "/v1/accounts", headers={"Authorization": f"Bearer {token}"})
        # sim.ws_url / sim.private_ws_url for WebSockets; sim.call(fn) runs fn(simulator) on its loop;
        # POST {sim.rest_url}/_sim/drop_websockets, /_sim/pause, /_sim/resume for failure tests.

``SimConfig(speed=0)`` streams as fast as the slowest subscriber reads (benchmarks); ``rate_limits={}``
turns Upbit's per-second limits off; ``source="replay", replay_path=...`` replays recorded data.
"""
