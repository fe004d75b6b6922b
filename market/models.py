"""Market app models: the record of each finished day-file upload to object storage (S3)."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class DayUpload(models.Model):
    """One kind/market/day of recorded data and where it stands on its way to S3.

    ``key`` is the storage key of the day's (compacted) Parquet file; ``size``/``sha256`` describe the local
    file that was sent. Retention deletes a local day only when its row is ``verified`` (the stored object
    was read back and matched both).
    """

    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        UPLOADED = "uploaded", _("uploaded")
        VERIFIED = "verified", _("verified")
        FAILED = "failed", _("failed")

    kind = models.CharField(_("kind"), max_length=16)
    market = models.CharField(_("market"), max_length=32)
    day = models.DateField(_("day"))
    key = models.CharField(_("storage key"), max_length=512, blank=True)
    size = models.BigIntegerField(_("size (bytes)"), null=True, blank=True)
    sha256 = models.CharField(_("SHA-256"), max_length=64, blank=True)
    rows = models.BigIntegerField(_("rows"), null=True, blank=True)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    error = models.TextField(_("last error"), blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)
    uploaded_at = models.DateTimeField(_("uploaded"), null=True, blank=True)
    verified_at = models.DateTimeField(_("verified"), null=True, blank=True)
    local_deleted_at = models.DateTimeField(_("local copy deleted"), null=True, blank=True)

    class Meta:
        verbose_name = _("day upload")
        verbose_name_plural = _("day uploads")
        ordering = ("-day", "kind", "market")
        constraints = [
            models.UniqueConstraint(
                fields=("kind", "market", "day"), name="market_dayupload_unique_kind_market_day"
            )
        ]
        indexes = [models.Index(fields=("status", "day"), name="market_dayupload_status_day")]

    def __str__(self) -> str:
        return f"{self.kind}/{self.market}/{self.day} ({self.status})"


class NewsItem(models.Model):
    """One bitcoin news headline from a configured RSS/Atom feed (market.services.news_refresh).

    Deduplicated on the entry's guid (else its normalised link), its normalised link and its normalised title,
    so the same story syndicated by two feeds is shown once.
    """

    guid_key = models.CharField(_("guid key"), max_length=40, unique=True)
    link_key = models.CharField(_("link key"), max_length=40, db_index=True)
    title_key = models.CharField(_("title key"), max_length=40, db_index=True)
    title = models.CharField(_("title"), max_length=300)
    link = models.URLField(_("link"), max_length=1000)
    source = models.CharField(_("source"), max_length=120, blank=True)
    feed_url = models.URLField(_("feed"), max_length=1000)
    summary = models.TextField(_("summary"), blank=True)
    published_at = models.DateTimeField(_("published"), db_index=True)
    fetched_at = models.DateTimeField(_("fetched"), auto_now_add=True)

    class Meta:
        verbose_name = _("news item")
        verbose_name_plural = _("news items")
        ordering = ("-published_at", "-id")

    def __str__(self) -> str:
        return self.title
