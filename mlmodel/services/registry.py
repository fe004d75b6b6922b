"""The model registry: numbered versions of a market's model, and promotion, roll-back and retirement that
keep exactly one active model per market; the promotion rule that nightly retraining applies."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from core import realtime
from core.errors import Conflict, NotFound
from mlmodel import conf
from mlmodel.models import ModelStatus, ModelVersion

logger = logging.getLogger(__name__)

# The channel-layer group of training progress (``ml.training``) and registry changes (``ml.registry``).
TRAINING_GROUP = "ml.training"


def model_version_create(
    *, market: str, artifact: bytes, plots: dict[str, bytes], **fields: Any
) -> ModelVersion:
    """A new candidate of ``market``, numbered after the last version, its artifact and plots stored."""
    sha = hashlib.sha256(artifact).hexdigest()
    for _attempt in range(5):
        try:
            with transaction.atomic():
                last = (
                    ModelVersion.objects.select_for_update()
                    .filter(market=market)
                    .order_by("-version")
                    .values_list("version", flat=True)
                    .first()
                )
                version = ModelVersion(
                    market=market,
                    version=(last or 0) + 1,
                    artifact_sha256=sha,
                    code_version=conf.code_version(),
                    **fields,
                )
                # A pooled model's versions (one per market) share one artifact: same bytes, one file.
                shared = (
                    ModelVersion.objects.filter(artifact_sha256=sha)
                    .exclude(artifact="")
                    .values_list("artifact", flat=True)
                    .first()
                )
                if shared and default_storage.exists(shared):
                    version.artifact.name = shared
                else:
                    version.artifact.save(f"model-{sha[:12]}.pt", ContentFile(artifact), save=False)
                stored = {}
                for key, png in plots.items():
                    path = f"mlmodel/{market}/v{version.version}/plots/{key}.png"
                    stored[key] = default_storage.save(path, ContentFile(png))
                version.plots = stored
                version.save()
                return version
        except IntegrityError:
            continue  # another training allocated the same number at the same moment
    raise Conflict(_("Could not allocate a model version number; try again."))


def _locked_market_versions(market: str) -> list[ModelVersion]:
    return list(ModelVersion.objects.select_for_update().filter(market=market).order_by("id"))


def _locked_version(version: ModelVersion | int) -> tuple[list[ModelVersion], ModelVersion]:
    """Every version row of ``version``'s market, locked, and ``version`` among them (404 if it is gone)."""
    vid = version.pk if isinstance(version, ModelVersion) else int(version)
    market = ModelVersion.objects.filter(pk=vid).values_list("market", flat=True).first()
    if market is None:
        raise NotFound(_("No such model version."))
    rows = _locked_market_versions(market)
    return rows, next(v for v in rows if v.pk == vid)


def _after_change(market: str) -> None:
    version = ModelVersion.objects.filter(market=market, status=ModelStatus.ACTIVE).first()
    data = {
        "market": market,
        "active": version.label if version else None,
        "version_id": version.pk if version else None,
    }
    transaction.on_commit(lambda: realtime.publish(TRAINING_GROUP, {"type": "ml.registry", "data": data}))


@transaction.atomic
def model_promote(*, version: ModelVersion | int, note: str = "") -> ModelVersion:
    """Make ``version`` the active model of its market; the previously active one is retired. Runs under a
    lock on every version row of the market, so two promotions cannot leave two active models."""
    rows, target = _locked_version(version)
    now = timezone.now()
    for v in rows:
        if v.status == ModelStatus.ACTIVE and v.pk != target.pk:
            v.status, v.retired_at = ModelStatus.RETIRED, now
            v.status_note = f"replaced by v{target.version}"
            v.save(update_fields=["status", "retired_at", "status_note"])
    if target.status != ModelStatus.ACTIVE:
        target.status, target.promoted_at, target.retired_at = ModelStatus.ACTIVE, now, None
        target.status_note = note[:300]
        target.save(update_fields=["status", "promoted_at", "retired_at", "status_note"])
    _after_change(target.market)
    logger.info("model promoted", extra={"market": target.market, "version": target.version})
    return target


@transaction.atomic
def model_rollback(*, market: str, note: str = "") -> ModelVersion:
    """Re-activate the most recently active earlier version of ``market`` and retire the current one."""
    rows = _locked_market_versions(market)
    current = next((v for v in rows if v.status == ModelStatus.ACTIVE), None)
    previous = sorted(
        (
            v
            for v in rows
            if v.status == ModelStatus.RETIRED
            and v.promoted_at is not None
            and (current is None or v.pk != current.pk)
        ),
        key=lambda v: (v.promoted_at, v.pk),
        reverse=True,
    )
    if not previous:
        raise Conflict(
            _("There is no earlier active model of %(market)s to roll back to.") % {"market": market}
        )
    target = previous[0]
    now = timezone.now()
    if current is not None:
        current.status, current.retired_at = ModelStatus.RETIRED, now
        current.status_note = (note or f"rolled back to v{target.version}")[:300]
        current.save(update_fields=["status", "retired_at", "status_note"])
    target.status, target.retired_at = ModelStatus.ACTIVE, None
    target.promoted_at = now
    target.status_note = f"rolled back from v{current.version}" if current else "rolled back"
    target.save(update_fields=["status", "retired_at", "promoted_at", "status_note"])
    _after_change(market)
    return target


@transaction.atomic
def model_retire(*, version: ModelVersion | int, note: str = "") -> ModelVersion:
    """Retire a candidate (or a former model). The active model is replaced by promotion or roll-back,
    never just retired, so a market that has a model keeps serving one."""
    rows, target = _locked_version(version)
    if target.status == ModelStatus.ACTIVE:
        raise Conflict(_("The active model cannot be retired; promote another version or roll back."))
    if target.status != ModelStatus.RETIRED:
        target.status, target.retired_at, target.status_note = ModelStatus.RETIRED, timezone.now(), note[:300]
        target.save(update_fields=["status", "retired_at", "status_note"])
    return target


def promotion_decision(
    *, version: ModelVersion, report: dict[str, Any], incumbent: ModelVersion | None
) -> dict[str, Any]:
    """Apply the promotion gate (mlmodel/gate.py, run on the walk-forward test in ``pipeline_run``): the
    candidate must beat persistence and the best cheap baseline with significance, make a positive net
    P&L over enough round trips, do no worse than the active model on the same periods and fit the live
    feed. An active model that could not be scored on the same test leaves the choice to an operator."""
    gate = (report.get("gate") or {}).get("lstm") or {}
    out: dict[str, Any] = {
        "candidate": version.label,
        "gate": gate,
        "candidate_net_pnl": gate.get("net_pnl"),
        "candidate_round_trips": gate.get("round_trips"),
    }
    if not gate:
        return {**out, "promote": False, "reason": "the candidate's report has no gate result"}
    if incumbent is not None:
        out["incumbent"] = incumbent.label
        out["incumbent_net_pnl"] = gate.get("incumbent_net_pnl")
        if gate.get("incumbent_net_pnl") is None and gate.get("passed"):
            note = report.get("data", {}).get("incumbent_note") or "active model could not be scored"
            return {**out, "promote": False, "reason": f"{note}; promote by hand after reading the report"}
    return {**out, "promote": bool(gate.get("passed")), "reason": str(gate.get("reason", ""))}
