"""Scheduler, sync lock and job-claim tests, and the small helpers they share: hand-made source
deliveries, configurations for them, and scheduler processes started for real."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from connectors.base import load_registry
from connectors.csv_drop import COLUMNS
from coordination.config import Config, parse_config

VEU_API_KEY = "demo-key"  # FakeVeuApi's default key
VEU_KEY_ENV = "SCHEDULER_TEST_VEU_KEY"


# --- deliveries -------------------------------------------------------------------------------


def jobcenter_row(contact_id: str, company: str, date: str = "03-03-2026") -> dict[str, str]:
    """One row of a jobcenter CSV export (the spec's header names)."""
    return {
        "KontaktID": contact_id,
        "Dato": date,
        "Virksomhed": company,
        "Postnr": "8000",
        "By": "Aarhus C",
        "Kontaktform": "Besøg",
        "Formål": "Drøftelse af rekruttering",
        "Medarbejder": "Jørgen Konsulent",
        "MedarbejderEmail": "jk@jobcenter.example.dk",
    }


def write_export(folder: Path, name: str, rows: Sequence[Mapping[str, str]]) -> Path:
    """Write a jobcenter export file into the drop folder."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([row.get(column, "") for column in COLUMNS])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(out.getvalue(), encoding="utf-8")
    return path


def veu_contact(contact_id: str, company: str, updated_at: str) -> dict[str, Any]:
    """One item of the VEU-center contact API."""
    return {
        "id": contact_id,
        "updated_at": updated_at,
        "deleted": False,
        "date": "2026-03-04",
        "channel": "visit",
        "purpose": "Opkvalificering",
        "company": {"cvr": None, "name": company, "postcode": "8680", "city": "Ry"},
        "consultant": {"name": "Åse Møller", "email": "aase@veu.example.dk"},
        "needs": [],
        "joint_with": [],
    }


# --- configuration ----------------------------------------------------------------------------


def csv_source(folder: Path, name: str = "jobcenter-aarhus", **options: Any) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "csv-drop",
        "organisation": "Jobcenter Århus",
        "organisation_type": "jobcenter",
        "municipality_code": "751",
        "path": str(folder),
        **options,
    }


def veu_source(base_url: str, **options: Any) -> dict[str, Any]:
    return {
        "name": "veu-oestjylland",
        "kind": "rest-json",
        "organisation": "VEU-center Østjylland",
        "organisation_type": "veu",
        "base_url": base_url,
        "api_key_env": VEU_KEY_ENV,
        "max_retries": 0,
        "timeout_seconds": 60.0,
        **options,
    }


def make_config(db_url: str, sources: Sequence[Mapping[str, Any]] = ()) -> Config:
    """A validated configuration on the test database with these ``[[sources]]`` tables."""
    raw = {"database": {"url": db_url}, "sources": [dict(s) for s in sources]}
    return parse_config(raw, {VEU_KEY_ENV: VEU_API_KEY}, load_registry())


def write_config_file(path: Path, sources: Sequence[Mapping[str, Any]]) -> Path:
    """The same as a TOML file for a ``coordination`` process (the database comes from the
    environment)."""
    lines = ["[schedule]", 'sync_cron = "0 2 * * *"', 'timezone = "Europe/Copenhagen"', ""]
    for source in sources:
        lines.append("[[sources]]")
        for key, value in source.items():
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


# --- scheduler processes ----------------------------------------------------------------------


class SchedulerProcess:
    """A ``coordination scheduler`` process whose log goes to a file."""

    def __init__(self, popen: subprocess.Popen, log_path: Path) -> None:
        self.popen = popen
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def terminate(self) -> None:
        self.popen.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.popen.kill()

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout)


@contextlib.contextmanager
def scheduler_processes(
    count: int, tmp_path: Path, config_path: Path, db_url: str, every_seconds: int = 2
) -> Iterator[list[SchedulerProcess]]:
    """Start ``count`` scheduler processes on the database; kill whatever still runs after."""
    env = {
        **os.environ,
        "COORDINATION_CONFIG": str(config_path),
        "COORDINATION_DATABASE_URL": db_url,
        VEU_KEY_ENV: VEU_API_KEY,
    }
    command = [
        sys.executable,
        "-c",
        "from coordination.cli import main; main()",
        "scheduler",
        "--every-seconds",
        str(every_seconds),
    ]
    processes: list[SchedulerProcess] = []
    try:
        for number in range(count):
            log_path = tmp_path / f"scheduler-{number}.log"
            with log_path.open("wb") as log_file:
                popen = subprocess.Popen(
                    command, env=env, stdout=log_file, stderr=subprocess.STDOUT, cwd=tmp_path
                )
            processes.append(SchedulerProcess(popen, log_path))
        yield processes
    finally:
        for process in processes:
            if process.popen.poll() is None:
                process.kill()
            process.popen.wait(10)


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``condition`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.1)
