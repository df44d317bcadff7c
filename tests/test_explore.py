"""--explore: the page's server answers what the page asks, refuses everything else with a JSON
4xx and a one-line message, keeps serving, and keeps its memory bounded under hostile load; in a
real browser the page draws samples, walks the great circle between two of them, changes class,
and shows the SavedModel's own images."""
import base64
import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from conftest import ROOT, outside_images, run_main, script
from tiny_gan import Z_DIM, build, feed

import explore
from sampling import Sampler


@pytest.fixture(scope="module")
def explorer():
    _, gan, session = build(seed=2, num_classes=3, conditioning="concat")
    for step in range(2):
        values = feed(gan, seed=step)
        values[gan.labels] = np.arange(4) % 3
        session.run(gan.train_op, values)
    info = {"dataset": "mnist", "iteration": 2, "z_dim": Z_DIM, "num_classes": 3, "image_shape": [28, 28, 1],
            "max_images": explore.MAX_IMAGES}
    return explore.Explorer(Sampler(gan, session, "raw", seed=1), info)


def load_script():
    return script("explore_load")


explore_load = load_script()


@contextlib.contextmanager
def serving(explorer, **server_options):
    """A server for `explorer` on a free port of 127.0.0.1, in this process -> its URL."""
    server = explore.Server(("127.0.0.1", 0), explore.handler_for(explorer, b"<!DOCTYPE html><p>page"),
                            **server_options)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def server(explorer):
    with serving(explorer) as url:
        yield url


def address(url):
    return "127.0.0.1", int(url.rsplit(":", 1)[1].strip("/"))


def raw_answer(url, raw):
    """(head, content) of the answer to raw request bytes."""
    with socket.create_connection(address(url), timeout=30) as connection:
        connection.sendall(raw)
        answer = b"".join(iter(lambda: connection.recv(1 << 16), b""))
    head, _, content = answer.partition(b"\r\n\r\n")
    return head, content


def exchange(url, raw):
    """(status, answer) of raw request bytes, as a hostile client sends them; the script's checks
    hold: a complete answer, and a refusal is JSON with a one-line error."""
    status, answer, _ = explore_load.exchange(address(url), raw)
    return status, answer


def request(url, body=None, raw=None, headers=None):
    """(status, answer) of a GET, or of a POST of `body` as JSON (or of `raw` bytes)."""
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data, headers or {}), timeout=30) as answer:
            content = answer.read()
            status, kind = answer.status, answer.headers["Content-Type"]
    except urllib.error.HTTPError as error:
        content, status, kind = error.read(), error.code, error.headers["Content-Type"]
    return status, json.loads(content) if kind == "application/json" else content


def decode(data_url):
    assert data_url.startswith("data:image/png;base64,")
    return iio.imread(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1])))


def test_noise_is_drawn_from_the_seed_as_in_training(explorer):
    first = explorer.noise({"seed": ["7"], "count": ["5"]})["z"]
    assert np.array(first).shape == (5, Z_DIM) and np.abs(first).max() <= 1
    assert explorer.noise({"seed": ["7"], "count": ["5"]})["z"] == first
    assert explorer.noise({"seed": ["8"], "count": ["5"]})["z"] != first


def test_render_gives_one_png_per_vector_and_a_grid(explorer):
    z = np.random.default_rng(1).uniform(-1, 1, (6, Z_DIM)).tolist()
    answer = explorer.render({"z": z, "labels": [0, 1, 2, 0, 1, 2], "columns": 3, "scale": 2})
    tiles = [decode(image) for image in answer["images"]]
    assert len(tiles) == 6 and tiles[0].shape[:2] == (28, 28)
    expected = explorer.sampler(np.asarray(z, np.float32), labels=[0, 1, 2, 0, 1, 2])
    np.testing.assert_allclose(tiles[4].reshape(28, 28, -1)[..., :1] / 255.0, expected[4], atol=1 / 255 + 1e-6)
    grid = decode(answer["grid"])
    assert grid.shape[0] < grid.shape[1] and grid.shape[1] >= 2 * 3 * 28  # two rows of three, enlarged 2x


