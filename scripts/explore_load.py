"""Load on the --explore server: parallel clients on 127.0.0.1 send the page's requests mixed with a
hostile user's; every answer's status is checked; requests/s, latency and the server's peak memory.

    python scripts/explore_load.py --out-dir RUN                    # main1.py --out-dir RUN --explore, loaded
    python scripts/explore_load.py --out-dir RUN --record records/explore/NAME.json
    python scripts/explore_load.py --table records/explore/*.json   # the docs' table of records

The requests (probes()) are raw bytes on a socket, so that malformed ones reach the server as a
hostile client would send them: bodies nested 100,000 deep or holding a 401-digit integer, lengths
that lie or are missing, methods the server does not serve, a 70 KB URL, and renders at and over
the pixel limit. tests/test_explore.py runs the same load against a server in its own process.
"""
import argparse
import collections
import concurrent.futures
import datetime
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import explore  # noqa: E402 (after the path that finds it)
import runs  # noqa: E402

Probe = collections.namedtuple("Probe", "name request expected page", defaults=[False])  # page: the page's own
Result = collections.namedtuple("Result", "name expected status seconds error page")


def post(path, body, length=None, extra=b""):
    """A POST's bytes; `length`: the Content-Length header's text (None: the body's length, "": none)."""
    length = str(len(body)) if length is None else length
    header = f"Content-Length: {length}\r\n".encode() if length != "" else b""
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n".encode()
            + header + extra + b"\r\n" + body)


def get(target, method="GET", extra=b""):
    return f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode() + extra + b"\r\n"


def render_body(info, count, columns, scale):
    """A render request as the page sends it: `count` noise vectors (and classes, on a conditional run)."""
    body = {"z": [[0.25] * info["z_dim"]] * count, "columns": columns, "scale": scale}
    if info["num_classes"]:
        body["labels"] = [i % info["num_classes"] for i in range(count)]
    return json.dumps(body).encode()


def largest_scale(info, count, columns):
    """The largest scale at which `count` images in `columns` columns stay within the pixel limit."""
    pixels = explore.grid_pixels(info["image_shape"], count, columns, 1)
    return max(1, min(explore.MAX_SCALE, int((explore.MAX_GRID_PIXELS / pixels) ** 0.5)))


def probes(info):
    """The load's requests for a run whose /api/info is `info`, each with the status it must get."""
    most = info["max_images"]
    z_row = "[" + ", ".join(["0.5"] * (info["z_dim"] - 1))
    page_grid = render_body(info, 16, 4, 4)
    return [
        Probe("the page", get("/"), 200, page=True),
        Probe("info", get("/api/info"), 200, page=True),
        Probe("noise", get("/api/noise?seed=3&count=16"), 200, page=True),
        Probe("the page's grid (16 images, 4x)", post("/api/render", page_grid), 200, page=True),
        Probe("the page's grid (16 images, 4x)", post("/api/render", page_grid), 200, page=True),
        Probe("a point of the walk (8x)", post("/api/render", render_body(info, 1, 1, 8)), 200, page=True),
        Probe(f"the largest grid ({most} images, 16 columns)",
              post("/api/render", render_body(info, most, 16, largest_scale(info, most, 16))), 200),
        Probe(f"over the pixel limit ({most} images, 1 column, 16x)",
              post("/api/render", render_body(info, most, 1, 16)), 400),
        Probe("nested 100,000 deep", post("/api/render", b"[" * 100_000), 400),
        Probe("10^400 as an integer", post("/api/render", f'{{"z": [{z_row}, 1{"0" * 400}]]}}'.encode()), 400),
        Probe("1e400", post("/api/render", f'{{"z": [{z_row}, 1e400]]}}'.encode()), 400),
        Probe("NaN", post("/api/render", f'{{"z": [{z_row}, NaN]]}}'.encode()), 400),
        Probe("a Content-Length of 1 GiB", post("/api/render", b"{}", length=str(1 << 30)), 413),
        Probe("no Content-Length", post("/api/render", b"", length=""), 411),
        Probe("a Content-Length that is no number", post("/api/render", b"{}", length="12abc"), 400),
        Probe("not UTF-8", post("/api/render", b'{"z": "\xff\xfe"}'), 400),
        Probe("not a JSON object", post("/api/render", b"[[0.5]]"), 400),
        Probe("PUT", post("/api/render", page_grid).replace(b"POST", b"PUT", 1), 501),
        Probe("DELETE", get("/", "DELETE"), 501),
        Probe("OPTIONS", get("*", "OPTIONS"), 501),
        Probe("a 70 KB URL", get("/api/noise?seed=1&count=1&pad=" + "a" * 70_000), 414),
        Probe("a 70 KB header", get("/", extra=b"X-Pad: " + b"a" * 70_000 + b"\r\n"), 431),
        Probe("not HTTP", b"HELLO\r\n\r\n", 400),
        Probe("no such page", get("/../config.json"), 404),
    ]


