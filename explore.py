"""--explore: a page to explore a run's generator, served from this machine until Ctrl-C.

The page (explore.html, one file with its own script, nothing fetched from elsewhere) asks this
server for noise and for images of noise vectors it sends; the great-circle walk between two
samples is computed in the page. Every request is checked (sizes, counts, numbers, classes, the
pixels of the picture asked for): a bad one gets a 4xx with a one-line JSON message, and the
server goes on serving. Memory stays bounded whatever clients do: at most MAX_CONNECTIONS request
threads, each holding at most a MAX_BODY_BYTES body, and at most MAX_RENDERS pictures of at most
MAX_GRID_PIXELS being made at once. It serves nothing but the page and these answers, reads no
file after start-up and writes none.
"""
import base64
import collections
import http.server
import json
import math
import os
import sys
import threading
import time
import urllib.parse

import numpy as np

import latent
import outputs
import sampling
from config import CLASS_NAMES
from runs import Interrupted, UsageError

PAGE_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "explore.html")
MAX_BODY_BYTES = 1 << 20       # a render request of MAX_IMAGES vectors of 128 numbers is ~0.7 MB
MAX_IMAGES = 256               # images per request
MAX_CONTAINERS = MAX_IMAGES + 3  # [ and { in a render request: the object, z, its vectors, labels
MAX_ABS_Z = 100.0              # noise values beyond this are no exploration, only NaN bait
MAX_SCALE = 16                 # enlargement of the downloadable grid
MAX_COLUMNS = 64
GRID_PAD = 2                   # pixels between the tiles of a grid (outputs.tile_grid's pad)
MAX_GRID_PIXELS = 1 << 22      # 4,194,304: 3.7x the page's largest grid (16 64x64 tiles at 4x); see draw()
MAX_RENDERS = 2                # pictures made at once: generation is serialised, more would add only memory
RENDER_WAIT_SECONDS = 10       # a render waits this long for its turn, then gets a 503
MAX_CONNECTIONS = 16           # request threads at once; further connections queue in the kernel
CLIENT_SECONDS = 10            # a client silent this long, or sending its body for longer, is cut off

Render = collections.namedtuple("Render", "z labels columns scale")


class RequestError(ValueError):
    """A request the page would never send, or one that cannot be served now: answered with
    `status` (400 unless said) and this message."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


class Explorer:
    """The run's generator behind the page: noise and images, checked; no HTTP here."""

    def __init__(self, sampler, info):
        self.sampler, self.info = sampler, info
        self.z_dim, self.num_classes = sampler.z_dim, sampler.num_classes
        self.image_shape = sampler.gan.image_shape
        self._lock = threading.Lock()  # one generator, many request threads
        self._renders = threading.BoundedSemaphore(MAX_RENDERS)

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
        return self.draw(self.check(body))

    def check(self, body):
        """A render request's body -> Render, or RequestError saying what is wrong with it."""
        z = self._vectors(body.get("z"))
        labels = self._labels(body.get("labels"), len(z))
        columns = _bounded(body.get("columns", min(len(z), 8)), "columns", 1, MAX_COLUMNS)
        scale = _bounded(body.get("scale", 1), "scale", 1, MAX_SCALE)
        pixels = grid_pixels(self.image_shape, len(z), columns, scale)
        if pixels > MAX_GRID_PIXELS:
            raise RequestError(f"the grid asked for has {pixels:,} pixels, over the limit of {MAX_GRID_PIXELS:,}: "
                               f"send fewer vectors, more columns or a smaller scale")
        return Render(z, labels, columns, scale)

    def draw(self, request):
        """The images and grid of a checked Render, at most MAX_RENDERS at once: the grid's float32
        copies (tiled, enlarged, clipped, scaled) take ~12 bytes a pixel and channel, 50 MB for a
        grey grid of MAX_GRID_PIXELS and 150 MB for a colour one."""
        if not self._renders.acquire(timeout=RENDER_WAIT_SECONDS):
            raise RequestError(f"busy: {MAX_RENDERS} renders were in progress for {RENDER_WAIT_SECONDS} s; "
                               f"try again", status=503)
        try:
            with self._lock:
                images = self.sampler(request.z, labels=request.labels)
            rows = math.ceil(len(images) / request.columns)
            grid = outputs.tile_grid(images, rows, request.columns, pad=GRID_PAD)
            return {"images": [_data_url(outputs.encode_png(image)) for image in images],
                    "grid": _data_url(outputs.encode_png(outputs.upscale(grid, request.scale)))}
        finally:
            self._renders.release()

    def _vectors(self, value):
        if not isinstance(value, list) or not 1 <= len(value) <= MAX_IMAGES:
            raise RequestError(f"z must be a list of 1 to {MAX_IMAGES} noise vectors")
        for row in value:
            if (not isinstance(row, list) or len(row) != self.z_dim
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in row)):
                raise RequestError(f"each noise vector must be a list of {self.z_dim} numbers")
        # Checked in Python before numpy sees them: NaN fails the comparison, and an integer
        # written with 400 digits is refused here rather than overflowing the float conversion.
        if not all(abs(v) <= MAX_ABS_Z for row in value for v in row):
            raise RequestError(f"noise values must be finite numbers within +-{MAX_ABS_Z:g}")
        return np.asarray(value, dtype=np.float32)

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


