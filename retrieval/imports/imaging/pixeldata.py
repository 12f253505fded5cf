"""DICOM Pixel Data to a stored-value array: native and compressed transfer syntaxes.

Compressed pixel data is decoded by the pylibjpeg / Pillow plugins (pydicom's own for RLE),
never by python-gdcm, which aborts the interpreter on some corrupt JPEG streams (see
UNSAFE_DECODER_PLUGINS). What cannot be decoded, or whose codestream is larger than the header
says, is refused before a decoder allocates anything.
"""

from __future__ import annotations

import struct
import warnings

import numpy as np
import pydicom.pixels
from pydicom.encaps import generate_fragmented_frames
from pydicom.pixels import pixel_array
from pydicom.pixels.utils import get_expected_length
from pydicom.uid import UID

from retrieval.imports.imaging.dicom import element_int
from retrieval.imports.imaging.errors import ImageDecodeError, short_reason

#: Decoder plugins never used in-process: python-gdcm aborts the whole process (an uncaught
#: C++ exception, SIGABRT) on some corrupt JPEG streams, which would kill a worker. Found
#: by the fuzz test; tests/imaging/test_fuzz.py keeps the crashing file as a regression.
UNSAFE_DECODER_PLUGINS = frozenset({"gdcm"})


def check_decodable(ds, *, rows: int, columns: int, frames: int, samples: int) -> list[str]:
    """Refuse what cannot be decoded; return the decoder plugins to try, in order
    (empty for native transfer syntaxes, which pydicom reads itself)."""
    uid = UID(str(ds.file_meta.TransferSyntaxUID).strip())
    if not uid.is_transfer_syntax:
        raise ImageDecodeError(f"unknown transfer syntax {uid}")
    if not uid.is_compressed:
        if "PixelData" in ds:
            needed = get_expected_length(ds)
            have = len(ds.PixelData or b"")
            if have < needed:
                raise ImageDecodeError(
                    "truncated DICOM: pixel data shorter than Rows×Columns×frames needs "
                    f"({have:,} of {needed:,} bytes for {columns}×{rows}×{frames}"
                    f"{'×3' if samples == 3 else ''})"
                )
        return []
    try:
        # Looked up on pydicom.pixels at call time: tests/imaging/test_compressed.py replaces it there.
        decoder = pydicom.pixels.get_decoder(uid)
    except NotImplementedError:
        raise ImageDecodeError(
            f"unsupported transfer syntax {uid} ({uid.name}): pydicom has no decoder for it"
        ) from None
    plugins = [
        name
        for name in (decoder.available_plugins if decoder.is_available else ())
        if name not in UNSAFE_DECODER_PLUGINS
    ]
    if not plugins:
        missing = [
            reason for reason in decoder.missing_dependencies if reason.split(" ")[0] not in UNSAFE_DECODER_PLUGINS
        ]
        raise ImageDecodeError(
            f"unsupported transfer syntax {uid} ({uid.name}) and no decoder plugin installed"
            + (f" (one of: {'; '.join(missing)})" if missing else "")
        )
    _check_codestream_size(ds, rows=rows, columns=columns, frames=frames)
    return plugins


def _check_codestream_size(ds, *, rows: int, columns: int, frames: int) -> None:
    """A JPEG/JPEG 2000 frame whose own header is larger than Rows×Columns would make
    the codec allocate beyond the budget checked on the DICOM header: refuse it."""
    try:
        first = next(generate_fragmented_frames(ds.PixelData, number_of_frames=frames))
    except StopIteration:
        raise ImageDecodeError("compressed pixel data contains no frame") from None
    except Exception as exc:
        raise ImageDecodeError(f"corrupt encapsulated pixel data: {short_reason(exc)}") from exc
    head = b"".join(first[:4])[:65536]
    size = _codestream_size(head)
    if size is not None and (size[0] > columns or size[1] > rows):
        raise ImageDecodeError(f"compressed frame is {size[0]}×{size[1]} pixels but the header says {columns}×{rows}")
    if head[:2] == b"\xff\xd8":
        _check_jpeg_frames(ds, frames, strict=_libjpeg_turbo_reads(head))


#: Huffman-coded 8-bit JPEG (baseline, extended, progressive SOF0-2): what libjpeg-turbo decodes.
_TURBO_FRAMES = (0xC0, 0xC1, 0xC2)


def _libjpeg_turbo_reads(head: bytes) -> bool:
    sof = _jpeg_sof(head)
    return sof is not None and sof[0] in _TURBO_FRAMES and sof[1] == 8


def _jpeg_sof(head: bytes) -> tuple[int, int] | None:
    """(SOF marker, sample precision) of a JPEG stream's frame header, None when not found."""
    pos = 2
    while pos + 4 <= len(head) and head[pos] == 0xFF:
        marker = head[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if (0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC)) or marker == 0xF7:
            return (marker, head[pos + 4]) if pos + 4 < len(head) else None
        if marker == 0xDA:
            return None
        pos += 2 + struct.unpack(">H", head[pos + 2 : pos + 4])[0]
    return None


