"""medasr: medical English speech recognition built on Qwen3-ASR."""

__version__ = "0.1.0"

__all__ = ["__version__", "load_model", "Transcript", "Segment", "Word", "AudioError", "ModelLoadError"]


def __getattr__(name):
    # Lazy: `import medasr` (and the CLI's --help) must not pay for torch and transformers.
    if name == "load_model":
        from medasr.transcribe import load_model

        return load_model
    if name in ("Transcript", "Segment", "Word"):
        from medasr import records

        return getattr(records, name)
    if name in ("AudioError", "ModelLoadError"):
        from medasr import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'medasr' has no attribute {name!r}")
