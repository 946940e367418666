"""Audio in: any source decoded whole to 16 kHz mono float32 (`decode`, FFmpeg through PyAV in
`ffmpeg`), speech detection and piece cutting (`vad`), live PCM chunks (`pcm`)."""
