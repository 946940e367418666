"""The one path every transcription takes: source -> segmenter -> scheduler -> engine ->
assembler -> events -> writers (docs/architecture.md). Files, uploads, chat requests, live
streams, evaluation and benchmarks all go through these modules."""
