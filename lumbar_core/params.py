"""Base for stage parameters: frozen dataclasses that round-trip through plain dicts and strings."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, TypeVar

from lumbar_core.errors import UserError

P = TypeVar("P", bound="Params")


class ParamsError(UserError):
    """Unknown parameter names or values of the wrong type; the message lists the valid names."""


@dataclasses.dataclass(frozen=True)
class Params:
    """Common behaviour of every stage's Params."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls: type[P], data: dict[str, Any]) -> P:
        """Build from a dict; string values (from a CLI or a KFP parameter) are converted to the field's type."""
        hints = typing.get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ParamsError(f"{cls.__name__}: unknown parameter(s) {', '.join(unknown)}; valid: {', '.join(names)}")
        values = {}
        for key, value in data.items():
            try:
                values[key] = _coerce(value, hints[key])
            except (TypeError, ValueError) as exc:
                raise ParamsError(f"{cls.__name__}.{key}: cannot use {value!r} ({exc})") from None
        return cls(**values)


def _coerce(value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or (origin is not None and type(None) in args):
        if value is None or value == "":
            return None
        hint = next(a for a in args if a is not type(None))
        origin = typing.get_origin(hint)
        args = typing.get_args(hint)
    if origin is tuple:
        items = value.split(",") if isinstance(value, str) else list(value)
        return tuple(_coerce(v, args[0]) for v in items if v != "")
    if hint is bool and isinstance(value, str):
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError("expected true or false")
    if hint in (int, float, str, bool):
        return hint(value)
    return value
