"""What a context (prompt, hotwords) costs: peak memory and time of transcribing with a context
of N tokens, up to the context limit (`--max-context-tokens`, default 1,024).

    python benchmarks/bench_context.py                   # --model demo --tokens 0,256,512,1024 --rows 1,16

Each measurement runs in a fresh process (peak resident memory is per process: ru_maxrss), which
loads the model, transcribes one warm-up clip without a context, then `rows` copies of a clip of
--clip-s seconds of speech (espeak-ng, repeated) together, each with the same context of exactly
N tokens (medical words from the lexicon, cut to N tokens by the model's own tokenizer), at most
--new generated tokens each. Printed: peak RSS over the warm-up's, and the seconds of the
timed call. The context limit bounds the worst case: every row of a full batch carrying a
maximal context. A context over the limit is refused before any model call (checked last).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from medasr.defaults import MAX_CONTEXT_TOKENS

CHILD = r"""
import json, resource, sys, time
import numpy as np, torch
from medasr.errors import ContextTooLong
from medasr.synth.sentences import render
from medasr.audio.decode import load_audio
from medasr.text.lexicon import LEXICON
from medasr.transcribe import load_model

cfg = json.loads(sys.argv[1])
torch.set_num_threads(cfg["threads"])
asr = load_model(cfg["model"], device="cpu", batch_size=max(cfg["rows"], 1), max_context_tokens=cfg["limit"])
render("Give metoprolol twenty five milligrams twice daily and review the echocardiogram.", cfg["wav"])
one = load_audio(cfg["wav"]).samples
clip = np.tile(one, int(np.ceil(cfg["clip_s"] * 16000 / len(one))))[: int(cfg["clip_s"] * 16000)]
words = " ".join(w for terms in LEXICON.values() for w in sorted(terms))
ids = asr.engine.tokenizer(words * 4, add_special_tokens=False)["input_ids"][: cfg["tokens"]]
context = asr.engine.tokenizer.decode(ids) if cfg["tokens"] else None
asr.transcribe([(clip, 16000)], max_new_tokens=cfg["new"], vad="none")
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t0 = time.perf_counter()
try:
    asr.transcribe([(clip, 16000)] * cfg["rows"], context=context, max_new_tokens=cfg["new"], vad="none")
    out = {"ok": True}
except ContextTooLong as err:
    out = {"ok": False, "refused": str(err)}
out.update(seconds=time.perf_counter() - t0, peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base,
           n_tokens=len(asr.engine.tokenizer(context or "", add_special_tokens=False)["input_ids"]))
print(json.dumps(out))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="demo")
    ap.add_argument("--tokens", default="0,256,512,1024", help="context sizes in tokens (default: 0,256,512,1024)")
    ap.add_argument("--rows", default="1,16", help="clips transcribed together, each with the context (default: 1,16)")
    ap.add_argument("--limit", type=int, default=MAX_CONTEXT_TOKENS, help=f"--max-context-tokens (default: {MAX_CONTEXT_TOKENS})")
    ap.add_argument("--clip-s", type=float, default=30.0, help="seconds of speech per clip (default: 30: a whole piece)")
    ap.add_argument("--new", type=int, default=32, help="generated tokens per clip, at most (default: 32)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        wav = str(Path(d) / "s.wav")
        print(f"model {args.model}, {args.clip_s:g} s clips, limit {args.limit} tokens: peak RSS over the warm-up, time")
        for rows in map(int, args.rows.split(",")):
            for tokens in [*map(int, args.tokens.split(",")), args.limit + 1]:
                cfg = {"model": args.model, "rows": rows, "tokens": tokens, "limit": args.limit, "clip_s": args.clip_s,
                       "new": args.new, "threads": args.threads, "wav": wav}  # fmt: skip
                run = subprocess.run([sys.executable, "-c", CHILD, json.dumps(cfg)], capture_output=True, text=True, check=False)
                if run.returncode:
                    sys.exit(run.stderr)
                r = json.loads(run.stdout.strip().splitlines()[-1])
                what = "refused before any model call" if not r["ok"] else f"{r['seconds']:.2f} s"
                print(f"  {rows:2d} rows x context of {r['n_tokens']:5d} tokens: +{r['peak_mb']:6.0f} MB, {what}", flush=True)


if __name__ == "__main__":
    main()
