"""``perceptiq serve``: load a model and run the HTTP scoring service and web page (docs/serving.md)."""
from __future__ import annotations

from typing import Optional

import typer

# Servers decode uploads from anyone who can reach them: a lower default than the batch scorer's 200 Mpx,
# since a 200 Mpx PNG decodes to 600 MB of RGB and several may be in flight at once.
SERVE_DEFAULT_MAX_PIXELS = 50_000_000


def serve_command(
    model: str = typer.Option("zero-shot", help="Registered model name or a checkpoint path."),
    backbone: Optional[str] = typer.Option(None, help="open_clip architecture, e.g. ViT-B-16 or test-tiny."),
    weights: Optional[str] = typer.Option(None, help="openai | other open_clip tag | FILE | uniqa:FILE | random "
                                                     "(default: $PERCEPTIQ_WEIGHTS, else the model's)."),
    task: Optional[str] = typer.Option(None, help="Default task: quality or aesthetics (default: the model's "
                                                  "first). Requests may ask for the other."),
    scene: Optional[str] = typer.Option(None, help="Default scene prompts (a scene name or auto)."),
    host: str = typer.Option("127.0.0.1", help="Address to bind; anything but loopback exposes the service."),
    port: int = typer.Option(8000, min=0, max=65535),
    token: Optional[str] = typer.Option(None, envvar="PERCEPTIQ_TOKEN", show_default=False,
                                        help="Require 'Authorization: Bearer TOKEN' on /v1/* "
                                             "(prefer the env var: a flag shows in `ps`)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    precision: str = typer.Option("auto", help="auto | fp32 | bf16"),
    max_batch: int = typer.Option(32, min=1, help="Most images in one forward pass."),
    max_wait_ms: float = typer.Option(10.0, min=0, help="Longest wait for a batch to fill, in ms."),
    max_files: int = typer.Option(32, min=1, help="Most files in one request (more: 413)."),
    max_upload_mb: float = typer.Option(20.0, min=0.001, help="Largest file in MiB (larger: 413)."),
    max_pixels: int = typer.Option(SERVE_DEFAULT_MAX_PIXELS, min=1, help="Images with more pixels: 413."),
    decode_threads: Optional[int] = typer.Option(None, min=1, help="Upload decode threads (default min(4, CPUs))."),
    log_level: str = typer.Option("info", help="uvicorn log level."),
) -> None:
    """Serve scores over HTTP (POST /v1/score) with a web page at / ."""
    try:
        from ..serving import create_app, is_loopback, run_server
    except ImportError as err:
        typer.secho(f"error: `perceptiq serve` needs the serve extra: pip install 'perceptiq[serve]' ({err})",
                    fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    from ..backbones import WeightsNotFoundError
    from ..inference import load_model

    def build(request_task: Optional[str], request_scene: Optional[str]):
        return load_model(model, backbone=backbone, weights=weights, task=request_task or task,
                          scene=request_scene or scene, device=device, precision=precision,
                          max_pixels=max_pixels)

    if not is_loopback(host) and token is None:
        typer.secho(f"warning: serving on {host} without a token: anyone who can reach it can use it "
                    f"(set PERCEPTIQ_TOKEN)", fg=typer.colors.YELLOW, err=True)
    try:
        app = create_app(build, token=token, max_files=max_files,
                         max_upload_bytes=int(max_upload_mb * 1024 * 1024), max_batch=max_batch,
                         max_wait_ms=max_wait_ms, decode_threads=decode_threads)
    except (WeightsNotFoundError, KeyError, ValueError, FileNotFoundError) as err:
        typer.secho(f"error: {str(err).strip(chr(34))}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    info = app.state.variants.default.assessor.describe()
    typer.echo(f"model {info['model']} ({info['backbone']}, weights={info['weights']}, task={info['task']}, "
               f"scene={info['scene']}, {info['device']}, {info['precision']}); "
               f"page at http://{host}:{port}/", err=True)
    run_server(app, host=host, port=port, log_level=log_level)
