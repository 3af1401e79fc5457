"""Daemon benchmark: queue throughput against the same engine in-process, API latency under load, memory per run.

Starts a real daemon (``python -m agentd daemon run``) on a temporary AGENTD_HOME with a scripted,
zero-latency model, so what is measured is the daemon (API, journal, workers), not inference:

- goals/s sustained with 200 goals submitted at once (one thread over 8 keep-alive connections, as wrk does; or 8
  client threads with http.client or httpx: ``--client raw|httpx``), for 1, 2 and 4 workers, over
  ``--reps`` repetitions (min/median/max), beside the baseline: the same 200 goals through the same engine and
  model in-process (one thread), interleaved with the daemon's repetitions. Both are warm: ``WARMUP`` goals
  go through each (daemon or in-process app) before the timed 200, so neither pays the first goal's imports and
  model construction (once per process) inside the measure. Each daemon run has an in-process run of its own
  beside it (alternating which goes first), and the ``paired`` columns give each daemon run over its own
  baseline: the VM's speed drifts within minutes, and two medians taken apart carry that drift whole;
- p50/p95 latency of GET /status while those 200 run, from an open-loop prober in its own process: requests
  go out on a fixed schedule (every 20 ms) and latency counts from the scheduled time, so a slow answer
  delays nothing unseen (no coordinated omission);
- the daemon's RSS after 200 runs and after 1,000 runs (growth per run).

- with --model-pool: the bundled model called from 4 threads through one shared (locked) handle vs a pool of
  two instances.

- with --base TREE: the same daemon measures for another agentd source tree (e.g. main before a change),
  interleaved with this tree's, as ``@base`` rows (the in-process baseline stays this tree's engine).

Run it with this tree first on the path (``PYTHONPATH=$PWD:$PWD/plugins``): the in-process baseline imports
agentd in the benchmark's own process.

Usage: python benchmarks/bench_daemon.py [--workers 1,2,4] [--run-in threads,processes] [--reps 3] [--runs 1000]
       [--client raw|httpx] [--base TREE] [--model-pool]
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import httpx

SCRIPT = {
    "rules": [
        ["(?i)write the plan", {"steps": [{"intent": "write it", "tool": "write_file"}]}],
        ["Write the call for step", {"tool": "write_file", "args": {"path": "out.txt", "content": "x"}}],
        ["Write the decision", {"decision": "done", "summary": "ok", "final_answer": "done"}],
    ],
    "delay_s": 0.0,
}


# ScriptedChatModel keeps every prompt it saw (tests inspect them): ~100 KiB per run here. This drop-in
# provider keeps only the last few, so the RSS figure measures the daemon, not the fake model's record.
LEAN_PROVIDER = """
from collections import deque

from agentd import hookimpl


@hookimpl
def register_models(register):
    from agentd.models.providers import scripted_model

    def lean(cfg):
        handle = scripted_model(cfg)
        handle.chat._calls = deque(maxlen=8)
        return handle

    register("scripted-lean", lean)
"""


def make_home(root: Path, workers: int, provider: str, run_in: str = "threads") -> Path:
    home = root / f"home-{workers}-{provider}-{run_in}"
    (home / "configs").mkdir(parents=True)
    (home / "plugins").mkdir()
    (home / "plugins" / "lean_model.py").write_text(LEAN_PROVIDER)
    (home / "script.json").write_text(json.dumps(SCRIPT))
    (home / "configs" / "agentd.toml").write_text(
        f'[models.local]\nprovider = "{provider}"\nscript = "{home / "script.json"}"\n'
        '[plugins]\nload = ["workspace", "lean_model"]\n'
        f'[plugins.daemon]\nworkers = {workers}\nlog_level = "warning"\n'
        + (f'run_in = "{run_in}"\n' if run_in != "threads" else "")  # a --base tree may not know the key
    )
    return home


class Daemon:
    def __init__(self, home: Path, tree: str = "") -> None:
        """A daemon on ``home``; from the source tree ``tree`` (``--base``) when given, else from this one."""
        self.home = home
        env = os.environ | {"AGENTD_HOME": str(home)}
        if tree:
            env["PYTHONPATH"] = f"{tree}{os.pathsep}{Path(tree) / 'plugins'}"
        self.log = open(home / "daemon.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agentd", "daemon", "run"], env=env, stdout=self.log, stderr=self.log
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if self.client().get("/health").status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise SystemExit("the daemon did not start; see " + str(home / "daemon.log"))

    def client(self) -> httpx.Client:
        return connect(self.home / "agentd.sock")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)
        self.log.close()


PROBE_INTERVAL_S = 0.02
SUBMITTERS = 8  # client threads, each with its own keep-alive connection
WARMUP = 5  # goals through each daemon and each in-process app before the timed ones


def connect(socket_path: Path) -> httpx.Client:
    """A keep-alive client on the daemon's socket; plain HTTP, so no TLS context (no CA bundle to load)."""
    transport = httpx.HTTPTransport(uds=str(socket_path), verify=False)
    return httpx.Client(transport=transport, base_url="http://agentd", timeout=60, verify=False)


