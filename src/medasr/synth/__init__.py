"""Synthetic speech for the demo models, tests and benchmarks: template sentences spoken by
espeak-ng (`sentences`), word-timed speech (`words`), the varied corpus (`corpus`) and its text
sources (`sources`). Nothing on the transcription path imports this wing."""
