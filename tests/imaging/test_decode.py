"""load_rgb: every Pillow mode to RGB, EXIF orientation, JPEG draft, limits and error reasons;
clip_preprocess (the resize view) against torchvision's CLIP transform."""
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from perceptiq.imaging import (
    CLIP_MEAN,
    CLIP_STD,
    ImageDecodeError,
    clip_preprocess,
    error_reason,
    load_rgb,
)


def pixels(image):
    return np.asarray(image, dtype=np.int32)


def over_white(value, alpha):
    """Reference alpha compositing onto white, per channel, 8-bit."""
    return value * alpha / 255 + 255 * (255 - alpha) / 255


# ----------------------------------------------------------------------------------------- modes

def test_grey_l_becomes_equal_channels(tmp_path):
    path = tmp_path / "grey.png"
    Image.new("L", (40, 30), 77).save(path)
    out = load_rgb(path)
    assert out.mode == "RGB" and out.size == (40, 30)
    assert (pixels(out) == 77).all()


def test_la_is_composited_on_white(tmp_path):
    path = tmp_path / "la.png"
    data = np.zeros((2, 3, 2), np.uint8)
    data[..., 0] = 40
    data[0, :, 1] = [0, 128, 255]  # transparent, half, opaque
    data[1, :, 1] = 255
    Image.fromarray(data, "LA").save(path)
    out = pixels(load_rgb(path))
    expected = [over_white(40, a) for a in (0, 128, 255)]
    np.testing.assert_allclose(out[0, :, 0], expected, atol=1)
    assert (out[1] == 40).all()
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_palette_with_transparent_index_shows_white_there(tmp_path):
    path = tmp_path / "pal.png"
    image = Image.new("P", (4, 2), 0)
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6))  # index 0 red, index 1 blue
    image.paste(1, (0, 1, 4, 2))  # bottom row index 1
    image.save(path, transparency=0)
    out = pixels(load_rgb(path))
    assert (out[0] == [255, 255, 255]).all()  # transparent red -> white, not red or black
    assert (out[1] == [0, 0, 255]).all()


def test_palette_without_transparency_keeps_colours(tmp_path):
    path = tmp_path / "pal.gif"
    image = Image.new("P", (3, 3), 1)
    image.putpalette([0, 0, 0, 10, 200, 30] + [0] * (256 * 3 - 6))
    image.save(path)
    assert (pixels(load_rgb(path)) == [10, 200, 30]).all()


def test_cmyk_jpeg_converts_to_rgb(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (32, 32), (0, 255, 255, 0)).save(path, quality=100)  # pure red in CMYK
    assert Image.open(path).mode == "CMYK"
    out = pixels(load_rgb(path))
    np.testing.assert_allclose(out.reshape(-1, 3).mean(0), [255, 0, 0], atol=3)


def test_rgba_png_is_composited_on_white(tmp_path):
    path = tmp_path / "rgba.png"
    data = np.zeros((1, 3, 4), np.uint8)
    data[0, :, :3] = [200, 100, 0]
    data[0, :, 3] = [0, 100, 255]
    Image.fromarray(data, "RGBA").save(path)
    out = pixels(load_rgb(path))[0]
    for x, alpha in enumerate((0, 100, 255)):
        np.testing.assert_allclose(out[x], [over_white(c, alpha) for c in (200, 100, 0)], atol=1)


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    path = tmp_path / "deep.png"
    values = np.array([[0, 257, 1000, 32896, 65535]], np.uint16)
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I;16")
    out = pixels(load_rgb(path))
    np.testing.assert_array_equal(out[0, :, 0], np.rint(values[0] / 257))
    assert (out[..., 0] == out[..., 2]).all()


def test_one_bit_image_is_black_and_white(tmp_path):
    path = tmp_path / "bits.png"
    image = Image.new("1", (4, 1), 0)
    image.putpixel((1, 0), 1)
    image.save(path)
    out = pixels(load_rgb(path))
    np.testing.assert_array_equal(out[0, :, 0], [0, 255, 0, 0])


def test_float_and_int32_images_in_memory():
    floats = Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32))
    np.testing.assert_array_equal(pixels(load_rgb(floats))[0, :, 1], [0, 128, 255])
    wide = Image.fromarray(np.array([[0, 65535, 257 * 9]], np.int32))
    np.testing.assert_array_equal(pixels(load_rgb(wide))[0, :, 1], [0, 255, 9])
    unknown_range = Image.fromarray(np.array([[-10.0, 0.0, 10.0]], np.float32))
    np.testing.assert_array_equal(pixels(load_rgb(unknown_range))[0, :, 0], [0, 128, 255])


def test_bytes_source_decodes(tmp_path):
    path = tmp_path / "a.png"
    Image.new("RGB", (5, 4), (1, 2, 3)).save(path)
    out = load_rgb(path.read_bytes())
    assert out.size == (5, 4) and (pixels(out) == [1, 2, 3]).all()


# ---------------------------------------------------------------------------- orientation, draft

def test_exif_orientation_6_rotates_clockwise(tmp_path):
    stored = np.zeros((40, 60, 3), np.uint8)  # 60 wide, 40 high
    stored[:20] = [255, 0, 0]  # top half red
    stored[20:] = [0, 0, 255]  # bottom half blue
    stored[:, :10] = [0, 255, 0]  # left strip green
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    path = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(path, exif=exif, quality=100, subsampling=0)

    out = load_rgb(path)
    assert out.size == (40, 60)  # width and height swapped
    clockwise = np.rot90(stored, k=-1).astype(np.int32)
    anticlockwise = np.rot90(stored, k=1).astype(np.int32)
    assert np.abs(pixels(out) - clockwise).mean() < 2
    assert np.abs(pixels(out) - anticlockwise).mean() > 50
    assert pixels(out)[5, 30].argmax() == 1  # the green strip is now along the top edge


