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
def server(sync_api):
    # the demo model and aligner: real words to show (a random tiny model may answer with one)
    args = ["--model", "demo", "--device", "cpu", "--max-new-tokens", "8", "--api-key", KEY, "--aligner", "demo"]
    with running_server(args) as base:
        yield base


@pytest.fixture(scope="module")
def playwright(sync_api):
    with sync_api.sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def page(server, playwright):
    # Debian's chromium, not a downloaded one: `playwright install` is never needed.
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
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


def test_words_play_the_audio_from_there(page, speech_clips, server):
    """Review aid: the transcript as words; clicking one plays the upload from its start; words the
    server marks low_confidence are highlighted."""
    import httpx2 as httpx

    clip = speech_clips[3]
    expected = httpx.post(
        server + "/v1/audio/transcriptions", headers={"Authorization": f"Bearer {KEY}"},
        files={"file": (clip.name, clip.read_bytes())},
        data={"response_format": "verbose_json", "timestamp_granularities[]": "word", "language": "en"}, timeout=60,
    ).json()  # fmt: skip
    assert len(expected["words"]) >= 2, expected
    page.set_input_files("#file", str(clip))
    page.check("#words")
    assert page.is_disabled("#format")  # words come as verbose_json
    try:
        _transcribe_words(page)
        shown = page.eval_on_selector_all("#transcript .word", """els => els.map(e => ({word: e.textContent,
            start: +e.dataset.start, low: e.classList.contains('low'), probability: e.dataset.probability}))""")
        assert [w["word"] for w in shown] == [w["word"] for w in expected["words"]]
        assert [w["start"] for w in shown] == [w["start"] for w in expected["words"]]
        assert [w["low"] for w in shown] == [w.get("low_confidence", False) for w in expected["words"]]
        assert all(float(w["probability"]) == e["probability"] for w, e in zip(shown, expected["words"]) if "probability" in e)
        styles = page.evaluate("""() => { const box = document.getElementById('transcript');
            const make = (cls) => { const s = document.createElement('span'); s.className = cls; box.append(s);
                                    const c = getComputedStyle(s).backgroundColor; s.remove(); return c; };
            return [make('word'), make('word low')]; }""")
        assert styles[0] != styles[1]  # low-confidence words stand out
        k = max(range(len(shown)), key=lambda i: shown[i]["start"])  # the latest word: a real seek
        page.click(f"#transcript .word >> nth={k}")
        page.wait_for_function(f"Math.abs(document.getElementById('player').currentTime - {shown[k]['start']}) < 0.3",
                               timeout=10_000)  # fmt: skip
        assert page.eval_on_selector(f"#transcript .word >> nth={k}", "el => el.classList.contains('playing')")
        assert page.eval_on_selector("#player", "p => !p.paused")  # and it plays from there
    finally:
        page.uncheck("#words")


def _transcribe_words(page) -> None:
    page.fill("#apikey", KEY)
    page.click("#transcribe")
    page.wait_for_selector("#status[data-state=done], #status[data-state=error]", timeout=60_000)
    assert page.get_attribute("#status", "data-state") == "done", page.text_content("#status")


def test_live_microphone_mode(server, playwright, speech_clips, tmp_path):
    """Live mode over /v1/realtime: Chromium's fake microphone plays a recording (speech, then
    silence, looped); utterances closed by the pauses appear as final lines."""
    import numpy as np
    import soundfile as sf

    from medasr.audio.decode import load_audio

    speech = load_audio(speech_clips[1]).samples
    mic = tmp_path / "mic.wav"
    sf.write(mic, np.concatenate([np.zeros(8000, np.float32), speech, np.zeros(24000, np.float32)]), 16000, subtype="PCM_16")
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[*ARGS, f"--use-file-for-fake-audio-capture={mic}",
                                                                         "--autoplay-policy=no-user-gesture-required"])  # fmt: skip
    try:
        page = browser.new_page()
        page.goto(server + "/")
        assert page.eval_on_selector("#livetext", "el => el.children.length") == 0
        page.fill("#apikey", KEY)
        page.click("#live")
        page.wait_for_selector("#status[data-state=live]", timeout=30_000)
        # one utterance closed by the pause: a final line (the model's words, whatever they are)
        page.wait_for_function("+document.getElementById('livetext').dataset.finals >= 1", timeout=60_000)
        finals = page.eval_on_selector_all("#livetext p.final", "els => els.map(e => e.firstChild.textContent)")
        assert any(" - " in t for t in finals)  # with its start and end time
        grey = page.evaluate("""() => { const p = document.createElement('p'); p.className = 'partial';
            document.getElementById('livetext').append(p); const c = getComputedStyle(p).color; p.remove(); return c; }""")
        black = page.eval_on_selector("#livetext p.final", "el => getComputedStyle(el).color")
        assert grey != black  # partial text is shown apart from final text
        page.click("#live")  # stop: what is open is committed and its final shown, then the socket closes
        page.wait_for_selector("#status[data-state=done]", timeout=60_000)
        assert "ended" in page.text_content("#status")
        assert page.eval_on_selector_all("#livetext p.partial", "els => els.length") == 0
    finally:
        browser.close()
