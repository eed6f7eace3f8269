"""Ray, the optional backend for training actors and analysis jobs (``pip install '.[ray]'``)."""

from __future__ import annotations

import os

from interp.errors import UserError

INSTALL_HINT = "--backend ray needs Ray, which is not installed: pip install '.[ray]' (or .venv/bin/pip install ray)"
BACKENDS = ("local", "ray")


def import_ray():
    """The ``ray`` module, or a :class:`UserError` that says how to install it."""
    try:
        import ray
    except ImportError:
        raise UserError(INSTALL_HINT) from None
    return ray


def connect(address: str = "", num_cpus: int | None = None) -> bool:
    """Join the Ray cluster at ``address`` (or ``$RAY_ADDRESS``), else start one on this machine with ``num_cpus``
    (default: every core). Returns whether this call started Ray, and so should :func:`disconnect` it."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS", "")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private local cluster needs no token file
    try:
        if address:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False)
    except ConnectionError as error:
        raise UserError(f"cannot reach the Ray cluster at {address!r}: {error}") from None
    return True


def disconnect(started: bool) -> None:
    """Shut Ray down if :func:`connect` started it (a local cluster's processes end with it)."""
    if started:
        import_ray().shutdown()