@pytest.mark.parametrize("query, message", [
    ({"count": ["5"]}, "give seed once"), ({"seed": ["-1"], "count": ["5"]}, "seed must be an integer from 0"),
    ({"seed": ["1"], "count": ["100000"]}, "count must be an integer from 1 to 256"),
    ({"seed": ["x"], "count": ["2"]}, "seed must be an integer"), ({"seed": ["1", "2"], "count": ["2"]}, "once")])
def test_bad_noise_requests_are_refused_with_the_reason(explorer, query, message):
    with pytest.raises(explore.RequestError, match=message):
        explorer.noise(query)


GOOD = [[0.1] * Z_DIM]
BAD_RENDERS = [
    ({}, "z must be a list of 1 to 256"), ({"z": []}, "z must be a list of 1 to 256"),
    ({"z": [[0.1] * Z_DIM] * 257}, "z must be a list of 1 to 256"),
    ({"z": [[0.1] * (Z_DIM - 1)]}, f"each noise vector must be a list of {Z_DIM} numbers"),
    ({"z": [["a"] * Z_DIM]}, "must be a list of"), ({"z": [[True] * Z_DIM]}, "must be a list of"),
    ({"z": [[1e300] * Z_DIM]}, "finite numbers within"), ({"z": GOOD, "labels": [3]}, "classes 0 to 2"),
    ({"z": GOOD, "labels": [0, 1]}, "labels must be a list of 1 integers"), ({"z": GOOD, "labels": [0.5]}, "integers"),
    ({"z": GOOD, "scale": 1000}, "scale must be an integer from 1 to 16"), ({"z": GOOD, "columns": 0}, "columns"),
]


@pytest.mark.parametrize("body, message", BAD_RENDERS, ids=[m for _, m in BAD_RENDERS])
def test_bad_render_requests_are_400s_and_the_server_goes_on(server, body, message):
    status, answer = request(server + "/api/render", body)
    assert status == 400 and message in answer["error"], answer
    status, answer = request(server + "/api/render", {"z": GOOD})
    assert status == 200 and len(answer["images"]) == 1


class ANY(str):
    """Equal to any string that holds this one."""

    def __eq__(self, other):
        return isinstance(other, str) and str(self) in other

    __hash__ = str.__hash__


ROW = ", ".join(["0.5"] * (Z_DIM - 1))
HOSTILE_BODIES = [
    (b"not json", "not JSON"), (b"[1, 2]", "a JSON object"), (b'{"z": [[NaN]]}', "NaN is not a number"),
    (b"\xff\xfe", "not UTF-8"), (b'{"z": "\xc3"}', "not UTF-8"), (b"[" * 100_000, "holds 100,000 lists and objects"),
    (b'{"z": ' + b"[" * 500 + b"]" * 500 + b"}", "more than a render request's 259"),
    (b'{"z": [' + b"{}," * 300 + b"{}]}", "holds 303 lists and objects"),
    (f'{{"z": [[{ROW}, 1{"0" * 400}]]}}'.encode(), "finite numbers within"),
    (f'{{"z": [[{ROW}, -1{"0" * 400}]]}}'.encode(), "finite numbers within"),
    (f'{{"z": [[{ROW}, 1e400]]}}'.encode(), "finite numbers within"),
    (f'{{"z": [[{ROW}, 1{"0" * 5000}]]}}'.encode(), "not JSON"),
    (f'{{"z": [[{ROW}, 0.5]], "scale": 1{"0" * 400}}}'.encode(), "scale must be an integer from 1 to 16"),
    (f'{{"z": [[{ROW}, 0.5]], "labels": [1{"0" * 400}]}}'.encode(), "classes 0 to 2"),
    (b'"a string"', "a JSON object"), (b"null", "a JSON object"), (b" ", "not JSON"),
]


@pytest.mark.parametrize("raw, message", HOSTILE_BODIES, ids=[m for _, m in HOSTILE_BODIES])
def test_bodies_that_are_not_the_pages_are_400s(server, raw, message):
    status, answer = exchange(server, explore_load.post("/api/render", raw))
    assert status == 400 and message in answer["error"], answer


