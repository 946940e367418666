"""One Ray Data job: inputs -> CPU tasks (decode, speech detection, pieces) -> model actors -> driver.

    items ──> plan_rows (CPU tasks)  ──> repartition ──> Transcriber (actor pool)  ──> driver
              segmenter.plan_input,       blocks of        one model per worker,        assembler.assemble
              piece_samples: one row      `rows_per_call`  Engine.run (the scheduler    per input once all its
              per piece of speech         pieces           over the Decoder)            pieces are back; on_outcome

The stages are the local path's own (`medasr.transcribe` uses the same segmenter, engine and
assembler), so a --ray run gives the local run's transcripts. A long recording's pieces are
rows like any other: they are spread over the workers and put back in order by piece index.

Safety: the driver is the only writer. It hands each input's outcome to `on_outcome` exactly
once, as soon as the input is complete (a row that comes back twice, from a task Ray retried
after a worker died, is ignored), so outputs are written as produced and never twice. Ray
restarts a killed model actor and retries its batch (Ray Data's actor pool: max_restarts=-1,
max_task_retries=-1) and retries CPU tasks whose worker died. An input that cannot be decoded
becomes an outcome with its error; the job goes on.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np

from medasr.defaults import DEFAULT_VAD, MAX_CONTEXT_TOKENS, MAX_PIECE_S
from medasr.records import Transcript
from medasr.scale.cluster import RayOptions

log = logging.getLogger(__name__)

CALL_BATCHES = 2  # pieces per actor call, in model batches: the scheduler refills rows freed by short answers
WAIT_FOR_WORKERS_S = 3600  # for every worker to load its model (a download, an autoscaler adding GPU nodes)
INTERNAL = "internal_error"  # error code of an input whose decoding raised something unexpected


@dataclass(frozen=True)
class Settings:
    """What the workers need to transcribe as the local path does (all picklable)."""

    model: str
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = 16
    language: str | None = "English"  # normalised: a name, or None to detect
    context: str | None = None
    max_new_tokens: int | None = None
    vad: str = DEFAULT_VAD
    max_piece_s: float = MAX_PIECE_S
    decode_first: bool = False  # evaluate: load_audio(name=) first; load errors and too-long clips apart
    max_duration_s: float | None = None  # with decode_first: longer clips are dropped, not transcribed
    max_context_tokens: int = MAX_CONTEXT_TOKENS
    quantize: str | None = None  # "int8": CPU int8 linear layers (medasr.model.quantize)

    @property
    def rows_per_call(self) -> int:
        return self.batch_size * CALL_BATCHES


@dataclass
class Item:
    index: int  # the caller's number for this input
    audio: str | bytes  # an absolute path or a URL (readable from every node), or encoded bytes
    name: str  # what transcripts and errors call it


@dataclass
class Outcome:
    """What became of one input: a transcript (text, or its `error`), or a load error, or dropped."""

    index: int
    transcript: Transcript | None = None
    duration: float | None = None  # decoded seconds (decode_first), even for dropped or failed clips
    load_error: str | None = None  # decode_first: the audio could not be decoded
    dropped: str | None = None  # decode_first: why it was not transcribed
    workers: tuple[str, ...] = ()  # which workers transcribed its pieces


@dataclass
class JobStats:
    inputs: int = 0
    outcomes: int = 0
    pieces: int = 0
    per_worker: Counter = field(default_factory=Counter)  # pieces transcribed by each worker
    repeated: int = 0  # rows that came back twice (retried tasks) and were ignored
    seconds: float = 0.0

    def summary(self) -> str:
        spread = ", ".join(f"{w} {n}" for w, n in sorted(self.per_worker.items()))
        repeated = f"; {self.repeated} repeated row(s) from retried tasks ignored" if self.repeated else ""
        return (f"ray: {self.outcomes} input(s), {self.pieces} piece(s) on {len(self.per_worker)} worker(s)"
                f"{' (' + spread + ')' if spread else ''} in {self.seconds:.1f} s{repeated}")


# ------------------------------------------------------------------------------ CPU stage
def _end(index: int, **info) -> dict:
    """A row that closes an input without model work (error, dropped, no speech)."""
    return {"index": index, "piece": -1, "pieces": 0, "samples": np.zeros(0, np.float32), "info": pickle.dumps(info)}


def plan_rows(row: dict, settings: Settings) -> Iterator[dict]:
    """One input -> one row per piece of speech (the segmenter's plan), or one closing row."""
    from medasr.errors import AudioError
    from medasr.pipeline.segmenter import piece_samples, plan_input, vad_options

    index, name = int(row["index"]), row["name"]
    source = row["path"] if row["path"] is not None else row["data"]
    options = vad_options(settings.vad, settings.max_piece_s)
    plan, duration = None, None
    try:
        if settings.decode_first:
            from medasr.audio.decode import load_audio

            try:
                source = load_audio(source, name=name)
            except AudioError as err:
                yield _end(index, kind="load_error", error=str(err))
                return
            duration = source.duration
            if settings.max_duration_s is not None and duration > settings.max_duration_s:
                yield _end(index, kind="dropped", duration=duration, dropped=f"longer than {settings.max_duration_s:g} s")
                return
        plan = plan_input(source, options)
        meta = replace(plan, source=name, samples=None)  # the driver assembles from this; no signal
        if not plan.pieces:
            yield _end(index, kind="assemble", plan=meta, duration=duration)
            return
        info = pickle.dumps({"plan": meta, "duration": duration})
        for k, samples in piece_samples(plan, block_s=options.block_s):
            yield {"index": index, "piece": k, "pieces": len(plan.pieces), "samples": np.asarray(samples, np.float32), "info": info}
    except AudioError as err:  # undecodable, too short, or a file that changed between the two passes
        yield _end(index, kind="error", name=name, error=str(err), code=getattr(err, "code", "invalid_audio"),
                   duration=duration, planned=plan.duration if plan else 0.0)
    except Exception as err:  # a decoder that raised something else: recorded, the job goes on
        log.exception("input %s failed", name)
        yield _end(index, kind="error", name=name, error=f"{name}: {type(err).__name__}: {err}", code=INTERNAL,
                   duration=duration, planned=plan.duration if plan else 0.0)


# ------------------------------------------------------------------------------ model actors
class Transcriber:
    """A Ray Data actor: one model, the pieces of a batch of rows through the engine's scheduler."""

    def __init__(self, settings: Settings, threads: int = 1):
        self.settings = settings
        self.threads = max(1, threads)
        self.engine = None  # loaded with the first piece: a job whose inputs all fail or hold no speech loads none
        self.worker = f"{_node()}:{os.getpid()}"

    def load(self):
        if self.engine is None:
            import torch
            import transformers

            from medasr.transcribe import load_model

            torch.set_num_threads(self.threads)
            transformers.utils.logging.disable_progress_bar()  # "Loading weights" bars of every worker
            s = self.settings
            self.engine = load_model(s.model, device=s.device, dtype=s.dtype, batch_size=s.batch_size,
                                     max_context_tokens=s.max_context_tokens, quantize=s.quantize).engine
        return self.engine

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from medasr.errors import UserError
        from medasr.pipeline.engine import Request
        from medasr.pipeline.scheduler import run_requests

        s = self.settings
        rows = [i for i, k in enumerate(batch["piece"]) if k >= 0]
        requests = [Request(np.array(batch["samples"][i], dtype=np.float32), s.context, s.language, s.max_new_tokens)
                    for i in rows]
        out = np.empty(len(batch["piece"]), dtype=object)
        out[:] = b""
        fatal = ""
        try:
            results = run_requests(self.load(), requests) if requests else []
        except UserError as err:  # a model that cannot load: told to the driver, which stops the job
            results, fatal = [], str(err)
        for i, r in zip(rows, results):
            out[i] = pickle.dumps(r)
        n = len(out)
        return {"index": batch["index"], "piece": batch["piece"], "pieces": batch["pieces"], "info": batch["info"],
                "result": out, "worker": np.array([self.worker] * n, dtype=object), "fatal": np.array([fatal] * n, dtype=object)}


def _node() -> str:
    import ray

    return ray.util.get_node_ip_address()


# ------------------------------------------------------------------------------ driver
@dataclass
class _Input:
    plan: object
    pieces: int
    duration: float | None
    results: dict = field(default_factory=dict)
    workers: set = field(default_factory=set)


def run(items: Iterable[Item], settings: Settings, options: RayOptions, on_outcome: Callable[[Outcome], None]) -> JobStats:
    """Transcribe `items` on the cluster Ray is connected to (see cluster.connect); `on_outcome`
    is called in this process, once per input, as each completes (in completion order)."""
    import ray

    from medasr.errors import UserError
    from medasr.pipeline.assembler import assemble, failed

    stats = JobStats()
    started = time.monotonic()
    refs = _blocks(ray, items, settings.batch_size, stats)
    if not refs:
        return stats
    ds = _dataset(ray, refs, settings, options)
    open_inputs: dict[int, _Input] = {}
    finished: set[int] = set()

    def close(index: int, outcome: Outcome) -> None:
        finished.add(index)
        open_inputs.pop(index, None)
        stats.outcomes += 1
        on_outcome(outcome)

    for row in ds.iter_rows():
        if row["fatal"]:
            raise UserError(f"model worker {row['worker']}: {row['fatal']}")
        index, k = int(row["index"]), int(row["piece"])
        if index in finished:
            stats.repeated += 1
            continue
        info = pickle.loads(row["info"])
        if k < 0:
            kind = info["kind"]
            if kind == "load_error":
                close(index, Outcome(index, load_error=info["error"]))
            elif kind == "dropped":
                close(index, Outcome(index, duration=info["duration"], dropped=info["dropped"]))
            elif kind == "error":
                t = failed(info["name"], round(info["planned"], 3), info["error"], info["code"])
                close(index, Outcome(index, t, duration=info["duration"]))
            else:  # no speech: the assembler's empty transcript
                close(index, Outcome(index, assemble(info["plan"], [], settings.language), duration=info["duration"]))
            continue
        state = open_inputs.setdefault(index, _Input(info["plan"], int(row["pieces"]), info["duration"]))
        if k in state.results:
            stats.repeated += 1
            continue
        state.results[k] = pickle.loads(row["result"])
        state.workers.add(row["worker"])
        stats.pieces += 1
        stats.per_worker[row["worker"]] += 1
        if len(state.results) == state.pieces:
            t = assemble(state.plan, [state.results[j] for j in range(state.pieces)], settings.language)
            close(index, Outcome(index, t, duration=state.duration, workers=tuple(sorted(state.workers))))
    stats.seconds = time.monotonic() - started
    if stats.outcomes < stats.inputs:  # never expected: Ray returns every row or fails the job
        raise RuntimeError(f"ray job ended with {stats.inputs - stats.outcomes} of {stats.inputs} inputs incomplete")
    return stats


def _blocks(ray, items: Iterable[Item], block: int, stats: JobStats) -> list:
    """Inputs into the object store in small blocks: one CPU task each, so decoding streams into
    the workers instead of waiting for a large block, and the driver holds no audio bytes."""
    import pyarrow as pa

    schema = pa.schema([("index", pa.int64()), ("path", pa.string()), ("data", pa.binary()), ("name", pa.string())])
    refs, rows = [], []
    for item in items:
        is_bytes = isinstance(item.audio, (bytes, bytearray))
        rows.append({"index": item.index, "path": None if is_bytes else item.audio,
                     "data": bytes(item.audio) if is_bytes else None, "name": item.name})
        stats.inputs += 1
        if len(rows) >= block:
            refs.append(ray.put(pa.Table.from_pylist(rows, schema)))
            rows = []
    if rows:
        refs.append(ray.put(pa.Table.from_pylist(rows, schema)))
    return refs


def _dataset(ray, refs: list, settings: Settings, options: RayOptions):
    from ray.data import ActorPoolStrategy, DataContext

    ctx = DataContext.get_current()
    if logging.getLogger().getEffectiveLevel() > logging.INFO:
        ctx.enable_progress_bars = False  # the command shows its own progress
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "progress bars disabled"
    # the pool starts work once every worker is up (an even spread from the first batch; a cluster
    # without room for the pool fails the job instead of waiting in silence)
    ctx.wait_for_min_actors_s = WAIT_FOR_WORKERS_S
    ds = ray.data.from_arrow_refs(refs)
    ds = ds.flat_map(plan_rows, fn_kwargs={"settings": settings}, num_cpus=1)
    # a long recording's pieces leave its task as one block: cut into call-sized blocks so that
    # they are spread over the workers
    ds = ds.repartition(target_num_rows_per_block=settings.rows_per_call)
    return ds.map_batches(
        Transcriber,
        fn_constructor_kwargs={"settings": settings, "threads": int(options.cpus_per_worker)},
        batch_size=settings.rows_per_call,
        batch_format="numpy",
        compute=ActorPoolStrategy(size=options.workers),
        num_cpus=options.cpus_per_worker,
        num_gpus=options.gpus_per_worker or 0,
    )


# ------------------------------------------------------------------------------ transcribe
def transcribe_sources(sources: list[str], settings: Settings, options: RayOptions,
                       on_result: Callable[[int, Transcript], None]) -> JobStats:
    """`medasr transcribe --ray`: files and URLs -> on_result(index in `sources`, Transcript)."""
    from medasr.audio.decode import describe
    from medasr.output.recordlog import input_key

    items = (Item(i, input_key(s), describe(s)) for i, s in enumerate(sources))  # absolute: any node can read it
    return run(items, settings, options, lambda o: on_result(o.index, o.transcript))


def model_ref(model: str) -> str:
    """How workers find the model: a local directory as an absolute path (workers do not share
    the driver's working directory), anything else (hub id, `demo`) as given."""
    from pathlib import Path

    path = Path(model).expanduser()
    return str(path.resolve()) if path.is_dir() else model
