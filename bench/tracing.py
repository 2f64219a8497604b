"""What tracing costs: the lead benchmark on a fresh local stack with traces exported, against none.

    .venv/bin/python bench/tracing.py --rounds 2 --count 500 --rate 50

Alternates rounds without and with tracing (each on a fresh stack in its own state directory, so
neither inherits the other's history), exporting over OTLP/HTTP to a sink in this process that counts
the spans it receives. Each round runs ``bench/leads.py --count N --rate R --no-skeleton`` and reads
its acknowledgement latency and end-to-end rate, and the CPU seconds the hub's own processes (API and
workers) spent. Prints each round, then the medians and the ratio traced / untraced (goal: the CPU per
lead and the p99 acknowledgement within 10 %).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
HUB_PROCESSES = ("workers.main", "-m api", "api.app")
ACK = re.compile(r"ack latency\s+p50 ([\d.]+) ms\s+p99 ([\d.]+) ms")
DELIVERED = re.compile(r"delivered end to end\s+(\d+) in ([\d.]+) s \(([\d.]+) leads/s\)")


@dataclass
class SpanLine:
    service: str
    name: str
    span_id: bytes
    parent_id: bytes
    start_ns: int
    end_ns: int


class Sink(BaseHTTPRequestHandler):
    """An OTLP/HTTP trace receiver that counts the spans and keeps them by trace (for one to be shown)."""

    spans = 0
    traces: dict[bytes, list[SpanLine]] = {}
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        request = ExportTraceServiceRequest.FromString(body)
        with Sink.lock:
            for resource in request.resource_spans:
                service = next(
                    (a.value.string_value for a in resource.resource.attributes if a.key == "service.name"),
                    "?",
                )
                for scope in resource.scope_spans:
                    for span in scope.spans:
                        line = SpanLine(
                            service, span.name, span.span_id, span.parent_span_id,
                            span.start_time_unix_nano, span.end_time_unix_nano,
                        )  # fmt: skip
                        Sink.traces.setdefault(span.trace_id, []).append(line)
                        Sink.spans += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


@dataclass
class Round:
    traced: bool
    ack_p50_ms: float
    ack_p99_ms: float
    leads_per_second: float
    delivered: int
    cpu_seconds: float
    spans: int

    @property
    def cpu_ms_per_lead(self) -> float:
        return self.cpu_seconds * 1000 / max(self.delivered, 1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each kind")
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--rate", type=float, default=50)
    args = parser.parse_args()
    sink = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{sink.server_address[1]}"
    rounds: list[Round] = []
    with tempfile.TemporaryDirectory(prefix="bench-tracing-") as scratch:
        for index in range(args.rounds * 2):
            traced = index % 2 == 1
            result = run_round(Path(scratch) / f"round-{index}", traced, endpoint, args)
            rounds.append(result)
            print(describe(result), flush=True)
    sink.shutdown()
    summarize(rounds)
    show_one_lead()


def show_one_lead() -> None:
    """The trace of one lead, as a tree of span names with their durations and services."""
    webhook = "POST /webhooks/zoho/leads"
    traces = [spans for spans in Sink.traces.values() if any(s.name == webhook for s in spans)]
    if not traces:
        print("no lead trace received")
        return
    spans = max(traces, key=len)
    children: dict[bytes, list[SpanLine]] = {}
    for span in spans:
        children.setdefault(span.parent_id, []).append(span)
    ids = {span.span_id for span in spans}
    roots = [span for span in spans if span.parent_id not in ids]
    start = min(span.start_ns for span in spans)
    print(f"\nOne lead's trace ({len(spans)} spans; offset from its first span, duration, service):")

    def show(span: SpanLine, depth: int) -> None:
        offset, took = (span.start_ns - start) / 1e6, (span.end_ns - span.start_ns) / 1e6
        print(f"{offset:9.1f} ms {took:9.1f} ms  {'  ' * depth}{span.name}  [{span.service}]")
        for child in sorted(children.get(span.span_id, []), key=lambda s: s.start_ns):
            show(child, depth + 1)

    for root in sorted(roots, key=lambda s: s.start_ns):
        show(root, 0)


def run_round(state_dir: Path, traced: bool, endpoint: str, args: argparse.Namespace) -> Round:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    if traced:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    spans_before = Sink.spans
    log = (state_dir.parent / f"{state_dir.name}.log").open("w")
    stack = subprocess.Popen(
        [PYTHON, "-m", "devstack", "up", "--state-dir", str(state_dir)],
        cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)}, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_healthy(state_dir.parent / f"{state_dir.name}.log")
        cpu_before = hub_cpu_seconds(stack.pid)
        bench = subprocess.run(
            [PYTHON, "bench/leads.py", "--count", str(args.count), "--rate", str(args.rate), "--no-skeleton"],
            cwd=ROOT, env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        cpu = hub_cpu_seconds(stack.pid) - cpu_before
        time.sleep(6)  # the batch processors export every 5 s
    finally:
        stack.send_signal(signal.SIGINT)
        stack.wait(timeout=120)
        log.close()
    ack, delivered = ACK.search(bench.stdout), DELIVERED.search(bench.stdout)
    if ack is None or delivered is None:
        raise SystemExit(f"unexpected bench output:\n{bench.stdout}\n{bench.stderr}")
    return Round(
        traced=traced,
        ack_p50_ms=float(ack[1]),
        ack_p99_ms=float(ack[2]),
        delivered=int(delivered[1]),
        leads_per_second=float(delivered[3]),
        cpu_seconds=cpu,
        spans=Sink.spans - spans_before,
    )


def wait_healthy(log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if "All parts healthy" in text:
            return
        if "error:" in text:
            raise SystemExit(text)
        time.sleep(0.5)
    raise SystemExit(f"the stack did not come up in {timeout:.0f} s; see {log}")


def hub_cpu_seconds(stack_pid: int) -> float:
    """User and system CPU seconds of the stack's API and worker processes so far."""
    total = 0.0
    for child in psutil.Process(stack_pid).children(recursive=True):
        try:
            command = " ".join(child.cmdline())
            if any(marker in command for marker in HUB_PROCESSES):
                times = child.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


def describe(result: Round) -> str:
    kind = "traced  " if result.traced else "untraced"
    return (
        f"{kind}  ack p50 {result.ack_p50_ms:6.1f} ms  p99 {result.ack_p99_ms:7.1f} ms  "
        f"{result.leads_per_second:5.1f} leads/s  CPU {result.cpu_seconds:6.1f} s"
        f" ({result.cpu_ms_per_lead:5.1f} ms/lead)  spans {result.spans}"
    )


def summarize(rounds: list[Round]) -> None:
    print("\nmedians            untraced     traced    traced/untraced")
    for label, value in (
        ("ack p50 (ms)", lambda r: r.ack_p50_ms),
        ("ack p99 (ms)", lambda r: r.ack_p99_ms),
        ("leads/s", lambda r: r.leads_per_second),
        ("CPU ms per lead", lambda r: r.cpu_ms_per_lead),
    ):
        plain = statistics.median(value(r) for r in rounds if not r.traced)
        traced = statistics.median(value(r) for r in rounds if r.traced)
        print(f"{label:<16} {plain:10.1f} {traced:10.1f}    {traced / plain:6.2f}")
    spans = statistics.median(r.spans / max(r.delivered, 1) for r in rounds if r.traced)
    print(f"spans per lead (traced): {spans:.0f}")


if __name__ == "__main__":
    main()
