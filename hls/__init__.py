"""hls: the hidden linear structure of diffusion models. Gaussian scores and analytical teleportation, measured."""

OPTIMIZED = "optimized"  # the spacing family of schedules placed by the step-placement optimizer (hls.optimize)


def __getattr__(name: str):
    if name == "TeleportPipeline":  # imported on first use: diffusers' pipeline machinery is slow to import
        from hls.pipeline import TeleportPipeline

        return TeleportPipeline
    raise AttributeError(f"module 'hls' has no attribute {name!r}")
