"""Admin registrations of the market app (read-only views of operational records)."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from market.models import DayUpload, NewsItem


@admin.register(DayUpload)
class DayUploadAdmin(admin.ModelAdmin):
    """Uploads are written by the nightly task only; the admin shows them (read-only) for operators."""

    list_display = (
        "day",
        "kind",
        "market",
        "status",
        "size",
        "rows",
        "attempts",
        "verified_at",
        "local_deleted_at",
    )
    list_filter = ("status", "kind", "market")
    search_fields = ("market", "key")
    date_hierarchy = "day"
    ordering = ("-day", "kind", "market")
    readonly_fields = [f.name for f in DayUpload._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: DayUpload | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: DayUpload | None = None) -> bool:
        return False


@admin.register(NewsItem)
class NewsItemAdmin(admin.ModelAdmin):
    """News comes from the feeds (market.tasks.refresh_news) and is pruned by age; read-only here (a deleted
    item would come back while its feed still lists it)."""

    list_display = ("published_at", "title", "source")
    list_filter = ("source",)
    search_fields = ("title", "link")
    date_hierarchy = "published_at"
    readonly_fields = [f.name for f in NewsItem._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: NewsItem | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: NewsItem | None = None) -> bool:
        return False
