"""End to end: the chat page served at GET / drives `troupe serve` from headless Chromium.

Checks that the page is the embedded src/troupe/net/static/chat.html, loads without console
errors, streams an answer in, stops a long answer with #stop, keeps the conversation for a
follow-up, and passes ?api_key=K on to the WebSocket. Needs Debian's chromium and
chromium-driver and pip's selenium (scripts/install_test_deps.sh).
"""

import os
import pathlib
import re
import shutil
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import troupe_server  # noqa: E402

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

PAGE_SOURCE = (pathlib.Path(__file__).resolve().parents[2] / "src" / "troupe" / "net" / "static"
               / "chat.html")
SCREENSHOT = "/tmp/chat_page.png"
WHOLE_TEST_S = 110

# Runs before the page's own script: records every frame the page sends, and every change
# to an answer's text with the answer's state at that moment, so the test sees each delta
# land however slowly it polls.
RECORDER = """
window.__sent = [];
const original_send = WebSocket.prototype.send;
WebSocket.prototype.send = function (data) { window.__sent.push(JSON.parse(data)); return original_send.call(this, data); };
window.__growth = [];
new MutationObserver((records) => {
  for (const r of records) {
    const answer = r.target.parentElement && r.target.parentElement.closest('.assistant');
    if (answer) window.__growth.push({index: [...document.querySelectorAll('.assistant')].indexOf(answer),
                                      length: r.target.data.length, state: answer.dataset.state});
  }
}).observe(document, {subtree: true, characterData: true});
"""


class TestFailure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise TestFailure(message)


def wait_for(what, predicate, timeout_s, poll_s=0.05):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TestFailure(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(poll_s)


def start_browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    check(chromium and driver_path, "chromium and chromedriver must be on PATH "
          "(scripts/install_test_deps.sh installs Debian's chromium and chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--no-proxy-server", "--window-size=1200,800"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(10)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORDER})
    return driver


class ChatPage:
    def __init__(self, driver):
        self.driver = driver
        self.console_errors = []

    def el(self, css):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def status(self):
        return self.el("#status").get_attribute("data-state")

    def answers(self):
        return self.driver.find_elements(By.CSS_SELECTOR, "#messages .assistant")

    def answer_state(self, index):
        return self.answers()[index].get_attribute("data-state")

    def answer_text(self, index):
        return self.answers()[index].find_element(By.CSS_SELECTOR, ".text").text

    def answer_stats(self, index):
        return self.answers()[index].find_element(By.CSS_SELECTOR, ".stats").text

    def set_field(self, css, value):
        field = self.el(css)
        field.clear()
        field.send_keys(str(value))

    def ask(self, text, use_enter=False):
        num_before = len(self.answers())
        self.set_field("#prompt", text)
        if use_enter:
            self.el("#prompt").send_keys(Keys.ENTER)
        else:
            self.el("#send").click()
        wait_for("the new answer to appear", lambda: len(self.answers()) == num_before + 1, 10)
        return num_before

    def wait_until_finished(self, index, timeout_s):
        return wait_for(f"answer {index} to finish",
                        lambda: (s := self.answer_state(index)) != "streaming" and s, timeout_s)

    def growth(self, index):
        return [g for g in self.driver.execute_script("return window.__growth") if g["index"] == index]

    def sent(self):
        return self.driver.execute_script("return window.__sent")

    def collect_console_errors(self):
        for entry in self.driver.get_log("browser"):
            if entry.get("level") == "SEVERE":
                self.console_errors.append(entry.get("message"))
        return self.console_errors


def check_page_is_served(server):
    status, headers, body = troupe_server.http_get(server.base_url + "/")
    check(status == 200, f"GET / answered {status}")
    check(headers.get("Content-Type", "").startswith("text/html"),
          f"GET / has Content-Type {headers.get('Content-Type')!r}, want text/html")
    check(body == PAGE_SOURCE.read_bytes(),
          f"GET / serves {len(body)} bytes that differ from {PAGE_SOURCE} "
          f"({PAGE_SOURCE.stat().st_size} bytes): is the embedded page stale?")


def check_answer_streams(page):
    page.set_field("#max-tokens", 64)
    index = page.ask("Write a short poem about the sea.")
    check(page.answer_state(index) in ("streaming", "done"),
          f"a new answer starts as streaming, got {page.answer_state(index)!r}")
    state = page.wait_until_finished(index, 60)
    check(state == "done", f"the answer ended as {state!r}, want done; text: {page.answer_text(index)!r}")
    lengths = [g["length"] for g in page.growth(index) if g["state"] == "streaming" and g["length"] > 0]
    check(len(set(lengths)) >= 2 and lengths == sorted(lengths),
          f"the answer's text should grow over at least two deltas while streaming, saw lengths {lengths}")
    check(page.answer_text(index).strip(), "the finished answer is empty")
    stats = page.answer_stats(index)
    check(re.search(r"\d+ tokens\b", stats) and re.search(r"\d+(\.\d+)? tokens/s", stats),
          f"the answer's stats should show tokens and tokens/s, got {stats!r}")
    print(f"streamed answer: {len(lengths)} text updates; stats: {stats}")


