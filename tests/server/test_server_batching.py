"""The server's scheduling and safety rules, against a real uvicorn server on loopback whose
engine is a stand-in with a controllable speed (deadlines, disconnects, back-pressure and
long-form splitting are about timing, which the tiny model cannot make deterministic). The
scheduler, the batcher and the routes are the real ones; only the decoder's arithmetic is not."""

from __future__ import annotations

import contextlib
import io
import itertools
import socket
import threading
import time

import httpx2 as httpx  # the HTTP client huggingface_hub and openai depend on
import numpy as np
import pytest
import soundfile as sf

from medasr.pipeline.engine import Result

try:
    import uvicorn

    from medasr.server import ServerConfig, create_app, urls
except ImportError as err:  # fail each test with the reason, instead of stopping the whole run
    MISSING: str | None = err.name
else:
    MISSING = None


@pytest.fixture(autouse=True)
def _server_packages():
    if MISSING:
        pytest.fail(f"the server tests need the {MISSING!r} package: pip install -e '.[test]'")


class SlowEngine:
    """Answers each piece with its length in samples, after `steps` decode steps of `delay`
    seconds each; `batches` records the groups admitted together (sample counts)."""

    batch_size = 16
    max_batch_audio_s = 600.0

    def __init__(self, delay: float, steps: int = 1):
        self.delay = delay
        self.steps = steps
        self.batches: list[list[int]] = []
        self.log: list[tuple[str, float, int]] = []  # (event, time, samples): "admit" / "finish"

    def decoder(self, max_rows: int):
        return SlowDecoder(self, max_rows)

    def check_context(self, context) -> None:  # the real engine's rule is tested with the real engine
        pass

    @property
    def seen(self) -> set[int]:
        return {n for b in self.batches for n in b}


class SlowDecoder:
    """The Decoder's interface (admit, step, drop) with sleeps instead of a model."""

    def __init__(self, engine: SlowEngine, max_rows: int):
        self.engine = engine
        self.max_rows = max_rows
        self.rows: list[list] = []  # [key, request, steps left]

    @property
    def active(self) -> int:
        return len(self.rows)

    @property
    def free(self) -> int:
        return self.max_rows - len(self.rows)

    def in_flight(self):
        return [r[0] for r in self.rows]

    def drop(self, keys) -> int:
        before = len(self.rows)
        self.rows = [r for r in self.rows if r[0] not in keys]
        return before - len(self.rows)

    def admit(self, items):
        self.engine.batches.append([len(r.samples) for _, r in items])
        for key, r in items:
            self.engine.log.append(("admit", time.monotonic(), len(r.samples)))
            self.rows.append([key, r, self.engine.steps])
        return []

    def step(self):
        if not self.rows:
            return []
        time.sleep(self.engine.delay)
        done = []
        for row in self.rows:
            row[2] -= 1
            if row[2] == 0:
                n = len(row[1].samples)
                self.engine.log.append(("finish", time.monotonic(), n))
                done.append((row[0], Result(f"n{n}", row[1].language or "", f"n{n}", 3, False)))
        self.rows = [r for r in self.rows if r[2] > 0]
        return done


def wav(n_samples: int, rate: int = 16000) -> bytes:
    t = np.arange(n_samples) / rate
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


@contextlib.contextmanager
def serve(engine: SlowEngine, **options):
    """A server whose model is the stand-in engine, ready to answer. Speech detection is off
    unless asked for: the stand-in's clips are tones, which hold no speech."""
    options.setdefault("vad", "none")
    app = create_app(ServerConfig(model="stand-in", **options), engine_loader=lambda: engine, decoder_factory=engine.decoder)
    with serve_app(app) as base:
        for _ in range(200):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(base + "/ready", timeout=1).status_code == 200:
                    break
            time.sleep(0.05)
        else:
            raise RuntimeError("stand-in server not ready")
        yield base


