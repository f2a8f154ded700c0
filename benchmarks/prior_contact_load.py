"""Benchmark: the prior-contact check under concurrent load, against gunicorn with N workers.

Starts ``gunicorn -c python:coordination.gunicorn_conf -w N "coordination:create_app()"`` (as
``docs/deployment.md`` runs it) on 127.0.0.1 over a synced database
(``COORDINATION_CONFIG`` and ``COORDINATION_DATABASE_URL`` point at it), with a visitor token
and a random sample of the database's CVR numbers, and measures:

- **ceiling**: the saturated throughput of ``GET /healthz`` (no token, one ``SELECT 1``) of the
  same app, with ``wrk`` (``apt-get install wrk``) or, without it, Python threads;
- **saturated prior-contact**: ``GET /api/v1/companies/{cvr}/prior-contact`` the same way, and
  its share of the ceiling (target: at least 40%);
- **latency at a fixed rate** (default 200 requests/s, open loop: each request is timed from
  when it was due, so a slow server cannot hide its queue): p50, p95, p99 (targets on
  PostgreSQL with 2,000,000 approaches: p50 < 10 ms, p99 < 50 ms);
- **server CPU per request** of each phase: the CPU time (user + system, from ``/proc``) of the
  gunicorn master and workers and of the PostgreSQL backends connected to the database, over
  the requests served. Unlike requests/s it hardly moves when other work shares the machine.

Every check is a real one: it is recorded (``priorcontactcheck``, audit log) and evaluated
by the coordination rules, as in production.

    python benchmarks/bulk_fill.py postgresql+psycopg://postgres@127.0.0.1/db
    python benchmarks/prior_contact_load.py --url postgresql+psycopg://postgres@127.0.0.1/db

With ``--url`` (a synced or ``bulk_fill.py``-filled database) the configuration lists one
source per stored source, so every answer reports the freshness of all of them, as in
production. Without ``--url`` a fresh database is built through a full sync of
``--approaches`` approaches (see ``sync_throughput.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import queue
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests
from common import (
    DropFolders,
    FakeSources,
    SyncSetup,
    Workload,
    fresh_database,
    in_child,
    load_text,
    machine,
    prepare,
    sync_setup,
    toml_text,
)

PRIOR_CONTACT = "/api/v1/companies/{cvr}/prior-contact"
TARGET_P50_MS, TARGET_P99_MS, TARGET_SHARE = 10.0, 50.0, 0.40


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a synced database; without it one is built")
    parser.add_argument("--approaches", type=int, default=50_000)
    parser.add_argument("--companies", type=int, default=10_000)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="postgres")
    add_load_arguments(parser)
    args = parser.parse_args(argv)
    print(machine())
    if args.url:
        out = measure(args.url, None, **load_options(args))
    else:
        workload = Workload(args.approaches, args.companies)
        with (
            tempfile.TemporaryDirectory(prefix="coordination-bench-") as workdir,
            synced_database(args.db, workload, workdir) as (url, setup),
        ):
            out = measure(url, setup, **load_options(args))
    print_results(out)
    return 0


def add_load_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    parser.add_argument("--rate", type=float, default=200.0, help="requests/s for the latency")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each load phase")
    parser.add_argument("--connections", type=int, default=16, help="for the saturated runs")
    parser.add_argument(
        "--client",
        choices=("asyncio", "threads"),
        default="asyncio",
        help="the fixed-rate load generator (see fixed_rate)",
    )
    parser.add_argument(
        "--no-durable-checks",
        dest="durable_checks",
        action="store_false",
        help="run the app with [database] durable_checks = false (the check's commit does not "
        "wait for the WAL flush; see docs/deployment.md)",
    )


def load_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "workers": args.workers,
        "rate": args.rate,
        "seconds": args.seconds,
        "connections": args.connections,
        "durable_checks": args.durable_checks,
        "client": args.client,
    }


@contextlib.contextmanager
def synced_database(kind: str, workload: Workload, workdir: str) -> Iterator[tuple[str, Any]]:
    """A fresh database filled by a full sync of ``workload``."""
    from sync_throughput import sync_step

    deliveries = prepare(workload)
    with fresh_database(kind, Path(workdir)) as url, FakeSources(deliveries) as fakes:
        drops = DropFolders(deliveries, Path(workdir) / "drops")
        setup = sync_setup(url, deliveries, fakes, drops)
        in_child(sync_step, setup, None)
        yield url, setup


# --- the measurement --------------------------------------------------------------------------


def measure(
    url: str,
    setup: SyncSetup | None,
    workers: int = 4,
    rate: float = 200.0,
    seconds: float = 30.0,
    connections: int = 16,
    durable_checks: bool = True,
    client: str = "asyncio",
) -> dict[str, Any]:
    token, cvrs = callers(url)
    if not cvrs:
        raise SystemExit("the database has no company with a CVR number: sync something first")
    raw = setup.raw if setup else {"database": {"url": url}, "sources": stored_sources(url)}
    raw = raw | {"database": raw.get("database", {}) | {"durable_checks": durable_checks}}
    environ = setup.environ if setup else {}
    out: dict[str, Any] = {"workers": workers, "rate": rate, "companies_sampled": len(cvrs)}
    out["durable_checks"] = durable_checks
    with Gunicorn(url, raw, environ, workers) as server:
        paths = [PRIOR_CONTACT.format(cvr=cvr) for cvr in cvrs]
        headers = {"Authorization": f"Bearer {token}"}
        _check_endpoint(server.url + paths[0], headers)
        out["endpoint"] = "prior-contact"
        out["load_before"] = load_text()
        fixed_rate(server.url, paths[:50], headers, 50, 2, client)  # warm the workers
        cpu = ServerCpu(server.process.pid, url)
        with cpu.phase(out, "healthz_max"):
            out["healthz_max"] = saturate(server.url, ["/healthz"], {}, seconds, connections)
        with cpu.phase(out, "prior_contact_max"):
            out["prior_contact_max"] = saturate(server.url, paths, headers, seconds, connections)
        with cpu.phase(out, "prior_contact_at_rate"):
            out["prior_contact_at_rate"] = fixed_rate(
                server.url, paths, headers, rate, seconds, client
            )
        # Latency where the server keeps up: half its saturated throughput (when below rate).
        half = min(rate, out["prior_contact_max"]["requests_per_second"] / 2)
        out["prior_contact_at_half"] = fixed_rate(server.url, paths, headers, half, seconds, client)
        out["prior_contact_at_half"]["rate"] = half
        out["healthz_at_rate"] = fixed_rate(server.url, ["/healthz"], {}, rate, seconds / 2, client)
        out["load_after"] = load_text()
    ceiling = out["healthz_max"]["requests_per_second"]
    out["share_of_ceiling"] = out["prior_contact_max"]["requests_per_second"] / ceiling
    return out


def stored_sources(url: str) -> list[dict[str, Any]]:
    """One configured source per source stored in the database (as CSV drops into an empty
    folder: the check only reads their names, organisations and sync state)."""
    from sqlalchemy import select

    from coordination.db import make_engine, session_scope
    from coordination.models import Organisation, Source

    folder = Path(tempfile.mkdtemp(prefix="coordination-drops-"))
    engine = make_engine(url)
    with session_scope(engine) as session:
        rows = session.execute(
            select(
                Source.name, Organisation.name, Organisation.type, Organisation.municipality_code
            )
            .join(Organisation, Organisation.id == Source.organisation_id)
            .order_by(Source.id)
        ).all()
    engine.dispose()
    return [
        {
            "name": name,
            "kind": "csv-drop",
            "organisation": organisation,
            "organisation_type": kind,
            "municipality_code": municipality,
            "path": str(folder),
        }
        for name, organisation, kind, municipality in rows
    ]


def callers(url: str, sample: int = 2000) -> tuple[str, list[str]]:
    """A visitor token of a jobcentre, and a random sample of the CVR numbers in the database."""
    from sqlalchemy import func, select

    from coordination.db import make_engine, session_scope
    from coordination.models import Company
    from coordination.tokens import create_token

    engine = make_engine(url)
    with session_scope(engine) as session:
        _, token = create_token(session, "Jobcenter Aarhus", "visitor", label="benchmark")
        query = select(Company.cvr).where(Company.cvr.is_not(None))
        cvrs = list(session.execute(query.order_by(func.random()).limit(sample)).scalars())
    engine.dispose()
    return token, cvrs


def _check_endpoint(url: str, headers: dict[str, str]) -> None:
    answer = requests.get(url, headers=headers, timeout=30)
    if answer.status_code != 200:
        raise SystemExit(f"{url} answered {answer.status_code}: {answer.text[:300]}")


class Gunicorn:
    """``gunicorn -w N "coordination:create_app()"`` on a free local port, for one database."""

    def __init__(self, url: str, raw: dict, environ: dict[str, str], workers: int) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="coordination-gunicorn-"))
        config = self.folder / "coordination.toml"
        config.write_text(toml_text(raw), encoding="utf-8")
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = os.environ | environ
        env |= {"COORDINATION_CONFIG": str(config), "COORDINATION_DATABASE_URL": url}
        self.log = (self.folder / "gunicorn.log").open("w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                "python:coordination.gunicorn_conf",
                "-w",
                str(workers),
                "-b",
                f"127.0.0.1:{port}",
                "--backlog",
                "2048",
                "coordination:create_app()",
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def __enter__(self) -> Gunicorn:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"gunicorn exited; see {self.folder / 'gunicorn.log'}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return self
            time.sleep(0.3)
        self.__exit__()
        raise SystemExit("gunicorn did not answer /healthz within 60 s")

    def __exit__(self, *exc_info: object) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        shutil.rmtree(self.folder, ignore_errors=True)


class ServerCpu:
    """CPU time (user + system) of the gunicorn master and its workers and of the PostgreSQL
    backends connected to the database, read from ``/proc`` around a load phase; divided by
    the requests the phase served. (On SQLite the database runs inside the workers.)"""

    def __init__(self, master: int, url: str) -> None:
        self.master = master
        self.database = _database_name(url)

    @contextlib.contextmanager
    def phase(self, out: dict[str, Any], name: str) -> Iterator[None]:
        before = self._times()
        yield
        after = self._times()
        result = out[name]
        served = result.get("requests") or 0
        if not served:
            return
        gunicorn = sum(after[0].values()) - sum(before[0].get(p, 0) for p in after[0])
        postgres = sum(after[1].values()) - sum(before[1].get(p, 0) for p in after[1])
        result["gunicorn_cpu_ms"] = gunicorn * 1000 / served
        result["postgres_cpu_ms"] = postgres * 1000 / served

    def _times(self) -> tuple[dict[int, float], dict[int, float]]:
        workers = [self.master, *_children(self.master)]
        backends = _backends(self.database) if self.database else []
        return _cpu_seconds(workers), _cpu_seconds(backends)


def _database_name(url: str) -> str | None:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return parsed.database if parsed.get_backend_name() == "postgresql" else None


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def _backends(database: str) -> list[int]:
    """The server processes of the connections to ``database`` (postgres's own included)."""
    import psycopg

    with psycopg.connect(
        os.environ.get("COORDINATION_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1/postgres")
    ) as connection:
        rows = connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,)
        ).fetchall()
    return [pid for (pid,) in rows]


