"""URL path converters. ``<id:name>`` is ``<int:name>`` bounded to the database's id range: a number too big
for a BIGINT is "no such page" (404), never an ``OverflowError`` (500) in the lookup."""

from __future__ import annotations

from django.urls import register_converter

# Largest primary key any supported database stores (signed 64-bit: BigAutoField on SQLite and MariaDB).
MAX_ID = 2**63 - 1


class IdConverter:
    regex = "[0-9]{1,19}"

    def to_python(self, value: str) -> int:
        number = int(value)
        if number > MAX_ID:
            raise ValueError("id out of range")  # Django's resolver: this pattern does not match -> 404
        return number

    def to_url(self, value: int) -> str:
        return str(int(value))


def register() -> None:
    register_converter(IdConverter, "id")