@pytest.mark.parametrize("length, status, message", [
    (str(1 << 30), 413, "at most 1048576 bytes"), ("9" * 5000, 413, "at most 1048576 bytes"),
    ("", 411, "needs a Content-Length"), ("12abc", 400, "one whole number"), ("-5", 400, "one whole number"),
    ("1_0", 400, "one whole number"), ("0", 400, "empty")])
def test_a_missing_or_lying_length_is_refused_unread(server, length, status, message):
    assert exchange(server, explore_load.post("/api/render", b"{}", length=length)) == (status, {"error": ANY(message)})


def test_two_lengths_are_refused(server):
    raw = explore_load.post("/api/render", b"{}", extra=b"Content-Length: 2\r\n")
    assert exchange(server, raw) == (400, {"error": ANY("one whole number")})


@pytest.mark.parametrize("raw, status, message", [
    (b"PUT /api/render HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", 501, "Unsupported method ('PUT')"),
    (b"DELETE / HTTP/1.1\r\n\r\n", 501, "Unsupported method ('DELETE')"),
    (b"PATCH / HTTP/1.1\r\n\r\n", 501, "Unsupported method"), (b"OPTIONS * HTTP/1.1\r\n\r\n", 501, "Unsupported"),
    (b"HEAD / HTTP/1.1\r\n\r\n", 501, None),
    (b"GET /api/noise?seed=1&count=1&x=" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414, "Request-URI Too Long"),
    (b"GET / HTTP/1.1\r\nX-Pad: " + b"a" * 70_000 + b"\r\n\r\n", 431, "Line too long"),
    (b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 101 + b"\r\n", 431, "Too many headers"),
    (b"HELLO\r\n\r\n", 400, "Bad request syntax"), (b"GET / HTTP/9.9\r\n\r\n", 505, "Invalid HTTP version"),
    (b"GET / HTTP/1.x" + b"1" * 1000 + b"\r\n\r\n", 400, "Bad request version"),
    (b"GET http://[x/api/info HTTP/1.1\r\n\r\n", 404, "no such page")])
def test_every_refusal_is_json(server, raw, status, message):
    """The standard library's own refusals come as JSON too, with the message cut short."""
    head, content = raw_answer(server, raw)
    assert head.startswith(f"HTTP/1.0 {status} ".encode()) and b"Content-Type: application/json" in head, head
    if message is None:  # HEAD: the headers only
        assert content == b""
        return
    error = json.loads(content)["error"]
    assert message in error and len(error) <= 203 and "\n" not in error


def test_a_render_over_the_pixel_limit_is_refused_before_anything_is_drawn(explorer):
    with pytest.raises(explore.RequestError, match="62,930,944 pixels, over the limit of 4,194,304"):
        explorer.check({"z": [[0.1] * Z_DIM] * 256, "columns": 1, "scale": 16})  # the hostile user's 0.75 GB
    scale = explore_load.largest_scale(explorer.info, 256, 16)  # the load's largest grid: within; one more, over
    pixels = [explore.grid_pixels([28, 28, 1], 256, 16, s) for s in (scale, scale + 1)]
    assert pixels[0] <= explore.MAX_GRID_PIXELS < pixels[1]
    grid = decode(explorer.render({"z": [[0.1] * Z_DIM] * 5, "columns": 2, "scale": 3})["grid"])
    assert grid.shape[0] * grid.shape[1] == explore.grid_pixels([28, 28, 1], 5, 2, 3)  # the count is the grid's


def test_renders_beyond_the_cap_wait_their_turn_then_get_a_503(server, explorer, monkeypatch):
    monkeypatch.setattr(explore, "RENDER_WAIT_SECONDS", 0.3)
    raw = explore_load.post("/api/render", json.dumps({"z": GOOD}).encode())
    for _ in range(explore.MAX_RENDERS):
        explorer._renders.acquire()
    try:
        start = time.monotonic()
        head, content = raw_answer(server, raw)
        waited = time.monotonic() - start
        later = threading.Timer(0.1, explorer._renders.release)  # a turn comes within the wait
        later.start()
        served = exchange(server, raw)[0]
        later.join()
    finally:
        for _ in range(explore.MAX_RENDERS - 1):
            explorer._renders.release()
    assert head.startswith(b"HTTP/1.0 503 ") and b"Retry-After: 1" in head and waited >= 0.3
    assert "busy: 2 renders were in progress" in json.loads(content)["error"]
    assert served == 200


