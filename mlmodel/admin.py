"""Admin: model versions (promote / roll back / retire, report link), training runs with a "Train now"
form (linked from both lists) that queues training on the ml queue and a live progress page (polls a small
JSON endpoint). Runs no ml worker took in time are failed as undelivered whenever these pages are read."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from core.errors import ApplicationError
from mlmodel import selectors
from mlmodel.models import ModelVersion, Prediction, SpikePeriod, TrainingRun, TrainingState, TrainingTrigger
from mlmodel.services.registry import model_promote, model_retire, model_rollback
from mlmodel.services.runs import training_run_start, training_runs_fail_undelivered


def _metric(obj: ModelVersion, *path: str) -> Any:
    cur: Any = obj.metrics or {}
    for p in path:
        cur = cur.get(p) if isinstance(cur, dict) else None
    return cur


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = (
        "__str__",
        "market",
        "version",
        "status",
        "created_at",
        "promoted_at",
        "val_mse",
        "vs_persistence",
        "test_dir_acc",
        "net_pnl",
        "report_link",
    )
    list_filter = ("market", "status")
    ordering = ("market", "-version")
    actions = ["promote", "roll_back", "retire"]
    readonly_fields = [f.name for f in ModelVersion._meta.fields if f.name != "report"] + ["report_link"]
    exclude = ("report",)
    change_list_template = "admin/mlmodel/modelversion/change_list.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # versions come from training only

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        # "Train now" where admins look for it: the training-run admin's form, linked from here too.
        run_admin = self.admin_site._registry.get(TrainingRun)
        can_train = bool(run_admin and run_admin.has_change_permission(request))
        return super().changelist_view(request, {**(extra_context or {}), "can_train_now": can_train})

    @admin.display(description=_("val. MSE"))
    def val_mse(self, obj: ModelVersion) -> str:
        v = _metric(obj, "lstm", "val", "mse")
        return f"{v:.3e}" if isinstance(v, int | float) else "–"

    @admin.display(description=_("persistence val. MSE"))
    def vs_persistence(self, obj: ModelVersion) -> str:
        v = _metric(obj, "baselines", "persistence", "val", "mse")
        return f"{v:.3e}" if isinstance(v, int | float) else "–"

    @admin.display(description=_("test dir. acc."))
    def test_dir_acc(self, obj: ModelVersion) -> str:
        v = _metric(obj, "lstm", "test", "dir_acc")
        return f"{v * 100:.1f}%" if isinstance(v, int | float) else "–"

    @admin.display(description=_("backtest net P&L"))
    def net_pnl(self, obj: ModelVersion) -> str:
        v = _metric(obj, "lstm", "backtest", "net_pnl")
        return f"{v:,.0f}" if isinstance(v, int | float) else "–"

    @admin.display(description=_("report"))
    def report_link(self, obj: ModelVersion) -> str:
        if not obj.pk:
            return "–"
        return format_html('<a href="{}">{}</a>', reverse("mlmodel:report", args=[obj.pk]), _("report"))

    @admin.action(description=_("Promote the selected version (retires the active one)"))
    def promote(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        if queryset.values("market").distinct().count() != queryset.count():
            self.message_user(request, _("Select at most one version per market."), messages.ERROR)
            return
        for v in queryset:
            model_promote(version=v, note=f"promoted by {request.user.get_username()}")
            self.message_user(request, _("%(v)s is now active.") % {"v": v}, messages.SUCCESS)

    @admin.action(description=_("Roll back the selected versions' markets to their previous model"))
    def roll_back(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        for market in sorted(set(queryset.values_list("market", flat=True))):
            try:
                v = model_rollback(market=market, note=f"rolled back by {request.user.get_username()}")
            except ApplicationError as exc:
                self.message_user(request, str(exc.message), messages.ERROR)
                continue
            self.message_user(
                request, _("%(market)s rolled back to %(v)s.") % {"market": market, "v": v}, messages.SUCCESS
            )

    @admin.action(description=_("Retire the selected candidates"))
    def retire(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        for v in queryset:
            try:
                model_retire(version=v, note=f"retired by {request.user.get_username()}")
            except ApplicationError as exc:
                self.message_user(request, f"{v}: {exc.message}", messages.ERROR)


class TrainNowForm(forms.Form):
    market = forms.ChoiceField(label=_("Market"))
    days = forms.IntegerField(label=_("Days of data"), min_value=1, max_value=60, initial=5)
    epochs = forms.IntegerField(label=_("Max. epochs"), min_value=1, max_value=500, initial=30)
    horizon_s = forms.FloatField(label=_("Horizon (s)"), min_value=0.5, max_value=3600, initial=10.0)
    n_splits = forms.IntegerField(label=_("Walk-forward splits"), min_value=1, max_value=10, initial=3)
    promote_if_better = forms.BooleanField(
        label=_("Promote if it beats the active model on the same walk-forward test"),
        required=False,
        initial=True,
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        codes = list(
            dict.fromkeys(
                [*settings.MARKET_CODES, *ModelVersion.objects.values_list("market", flat=True).distinct()]
            )
        )
        self.fields["market"].choices = [(c, c) for c in codes]


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "market",
        "trigger",
        "state",
        "stage",
        "epoch",
        "total_epochs",
        "val_loss",
        "progress_pct",
        "created_at",
        "result_version",
        "note",
        "progress_link",
    )
    list_filter = ("state", "trigger", "market")
    readonly_fields = [f.name for f in TrainingRun._meta.fields]
    change_list_template = "admin/mlmodel/trainingrun/change_list.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        training_runs_fail_undelivered()
        return super().changelist_view(request, extra_context)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> Any:
        training_runs_fail_undelivered()
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.display(description=_("progress"), ordering="progress")
    def progress_pct(self, obj: TrainingRun) -> str:
        return f"{obj.progress:.0f}%"

    @admin.display(description=_("message"))
    def note(self, obj: TrainingRun) -> str:
        text = obj.message.strip().splitlines()[0] if obj.message.strip() else ""
        text = text if len(text) <= 120 else text[:119] + "…"
        if obj.stage == "undelivered":
            return format_html(
                '<strong style="color: var(--error-fg)">{}</strong> {}', _("Undelivered:"), text
            )
        return text

    @admin.display(description=_("live progress"))
    def progress_link(self, obj: TrainingRun) -> str:
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:mlmodel_trainingrun_progress", args=[obj.pk]),
            _("live progress"),
        )

    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [
            path("train-now/", wrap(self.train_now_view), name="mlmodel_trainingrun_train_now"),
            path("<int:run_id>/progress/", wrap(self.progress_view), name="mlmodel_trainingrun_progress"),
            path(
                "<int:run_id>/progress.json",
                wrap(self.progress_json),
                name="mlmodel_trainingrun_progress_json",
            ),
            *super().get_urls(),
        ]

    def _check(self, request: HttpRequest) -> None:
        if not self.has_view_permission(request):
            raise PermissionDenied

    def train_now_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_change_permission(request):
            raise PermissionDenied
        form = TrainNowForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                run = training_run_start(
                    market=data["market"],
                    trigger=TrainingTrigger.ADMIN,
                    requested_by=request.user,
                    params={
                        "days": data["days"],
                        "epochs": data["epochs"],
                        "horizon_s": data["horizon_s"],
                        "n_splits": data["n_splits"],
                        "promote_if_better": data["promote_if_better"],
                    },
                )
            except ApplicationError as exc:
                form.add_error(None, str(exc.message))
            else:
                if run.state == TrainingState.FAILED:  # the broker refused the message (sent after commit)
                    self.message_user(request, run.message, messages.ERROR)
                else:
                    self.message_user(request, _("Training queued on the ml queue."), messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:mlmodel_trainingrun_progress", args=[run.pk]))
        ctx = {
            **self.admin_site.each_context(request),
            "title": _("Train now"),
            "form": form,
            "opts": self.model._meta,
        }
        return render(request, "admin/mlmodel/trainingrun/train_now.html", ctx)

    def progress_view(self, request: HttpRequest, run_id: int) -> HttpResponse:
        self._check(request)
        training_runs_fail_undelivered()
        run = get_object_or_404(TrainingRun, pk=run_id)
        ctx = {
            **self.admin_site.each_context(request),
            "title": _("Training run #%(id)s") % {"id": run.pk},
            "run": run,
            "opts": self.model._meta,
            "json_url": reverse("admin:mlmodel_trainingrun_progress_json", args=[run.pk]),
        }
        return render(request, "admin/mlmodel/trainingrun/progress.html", ctx)

    def progress_json(self, request: HttpRequest, run_id: int) -> JsonResponse:
        self._check(request)
        training_runs_fail_undelivered()
        run = get_object_or_404(TrainingRun, pk=run_id)
        data = selectors.training_run_progress(run=run)
        if run.result_version_id:
            data["report_url"] = reverse("mlmodel:report", args=[run.result_version_id])
        return JsonResponse(data)


@admin.register(Prediction)
class PredictionAdmin(admin.ModelAdmin):
    list_display = ("market", "ts", "predicted_return", "horizon_s", "mid", "model_version", "created_at")
    list_filter = ("market",)
    readonly_fields = [f.name for f in Prediction._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(SpikePeriod)
class SpikePeriodAdmin(admin.ModelAdmin):
    list_display = ("market", "day", "start_ms", "end_ms", "created_at")
    list_filter = ("market",)
