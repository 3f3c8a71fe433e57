"""Validation errors in the operator's words.

pydantic's own messages ("Input should be a valid tuple") name its types; an operator
wrote YAML or an environment variable. Each error type is said again in those terms,
and any message not yet reworded still loses its "Input should be" phrasing.
"""

from __future__ import annotations

from typing import Any

from pydantic_core import ErrorDetails

#: Discriminator values that pydantic puts into an error's location (`credential.pool`).
_UNION_TAGS = frozenset({"none", "pool", "fixed"})


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _expected(error: ErrorDetails) -> str:
    expected = str(error.get("ctx", {}).get("expected", ""))
    return expected.replace("'", "")


_SIMPLE = {
    "tuple_type": "must be a list, e.g. [a, b]",
    "list_type": "must be a list, e.g. [a, b]",
    "set_type": "must be a list, e.g. [a, b]",
    "dict_type": "must be a mapping of names to values, e.g. {name: value}",
    "model_type": "must be a mapping of fields, e.g. {field: value}",
    "model_attributes_type": "must be a mapping of fields, e.g. {field: value}",
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "decimal_parsing": "must be a number",
    "decimal_type": "must be a number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be text (quote it if YAML reads it as something else)",
    "byte_size": "must be a size such as 10MiB, 512KB or a number of bytes",
    "byte_size_unit": "must be a size such as 10MiB, 512KB or a number of bytes",
    "path_type": "must be a file path",
    "ip_any_network": "must be an IP address or network, such as 10.0.0.0/8",
    "ip_v4_network": "must be an IPv4 network, such as 10.0.0.0/8",
    "ip_v6_network": "must be an IPv6 network",
    "url_parsing": "must be a URL",
    "url_scheme": "must be a URL with an allowed scheme",
}


def friendly(error: ErrorDetails) -> str:
    """The message of one validation error, for the operator who wrote the value."""
    kind = error["type"]
    ctx = error.get("ctx", {})
    if kind in ("value_error", "assertion_error"):
        return str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind == "extra_forbidden":
        return "unknown field (check the spelling)"
    if kind == "missing":
        return "required field is missing"
    if kind == "literal_error" or kind == "enum":
        return f"{_shown(error.get('input'))} is not one of: {_expected(error)}"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tags = str(ctx.get("expected_tags", "")).replace("'", "")
        return f"kind must be one of: {tags}"
    if kind in _SIMPLE:
        return _SIMPLE[kind]
    bounds = {
        "greater_than": "must be greater than {gt}",
        "greater_than_equal": "must be at least {ge}",
        "less_than": "must be less than {lt}",
        "less_than_equal": "must be at most {le}",
        "string_too_short": "must be at least {min_length} characters long",
        "string_too_long": "must be at most {max_length} characters long",
        "too_short": "must have at least {min_length} item(s)",
        "too_long": "must have at most {max_length} item(s)",
        "string_pattern_mismatch": "{input} is not allowed here (expected the form {pattern})",
    }
    if kind in bounds:
        return bounds[kind].format(**{**ctx, "input": _shown(error.get("input"))})
    message = str(error["msg"])
    for phrase, plain in (("Input should be", "must be"), ("Input should", "must")):
        if message.startswith(phrase):
            return plain + message[len(phrase) :]
    return message


def location(loc: tuple[int | str, ...]) -> str:
    """`('routes', 0, 'upstream')` → `routes[0].upstream`, without pydantic's own
    markers (a union's tag, `[key]`)."""
    text = ""
    previous: int | str | None = None
    for part in loc:
        if part == "[key]" or (previous == "credential" and part in _UNION_TAGS):
            previous = part
            continue
        previous = part
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text
