"""Configuration: one TOML file, every key optional, command-line flags on top.

Defaults are documented in docs/configuration.md; keep the two in step.
"""

from __future__ import annotations

import tomllib
from datetime import tzinfo
from pathlib import Path
from typing import Annotated, Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from apscheduler.triggers.cron import CronTrigger
from tzlocal import get_localzone

from tailord.daemon.conditions.schedule import EXAMPLE as SCHEDULE_EXAMPLE
from tailord.daemon.conditions.schedule import parse_schedule
from tailord.daemon.conditions.window import EXAMPLE as WINDOW_EXAMPLE
from tailord.daemon.conditions.window import Window, parse_window
from tailord.daemon.errors import ConfigError
from tailord.daemon.paths import default_data_dir, default_socket
from tailord.trainer.errors import ModelError
from tailord.trainer.spec import GateParams, ModelSpec, UpdateParams
from tailord.trainer.structs import convert

# The bounds each key takes; a value outside makes a ConfigError that names the key.
# Durations stop at a year: far beyond any use, and far below what the timers take (a
# check_seconds of 1e300 used to end start-up in an OverflowError traceback).
YEAR = 365 * 24 * 3600.0
Seconds = Annotated[float, msgspec.Meta(ge=0.0, le=YEAR)]
Interval = Annotated[float, msgspec.Meta(gt=0.0, le=YEAR)]  # a period the daemon waits on
Positive = Annotated[int, msgspec.Meta(ge=1)]
Count = Annotated[int, msgspec.Meta(ge=0)]
Name = Annotated[str, msgspec.Meta(min_length=1)]
Percent = Annotated[float, msgspec.Meta(ge=0.0, le=100.0)]