def grid_pixels(image_shape, count, columns, scale):
    """Pixels of the grid that tile_grid and upscale would make of `count` images, known before
    anything is drawn."""
    height, width = image_shape[:2]
    rows = math.ceil(count / columns)
    return (rows * (height + GRID_PAD) + GRID_PAD) * (columns * (width + GRID_PAD) + GRID_PAD) * scale**2


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
    except ValueError:  # not digits, or more digits than int() reads
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
        default_request_version = "HTTP/1.0"  # a status line and headers even for a garbled request
        timeout = CLIENT_SECONDS  # on the socket: a silent client frees its thread

        def do_GET(self):
            path, query = self._target()
            if path in ("/", "/index.html"):
                self._send(200, page, "text/html; charset=utf-8")
            elif path == "/api/info":
                self._json(200, explorer.info)
            elif path == "/api/noise":
                self._answer(lambda: explorer.noise(urllib.parse.parse_qs(query, keep_blank_values=True)))
            else:
                self._json(404, {"error": "no such page"})

        def do_POST(self):
            if self._target()[0] != "/api/render":
                self._json(404, {"error": "no such page"})
                return
            # Checked, then drawn: the parsed body is let go before the wait for a turn to render.
            self._answer(lambda: explorer.draw(explorer.check(self._body())))

        def _target(self):
            """(path, query) of the request line's target; partition never fails, where urlsplit
            raises on a hostile target such as 'http://[x/'."""
            path, _, query = self.path.partition("#")[0].partition("?")
            return path, query

        def _body(self):
            """The JSON object a render request sends, or RequestError."""
            raw = self._read(self._content_length())
            # Counted before parsing: a megabyte of [] would parse into ~24 MB of lists, and
            # 100,000 nested ones into a RecursionError; the page's body has a few hundred.
            containers = raw.count(b"[") + raw.count(b"{")
            if containers > MAX_CONTAINERS:
                raise RequestError(f"the request body holds {containers:,} lists and objects (nested or not), "
                                   f"more than a render request's {MAX_CONTAINERS}")
            try:
                body = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
            except UnicodeDecodeError:
                raise RequestError("the request body is not UTF-8 text") from None
            except ValueError as error:
                raise RequestError(f"the request body is not JSON: {error}") from None
            if not isinstance(body, dict):
                raise RequestError("the request body must be a JSON object")
            return body

        def _content_length(self):
            values = self.headers.get_all("Content-Length") or []
            if not values:
                raise RequestError("a render request needs a Content-Length", status=411)
            text = values[0].strip() if len(values) == 1 else ""
            if not (text.isascii() and text.isdigit()):
                raise RequestError("Content-Length must be one whole number of bytes")
            length = int(text) if len(text) <= 9 else MAX_BODY_BYTES + 1  # 5,000 digits never reach int()
            if length > MAX_BODY_BYTES:
                raise RequestError(f"the request body must be at most {MAX_BODY_BYTES} bytes", status=413)
            if length == 0:
                raise RequestError("the request body is empty: send a JSON object")
            return length

        def _read(self, length):
            """`length` bytes within CLIENT_SECONDS in all: a client trickling its body byte by byte
            would otherwise hold its thread for as long as it likes."""
            deadline, parts = time.monotonic() + CLIENT_SECONDS, []
            try:
                while length > 0:
                    self.connection.settimeout(max(deadline - time.monotonic(), 0.001))
                    part = self.rfile.read1(min(length, 1 << 16))
                    if not part:
                        raise RequestError("the request body ended before its Content-Length")
                    parts.append(part)
                    length -= len(part)
            except TimeoutError:
                raise RequestError(f"the request body did not arrive within {CLIENT_SECONDS} s",
                                   status=408) from None
            finally:
                self.connection.settimeout(self.timeout)
            return b"".join(parts)

        def _answer(self, work):
            """200 and work()'s answer; a refused request: its status and one line; a failure: a 500
            here and one line on the server's stderr, never a traceback."""
            try:
                status, answer = 200, work()
            except RequestError as error:
                status, answer = error.status, {"error": str(error)}
            except Exception as error:  # noqa: BLE001 (a bug or no memory: answered, said, and served on)
                _report(error)
                status, answer = 500, {"error": f"the server failed on this request ({type(error).__name__})"}
            self._json(status, answer)

        def send_error(self, code, message=None, explain=None):
            """The standard library's own refusals (a method other than GET and POST, a request line
            or header over its limits, a malformed request) in JSON like every other answer, not its
            HTML page; its message quotes the request, so it is cut short."""
            phrase = message or self.responses.get(code, ("refused",))[0]
            self.close_connection = True
            self._json(code, {"error": phrase if len(phrase) <= 200 else phrase[:200] + "..."})

        def _json(self, status, value):
            self._send(status, json.dumps(value).encode(), "application/json")

        def _send(self, status, content, content_type):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(content)))
            self.send_header("Cache-Control", "no-store")
            if status == 503:
                self.send_header("Retry-After", "1")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(content)

        def log_message(self, *_args):  # no line per request on the terminal
            pass

    return Handler