def _check_jpeg_frames(ds, frames: int, *, strict: bool = False) -> None:
    """Every JPEG frame ends with its EOI marker: a frame cut short decodes without an error in libjpeg
    (pylibjpeg) and would be stored as a grey or garbled image. With `strict` (8-bit baseline frames) each frame
    is also entropy-decoded by libjpeg-turbo (simplejpeg) with its corrupt-data warnings as errors: scrambled
    entropy-coded data that desynchronises the Huffman decoding runs out before the last block ("premature end
    of data segment") or ends before the data does ("extraneous bytes"), which pylibjpeg and Pillow both fill in
    silently. Corruption that leaves a valid Huffman stream of the right length cannot be seen (JPEG carries no
    checksum): docs/importing.md says which."""
    for number, fragments in enumerate(generate_fragmented_frames(ds.PixelData, number_of_frames=frames), 1):
        where = f"frame {number}" if frames > 1 else "the frame"
        # After EOI come at most a few padding bytes (00 to an even length, FF fill); in entropy-coded data FF is
        # always followed by 00 or a restart marker, so FF D9 near the end is the EOI.
        if b"\xff\xd9" not in b"".join(fragments[-2:])[-16:]:
            raise ImageDecodeError(f"corrupt pixel data: JPEG data of {where} is truncated (no end-of-image marker)")
        if strict:
            _libjpeg_turbo_check(b"".join(fragments), where)


def _libjpeg_turbo_check(frame: bytes, where: str) -> None:
    import simplejpeg

    try:
        header = simplejpeg.decode_jpeg_header(frame)
        # Scaled down 8×: the whole entropy-coded data is still decoded (that is what is checked), the IDCT is not.
        simplejpeg.decode_jpeg(frame, colorspace="GRAY" if header[2] == "Gray" else "RGB", min_factor=8, strict=True)
    except ValueError as exc:
        raise ImageDecodeError(f"corrupt pixel data: JPEG data of {where}: {short_reason(exc)}") from None


def _codestream_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG SOF or JPEG 2000 SIZ marker, None when not found."""
    if head[:4] == b"\xff\x4f\xff\x51" and len(head) >= 24:  # J2K SOC + SIZ
        xsiz, ysiz, xosiz, yosiz = struct.unpack(">IIII", head[8:24])
        return xsiz - xosiz, ysiz - yosiz
    jp2 = head.find(b"\xff\x4f\xff\x51")
    if head[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n" and jp2 >= 0:
        return _codestream_size(head[jp2:])
    if head[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 4 <= len(head):
        if head[pos] != 0xFF:
            return None
        marker = head[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        length = struct.unpack(">H", head[pos + 2 : pos + 4])[0]
        # SOF0..SOF15 except DHT (C4), JPG (C8), DAC (CC); JPEG-LS SOF55 is F7.
        if (0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC)) or marker == 0xF7:
            if pos + 9 <= len(head):
                height, width = struct.unpack(">HH", head[pos + 5 : pos + 9])
                return width, height
            return None
        if marker == 0xDA:
            return None
        pos += 2 + length
    return None


def decode_frame(ds, *, index: int | None, plugins: list[str]) -> np.ndarray:
    """Decode one frame with the allowed decoder plugins. A compressed frame must decode without a warning
    or an error in *every* plugin that supports its transfer syntax: decoders differ in what corruption
    they notice (libjpeg refuses scrambled entropy data that Pillow decodes into garbage, Pillow refuses a
    truncation that libjpeg fills in), and a corrupt frame must be refused, not stored as a garbled image."""
    reasons: list[str] = []
    decoded = None
    for plugin in plugins or [""]:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # a decoder's warning about the data is a failure
                arr = pixel_array(ds, index=index, as_rgb=True, decoding_plugin=plugin)
            decoded = arr if decoded is None else decoded
        except Exception as exc:
            # pydicom lists one "  plugin: reason" line per plugin it tried.
            lines = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()]
            lines = lines or [f"{plugin}: {short_reason(exc)}" if plugin else short_reason(exc)]
            reasons.extend(lines)
            if not all("support" in line for line in lines):
                raise ImageDecodeError(_pixel_failure(ds, reasons)) from None  # corrupt data, not a missing codec
    if decoded is None:
        raise ImageDecodeError(_pixel_failure(ds, reasons))
    return decoded


def _pixel_failure(ds, reasons: list[str]) -> str:
    """Name the transfer syntax, the bit depth and what each decoder plugin said."""
    try:
        syntax = UID(str(ds.file_meta.TransferSyntaxUID)).name
    except Exception:
        syntax = "unknown transfer syntax"
    bits = element_int(ds, "BitsStored")
    what = f"{bits}-bit {syntax}" if bits else syntax
    detail = "; ".join(reasons)
    if len(detail) > 400:
        detail = detail[:399] + "…"
    return f"corrupt pixel data, or not decodable by the installed plugins ({what}): {detail}"