@contextlib.contextmanager
def serve_app(app):
    """uvicorn in a background thread on a free loopback port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started and thread.is_alive():
            time.sleep(0.02)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def post(base: str, audio: bytes, timeout: float = 30, **fields) -> httpx.Response:
    return httpx.post(
        base + "/v1/audio/transcriptions", files={"file": ("a.wav", audio, "audio/wav")}, data=fields, timeout=timeout
    )


def in_background(fn, *args, **kwargs) -> tuple[threading.Thread, list]:
    out: list = []
    thread = threading.Thread(target=lambda: out.append(fn(*args, **kwargs)), daemon=True)
    thread.start()
    return thread, out


def metric(base: str, name: str) -> float:
    for line in httpx.get(base + "/metrics").text.splitlines():
        if line.startswith((name + " ", name + "{")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_deadline_answers_504_and_the_server_goes_on():
    engine = SlowEngine(delay=1.0)
    with serve(engine, request_timeout_s=0.3, max_wait_ms=0) as base:
        r = post(base, wav(8000))
        assert r.status_code == 504
        assert r.json()["error"]["code"] == "timeout"
        assert httpx.get(base + "/health").status_code == 200


def test_work_of_a_client_that_left_is_dropped():
    engine = SlowEngine(delay=1.0)
    with serve(engine, max_batch_size=1, max_wait_ms=0) as base:
        first, answers = in_background(post, base, wav(16000))
        while not engine.batches:  # the worker is busy with the first request
            time.sleep(0.01)
        with pytest.raises(httpx.ReadTimeout):
            post(base, wav(12345), timeout=0.3)  # gives up and closes its connection
        first.join(10)
        assert answers[0].status_code == 200
        deadline = time.monotonic() + 5
        while metric(base, "medasr_dropped_pieces_total") < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert metric(base, "medasr_dropped_pieces_total") == 1
        assert 12345 not in engine.seen


def test_full_queue_answers_429_with_retry_after():
    engine = SlowEngine(delay=1.0)
    with serve(engine, max_queue=1, max_wait_ms=0) as base:
        first, answers = in_background(post, base, wav(16000))
        while not engine.batches:
            time.sleep(0.01)
        r = post(base, wav(8000))
        assert r.status_code == 429
        assert int(r.headers["retry-after"]) >= 1
        assert r.json()["error"]["type"] == "rate_limit_error"
        first.join(10)
        assert answers[0].status_code == 200
        assert post(base, wav(8000)).status_code == 200  # the slot came back


def test_requests_waiting_together_share_a_batch():
    engine = SlowEngine(delay=1.0)
    with serve(engine, max_batch_size=5, live_rows=0, max_wait_ms=0) as base:
        first, _ = in_background(post, base, wav(8000))
        while not engine.batches:  # the worker is busy: the next four queue up meanwhile and join it together
            time.sleep(0.01)
        threads = [in_background(post, base, wav(16000 + i)) for i in range(4)]
        for t, _ in threads:
            t.join(10)
        first.join(10)
        assert [out[0].json()["text"] for _, out in threads] == [f"n{16000 + i}" for i in range(4)]
        assert sorted(engine.batches[1]) == [16000 + i for i in range(4)]


def test_a_lone_request_does_not_wait_for_company():
    engine = SlowEngine(delay=0.0)
    with serve(engine, max_wait_ms=2000) as base:
        started = time.monotonic()
        assert post(base, wav(8000)).status_code == 200
        assert time.monotonic() - started < 1.5


def test_long_audio_is_split_into_pieces_that_batch_together():
    engine = SlowEngine(delay=0.0)
    with serve(engine, vad="none", max_wait_ms=50) as base:
        r = post(base, wav(16000 * 70, rate=16000), response_format="verbose_json")
        assert r.status_code == 200, r.text
        body = r.json()
        segs = body["segments"]
        assert len(segs) == 3
        assert [len(b) for b in engine.batches] == [3]  # the pieces of one upload share a batch
        assert segs[0]["start"] == 0.0 and segs[-1]["end"] == pytest.approx(70.0, abs=0.01)
        assert all(s["end"] - s["start"] <= 30.0 for s in segs)
        assert all(a["end"] == pytest.approx(b["start"], abs=0.01) for a, b in itertools.pairwise(segs))
        assert body["text"] == " ".join(s["text"] for s in segs)
        events = post(base, wav(16000 * 70), stream="true").text
        assert events.count("transcript.text.delta") == 3 and "transcript.text.done" in events


def test_long_silence_sends_nothing_to_the_model():
    engine = SlowEngine(delay=0.0)
    with serve(engine, vad="silero") as base:
        silence = io.BytesIO()
        sf.write(silence, np.zeros(16000 * 40, np.float32), 16000, format="FLAC")
        r = post(base, silence.getvalue(), response_format="verbose_json")
        assert r.status_code == 200, r.text
        assert (r.json()["text"], r.json()["segments"], r.json()["duration"]) == ("", [], 40.0)
        assert engine.batches == []
        events = post(base, silence.getvalue(), stream="true").text
        assert events.count("data: ") == 1 and '"transcript.text.done"' in events


def test_batching_metrics_are_exported():
    engine = SlowEngine(delay=0.0)
    with serve(engine) as base:
        post(base, wav(16000))
        text = httpx.get(base + "/metrics").text
        for name in (
            "medasr_requests_total",
            "medasr_queue_depth",
            "medasr_batch_size_bucket",
            "medasr_request_latency_seconds_bucket",
            "medasr_audio_seconds_total",
        ):
            assert name in text
        assert 'medasr_requests_total{endpoint="/v1/audio/transcriptions",status="200"} 1.0' in text
        assert metric(base, "medasr_audio_seconds_total") == pytest.approx(1.0)


def test_not_ready_until_the_model_is_loaded():
    release = threading.Event()
    engine = SlowEngine(0.0)

    def slow_load():
        release.wait(10)
        return engine

    app = create_app(ServerConfig(model="stand-in", vad="none"), engine_loader=slow_load, decoder_factory=engine.decoder)
    with serve_app(app) as base, contextlib.ExitStack() as cleanup:
        cleanup.callback(release.set)
        assert httpx.get(base + "/health").status_code == 200
        assert httpx.get(base + "/ready").status_code == 503
        r = post(base, wav(8000))
        assert r.status_code == 503 and "retry-after" in r.headers
        release.set()
        for _ in range(100):
            if httpx.get(base + "/ready").status_code == 200:
                break
            time.sleep(0.05)
        assert post(base, wav(8000)).status_code == 200


def test_a_model_that_fails_to_load_is_reported():
    reported: list[str] = []

    def broken():
        raise OSError("no weights here")

    app = create_app(ServerConfig(model="stand-in", vad="none"), engine_loader=broken, on_load_error=reported.append)
    with serve_app(app) as base:
        for _ in range(100):
            if reported:
                break
            time.sleep(0.02)
        assert reported == ["no weights here"]  # `medasr serve` exits with status 2 on this
        r = httpx.get(base + "/ready")
        assert r.status_code == 503 and "no weights here" in r.json()["error"]["message"]
        assert post(base, wav(8000)).status_code == 503


# ---------------------------------------------------------------- URL safety


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.100.100.200",
        "100.64.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255", "::1", "::", "fe80::1", "fd00:ec2::254",
        "::ffff:127.0.0.1", "::ffff:10.0.0.1", "2002:7f00:1::", "64:ff9b::7f00:1", "::127.0.0.1", "not an address",
    ],
)  # fmt: skip
def test_non_public_addresses_are_refused(address):
    assert not urls.is_public(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2001:4860:4860::8888"])
def test_public_addresses_are_allowed(address):
    assert urls.is_public(address)


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://example.com/a.wav", "/etc/passwd", "gopher://x", "http://user:pw@example.com/a"]
)
def test_only_plain_http_urls(url):
    with pytest.raises(urls.UrlRefused):
        urls.fetch(url, 1000, 5)


def test_every_resolved_address_is_checked(monkeypatch):
    # A name answering with one public and one private address is refused outright.
    monkeypatch.setattr(urls, "_resolve", lambda host, port: ["93.184.216.34", "10.0.0.5"])
    with pytest.raises(urls.UrlRefused):
        urls.fetch("http://mixed.example/a.wav", 1000, 5)


def test_the_connection_goes_to_the_checked_address(monkeypatch):
    # DNS rebinding: the name is resolved once; the socket connects to that checked address,
    # never to whatever a second lookup would say.
    lookups, connects = [], []

    def resolve(host, port):
        lookups.append(host)
        return ["93.184.216.34"] if len(lookups) == 1 else ["127.0.0.1"]

    def connect(address, timeout=None):
        connects.append(address)
        raise OSError("no network in tests")

    monkeypatch.setattr(urls, "_resolve", resolve)
    monkeypatch.setattr(urls.socket, "create_connection", connect)
    with pytest.raises(urls.UrlError):
        urls.fetch("http://rebind.example/a.wav", 1000, 5)
    assert lookups == ["rebind.example"]
    assert connects == [("93.184.216.34", 80)]


def test_a_request_arriving_mid_batch_starts_before_that_batch_ends():
    # continuous batching: the second request joins the running rows at the next decode step
    engine = SlowEngine(delay=0.2, steps=8)  # each piece takes 8 steps (~1.6 s)
    with serve(engine, max_batch_size=4, live_rows=0, max_wait_ms=0) as base:
        first, answers = in_background(post, base, wav(8000))
        while not engine.batches:
            time.sleep(0.01)
        second = post(base, wav(9000))
        first.join(10)
        assert second.status_code == 200 and answers[0].status_code == 200
        when = {(event, n): t for event, t, n in engine.log}
        assert when[("admit", 9000)] < when[("finish", 8000)]  # started while the first was still decoding
        assert when[("finish", 9000)] > when[("finish", 8000)]
