"""The dataset registry: one ``DatasetSpec`` per standard IQA/IAA dataset, kept as
data, plus lookup (with "did you mean"), loading and the ``perceptiq datasets`` text.

Ranges follow Gamma Table 9 (AGIQA-3K: the Gamma authors' [0, 5], as Table 9's [0, 1] is
not the file's scale; LIVE's [1, 100] is nominal); datasets outside Table 9 use their
rating scale or, with none published, the file's min and max. docs/datasets.md lists
every entry and every choice; tests/data/test_label_ranges.py pins them.
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

from perceptiq.data.generic_csv import GENERIC_LAYOUT, generic_spec, load_csv_with_spec, load_generic_csv
from perceptiq.data.parsers import (
    aadb,
    agiqa3k,
    aigciqa2023,
    ava,
    bid,
    csiq,
    kadid10k,
    koniq10k,
    live,
    livec,
    livefb,
    pipal,
    spaq,
    tid2013,
    waterloo,
)
from perceptiq.data.parsers._assemble import assemble
from perceptiq.data.parsers._files import CaseInsensitiveRoot
from perceptiq.data.records import DatasetSpec, LabelColumn, LabeledDataset, LabelScale
from perceptiq.suggestions import did_you_mean

TABLE9 = "Gamma Table 9"
GRMP41 = "GRMP-IQA section 4.1"
FILE_RANGE = "min..max of the file"
COMMON_OPTIONS = {
    "column": "which label column to use (see the dataset's columns)",
    "check_files": "True (default): every image must exist; False: keep unresolved paths as written",
    "missing": "'error' (default) or 'skip' images absent on disk (reported in LabeledDataset.skipped)",
}


def _mos(low: float | None, high: float | None, source: str = TABLE9) -> LabelScale:
    return LabelScale("MOS", low, high, source)


def _dmos(low: float | None, high: float | None, source: str = TABLE9) -> LabelScale:
    return LabelScale("DMOS", low, high, source)


# Table 9's [1, 100] for both LIVE label files, as the Gamma authors' loader uses it. Nominal, not enforced:
# the realigned DMOS runs past 100, and such labels are kept, mapped on the same line (scores below 0).
LIVE_SCALE = LabelScale("DMOS", 1, 100, f"{TABLE9} (nominal: realigned DMOS runs past 100)", strict=False)


def _one(source: str, scale: LabelScale) -> tuple[LabelColumn, ...]:
    return (LabelColumn("mos" if scale.kind != "DMOS" else "dmos", source, scale),)


def _csv_only(note: str) -> str:
    return note + " Read it through a generic CSV: `--data NAME=path/to/labels.csv`."


SPECS: tuple[DatasetSpec, ...] = (
    DatasetSpec(
        name="live", title="LIVE IQA Database, release 2", aliases=("live-iqa", "live2", "liver2"),
        task="quality", scene="natural",
        columns=(
            LabelColumn("dmos_realigned", "dmos_realigned.mat: dmos_new", LIVE_SCALE),
            LabelColumn("dmos", "dmos.mat: dmos", LIVE_SCALE),
        ),
        default_column="dmos_realigned", expected_count=779, count_source=f"{TABLE9}; {GRMP41}",
        synthetic=True,
        layout="refnames_all.mat\ndmos.mat  dmos_realigned.mat\n"
               "jp2k/ jpeg/ wn/ gblur/ fastfading/  img<k>.bmp (+ info.txt)\nrefimgs/",
        native_format="MATLAB .mat (refnames_all, dmos/dmos_new, orgs)",
        format_note="982 entries in folder order jp2k, jpeg, wn, gblur, fastfading; orgs==1 (reference "
                    "copies) dropped.",
        format_source="LIVE release 2 readme; variable names as used by public loaders (e.g. hyperIQA)",
        parser=live.parse,
    ),
    DatasetSpec(
        name="csiq", title="CSIQ", aliases=(), task="quality", scene="natural",
        columns=_one("csiq.DMOS.xlsx sheet all_by_image: dmos", _dmos(0, 1)),
        default_column="dmos", expected_count=866, count_source=f"{TABLE9}; {GRMP41}", synthetic=True,
        layout="csiq.DMOS.xlsx\ndst_imgs/<awgn|jpeg|jpeg2000|fnoise|blur|contrast>/<image>.<TYPE>.<level>.png\n"
               "src_imgs/<image>.png",
        native_format="Excel .xlsx (sheet all_by_image: image, dst_idx, dst_type, dst_lev, dmos_std, dmos)",
        format_note="dst_type 'noise'/'jpeg 2000' map to folders awgn/jpeg2000.",
        format_source="CSIQ release; sheet and column names as read by public loaders",
        parser=csiq.parse,
    ),
    DatasetSpec(
        name="tid2013", title="TID2013", aliases=("tid",), task="quality", scene="natural",
        columns=_one("mos_with_names.txt: first field", _mos(0, 9)),
        default_column="mos", expected_count=3000, count_source=TABLE9, synthetic=True,
        layout="mos_with_names.txt  ('<MOS> <name>' per line)\ndistorted_images/iXX_YY_Z.bmp\nreference_images/IXX.BMP",
        native_format="text: '<MOS> <image name>' per line",
        format_note="Names mix i/I and .bmp/.BMP; matched case-insensitively.",
        format_source="TID2013 readme",
        parser=tid2013.parse,
    ),
    DatasetSpec(
        name="kadid10k", title="KADID-10k", aliases=("kadid", "kadid-10k"), task="quality", scene="natural",
        columns=_one("dmos.csv: dmos (a MOS on 1..5 despite the name)", _mos(1, 5)),
        default_column="mos", expected_count=10125, count_source=TABLE9, synthetic=True,
        layout="dmos.csv  (dist_img, ref_img, dmos, var)\nimages/IXX_YY_ZZ.png  images/IXX.png",
        native_format="CSV with header dist_img, ref_img, dmos, var",
        format_note="The 'dmos' column is a mean opinion score, higher = better.",
        format_source="KADID-10k release page and csv header",
        parser=kadid10k.parse,
    ),
    DatasetSpec(
        name="livec", title="LIVE In the Wild Image Quality Challenge (LIVEC / CLIVE)",
        aliases=("clive", "live-challenge", "livechallenge", "challengedb", "live-c"),
        task="quality", scene="natural",
        columns=_one("Data/AllMOS_release.mat: AllMOS_release", _mos(1, 100)),
        default_column="mos", expected_count=1162, count_source=f"{TABLE9}; {GRMP41}", synthetic=False,
        layout="Data/AllImages_release.mat  Data/AllMOS_release.mat\nImages/<name>  (Images/trainingImages/: first 7)",
        native_format="MATLAB .mat (AllImages_release, AllMOS_release)",
        format_note="The first 7 entries (training images of the study) are dropped: 1169 - 7 = 1162.",
        format_source="ChallengeDB release readme; public loaders",
        parser=livec.parse,
        options={"include_training_images": "keep the 7 training images (default False)"},
    ),
    DatasetSpec(
        name="koniq10k", title="KonIQ-10k", aliases=("koniq", "koniq-10k"), task="quality", scene="natural",
        columns=(
            LabelColumn("mos_zscore", "koniq10k_scores_and_distributions.csv: MOS_zscore", _mos(0, 100)),
            LabelColumn("mos", "koniq10k_scores_and_distributions.csv: MOS (1..5 ratings)",
                        _mos(1, 5, "KonIQ-10k 5-point scale")),
        ),
        default_column="mos_zscore", expected_count=10073, count_source=f"{TABLE9}; {GRMP41}", synthetic=False,
        layout="koniq10k_scores_and_distributions.csv\n1024x768/<image_name>  (or 512x384/)",
        native_format="CSV with header image_name, c1..c5, c_total, MOS, SD, MOS_zscore",
        format_note="Default column MOS_zscore matches Table 9's [0, 100].",
        format_source="KonIQ-10k release csv header",
        parser=koniq10k.parse,
        options={"images": "'1024x768' (default) or '512x384'"},
    ),
    DatasetSpec(
        name="spaq", title="SPAQ", aliases=(), task="quality", scene="natural",
        columns=_one("Annotations/MOS and Image attribute scores.xlsx: MOS", _mos(0, 100)),
        default_column="mos", expected_count=11125, count_source=f"{TABLE9}; {GRMP41}", synthetic=False,
        layout="Annotations/MOS and Image attribute scores.xlsx\nTestImage/<Image name>",
        native_format="Excel .xlsx (Image name, MOS, Brightness, Colorfulness, Contrast, Noisiness, Sharpness)",
        format_note="", format_source="SPAQ release (h4nwei/SPAQ); public loaders",
        parser=spaq.parse,
    ),
    DatasetSpec(
        name="livefb", title="LIVE-FB / FLIVE (PaQ-2-PiQ)",
        aliases=("flive", "live-fb", "fblive", "paq2piq", "paq-2-piq"), task="quality", scene="natural",
        columns=_one("labels_image.csv: mos", _mos(0, 100, "PaQ-2-PiQ rating slider 0..100 (not in Table 9)")),
        default_column="mos", expected_count=39810, count_source=GRMP41, synthetic=False,
        layout="labels_image.csv  (name, mos, ...)\ndatabase/<name>",
        native_format="CSV with header including name, mos",
        format_note="Whole-picture labels only; labels_patch.csv is not read.",
        format_source="niu-haoran/FLIVE_Database release; public loaders",
        parser=livefb.parse,
    ),
    DatasetSpec(
        name="pipal", title="PIPAL (NTIRE 2021 training part)", aliases=(), task="quality", scene="natural",
        columns=_one("Train_Label/AXXXX.txt: Elo score", _mos(None, None, f"{FILE_RANGE} (Elo ratings)")),
        default_column="mos", expected_count=23200, count_source=GRMP41, synthetic=True,
        layout="Train_Label/AXXXX.txt  ('AXXXX_TT_VV.bmp,<Elo>' per line)\n"
               "Train_Ref/AXXXX.bmp\nDistortion_1/ .. Distortion_4/  AXXXX_TT_VV.bmp",
        native_format="text: '<image>,<Elo score>' per line, one file per reference",
        format_note="Images are found by unique file name under the root, as the official loader does.",
        format_source="HaomingCai/PIPAL-dataset codes/data",
        parser=pipal.parse,
    ),
    DatasetSpec(
        name="agiqa3k", title="AGIQA-3K", aliases=("agiqa-3k", "agiqa"), task="quality", scene="ai-generated",
        columns=(
            LabelColumn("quality", "data.csv: mos_quality",
                        _mos(0, 5, "Gamma authors' code (Table 9 prints [0, 1], not the file's 0..5 scale)")),
            LabelColumn("align", "data.csv: mos_align", _mos(None, None, FILE_RANGE)),
        ),
        default_column="quality", expected_count=2982, count_source=TABLE9, synthetic=False,
        layout="data.csv  (name, prompt, adj1, adj2, style, mos_quality, std_quality, mos_align, std_align)\n"
               "<name> beside data.csv, or in AGIQA-3K/ or image/",
        native_format="CSV with header name, prompt, ..., mos_quality, std_quality, mos_align, std_align",
        format_note="Perceptual quality by default; option column='align' for text-image alignment.",
        format_source="lcysyzxdxc/AGIQA-3k-Database data.csv",
        parser=agiqa3k.parse,
    ),
    DatasetSpec(
        name="aigciqa2023", title="AIGCIQA2023", aliases=("aigc2023", "aigciqa-2023"),
        task="quality", scene="ai-generated",
        columns=(
            LabelColumn("quality", "DATA/MOS/mosz1.mat: MOSz", _mos(None, None, f"{FILE_RANGE} (no published range)")),
            LabelColumn("authenticity", "DATA/MOS/mosz2.mat: MOSz", _mos(None, None, FILE_RANGE)),
            LabelColumn("correspondence", "DATA/MOS/mosz3.mat: MOSz", _mos(None, None, FILE_RANGE)),
        ),
        default_column="quality", expected_count=2400, count_source="AIGCIQA2023 paper", synthetic=False,
        layout="DATA/MOS/mosz1.mat mosz2.mat mosz3.mat  (variable MOSz)\nImage/allimg/<i>.png  (i = 0..2399)",
        native_format="MATLAB .mat (MOSz), entry i labels Image/allimg/<i>.png",
        format_note="mosz1 = quality, mosz2 = authenticity, mosz3 = correspondence (authors' README).",
        format_source="wangjiarui153/AIGCIQA2023 README; public loaders",
        parser=aigciqa2023.parse,
    ),
    DatasetSpec(
        name="gfiqa20k", title="GFIQA-20k", aliases=("gfiqa", "gfiqa-20k"), task="quality", scene="face",
        columns=_one("generic CSV: score", _mos(0, 1)),
        default_column="mos", expected_count=19988, count_source=TABLE9, synthetic=False,
        layout=GENERIC_LAYOUT, native_format=None,
        format_note=_csv_only("The release's label-file name and layout could not be confirmed from the "
                              "authors' material (loaders seen use a CSV with columns img_name, mos)."),
        format_source="not found",
    ),
    DatasetSpec(
        name="uwiqa", title="UWIQA", aliases=("uw-iqa",), task="quality", scene="underwater",
        columns=_one("generic CSV: score", _mos(0, 1)),
        default_column="mos", expected_count=890, count_source=TABLE9, synthetic=False,
        layout=GENERIC_LAYOUT, native_format=None,
        format_note=_csv_only("No public description of the release's label file was found."),
        format_source="not found",
    ),
    DatasetSpec(
        name="ava", title="AVA (Aesthetic Visual Analysis)", aliases=(), task="aesthetics", scene="natural",
        columns=_one("AVA.txt: mean of the 10 vote counts", _mos(0, 10)),
        default_column="mos", expected_count=250000, count_source=f"{TABLE9} (AVA.txt lists ~255.5k)",
        synthetic=False,
        layout="AVA.txt  (index, image id, 10 vote counts, tag 1, tag 2, challenge id)\nimages/<image id>.jpg",
        native_format="text: 15 whitespace-separated fields per line",
        format_note="Label = sum(k * count_k) / sum(count_k), k = 1..10. Use missing='skip' for downloads "
                    "lacking a few images.",
        format_source="AVA June 2012 release readme",
        parser=ava.parse,
    ),
    DatasetSpec(
        name="aadb", title="AADB", aliases=(), task="aesthetics", scene="natural",
        columns=_one("imgListFiles_label/imgList*Regression_score.txt: score", _mos(0, 1)),
        default_column="mos", expected_count=10000, count_source=TABLE9, synthetic=False,
        layout="imgListFiles_label/imgList{Train,Validation,TestNew}Regression_score.txt\n"
               "datasetImages_originalSize/  AADB_newtest_originalSize/",
        native_format="text: '<image> <score>' per line, three lists",
        format_note="Train + validation + test lists are read together (8500 + 500 + 1000).",
        format_source="aimerykong/deepImageAestheticsAnalysis release; public loaders",
        parser=aadb.parse,
    ),
    DatasetSpec(
        name="bid", title="BID (Blurred Image Database)", aliases=(), task="quality", scene="natural",
        columns=_one("DatabaseGrades.xlsx: column B", _mos(0, 5, "BID grades 0..5 (not in Table 9)")),
        default_column="mos", expected_count=586, count_source="BID paper (Ciancio et al., 2011)",
        synthetic=False,
        layout="DatabaseGrades.xlsx  (image number, grade)\nImageDatabase/DatabaseImage<NNNN>.JPG",
        native_format="Excel .xlsx: column A image number, column B grade",
        format_note="", format_source="BID release; public loaders",
        parser=bid.parse,
    ),
    DatasetSpec(
        name="exbedde", title="exBeDDE (dehazed images)", aliases=("ex-bedde",), task="quality", scene="natural",
        columns=_one("generic CSV: score", _mos(0, 1)),
        default_column="mos", expected_count=1670, count_source=TABLE9, synthetic=False,
        layout=GENERIC_LAYOUT, native_format=None,
        format_note=_csv_only("The label-file format of the release is not publicly documented."),
        format_source="not found",
    ),
    DatasetSpec(
        name="eciqad", title="ECIQAD (enhanced colonoscopy images)", aliases=(), task="quality", scene="natural",
        columns=_one("generic CSV: score", _mos(1, 9)),
        default_column="mos", expected_count=2400, count_source=TABLE9, synthetic=False,
        layout=GENERIC_LAYOUT, native_format=None,
        format_note=_csv_only("The label-file format of the release is not publicly documented."),
        format_source="not found",
    ),
    DatasetSpec(
        name="waterloo", title="Waterloo Exploration Database (unlabelled; gMAD)",
        aliases=("waterloo-exploration", "exploration", "wed"), task="quality", scene="natural",
        columns=(LabelColumn("none", "unlabelled", LabelScale(None, None, None, "unlabelled")),),
        default_column="none", expected_count=4744, count_source="Ma et al., 2017", synthetic=False,
        layout="exploration_database_and_code/pristine_images/00001.bmp .. 04744.bmp",
        native_format="folder of pristine images, no labels",
        format_note="Labels and scores are NaN; distorted versions are not read.",
        format_source="Waterloo Exploration release; public loaders",
        parser=waterloo.parse,
    ),
    DatasetSpec(
        name="csv", title="generic CSV", aliases=("generic", "generic-csv"), task="quality", scene="natural",
        columns=generic_spec("csv", None, True, "quality", "natural").columns,
        default_column="score", expected_count=None, count_source="", synthetic=False,
        layout=GENERIC_LAYOUT, native_format="generic CSV",
        format_note="Root is the CSV file itself; scores normalised by the file's min..max "
                    "(use load_generic_csv for a fixed range or a DMOS).",
        format_source="perceptiq",
    ),
)

_BY_KEY = MappingProxyType({
    key: spec
    for spec in SPECS
    for key in (spec.name, *spec.aliases)
})


def _key(name: str) -> str:
    return "".join(ch for ch in name.casefold() if ch.isalnum())


_BY_NORMALISED_KEY = MappingProxyType({_key(k): spec for k, spec in _BY_KEY.items()})


def list_datasets() -> list[DatasetSpec]:
    """Every registered dataset, in registry order."""
    return list(SPECS)


def get_dataset_spec(name: str) -> DatasetSpec:
    """The spec for ``name`` or one of its aliases (case, '-', '_' and spaces ignored).

    Raises KeyError with a "did you mean" hint for an unknown name.
    """
    spec = _BY_NORMALISED_KEY.get(_key(name))
    if spec is not None:
        return spec
    hint = did_you_mean(_key(name), _BY_NORMALISED_KEY, show=lambda key: _BY_NORMALISED_KEY[key].name)
    raise KeyError(f"unknown dataset '{name}'.{hint} Known: {', '.join(s.name for s in SPECS)}")


def load_dataset(name: str, root: str | Path, **options: object) -> LabeledDataset:
    """Read dataset ``name`` from its native layout under ``root``.

    Options: ``column`` (label column), ``check_files`` (default True: every image must
    exist), ``missing`` ('error' or 'skip'), plus the dataset's own (``spec.options``).
    Datasets without a native parser (and ``csv``) take ``root`` = a generic CSV file.
    """
    spec = get_dataset_spec(name)
    allowed = set(COMMON_OPTIONS) | set(spec.options)
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise TypeError(f"{spec.name}: unknown option(s) {unknown}; allowed: {sorted(allowed)}")
    column = spec.column(options.pop("column", None))  # type: ignore[arg-type]
    check_files = bool(options.pop("check_files", True))
    missing = options.pop("missing", "error")
    if spec.parser is None:
        root_path = Path(root).expanduser()
        if root_path.suffix.casefold() != ".csv":
            raise ValueError(
                f"{spec.name}: no native parser ({spec.format_note}) — pass the path of a generic CSV "
                f"file as root, not '{root_path}'"
            )
        if spec.name == "csv":
            return load_generic_csv(root_path, check_files=check_files, missing=missing)  # type: ignore[arg-type]
        return load_csv_with_spec(root_path, spec, column=column.key, check_files=check_files,
                                  missing=missing)  # type: ignore[arg-type]
    files = CaseInsensitiveRoot(root, spec.name)
    records = spec.parser(files, column.key, options)
    return assemble(spec, column, records, files, check_files=check_files, missing=missing)  # type: ignore[arg-type]


def describe_datasets() -> str:
    """The text ``perceptiq datasets`` prints: every dataset, its layout and labels."""
    lines = [
        "Datasets perceptiq reads. Point a command at one with `--data NAME=ROOT` (train, finetune and",
        "meta-train take several). Names are case-insensitive; aliases in brackets.",
        "Scores are normalised to [0, 1], higher = better (DMOS flipped).",
        "",
    ]
    csv_only = []
    for spec in SPECS:
        aliases = f" [{', '.join(spec.aliases)}]" if spec.aliases else ""
        lines.append(f"{spec.name}{aliases} — {spec.title}")
        count = f"{spec.expected_count:,} images ({spec.count_source})" if spec.expected_count else "any size"
        lines.append(f"  task {spec.task}, scene {spec.scene}, {count}"
                     + (", synthetic (ref/distortion per sample)" if spec.synthetic else ""))
        for column in spec.columns:
            default = " (default)" if column.key == spec.default_column else ""
            lines.append(f"  column '{column.key}'{default}: {column.source}; {column.scale.describe()}"
                         f" [{column.scale.range_source}]")
        if spec.native_format is None:
            csv_only.append(spec.name)
            lines.append("  native format: none — generic CSV only")
        else:
            lines.append(f"  native format: {spec.native_format}")
        lines.append("  expected layout:")
        lines.extend(f"    {row}" for row in spec.layout.splitlines())
        if spec.format_note:
            lines.append(f"  note: {spec.format_note}")
        for option, meaning in spec.options.items():
            lines.append(f"  option {option}: {meaning}")
        lines.append("")
    lines.append(f"Read via generic CSV only: {', '.join(csv_only)} "
                 "(use `--data NAME=labels.csv`; the CSV's header is path,score[,ref,distortion,level,scene],")
    lines.append("paths relative to the CSV's folder; the dataset's range, scene and task still apply).")
    lines.append("Options for every dataset: " + "; ".join(f"{k}: {v}" for k, v in COMMON_OPTIONS.items()))
    return "\n".join(lines)
