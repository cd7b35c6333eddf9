"""The Ray session a search runs in: a cluster it joins, or a local Ray on 127.0.0.1.

A search joins a Ray cluster when given one (``--ray-address``, or ``RAY_ADDRESS`` as Ray
users expect) and otherwise starts a Ray of its own on this machine. That local Ray listens
on the loopback address only, so a search on a shared machine opens no port to the network;
Ray binds there only with its cluster mode switched off, which :func:`_loopback_only` does.
:class:`local_ray` owns the session for the length of a search and says in one line where it
runs and with how many CPUs. :func:`probe_ray_address` refuses a cluster address nothing
listens on before any training starts, so a mistyped address costs seconds, not a supernet.

Ray Tune's own TensorBoard logger is kept out of the run (:func:`without_ray_tensorboard`),
so ``tensorboard --logdir runs/`` shows nasfuse's event files alone.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

__all__ = [
    "RAY_CLUSTERS_ENV",
    "local_ray",
    "ray_address",
    "probe_ray_address",
    "describe_ray_session",
    "without_ray_tensorboard",
]


@contextlib.contextmanager
def _environ(key: str, value: str) -> Iterator[None]:
    """Set an environment variable for the duration of a block, then restore it."""
    before = os.environ.get(key)
    os.environ[key] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


# Ray's switch for clusters, named in Ray's own messages ("Restart the Ray cluster with the
# environment variable RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1"). Spelt here: the name's only
# definition in Ray is in its private constants module.
RAY_CLUSTERS_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@contextlib.contextmanager
def _loopback_only() -> Iterator[None]:
    """Make a local Ray listen on 127.0.0.1 only.

    On Linux Ray takes the machine's address as the node's and its servers listen on every
    interface (even with ``_node_ip_address="127.0.0.1"``, which it resolves back to that
    address). With clusters switched off (the setting Ray uses on macOS and Windows) the
    node is 127.0.0.1 and every server binds there. The environment variable reaches Ray's
    processes; this process read it when it imported Ray, so its copy is switched too.

    That copy is the one private part of Ray nasfuse touches: Ray 2.60 has
    no public way to give a local node a loopback address, and the variable alone comes too
    late for this process. A Ray without that copy gets the variable only, and a note.
    """
    try:
        from ray._private import ray_constants
    except ImportError:
        ray_constants = None
    before = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    if before is None:
        print(
            f"ray: this Ray has no cluster switch to turn off: {RAY_CLUSTERS_ENV}=0 reaches its "
            "processes only, and the local Ray may listen beyond 127.0.0.1",
            flush=True,
        )
    else:
        ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        with _environ(RAY_CLUSTERS_ENV, "0"):
            yield
    finally:
        if before is not None:
            ray_constants.ENABLE_RAY_CLUSTER = before


class local_ray:  # noqa: N801 - used as a context manager, reads like one
    """Own the Ray session: join ``address`` (or ``RAY_ADDRESS``, as Ray users expect) or
    start a local Ray on 127.0.0.1 with ``num_cpus``, unless Ray is already up; one line says
    which. On exit it disconnects from a cluster it joined, or stops the local Ray it
    started; a session it did not open is left alone.

    Enter it before anything touches the object store: ``ray.put`` outside it would start
    a default local Ray and the address and CPU count given here would be ignored.
    """

    def __init__(self, address: str | None = None, num_cpus: int | None = None) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self.started = False

    def __enter__(self) -> local_ray:
        import ray

        if not ray.is_initialized():
            kwargs: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": False,
                "configure_logging": True,
                "logging_level": "ERROR",
            }
            address = ray_address(self.address)
            if address:
                if self.num_cpus:
                    print(
                        f"ray: --num-cpus {self.num_cpus} is for a local Ray; the cluster at "
                        f"{address} has its own CPUs",
                        flush=True,
                    )
                try:
                    ray.init(address=address, **kwargs)
                except ConnectionError as exc:
                    # Not a disk problem (the CLI's OSError answer): say what to check.
                    raise RuntimeError(
                        f"cannot join the Ray cluster at {address} ({exc}); check that its head "
                        "runs (ray start --head) and the address; a cluster with token "
                        "authentication (Ray's default) needs RAY_AUTH_MODE=token here, with "
                        "its token in ~/.ray/auth_token or RAY_AUTH_TOKEN"
                    ) from exc
            else:
                with _loopback_only():
                    ray.init(num_cpus=self.num_cpus or os.cpu_count() or 1, **kwargs)
            self.started = True
            print(f"ray: {describe_ray_session(joined=bool(address))}", flush=True)
        return self

    def __exit__(self, *exc: object) -> None:
        import ray

        if self.started:
            ray.shutdown()


def ray_address(address: str | None) -> str | None:
    """The cluster a search joins: ``address``, else ``$RAY_ADDRESS``, else None (local)."""
    return address or os.environ.get("RAY_ADDRESS") or None


def probe_ray_address(address: str | None, timeout: float = 10.0) -> None:
    """Refuse early (before any training) a ``HOST:PORT`` cluster address nothing listens on.

    Other forms (``auto``, ``ray://...``) are left to ``ray.init``.
    """
    address = ray_address(address)
    if not address or "://" in address or address.count(":") != 1:
        return
    import socket

    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"--ray-address {address}: expected HOST:PORT of the cluster's head")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise RuntimeError(
            f"cannot join the Ray cluster at {address} ({exc.strerror or exc}); check that its "
            "head runs (ray start --head --port PORT) and the address, or leave --ray-address "
            "and RAY_ADDRESS unset for a local Ray"
        ) from exc


def describe_ray_session(joined: bool) -> str:
    """One line on the Ray session this process is connected to: where, how many CPUs."""
    import ray

    nodes = [node for node in ray.nodes() if node.get("Alive")]
    cpus = ray.cluster_resources().get("CPU", 0)
    where = ray.get_runtime_context().gcs_address
    kind = "joined the cluster at" if joined else "started a local Ray at"
    return f"{kind} {where} ({cpus:g} CPUs on {len(nodes)} node(s))"


def without_ray_tensorboard() -> contextlib.AbstractContextManager[None]:
    """Keep Ray Tune's TensorBoard logger out of the run.

    Ray adds its TBX logger unless this variable is set; its event files (one single-point
    series per trial, hparams written when a trial ends) would sit beside nasfuse's own under
    ``tensorboard --logdir runs/``. The CSV and JSON loggers are passed explicitly instead.
    """
    return _environ("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
