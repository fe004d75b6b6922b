"""Form fields that read numbers by the API's rule (core/numbers.py): ASCII digits only, so an admin form
takes exactly what the API takes ('５０００', '٥٠٠٠', '+5000', '5e3' are refused, not read as 5000)."""

from __future__ import annotations

from typing import Any

from django import forms

from core.numbers import DECIMAL_MESSAGES, decimal_text_refusal


class StrictDecimalFormField(forms.DecimalField):
    """``signed=False`` (amounts, limits) refuses a '-' too, as the API's amount fields do."""

    default_error_messages = DECIMAL_MESSAGES

    def __init__(self, *, signed: bool = True, **kwargs: Any) -> None:
        self.signed = signed
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> Any:
        text = value.strip() if isinstance(value, str) else None
        refusal = decimal_text_refusal(text, signed=self.signed) if text else None
        if refusal is not None:
            raise forms.ValidationError(self.error_messages[refusal], code=refusal)
        return super().to_python(value)