def check_stop(page):
    page.set_field("#max-tokens", 400)
    page.set_field("#temperature", 1)
    index = page.ask("Tell me a very long story about a dragon, a knight and a lost city.")
    wait_for("the long answer to stream a few deltas",
             lambda: len({g["length"] for g in page.growth(index)}) >= 3
             or page.answer_state(index) != "streaming", 60, poll_s=0.02)
    check(page.answer_state(index) == "streaming",
          "the long answer (max tokens 400) finished before it could be stopped")
    page.el("#stop").click()
    state = page.wait_until_finished(index, 20)
    check(state == "stopped", f"after #stop the answer ended as {state!r}, want stopped")
    length_at_stop = len(page.answer_text(index))
    time.sleep(1.0)
    check(len(page.answer_text(index)) == length_at_stop,
          "the stopped answer's text kept growing after it was marked stopped")
    stats = page.answer_stats(index)
    tokens = re.search(r"(\d+) tokens\b", stats)
    check(tokens and int(tokens.group(1)) < 400, f"a stopped answer should have < 400 tokens: {stats!r}")
    cancels = [f for f in page.sent() if f.get("type") == "cancel"]
    check(cancels == [{"type": "cancel", "id": f"a{index + 1}"}],
          f"#stop should send one cancel for a{index + 1}, sent {cancels}")
    check(page.el("#send").is_enabled() and not page.el("#stop").is_enabled(),
          "after stopping, Send is enabled again and Stop disabled")
    print(f"stopped answer: {length_at_stop} characters; stats: {stats}")


def check_follow_up(page):
    page.set_field("#max-tokens", 48)
    page.set_field("#temperature", 0.7)
    index = page.ask("Thank you. Now say hello in French.", use_enter=True)
    state = page.wait_until_finished(index, 60)
    check(state == "done", f"the follow-up ended as {state!r}, want done")
    check(page.answer_text(index).strip(), "the follow-up's answer is empty")
    generates = [f for f in page.sent() if f.get("type") == "generate"]
    check([g["id"] for g in generates] == ["a1", "a2", "a3"], f"generate ids: {[g['id'] for g in generates]}")
    roles = [m["role"] for m in generates[-1]["messages"]]
    check(roles == ["user", "assistant", "user", "assistant", "user"],
          f"the follow-up should carry the whole conversation, roles were {roles}")
    check(generates[1]["max_tokens"] == 400 and generates[1]["temperature"] == 1,
          f"the settings panel should set max_tokens and temperature: {generates[1]}")


def check_api_key(driver, args):
    with troupe_server.start(args.troupe, args.model, ["--api-key", "sesame"]) as server:
        page = ChatPage(driver)
        driver.get(server.base_url + "/?api_key=sesame")
        wait_for("the page to connect with ?api_key", lambda: page.status() == "connected", 15)
        driver.get(server.base_url + "/")
        wait_for("the page without ?api_key to be refused", lambda: page.status() == "disconnected", 15)
        driver.get_log("browser")  # the refused upgrade logs an error here, by design


def run(args):
    with troupe_server.start(args.troupe, args.model) as server:
        check_page_is_served(server)
        driver = start_browser()
        try:
            page = ChatPage(driver)
            driver.get(server.base_url + "/")
            wait_for("#status to say connected", lambda: page.status() == "connected", 15)
            check(page.collect_console_errors() == [], f"console errors on load: {page.console_errors}")
            check_answer_streams(page)
            check_stop(page)
            check_follow_up(page)
            driver.save_screenshot(SCREENSHOT)
            check(page.collect_console_errors() == [], f"console errors: {page.console_errors}")
            check_api_key(driver, args)
        finally:
            driver.quit()


def on_alarm(signum, frame):
    raise TestFailure(f"the whole test took longer than {WHOLE_TEST_S} s")


def main():
    args = troupe_server.parse_args(__doc__.splitlines()[0])
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(WHOLE_TEST_S)
    try:
        run(args)
    except (TestFailure, troupe_server.ServerError) as e:
        print(f"FAIL test_chat_page: {e}", file=sys.stderr)
        return 1
    print(f"PASS test_chat_page (screenshot: {SCREENSHOT})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
