"""Errors raised by the export backends. Every message is one line and names the backend and recipe, so a
command line can print it as it is; the cause (a converter's traceback) stays attached as ``__cause__``."""
from __future__ import annotations

from contextlib import contextmanager


class ExportError(Exception):
    """Base class: something about an export request or its conversion went wrong."""


class UnknownBackend(ExportError):
    def __init__(self, name: str, known: list[str]):
        super().__init__(f"unknown export backend '{name}' (backends: {', '.join(known)})")
        self.name = name


class UnknownRecipe(ExportError):
    def __init__(self, backend: str, recipe: str, known: list[str], message: str | None = None):
        super().__init__(message or f"{backend} has no recipe '{recipe}' ({backend} recipes: {', '.join(known)})")
        self.backend, self.recipe = backend, recipe


class MissingCalibration(ExportError):
    def __init__(self, backend: str, recipe: str):
        super().__init__(f"{backend} {recipe}: this recipe is calibrated and needs calibration chunks; none were given")
        self.backend, self.recipe = backend, recipe


class ConversionFailed(ExportError):
    """A converter raised, or produced something we refuse to ship (e.g. nothing delegated)."""

    def __init__(self, backend: str, recipe: str, reason: str):
        super().__init__(f"{backend} {recipe}: conversion failed: {reason}")
        self.backend, self.recipe, self.reason = backend, recipe, reason

    @classmethod
    def wrap(cls, backend: str, recipe: str, exc: BaseException) -> "ConversionFailed":
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        first = lines[0] if lines else ""
        if len(first) > 300:
            first = first[:297] + "..."
        return cls(backend, recipe, f"{type(exc).__name__}: {first}" if first else type(exc).__name__)


class NotRunHere(ExportError):
    """The artifact needs a runtime or hardware this machine lacks; nothing ran. ``status`` is what a check
    reports instead of a result (``needs-macos``, ``needs-device``), never a pass."""
    status = "not-run"


class NeedsMacOS(NotRunHere):
    """Core ML models execute only through Apple's Core ML framework; on other systems nothing ran."""
    status = "needs-macos"

    def __init__(self, what: str, detail: str = "runs only on macOS (Core ML framework)"):
        super().__init__(f"needs-macos: {what} {detail}; nothing was executed here")


class NeedsDevice(NotRunHere):
    """An ahead-of-time NPU artifact executes only on a phone with that NPU and its vendor's dispatch library."""
    status = "needs-device"

    def __init__(self, what: str, device: str):
        super().__init__(f"needs-device: {what} runs only on {device}; nothing was executed here")


class MissingNpuSdk(ExportError):
    """An ahead-of-time NPU compile needs the vendor's SDK on this machine; the message says how to get it."""

    def __init__(self, backend: str, recipe: str, how: str):
        super().__init__(f"{backend} {recipe}: {how}")
        self.backend, self.recipe = backend, recipe


@contextmanager
def converting(backend: str, recipe: str):
    """Around a converter call: whatever it raises becomes one :class:`ConversionFailed` line naming backend
    and recipe, with the converter's exception kept as ``__cause__`` for the log."""
    try:
        yield
    except (ConversionFailed, MissingNpuSdk):
        raise
    except ExportError as exc:
        raise ConversionFailed(backend, recipe, str(exc)) from exc
    except Exception as exc:  # converters raise anything; keep the cause for the log
        raise ConversionFailed.wrap(backend, recipe, exc) from exc
