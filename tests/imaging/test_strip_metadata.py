"""PNG and JPEG originals lose their metadata (text chunks, EXIF, XMP, ICC, comments) and keep
their encoded pixels (issue 12, finding 7)."""

import io

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from retrieval.imports.imaging.decode import decode_image
from retrieval.imports.imaging.deid import strip_image_metadata
from retrieval.imports.imaging.errors import ImageDecodeError

NAME = "Doe^John"
MRN = "MRN-4711-0815"


def noise(mode: str, size=(37, 23), seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65535, size[::-1], dtype=np.uint16))
    bands = {"L": 1, "RGB": 3, "RGBA": 4, "CMYK": 4}[mode]
    arr = rng.integers(0, 255, (size[1], size[0], bands), dtype=np.uint8)
    return Image.fromarray(arr[..., 0] if bands == 1 else arr, mode=mode)


def identifying_exif(orientation: int | None = None) -> Image.Exif:
    exif = Image.Exif()
    exif[0x013B] = NAME  # Artist
    exif[0x010E] = f"Patient {MRN}"  # ImageDescription
    if orientation:
        exif[0x0112] = orientation
    return exif


def png(image: Image.Image, *, orientation=None, **kwargs) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Patient", NAME)
    info.add_text("Comment", MRN, zip=True)
    info.add_itxt("Author", f"{NAME} {MRN}", lang="en", tkey="Autor")
    out = io.BytesIO()
    icc = b"\0" * 128 + NAME.encode()  # a profile's bytes are kept opaque by Pillow
    image.save(out, "PNG", pnginfo=info, exif=identifying_exif(orientation), icc_profile=icc, **kwargs)
    return out.getvalue()


def jpeg(image: Image.Image, *, orientation=None, trailer=b"", **kwargs) -> bytes:
    out = io.BytesIO()
    xmp = f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><dc:creator>{NAME}</dc:creator></x:xmpmeta>'.encode()
    image.save(
        out,
        "JPEG",
        exif=identifying_exif(orientation),
        comment=f"patient {NAME} {MRN}",
        icc_profile=b"\0" * 128 + MRN.encode(),
        xmp=xmp,
        quality=90,
        **kwargs,
    )
    return out.getvalue() + trailer


def assert_clean(original: bytes, fmt: str) -> bytes:
    assert NAME.encode() in original or MRN.encode() in original  # the seeds are really there
    cleaned = strip_image_metadata(original, fmt)
    for secret in (NAME, MRN, "Doe", "4711"):
        assert secret.encode() not in cleaned, secret
    assert np.array_equal(decode_image(cleaned).pixels, decode_image(original).pixels)
    return cleaned


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "I;16"])
def test_png_text_exif_and_icc_go_pixels_stay(mode):
    image = noise(mode)
    cleaned = assert_clean(png(image), "png")
    with Image.open(io.BytesIO(cleaned)) as out:
        assert out.mode == image.mode and not out.text and "icc_profile" not in out.info
        assert np.array_equal(np.asarray(out), np.asarray(image))  # lossless: the very pixels


def test_png_palette_with_transparency():
    image = noise("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    image.info["transparency"] = 3
    cleaned = assert_clean(png(image, transparency=3), "png")
    with Image.open(io.BytesIO(cleaned)) as out:
        assert out.mode == "P" and out.info.get("transparency") == 3


@pytest.mark.parametrize("mode", ["L", "RGB", "CMYK"])
@pytest.mark.parametrize("progressive", [False, True])
def test_jpeg_app_segments_and_comment_go_without_reencoding(mode, progressive):
    original = jpeg(noise(mode), progressive=progressive, trailer=f"trailing {NAME}".encode())
    cleaned = assert_clean(original, "jpeg")
    with Image.open(io.BytesIO(cleaned)) as out:
        assert not out.getexif() and "comment" not in out.info and "icc_profile" not in out.info
        assert "xmp" not in out.info and out.mode == mode
    # No re-encoding: the scan data (from the first SOS to EOI) is the same bytes.
    assert cleaned[cleaned.index(b"\xff\xda") :] == original[original.index(b"\xff\xda") :].removesuffix(
        f"trailing {NAME}".encode()
    )


def test_jpeg_with_restart_markers():
    assert_clean(jpeg(noise("RGB", size=(64, 48)), restart_marker_blocks=1), "jpeg")


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_orientation_is_kept_alone(fmt):
    """An EXIF orientation stays (one tag), so the original shows as its renditions do."""
    image = noise("RGB", size=(40, 20))
    original = png(image, orientation=6) if fmt == "png" else jpeg(image, orientation=6)
    cleaned = assert_clean(original, fmt)
    assert decode_image(cleaned).pixels.shape[:2] == (40, 20)  # rotated: 20 wide, 40 high
    with Image.open(io.BytesIO(cleaned)) as out:
        assert dict(out.getexif()) == {0x0112: 6}


def test_xmp_orientation_is_kept_as_exif():
    out = io.BytesIO()
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description tiff:Orientation="8"/></x:xmpmeta>'
    noise("L", size=(30, 10)).save(out, "JPEG", xmp=xmp, comment=MRN)
    cleaned = assert_clean(out.getvalue(), "jpeg")
    assert decode_image(cleaned).pixels.shape == (30, 10)


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_truncated_file_is_a_decode_error(fmt):
    data = png(noise("L")) if fmt == "png" else jpeg(noise("L"))
    with pytest.raises(ImageDecodeError):
        strip_image_metadata(data[: len(data) // 2], fmt)


def test_other_formats_are_refused():
    with pytest.raises(ValueError):
        strip_image_metadata(b"GIF89a", "gif")


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_damaged_files_raise_decode_errors_only(fmt):
    """Flipped bytes anywhere: a clean copy with the same pixels, or ImageDecodeError; nothing else."""
    original = png(noise("RGB")) if fmt == "png" else jpeg(noise("RGB"), progressive=True)
    rng = np.random.default_rng(12)
    outcomes = set()
    for _ in range(150):
        damaged = bytearray(original)
        for position in rng.integers(0, len(damaged), 3):
            damaged[position] = int(rng.integers(0, 256))
        try:
            cleaned = strip_image_metadata(bytes(damaged), fmt)
        except ImageDecodeError:
            outcomes.add("refused")
            continue
        outcomes.add("cleaned")
        assert np.array_equal(decode_image(cleaned).pixels, decode_image(bytes(damaged)).pixels)
    assert outcomes  # both happen in practice; either is fine


def test_a_file_without_metadata_is_not_decoded_again(monkeypatch):
    """The import passes the pixels it decoded: a PNG with nothing to remove comes back as it is, without a second
    decode (an import's per-image cost, issue 13 point 6); one with metadata is still checked pixel for pixel."""
    from retrieval.imports.imaging import deid

    image = noise("L")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    plain, tagged = buffer.getvalue(), png(image)
    pixels = decode_image(plain).pixels
    calls = []
    monkeypatch.setattr(deid, "decode_image", lambda *a, **k: calls.append(1) or decode_image(*a, **k))
    assert strip_image_metadata(plain, "png", pixels=pixels) == plain and calls == []
    cleaned = strip_image_metadata(tagged, "png", pixels=pixels)
    assert cleaned != tagged and NAME.encode() not in cleaned and calls == [1]