def exchange(address, request, timeout=60):
    """Send `request` on a new connection -> (status, answer, seconds); the answer (JSON, or the
    page's HTML bytes) must be complete, and a refusal a one-line JSON error, else ValueError."""
    start = time.perf_counter()
    with socket.create_connection(address, timeout=timeout) as connection:
        connection.sendall(request)
        chunks = []
        while chunk := connection.recv(1 << 16):
            chunks.append(chunk)
    seconds = time.perf_counter() - start
    head, _, content = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = dict(line.split(": ", 1) for line in lines[1:])
    if len(content) != int(headers["Content-Length"]):
        raise ValueError(f"{len(content)} bytes of an answer of {headers['Content-Length']}")
    if status == 200 and headers["Content-Type"].startswith("text/html"):
        return status, content, seconds
    if headers["Content-Type"] != "application/json":
        raise ValueError(f"a {status} answer of type {headers['Content-Type']}")
    answer = json.loads(content)
    if status != 200 and (not isinstance(answer.get("error"), str) or "\n" in answer["error"]):
        raise ValueError(f"a {status} without a one-line error: {answer}")
    return status, answer, seconds


def load(address, probes, requests, clients):
    """`requests` requests, the probes in turn, from `clients` threads at once -> [Result]."""
    def one(index):
        probe = probes[index % len(probes)]
        try:
            status, _, seconds = exchange(address, probe.request)
            return Result(probe.name, probe.expected, status, seconds, None, probe.page)
        except (OSError, ValueError, KeyError, IndexError) as error:
            return Result(probe.name, probe.expected, None, None, f"{type(error).__name__}: {error}", probe.page)
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        return list(pool.map(one, range(requests)))


def unexpected(results):
    """One line per result whose status is not the one expected (or that got no answer)."""
    return [f"{r.name}: {r.error or r.status} where {r.expected} was due" for r in results
            if r.status != r.expected]


class MemoryWatch:
    """The resident memory of process `pid` as the block begins (`before`) and its peak while the
    block runs (`peak`), read from /proc/PID/status every few milliseconds: the kernel's own peak
    (VmHWM) would include the start-up's."""

    def __init__(self, pid, every=0.005):
        self.pid, self.every, self.peak = pid, every, 0
        self._stop = threading.Event()

    def read(self):
        with open(f"/proc/{self.pid}/status") as stream:
            return next(int(line.split()[1]) * 1024 for line in stream if line.startswith("VmRSS:"))

    def __enter__(self):
        self.before = self.read()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self):
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, self.read())

    def __exit__(self, *_exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.read())


def percentile(values, share):
    return statistics.quantiles(values, n=100, method="inclusive")[share - 1]


def start_explorer(out_dir):
    """main1.py --out-dir OUT --explore on a free port -> (process, (host, port)), once it serves."""
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, "main1.py"), "--out-dir", out_dir, "--explore",
                                "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    for line in process.stdout:
        if line.startswith("exploring"):
            url = line.split(" at ", 1)[1].split(" ", 1)[0]
            host, port = url.removeprefix("http://").strip("/").rsplit(":", 1)
            return process, (host, int(port))
    raise RuntimeError(f"main1.py --explore did not start: {process.stderr.read()[-2000:]}")


