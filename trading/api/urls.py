"""REST API routes of the trading app (under /api/trading/)."""

from django.urls import path

from trading.api import views

app_name = "trading-api"
urlpatterns = [
    path("trading/mode/", views.ModeApi.as_view(), name="mode"),
    path("trading/risk-limits/", views.RiskLimitsApi.as_view(), name="risk-limits"),
    path("trading/balances/", views.BalancesApi.as_view(), name="balances"),
    path("trading/portfolio/", views.PortfolioApi.as_view(), name="portfolio"),
    path("trading/report/", views.ReportApi.as_view(), name="report"),
    path("trading/paper/reset/", views.PaperResetApi.as_view(), name="paper-reset"),
    path("trading/orders/", views.OrderListApi.as_view(), name="orders"),
    path("trading/orders/buy/", views.BuyApi.as_view(), name="buy"),
    path("trading/orders/sell/", views.SellApi.as_view(), name="sell"),
    path("trading/orders/limit/", views.LimitApi.as_view(), name="limit"),
    path("trading/orders/<id:order_id>/", views.OrderDetailApi.as_view(), name="order-detail"),
    path("trading/orders/<id:order_id>/cancel/", views.OrderCancelApi.as_view(), name="order-cancel"),
    path("trading/scheduled-orders/", views.ScheduledListCreateApi.as_view(), name="scheduled"),
    path(
        "trading/scheduled-orders/<id:scheduled_order_id>/",
        views.ScheduledDetailApi.as_view(),
        name="scheduled-detail",
    ),
    path(
        "trading/scheduled-orders/<id:scheduled_order_id>/cancel/",
        views.ScheduledCancelApi.as_view(),
        name="scheduled-cancel",
    ),
]