class RawSubmitter:
    """A keep-alive HTTP/1.1 connection on the daemon's socket through the standard library's http.client. The
    load generator shares the machine's cores with the daemon it measures: with httpx submitters this process
    (with its prober) used 2.2-2.5 ms of CPU per goal, with these 1.6-2.1 ms, beside the daemon's 2.1-2.9 ms
    (2 cores, 2 worker processes). ``--client httpx`` measures with httpx."""

    def __init__(self, socket_path: Path) -> None:
        self.conn = http.client.HTTPConnection("agentd", timeout=60)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(socket_path))
        self.conn.sock = sock

    def post(self, path: str, body: bytes) -> int:
        self.conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        answer = self.conn.getresponse()
        answer.read()  # the whole answer, so the connection is reused
        return answer.status

    def close(self) -> None:
        self.conn.close()


class HttpxSubmitter:
    def __init__(self, socket_path: Path) -> None:
        self.client = connect(socket_path)

    def post(self, path: str, body: bytes) -> int:
        return self.client.post(path, content=body, headers={"Content-Type": "application/json"}).status_code

    def close(self) -> None:
        self.client.close()


def submit_threads(kind: type, socket_path: Path, bodies: list[bytes]) -> list[int]:
    """POST /runs for each body from ``SUBMITTERS`` threads, each with one keep-alive ``kind`` connection."""
    clients = [kind(socket_path) for _ in range(SUBMITTERS)]
    statuses = [0] * len(bodies)

    def post(k: int) -> None:
        for i in range(k, len(bodies), SUBMITTERS):
            statuses[i] = clients[k].post("/runs", bodies[i])

    try:
        with ThreadPoolExecutor(SUBMITTERS) as pool:
            list(pool.map(post, range(SUBMITTERS)))
    finally:
        for c in clients:
            c.close()
    return statuses


def submit_lean(socket_path: Path, bodies: list[bytes]) -> list[int]:
    """POST /runs for each body from one thread over ``SUBMITTERS`` keep-alive connections, one request in flight
    on each (no pipelining), as a load generator like wrk does it: the requests' bytes are made at once, and an
    answer is read only as far as its status and length. With 2 cores this leaves the daemon the
    CPU that 8 client threads took for their own HTTP stacks and GIL hand-offs."""
    requests = [
        b"POST /runs HTTP/1.1\r\nHost: agentd\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        for body in bodies
    ]
    statuses = [0] * len(bodies)
    selector = selectors.DefaultSelector()
    waiting = iter(range(len(bodies)))
    in_flight = 0

    def send_next(sock: socket.socket) -> bool:
        """The next request on ``sock``; False (and ``sock`` closed) when none is left."""
        i = next(waiting, None)
        if i is None:
            selector.unregister(sock)
            sock.close()
            return False
        sock.sendall(requests[i])
        selector.modify(sock, selectors.EVENT_READ, [i, b""])
        return True

    for _ in range(SUBMITTERS):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(socket_path))
        selector.register(sock, selectors.EVENT_READ, None)
        in_flight += send_next(sock)
    try:
        while in_flight:
            ready = selector.select(60)
            if not ready:
                raise TimeoutError("no answer from the daemon in 60 s")
            for key, _ in ready:
                sock, (i, buffer) = key.fileobj, key.data
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("the daemon closed a connection mid-answer")
                buffer += chunk
                head, found, body = buffer.partition(b"\r\n\r\n")
                length = _content_length(head) if found else None
                if length is None or len(body) < length:
                    key.data[1] = buffer
                    continue
                statuses[i] = int(head.split(b" ", 2)[1])
                in_flight -= not send_next(sock)
    finally:
        for key in list(selector.get_map().values()):
            key.fileobj.close()
        selector.close()
    return statuses


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise ValueError(f"an answer without Content-Length: {head[:200]!r}")


SUBMITTER_KINDS = {
    "lean": submit_lean,
    "raw": lambda socket_path, bodies: submit_threads(RawSubmitter, socket_path, bodies),
    "httpx": lambda socket_path, bodies: submit_threads(HttpxSubmitter, socket_path, bodies),
}


