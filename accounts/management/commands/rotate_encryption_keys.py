"""Re-encrypt every stored exchange credential under the primary FIELD_ENCRYPTION_KEYS key."""

from __future__ import annotations

from argparse import RawDescriptionHelpFormatter
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.services import encryption_keys_rotate

HELP = """Re-encrypt every stored exchange credential under the current primary encryption key.

FIELD_ENCRYPTION_KEYS is a comma-separated list of Fernet keys: the first one encrypts, every one of them
decrypts. Rotation without downtime:

  1. Generate a key:
       python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"
  2. PREPEND it:      FIELD_ENCRYPTION_KEYS=<new>,<old>   and restart every process (web, workers, beat).
     From now on new saves use <new>; rows under <old> still decrypt, so nothing stops working.
  3. Run this command: python manage.py rotate_encryption_keys
     It walks the credentials in batches, locks each batch's rows, re-encrypts them under <new> and commits.
     It is idempotent (rows already under <new> are skipped) and safe to re-run after an interruption.
  4. When it reports 0 failed, DROP the old key: FIELD_ENCRYPTION_KEYS=<new>, and restart again.

Exit status is 1 when any credential could not be decrypted with the configured keys (those rows are left
untouched and listed by id; their owners must save their keys again)."""


class Command(BaseCommand):
    help = HELP

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        kwargs.setdefault("formatter_class", RawDescriptionHelpFormatter)
        return super().create_parser(prog_name, subcommand, **kwargs)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=200, help="Rows per transaction (default 200).")

    def handle(self, *args: Any, batch_size: int, **options: Any) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size must be positive")
        result = encryption_keys_rotate(batch_size=batch_size)
        self.stdout.write(
            f"credentials: {result.total}, re-encrypted: {result.rotated}, "
            f"already under the primary key: {result.already_current}, failed: {len(result.failed_ids)}"
        )
        if result.failed_ids:
            raise CommandError(
                "cannot decrypt credential ids "
                + ", ".join(str(i) for i in result.failed_ids)
                + " with any configured key; keep the old key or ask these users to save their keys"
            )
