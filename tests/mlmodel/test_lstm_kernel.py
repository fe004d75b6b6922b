"""The compiled serving LSTM (``mlmodel.lstm_kernel``) computes what the torch model computes: same outputs
for every shape and for saturating inputs, only for models it computes exactly, and the ml worker's
``Server`` serves through it (or through torch, for other models or when switched off) with the same
predictions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info

from market import batchwire
from mlmodel import lstm_kernel
from mlmodel.live import ModelSpec
from mlmodel.lstm_kernel import LSTMWeights
from mlmodel.nets import LSTMConfig, LSTMRegressor
from mlmodel.serving import Server
from tests.mlmodel.synth import column_batch, random_predictor, synthetic_market


def _torch_out(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model.eval()(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize(
    "hidden, window, features, batch, scale",
    [
        (32, 50, 66, 200, 1.0),
        (8, 20, 30, 7, 3.0),
        (17, 5, 3, 1, 1.0),
        (1, 1, 4, 3, 1.0),
        (16, 30, 10, 5, 40.0),
    ],
)
def test_kernel_outputs_equal_torch(hidden, window, features, batch, scale) -> None:
    torch.manual_seed(hidden)
    model = LSTMRegressor(LSTMConfig(n_features=features, hidden=hidden))
    with torch.no_grad():  # trained weights are larger than the initial ones: gates saturate too
        for p in model.parameters():
            p.mul_(2.0)
    x = (np.random.default_rng(hidden).normal(size=(batch, window, features)) * scale).astype(np.float32)
    weights = LSTMWeights.of(model)
    assert weights is not None and weights.hidden == hidden
    got = weights.forward_windows(x)
    np.testing.assert_allclose(got, _torch_out(model, x), rtol=1e-5, atol=2e-6)
    assert np.array_equal(got, weights.forward_windows(x))  # deterministic


def test_tanh_is_within_4e_7_everywhere() -> None:
    x = np.concatenate([np.linspace(-30, 30, 600_001), [0.0, 1e-30, -1e-30, 7.9, -7.9, 1e4, -1e4]])
    x = x.astype(np.float32)
    got = lstm_kernel.tanh_array(x)
    assert np.abs(got - np.tanh(x.astype(np.float64))).max() < 4e-7
    assert got[np.argmin(np.abs(x))] == 0.0 and np.all(np.abs(got) < 1.0)


def test_only_models_it_computes_exactly_get_compiled_weights() -> None:
    assert LSTMWeights.of(LSTMRegressor(LSTMConfig(n_features=4, hidden=3, layers=2))) is None
    assert LSTMWeights.of(torch.nn.Linear(4, 1)) is None
    assert LSTMWeights.of(LSTMRegressor(LSTMConfig(n_features=4, hidden=3))) is not None


@pytest.mark.parametrize("slots, gates", [(64, 128), (50, 32), (64, 48), (1, 4), (128, 256)])
def test_a_markets_projection_ring_is_an_odd_number_of_cache_lines(slots, gates) -> None:
    stride = lstm_kernel.ring_stride(slots, gates)
    assert stride >= slots * gates and stride % 16 == 0 and (stride // 16) % 2 == 1


def test_blas_threads_caps_the_blas_numba_calls() -> None:
    def openblas() -> list[int]:
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    with lstm_kernel.blas_threads(1):
        assert openblas() and set(openblas()) == {1}


def test_server_serves_single_layer_lstms_compiled_and_others_with_torch(settings) -> None:
    settings.MARKET_PREDICTION_LEVELS = 30
    one, two = random_predictor(), random_predictor(layers=2, seed=1)
    markets = {f"KRW-M{k}": synthetic_market(300, seed=k, levels=30) for k in range(5)}

    def serve(compiled: bool) -> dict[str, list[dict[int, float]]]:
        settings.ML_SERVING_COMPILED = compiled
        server = Server()
        loaded = [server.load(1, "one", "a", one), server.load(2, "two", "b", two)]
        assert (loaded[0].spec.lstm is not None) == compiled and loaded[1].spec.lstm is None
        seen: dict[str, list[dict[int, float]]] = {"one": [], "two": []}
        for lo in range(0, 300, 25):
            cols = {name: column_batch(b, t, lo, lo + 25) for name, (b, t) in markets.items()}
            midx = server.state.append(batchwire.from_columns(cols))
            for lm in loaded:
                seen[lm.label].append(server.predict_group(lm, midx))
        return seen

    compiled, plain = serve(True), serve(False)
    assert sum(len(p) for p in compiled["one"]) >= 5 * 10  # predictions once the windows filled
    for label in ("one", "two"):
        for got, want in zip(compiled[label], plain[label], strict=True):
            assert got.keys() == want.keys()
            for m in want:
                assert got[m] == pytest.approx(want[m], rel=1e-4, abs=1e-9)
    spec = ModelSpec.of(7, one, compiled=True)
    assert spec.lstm is not None and ModelSpec.of(8, one).lstm is None
