"""``perceptiq serve``: load a model and run the HTTP scoring service and web page (docs/serving.md)."""
from __future__ import annotations

from enum import Enum
from typing import Optional

import typer

from .common import (Device, Precision, Scene, Task, backbone_option, device_option, error_text, fail, model_option,
                     precision_option, scene_option, task_option, value, weights_option)
from .score import describe_model_line

# Servers decode uploads from anyone who can reach them: a lower default than the batch scorer's 200 Mpx,
# since a 200 Mpx PNG decodes to 600 MB of RGB and several may be in flight at once.
SERVE_DEFAULT_MAX_PIXELS = 50_000_000


class LogLevel(str, Enum):
    critical = "critical"
    error = "error"
    warning = "warning"
    info = "info"
    debug = "debug"
    trace = "trace"


def serve_command(
    model: str = model_option(),
    backbone: Optional[str] = backbone_option(),
    weights: Optional[str] = weights_option(),
    task: Optional[Task] = task_option("Default task (default: the model's first); requests may ask for the "
                                       "other."),
    scene: Optional[Scene] = scene_option("Default scene prompts (a scene name or auto); requests may ask for "
                                          "another."),
    host: str = typer.Option("127.0.0.1", "--host", metavar="HOST", help="Address to bind; anything but loopback exposes the "
                                                         "service."),
    port: int = typer.Option(8000, "--port", metavar="PORT", min=0, max=65535, help="TCP port to listen on."),
    token: Optional[str] = typer.Option(None, "--token", metavar="TOKEN", envvar="PERCEPTIQ_TOKEN", show_default=False,
                                        help="Require 'Authorization: Bearer TOKEN' on /v1/* "
                                             "(prefer the env var: a flag shows in `ps`)."),
    device: Device = device_option(),
    precision: Precision = precision_option(),
    max_batch: int = typer.Option(32, "--max-batch", metavar="N", min=1, help="Most images in one forward pass."),
    max_wait_ms: float = typer.Option(10.0, "--max-wait-ms", metavar="MS", min=0, help="Longest wait for a batch to fill, in ms."),
    max_files: int = typer.Option(32, "--max-files", metavar="N", min=1, help="Most files in one request (more: 413)."),
    max_upload_mb: float = typer.Option(20.0, "--max-upload-mb", metavar="MIB", min=0.001, help="Largest file in MiB (larger: 413)."),
    max_pixels: int = typer.Option(SERVE_DEFAULT_MAX_PIXELS, "--max-pixels", metavar="N", min=1,
                                   help="Images with more pixels: 413."),
    decode_threads: Optional[int] = typer.Option(None, "--decode-threads", metavar="N", min=1,
                                                 help="Upload decode threads (default min(4, CPUs))."),
    log_level: LogLevel = typer.Option(LogLevel.info, "--log-level", case_sensitive=False,
                                       help="uvicorn's log level."),
) -> None:
    """Serve scores over HTTP (POST /v1/score) with a web page at / ."""
    try:
        from ..serving import create_app, is_loopback, run_server
    except ImportError as err:
        fail(f"`perceptiq serve` needs the serve extra: pip install 'perceptiq[serve]' ({err})")
    from ..backbones.weights import WeightsNotFoundError
    from ..inference import load_model

    def build(request_task: Optional[str], request_scene: Optional[str]):
        return load_model(model, backbone=backbone, weights=weights, task=request_task or value(task),
                          scene=request_scene or value(scene), device=device.value, precision=precision.value,
                          max_pixels=max_pixels)

    if not is_loopback(host) and token is None:
        typer.secho(f"warning: serving on {host} without a token: anyone who can reach it can use it "
                    f"(set PERCEPTIQ_TOKEN)", fg=typer.colors.YELLOW, err=True)
    try:
        app = create_app(build, token=token, max_files=max_files,
                         max_upload_bytes=int(max_upload_mb * 1024 * 1024), max_batch=max_batch,
                         max_wait_ms=max_wait_ms, decode_threads=decode_threads)
    except (WeightsNotFoundError, KeyError, ValueError, FileNotFoundError) as err:
        fail(error_text(err))
    info = app.state.variants.default.assessor.describe()
    typer.echo(describe_model_line(info, info["device"], info["precision"]) + f"; page at http://{host}:{port}/",
               err=True)
    run_server(app, host=host, port=port, log_level=log_level.value)
