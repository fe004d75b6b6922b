"""Page routes of the trading app."""

from django.urls import path

from trading import dashboard, views

app_name = "trading"
urlpatterns = [
    path("trading/report/send", views.report_send_view, name="report-send"),
    path("trade", dashboard.trade_page, name="trade"),
]