def test_large_jpeg_is_decoded_with_draft(tmp_path):
    path = tmp_path / "big.jpg"
    Image.new("RGB", (6000, 4000), (90, 140, 200)).save(path, quality=80)
    out = load_rgb(path, target_short_side=224)
    # draft picks the largest 1/s (s in 8,4,2,1) keeping both sides >= 224: 4000 // 224 = 17 -> s = 8
    assert out.size == (750, 500)
    assert min(out.size) >= 224
    np.testing.assert_allclose(pixels(out).reshape(-1, 3).mean(0), [90, 140, 200], atol=2)


def test_draft_never_goes_below_the_target(tmp_path):
    path = tmp_path / "mid.jpg"
    Image.new("RGB", (900, 447), (0, 0, 0)).save(path)
    out = load_rgb(path, target_short_side=224)
    assert out.size == (900, 447)  # halving would give a short side of 224 < 447 / 2: not allowed
    assert load_rgb(path, target_short_side=200).size == (450, 224)


# -------------------------------------------------------------------------------------- failures

def reason_of(source, **kwargs):
    with pytest.raises(ImageDecodeError) as caught:
        load_rgb(source, **kwargs)
    return caught.value


def test_truncated_jpeg_is_corrupt(tmp_path):
    path = tmp_path / "cut.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (200, 200, 3), dtype=np.uint8)).save(path, quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 6 // 10])
    error = reason_of(path)
    assert error.reason == "corrupt or truncated"
    assert str(error).startswith("corrupt or truncated (")


def test_empty_file_not_an_image_missing_and_directory(tmp_path):
    empty = tmp_path / "zero.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("these are not pixels\n" * 20)
    assert str(reason_of(empty)) == "empty file"
    assert str(reason_of(b"")) == "empty file"
    assert str(reason_of(text)) == "not an image"
    assert str(reason_of(tmp_path / "missing.png")) == "file not found"
    assert str(reason_of(tmp_path)) == "is a directory"


def test_pixel_limit_is_checked_from_the_header_before_decoding(tmp_path):
    path = tmp_path / "cut_big.jpg"
    noise = np.random.default_rng(1).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 8 // 10])  # header intact, pixel data cut
    assert reason_of(path).reason == "corrupt or truncated"  # what decoding it would say
    error = reason_of(path, max_pixels=1000)
    assert str(error) == "over pixel limit (1200 px > 1000)"
    assert error_reason(str(error)) == "over pixel limit"


def png_header_only(width, height):
    """A PNG that declares width x height 8-bit RGB but holds no pixel data."""
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_our_limit_applies_not_pillows_and_pillows_global_is_untouched():
    before = Image.MAX_IMAGE_PIXELS
    bomb = png_header_only(15000, 15000)  # 225 Mpx: over Pillow's own 2x limit (~179 Mpx)
    assert str(reason_of(bomb)) == "over pixel limit (225000000 px > 200000000)"
    # under a larger limit of ours, Pillow's DecompressionBombError must not fire; the file has no data
    assert reason_of(bomb, max_pixels=300_000_000).reason == "corrupt or truncated"
    assert Image.MAX_IMAGE_PIXELS == before


# ------------------------------------------------------------------------------ clip_preprocess

def torchvision_reference(image, size, mean, std):
    from torchvision import transforms as T

    return T.Compose([
        T.Resize(size, interpolation=T.InterpolationMode.BICUBIC),
        T.CenterCrop(size),
        T.ToTensor(),
        T.Normalize(mean, std),
    ])(image)


@pytest.mark.parametrize("size_wh", [(300, 200), (200, 333), (57, 90), (224, 224), (225, 500)])
def test_clip_preprocess_matches_torchvision(size_wh):
    rng = np.random.default_rng(sum(size_wh))
    image = Image.fromarray(rng.integers(0, 255, (size_wh[1], size_wh[0], 3), dtype=np.uint8))
    ours = clip_preprocess(image, size=224)
    assert ours.shape == (3, 224, 224) and ours.dtype == torch.float32
    torch.testing.assert_close(ours, torchvision_reference(image, 224, CLIP_MEAN, CLIP_STD), rtol=0, atol=1e-6)


def test_clip_preprocess_uses_given_mean_std_and_size():
    image = Image.new("RGB", (50, 40), (255, 0, 128))
    out = clip_preprocess(image, size=16, mean=(0.5, 0.5, 0.5), std=(0.5, 0.25, 1.0))
    assert out.shape == (3, 16, 16)
    torch.testing.assert_close(out[:, 0, 0], torch.tensor([1.0, -2.0, 128 / 255 - 0.5]))


def test_concurrent_threads_leave_pillows_global_as_it_was(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    before = Image.MAX_IMAGE_PIXELS
    good = tmp_path / "ok.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(good)
    bomb = png_header_only(15000, 15000)

    def decode(i):
        try:
            return load_rgb(good if i % 2 else bomb).size
        except ImageDecodeError as err:
            return err.reason

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(decode, range(40)))
    assert results == [(8, 8) if i % 2 else "over pixel limit" for i in range(40)]
    assert Image.MAX_IMAGE_PIXELS == before
