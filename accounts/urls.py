"""Page routes of the accounts app."""

from django.urls import path

from accounts import views

urlpatterns = [
    path("signup", views.signup_view, name="signup"),
    path("login", views.AccountLoginView.as_view(), name="login"),
    path("logout", views.AccountLogoutView.as_view(), name="logout"),
    path("home", views.home_view, name="home"),
    path("profile", views.profile_view, name="profile"),
    path("profile/keys/delete", views.profile_keys_delete_view, name="profile-keys-delete"),
    path("profile/settings", views.profile_settings_view, name="profile-settings"),
]
