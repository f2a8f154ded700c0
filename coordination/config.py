"""Configuration: defaults, then the TOML file, then the environment; validated once, frozen.

Every problem is reported as a :class:`ConfigError` naming the offending key, before anything runs.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from marshmallow import ValidationError

from connectors.base import Connector, SourceSettings, load_registry

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PACKAGED_CONFIG_DIR = PROJECT_ROOT / "config"
DEFAULT_CONFIG_PATH = PACKAGED_CONFIG_DIR / "default.toml"
DEFAULT_DATABASE_URL = "sqlite:///coordination.db"

ORGANISATION_TYPES = ("vaeksthus", "jobcenter", "veu")
SOURCE_NAME = re.compile(r"^[a-z0-9-]+$")
# Keys of a [[sources]] table that the service reads itself; the rest belong to the connector.
SERVICE_SOURCE_KEYS = {"name", "kind", "organisation", "organisation_type", "municipality_code"}


class ConfigError(Exception):
    """The configuration is unusable; ``key`` names where (e.g. ``sources[2].kind``)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"configuration error at {key}: {message}")
        self.key = key


@dataclasses.dataclass(frozen=True)
class Rules:
    window_days: int = 90
    lookup_valid_days: int = 14
    flag_threshold: int = 2
    joint_date_tolerance_days: int = 1


@dataclasses.dataclass(frozen=True)
class Schedule:
    sync_cron: str = "0 2 * * *"
    timezone: str = "Europe/Copenhagen"


@dataclasses.dataclass(frozen=True)
class Retention:
    """How long personal data is kept (years after the approach / the audit entry)."""

    approach_years: int = 5
    audit_years: int = 5
    sources: Mapping[str, int] = dataclasses.field(default_factory=dict)  # per-source override

    def years_for(self, source_name: str) -> int:
        return self.sources.get(source_name, self.approach_years)


@dataclasses.dataclass(frozen=True)
class SourceConfig:
    name: str
    kind: str
    organisation: str
    organisation_type: str
    municipality_code: str | None
    settings: SourceSettings

    def build_connector(self, registry: Mapping[str, type[Connector]]) -> Connector:
        return registry[self.kind](self.settings)


@dataclasses.dataclass(frozen=True)
class Config:
    database_url: str
    rules: Rules
    schedule: Schedule
    sources: tuple[SourceConfig, ...]
    path: Path | None = None
    retention: Retention = dataclasses.field(default_factory=Retention)
    # [database] durable_checks: false lets the API's prior-contact check commit its check and
    # audit entry without waiting for PostgreSQL's WAL flush (synchronous_commit = off for that
    # statement only): a database crash may then lose the checks of its last fraction of a
    # second. A decision for the product owner; durable by default.
    durable_checks: bool = True

    def source(self, name: str) -> SourceConfig:
        for source in self.sources:
            if source.name == name:
                return source
        raise ConfigError("sources", f"no source named {name!r}")


def load_config(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    registry: Mapping[str, type[Connector]] | None = None,
) -> Config:
    """Load and validate the configuration.

    ``path`` defaults to ``$COORDINATION_CONFIG``, then to the packaged ``config/default.toml``;
    with neither, built-in defaults apply (a local SQLite file and no sources).
    """
    environ = os.environ if environ is None else environ
    registry = load_registry() if registry is None else registry
    chosen = path or environ.get("COORDINATION_CONFIG")
    config_path = Path(chosen) if chosen else DEFAULT_CONFIG_PATH
    raw: dict[str, Any] = {}
    if chosen and not config_path.is_file():
        raise ConfigError("COORDINATION_CONFIG", f"file not found: {config_path}")
    if config_path.is_file():
        try:
            raw = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(str(config_path), f"not valid TOML: {exc}") from exc
    return parse_config(raw, environ, registry, config_path if config_path.is_file() else None)


def parse_config(
    raw: Mapping[str, Any],
    environ: Mapping[str, str],
    registry: Mapping[str, type[Connector]],
    path: Path | None = None,
) -> Config:
    unknown = set(raw) - {"database", "rules", "schedule", "sources", "retention"}
    if unknown:
        raise ConfigError(sorted(unknown)[0], "unknown section")
    database = _table(raw, "database")
    url = environ.get("COORDINATION_DATABASE_URL") or database.get("url") or DEFAULT_DATABASE_URL
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError("database.url", f"not a database URL: {url!r}")
    durable_checks = database.get("durable_checks", True)
    if type(durable_checks) is not bool:
        raise ConfigError("database.durable_checks", "must be true or false")
    rules = _dataclass_from(Rules, _table(raw, "rules"), "rules", minimum=0)
    if rules.flag_threshold < 1:
        raise ConfigError("rules.flag_threshold", "must be at least 1")
    schedule = _dataclass_from(Schedule, _table(raw, "schedule"), "schedule")
    _check_schedule(schedule)
    sources = raw.get("sources", [])
    if not isinstance(sources, list):
        raise ConfigError("sources", "must be an array of tables ([[sources]])")
    parsed = tuple(_parse_source(i, entry, environ, registry) for i, entry in enumerate(sources))
    seen: set[str] = set()
    for i, source in enumerate(parsed):
        if source.name in seen:
            raise ConfigError(f"sources[{i}].name", f"duplicate source name {source.name!r}")
        seen.add(source.name)
    retention = _parse_retention(_table(raw, "retention"), {s.name for s in parsed})
    return Config(url, rules, schedule, parsed, path, retention, durable_checks)


