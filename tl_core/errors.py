"""The exceptions of `tl_core`, in one place.

Every error a user can cause is a `TLError`. Its message says three things, in this
order: what happened, why, and what to do about it. Errors raised by libraries
(zipfile, Pillow, TensorFlow) are translated into these at one boundary, with the
original chained as ``__cause__``.

```
TLError                 base: anything the user can fix
├── DataError           archive, image or label problems
├── ConfigError         invalid settings (RunConfig, CLI flags)
├── WeightsUnavailable  pretrained weights cannot be found or loaded
├── JobError            queue, worker or resume problems
├── ExportError         exporting a trained model failed
└── AccessDenied        class mode: a sign-in failed, or the acting person may not do this
```

The CLI maps `TLError` to exit code 2 and anything else to exit code 1; pages show
`TLError` with `st.error` and keep the user's state.
"""

from __future__ import annotations

__all__ = [
    "AccessDenied",
    "ConfigError",
    "DataError",
    "ExportError",
    "JobError",
    "TLError",
    "WeightsUnavailable",
]


class TLError(Exception):
    """Base class of errors a user can act on: the message says what, why and what to do."""


class DataError(TLError):
    """An archive, an image or the labels cannot be used."""


class ConfigError(TLError):
    """A setting is invalid."""


class WeightsUnavailable(TLError):
    """Pretrained weights are not cached and cannot be downloaded (or do not fit)."""


class JobError(TLError):
    """A training job cannot be queued, run, stopped or resumed."""


class ExportError(TLError):
    """A trained model cannot be exported."""


class AccessDenied(TLError):
    """Class mode: a sign-in was refused, or the acting person may not do this (someone
    else's run, the teacher's controls, a quota)."""
