"""Builders of tiny replicas of each dataset's native layout, for the parser tests.

Each builder writes label files in the release's real format (.mat through
scipy.io.savemat with the real variable names, .xlsx through openpyxl, CSV/TXT) and
a few 4x4 images through Pillow, then returns what the parser must produce: the
on-disk path of every sample (relative to the root), its label, and the expected
normalised score computed here independently from the parser.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from openpyxl import Workbook
from PIL import Image
from scipy.io import savemat


@dataclass(frozen=True)
class Expected:
    path: str
    label: float
    score: float
    ref: str | None = None
    distortion: str | None = None
    level: int | None = None


@dataclass
class Replica:
    root: Path
    expected: list[Expected]
    options: dict = field(default_factory=dict)


def write_image(path: Path, shade: int = 128) -> None:
    """A 4x4 image in the format the suffix names (bmp/png/jpg, any case)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    formats = {".bmp": "BMP", ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
    Image.new("RGB", (4, 4), (shade, shade // 2, 255 - shade)).save(path, formats[path.suffix.lower()])


def cell_column(strings: list[str]) -> np.ndarray:
    """A MATLAB N x 1 cell array of strings, as savemat writes object arrays."""
    cells = np.empty((len(strings), 1), dtype=object)
    for i, s in enumerate(strings):
        cells[i, 0] = s
    return cells


def cell_row(strings: list[str]) -> np.ndarray:
    return cell_column(strings).reshape(1, -1)


def write_xlsx(path: Path, rows: list[list], sheet: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    workbook = Workbook()
    worksheet = workbook.active
    if sheet is not None:
        worksheet.title = sheet
    for row in rows:
        worksheet.append(row)
    workbook.save(path)


def write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def write_csv(path: Path, header: list[str], rows: list[list], quote_all: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL)
        writer.writerow(header)
        writer.writerows(rows)


def unit(label: float, low: float, high: float) -> float:
    return (label - low) / (high - low)


# --- synthetic-distortion datasets -------------------------------------------------

def build_live(root: Path) -> Replica:
    folders = [("jp2k", 227), ("jpeg", 233), ("wn", 174), ("gblur", 174), ("fastfading", 174)]
    entries = [(folder, k) for folder, count in folders for k in range(1, count + 1)]
    kept = {0: 30.0, 229: 55.5, 981: 104.5}  # entry -> DMOS (realigned runs past 100); the rest are reference copies
    dmos = np.zeros((1, len(entries)))
    orgs = np.ones((1, len(entries)))
    refnames = ["bikes.bmp"] * len(entries)
    for entry, value in kept.items():
        dmos[0, entry], orgs[0, entry] = value, 0
    refnames[229] = "parrots.bmp"
    savemat(root / "dmos_realigned.mat", {"dmos_new": dmos, "orgs": orgs, "dmos_std": np.ones_like(dmos)})
    savemat(root / "dmos.mat", {"dmos": dmos + 1.0, "orgs": orgs})
    savemat(root / "refnames_all.mat", {"refnames_all": cell_row(refnames)})
    expected = []
    low, high = 1.0, 100.0  # Gamma Table 9, nominal: 104.5 is kept and scores below 0
    for entry, value in kept.items():
        folder, k = entries[entry]
        write_image(root / folder / f"img{k}.bmp")
        expected.append(Expected(f"{folder}/img{k}.bmp", value, 1 - unit(value, low, high),
                                 ref=refnames[entry][:-4], distortion=folder))
    return Replica(root, expected)


def build_csiq(root: Path) -> Replica:
    header = [None, None, None, "image", "dst_idx", "dst_type", "dst_lev", "dmos_std", "dmos"]
    rows = [
        [None] * 3, ["CSIQ DMOS"], [None],  # the release's title rows above the header (row 4)
        header,
        [None, None, None, 1600, 1, "noise", 1, 0.01, 0.062],
        [None, None, None, "aerial_city", 2, "jpeg 2000", 3, 0.02, 0.5],
        [None, None, None, 1600, 6, "contrast", 2, 0.03, 0.9],
    ]
    write_xlsx(root / "csiq.DMOS.xlsx", rows, sheet="all_by_image")
    files = ["dst_imgs/awgn/1600.AWGN.1.png", "dst_imgs/jpeg2000/aerial_city.jpeg2000.3.png",
             "dst_imgs/contrast/1600.contrast.2.png"]
    for file in files:
        write_image(root / file)
    write_image(root / "src_imgs" / "1600.png")
    return Replica(root, [
        Expected(files[0], 0.062, 1 - 0.062, "1600", "noise", 1),
        Expected(files[1], 0.5, 0.5, "aerial_city", "jpeg 2000", 3),
        Expected(files[2], 0.9, 1 - 0.9, "1600", "contrast", 2),
    ])


def build_tid2013(root: Path) -> Replica:
    # Names in the label file and on disk differ in case, as in the release.
    write_lines(root / "mos_with_names.txt", ["5.51429 i01_01_1.bmp", "4.00000 I01_02_5.bmp", "6.20000 i25_24_3.bmp"])
    on_disk = ["distorted_images/I01_01_1.BMP", "distorted_images/i01_02_5.bmp", "distorted_images/i25_24_3.BMP"]
    for file in on_disk:
        write_image(root / file)
    write_image(root / "reference_images" / "I01.BMP")
    return Replica(root, [
        Expected(on_disk[0], 5.51429, 5.51429 / 9, "I01", "01", 1),
        Expected(on_disk[1], 4.0, 4.0 / 9, "I01", "02", 5),
        Expected(on_disk[2], 6.2, 6.2 / 9, "I25", "24", 3),
    ])


def build_kadid10k(root: Path) -> Replica:
    write_csv(root / "dmos.csv", ["dist_img", "ref_img", "dmos", "var"],
              [["I01_01_01.png", "I01.png", 4.57, 0.496], ["I02_25_05.png", "I02.png", 1.2, 0.3]])
    for name in ("I01_01_01.png", "I02_25_05.png", "I01.png", "I02.png"):
        write_image(root / "images" / name)
    return Replica(root, [
        Expected("images/I01_01_01.png", 4.57, unit(4.57, 1, 5), "I01", "01", 1),
        Expected("images/I02_25_05.png", 1.2, unit(1.2, 1, 5), "I02", "25", 5),
    ])


def build_pipal(root: Path) -> Replica:
    write_lines(root / "Train_Label" / "A0001.txt", ["A0001_00_00.bmp,1476.5", "A0001_10_02.bmp,1500.0"])
    write_lines(root / "Train_Label" / "A0002.txt", ["A0002_01_01.bmp,1600.5"])
    files = ["Distortion_1/A0001_00_00.bmp", "Distortion_2/A0001_10_02.bmp", "Distortion_1/A0002_01_01.bmp"]
    for file in files:
        write_image(root / file)
    write_image(root / "Train_Ref" / "A0001.bmp")
    low, high = 1476.5, 1600.5
    return Replica(root, [
        Expected(files[0], 1476.5, 0.0, "A0001", "00"),
        Expected(files[1], 1500.0, unit(1500.0, low, high), "A0001", "10"),
        Expected(files[2], 1600.5, 1.0, "A0002", "01"),
    ])


# --- authentic-distortion and other quality datasets -------------------------------

def build_livec(root: Path) -> Replica:
    names = [f"t{i}.bmp" for i in range(1, 8)] + ["10.bmp", "100.bmp"]
    mos = np.array([[50.0] * 7 + [63.9, 25.3]])
    (root / "Data").mkdir(parents=True)
    savemat(root / "Data" / "AllImages_release.mat", {"AllImages_release": cell_column(names)})
    savemat(root / "Data" / "AllMOS_release.mat", {"AllMOS_release": mos})
    for name in names[:7]:
        write_image(root / "Images" / "trainingImages" / name)
    for name in names[7:]:
        write_image(root / "Images" / name)
    return Replica(root, [
        Expected("Images/10.bmp", 63.9, unit(63.9, 1, 100)),
        Expected("Images/100.bmp", 25.3, unit(25.3, 1, 100)),
    ])


def build_koniq10k(root: Path) -> Replica:
    header = ["image_name", "c1", "c2", "c3", "c4", "c5", "c_total", "MOS", "SD", "MOS_zscore"]
    write_csv(root / "koniq10k_scores_and_distributions.csv", header, [
        ["10004473376.jpg", 0, 0, 25, 73, 7, 105, 3.828571, 0.527278, 77.383621],
        ["10007357496.jpg", 0, 3, 45, 47, 1, 96, 3.479167, 0.580003, 68.728966],
    ], quote_all=True)
    for name in ("10004473376.jpg", "10007357496.jpg"):
        write_image(root / "1024x768" / name)
    return Replica(root, [
        Expected("1024x768/10004473376.jpg", 77.383621, 0.77383621),
        Expected("1024x768/10007357496.jpg", 68.728966, 0.68728966),
    ])


def build_spaq(root: Path) -> Replica:
    header = ["Image name", "MOS", "Brightness", "Colorfulness", "Contrast", "Noisiness", "Sharpness"]
    write_xlsx(root / "Annotations" / "MOS and Image attribute scores.xlsx",
               [header, ["00001.jpg", 42.65, 43.1, 36.5, 40.0, 48.2, 45.4], ["00002.jpg", 75.0, 1, 2, 3, 4, 5]])
    for name in ("00001.jpg", "00002.jpg"):
        write_image(root / "TestImage" / name)
    return Replica(root, [Expected("TestImage/00001.jpg", 42.65, 0.4265), Expected("TestImage/00002.jpg", 75.0, 0.75)])


def build_livefb(root: Path) -> Replica:
    write_csv(root / "labels_image.csv", ["name", "mos"], [["EE371R/cj50.jpg", 65.4], ["AVA__149.jpg", 71.2]])
    write_image(root / "database" / "EE371R" / "cj50.jpg")
    write_image(root / "database" / "AVA__149.jpg")
    return Replica(root, [
        Expected("database/EE371R/cj50.jpg", 65.4, 0.654),
        Expected("database/AVA__149.jpg", 71.2, 0.712),
    ])


def build_agiqa3k(root: Path) -> Replica:
    header = ["name", "prompt", "adj1", "adj2", "style", "mos_quality", "std_quality", "mos_align", "std_align"]
    write_csv(root / "data.csv", header, [
        ["AttnGAN_normal_000.jpg", "statue of a man", "", "", "", 0.965602553, 0.22, 0.40889324, 0.61],
        ["sd1.5_normal_001.jpg", "artwork with only triangles, anime style", "", "", "anime style",
         3.5, 0.5, 2.0, 0.4],
        ["midjourney_lowstep_002.jpg", "a tray of sushi", "", "", "", 2.1, 0.3, 4.1, 0.2],
    ])
    names = ["AttnGAN_normal_000.jpg", "sd1.5_normal_001.jpg", "midjourney_lowstep_002.jpg"]
    for name in names:
        write_image(root / "AGIQA-3K" / name)
    quality = [0.965602553, 3.5, 2.1]
    low, high = 0.0, 5.0  # the Gamma authors' AGIQA-3K range (Table 9 prints [0, 1])
    return Replica(root, [Expected(f"AGIQA-3K/{n}", q, unit(q, low, high)) for n, q in zip(names, quality)])


def build_aigciqa2023(root: Path) -> Replica:
    (root / "DATA" / "MOS").mkdir(parents=True)
    quality = np.array([[41.5], [60.25], [55.0]])
    for index, values in enumerate((quality, quality + 1, quality + 2), 1):
        savemat(root / "DATA" / "MOS" / f"mosz{index}.mat", {"MOSz": values})
    for i in range(3):
        write_image(root / "Image" / "allimg" / f"{i}.png")
    low, high = 41.5, 60.25
    return Replica(root, [Expected(f"Image/allimg/{i}.png", q, unit(q, low, high))
                          for i, q in enumerate(quality[:, 0])])


def build_bid(root: Path) -> Replica:
    write_xlsx(root / "DatabaseGrades.xlsx", [["Image Number", "Average Subjective Score"], [1, 4.1], [2, 0.5]])
    for name in ("DatabaseImage0001.JPG", "DatabaseImage0002.JPG"):
        write_image(root / "ImageDatabase" / name)
    return Replica(root, [
        Expected("ImageDatabase/DatabaseImage0001.JPG", 4.1, 4.1 / 5),
        Expected("ImageDatabase/DatabaseImage0002.JPG", 0.5, 0.5 / 5),
    ])


def build_waterloo(root: Path) -> Replica:
    folder = root / "exploration_database_and_code" / "pristine_images"
    for name in ("00001.bmp", "00002.bmp"):
        write_image(folder / name)
    rel = "exploration_database_and_code/pristine_images"
    return Replica(root, [Expected(f"{rel}/00001.bmp", float("nan"), float("nan")),
                          Expected(f"{rel}/00002.bmp", float("nan"), float("nan"))])


# --- aesthetics ---------------------------------------------------------------------

AVA_ROWS = [
    "1 953619 0 1 5 17 38 36 15 6 5 1 1 22 1396",
    "2 953958 10 7 15 26 26 21 10 8 1 2 15 21 1396",
]


def build_ava(root: Path) -> Replica:
    write_lines(root / "AVA.txt", AVA_ROWS)
    for image_id in ("953619", "953958"):
        write_image(root / "images" / f"{image_id}.jpg")
    expected = []
    for row in AVA_ROWS:
        fields = row.split()
        counts = [int(c) for c in fields[2:12]]
        mean = sum((k + 1) * c for k, c in enumerate(counts)) / sum(counts)
        expected.append(Expected(f"images/{fields[1]}.jpg", mean, mean / 10))
    return Replica(root, expected)


def build_aadb(root: Path) -> Replica:
    labels = root / "imgListFiles_label"
    write_lines(labels / "imgListTrainRegression_score.txt", ["farm1_255_19452343093_8ee7e5e375_b.jpg 0.6"])
    write_lines(labels / "imgListValidationRegression_score.txt", ["farm1_262_20113460571_c1d5c3e2f4_b.jpg 0.25"])
    write_lines(labels / "imgListTestNewRegression_score.txt", ["farm1_287_19978283652_bd4bd8d2e0_b.jpg 0.9"])
    files = ["datasetImages_originalSize/farm1_255_19452343093_8ee7e5e375_b.jpg",
             "datasetImages_originalSize/farm1_262_20113460571_c1d5c3e2f4_b.jpg",
             "AADB_newtest_originalSize/farm1_287_19978283652_bd4bd8d2e0_b.jpg"]
    for file in files:
        write_image(root / file)
    return Replica(root, [Expected(files[0], 0.6, 0.6), Expected(files[1], 0.25, 0.25), Expected(files[2], 0.9, 0.9)])


BUILDERS: dict[str, Callable[[Path], Replica]] = {
    "live": build_live,
    "csiq": build_csiq,
    "tid2013": build_tid2013,
    "kadid10k": build_kadid10k,
    "pipal": build_pipal,
    "livec": build_livec,
    "koniq10k": build_koniq10k,
    "spaq": build_spaq,
    "livefb": build_livefb,
    "agiqa3k": build_agiqa3k,
    "aigciqa2023": build_aigciqa2023,
    "bid": build_bid,
    "waterloo": build_waterloo,
    "ava": build_ava,
    "aadb": build_aadb,
}


def build(name: str, tmp_path: Path) -> Replica:
    root = tmp_path / name
    root.mkdir()
    return BUILDERS[name](root)


# --- larger replicas: n images in the same native layouts, for end-to-end runs -------------------

def write_noise_image(path: Path, seed: int, size: int = 8) -> None:
    """A ``size`` x ``size`` image of seeded noise (different per seed), in the format the suffix names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    formats = {".bmp": "BMP", ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
    Image.fromarray(pixels).save(path, formats[path.suffix.lower()])


def _labels(n: int, low: float, high: float, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    return [round(float(v), 4) for v in rng.uniform(low + 0.05 * (high - low), high - 0.05 * (high - low), n)]


def sized_live(root: Path, n: int) -> None:
    folders = [("jp2k", 227), ("jpeg", 233), ("wn", 174), ("gblur", 174), ("fastfading", 174)]
    entries = [(folder, k) for folder, count in folders for k in range(1, count + 1)]
    kept = np.linspace(0, len(entries) - 1, n).astype(int)
    dmos, orgs = np.zeros((1, len(entries))), np.ones((1, len(entries)))
    refnames = ["ref00.bmp"] * len(entries)
    for i, (entry, value) in enumerate(zip(kept, _labels(n, 0, 100, 1))):
        dmos[0, entry], orgs[0, entry] = value, 0
        refnames[entry] = f"ref{i % 25:02d}.bmp"
        folder, k = entries[entry]
        write_noise_image(root / folder / f"img{k}.bmp", i)
    savemat(root / "dmos_realigned.mat", {"dmos_new": dmos, "orgs": orgs, "dmos_std": np.ones_like(dmos)})
    savemat(root / "dmos.mat", {"dmos": dmos, "orgs": orgs})
    savemat(root / "refnames_all.mat", {"refnames_all": cell_row(refnames)})


def sized_csiq(root: Path, n: int) -> None:
    types = [("noise", "awgn", "AWGN"), ("jpeg", "jpeg", "JPEG"), ("blur", "blur", "BLUR")]
    rows = [[None] * 3, ["CSIQ DMOS"], [None],
            [None, None, None, "image", "dst_idx", "dst_type", "dst_lev", "dmos_std", "dmos"]]
    for i, value in enumerate(_labels(n, 0, 1, 2)):
        image, (dst_type, folder, token), level = f"img{i // 4:02d}", types[i % 3], 1 + i % 4
        rows.append([None, None, None, image, 1 + i % 3, dst_type, level, 0.01, value])
        write_noise_image(root / "dst_imgs" / folder / f"{image}.{token}.{level}.png", 1000 + i)
    write_xlsx(root / "csiq.DMOS.xlsx", rows, sheet="all_by_image")


def sized_tid2013(root: Path, n: int) -> None:
    lines = []
    for i, value in enumerate(_labels(n, 0, 9, 3)):
        name = f"i{1 + (i // 4) % 20:02d}_{1 + i % 4:02d}_{1 + (i // 80) % 5}.bmp"   # 4 distortion types
        lines.append(f"{value:.5f} {name}")
        write_noise_image(root / "distorted_images" / name, 2000 + i)
    write_lines(root / "mos_with_names.txt", lines)


def sized_kadid10k(root: Path, n: int) -> None:
    rows = []
    for i, value in enumerate(_labels(n, 1, 5, 4)):
        ref = f"I{1 + (i // 4) % 20:02d}"
        name = f"{ref}_{1 + i % 4:02d}_{1 + (i // 80) % 5:02d}.png"   # 4 distortion types
        rows.append([name, f"{ref}.png", value, 0.5])
        write_noise_image(root / "images" / name, 3000 + i)
    write_csv(root / "dmos.csv", ["dist_img", "ref_img", "dmos", "var"], rows)


def sized_pipal(root: Path, n: int) -> None:
    by_ref: dict[str, list[str]] = {}
    for i, value in enumerate(_labels(n, 1000, 1700, 5)):
        ref, name = f"A{1 + i % 25:04d}", f"A{1 + i % 25:04d}_{i % 7:02d}_{i // 25:02d}.bmp"
        by_ref.setdefault(ref, []).append(f"{name},{value}")
        write_noise_image(root / "Distortion_1" / name, 4000 + i)
    for ref, lines in by_ref.items():
        write_lines(root / "Train_Label" / f"{ref}.txt", lines)


def sized_livec(root: Path, n: int) -> None:
    names = [f"t{i}.bmp" for i in range(1, 8)] + [f"{i}.bmp" for i in range(n)]
    mos = np.array([[50.0] * 7 + _labels(n, 1, 100, 6)])
    (root / "Data").mkdir(parents=True, exist_ok=True)
    savemat(root / "Data" / "AllImages_release.mat", {"AllImages_release": cell_column(names)})
    savemat(root / "Data" / "AllMOS_release.mat", {"AllMOS_release": mos})
    for i, name in enumerate(names):
        write_noise_image(root / "Images" / ("trainingImages" if i < 7 else "") / name, 5000 + i)


def sized_koniq10k(root: Path, n: int) -> None:
    header = ["image_name", "c1", "c2", "c3", "c4", "c5", "c_total", "MOS", "SD", "MOS_zscore"]
    rows = []
    for i, value in enumerate(_labels(n, 0, 100, 7)):
        rows.append([f"{i:05d}.jpg", 0, 0, 1, 1, 1, 3, 3.0, 0.5, value])
        write_noise_image(root / "1024x768" / f"{i:05d}.jpg", 6000 + i)
    write_csv(root / "koniq10k_scores_and_distributions.csv", header, rows, quote_all=True)


def sized_spaq(root: Path, n: int) -> None:
    rows = [["Image name", "MOS", "Brightness", "Colorfulness", "Contrast", "Noisiness", "Sharpness"]]
    for i, value in enumerate(_labels(n, 0, 100, 8)):
        rows.append([f"{i + 1:05d}.jpg", value, 1, 2, 3, 4, 5])
        write_noise_image(root / "TestImage" / f"{i + 1:05d}.jpg", 7000 + i)
    write_xlsx(root / "Annotations" / "MOS and Image attribute scores.xlsx", rows)


def sized_livefb(root: Path, n: int) -> None:
    rows = []
    for i, value in enumerate(_labels(n, 0, 100, 9)):
        rows.append([f"set{i % 3}/{i}.jpg", value])
        write_noise_image(root / "database" / f"set{i % 3}" / f"{i}.jpg", 8000 + i)
    write_csv(root / "labels_image.csv", ["name", "mos"], rows)


def sized_agiqa3k(root: Path, n: int) -> None:
    header = ["name", "prompt", "adj1", "adj2", "style", "mos_quality", "std_quality", "mos_align", "std_align"]
    rows = []
    for i, value in enumerate(_labels(n, 0, 5, 10)):
        rows.append([f"sd1.5_normal_{i:03d}.jpg", "a prompt", "", "", "", value, 0.3, 2.0, 0.3])
        write_noise_image(root / "AGIQA-3K" / f"sd1.5_normal_{i:03d}.jpg", 9000 + i)
    write_csv(root / "data.csv", header, rows)


def sized_aigciqa2023(root: Path, n: int) -> None:
    (root / "DATA" / "MOS").mkdir(parents=True, exist_ok=True)
    quality = np.array(_labels(n, 0, 100, 11)).reshape(-1, 1)
    for index in (1, 2, 3):
        savemat(root / "DATA" / "MOS" / f"mosz{index}.mat", {"MOSz": quality + index - 1})
    for i in range(n):
        write_noise_image(root / "Image" / "allimg" / f"{i}.png", 10000 + i)


def sized_bid(root: Path, n: int) -> None:
    rows = [["Image Number", "Average Subjective Score"]]
    for i, value in enumerate(_labels(n, 0, 5, 12)):
        rows.append([i + 1, value])
        write_noise_image(root / "ImageDatabase" / f"DatabaseImage{i + 1:04d}.JPG", 11000 + i)
    write_xlsx(root / "DatabaseGrades.xlsx", rows)


def sized_waterloo(root: Path, n: int) -> None:
    for i in range(n):
        write_noise_image(root / "exploration_database_and_code" / "pristine_images" / f"{i + 1:05d}.bmp",
                          12000 + i, size=32)


def sized_ava(root: Path, n: int) -> None:
    rng = np.random.default_rng(13)
    lines = []
    for i in range(n):
        counts = " ".join(str(int(c)) for c in rng.integers(0, 30, 10))
        lines.append(f"{i + 1} {900000 + i} {counts} 1 2 1396")
        write_noise_image(root / "images" / f"{900000 + i}.jpg", 13000 + i)
    write_lines(root / "AVA.txt", lines)


def sized_aadb(root: Path, n: int) -> None:
    labels = root / "imgListFiles_label"
    lines: dict[str, list[str]] = {"Train": [], "Validation": [], "TestNew": []}
    for i, value in enumerate(_labels(n, 0, 1, 14)):
        part = ("Train", "Validation", "TestNew")[i % 3]
        name = f"farm1_{i}_{i}_b.jpg"
        lines[part].append(f"{name} {value}")
        folder = "AADB_newtest_originalSize" if part == "TestNew" else "datasetImages_originalSize"
        write_noise_image(root / folder / name, 14000 + i)
    for part, part_lines in lines.items():
        write_lines(labels / f"imgList{part}Regression_score.txt", part_lines)


def sized_generic_csv(root: Path, n: int, seed: int, low: float = 0.0, high: float = 1.0) -> Path:
    """A generic CSV (datasets read through one: GFIQA-20k, UWIQA, exBeDDE, ECIQAD) with labels in
    [low, high]; returns its path."""
    rows = []
    for i, value in enumerate(_labels(n, low, high, seed)):
        rows.append([f"images/{i}.png", value])
        write_noise_image(root / "images" / f"{i}.png", 20000 + 100 * seed + i)
    write_csv(root / "labels.csv", ["path", "score"], rows)
    return root / "labels.csv"


SIZED_BUILDERS: dict[str, Callable[[Path, int], None]] = {
    "live": sized_live, "csiq": sized_csiq, "tid2013": sized_tid2013, "kadid10k": sized_kadid10k,
    "pipal": sized_pipal, "livec": sized_livec, "koniq10k": sized_koniq10k, "spaq": sized_spaq,
    "livefb": sized_livefb, "agiqa3k": sized_agiqa3k, "aigciqa2023": sized_aigciqa2023, "bid": sized_bid,
    "waterloo": sized_waterloo, "ava": sized_ava, "aadb": sized_aadb,
}
CSV_DATASETS = {"gfiqa20k": (31, 0, 1), "uwiqa": (32, 0, 1), "exbedde": (33, 0, 1), "eciqad": (34, 1, 9)}  # seed, range


def build_sized(name: str, folder: Path, n: int) -> Path:
    """``n`` images of dataset ``name`` in its native layout under ``folder`` (a generic CSV for the
    datasets read through one); returns the ROOT to give as ``--data name=ROOT``."""
    folder.mkdir(parents=True, exist_ok=True)
    if name in CSV_DATASETS:
        return sized_generic_csv(folder, n, *CSV_DATASETS[name])
    SIZED_BUILDERS[name](folder, n)
    return folder
