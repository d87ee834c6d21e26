"""Per-backend timeout settings: `"120"` for every backend, `"120,gemini=300"` to differ.

The proxy has three: connect (10 s), first byte (time to response headers, 120 s) and idle
(between stream chunks, 120 s). Each option holds a default and optional `backend=seconds`
overrides; 0 turns that timeout off.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class PerBackend:
    default: float
    overrides: dict[str, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str | float | int, *, option: str = "timeout") -> PerBackend:
        """`"10"` or `"10, gemini=30, openai=5"`; ValueError naming `option` when malformed."""
        if isinstance(text, (int, float)):
            return cls(_seconds(str(text), option))
        default: float | None = None
        overrides: dict[str, float] = {}
        for item in str(text).split(","):
            item = item.strip()
            if not item:
                continue
            name, sep, value = item.partition("=")
            if sep:
                name = name.strip()
                if not name:
                    raise ValueError(f"{option}: '{item}' names no backend")
                overrides[name] = _seconds(value, option)
            elif default is None:
                default = _seconds(item, option)
            else:
                raise ValueError(f"{option}: more than one default in '{text}'")
        if default is None:
            raise ValueError(f"{option}: no default number of seconds in '{text}'")
        return cls(default, overrides)

    def get(self, backend: str | None) -> float | None:
        """Seconds for `backend`, None when that timeout is off."""
        seconds = self.overrides.get(backend, self.default) if backend else self.default
        return seconds if seconds > 0 else None


def _seconds(value: str, option: str) -> float:
    try:
        seconds = float(value.strip())
    except ValueError:
        raise ValueError(f"{option}: '{value.strip()}' is not a number of seconds") from None
    if seconds < 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError(f"{option}: '{value.strip()}' must be 0 (off) or a positive number")
    return seconds