def test_connections_beyond_the_cap_wait_in_the_kernel_until_a_thread_is_free(explorer):
    with serving(explorer, connections=2) as url:
        silent = [socket.create_connection(address(url), timeout=30) for _ in range(2)]
        answers = []
        waiting = threading.Thread(target=lambda: answers.append(request(url + "/api/info")[0]))
        waiting.start()
        waiting.join(0.5)
        assert waiting.is_alive() and not answers  # both threads are taken by clients that say nothing
        silent[0].close()
        waiting.join(30)
        silent[1].close()
    assert answers == [200]


def test_a_client_that_trickles_its_body_is_cut_off(explorer, monkeypatch):
    monkeypatch.setattr(explore, "CLIENT_SECONDS", 0.5)
    with serving(explorer) as url, socket.create_connection(address(url), timeout=30) as connection:
        connection.sendall(explore_load.post("/api/render", b"{", length="100"))
        start = time.monotonic()
        with contextlib.suppress(OSError):  # the server may have closed before the last byte
            for _ in range(8):
                time.sleep(0.1)  # each byte within the socket's timeout, all of them past the deadline
                connection.sendall(b" ")
        answer = b"".join(iter(lambda: connection.recv(1 << 16), b""))
    assert answer.startswith(b"HTTP/1.0 408 ") and time.monotonic() - start < 5
    assert json.loads(answer.partition(b"\r\n\r\n")[2]) == {"error": "the request body did not arrive within 0.5 s"}


def test_a_failure_inside_a_render_is_a_500_and_one_line_not_a_traceback(server, explorer, monkeypatch, capsys):
    def broken(*_args, **_kwargs):
        raise RuntimeError("a bug")
    monkeypatch.setattr(explorer, "sampler", broken)
    status, answer = request(server + "/api/render", {"z": GOOD})
    assert status == 500 and answer == {"error": "the server failed on this request (RuntimeError)"}
    assert "main1.py: --explore: a request failed: RuntimeError: a bug\n" in capsys.readouterr().err
    monkeypatch.undo()
    assert request(server + "/api/render", {"z": GOOD})[0] == 200


def test_hostile_load_gets_every_answer_right_and_memory_stays_bounded(server):
    """8 clients, 240 requests: the page's own and a hostile user's (scripts/explore_load.py's
    probes), each with the status due. Before the limits, the over-limit render alone took ~0.75 GB."""
    info = request(server + "/api/info")[1]
    probes = explore_load.probes(info)
    explore_load.load(address(server), probes, len(probes), 8)  # warm: the allocator's arenas hold a large grid
    with explore_load.MemoryWatch(os.getpid()) as memory:
        results = explore_load.load(address(server), probes, 240, 8)
    assert len(results) == 240 and explore_load.unexpected(results) == []
    # Two grids of at most 4.2 Mpx (12 bytes a grey pixel: 100 MB) and 8 bodies (~10 MB each, parsed).
    assert memory.peak - memory.before < 400 * 2**20, (memory.before, memory.peak)


def test_the_server_serves_the_page_its_answers_and_nothing_else(server):
    status, page = request(server + "/")
    assert status == 200 and page.startswith(b"<!DOCTYPE html>")
    for path in ("/../../etc/passwd", "/explore.py", "/api/render", "/config.json"):
        status, answer = request(server + path)
        assert status == 404 and answer == {"error": "no such page"}, path
    assert request(server + "/api/info")[1]["num_classes"] == 3
    status, answer = request(server + "/api/noise?seed=3&count=2")
    assert status == 200 and len(answer["z"]) == 2


