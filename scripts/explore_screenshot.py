"""A screenshot of the --explore page on a run, as in docs/export.md: the page opened with a fixed
noise seed, two samples picked, the slider part of the way along the great circle between them.

    python scripts/explore_screenshot.py --out-dir results/mnist --output docs/images/explore.png

Needs Debian's chromium and chromium-driver, and selenium (requirements.txt).
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import time

from selenium import webdriver

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", required=True, help="the run folder to explore")
    parser.add_argument("--output", required=True, help="the PNG to write")
    parser.add_argument("--seed", type=int, default=1, help="the page's noise seed (?seed=)")
    parser.add_argument("--picks", type=int, nargs=2, default=(0, 5), help="the two samples picked")
    parser.add_argument("--position", type=int, default=24, help="the slider's position, 0 to 64")
    args = parser.parse_args()
    server = subprocess.Popen([sys.executable, os.path.join(ROOT, "main1.py"), "--out-dir", args.out_dir,
                               "--explore", "--port", "0"], stdout=subprocess.PIPE, text=True)
    url = next(line.split(" at ", 1)[1].split(" ", 1)[0] for line in server.stdout if line.startswith("exploring"))
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1000,700",
                 "--hide-scrollbars", "--force-device-scale-factor=1"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options,
                              service=webdriver.ChromeService(executable_path=shutil.which("chromedriver")))
    try:
        driver.get(f"{url}?seed={args.seed}")
        wait_idle(driver)
        tiles = driver.find_elements("css selector", ".tile")
        for pick in args.picks:
            tiles[pick].click()
        wait_idle(driver)
        slider = driver.find_element("id", "slider")
        driver.execute_script("arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'))",
                              slider, args.position)
        wait_idle(driver)
        driver.save_screenshot(args.output)
        print(f"wrote {args.output} of {url}?seed={args.seed}, picks {args.picks}, slider {args.position}/64")
    finally:
        driver.quit()
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)


def wait_idle(driver, timeout=60):
    deadline = time.monotonic() + timeout
    while not driver.execute_script("return document.body.dataset.busy === '0' && window.explorer.z.length > 0"):
        if time.monotonic() > deadline:
            raise SystemExit("the page did not finish drawing")
        time.sleep(0.05)
    time.sleep(0.2)  # let the last images paint


if __name__ == "__main__":
    main()
