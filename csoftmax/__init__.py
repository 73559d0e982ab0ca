"""csoftmax: the fastest and the most accurate softmax for NumPy.

A drop-in for ``scipy.special.softmax`` / ``log_softmax`` / ``logsumexp`` on
a runtime-dispatched C/SIMD kernel with OpenMP threads; a pure-NumPy
implementation of the same contract runs where the extension is absent or
when ``CSOFTMAX_BACKEND=python``.
"""

import os as _os
import warnings as _warnings

from csoftmax._version import __version__


def _load_backend():
    if _os.environ.get("CSOFTMAX_BACKEND", "").lower() == "python":
        from csoftmax import _fallback

        return _fallback, "python"
    import importlib.util

    if importlib.util.find_spec("csoftmax._native") is None:
        reason = "csoftmax was installed without its C extension (no compiler at install time?)"
    else:
        try:
            from csoftmax import _native

            return _native, "c"
        except ImportError as error:
            reason = f"csoftmax's C extension failed to import ({error})"
    _warnings.warn(
        f"{reason}; using the slower pure-NumPy backend. Install a binary wheel or "
        "reinstall with a C compiler for speed (CSOFTMAX_BACKEND=python silences this).",
        RuntimeWarning,
        stacklevel=3,
    )
    from csoftmax import _fallback

    return _fallback, "python"


_backend, backend = _load_backend()

softmax = _backend.softmax
log_softmax = _backend.log_softmax
logsumexp = _backend.logsumexp
get_num_threads = _backend.get_num_threads
set_num_threads = _backend.set_num_threads
softmax_backward = _backend.softmax_backward
log_softmax_backward = _backend.log_softmax_backward
cross_entropy = _backend.cross_entropy
segment_softmax = _backend.segment_softmax
segment_log_softmax = _backend.segment_log_softmax
segment_logsumexp = _backend.segment_logsumexp

from csoftmax._config import get_include, show_config  # noqa: E402
from csoftmax._jacobian import softmax_jacobian  # noqa: E402

__all__ = [
    "__version__",
    "cross_entropy",
    "get_include",
    "get_num_threads",
    "log_softmax",
    "log_softmax_backward",
    "logsumexp",
    "segment_log_softmax",
    "segment_logsumexp",
    "segment_softmax",
    "set_num_threads",
    "show_config",
    "softmax",
    "softmax_backward",
    "softmax_jacobian",
]
