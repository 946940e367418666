"""Benchmarks that reproduce the seed's accuracy and throughput tables.

- `offline`: one process over a set of clips (RTFx inside `generate` and end to end, samples/s,
  memory), against the one-by-one and pad-to-longest baselines.
- `serve`: closed-loop clients against an OpenAI-compatible server (medasr, vLLM) at several
  concurrencies: the seed's table, latency percentiles, time to first text, RTFx.
- `workload`: the clips (a dataset, or seeded synthetic speech / noise of LibriSpeech-like length).
- `randomweights`: the full-size architecture with random weights, where real weights are absent.
- `results`: percentiles, the seed's Markdown tables, JSON, the latency chart.

Command line: `medasr bench offline ...`, `medasr bench serve ...` (medasr.cli.bench).
"""
