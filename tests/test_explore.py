"""--explore: the page's server answers what the page asks, refuses everything else with a 400
and a message, and keeps serving; in a real browser the page draws samples, walks the great
circle between two of them, changes class, and shows the SavedModel's own images."""
import base64
import io
import json
import os
import shutil
import signal
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
from conftest import ROOT, outside_images
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
    info = {"dataset": "mnist", "iteration": 2, "z_dim": Z_DIM, "num_classes": 3}
    return explore.Explorer(Sampler(gan, session, "raw", seed=1), info)


@pytest.fixture(scope="module")
def server(explorer):
    server = explore.Server(("127.0.0.1", 0), explore.handler_for(explorer, b"<!DOCTYPE html><p>page"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


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
    ({"z": [[0.1] * 300] * 300}, "z must be a list of 1 to 256"),
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


@pytest.mark.parametrize("raw, message", [
    (b"not json", "not JSON"), (b"[1, 2]", "a JSON object"), (b'{"z": [[NaN]]}', "NaN is not a number"),
    (b"\xff\xfe", "not JSON")])
def test_bodies_that_are_not_the_pages_are_400s(server, raw, message):
    status, answer = request(server + "/api/render", raw=raw)
    assert status == 400 and message in answer["error"]


def test_too_large_a_body_is_refused_unread(server):
    status, answer = request(server + "/api/render", raw=b"{}" * 10, headers={"Content-Length": str(1 << 30)})
    assert status == 400 and "1 to 1048576 bytes" in answer["error"]


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
def start_explorer(out):
    """main1.py --explore on any free port -> (process, URL), once it serves."""
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, "main1.py"), "--out-dir", out, "--explore",
                                "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    for line in process.stdout:
        if line.startswith("exploring"):
            return process, line.split(" at ", 1)[1].split(" ", 1)[0]
    raise AssertionError(f"--explore did not start: {process.stderr.read()[-2000:]}")


def stop(process):
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    return process.returncode, stdout, stderr


def test_explore_serves_on_this_machine_only_and_stops_cleanly_on_ctrl_c(exported_run):
    process, url = start_explorer(exported_run[0])
    try:
        assert url.startswith("http://127.0.0.1:")
        assert request(url + "api/info")[1]["iteration"] == 20
    finally:
        code, stdout, stderr = stop(process)
    assert code == 0 and "stopped serving (SIGINT)" in stdout and "Traceback" not in stderr


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