def probe(socket_path: str, stop_file: str, out_file: str) -> None:
    """The open-loop prober (its own process): GET /status on a fixed schedule until ``stop_file`` exists;
    writes the latencies (ms, from each request's scheduled time) to ``out_file``."""
    client = connect(Path(socket_path))
    client.get("/status")  # connected and warm: the timed window starts after this (see submit_and_wait)
    Path(out_file + ".ready").touch()
    latencies: list[float] = []
    start = time.perf_counter()
    for k in itertools.count():
        if os.path.exists(stop_file):
            break
        due = start + k * PROBE_INTERVAL_S
        time.sleep(max(0.0, due - time.perf_counter()))
        client.get("/status")
        latencies.append((time.perf_counter() - due) * 1000)
    Path(out_file).write_text(json.dumps(latencies))


def submit_and_wait(
    d: Daemon, n: int, text: str = "make out.txt", client: str = "raw"
) -> tuple[float, float, list[float]]:
    """Submit n goals at once (``client``: a SUBMITTER_KINDS key); returns (submit seconds, seconds until all
    finished, status latencies ms)."""
    before = d.client().get("/status").json()["finished_since_start"]
    stop, out = d.home / "probe.stop", d.home / "probe.json"
    stop.unlink(missing_ok=True)
    ready = Path(str(out) + ".ready")
    ready.unlink(missing_ok=True)
    prober = subprocess.Popen([sys.executable, __file__, "--probe", str(d.home / "agentd.sock"), str(stop), str(out)])
    while not ready.exists():  # the prober's own start (a Python process, httpx) is not the daemon's time
        time.sleep(0.01)

    # keep-alive, as a program submitting goals would
    bodies = [json.dumps({"text": f"{text} {i}", "memory": False}).encode() for i in range(n)]
    started, started_at = time.perf_counter(), time.time()
    statuses = SUBMITTER_KINDS[client](d.home / "agentd.sock", bodies)
    submitted = time.perf_counter() - started
    assert statuses == [201] * n, f"not every goal was queued: {sorted(set(statuses))}"
    with d.client() as c:
        while c.get("/status").json()["finished_since_start"] < before + n:
            time.sleep(0.05)
    stop.touch()
    with d.client() as c:
        runs = c.get("/runs", params={"limit": n}).json()  # newest first: this batch
    check_succeeded(runs + [None] * (n - len(runs)))
    # Until the batch's last run ended, as its journal says: this loop's 50 ms polls would add up to 50 ms (7% of
    # a batch here) that the in-process baseline, timed around its own loop, never pays.
    total = max(r["finished_at"] for r in runs) - started_at
    prober.wait(120)
    return submitted, total, json.loads(out.read_text())


def in_process(home: Path, n: int) -> float:
    """The baseline: the same goals through the same engine and model in one thread of a fresh process (as each
    daemon is one); goals/s."""
    out = subprocess.run([sys.executable, __file__, "--in-process", str(home), str(n)],
                         capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def in_process_here(home: Path, n: int, text: str = "make out.txt") -> float:
    from agentd import Goal
    from agentd.app import make_app
    from agentd.config import load_config

    app = make_app(load_config(home=home, env={}))
    try:
        engine = app.engine
        for i in range(WARMUP):
            engine.run(engine.submit(Goal(text=f"warm-up {i}", memory=False)))
        started = time.perf_counter()
        ids = []
        for i in range(n):
            ids.append(engine.submit(Goal(text=f"{text} {i}", memory=False)))
            engine.run(ids[-1])
        rate = n / (time.perf_counter() - started)
        check_succeeded([app.journal.get_run(r) for r in ids])
        return rate
    finally:
        app.close()


def check_succeeded(runs: list) -> None:
    """A benchmark of goals that fail measures nothing: every timed goal must have succeeded."""
    bad = [r for r in runs if not r or r["status"] != "succeeded"]
    if bad:
        raise SystemExit(f"{len(bad)} of {len(runs)} timed goals did not succeed, e.g. {bad[0]}")


def pct(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100)[int(p) - 1] if len(values) >= 2 else float("nan")


def model_pool() -> None:
    """The bundled llama.cpp model: 4 calls from 4 threads through one shared handle vs a pool of two."""
    from agentd.config import ModelConfig
    from agentd.models.providers import llamacpp_model

    cfg = ModelConfig(max_tokens=48)
    one, two = llamacpp_model(cfg), llamacpp_model(cfg)
    messages = [
        ("system", "You write short JSON."),
        ("user", "Write a JSON object with a key name and value hello."),
    ]
    one.complete(messages), two.complete(messages)  # warm both

    def timed(handles: list) -> float:
        started = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda i: handles[i % len(handles)].complete(messages), range(4)))
        return time.perf_counter() - started

    for label, handles in (("1 shared handle (serialised)", [one]), ("pool of 2 instances", [one, two])) * 2:
        print(f"model {label:<30} 4 calls: {timed(handles):.2f}s")