def _parse_retention(values: Mapping[str, Any], source_names: set[str]) -> Retention:
    per_source = values.get("sources", {})
    if not isinstance(per_source, Mapping):
        raise ConfigError("retention.sources", "must be a table of source name = years")
    for name, years in per_source.items():
        if name not in source_names:
            raise ConfigError(f"retention.sources.{name}", "no source with this name")
        if type(years) is not int or years < 1:
            raise ConfigError(f"retention.sources.{name}", "must be a whole number of years >= 1")
    general = {k: v for k, v in values.items() if k != "sources"}
    base = _dataclass_from(Retention, general, "retention", minimum=1)
    return dataclasses.replace(base, sources=dict(per_source))


def _table(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigError(key, "must be a table")
    return value


def _dataclass_from(cls, values: Mapping[str, Any], prefix: str, minimum: int | None = None):
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"{prefix}.{key}", "unknown setting")
        expected = type(known[key].default)
        if type(value) is not expected:
            raise ConfigError(f"{prefix}.{key}", f"must be of type {expected.__name__}")
        if minimum is not None and value < minimum:
            raise ConfigError(f"{prefix}.{key}", f"must be at least {minimum}")
    return cls(**values)


def _check_schedule(schedule: Schedule) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from apscheduler.triggers.cron import CronTrigger

    try:
        zone = ZoneInfo(schedule.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError("schedule.timezone", f"unknown time zone {schedule.timezone!r}") from exc
    try:
        CronTrigger.from_crontab(schedule.sync_cron, timezone=zone)
    except ValueError as exc:
        raise ConfigError("schedule.sync_cron", f"not a cron expression: {exc}") from exc


def _parse_source(
    index: int,
    entry: Any,
    environ: Mapping[str, str],
    registry: Mapping[str, type[Connector]],
) -> SourceConfig:
    at = f"sources[{index}]"
    if not isinstance(entry, Mapping):
        raise ConfigError(at, "must be a table")
    for key in ("name", "kind", "organisation", "organisation_type"):
        if not isinstance(entry.get(key), str) or not entry[key].strip():
            raise ConfigError(f"{at}.{key}", "is required and must be a non-empty string")
    name = entry["name"]
    if not SOURCE_NAME.match(name):
        raise ConfigError(f"{at}.name", f"{name!r} may only use a-z, 0-9 and '-'")
    kind = entry["kind"]
    if kind not in registry:
        known = ", ".join(sorted(registry))
        raise ConfigError(f"{at}.kind", f"unknown kind {kind!r} (known: {known})")
    if entry["organisation_type"] not in ORGANISATION_TYPES:
        raise ConfigError(
            f"{at}.organisation_type", f"must be one of {', '.join(ORGANISATION_TYPES)}"
        )
    municipality = entry.get("municipality_code") or None
    if municipality is not None and not re.fullmatch(r"\d{3}", str(municipality)):
        raise ConfigError(f"{at}.municipality_code", "must be a 3-digit municipality code")
    connector_cls = registry[kind]
    options_in = {k: v for k, v in entry.items() if k not in SERVICE_SOURCE_KEYS}
    try:
        options = connector_cls.options_schema().load(options_in)
    except ValidationError as exc:
        key = sorted(exc.messages)[0] if isinstance(exc.messages, dict) else "?"
        raise ConfigError(f"{at}.{key}", str(exc.messages)) from exc
    secrets: dict[str, str] = {}
    for option, secret_name in connector_cls.secret_options.items():
        variable = options.get(option)
        if not variable:
            continue
        value = environ.get(variable)
        if not value:
            raise ConfigError(
                f"{at}.{option}", f"environment variable {variable} is not set (the secret)"
            )
        secrets[secret_name] = value
    settings = SourceSettings(name=name, options=options, secrets=secrets)
    return SourceConfig(
        name=name,
        kind=kind,
        organisation=entry["organisation"].strip(),
        organisation_type=entry["organisation_type"],
        municipality_code=str(municipality) if municipality else None,
        settings=settings,
    )
