"""Settings of a Ray Serve deployment of lorahub, and the Ray Serve config file they make.

No Ray here: `lorahub serve --ray --print-config` writes the file without Ray installed. The same
settings travel to the replicas as the application builder's `args` (plain JSON values), so a
`serve deploy` of the printed file builds exactly what `lorahub serve --ray` runs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from lorahub.errors import InvalidInputError

IMPORT_PATH = "lorahub.server.ray_serve:build_app"
INGRESS = "LorahubIngress"
ENGINE = "LorahubEngine"
APP_NAME = "lorahub"
ADAPTERS_FROM = ("path", "hub", "auto")  # how replicas get adapter files (server.ray_files)


@dataclass(frozen=True)
class RaySettings:
    """What one lorahub application on Ray needs: the base, the registry, replicas and their limits.

    `max_sets` adapter sets stay resident per replica (Ray's `max_num_models_per_replica`), each of
    at most `max_set_adapters` adapters; the replica's engine holds `max_sets * max_set_adapters`
    resident adapters. `max_queue` requests may wait per replica behind the running one.
    `adapters_from` says how replicas get adapter files: `path`, `hub` or `auto` (ray_files)."""

    base: str = "tiny"
    registry_path: str | None = None
    token: str | None = None
    device: str | None = None
    dtype: str | None = None
    replicas: int = 2
    max_replicas: int | None = None
    num_gpus: float = 0.0
    num_cpus: float = 1.0
    max_sets: int = 4
    max_set_adapters: int = 4
    max_queue: int = 4
    cpu_cache_mb: int = 1024
    max_work: int | None = None
    host: str = "127.0.0.1"
    port: int = 8765
    allowed_hosts: tuple[str, ...] = ()
    multiplex: bool = True
    adapters_from: str = "path"
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise InvalidInputError(f"--replicas must be at least 1, got {self.replicas}")
        if self.max_replicas is not None and self.max_replicas < self.replicas:
            raise InvalidInputError(
                f"--max-replicas ({self.max_replicas}) must be at least --replicas ({self.replicas})"
            )
        if self.max_sets < 1 or self.max_set_adapters < 1:
            raise InvalidInputError("adapter sets per replica and adapters per set must be >= 1")
        if self.adapters_from not in ADAPTERS_FROM:
            raise InvalidInputError(
                f"invalid --adapters-from {self.adapters_from!r}: use {', '.join(ADAPTERS_FROM)}"
            )

    @property
    def top_replicas(self) -> int:
        """The most engine replicas there can be (autoscaling's upper bound, else `replicas`)."""
        return self.max_replicas or self.replicas

    @property
    def max_resident(self) -> int:
        """Resident adapters one replica's engine holds: every set Ray keeps there, full."""
        return self.max_sets * self.max_set_adapters

    def to_args(self) -> dict[str, Any]:
        """Plain JSON values (the `args` of the application builder)."""
        out = dataclasses.asdict(self)
        out["allowed_hosts"] = list(self.allowed_hosts)
        return out

    @classmethod
    def from_args(cls, args: dict[str, Any] | None) -> RaySettings:
        """Settings from builder `args`; unknown keys are a clear error, not ignored."""
        args = dict(args or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(args) - known)
        if unknown:
            raise InvalidInputError(
                f"unknown lorahub Ray setting(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})"
            )
        if "allowed_hosts" in args:
            args["allowed_hosts"] = tuple(args["allowed_hosts"] or ())
        return cls(**args)


def engine_options(settings: RaySettings) -> dict[str, Any]:
    """Deployment options of the engine: replicas (or autoscaling bounds), resources, queue."""
    actor: dict[str, Any] = {"num_cpus": settings.num_cpus, "num_gpus": settings.num_gpus}
    if settings.env:
        actor["runtime_env"] = {"env_vars": dict(settings.env)}
    options: dict[str, Any] = {
        "max_ongoing_requests": settings.max_queue + 1,
        "ray_actor_options": actor,
    }
    if settings.max_replicas and settings.max_replicas > settings.replicas:
        options["autoscaling_config"] = {
            "min_replicas": settings.replicas,
            "max_replicas": settings.max_replicas,
            "target_ongoing_requests": 1,
        }
    else:
        options["num_replicas"] = settings.replicas
    return options


def ingress_options(settings: RaySettings) -> dict[str, Any]:
    """The ingress needs no CPU of its own (it waits on the engine replicas)."""
    actor: dict[str, Any] = {"num_cpus": 0}
    if settings.env:
        actor["runtime_env"] = {"env_vars": dict(settings.env)}
    return {"num_replicas": 1, "ray_actor_options": actor}


def serve_config(settings: RaySettings) -> dict[str, Any]:
    """A Ray Serve config (what `serve deploy FILE` takes) for these settings.

    The token is left out: set LORAHUB_TOKEN in the ingress's environment instead of writing a
    secret into a file."""
    args = settings.to_args()
    args["token"] = None
    args.pop("env")
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": settings.host, "port": settings.port},
        "applications": [
            {
                "name": APP_NAME,
                "route_prefix": "/",
                "import_path": IMPORT_PATH,
                "args": args,
                "deployments": [
                    {"name": INGRESS, **ingress_options(settings)},
                    {"name": ENGINE, **engine_options(settings)},
                ],
            }
        ],
    }


def config_yaml(settings: RaySettings) -> str:
    """`serve_config` as YAML text."""
    import yaml

    return yaml.safe_dump(serve_config(settings), sort_keys=False)
