"""Machine learning: every ML_* knob and its default (mlmodel.conf.get reads them), serving in the ml worker,
the first-model bootstrap, the one set of training defaults, the promotion gate; the ml app's periodic
tasks."""

from __future__ import annotations

from celery.schedules import crontab

from observator.env import env

# Prediction serving in the ml worker.
ML_DEVICE = env("ML_DEVICE", default="auto")  # "auto" = CUDA when available
ML_SERVING_THREADS = env.int("ML_SERVING_THREADS", default=1)  # 0 = leave torch / BLAS threads as they are
ML_SERVING_COMPILED = env.bool("ML_SERVING_COMPILED", default=True)  # single-layer LSTMs on CPU: compiled
# A queued training run that no ml worker has taken after this many seconds is failed as "undelivered".
ML_TRAINING_PICKUP_TIMEOUT_S = env.float("ML_TRAINING_PICKUP_TIMEOUT_S", default=90.0)
# The first model of a market with none active is trained by itself once this much data is recorded
# (mlmodel/bootstrap.py; checked every ML_BOOTSTRAP_CHECK_S on the default queue).
ML_BOOTSTRAP = env.bool("ML_BOOTSTRAP", default=True)
# 40 minutes: the gate asks for ML_GATE_MIN_ROUND_TRIPS round trips in the test blocks (a third of the data).
ML_BOOTSTRAP_MIN_MINUTES = env.float("ML_BOOTSTRAP_MIN_MINUTES", default=40.0)
ML_BOOTSTRAP_CHECK_S = env.float("ML_BOOTSTRAP_CHECK_S", default=30.0)
ML_BOOTSTRAP_MARKETS = env.list("ML_BOOTSTRAP_MARKETS", default=[])  # empty = every market in MARKET_CODES
# One set of training defaults (mlmodel/config.py): train, ml_report, nightly retrain, Train now and the
# first-model bootstrap all start from these. Window 30: at 50 the test sets of sparse data shrink. The
# horizon and window can be set from the environment: the launcher's simulated stack trains on the demo
# market's 5-s announced jumps with a window that covers them (core/launcher.py, docs/simulator.md).
ML_TRAIN_DAYS = 5
# Nightly: one pooled model covers every enabled market; these markets also get a model of their own
# (comma-separated; each is then promoted only if it beats the market's active model, pooled or not).
ML_PER_MARKET_MODELS = env.list("ML_PER_MARKET_MODELS", default=[])
ML_POOLED_MODEL = env.bool("ML_POOLED_MODEL", default=True)  # False: only ML_PER_MARKET_MODELS retrain
ML_HORIZON_S = env.float("ML_HORIZON_S", default=10.0)
ML_WINDOW = env.int("ML_WINDOW", default=30)
ML_FEATURE_LEVELS = 10
ML_HIDDEN = 32
ML_LAYERS = 1
ML_DROPOUT = 0.0
ML_EPOCHS = 40
ML_PATIENCE = 6
ML_BATCH_SIZE = 256
ML_LR = 1e-3
ML_SEED = 0
ML_MAX_SAMPLES_PER_EPOCH = 200_000
ML_N_SPLITS = 3
ML_TRAIN_STRIDE = 1
ML_EVAL_STRIDE = 1
# Bounds on a night's work per market, whatever the days hold (docs/ml.md, "Nightly retraining at scale"):
# validation and test windows per walk-forward split (evenly spaced beyond it), and the rows of each market
# the pooled model keeps for training (evenly spread blocks; its other rows are read, sampled and dropped).
ML_MAX_EVAL_WINDOWS = env.int("ML_MAX_EVAL_WINDOWS", default=50_000)
ML_POOLED_ROWS_PER_MARKET = env.int("ML_POOLED_ROWS_PER_MARKET", default=30_000)
ML_SPIKE_K = 4.0
ML_SPIKE_WINDOW_S = 60.0
ML_SPIKE_PAD_S = 600.0
ML_TRAIN_IN_SUBPROCESS: bool | None = None  # None = yes inside the ml worker (serving goes on), no elsewhere
ML_TRAIN_TIME_LIMIT_S = 6 * 3600
# A pooled run reads and evaluates every enabled market: 5.2-5.7 CPU h at 200 markets x 5 days on a 2-core box
# (README, "Nightly retraining at scale"); this limit leaves room for a busy box, well before the next night.
ML_POOLED_TRAIN_TIME_LIMIT_S = env.int("ML_POOLED_TRAIN_TIME_LIMIT_S", default=12 * 3600)
ML_PREDICTION_KEEP_S = 3600  # predictions older than this are pruned
ML_LIVE_KEEP_S = 300  # raw book/trade history kept per market in the ML worker
ML_MAX_DATA_AGE_S: float | None = 15.0  # no prediction from a snapshot older than this (None = no check)
ML_BACKTEST_THRESHOLD = 0.0005  # the threshold the walk-forward backtest assumes (0.05 %)
ML_BACKTEST_ORDER_KRW = 100_000.0
ML_BACKTEST_LATENCY_MS = 100
# The promotion gate (mlmodel/gate.py): significance level of the loss tests, the backtest round trips a
# candidate needs over all test periods (5 days of data), and the smallest test period (samples) below
# which a training fails instead of reporting a figure of noise.
ML_GATE_ALPHA = 0.05
ML_GATE_MIN_ROUND_TRIPS = 20
ML_MIN_TEST_SAMPLES = 200
# Where spike/crash slices and archived day files fetched back for training are kept; None = beside
# MARKET_DATA_DIR (``<name>-ml-spikes``, ``<name>-training-cache``), see mlmodel.conf.
ML_SPIKE_DATA_DIR = env("ML_SPIKE_DATA_DIR", default=None)
ML_TRAINING_CACHE_DIR = env("ML_TRAINING_CACHE_DIR", default=None)

# Periodic tasks (observator/settings/celery.py assembles CELERY_BEAT_SCHEDULE).
_train_h, _train_m = (int(x) for x in env("ML_RETRAIN_AT", default="00:10").split(":"))
ml_beat_schedule = {
    "mlmodel-nightly-retrain": {
        "task": "mlmodel.tasks.nightly_retrain",
        "schedule": crontab(hour=_train_h, minute=_train_m),
    },
    # A quick look at the recorded data; not on the ml queue, whose one process serves predictions.
    "mlmodel-bootstrap-first-model": {
        "task": "mlmodel.tasks.bootstrap_first_model",
        "schedule": ML_BOOTSTRAP_CHECK_S,
        "options": {"queue": "default", "expires": ML_BOOTSTRAP_CHECK_S},
    },
    # Training runs no ml worker took in time are failed as undelivered (mlmodel.tasks.training_runs_check).
    "mlmodel-training-runs-check": {
        "task": "mlmodel.tasks.training_runs_check",
        "schedule": 30.0,
        "options": {"queue": "default", "expires": 30.0},
    },
}
