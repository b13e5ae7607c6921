"""Configuration: one TOML file, every key optional, command-line flags on top.

Defaults are documented in docs/configuration.md; keep the two in step.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tailord.daemon.errors import ConfigError
from tailord.daemon.paths import default_data_dir, default_socket
from tailord.trainer.errors import ModelError
from tailord.trainer.gate import GateParams
from tailord.trainer.spec import ModelSpec, UpdateParams

T = TypeVar("T")


@dataclass(frozen=True)
class IngestConfig:
    rescan_seconds: float = 30.0  # a periodic scan catches events inotify dropped
    settle_seconds: float = 1.0  # a scanned file must be this long unchanged before ingest
    max_file_bytes: int = 64 * 1024 * 1024
    batch_files: int = 512  # files committed in one transaction, at most
    batch_seconds: float = 0.2  # how long a batch waits for more files
    batch_lines: int = 5000  # .jsonl lines committed in one transaction, at most
    max_line_bytes: int = 4 * 1024 * 1024  # one .jsonl line, at most
    max_jsonl_bytes: int = 4 * 1024 * 1024 * 1024  # one .jsonl file (read a line at a time)
    max_text_chars: int = 100_000  # one text sample, at most
    max_image_pixels: int = 40_000_000  # width times height of one image, at most
    max_queued_samples: int = 1_000_000  # back-pressure: above this, files wait in the inbox
    max_queued_bytes: int = 4 * 1024 * 1024 * 1024  # same, for the queued payload bytes
    retry_seconds: float = 5.0  # pause before retrying a commit that failed (disk full, I/O)
    burst_events: int = 4096  # after this many events, rescan once they stop (inotify overflow)


@dataclass(frozen=True)
class PolicyConfig:
    min_queued: int = 1  # queued samples needed before an update may start
    quiet_seconds: float = 10.0  # no new sample for this long before an update starts
    check_seconds: float = 60.0  # how often the scheduler re-checks the policy anyway
    retry_seconds: float = 60.0  # wait after a failed update; doubles with each failure
    max_retry_seconds: float = 3600.0  # the longest wait between failed updates


@dataclass(frozen=True)
class WorkerConfig:
    threads: int = 1  # torch threads in the update worker: small heads run best on one
    nice: int = 10  # added CPU niceness of the update worker
    prewarm: bool = False  # keep an idle worker (torch loaded, ~300 MB) so updates start at once


@dataclass(frozen=True)
class ApiConfig:
    allowed_users: tuple[str, ...] = ()  # user names or uids, besides the daemon's own and root
    allowed_groups: tuple[str, ...] = ()  # group names or gids
    max_body_bytes: int = 16 * 1024 * 1024
    # A keep-alive connection that sends nothing this long, while nothing is being answered
    # on it, is closed (the client reconnects): idle clients cannot pile up descriptors.
    idle_timeout: float = 60.0

    def __post_init__(self) -> None:
        if not self.idle_timeout > 0:
            raise ConfigError(
                f"[api] idle_timeout is {self.idle_timeout}; give a positive number of seconds"
            )


@dataclass(frozen=True)
class VersionsConfig:
    keep: int = 5  # newest versions kept; pinned ones, current and its parent are kept too
    base: str = ""  # a pretrained .safetensors file to use as version 0 on the first start

    def __post_init__(self) -> None:
        if self.keep < 1:
            raise ConfigError(f"[versions] keep is {self.keep}; keep at least 1 version")
        if not isinstance(self.base, str):
            raise ConfigError(f"[versions] base must be a file path, got {self.base!r}")

    @property
    def base_file(self) -> Path | None:
        return Path(self.base).expanduser().absolute() if self.base else None


@dataclass(frozen=True)
class Config:
    data_dir: Path
    inbox: Path
    socket: Path
    model: ModelSpec = field(default_factory=ModelSpec)
    update: UpdateParams = field(default_factory=UpdateParams)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    gate: GateParams = field(default_factory=GateParams)
    versions: VersionsConfig = field(default_factory=VersionsConfig)

    @property
    def database(self) -> Path:
        return self.data_dir / "tailord.db"


def _section(cls: type[T], table: Mapping[str, Any], name: str) -> T:
    known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown key {unknown[0]!r} in [{name}]; known keys: {', '.join(sorted(known))}"
        )
    values: dict[str, Any] = {}
    for key, raw in table.items():
        default = getattr(cls(), key)
        value = raw
        if isinstance(default, tuple):
            if not isinstance(value, list):
                raise ConfigError(f"[{name}] {key} must be a list, got {value!r}")
            value = tuple(str(v) for v in value)
        elif isinstance(default, bool) != isinstance(value, bool) or (
            isinstance(default, int | float) and not isinstance(value, int | float)
        ):
            raise ConfigError(f"[{name}] {key} must be a {type(default).__name__}, got {value!r}")
        elif isinstance(default, int) and not isinstance(default, bool):
            if isinstance(value, float) and not value.is_integer():
                raise ConfigError(f"[{name}] {key} must be a whole number, got {value!r}")
            value = int(value)
        elif isinstance(default, float):
            value = float(value)
        values[key] = value
    return cls(**values)


def load_config(path: Path | None = None, **overrides: Any) -> Config:
    """Read the TOML file at ``path`` (if any) and apply ``overrides`` (None means unset).

    Recognised overrides: data_dir, inbox, socket, quiet_seconds, head, allowed_users,
    allowed_groups (lists extend the file's).
    """
    table: dict[str, Any] = {}
    if path is not None:
        try:
            table = tomllib.loads(path.read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {path} does not exist; check --config") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    top_keys = {"data_dir", "inbox", "socket"}
    sections = {"model", "update", "policy", "ingest", "worker", "api", "gate", "versions"}
    unknown = sorted(set(table) - top_keys - sections)
    if unknown:
        raise ConfigError(
            f"unknown section or key {unknown[0]!r} in {path}; "
            f"known: {', '.join(sorted(top_keys | sections))}"
        )
    model_table = dict(table.get("model", {}))
    if overrides.get("head") is not None:
        model_table["head"] = overrides["head"]
    policy_table = dict(table.get("policy", {}))
    if overrides.get("quiet_seconds") is not None:
        policy_table["quiet_seconds"] = overrides["quiet_seconds"]
    api_table = dict(table.get("api", {}))
    for key in ("allowed_users", "allowed_groups"):
        if overrides.get(key):
            api_table[key] = [*api_table.get(key, []), *overrides[key]]
    try:
        model = ModelSpec.from_dict(model_table)
        update = UpdateParams.from_dict(dict(table.get("update", {})))
        gate = GateParams.from_dict(dict(table.get("gate", {})))
    except ModelError as exc:
        raise ConfigError(str(exc)) from exc

    data_dir = Path(overrides.get("data_dir") or table.get("data_dir") or default_data_dir())
    inbox = Path(overrides.get("inbox") or table.get("inbox") or data_dir / "inbox")
    sock = Path(overrides.get("socket") or table.get("socket") or default_socket())
    return Config(
        data_dir=data_dir.expanduser().absolute(),
        inbox=inbox.expanduser().absolute(),
        socket=sock.expanduser().absolute(),
        model=model,
        update=update,
        policy=_section(PolicyConfig, policy_table, "policy"),
        ingest=_section(IngestConfig, table.get("ingest", {}), "ingest"),
        worker=_section(WorkerConfig, table.get("worker", {}), "worker"),
        api=_section(ApiConfig, api_table, "api"),
        gate=gate,
        versions=_section(VersionsConfig, table.get("versions", {}), "versions"),
    )
