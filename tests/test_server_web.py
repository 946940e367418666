"""The web page at `/` in a real headless Chromium: upload a recording, and record from a
(fake) microphone, then read the transcript off the page."""

from __future__ import annotations

import shutil

import pytest

from medasr.server.launch import running_server

KEY = "web-key"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
]  # fmt: skip


@pytest.fixture(scope="module")
def sync_api():
    try:
        from playwright import sync_api
    except ImportError:
        pytest.fail("the web page test needs playwright: pip install -e '.[test]' (no `playwright install` needed)")
    if CHROMIUM is None:
        pytest.fail("chromium is not installed (apt-get install chromium); .ci/run installs it")
    return sync_api


@pytest.fixture(scope="module")
def server(tiny_model, sync_api):
    args = ["--model", str(tiny_model["transformers"]), "--device", "cpu", "--max-new-tokens", "8", "--api-key", KEY]
    with running_server(args) as base:
        yield base


@pytest.fixture(scope="module")
def page(server, sync_api):
    with sync_api.sync_playwright() as p:
        # Debian's chromium, not a downloaded one: `playwright install` is never needed.
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page()
        page.goto(server + "/")
        yield page
        browser.close()


def _transcribe(page, fmt: str) -> str:
    page.fill("#apikey", KEY)
    page.select_option("#format", fmt)
    page.click("#transcribe")
    page.wait_for_selector("#status[data-state=done], #status[data-state=error]", timeout=60_000)
    assert page.get_attribute("#status", "data-state") == "done", page.text_content("#status")
    return page.text_content("#transcript")


def test_page_is_self_contained(page):
    # nothing on the page comes from elsewhere
    sources = page.eval_on_selector_all("script[src], link[href], img[src]", "els => els.length")
    assert sources == 0
    assert page.title() == "medasr"


def test_upload_a_file_and_read_the_transcript(page, speech_clips, server):
    import httpx2 as httpx

    clip = speech_clips[1]
    page.set_input_files("#file", str(clip))
    shown = _transcribe(page, "srt")
    expected = httpx.post(
        server + "/v1/audio/transcriptions",
        headers={"Authorization": f"Bearer {KEY}"},
        files={"file": (clip.name, clip.read_bytes())},
        data={"response_format": "srt", "language": "en"},
        timeout=60,
    ).text
    assert " --> " in shown and shown == expected
    assert (
        _transcribe(page, "json").strip()
        == httpx.post(
            server + "/v1/audio/transcriptions",
            headers={"Authorization": f"Bearer {KEY}"},
            files={"file": (clip.name, clip.read_bytes())},
            timeout=60,
        ).json()["text"]
    )


def test_record_from_the_microphone(page):
    # Chromium's fake capture device plays a tone; MediaRecorder makes a webm the server decodes.
    page.click("#record")
    page.wait_for_timeout(1500)
    page.click("#record")
    page.wait_for_function("document.getElementById('recinfo').textContent.startsWith('recorded')", timeout=10_000)
    assert _transcribe(page, "verbose_json").lstrip().startswith("{")
    assert '"duration"' in page.text_content("#transcript")


def test_errors_are_shown(page, speech_clips):
    page.set_input_files("#file", str(speech_clips[0]))
    page.fill("#apikey", "wrong")
    page.click("#transcribe")
    page.wait_for_selector("#status[data-state=error]", timeout=30_000)
    assert "401" in page.text_content("#status")