def measure(out_dir, requests, clients):
    """The load against main1.py --explore on `out_dir` -> (figures, lines of unexpected answers)."""
    process, address = start_explorer(out_dir)
    busy = os.getloadavg()[0]  # other work on the machine slows the answers: the record says how much
    try:
        info = exchange(address, get("/api/info"))[1]
        with MemoryWatch(process.pid) as memory:
            start = time.perf_counter()
            results = load(address, probes(info), requests, clients)
            seconds = time.perf_counter() - start
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    problems = unexpected(results)
    if process.returncode != 130:
        problems.append(f"main1.py --explore ended with exit code {process.returncode} on SIGINT, not 130")
    if "Traceback" in stderr:
        problems.append("main1.py --explore printed a traceback: " + stderr[stderr.index("Traceback"):][:500])
    latencies = [r.seconds for r in results if r.seconds is not None]
    page = [r.seconds for r in results if r.seconds is not None and r.page]
    figures = {
        "run": {key: info[key] for key in ("dataset", "iteration", "z_dim", "image_shape", "num_classes", "out_dir")},
        "load_average": round(busy, 2), "clients": clients, "requests": requests, "seconds": round(seconds, 3),
        "requests_per_second": round(requests / seconds, 1),
        "p50_ms": round(1000 * percentile(latencies, 50), 1), "p95_ms": round(1000 * percentile(latencies, 95), 1),
        "page_p95_ms": round(1000 * percentile(page, 95), 1),
        "rss_before_mib": round(memory.before / 2**20, 1), "peak_rss_mib": round(memory.peak / 2**20, 1),
        "statuses": dict(sorted(collections.Counter(str(r.status) for r in results).items())),
    }
    return figures, problems


def format_records(paths):
    """Markdown: one row per record."""
    lines = ["| record | run served | machine | clients | requests | requests/s | p50 ms | p95 ms "
             "| p95 ms, the page's | memory before, MiB | peak, MiB |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for path in paths:
        with open(path) as stream:
            record = json.load(stream)
        run, machine = record["run"], record["machine"]
        shape = "x".join(str(side) for side in run["image_shape"])
        lines.append(f"| {os.path.splitext(os.path.basename(path))[0]} | {run['dataset']} {shape}, z_dim "
                     f"{run['z_dim']}, iteration {run['iteration']} | {machine['cpu']}, {machine['cores']} cores, load "
                     f"{record['load_average']:.1f} "
                     f"| {record['clients']} | {record['requests']} | {record['requests_per_second']:.1f} "
                     f"| {record['p50_ms']:.1f} | {record['p95_ms']:.1f} | {record['page_p95_ms']:.1f} "
                     f"| {record['rss_before_mib']:.0f} "
                     f"| {record['peak_rss_mib']:.0f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", help="the run folder to serve (main1.py --out-dir DIR --explore)")
    parser.add_argument("--requests", type=int, default=480, help="requests in all (default 480)")
    parser.add_argument("--clients", type=int, default=8, help="clients at once (default 8)")
    parser.add_argument("--record", metavar="FILE", help="also write the figures and the machine to this JSON file")
    parser.add_argument("--table", nargs="+", metavar="RECORD",
                        help="measure nothing: print the Markdown table of these records")
    args = parser.parse_args(argv)
    if args.table:
        print(format_records(args.table))
        return 0
    if not args.out_dir:
        parser.error("--out-dir RUN is needed (or --table RECORD...)")
    figures, problems = measure(args.out_dir, args.requests, args.clients)
    print(f"{figures['requests']} requests from {figures['clients']} clients in {figures['seconds']:.1f} s: "
          f"{figures['requests_per_second']:.1f} requests/s, latency p50 {figures['p50_ms']:.1f} ms, "
          f"p95 {figures['p95_ms']:.1f} ms (the page's own requests: p95 {figures['page_p95_ms']:.1f} ms); "
          f"server memory {figures['rss_before_mib']:.0f} MiB before, peak {figures['peak_rss_mib']:.0f} MiB; "
          f"statuses {figures['statuses']}")
    for line in problems:
        print(f"explore_load.py: unexpected: {line}", file=sys.stderr)
    if problems:
        return 1
    if args.record:
        record = {"command": "python scripts/explore_load.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                  "date": datetime.date.today().isoformat(), **figures, "machine": runs.machine()}
        os.makedirs(os.path.dirname(os.path.abspath(args.record)), exist_ok=True)
        with open(args.record, "w") as stream:
            json.dump(record, stream, indent=1)
            stream.write("\n")
        print(f"recorded in {args.record}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
