"""What the browser scripts share: headless Chromium, and waiting for a page to show something."""
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service


def wait(what, check, limit=120):
    """Poll `check` until it returns something true; exit naming `what` after `limit` s."""
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            got = check()
            if got:
                return got
        except Exception:  # the page is being redrawn or navigated
            pass
        time.sleep(0.1)
    sys.exit(f"timed out waiting for {what}")


def start():
    """Headless Chromium that leaves a prompt open until the script answers it."""
    opts = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,900"):
        opts.add_argument(a)
    opts.set_capability("unhandledPromptBehavior", "ignore")
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
