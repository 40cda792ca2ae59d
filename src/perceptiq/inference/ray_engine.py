"""Scale-out scoring on Ray Data: list -> decode in parallel tasks -> score in an actor pool -> write.

The rows are the local engine's (``perceptiq.inference.score_paths``): one row per listed input with
``path, score, error`` (plus ``scene`` when the model picks prompts by scene), a bad file becomes an
error row with the same message, never a failed task. Design and the multi-node recipe are in
docs/scale-out.md.

Pipeline (one Ray Data dataset, executed as a stream):

1. the driver lists the inputs with ``list_inputs`` (the local engine's listing rules) and loads the
   model once on the CPU to learn its preprocessing (and to fail early on a bad model name);
2. ``map_batches(_decode_batch)`` — stateless tasks decode with ``load_rgb`` and apply the model's
   transform, exactly as the local loader's ``ImagePathDataset`` does (it is reused per file);
3. ``map_batches(_ScoreActor)`` — an actor pool; each actor builds the model once with
   ``perceptiq.inference.load_model``; one actor per GPU (``num_gpus=1``) when the cluster has GPUs,
   else a small CPU pool;
4. the rows go to Parquet or CSV shards written by the workers (``output`` is a folder), or are streamed
   to the driver and written to one file (``.csv``/``.jsonl`` by the local engine's writer, or
   ``.parquet``), or printed as a table.

Resume (``resume=True``) keeps the local engine's semantics: every path already in the output (scored or
failed) is skipped and only the rest is scored, so no row is ever written twice. A ``.csv``/``.jsonl``
file is cut back to its last complete row and appended to; a shard folder is read shard by shard, a shard
the stopped run left incomplete is repaired (CSV: cut back to its last complete row) or removed (a
Parquet file without its footer holds no readable row; its paths are scored again), and the new rows go
to new shards beside the old. A single ``.parquet`` file cannot be resumed: it is unreadable until closed.

Ray is an optional dependency (``pip install perceptiq[ray]``); it is imported only when this module's
functions run, never when perceptiq is imported.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .scorer import list_inputs
from .writers import RunSummary, open_writer, read_done_paths, repair_truncated_tail

log = logging.getLogger(__name__)

SHARD_FORMATS = ("parquet", "csv")
# A single-file output is recognised by these suffixes; any other ``output`` is a folder of shards.
FILE_SUFFIXES = (".csv", ".jsonl", ".parquet")
# Decode tasks ask for half a CPU: reading a file waits on storage, and a resource shape different from
# the scoring actors' keeps Ray Data from fusing decoding into the actors, so decoding stays spread over
# every CPU of the cluster instead of only the actors' cores.
DECODE_CPUS_PER_TASK = 0.5
# Local Ray started by the command: at most this many CPUs unless the caller says otherwise, so a
# laptop run does not grab every core (decode tasks and the CPU actors share them).
DEFAULT_LOCAL_CPUS = 4


class RayNotInstalledError(ImportError):
    """Ray (the optional ``perceptiq[ray]`` extra) is not installed."""


def import_ray():
    """``ray`` and ``ray.data``, or a clear error telling how to install them."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as err:
        raise RayNotInstalledError(
            f"the Ray engine needs Ray Data ({err}); install it with: pip install 'perceptiq[ray]' "
            "(or pip install 'ray[data]')") from err
    return ray