def test_the_page_is_one_file_that_fetches_nothing_from_elsewhere():
    page = Path(explore.PAGE_FILE).read_text()
    assert "<script>" in page and "src=\"http" not in page and "href=\"http" not in page
    assert "@import" not in page and "//cdn" not in page


# ----------------------------------------------------------------------------- main1.py --explore
def start_explorer(out, *flags):
    """main1.py --explore (and `flags`) on any free port -> (process, URL), once it serves."""
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, "main1.py"), "--out-dir", out, "--explore",
                                "--port", "0", *flags], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=ROOT)
    for line in process.stdout:
        if line.startswith("exploring"):
            return process, line.split(" at ", 1)[1].split(" ", 1)[0]
    raise AssertionError(f"--explore did not start: {process.stderr.read()[-2000:]}")


def stop(process, signum=signal.SIGINT):
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=60)
    return process.returncode, stdout, stderr


@pytest.mark.parametrize("signum, exit_code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_explore_serves_on_this_machine_only_and_a_signal_stops_it_with_its_exit_code(exported_run, signum, exit_code):
    """130 for Ctrl-C, 143 for SIGTERM, as every command of main1.py that a signal stops
    (docs/run-folders.md)."""
    process, url = start_explorer(exported_run[0])
    try:
        assert url.startswith("http://127.0.0.1:")
        assert request(url + "api/info")[1]["iteration"] == 20
    finally:
        code, stdout, stderr = stop(process, signum)
    assert code == exit_code and f"stopped serving ({signal.Signals(signum).name})" in stdout
    assert "Traceback" not in stderr


def test_the_load_script_loads_a_run_and_tables_its_record(exported_run, tmp_path, capsys):
    record = tmp_path / "explore" / "tiny.json"
    assert explore_load.main(["--out-dir", exported_run[0], "--requests", "48", "--record", str(record)]) == 0
    saved = json.loads(record.read_text())
    assert saved["requests"] == 48 and saved["clients"] == 8 and saved["machine"]["cpu"]
    assert sum(saved["statuses"].values()) == 48 and saved["statuses"]["200"] > 0 and saved["run"]["iteration"] == 20
    assert saved["peak_rss_mib"] >= saved["rss_before_mib"] > 0 and saved["p95_ms"] >= saved["p50_ms"] > 0
    assert saved["page_p95_ms"] > 0 and saved["load_average"] >= 0
    capsys.readouterr()
    assert explore_load.main(["--table", str(record)]) == 0
    header, rule, row = capsys.readouterr().out.splitlines()
    assert header.startswith("| record | run served |") and rule.startswith("|---|")
    assert row.startswith("| tiny | mnist 28x28x1, z_dim ") and f"| {saved['requests_per_second']:.1f} |" in row


def test_a_taken_port_is_one_line(exported_run):
    process, url = start_explorer(exported_run[0])
    try:
        port = url.rsplit(":", 1)[1].strip("/")
        result = subprocess.run([sys.executable, os.path.join(ROOT, "main1.py"), "--out-dir", exported_run[0],
                                 "--explore", "--port", port], capture_output=True, text=True, cwd=ROOT, timeout=300,
                                check=False)
        assert result.returncode == 2
        assert f"main1.py: error: --host 127.0.0.1 --port {port}: cannot serve there" in result.stderr
    finally:
        stop(process)


# ----------------------------------------------------------------------------- a real browser
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def browser():
    """Headless Chromium driven through Debian's chromedriver (no driver download)."""
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (CHROMIUM and DRIVER):
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1100,800"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))


def wait_idle(driver, timeout=60):
    """Until the page has no request in flight and has drawn what it asked for."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if driver.execute_script("return document.body.dataset.busy === '0' && window.explorer.z.length > 0"):
            return
        time.sleep(0.05)
    raise AssertionError("the page stayed busy: " + driver.find_element("id", "status").text)


def shown(element):
    """The image an <img> shows, as [H, W] values in [0, 1] (the PNG's first channel)."""
    image = decode(element.get_attribute("src"))
    return (image[..., 0] if image.ndim == 3 else image) / 255.0


def test_the_page_works_in_a_real_browser_and_shows_the_saved_models_images(exported_run, tmp_path):
    driver = browser()
    process, url = start_explorer(exported_run[0])
    try:
        driver.get(url)
        wait_idle(driver)
        tiles = driver.find_elements("css selector", ".tile")
        assert len(tiles) == 16
        assert "iteration 20" in driver.find_element("id", "info").text
        grid_z = driver.execute_script("return window.explorer.z")
        tiles[2].click()
        tiles[9].click()
        wait_idle(driver)
        assert driver.execute_script("return window.explorer.picked") == [2, 9]
        morph = driver.find_element("id", "morph")
        start = shown(morph)
        slider = driver.find_element("id", "slider")
        driver.execute_script("arguments[0].value = 40; arguments[0].dispatchEvent(new Event('input'))", slider)
        wait_idle(driver)
        middle, middle_z = shown(morph), driver.execute_script("return window.explorer.morphZ")
        label = driver.execute_script("return window.explorer.morphLabel")
        assert np.abs(middle - start).max() > 0.02  # walking the path changes the picture
        # The path is the great circle: the point keeps a norm between the ends' and lies in their plane.
        a, b, point = np.array(grid_z[2]), np.array(grid_z[9]), np.array(middle_z)
        coefficients, residual = np.linalg.lstsq(np.stack([a, b], 1), point, rcond=None)[:2]
        assert residual.sum() < 1e-9 and min(np.linalg.norm(a), np.linalg.norm(b)) - 1e-6 <= np.linalg.norm(point)
        # The picture is the SavedModel's image of that point, drawn by a process without this project.
        saved_model = os.path.join(exported_run[0], "export", "saved_model")
        images, _, _ = outside_images(saved_model, tmp_path, [middle_z, grid_z[2]], [label, 2 % 10])
        assert np.abs(middle - images[0][..., 0]).max() <= 1 / 255 + 1e-6
        assert np.abs(shown(tiles[2]) - images[1][..., 0]).max() <= 1 / 255 + 1e-6
        # A class picked: the grid and the walk are drawn in that class; the strip shows every class.
        strip = driver.find_elements("css selector", "#classes img")
        assert len(strip) == 10
        before = shown(tiles[0])
        driver.find_element("css selector", "#class-picker option[value='7']").click()
        wait_idle(driver)
        tiles = driver.find_elements("css selector", ".tile")
        assert driver.execute_script("return window.explorer.morphLabel") == 7
        assert np.abs(shown(tiles[0]) - before).max() > 0.02
        sevens, _, _ = outside_images(saved_model, tmp_path, [grid_z[0]], [7])
        assert np.abs(shown(tiles[0]) - sevens[0][..., 0]).max() <= 1 / 255 + 1e-6
        # New noise: a new grid, the walk cleared; nothing went wrong on the way.
        driver.find_element("id", "new-noise").click()
        wait_idle(driver)
        assert driver.execute_script("return window.explorer.z") != grid_z
        assert driver.find_element("id", "slider").get_attribute("disabled") == "true"
        assert driver.find_element("id", "status").text == ""
        assert driver.execute_script("return window.explorer.lastGrid").startswith("data:image/png;base64,")
    finally:
        driver.quit()
        stop(process)


def test_overwrite_is_refused_while_an_explorer_serves_the_run_and_says_so(exported_run, data_dir, tmp_path):
    """An explorer holds the folder as every reader does: --overwrite is refused in one line that
    names --explore among what can hold it, deletes nothing, and the explorer serves on."""
    out = str(tmp_path / "copy")
    shutil.copytree(exported_run[0], out)
    before = sorted(path.relative_to(out) for path in Path(out).rglob("*"))
    process, url = start_explorer(out)
    try:
        code, _, stderr = run_main("--out-dir", out, "--overwrite", "--data-dir", data_dir, "--steps", 4,
                                   "--batch-size", 4, "--snapshot-every", 2)
        still_serving = request(url + "api/info")[0]
    finally:
        stop(process)
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("main1.py: error: --overwrite: another command (") and "--explore" in lines[0], lines
    assert sorted(path.relative_to(out) for path in Path(out).rglob("*")) == before and still_serving == 200