def main() -> None:
    if sys.argv[1:2] == ["--probe"]:
        probe(*sys.argv[2:5])
        return
    if sys.argv[1:2] == ["--in-process"]:
        print(in_process_here(Path(sys.argv[2]), int(sys.argv[3])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--run-in", default="threads,processes", help="where the daemon runs goals (plugins.daemon.run_in)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each measure (min/median/max)")
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--client", default="lean", choices=sorted(SUBMITTER_KINDS),
                        help="the submitters: lean (one thread, 8 connections, raw sockets), raw (8 threads with "
                             "http.client) or httpx (8 threads with httpx)")
    parser.add_argument("--base", default="", help="another agentd source tree whose daemon to time beside this one")
    parser.add_argument(
        "--model-pool", action="store_true", help="Also time the real model: shared vs pool of 2."
    )
    args = parser.parse_args()
    workers_list = [int(w) for w in args.workers.split(",")]
    flavours = [(w, run_in, tree) for run_in in args.run_in.split(",") for w in workers_list
                for tree in (["", args.base] if args.base else [""])]  # a base without run_in: --run-in threads
    rates: dict[tuple[int, str, str], list[float]] = {f: [] for f in flavours}
    paired: dict[tuple[int, str, str], list[float]] = {f: [] for f in flavours}  # each run over its own baseline
    latencies: dict[tuple[int, str, str], list[float]] = {f: [] for f in flavours}
    baseline: list[float] = []
    rss = None
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            for k, (workers, run_in, tree) in enumerate(flavours):
                # Each daemon run beside an in-process run of its own, in alternating order: this VM's speed
                # drifts by a third within minutes, which the ratio of two medians taken apart carries whole.
                engine = partial(in_process, make_home(Path(tmp) / f"rep{rep}-{k}-in-process", 1, "scripted-lean"), 200)
                own = engine() if rep % 2 == 0 else None
                home = make_home(Path(tmp) / f"rep{rep}{'-base' if tree else ''}", workers, "scripted-lean", run_in)
                d = Daemon(home, tree)
                try:
                    submit_and_wait(d, WARMUP, "warm-up", args.client)
                    _, total, lat = submit_and_wait(d, 200, client=args.client)
                    rates[workers, run_in, tree].append(200 / total)
                    latencies[workers, run_in, tree] += lat
                    if rss is None and workers == 2 and run_in == "threads" and not tree and args.runs > 200:
                        rss_200 = d.rss_mb()
                        left = args.runs - 200
                        for _ in range(left // 200):
                            submit_and_wait(d, 200, client=args.client)
                        rss = (rss_200, d.rss_mb(), left)
                finally:
                    d.stop()
                if own is None:
                    own = engine()
                baseline.append(own)
                paired[workers, run_in, tree].append(rates[workers, run_in, tree][-1] / own)
    base = statistics.median(baseline)
    print(f"daemon benchmark (scripted zero-latency model, 200 goals submitted at once after {WARMUP} warm-up goals, "
          f"{args.reps} repetitions, {os.cpu_count()} CPUs, {args.client} submitters)")
    print(f"{'':>20} {'goals/s min':>11} {'median':>7} {'max':>7} {'/ in-process':>12} {'paired: median':>14} "
          f"{'min':>5} {'max':>5} {'status p50 ms':>14} {'p95 ms':>7} {'probes':>7}")
    print(f"{'in-process':>20} {min(baseline):>11.1f} {base:>7.1f} {max(baseline):>7.1f} {1.0:>11.2f}x")
    for w, run_in, tree in flavours:
        r, lat, pairs = rates[w, run_in, tree], latencies[w, run_in, tree], paired[w, run_in, tree]
        label = f"{w} {run_in.removesuffix('es' if run_in == 'processes' else 's')} workers" + (" @base" if tree else "")
        print(f"{label:>20} {min(r):>11.1f} {statistics.median(r):>7.1f} {max(r):>7.1f} "
              f"{statistics.median(r) / base:>11.2f}x {statistics.median(pairs):>13.2f}x {min(pairs):>4.2f}x "
              f"{max(pairs):>4.2f}x {pct(lat, 50):>14.1f} {pct(lat, 95):>7.1f} {len(lat):>7}")
    print("/ in-process: the daemon's median over the in-process median; paired: each daemon run over the in-process "
          "run beside it (the same repetition, alternating which goes first), median, min and max")
    if rss:
        r200, r_end, extra = rss
        print(
            f"RSS (2 workers): {r200:.1f} MiB after 200 runs, {r_end:.1f} MiB after {200 + extra} runs "
            f"({(r_end - r200) * 1024 / max(extra, 1):+.1f} KiB/run)"
        )
    if args.model_pool:
        model_pool()


if __name__ == "__main__":
    main()
