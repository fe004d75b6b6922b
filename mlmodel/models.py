"""The model registry (versions with their artifact, report and status), training runs with live progress,
and the recent predictions served to the dashboard and the auto-traders."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


def artifact_upload_to(instance: ModelVersion, filename: str) -> str:
    return f"mlmodel/{instance.market}/v{instance.version}/{filename}"


class ModelStatus(models.TextChoices):
    CANDIDATE = "candidate", _("Candidate")
    ACTIVE = "active", _("Active")
    RETIRED = "retired", _("Retired")


class ModelVersion(models.Model):
    """One trained model of one market. Exactly one version per market is ``active`` (enforced by
    ``mlmodel.services.registry.model_promote`` under a row lock); it is the one serving predictions."""

    name = models.CharField(_("name"), max_length=80)
    market = models.CharField(_("market"), max_length=20, db_index=True)
    version = models.PositiveIntegerField(_("version"))
    status = models.CharField(
        _("status"), max_length=10, choices=ModelStatus.choices, default=ModelStatus.CANDIDATE
    )
    status_note = models.CharField(_("status note"), max_length=300, blank=True)
    horizon_s = models.FloatField(_("horizon (s)"))
    data_start = models.DateTimeField(_("data from"), null=True, blank=True)
    data_end = models.DateTimeField(_("data until"), null=True, blank=True)
    data_days = models.JSONField(_("days trained on"), default=list, blank=True)
    spike_periods = models.JSONField(_("spike/crash periods"), default=list, blank=True)
    feature_names = models.JSONField(_("feature names"), default=list)
    feature_version = models.CharField(_("feature version"), max_length=40)
    code_version = models.CharField(_("code version"), max_length=64, blank=True)
    hyperparameters = models.JSONField(_("hyper-parameters"), default=dict)
    metrics = models.JSONField(_("metrics"), default=dict, blank=True)
    report = models.JSONField(_("report"), default=dict, blank=True)
    plots = models.JSONField(_("plot files"), default=dict, blank=True)  # name -> storage path
    artifact = models.FileField(_("artifact"), upload_to=artifact_upload_to, max_length=300)
    artifact_sha256 = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    promoted_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["market", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["market", "version"], name="mlmodel_version_unique_market_version"
            ),
        ]
        indexes = [models.Index(fields=["market", "status"], name="mlmodel_version_market_status")]
        verbose_name = _("model version")
        verbose_name_plural = _("model versions")

    def __str__(self) -> str:
        return f"{self.market} v{self.version} ({self.status})"

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"


class TrainingState(models.TextChoices):
    QUEUED = "queued", _("Queued")
    RUNNING = "running", _("Running")
    SUCCEEDED = "succeeded", _("Succeeded")
    FAILED = "failed", _("Failed")


class TrainingTrigger(models.TextChoices):
    ADMIN = "admin", _("Admin (train now)")
    NIGHTLY = "nightly", _("Nightly retrain")
    COMMAND = "command", _("Management command")
    API = "api", _("API")
    BOOTSTRAP = "bootstrap", _("First model (automatic)")


class TrainingRun(models.Model):
    """One training job and its live progress (written by the worker after every epoch)."""

    market = models.CharField(_("market"), max_length=20)
    trigger = models.CharField(max_length=10, choices=TrainingTrigger.choices, default=TrainingTrigger.ADMIN)
    params = models.JSONField(_("parameters"), default=dict, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    state = models.CharField(max_length=10, choices=TrainingState.choices, default=TrainingState.QUEUED)
    stage = models.CharField(_("stage"), max_length=120, blank=True)
    epoch = models.PositiveIntegerField(default=0)
    total_epochs = models.PositiveIntegerField(default=0)
    split = models.PositiveIntegerField(default=0)
    total_splits = models.PositiveIntegerField(default=0)
    train_loss = models.FloatField(null=True, blank=True)
    val_loss = models.FloatField(null=True, blank=True)
    eta_seconds = models.FloatField(null=True, blank=True)
    message = models.TextField(blank=True)
    decision = models.JSONField(_("promotion decision"), default=dict, blank=True)
    result_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="training_runs"
    )
    # 0..100, only ever raised by the service that writes progress (the admin's bar never goes backwards).
    progress = models.FloatField(_("progress (%)"), default=0.0)
    celery_task_id = models.CharField(max_length=64, blank=True)
    process_id = models.PositiveIntegerField(null=True, blank=True)  # the training process (ml worker host)
    created_at = models.DateTimeField(auto_now_add=True)  # when it was queued
    # When an ml worker took the message; a run still without it after ML_TRAINING_PICKUP_TIMEOUT_S is failed.
    picked_up_at = models.DateTimeField(_("picked up at"), null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("training run")
        verbose_name_plural = _("training runs")

    def __str__(self) -> str:
        return f"training #{self.pk} {self.market} ({self.state})"

    @property
    def is_finished(self) -> bool:
        return self.state in (TrainingState.SUCCEEDED, TrainingState.FAILED)


class ModelBootstrap(models.Model):
    """Per market, while no model is active: how much order-book data the collector has recorded and how
    much the next automatic first training waits for (``mlmodel.bootstrap``; doubled after each attempt)."""

    market = models.CharField(_("market"), max_length=20, unique=True)
    collected_s = models.FloatField(_("recorded (s)"), default=0.0)
    rows = models.PositiveBigIntegerField(_("snapshots"), default=0)
    next_at_s = models.FloatField(_("next attempt at (s of data)"), default=0.0)  # 0 = the setting's minimum
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    last_run = models.ForeignKey(
        TrainingRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    checked_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("first-model bootstrap")
        verbose_name_plural = _("first-model bootstraps")

    def __str__(self) -> str:
        return f"{self.market} bootstrap ({self.collected_s / 60:.1f} min, {self.attempts} attempts)"


class Prediction(models.Model):
    """A served prediction (only the recent ones are kept; see ``prediction_prune``)."""

    market = models.CharField(max_length=20)
    ts = models.DateTimeField()  # the time of the newest book snapshot the prediction used
    horizon_s = models.FloatField()
    predicted_return = models.FloatField()  # log-return over horizon_s
    mid = models.FloatField(null=True, blank=True)
    best_bid = models.FloatField(null=True, blank=True)
    best_ask = models.FloatField(null=True, blank=True)
    model_version = models.ForeignKey(ModelVersion, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-ts", "-id"]
        indexes = [
            models.Index(fields=["market", "-ts"], name="mlmodel_pred_market_ts"),
            models.Index(fields=["created_at"], name="mlmodel_pred_created"),
        ]

    def __str__(self) -> str:
        return f"{self.market} {self.ts:%H:%M:%S} {self.predicted_return:+.2e}"


class SpikePeriod(models.Model):
    """A stored spike/crash period (a move larger than k sigma) whose data is kept beyond the collector's
    local retention, so nightly training keeps seeing past outliers."""

    market = models.CharField(max_length=20)
    start_ms = models.BigIntegerField()
    end_ms = models.BigIntegerField()
    day = models.DateField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["market", "start_ms"]
        constraints = [
            models.UniqueConstraint(fields=["market", "start_ms"], name="mlmodel_spike_unique_market_start"),
        ]

    def __str__(self) -> str:
        return f"{self.market} spike {self.day} ({(self.end_ms - self.start_ms) // 1000}s)"
