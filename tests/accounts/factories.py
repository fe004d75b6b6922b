"""factory_boy factories for accounts: users (with a known password) and stored exchange keys."""

from __future__ import annotations

import secrets
import string

import factory
from django.utils import timezone

from accounts.models import ExchangeCredential, User

PASSWORD = "Sup3r!Secret"
_ALPHABET = string.ascii_letters + string.digits


def upbit_key() -> str:
    """A random key in Upbit's format: 40 letters and digits."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(40))


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"trader{n:04d}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    phone = factory.Sequence(lambda n: f"010-{1000 + n % 9000:04d}-{n % 10000:04d}")
    privacy_consent = True
    privacy_consent_at = factory.LazyFunction(timezone.now)
    preferred_language = "en"

    @factory.post_generation
    def password(obj: User, create: bool, extracted: str | None, **kwargs: object) -> None:  # noqa: N805
        obj.set_password(extracted or PASSWORD)
        if create:
            obj.save(update_fields=["password"])


class ExchangeCredentialFactory(factory.django.DjangoModelFactory):
    """Keys saved through the real service, so they are encrypted exactly as in production."""

    class Meta:
        model = ExchangeCredential

    user = factory.SubFactory(UserFactory)
    access_key = factory.LazyFunction(upbit_key)
    secret_key = factory.LazyFunction(upbit_key)

    @classmethod
    def _create(cls, model_class: type, *args: object, **kwargs: object) -> ExchangeCredential:
        from accounts.services import exchange_credential_save

        return exchange_credential_save(
            user=kwargs["user"], access_key=kwargs["access_key"], secret_key=kwargs["secret_key"]
        )
