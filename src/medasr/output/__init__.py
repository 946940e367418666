"""Results out: the txt / json / jsonl / srt / vtt / verbose_json writers (`formats`), readable
subtitle cues (`subtitles`), and the resumable JSONL record log (`recordlog`)."""