# -- the cluster -----------------------------------------------------------------------------------------
def connect(address: str | None = None, *, num_cpus: int | None = None, quiet: bool = True) -> bool:
    """Attach to a Ray cluster (``address``, e.g. ``"ray://head:10001"`` or ``"head:6379"`` or ``"auto"``),
    or start a local one with ``num_cpus`` CPUs (default ``min(DEFAULT_LOCAL_CPUS, usable CPUs)``), no
    dashboard and no usage reporting, so it works offline. Returns True when this call started or
    connected Ray (the caller then shuts it down), False when Ray was already initialised.
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no network call home (offline machines)
    if quiet:
        logging.getLogger("ray").setLevel(logging.WARNING)
        logging.getLogger("ray.data").setLevel(logging.WARNING)
    common: dict[str, Any] = {"log_to_driver": not quiet,
                              "logging_level": logging.WARNING if quiet else logging.INFO}
    if address:
        ray.init(address=address, **common)
    else:
        cpus = num_cpus or min(DEFAULT_LOCAL_CPUS, _usable_cpus())
        ray.init(num_cpus=cpus, include_dashboard=False, **common)
    return True


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class ActorPlan:
    """How the scoring actors are placed: ``n_actors`` actors, each with ``num_gpus`` GPUs and
    ``num_cpus`` CPUs, running the model on ``device``."""

    n_actors: int
    num_gpus: float
    num_cpus: float
    device: str


def plan_actors(resources: dict[str, float], *, device: str = "auto", n_actors: int | None = None) -> ActorPlan:
    """One actor per GPU where the cluster has GPUs (and ``device`` is not "cpu"); else a small CPU pool
    (a quarter of the cluster's CPUs, at least 1, at most 4: decoding needs the rest).

    resources: ``ray.cluster_resources()`` (keys "CPU", "GPU").
    """
    gpus = int(resources.get("GPU", 0))
    cpus = int(resources.get("CPU", 1))
    if device == "cuda" and gpus == 0:
        raise ValueError("--device cuda: the Ray cluster has no GPUs")
    if gpus > 0 and device in ("auto", "cuda"):
        return ActorPlan(n_actors or gpus, num_gpus=1, num_cpus=1, device="cuda")
    return ActorPlan(n_actors or max(1, min(4, cpus // 4)), num_gpus=0, num_cpus=1, device="cpu")


# -- the stages ------------------------------------------------------------------------------------------
def _decode_batch(batch: dict[str, np.ndarray], *, preprocess, max_pixels: int) -> dict[str, np.ndarray]:
    """Decode stage (a stateless task): {path [B]} -> {path [B], pixels [B] of [K,3,h,w] float32, boxes [B]
    of [K,4], error [B]}.

    ``preprocess`` is the model's view (``ViewTransform``), so K inputs per image (crops) and sizes that
    differ per image (``full``) travel as variable-shaped tensors. Failures keep an empty [0,3,h,w] and
    their message in ``error`` ("" = decoded), so one bad file never fails the task. The per-file work
    is the local loader's ``ImagePathDataset.__getitem__``.
    """
    from .loader import ImagePathDataset

    paths = [str(p) for p in batch["path"]]
    dataset = ImagePathDataset(paths, preprocess, target_short_side=preprocess.decode_short_side,
                               max_pixels=max_pixels)
    size = preprocess.size
    pixels, boxes, errors = [], [], []
    for i in range(len(paths)):
        _, _, view_input, error = dataset[i]
        if view_input is None:
            pixels.append(np.zeros((0, 3, size, size), dtype=np.float32))
            boxes.append(np.zeros((0, 4), dtype=np.float64))
        else:
            pixels.append(view_input.pixels.numpy())
            boxes.append(np.asarray(view_input.boxes, dtype=np.float64))
        errors.append(error or "")
    return {"path": np.array(paths, dtype=object), "pixels": _ragged(pixels), "boxes": _ragged(boxes),
            "error": np.array(errors, dtype=object)}


def _ragged(arrays: list[np.ndarray]) -> np.ndarray:
    """A [B] object array of arrays (Ray Data stores it as a variable-shaped tensor column)."""
    out = np.empty(len(arrays), dtype=object)
    for i, array in enumerate(arrays):
        out[i] = array
    return out


def result_schema(with_scene: bool):
    """Arrow schema of the result rows: path, score (float64, null on failure), error (null when
    scored)[, scene]."""
    import pyarrow as pa

    fields = [("path", pa.string()), ("score", pa.float64()), ("error", pa.string())]
    if with_scene:
        fields.append(("scene", pa.string()))
    return pa.schema(fields)


class _ScoreActor:
    """Scoring stage (an actor): the model is built once per actor, then scores decoded batches."""

    def __init__(self, model_args: dict[str, Any], with_scene: bool, torch_threads: int | None = None,
                 max_batch: int = 32):
        import torch

        from .assessor import load_model

        if torch_threads:
            torch.set_num_threads(torch_threads)  # a CPU actor keeps to its share of the node
        self.assessor = load_model(**model_args)
        self.with_scene = with_scene
        self.max_batch = max_batch

    def __call__(self, batch: dict[str, np.ndarray]):
        import pyarrow as pa
        import torch

        from ..imaging.views import ViewInput

        paths = [str(p) for p in batch["path"]]
        errors = [str(e) if e else None for e in batch["error"]]
        good = [i for i, e in enumerate(errors) if e is None]
        scores: list[float | None] = [None] * len(paths)
        scenes: list[str | None] = [None] * len(paths)
        if good:
            inputs = [ViewInput(torch.from_numpy(np.ascontiguousarray(batch["pixels"][i], dtype=np.float32)),
                                [tuple(map(float, box)) for box in batch["boxes"][i]]) for i in good]
            for position, outcome in zip(good, self.assessor.predict_inputs(inputs, max_batch=self.max_batch)):
                scores[position] = outcome.score
                scenes[position] = outcome.scene
        columns = {"path": paths, "score": scores, "error": errors}
        if self.with_scene:
            columns["scene"] = scenes
        return pa.Table.from_pydict(columns, schema=result_schema(self.with_scene))


# -- the run ---------------------------------------------------------------------------------------------
def output_kind(output: str | os.PathLike | None, shard_format: str | None = None) -> str:
    """"table" (no output), "csv"/"jsonl"/"parquet" (one file, by suffix) or "shards" (a folder)."""
    if output is None:
        return "table"
    suffix = Path(output).suffix.lower()
    if suffix in FILE_SUFFIXES and not str(output).endswith(("/", os.sep)):
        if shard_format is not None:
            raise ValueError(f"output {str(output)!r} is a single {suffix} file; shard_format applies to an "
                             "output folder")
        return suffix[1:]
    return "shards"


def build_dataset(files: list[str], *, preprocess, max_pixels: int, model_args: dict,
                  with_scene: bool, plan: ActorPlan, batch_size: int):
    """The lazy Ray dataset of result rows for ``files`` (nothing runs until it is consumed)."""
    ray = import_ray()
    items = ray.data.from_items([{"path": f} for f in files])
    decoded = items.map_batches(
        _decode_batch, batch_size=batch_size, batch_format="numpy", num_cpus=DECODE_CPUS_PER_TASK,
        fn_kwargs={"preprocess": preprocess, "max_pixels": max_pixels},
    )
    threads = None if plan.device == "cuda" else max(1, int(plan.num_cpus))
    return decoded.map_batches(
        _ScoreActor, batch_size=batch_size, batch_format="numpy",
        fn_constructor_kwargs={"model_args": {**model_args, "device": plan.device}, "with_scene": with_scene,
                               "torch_threads": threads, "max_batch": batch_size},
        compute=ray.data.ActorPoolStrategy(size=plan.n_actors), num_gpus=plan.num_gpus, num_cpus=plan.num_cpus,
    )


def score_with_ray(
    paths: Iterable[str | os.PathLike],
    *,
    model: str = "zero-shot",
    backbone: str | None = None,
    weights: str | None = None,
    task: str | None = None,
    scene: str | None = None,
    device: str = "auto",
    precision: str = "auto",
    max_pixels: int = 200_000_000,
    view: str | None = None,
    batch_size: int = 32,
    output: str | os.PathLike | None = None,
    shard_format: str | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
    n_actors: int | None = None,
    progress: bool = False,
    on_model: Callable[[dict], None] | None = None,
    resume: bool = False,
) -> RunSummary:
    """Score files and folders on Ray; returns the run's counts.

    output: None (a table on stdout), ``FILE.csv`` / ``FILE.jsonl`` (one file, the local engine's
        format), ``FILE.parquet`` (one Parquet file), or a folder of shards written by the workers
        (``shard_format`` "parquet", the default, or "csv"; on a multi-node cluster the folder must be on
        storage every node can write, e.g. NFS or an object store URI).
    address: an existing cluster (``ray start --head`` printed it; "auto" finds the local one); None
        starts a local Ray with ``num_cpus`` CPUs, shut down at the end.
    view: how a file becomes model input (``perceptiq.imaging`` view; default: the model's); decoding and
        the view run in the decode tasks, the actors score the view's inputs as the local engine does.
    n_actors: scoring actors (default: one per GPU, else a small CPU pool; see ``plan_actors``).
    on_model: called with the model's ``Assessor.describe()`` once it is built (the CLI prints it).
    resume: skip every path already in ``output`` (a ``.csv``/``.jsonl`` file or a shard folder the driver
        can read; see the module docstring) and add rows for the rest only; ``summary.n_skipped`` counts
        the skipped ones.
    Row order is not the input order (blocks finish as they finish); every listed input gets one row.
    """
    from .assessor import load_model
    from .scorer import default_output_columns

    if shard_format is not None and shard_format not in SHARD_FORMATS:
        raise ValueError(f"shard_format {shard_format!r}: choose one of {', '.join(SHARD_FORMATS)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    kind = output_kind(output, shard_format)
    if resume:
        _check_resumable(output, kind)
    model_args = {"model": model, "backbone": backbone, "weights": weights, "task": task, "scene": scene,
                  "precision": precision, "max_pixels": max_pixels, "view": view}
    # the driver builds the model once on the CPU: its preprocessing goes to the decode tasks, and a bad
    # model name or weights file fails here, before any cluster work
    probe = load_model(**{**model_args, "device": "cpu", "precision": "fp32"})
    columns = default_output_columns(probe)
    preprocess = probe.transform
    if on_model is not None:
        on_model(probe.describe())
    del probe
    files = list_inputs(paths)
    summary = RunSummary()
    if resume:   # before Ray starts: a run with nothing left to do never starts it
        done = (done_in_shards(output, shard_format or "parquet") if kind == "shards"
                else read_done_paths(output))
        summary.n_skipped = sum(f in done for f in files)
        files = [f for f in files if f not in done]
    if not files:
        return summary
    ray = import_ray()
    started = connect(address, num_cpus=num_cpus, quiet=not progress)
    try:
        ray.data.DataContext.get_current().enable_progress_bars = progress
        plan = plan_actors(ray.cluster_resources(), device=device, n_actors=n_actors)
        dataset = build_dataset(files, preprocess=preprocess, max_pixels=max_pixels,
                                model_args=model_args, with_scene="scene" in columns, plan=plan,
                                batch_size=batch_size)
        if kind == "shards":
            fmt = shard_format or "parquet"
            earlier = _shard_files(output, fmt) if resume else []
            _write_shards(dataset, os.fspath(output), fmt, resume=resume)
            summary.record_rows(_read_shard_errors(os.fspath(output), fmt, exclude=earlier))
        elif kind == "parquet":
            _write_parquet_file(dataset, Path(output), "scene" in columns, summary)
        else:
            with open_writer(output, columns=columns, resume=resume) as writer:
                for rows in _iter_row_batches(dataset, columns):
                    writer.write_rows(rows)
                    writer.flush()
                    summary.record_rows(rows)
    finally:
        if started:
            ray.shutdown()
    return summary


def _iter_row_batches(dataset, columns: tuple[str, ...]) -> Iterator[list[dict]]:
    """Result rows streamed to the driver, one list per block batch."""
    for table in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
        yield [{c: row.get(c) for c in columns} for row in table.to_pylist()]


def _is_uri(target: str) -> bool:
    return "://" in target  # s3://, gs://, ...: Ray's writers take them; the driver does not look inside


def _check_resumable(output, kind: str) -> None:
    if kind == "table":
        raise ValueError("resume needs an output (a .csv/.jsonl file or a shard folder) to read the done paths from")
    if kind == "parquet":
        raise ValueError(f"cannot resume {output}: a single Parquet file is unreadable until the run that writes "
                         "it closes it; write a shard folder (or .csv/.jsonl) to be able to resume")
    if kind == "shards" and _is_uri(os.fspath(output)):
        raise ValueError(f"cannot resume {output}: the driver reads the done paths from a local (or mounted) "
                         "folder, not an object-store URI")


def _shard_files(folder, shard_format: str) -> list[Path]:
    folder = Path(folder)
    return sorted(folder.glob(f"*.{shard_format}")) if folder.is_dir() else []


def done_in_shards(folder: str | os.PathLike, shard_format: str = "parquet") -> set[str]:
    """Paths that have a row in a shard folder (for resuming). A shard that a stopped run left incomplete
    is repaired or removed first (see the module docstring), so every row counted here stays readable
    and no path is both counted done and missing from the output."""
    import pyarrow as pa
    import pyarrow.dataset as pads

    done: set[str] = set()
    for shard in _shard_files(folder, shard_format):
        try:
            if shard_format == "csv":
                repair_truncated_tail(shard)   # a kill mid-row leaves a partial last line
                if shard.stat().st_size == 0:
                    raise pa.ArrowInvalid("empty file")
            table = pads.dataset(str(shard), format="parquet" if shard_format == "parquet" else _csv_format()
                                 ).to_table(columns=["path"])
        except (pa.ArrowInvalid, OSError) as err:
            log.warning("removing %s, a shard the stopped run left incomplete (%s); its paths are scored again",
                        shard, err)
            shard.unlink()
            continue
        done.update(str(p) for p in table.column("path").to_pylist())
    return done


def _write_shards(dataset, target: str, shard_format: str, *, resume: bool = False) -> None:
    if not _is_uri(target):
        folder = Path(target)
        if folder.exists() and any(folder.iterdir()) and not resume:
            raise FileExistsError(f"output folder {folder} is not empty; shards would mix with earlier results")
        target = str(folder.resolve())
    if shard_format == "parquet":
        dataset.write_parquet(target)
    else:
        dataset.write_csv(target)


def _read_shard_errors(target: str, shard_format: str, exclude: list[Path] = ()) -> list[dict]:
    """The ``error`` column of every shard but ``exclude`` (a resumed run's earlier shards), for the run's
    summary (shards the driver can see)."""
    if _is_uri(target) or not Path(target).is_dir():
        log.warning("output %s is not a folder the driver can read; no summary counts", target)
        return []
    new = [f for f in _shard_files(target, shard_format) if f not in set(exclude)]
    if not new:
        return []
    return [{"error": error} for error in _read_shard_files(new, shard_format, ["error"])["error"]]


def read_shards(folder: str | os.PathLike, shard_format: str = "parquet",
                columns: list[str] | None = None) -> dict[str, list]:
    """All rows of a shard folder as ``{column: [values]}`` (None for empty cells)."""
    if shard_format not in SHARD_FORMATS:
        raise ValueError(f"shard_format {shard_format!r}: choose one of {', '.join(SHARD_FORMATS)}")
    files = sorted(p for p in Path(folder).iterdir() if p.suffix == f".{shard_format}")
    if not files:
        raise FileNotFoundError(f"no .{shard_format} shards in {folder}")
    return _read_shard_files(files, shard_format, columns)


def _read_shard_files(files: list[Path], shard_format: str, columns: list[str] | None) -> dict[str, list]:
    import pyarrow.dataset as pads

    data_format = "parquet" if shard_format == "parquet" else _csv_format()
    table = pads.dataset([str(f) for f in files], format=data_format).to_table(columns=columns)
    out = table.to_pydict()
    if shard_format == "csv":  # CSV has no null: an empty cell is None, as in the local engine's files
        out = {k: [None if v == "" else v for v in vs] for k, vs in out.items()}
    return out


def _csv_format():
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.dataset as pads

    # keep every column as text except the score, so paths that look like numbers stay paths
    types = {"path": pa.string(), "score": pa.float64(), "error": pa.string(), "scene": pa.string()}
    return pads.CsvFileFormat(convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=True))


def _write_parquet_file(dataset, path: Path, with_scene: bool, summary: RunSummary) -> None:
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    schema = result_schema(with_scene)
    with pq.ParquetWriter(str(path), schema) as writer:
        for table in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
            writer.write_table(table.cast(schema))
            summary.record_rows({"error": e} for e in table.column("error").to_pylist())


__all__ = ["SHARD_FORMATS", "ActorPlan", "RayNotInstalledError", "build_dataset", "connect", "done_in_shards",
           "import_ray", "output_kind", "plan_actors", "read_shards", "result_schema", "score_with_ray"]
