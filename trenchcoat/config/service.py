"""The keys every gRPC service process shares (``ServiceConfig``) and every job worker on
a Redis stream adds (``JobWorkerConfig``): the bases of the service sections.

A service section redefines ``count``, ``port`` and ``metrics_port`` for its own doc and
default; ``count_setting`` and ``port_setting`` keep their bounds the same everywhere.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from trenchcoat.config.checks import Section, require
from trenchcoat.config.setting import setting

#: The largest TCP port.
MAX_PORT = 65535


def count_setting(doc: str, *, default: int, **narrower: Any) -> Any:
    """A service's ``count``: processes `trenchcoat up` starts (0: none)."""
    return setting(doc, default=default, ge=0, **narrower)


def port_setting(doc: str, *, default: int, free_port: bool = False) -> Any:
    """A port the first process of a service listens on (process i adds i). ``free_port``:
    0 is allowed too, for any free port (the one taken is registered)."""
    return setting(doc, default=default, ge=0 if free_port else 1, le=MAX_PORT)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceConfig(Section):
    """Settings every gRPC service process shares."""

    count: int = count_setting("Processes of this service `trenchcoat up` starts.", default=1)
    port: int = port_setting("gRPC port. `trenchcoat up` gives process i (from 0) port + i.", default=7000)
    metrics_port: int = port_setting(
        "Prometheus /metrics port. `trenchcoat up` gives process i metrics_port + i.",
        default=9000,
    )
    grace_period_s: float = setting(
        "On SIGTERM, seconds in-flight RPCs get to finish before they are cancelled.",
        default=10.0, ge=0,
    )
    drain_notice_s: float = setting(
        "On SIGTERM, seconds health reports NOT_SERVING before the listener closes, so "
        "load balancers stop sending new work first.",
        default=0.5, ge=0,
    )

    def port_keys(self) -> tuple[str, ...]:
        """The keys naming ports this service listens on (process i adds i to each)."""
        return tuple(f.name for f in dataclasses.fields(self) if f.name == "port" or f.name.endswith("_port"))

    def validate(self, section: str) -> None:
        for key in self.port_keys():
            value = getattr(self, key)
            if value == 0:
                continue  # any free port: nothing to add i to
            require(
                value + max(self.count, 1) - 1 <= MAX_PORT,
                f"{section}.{key}",
                f"{value} + count {self.count} runs past port {MAX_PORT}",
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class JobWorkerConfig(ServiceConfig):
    """Settings of every job worker on a Redis stream (trenchcoat.jobqueue.JobRunner)."""

    concurrency: int = setting("Jobs one worker runs at once.", default=4, ge=1, le=64)
    max_attempts: int = setting("Attempts of a job before it goes to the dead-letter stream with its reason.",
                                default=5, ge=1, le=100)
    claim_idle_s: float = setting(
        "A job claimed by a worker that has not touched it for this long (the worker died) is "
        "taken over by another. Running jobs refresh their claim every third of it.",
        default=30.0, ge=1,
    )
