"""REST API routes of the market app (public market data under /api/market/)."""

from django.urls import path

from market.api import views

urlpatterns = [
    path("market/markets/", views.MarketListApi.as_view(), name="market-list"),
    path("market/exchanges/btc/", views.ExchangesBtcApi.as_view(), name="market-exchanges-btc"),
    path("market/news/", views.NewsApi.as_view(), name="market-news"),
    path("market/<str:code>/ticker/", views.TickerApi.as_view(), name="market-ticker"),
    path("market/<str:code>/orderbook/", views.OrderbookApi.as_view(), name="market-orderbook"),
    path("market/<str:code>/trades/", views.TradesApi.as_view(), name="market-trades"),
    path("market/<str:code>/candles/", views.CandlesApi.as_view(), name="market-candles"),
]
