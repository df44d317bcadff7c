"""--explore: a page to explore a run's generator, served from this machine until Ctrl-C.

The page (explore.html, one file with its own script, nothing fetched from elsewhere) asks this
server for noise and for images of noise vectors it sends; the great-circle walk between two
samples is computed in the page. Every request is checked (sizes, counts, numbers, classes):
a bad one gets a 400 with a one-line message, and the server goes on serving. It serves nothing
but the page and these answers, reads no file after start-up and writes none.
"""
import base64
import http.server
import json
import math
import os
import sys
import threading
import urllib.parse

import numpy as np

import latent
import outputs
import sampling
from config import CLASS_NAMES
from runs import Interrupted, UsageError

PAGE_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "explore.html")
MAX_BODY_BYTES = 1 << 20       # a render request of MAX_IMAGES vectors of 128 numbers is ~0.5 MB
MAX_IMAGES = 256               # images per request
MAX_ABS_Z = 100.0              # noise values beyond this are no exploration, only NaN bait
MAX_SCALE = 16                 # enlargement of the downloadable grid
MAX_COLUMNS = 64


class RequestError(ValueError):
    """A request the page would never send: answered with 400 and this message."""


class Explorer:
    """The run's generator behind the page: noise and images, checked; no HTTP here."""

    def __init__(self, sampler, info):
        self.sampler, self.info = sampler, info
        self.z_dim, self.num_classes = sampler.z_dim, sampler.num_classes
        self._lock = threading.Lock()  # one generator, many request threads

    def noise(self, query):
        """{"z": [[...], ...]}: `count` noise vectors drawn as in training, from `seed`."""
        seed = _integer(query, "seed", 0, 2**32 - 1)
        count = _integer(query, "count", 1, MAX_IMAGES)
        rng = np.random.default_rng([seed, latent.SAMPLE_STREAM])
        return {"z": latent.uniform_noise(rng, count, self.z_dim).tolist()}

    def render(self, body):
        """{"images": [PNG data URL per vector], "grid": one PNG data URL of them all} for
        {"z": [[z_dim numbers], ...], "labels": [class, ...] (conditional runs), "columns": n,
        "scale": s}."""
        z = self._vectors(body.get("z"))
        labels = self._labels(body.get("labels"), len(z))
        columns = _bounded(body.get("columns", min(len(z), 8)), "columns", 1, MAX_COLUMNS)
        scale = _bounded(body.get("scale", 1), "scale", 1, MAX_SCALE)
        with self._lock:
            images = self.sampler(z, labels=labels)
        rows = math.ceil(len(images) / columns)
        grid = outputs.upscale(outputs.tile_grid(images, rows, columns), scale)
        return {"images": [_data_url(outputs.encode_png(image)) for image in images],
                "grid": _data_url(outputs.encode_png(grid))}

    def _vectors(self, value):
        if not isinstance(value, list) or not 1 <= len(value) <= MAX_IMAGES:
            raise RequestError(f"z must be a list of 1 to {MAX_IMAGES} noise vectors")
        for row in value:
            if (not isinstance(row, list) or len(row) != self.z_dim
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in row)):
                raise RequestError(f"each noise vector must be a list of {self.z_dim} numbers")
        z = np.asarray(value, dtype=np.float64)
        if not np.all(np.isfinite(z)) or np.abs(z).max() > MAX_ABS_Z:
            raise RequestError(f"noise values must be finite numbers within +-{MAX_ABS_Z:g}")
        return z.astype(np.float32)

    def _labels(self, value, count):
        if not self.num_classes:
            if value is not None:
                raise RequestError("this run is unconditional: send no labels")
            return None
        if value is None:
            return latent.balanced_labels(count, self.num_classes)
        if (not isinstance(value, list) or len(value) != count
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
            raise RequestError(f"labels must be a list of {count} integers, one per noise vector")
        if not all(0 <= v < self.num_classes for v in value):
            raise RequestError(f"labels must be classes 0 to {self.num_classes - 1}")
        return np.asarray(value, np.int64)


def _data_url(png):
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _bounded(value, name, low, high):
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RequestError(f"{name} must be an integer from {low} to {high}")
    return value


def _integer(query, name, low, high):
    values = query.get(name)
    if not values or len(values) != 1:
        raise RequestError(f"give {name} once, an integer from {low} to {high}")
    try:
        value = int(values[0], 10)
    except ValueError:
        raise RequestError(f"{name} must be an integer from {low} to {high}") from None
    return _bounded(value, name, low, high)


def page_info(config, step, generator):
    """What the page shows about the run and needs to ask for images."""
    names = CLASS_NAMES.get(config.dataset) if config.num_classes else None
    return {"dataset": config.dataset, "iteration": step, "generator": generator, "recipe": config.recipe,
            "z_dim": config.z_dim, "image_shape": list(config.image_shape), "num_classes": config.num_classes,
            "class_names": list(names)[:config.num_classes] if names else None, "max_images": MAX_IMAGES,
            "out_dir": os.path.basename(os.path.normpath(config.out_dir))}


def handler_for(explorer, page):
    """The request handler class of a server for `explorer`, serving `page` (bytes) at /."""

    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "dcgan-explore"
        sys_version = ""

        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            if url.path in ("/", "/index.html"):
                self._send(200, page, "text/html; charset=utf-8")
            elif url.path == "/api/info":
                self._json(200, explorer.info)
            elif url.path == "/api/noise":
                self._answer(lambda: explorer.noise(urllib.parse.parse_qs(url.query, keep_blank_values=True)))
            else:
                self._json(404, {"error": "no such page"})

        def do_POST(self):
            if urllib.parse.urlsplit(self.path).path != "/api/render":
                self._json(404, {"error": "no such page"})
                return
            self._answer(lambda: explorer.render(self._body()))

        def _body(self):
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                raise RequestError("a render request needs a Content-Length") from None
            if not 0 < length <= MAX_BODY_BYTES:
                raise RequestError(f"the request body must be 1 to {MAX_BODY_BYTES} bytes")
            try:
                body = json.loads(self.rfile.read(length), parse_constant=_no_constant)
            except (ValueError, UnicodeDecodeError) as error:
                raise RequestError(f"the request body is not JSON: {error}") from None
            if not isinstance(body, dict):
                raise RequestError("the request body must be a JSON object")
            return body

        def _answer(self, work):
            try:
                self._json(200, work())
            except RequestError as error:
                self._json(400, {"error": str(error)})

        def _json(self, status, value):
            self._send(status, json.dumps(value).encode(), "application/json")

        def _send(self, status, content, content_type):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(content)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(content)

        def log_message(self, *_args):  # no line per request on the terminal
            pass

    return Handler


def _no_constant(name):
    raise RequestError(f"{name} is not a number the page sends")


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        """A failure inside one request (a client gone mid-answer, or a bug): one line on stderr,
        never a traceback to the client, and the server goes on."""
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            return
        print(f"main1.py: --explore: a request failed: {type(error).__name__}: {error}", file=sys.stderr)


def serve(config, seed, generator, host, port, checkpoint="latest", log=print):
    """--explore: serve the page for the latest checkpoint's generator until Ctrl-C -> exit code 0."""
    try:
        with open(PAGE_FILE, "rb") as stream:
            page = stream.read()
    except OSError as error:
        raise UsageError(f"cannot read the page {PAGE_FILE}: {error.strerror}") from None
    sampler, step = sampling.restore_run(config, seed, generator, checkpoint)
    explorer = Explorer(sampler, page_info(config, step, generator))
    try:
        server = Server((host, port), handler_for(explorer, page))
    except OSError as error:  # the port is taken, or the address is not this machine's
        raise UsageError(f"--host {host} --port {port}: cannot serve there: {error.strerror}") from None
    shown = f"[{host}]" if ":" in host else host
    log(f"exploring iteration {step} of {config.out_dir} ({generator} generator) at "
        f"http://{shown}:{server.server_address[1]}/ ; Ctrl-C stops", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except Interrupted as stop:
        log(f"stopped serving ({stop})")
    finally:
        server.server_close()
    return 0
