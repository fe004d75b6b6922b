"""ML pages: the active model's report for users, any version's full report for staff, and plot images."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import render
from django.utils import translation
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET

from core.streaming import asgi_streaming
from mlmodel import selectors
from mlmodel.models import ModelStatus, ModelVersion
from mlmodel.report import localized_plot_name

MODEL_ORDER = ("lstm", "incumbent", "linear_ofi", "gbt", "persistence")


def _rows(version: ModelVersion) -> list[dict[str, Any]]:
    """One row per model of the walk-forward comparison (pooled over splits)."""
    summary = (version.report or {}).get("evaluation", {}).get("summary", {})
    names = [n for n in MODEL_ORDER if n in summary] + [n for n in summary if n not in MODEL_ORDER]
    rows = []
    for name in names:
        s = summary[name]
        rows.append(
            {
                "name": name,
                "val": s.get("val", {}),
                "test": s.get("test", {}),
                "bt": s.get("backtest", {}),
                "beats": s.get("beats_persistence_on_validation"),
                "n_splits": s.get("n_splits"),
            }
        )
    return rows


def _context(version: ModelVersion, *, staff: bool) -> dict[str, Any]:
    report = version.report or {}
    # One name per plot; the image view serves the reader's language (calibration-ko) when it was drawn.
    plots = sorted(name for name in (version.plots or {}) if "-" not in name)
    return {
        "version": version,
        "summary": selectors.model_summary(version=version, staff=staff),
        "rows": _rows(version),
        "splits": report.get("evaluation", {}).get("splits", []),
        "calibration": report.get("calibration", []),
        "config": report.get("evaluation", {}).get("config", {}),
        "data": report.get("data", {}),
        "training": report.get("training", {}),
        "plots": plots,
        "equity_plots": [p for p in plots if p.startswith("equity")],
        "staff": staff,
    }


@login_required
@require_GET
def model_page(request: HttpRequest) -> HttpResponse:
    """The active model of a market (``?market=``, default the first configured market): what it predicts,
    how it did against the baselines on data it never saw, and its plots."""

    markets = list(settings.MARKET_CODES)
    market = (request.GET.get("market") or (markets[0] if markets else "KRW-BTC")).upper()[:20]
    version = selectors.model_active(market=market)
    ctx: dict[str, Any] = {"market": market, "markets": markets}
    if version is None:  # collecting data, training the first model, or why no model passed
        ctx["state"] = selectors.model_state_get(market=market)
    else:
        ctx.update(_context(version, staff=request.user.is_staff))
    return render(request, "mlmodel/model.html", ctx)


@login_required
@require_GET
def model_report(request: HttpRequest, version_id: int) -> HttpResponse:
    """Staff: the full report of any version (users only see the active ones)."""
    version = ModelVersion.objects.filter(pk=version_id).first()
    if version is None or not (request.user.is_staff or version.status == ModelStatus.ACTIVE):
        raise Http404
    runs = version.training_runs.order_by("-id")[:5] if request.user.is_staff else []
    return render(
        request, "mlmodel/report.html", {**_context(version, staff=request.user.is_staff), "runs": runs}
    )


@login_required
@require_GET
def model_plot(request: HttpRequest, version_id: int, name: str) -> HttpResponseBase:
    version = ModelVersion.objects.filter(pk=version_id).first()
    if version is None or not (request.user.is_staff or version.status == ModelStatus.ACTIVE):
        raise Http404
    stored = version.plots or {}
    localized = localized_plot_name(name, translation.get_language() or "en")
    path = stored.get(localized) or stored.get(name)
    if not path or not default_storage.exists(path):
        raise Http404
    response = FileResponse(default_storage.open(path, "rb"), content_type="image/png")
    response["Cache-Control"] = "private, max-age=3600"
    patch_vary_headers(response, ("Cookie", "Accept-Language"))  # the same URL in the reader's language
    return asgi_streaming(request, response)
