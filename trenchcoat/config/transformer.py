"""The [transformer] section: the workers rendering images and videos off the upload path,
and resizing photos on read; its image renditions and on-read boxes are small formats of
their own, parsed and checked here."""

from __future__ import annotations

from dataclasses import dataclass

from trenchcoat.config.checks import require
from trenchcoat.config.service import JobWorkerConfig, count_setting, port_setting
from trenchcoat.config.setting import Bounds, setting
from trenchcoat.errors import ConfigError
from trenchcoat.transforms import parse_box

X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


@dataclass(frozen=True, slots=True, kw_only=True)
class TransformerConfig(JobWorkerConfig):
    """Transformer workers: rendition jobs off the upload path (image sizes, video HLS ladders), read from a
    Redis stream through a consumer group (at least once, reclaimed when a worker dies,
    retried with backoff, a dependency's outage for up to retry_budget_s, dead-lettered with
    every attempt's error)."""

    count: int = count_setting("Transformer worker processes `trenchcoat up` starts.", default=2)
    port: int = port_setting("gRPC port of the first worker (TransformerService); worker i listens on port + i.",
                             default=7500)
    metrics_port: int = port_setting("/metrics port of the first worker; worker i uses metrics_port + i.",
                                     default=9500)
    concurrency: int = setting("Jobs one worker runs at once (each decodes and encodes in a thread).", default=2,
                               ge=1, le=64)
    max_attempts: int = setting("Failed attempts of a job before it goes to the dead-letter stream. A permanent "
                                "failure (an image that cannot be decoded, too many pixels) goes there at once; a "
                                "transient one (see retry_budget_s) does not count.",
                                default=5, ge=1, le=100)
    retry_budget_s: float = setting(
        "Seconds after a job's first failed attempt that its transient failures (a router or Redis away, "
        "restarting or frozen: UNAVAILABLE, DEADLINE_EXCEEDED; overloaded: RESOURCE_EXHAUSTED) are still "
        "retried, with backoff, without counting toward max_attempts; past it the next one dead-letters the job.",
        default=600.0, ge=1, le=86_400,
    )
    recipe_version: int = setting(
        "Version of the rendition recipes (sizes, quality). Job ids include it: raise it when "
        "a recipe changes, and uploads made after are rendered under the new one.",
        default=1, ge=1, le=1_000_000,
    )
    image_renditions: tuple[str, ...] = setting(
        "Image renditions as `<alternate key>:<px>[:square]`: a width of px (a square of px, "
        "center-cropped, with :square), never larger than the source.",
        default=("1:150:square", "2:320", "3:640", "4:1080"), free="a format of its own: parsed in validate",
    )
    jpeg_quality: int = setting("JPEG quality of image renditions (1..95).", default=85, ge=1, le=95)
    max_pixels: int = setting(
        "Largest source image (width x height) a job decodes: a bigger one (a decompression "
        "bomb) fails its job for good, with the reason.",
        default=50_000_000, ge=1_000_000,
    )
    max_source_bytes: int = setting("Largest source a job reads: a bigger one fails its job for good.",
                                    default=64 * 1024 * 1024, ge=1024)
    call_timeout_s: float = setting("Deadline of each call to a router (reading a source, storing a rendition).",
                                    default=30.0, gt=0)
    video_rungs: tuple[int, ...] = setting(
        "Heights of a video's HLS ladder (H.264/AAC), each no taller than the source (a source "
        "shorter than the lowest gets one rung at its own height).",
        default=(240, 480, 720, 1080), nonempty=True, each=Bounds(ge=16, le=4320),
    )
    segment_s: float = setting("Seconds of an HLS segment; every rung has a keyframe exactly every this long, so "
                               "segments of all rungs align.", default=2.0, ge=0.5, le=30)
    video_preset: str = setting("x264 preset of video rungs (speed against size at the same quality).",
                                default="veryfast", choices=X264_PRESETS)
    max_video_s: float = setting("Longest video a job transcodes: a longer one fails its job for good.",
                                 default=600.0, gt=0)
    on_read_sizes: tuple[str, ...] = setting(
        "Boxes a photo URL may ask for on read (`?w=&h=&fit=&fmt=`), as `WxH` (fit inside; 0: "
        "that side free) or `WxH:cover` (fill and crop). Any other is 400, so URLs cannot be "
        "used to burn CPU. Empty: no resizing on read.",
        default=("150x150:cover", "320x320:cover", "320x0", "640x0", "1080x0"),
        free="a format of its own: parsed in validate (by the parser the caches use)",
    )

    def image_specs(self) -> tuple[tuple[int, int, bool], ...]:
        """(alternate key, px, square) of each image rendition."""
        out = []
        for spec in self.image_renditions:
            parts = spec.split(":")
            try:
                key, px = int(parts[0]), int(parts[1])
            except (IndexError, ValueError):
                raise ConfigError(f"transformer.image_renditions: {spec!r} is not <alternate key>:<px>[:square]") \
                    from None
            if len(parts) > 3 or (len(parts) == 3 and parts[2] != "square"):
                raise ConfigError(f"transformer.image_renditions: {spec!r} is not <alternate key>:<px>[:square]")
            out.append((key, px, len(parts) == 3))
        return tuple(out)

    def validate(self, section: str) -> None:
        JobWorkerConfig.validate(self, section)
        specs = self.image_specs()
        keys = [k for k, _, _ in specs]
        require(all(1 <= k <= 255 for k in keys), f"{section}.image_renditions",
                f"alternate keys must be in 1..255 (0 is the original; above 255 is video), got {keys}")
        require(len(set(keys)) == len(keys), f"{section}.image_renditions", f"names an alternate key twice: {keys}")
        require(all(16 <= px <= 8192 for _, px, _ in specs), f"{section}.image_renditions",
                f"sizes must be in 16..8192 px, got {[px for _, px, _ in specs]}")
        for box in self.on_read_sizes:
            try:
                parse_box(box)
            except ValueError as exc:
                raise ConfigError(f"{section}.on_read_sizes: {exc}") from None