def _cpu_seconds(pids: list[int]) -> dict[int, float]:
    """utime + stime of each live process of ``pids``, in seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    times = {}
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            times[pid] = (int(fields[11]) + int(fields[12])) / tick
    return times


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- load generators --------------------------------------------------------------------------


def saturate(
    base: str, paths: list[str], headers: dict[str, str], seconds: float, connections: int
) -> dict[str, Any]:
    """Closed-loop maximum throughput: ``wrk`` when installed, else Python threads."""
    if shutil.which("wrk"):
        return _wrk(base, paths, headers, seconds, connections)
    return _threads(base, paths, headers, seconds, connections)


def _wrk(base, paths, headers, seconds, connections) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        quoted = ",".join(f'"{p}"' for p in paths)
        header_table = ",".join(f'["{k}"]="{v}"' for k, v in headers.items())
        script.write(
            f"local paths = {{{quoted}}}\n"
            f"local headers = {{{header_table}}}\n"
            "request = function()\n"
            '  return wrk.format("GET", paths[math.random(#paths)], headers)\n'
            "end\n"
        )
    try:
        command = ["wrk", "-t2", f"-c{connections}", f"-d{int(seconds)}s", "--latency"]
        command += ["-s", script.name, base]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(script.name)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output)[1])
    served = int(re.search(r"(\d+) requests in", output)[1])
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    latency = {
        f"p{m[1]}_ms": _milliseconds(m[2], m[3])
        for m in re.finditer(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
    }
    return {
        "tool": "wrk",
        "requests_per_second": rate,
        "requests": served,
        "non_2xx": int(errors[1]) if errors else 0,
        **latency,
    }


def _milliseconds(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def _threads(base, paths, headers, seconds, connections) -> dict[str, Any]:
    stop = time.monotonic() + seconds
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def worker(offset: int) -> None:
        with requests.Session() as session:
            n = offset
            while time.monotonic() < stop:
                started = time.perf_counter()
                answer = session.get(base + paths[n % len(paths)], headers=headers, timeout=30)
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    errors[0] += answer.status_code != 200
                n += 7

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {
        "tool": "python threads",
        "requests_per_second": len(latencies) / seconds,
        "requests": len(latencies),
        "non_2xx": errors[0],
        **_percentiles(latencies),
    }


def fixed_rate(
    base: str,
    paths: list[str],
    headers: dict[str, str],
    rate: float,
    seconds: float,
    client: str = "asyncio",
) -> dict[str, Any]:
    """Open loop: request i is due at ``i / rate``; its latency counts from then. A request
    more than ``seconds`` overdue is not sent but counted as ``dropped`` (the server cannot
    keep up; its latencies already say so). ``client``: "asyncio" (one thread, raw HTTP/1.1,
    about a tenth of the CPU per request of "threads", so the load generator takes less of
    the CPU the server shares with it) or "threads" (64 threads with ``requests``, the
    generator of the figures before 5 December 2026). ``client_cpu_ms`` is the generator's
    own CPU time per request."""
    started = time.process_time()
    if client == "threads":
        out = _fixed_rate_threads(base, paths, headers, rate, seconds)
    else:
        out = asyncio.run(_fixed_rate_asyncio(base, paths, headers, rate, seconds))
    out["client"] = client
    out["client_cpu_ms"] = (time.process_time() - started) * 1000 / max(out["requests"], 1)
    return out


async def _fixed_rate_asyncio(
    base: str,
    paths: list[str],
    headers: dict[str, str],
    rate: float,
    seconds: float,
    concurrency: int = 64,
) -> dict[str, Any]:
    host, port = base.removeprefix("http://").rsplit(":", 1)
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    latencies, service, errors, dropped = [], [], [0], [0]
    slots = asyncio.Semaphore(concurrency)

    async def one(when: float, path: str) -> None:
        async with slots:
            if time.perf_counter() - when > seconds:  # hopelessly behind: count it only
                dropped[0] += 1
                return
            sent = time.perf_counter()
            ok = False
            try:
                # gunicorn's sync workers close every connection after one response.
                reader, writer = await asyncio.open_connection(host, int(port))
                request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n"
                writer.write(request.encode())
                answer = await asyncio.wait_for(reader.read(-1), timeout=30)
                writer.close()
                ok = answer[9:12] == b"200"
            except (OSError, TimeoutError):
                pass
            done = time.perf_counter()
            latencies.append(done - when)
            service.append(done - sent)
            errors[0] += not ok

    start = time.perf_counter() + 0.2
    total = int(rate * seconds)
    tasks = []
    for i in range(total):
        when = start + i / rate
        delay = when - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(when, paths[(i * 7919) % len(paths)])))
    await asyncio.gather(*tasks)
    return _fixed_rate_figures(total, start, latencies, service, errors[0], dropped[0])


def _fixed_rate_threads(
    base: str,
    paths: list[str],
    headers: dict[str, str],
    rate: float,
    seconds: float,
    threads: int = 64,
) -> dict[str, Any]:
    due: queue.Queue[tuple[float, str] | None] = queue.Queue()
    latencies, service, errors, dropped = [], [], [0], [0]
    lock = threading.Lock()

    def worker() -> None:
        with requests.Session() as session:
            while (job := due.get()) is not None:
                when, path = job
                delay = when - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                elif -delay > seconds:  # hopelessly behind: count it, do not pile on
                    with lock:
                        dropped[0] += 1
                    continue
                sent = time.perf_counter()
                try:
                    ok = session.get(base + path, headers=headers, timeout=30).status_code == 200
                except requests.RequestException:
                    ok = False
                done = time.perf_counter()
                with lock:
                    latencies.append(done - when)
                    service.append(done - sent)
                    errors[0] += not ok

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    start = time.perf_counter() + 0.2
    total = int(rate * seconds)
    for i in range(total):
        due.put((start + i / rate, paths[(i * 7919) % len(paths)]))
    for _ in pool:
        due.put(None)
    for thread in pool:
        thread.join()
    return _fixed_rate_figures(total, start, latencies, service, errors[0], dropped[0])


def _fixed_rate_figures(
    total: int, start: float, latencies: list, service: list, errors: int, dropped: int
) -> dict[str, Any]:
    """What both load generators report of a fixed-rate phase that began at ``start``."""
    return {
        "requests": total,
        "achieved_rate": len(latencies) / (time.perf_counter() - start),
        "errors": errors,
        "dropped": dropped,
        **_percentiles(latencies),
        "service_p50_ms": statistics.median(service) * 1000 if service else 0.0,
    }


def _percentiles(seconds: list[float]) -> dict[str, float]:
    if not seconds:
        return {}
    ordered = sorted(seconds)

    def at(share: float) -> float:
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000

    return {"p50_ms": at(0.50), "p95_ms": at(0.95), "p99_ms": at(0.99)}


# --- printing ---------------------------------------------------------------------------------


def print_results(out: dict[str, Any]) -> None:
    ceiling, top = out["healthz_max"], out["prior_contact_max"]
    at_rate, health_rate = out["prior_contact_at_rate"], out["healthz_at_rate"]
    half = out["prior_contact_at_half"]
    print(
        f"== prior-contact check, gunicorn -w {out['workers']}"
        f"{'' if out.get('durable_checks', True) else ', durable_checks = false'} "
        f"({out['load_before']} -> {out['load_after']})\n"
        f"  /healthz saturated          {ceiling['requests_per_second']:>8,.0f} req/s "
        f"({ceiling['tool']})\n"
        f"  prior-contact saturated     {top['requests_per_second']:>8,.0f} req/s = "
        f"{out['share_of_ceiling']:.0%} of /healthz (target >= {TARGET_SHARE:.0%}), "
        f"non-2xx {top['non_2xx']}\n"
        f"  prior-contact at {out['rate']:.0f}/s       p50 {at_rate.get('p50_ms', 0):.1f} ms  "
        f"p95 {at_rate.get('p95_ms', 0):.1f} ms  p99 {at_rate.get('p99_ms', 0):.1f} ms "
        f"(targets {TARGET_P50_MS:.0f} / - / {TARGET_P99_MS:.0f} ms), achieved "
        f"{at_rate['achieved_rate']:.0f}/s, errors {at_rate['errors']}, "
        f"dropped {at_rate['dropped']}, {at_rate['client']} client "
        f"{at_rate['client_cpu_ms']:.2f} ms CPU per request\n"
        f"  prior-contact at {half['rate']:.0f}/s        p50 {half.get('p50_ms', 0):.1f} ms  "
        f"p95 {half.get('p95_ms', 0):.1f} ms  p99 {half.get('p99_ms', 0):.1f} ms "
        f"(half the saturated rate)\n"
        f"  /healthz at {out['rate']:.0f}/s            p50 {health_rate.get('p50_ms', 0):.1f} ms  "
        f"p95 {health_rate.get('p95_ms', 0):.1f} ms  p99 {health_rate.get('p99_ms', 0):.1f} ms",
        flush=True,
    )
    print("  server CPU per request (gunicorn + PostgreSQL backends):")
    for name in ("healthz_max", "prior_contact_max", "prior_contact_at_rate"):
        phase = out[name]
        if "gunicorn_cpu_ms" in phase:
            total = phase["gunicorn_cpu_ms"] + phase["postgres_cpu_ms"]
            print(
                f"    {name:<24} {total:.2f} ms = gunicorn {phase['gunicorn_cpu_ms']:.2f} + "
                f"PostgreSQL {phase['postgres_cpu_ms']:.2f}",
                flush=True,
            )


if __name__ == "__main__":
    sys.exit(main())
