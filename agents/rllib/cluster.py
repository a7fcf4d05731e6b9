"""Start Ray on this machine's loopback, or join the cluster at ``RAY_ADDRESS``.

``init_ray()`` is what every RLlib agent, sweep and benchmark of the project
calls: with ``RAY_ADDRESS`` set (``auto``, or ``HOST:PORT`` of a head started
with ``ray start --head``) it connects there; else it starts a one-machine
Ray bound to 127.0.0.1, with the dashboard and usage reporting off.
"""

from __future__ import annotations

import os

__all__ = ["init_ray"]


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Start or join Ray once per process (a no-op when it runs already)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    else:
        ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, num_cpus=num_cpus, log_to_driver=False,
                 configure_logging=False)
