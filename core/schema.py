"""OpenAPI schema post-processing: every operation documents the error answers any API view can give (the
``{"error": {...}}`` body of core.api.exception_handler), so a client and schemathesis know a 400/401/403/404/
429 is part of the contract, not a surprise."""

from __future__ import annotations

from typing import Any

ERROR_COMPONENT = "ApiError"
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Every error answer: a machine code, a sentence in the user's language, per-field errors.",
    "properties": {
        "mode": {"type": "string", "description": "trading endpoints: the account's trading mode"},
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "fields": {},
            },
            "required": ["code", "message"],
        },
    },
    "required": ["error"],
}
DESCRIPTIONS = {
    "400": "Invalid input (see error.fields)",
    "401": "No valid credential (session or token); the WWW-Authenticate header names the scheme",
    "403": "Authenticated but not allowed, or CSRF check failed",
    "404": "Not found (or not yours)",
    "405": "Method not allowed",
    "406": "Not acceptable: ask for application/json",
    "415": "Unsupported media type: send application/json",
    "429": "Rate limited; retry after the Retry-After header",
}


def _error_response(description: str) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{ERROR_COMPONENT}"}
    return {"description": description, "content": {"application/json": {"schema": ref}}}


def add_error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular POSTPROCESSING_HOOKS entry: add the common error answers where an operation does not
    document its own."""
    result.setdefault("components", {}).setdefault("schemas", {})[ERROR_COMPONENT] = ERROR_SCHEMA
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            codes = ["400", "401", "403", "404", "405", "406", "429"]
            if "requestBody" in operation:
                codes.append("415")
            responses = operation["responses"]
            for code in codes:
                if code not in responses:
                    responses[code] = _error_response(DESCRIPTIONS[code])
                elif "content" not in responses[code]:
                    responses[code]["content"] = _error_response("")["content"]
    return result
