"""Live prediction serving inside the ml worker process: the recent rows of every market in one compiled
feature state (``mlmodel.live``), the active models kept loaded (reloaded when the active version changes),
one batched forward pass per model per call - on CPU a single-layer LSTM runs the compiled kernel over cached
input projections (``mlmodel.lstm_kernel``), anything else torch - predictions stored, published to
``market.<CODE>`` and published as :class:`mlmodel.messages.Prediction` to the subscribers in settings."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connection, transaction

from core import metrics, realtime
from core.messages import message_publish
from market import batchwire
from market.batchwire import PackedBatch
from market.messages import market_event, market_group
from mlmodel import conf, lstm_kernel
from mlmodel.live import LiveState, ModelSpec
from mlmodel.messages import Prediction
from mlmodel.selectors import model_active_all, model_active_map
from mlmodel.services.predictions import predictions_prune, predictions_store

logger = logging.getLogger(__name__)

# How long a batch waits for a model that is loading in the background (well inside the task's 20 s soft
# limit); past it the batch goes on without that model and a later one uses it.
LOAD_WAIT_S = 8.0


@dataclass
class LoadedModel:
    version_id: int
    label: str
    sha: str
    predictor: Any  # mlmodel.inference.Predictor
    spec: ModelSpec


class Server:
    """Process-local serving state (one per ml worker process)."""

    def __init__(self) -> None:
        self.state = LiveState(keep_ms=int(float(conf.get("ML_LIVE_KEEP_S")) * 1000))
        self.models: dict[int, LoadedModel] = {}
        # Loaded once per artifact: a pooled model's versions (one per market) share one, and one forward
        # pass serves all their markets.
        self._by_sha: dict[str, LoadedModel] = {}
        self._keys = 0
        self._refused: set[int] = set()
        self.lock = threading.Lock()
        self.last_prune = 0.0
        # In the ml worker (``warm_up``) models load in a thread of their own: an import or torch.load is
        # never interrupted by a task's soft time limit (an interrupted torch import leaves torch half
        # registered and every later import fails). A batch waits at most ML_LOAD_WAIT_S for its model.
        self.background_loads = False
        self._loading: dict[str, threading.Event] = {}
        self._load_lock = threading.Lock()
        # A backlog of stale batches (the worker started late or was busy): (batches skipped, first skip ms).
        self._stale_run: tuple[int, int] | None = None

    def _model_for(self, version: Any) -> LoadedModel | None:
        loaded = self.models.get(version.pk)
        if loaded is not None and loaded.sha == version.artifact_sha256:
            return loaded
        shared = self._by_sha.get(str(version.artifact_sha256))
        if shared is not None:
            self.models[version.pk] = shared
            return shared
        if self.background_loads:
            return self._model_in_background(version, wait=LOAD_WAIT_S)
        return self._load_now(version)

    def _model_in_background(self, version: Any, *, wait: float) -> LoadedModel | None:
        key = str(version.artifact_sha256)
        with self._load_lock:
            done = self._loading.get(key)
            if done is None:
                done = self._loading[key] = threading.Event()
                threading.Thread(
                    target=self._load_thread, args=(version, key, done), name="model-load", daemon=True
                ).start()
        if not done.wait(wait):
            logger.debug("model %s still loading: no prediction from it in this batch", version.pk)
            return None
        loaded = self._by_sha.get(key)
        if loaded is None:  # loaded under this version's own id
            own = self.models.get(version.pk)
            loaded = own if own is not None and own.sha == key else None
        if loaded is not None:
            self.models[version.pk] = loaded
        return loaded

    def _load_thread(self, version: Any, key: str, done: threading.Event) -> None:
        try:
            self._load_now(version)
        finally:
            done.set()
            with self._load_lock:
                self._loading.pop(key, None)

    def warm_up(self) -> None:
        """The ml worker's start: import torch and load every active model, in the background."""
        from mlmodel import inference, training  # noqa: F401 - the imports are the point

        self.background_loads = True
        try:
            versions = model_active_all()
        finally:
            connection.close()  # this thread's own connection
        for version in versions:
            loaded = self.models.get(version.pk)
            if (loaded is None or loaded.sha != version.artifact_sha256) and (
                version.artifact_sha256 not in self._by_sha
            ):
                self._model_in_background(version, wait=0)
        logger.debug("ml worker warm-up: %d active model(s) loading", len(versions))

    def _load_now(self, version: Any) -> LoadedModel | None:
        from mlmodel.inference import Predictor  # imports torch: only in the ml worker, when a model loads
        from mlmodel.training import pick_device  # imports torch (as above)

        try:
            with version.artifact.open("rb") as fh:
                data = fh.read()
            device = str(pick_device(str(conf.get("ML_DEVICE"))))
            predictor = Predictor.from_bytes(data, device=device)
        except Exception:  # noqa: BLE001 - a broken artifact must not stop serving the other markets
            logger.exception("cannot load model version %s", version.pk)
            return None
        loaded = self.load(version.pk, version.label, version.artifact_sha256, predictor)
        logger.info("model loaded", extra={"version": version.label, "device": device})
        return loaded

    def load(self, version_id: int, label: str, sha: str, predictor: Any) -> LoadedModel:
        """Keep ``predictor`` loaded under a new feature key (a reloaded artifact re-featurises)."""
        with self._load_lock:
            self._keys += 1
            key = self._keys
        spec = ModelSpec.of(key, predictor, compiled=bool(conf.get("ML_SERVING_COMPILED")))
        loaded = LoadedModel(version_id, label, sha, predictor, spec)
        self.models[version_id] = loaded
        self._by_sha[sha] = loaded
        return loaded

    def _feed_fits(self, loaded: LoadedModel) -> bool:
        """A model that reads more price levels than the collector sends would be fed padding: refuse it
        (no prediction is better than a wrong one) and say so once."""

        feed = int(settings.MARKET_PREDICTION_LEVELS)
        if loaded.spec.levels <= feed:
            return True
        if loaded.version_id not in self._refused:
            self._refused.add(loaded.version_id)
            logger.error(
                "model %s uses %d price levels but the collector sends %d (MARKET_PREDICTION_LEVELS): "
                "not serving it",
                loaded.label,
                loaded.spec.levels,
                feed,
            )
        return False

    def predict_group(self, loaded: LoadedModel, midx: np.ndarray) -> dict[int, float]:
        """``live_predictions`` for markets ``midx`` with the CPU threads capped for the call (BLAS for the
        compiled kernel, torch's intra-op threads otherwise: see ``Predictor``). Returns {market index:
        predicted return} for the markets with a full valid window."""
        with _capped_threads(loaded):
            ok, preds = live_predictions(self.state, loaded.spec, loaded.predictor, midx)
        return {int(m): float(v) for m, v in zip(midx[ok], preds, strict=True)}

    def _note_stale(self, *, stale: int, fresh: bool, max_age: object, now_ms: int) -> None:
        """One warning when a backlog starts and one when it is over (with the count), not one per batch: a
        worker that starts after the collector skips a few dozen batches in its first seconds."""
        if stale:
            if self._stale_run is None:
                self._stale_run = (0, now_ms)
                logger.warning("behind the collector: skipping market batches older than %s s", max_age)
            self._stale_run = (self._stale_run[0] + stale, self._stale_run[1])
        elif fresh and self._stale_run is not None:
            count, since = self._stale_run
            self._stale_run = None
            logger.warning(
                "caught up with the collector: skipped %d stale market batch(es) in %.1f s",
                count,
                (now_ms - since) / 1000,
            )

    @metrics.timed(metrics.PREDICTION_SECONDS)
    def ingest(self, batch: PackedBatch | Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
        if not isinstance(batch, PackedBatch):
            batch = batchwire.from_columns(batch)
        with self.lock:
            st = self.state
            st.keep_ms = int(float(conf.get("ML_LIVE_KEEP_S")) * 1000)
            max_age = conf.get("ML_MAX_DATA_AGE_S")
            max_age_ms = None if max_age is None else int(float(max_age) * 1000)
            now_ms = int(time.time() * 1000)
            midx = st.append(batch)
            stale = 0
            fresh: list[str] = []
            for market, m in zip(batch.codes, midx.tolist(), strict=True):
                newest = st.newest_ts(m)
                if newest is None or newest == int(st.last_pred[m]):
                    continue
                if max_age_ms is not None and now_ms - newest > max_age_ms:
                    # A backlog (the worker was busy): keep the history, but never publish a prediction
                    # about a book that is long gone - auto-trading would act on it.
                    st.last_pred[m] = newest
                    stale += 1
                    continue
                fresh.append(market)
            self._note_stale(stale=stale, fresh=bool(fresh), max_age=max_age, now_ms=now_ms)
            if not fresh:
                return []
            active = model_active_map(markets=fresh)
            active_ids = {v.pk for v in active.values()}
            for vid in [v for v in list(self.models) if v not in active_ids]:
                if not any(m in active for m in st.index):
                    self.models.pop(vid, None)
                    self._by_sha = {lm.sha: lm for lm in self.models.values()}
            # One group per loaded artifact: a pooled model's markets go through one forward pass.
            groups: dict[str, list[int]] = {}
            loaded_by_sha: dict[str, LoadedModel] = {}
            version_of: dict[int, Any] = {}
            for market in fresh:
                version = active.get(market)
                if version is None:
                    continue
                loaded = self._model_for(version)
                if loaded is None or not self._feed_fits(loaded):
                    continue
                if loaded.spec.markets and market not in loaded.spec.markets:
                    continue  # a pooled artifact knows only the markets it was trained on
                m = st.index[market]
                version_of[m] = version
                loaded_by_sha[loaded.sha] = loaded
                groups.setdefault(loaded.sha, []).append(m)
            rows: list[dict[str, Any]] = []
            for sha, members in groups.items():
                loaded = loaded_by_sha[sha]
                preds = self.predict_group(loaded, np.asarray(members, dtype=np.int64))
                for m, value in preds.items():
                    ts = int(st.newest_ts(m))
                    st.last_pred[m] = ts
                    a1, b1 = st.best(m)
                    rows.append(
                        {
                            "market": st.names[m],
                            "ts": ts,
                            "predicted_return": float(value),
                            "horizon_s": float(loaded.predictor.horizon_s),
                            "model_version": version_of[m].label,
                            "model_version_id": version_of[m].pk,
                            "mid": (a1 + b1) / 2.0,
                            "best_bid": b1,
                            "best_ask": a1,
                        }
                    )
            return rows


def live_predictions(
    state: LiveState, spec: ModelSpec, predictor: Any, midx: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The new feature rows of markets ``midx`` (only what this model has not seen), then one batched
    forward pass over their windows: the compiled LSTM kernel when ``spec`` has its weights, else torch.
    Returns (ok mask over ``midx``, predicted log-returns float64 for the ok markets)."""
    if spec.lstm is not None:
        ok, raw = state.lstm_outputs(midx, spec)
        return ok, raw.astype(np.float64) * predictor.y_scale
    ok, x = state.model_inputs(midx, spec)
    if not ok.any():
        return ok, np.empty(0)
    ids = state.market_rows(spec)[np.asarray(midx)[ok]] if spec.markets else None
    return ok, predictor.predict_normalized(x, market_ids=ids)


@contextlib.contextmanager
def _capped_threads(loaded: LoadedModel) -> Iterator[None]:
    threads = conf.get("ML_SERVING_THREADS")
    if not threads:
        yield
    elif loaded.spec.lstm is not None:
        with lstm_kernel.blas_threads(int(threads)):
            yield
    else:
        n = int(threads)
        before = torch_threads() if str(loaded.predictor.device) == "cpu" else n
        if before != n:
            set_torch_threads(n)
        try:
            yield
        finally:
            if before != n:
                set_torch_threads(before)


def torch_threads() -> int:
    import torch  # torch only where a model is served, not in every importer of this module

    return int(torch.get_num_threads())


def set_torch_threads(n: int) -> None:
    import torch  # (as above)

    torch.set_num_threads(n)


_server: Server | None = None


def get_server() -> Server:
    global _server
    if _server is None:
        _server = Server()
    return _server


def server_warm_up_start() -> threading.Thread:
    """Called in the ml worker's pool process at start (``worker_process_init``): import torch and load the
    active models in a thread, outside any task and its time limits."""

    def run() -> None:
        try:
            get_server().warm_up()
        except Exception:  # noqa: BLE001 - serving loads on demand if the warm-up fails
            logger.exception("ml worker warm-up failed; models load on first use")

    thread = threading.Thread(target=run, name="ml-warm-up", daemon=True)
    get_server().background_loads = True
    thread.start()
    return thread


def reset_server() -> None:
    """Forget the windows and loaded models (tests; a worker restart does the same)."""
    global _server
    _server = None


def market_data_ingest(*, batch: PackedBatch | Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The ml worker's entry point for the collector's batches: predict, store, publish, hand over."""
    server = get_server()
    rows = server.ingest(batch)
    if rows:
        with transaction.atomic():
            predictions_store(rows=rows)
        published_at = time.time()
        predictions = [Prediction(**r, published_at=published_at) for r in rows]
        realtime.publish_many(
            [(market_group(p.market), market_event("prediction", p.public())) for p in predictions]
        )
        for prediction in predictions:
            message_publish(message=prediction)
    now = time.monotonic()
    if now - server.last_prune > 60:
        server.last_prune = now
        predictions_prune()
    return rows