class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A config section: frozen, and an unknown key is an error that names it."""


class IngestConfig(_Section, frozen=True):
    rescan_seconds: Interval = 30.0  # a periodic scan catches events inotify dropped
    settle_seconds: Seconds = 1.0  # a scanned (or only created) file: this long unchanged first
    max_file_bytes: Positive = 64 * 1024 * 1024
    batch_files: Positive = 512  # files committed in one transaction, at most
    batch_seconds: Seconds = 0.2  # how long a batch waits for more files
    batch_lines: Positive = 5000  # .jsonl lines committed in one transaction, at most
    max_line_bytes: Positive = 4 * 1024 * 1024  # one .jsonl line, at most
    max_jsonl_bytes: Positive = 4 * 1024 * 1024 * 1024  # one .jsonl file (read a line at a time)
    max_text_chars: Positive = 100_000  # one text sample, at most
    max_image_pixels: Positive = 40_000_000  # width times height of one image, at most
    max_queued_samples: Positive = 1_000_000  # back-pressure: above this, files wait in the inbox
    max_queued_bytes: Positive = 4 * 1024 * 1024 * 1024  # same, for the queued payload bytes
    max_labels: Positive = 1000  # distinct labels (classify); a sample of one more is refused
    retry_seconds: Interval = 5.0  # pause before retrying a commit that failed (disk full, I/O)
    burst_events: Positive = (
        4096  # after this many events, rescan once they stop (inotify overflow)
    )


class PolicyConfig(_Section, frozen=True):
    min_queued: Positive = 1  # queued samples needed before an update may start
    quiet_seconds: Seconds = 10.0  # no new sample for this long before an update starts
    check_seconds: Interval = 60.0  # how often the scheduler re-checks the policy anyway
    retry_seconds: Seconds = 60.0  # wait after a failed update; doubles with each failure
    max_retry_seconds: Seconds = 3600.0  # the longest wait between failed updates
    # The machine's conditions (docs/policy.md); all AND-ed for automatic updates.
    idle: bool = False  # wait until the machine is not busy with other work
    max_cpu_pressure: Percent = 20.0  # busy above this CPU pressure (PSI "some"), percent
    max_load: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.5  # or CPU use per core
    idle_seconds: Interval = 10.0  # busy only when sustained this long
    require_power: bool = False  # wait while on battery
    min_battery: Percent = 0.0  # on battery, wait below this charge (percent)
    windows: tuple[str, ...] = ()  # local-time windows, "01:00-06:00"; empty: any time
    timezone: str = ""  # of windows and schedule; empty: the system's local time
    schedule: str = ""  # cron expression: an update is due then, quiet period or not
    max_wait_seconds: Seconds = 21600.0  # queued this long: due even if never idle; 0: off
    expire: bool = True  # stop an automatic update when a condition ceases to hold
    stall_seconds: Seconds = 900.0  # a worker silent this long is killed; 0: never
    sample_seconds: Annotated[float, msgspec.Meta(ge=0.1, le=10.0)] = 1.0  # re-check period
    # Where /proc and /sys are read: a container may see the host's under another folder.
    system_root: Name = "/"

    examples: ClassVar[dict[str, str]] = {
        "windows": WINDOW_EXAMPLE,
        "timezone": '"Europe/Paris"',
        "schedule": SCHEDULE_EXAMPLE,
    }

    def __post_init__(self) -> None:
        if self.max_retry_seconds < self.retry_seconds:
            raise ConfigError(
                f"[policy] max_retry_seconds = {self.max_retry_seconds} is below retry_seconds "
                f"= {self.retry_seconds}; the wait doubles up to max_retry_seconds, so give it "
                "at least retry_seconds"
            )
        self.parsed()  # each raises a ConfigError naming the key

    def zone(self) -> tzinfo:
        if not self.timezone:
            return get_localzone()  # a ZoneInfo (DST-aware), as APScheduler itself uses
        try:
            return ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(
                f"[policy] timezone = {self.timezone!r} is not a known time zone; "
                'write an IANA name such as "Europe/Paris", or leave it empty for local time'
            ) from exc

    def parsed(self) -> tuple[tzinfo, tuple[Window, ...], CronTrigger | None]:
        """The zone, windows and schedule as objects; a bad one is a ConfigError."""
        zone = self.zone()
        windows = []
        for text in self.windows:
            try:
                windows.append(parse_window(text))
            except ValueError as exc:
                raise ConfigError(
                    f"[policy] windows: {exc}; write for example windows = {WINDOW_EXAMPLE}"
                ) from exc
        trigger = None
        if self.schedule:
            try:
                trigger = parse_schedule(self.schedule, zone)
            except ValueError as exc:
                raise ConfigError(
                    f"[policy] {exc}; write for example schedule = {SCHEDULE_EXAMPLE}"
                ) from exc
        return zone, tuple(windows), trigger


class WorkerConfig(_Section, frozen=True):
    threads: Positive = 1  # torch threads in the update worker: small heads run best on one
    nice: Annotated[int, msgspec.Meta(ge=0, le=19)] = 10  # added CPU niceness of the worker
    prewarm: bool = False  # keep an idle worker (torch loaded, ~300 MB) so updates start at once


class ApiConfig(_Section, frozen=True):
    # user names or uids, besides the daemon's own and root (a uid may be written as a number:
    # the loader makes it text)
    allowed_users: tuple[Name, ...] = ()
    allowed_groups: tuple[Name, ...] = ()  # group names or gids
    max_body_bytes: Positive = 16 * 1024 * 1024
    # A keep-alive connection that sends nothing this long, while nothing is being answered
    # on it, is closed (the client reconnects): idle clients cannot pile up descriptors.
    idle_timeout: Interval = 60.0
    # What one client may hold (docs/reliability.md, "The socket"): connections at once (at
    # the cap the longest-idle one is closed, else a newcomer gets 503), seconds for a
    # request's headers and for its body (bytes do not extend them), and the bytes of bodies
    # still arriving over all connections (beyond: 503).
    max_connections: Positive = 512
    header_timeout: Interval = 10.0
    body_timeout: Interval = 30.0
    max_pending_body_bytes: Positive = 64 * 1024 * 1024

    examples: ClassVar[dict[str, str]] = {
        "allowed_users": '["alice", "1001"]',
        "allowed_groups": '["tailord"]',
    }


class VersionsConfig(_Section, frozen=True):
    keep: Positive = 5  # newest versions kept; pinned ones, current and its parent are kept too
    base: str = ""  # a pretrained .safetensors file to use as version 0 on the first start

    examples: ClassVar[dict[str, str]] = {"base": '"~/models/base.safetensors"'}

    @property
    def base_file(self) -> Path | None:
        return Path(self.base).expanduser().absolute() if self.base else None


class Config(_Section, frozen=True):
    data_dir: Path
    inbox: Path
    socket: Path
    # A group name or gid whose members may read the data folder (then 2750 and 0640, not
    # 0700 and 0600); see daemon/privacy.py.
    group: str = ""
    model: ModelSpec = msgspec.field(default_factory=ModelSpec)
    update: UpdateParams = msgspec.field(default_factory=UpdateParams)
    policy: PolicyConfig = msgspec.field(default_factory=PolicyConfig)
    ingest: IngestConfig = msgspec.field(default_factory=IngestConfig)
    worker: WorkerConfig = msgspec.field(default_factory=WorkerConfig)
    api: ApiConfig = msgspec.field(default_factory=ApiConfig)
    gate: GateParams = msgspec.field(default_factory=GateParams)
    versions: VersionsConfig = msgspec.field(default_factory=VersionsConfig)

    examples: ClassVar[dict[str, str]] = {
        "data_dir": '"/var/lib/tailord"',
        "inbox": '"/srv/inbox"',
        "socket": '"/run/tailord/tailord.sock"',
        "group": '"tailord"',
    }

    @property
    def database(self) -> Path:
        return self.data_dir / "tailord.db"


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
    _override(table, "model", "head", overrides.get("head"))
    _override(table, "policy", "quiet_seconds", overrides.get("quiet_seconds"))
    api = table.setdefault("api", {})
    for key in ("allowed_users", "allowed_groups"):
        listed = api.get(key, []) if isinstance(api, dict) else None
        if isinstance(listed, list):
            # A uid is naturally written as a number; the allow-list holds names or uids as text.
            listed = [str(v) if type(v) is int else v for v in listed]
            api[key] = [*listed, *(overrides.get(key) or [])]
    for key in ("data_dir", "inbox", "socket"):
        if overrides.get(key) is not None:
            table[key] = overrides[key]
    table.setdefault("data_dir", str(default_data_dir()))
    if isinstance(table["data_dir"], str | Path):
        table.setdefault("inbox", str(Path(table["data_dir"]) / "inbox"))
    table.setdefault("socket", str(default_socket()))
    try:
        config = convert(Config, table, None, error=ConfigError, dec_hook=_path)
    except ModelError as exc:  # a rule across [model], [update] or [gate] keys
        raise ConfigError(str(exc)) from exc
    return msgspec.structs.replace(
        config,
        data_dir=config.data_dir.expanduser().absolute(),
        inbox=config.inbox.expanduser().absolute(),
        socket=config.socket.expanduser().absolute(),
    )


def _override(table: dict[str, Any], section: str, key: str, value: object) -> None:
    part = table.setdefault(section, {})
    if value is not None and isinstance(part, dict):  # else convert names the bad section
        part[key] = value


def _path(cls: type, value: Any) -> Any:
    """msgspec's hook for types it does not know: a path is written as a string."""
    if cls is Path and isinstance(value, str | Path) and str(value):
        return Path(value)
    raise ValueError("must be a path, written as a non-empty string")
