"""Checkpoints and the prompt: find, detect, convert and load Qwen3-ASR (`checkpoint`) and
Qwen3-ForcedAligner (`aligner`) in either format, safetensors only; `convert` between formats;
build tokenizers and models of any size (`build`); the official prompt (`prompt`)."""