def _no_constant(name):
    raise RequestError(f"{name} is not a number the page sends")


def _report(error):
    print(f"main1.py: --explore: a request failed: {type(error).__name__}: {error}", file=sys.stderr)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False     # Ctrl-C stops at once: a request in flight is cut off, not awaited
    request_queue_size = 64    # connections waiting for a thread (MAX_CONNECTIONS) wait in the kernel

    def __init__(self, address, handler, connections=MAX_CONNECTIONS):
        self._connections = threading.BoundedSemaphore(connections)
        super().__init__(address, handler)

    def process_request(self, request, client_address):
        """A thread per connection, at most `connections` at once: beyond them this accept loop
        waits for one to end, and new connections queue in the kernel at no cost to this process."""
        self._connections.acquire()
        thread = threading.Thread(target=self.process_request_thread, args=(request, client_address),
                                  daemon=True)
        try:
            thread.start()
        except BaseException:
            # Not started (or a signal arrived as it started): the thread releases only what it ran.
            if thread.ident is None:
                self._connections.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._connections.release()

    def handle_error(self, request, client_address):
        """A failure outside the answers' own checks (a client gone mid-answer, or a bug): one
        line on stderr, never a traceback to the client, and the server goes on."""
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            return
        _report(error)


def serve(config, seed, generator, host, port, checkpoint="latest", log=print):
    """--explore: serve the page for the latest checkpoint's generator until Ctrl-C or SIGTERM ->
    exit code 130 or 143, as for every command of main1.py that a signal stops."""
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
        return stop.exit_code
    finally:
        server.server_close()
    return 0  # serve_forever returns only when asked to (server.shutdown()), which nothing here does
