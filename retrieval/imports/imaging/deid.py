"""De-identification of stored originals: DICOM files under a pseudonym (DICOM PS3.15 Annex E),
PNG and JPEG files without their metadata."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pydicom
from PIL import Image as PillowImage
from pydicom.datadict import keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from retrieval.imports.imaging.decode import DEFAULT_MAX_PIXELS, decode_image
from retrieval.imports.imaging.dicom import check_structure, ensure_transfer_syntax, read_dataset
from retrieval.imports.imaging.errors import ImageDecodeError, short_reason

# DICOM PS3.15 Annex E, the Basic Application Level Confidentiality Profile, with the Retain
# UIDs option (the platform groups series and keys labels by UID; UIDs carry no identity when
# issued by a root, and the caller keeps them only inside the platform) and the Retain Patient
# Characteristics option (sex, age, size and weight are study covariates: paper 000 classifies
# NLST CT by weight). The action of every attribute comes from Table E.1-1 as shipped,
# machine-readable, by the maintained `dicom-anonymizer` package (Kitware), in the edition
# named below; this module only decides how each action applies (see `_ACTIONS`).

#: The edition of Table E.1-1 used (a module of dicomanonymizer.dicom_anonymization_databases).
PROFILE_TABLE = "dicomfields_2026c"

#: Kept under the Retain Patient Characteristics option (the table would remove or empty them).
RETAINED_CHARACTERISTICS: tuple[str, ...] = ("PatientSex", "PatientAge", "PatientSize", "PatientWeight")

#: How each category of the table applies here. X: remove; Z: keep with an empty value; D:
#: replace with a dummy value consistent with the VR; U: keep (Retain UIDs option); "recurse":
#: keep and clean the items (X/Z/U* sequences: Referenced/Source Image Sequence). The compound
#: actions take their most removing branch that leaves pixels readable: X/Z, X/D and X/Z/D
#: remove, Z/D empties.
_ACTIONS = {
    "X_TAGS": "X",
    "X_Z_TAGS": "X",
    "X_D_TAGS": "X",
    "X_Z_D_TAGS": "X",
    "Z_TAGS": "Z",
    "Z_D_TAGS": "Z",
    "D_TAGS": "D",
    "U_TAGS": "U",
    "X_Z_U_STAR_TAGS": "recurse",
}

#: Groups removed whole wherever they occur, beyond the table: the Patient group (0010,xxxx),
#: whose newer or rarer attributes (Patient's Birth Date in Alternative Calendar, …) the
#: table does not list, less the pseudonym and the retained characteristics at the top level;
#: the Clinical Trial modules (0012,xxxx: sponsor, protocol, site, subject; optional modules),
#: less the de-identification record written here; curves (50xx) and overlays (60xx, which
#: may carry burned-in text).
_PATIENT_GROUP = 0x0010
_CLINICAL_TRIAL_GROUP = 0x0012


def _load_table() -> dict[int, str]:
    """{tag: action} from Table E.1-1; the masked rows (curves, overlays) are handled by group."""
    from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector

    table = dicom_anonymization_database_selector(PROFILE_TABLE)
    actions: dict[int, str] = {}
    for category, action in _ACTIONS.items():
        for row in table[category]:
            if len(row) == 2:  # (group, element); 4-tuples are group masks
                actions[(row[0] << 16) | row[1]] = action
    return actions


_TABLE: dict[int, str] = _load_table()


def _keywords(action: str) -> tuple[str, ...]:
    """Data set keywords of one action (not the command and file meta groups 0000 and 0002,
    not the pseudonymised Patient's Name and ID nor the retained characteristics)."""
    retained = {tag_for_keyword(k) for k in ("PatientName", "PatientID") + RETAINED_CHARACTERISTICS}
    return tuple(
        sorted(
            keyword_for_tag(t)
            for t, a in _TABLE.items()
            if a == action and keyword_for_tag(t) and t not in retained and t >> 16 not in (0, 2)
        )
    )


#: Attributes removed wherever they occur (action X), by keyword.
REMOVED_KEYWORDS: tuple[str, ...] = _keywords("X")
#: Attributes kept with an empty value (action Z; removed inside sequences when a PN).
BLANKED_KEYWORDS: tuple[str, ...] = _keywords("Z")
#: Attributes whose value is replaced by a dummy (action D).
REPLACED_KEYWORDS: tuple[str, ...] = _keywords("D")

#: File meta elements naming the sending system.
_REMOVED_META_KEYWORDS = (
    "SourceApplicationEntityTitle",
    "SendingApplicationEntityTitle",
    "ReceivingApplicationEntityTitle",
)

DEIDENTIFICATION_METHOD = (
    f"DICOM PS3.15 E.1-1 Basic Profile ({PROFILE_TABLE.removeprefix('dicomfields_')})",
    "Retain UIDs and Patient Characteristics",
    "All PN except pseudonym, patient and trial groups removed",
    "Private tags, curves, overlays removed",
)

# CID 7050 De-identification Method codes: the profile and the options applied, no others
# (no Clean Pixel Data: burned-in text is not touched; no Retain Longitudinal: dates go).
DEID_CODES = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113108", "Retain Patient Characteristics Option"),
    ("113110", "Retain UIDs Option"),
)

#: Dummy values of the D action by VR (as dicom-anonymizer's own dummies).
_DUMMIES = {
    "AE": "ANONYMIZED",
    "CS": "ANONYMIZED",
    "LO": "ANONYMIZED",
    "LT": "ANONYMIZED",
    "SH": "ANONYMIZED",
    "ST": "ANONYMIZED",
    "UC": "ANONYMIZED",
    "UT": "ANONYMIZED",
    "AS": "000Y",
    "UR": "http://anonymized.invalid",
    "DS": "0",
    "IS": "0",
    "DA": "00010101",
    "DT": "00010101010101.000000+0000",
    "TM": "000000.00",
    "FD": 0.0,
    "FL": 0.0,
    "SS": 0,
    "US": 0,
    "SL": 0,
    "UL": 0,
    "OB": b"ANONYMIZED",
}


def deidentify_dicom(data: bytes, *, pseudo_id: str) -> bytes:
    """The DICOM under the Basic Application Level Confidentiality Profile (Table E.1-1 with
    the Retain UIDs and Retain Patient Characteristics options), Patient ID/Name set to
    `pseudo_id`; every other person name, the patient and clinical-trial groups, private tags,
    curves and overlays removed, also inside sequences; pixel data byte-identical.

    Burned-in text in the pixels is not touched (check Burned In Annotation upstream).
    """
    pseudo_id = _check_pseudo_id(pseudo_id)
    ds = read_dataset(data, stop_before_pixels=False)
    try:
        return _deidentify_dataset(ds, pseudo_id)
    except ImageDecodeError:
        raise
    except Exception as exc:
        raise ImageDecodeError(f"cannot de-identify this DICOM: {short_reason(exc)}") from exc


def _check_pseudo_id(pseudo_id: str) -> str:
    if not isinstance(pseudo_id, str) or not pseudo_id.strip():
        raise ValueError("pseudo_id must be a non-empty string")
    pseudo_id = pseudo_id.strip()
    if len(pseudo_id) > 64 or "\\" in pseudo_id or any(ord(c) < 32 for c in pseudo_id):
        raise ValueError("pseudo_id must be at most 64 characters without backslashes or control characters")
    return pseudo_id


def _deidentify_dataset(ds, pseudo_id: str) -> bytes:
    ensure_transfer_syntax(ds)
    ds.remove_private_tags()  # recursive: private tags inside sequences go too
    _clean(ds, nested=False)
    ds.PatientName = pseudo_id
    ds.PatientID = pseudo_id
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = list(DEIDENTIFICATION_METHOD)
    codes = []
    for value, meaning in DEID_CODES:
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning
        codes.append(item)
    ds.DeidentificationMethodCodeSequence = DicomSequence(codes)
    ds.LongitudinalTemporalInformationModified = "REMOVED"

    meta = ds.file_meta
    for keyword in _REMOVED_META_KEYWORDS:
        if keyword in meta:
            delattr(meta, keyword)
    if "SOPClassUID" in ds and "MediaStorageSOPClassUID" not in meta:
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
    if "SOPInstanceUID" in ds and "MediaStorageSOPInstanceUID" not in meta:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID

    check_structure(ds)  # bounded depth and size before the writer recurses (read_dataset checked the input)
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


_KEPT_AT_TOP = frozenset(
    tag_for_keyword(k) for k in ("PatientName", "PatientID", "PatientIdentityRemoved") + RETAINED_CHARACTERISTICS
)


def _clean(dataset, *, nested: bool) -> None:
    """Apply the profile to `dataset` in place; items of kept sequences are cleaned as nested.

    Inside sequences nothing of the patient is kept: a patient's name, ID or characteristics
    there have no pseudonym to take.
    """
    for elem in list(dataset):
        tag = int(elem.tag)
        group = tag >> 16
        kept = not nested and tag in _KEPT_AT_TOP
        if (
            (elem.VR == "PN" and not kept)  # every person's name; PatientName becomes the pseudonym
            or (group in (_PATIENT_GROUP, _CLINICAL_TRIAL_GROUP) and not kept)
            or 0x5000 <= group <= 0x50FF  # curves
            or 0x6000 <= group <= 0x60FF  # overlays (may carry burned-in text)
        ):
            del dataset[tag]
            continue
        action = None if kept else _TABLE.get(tag)
        if action == "X":
            del dataset[tag]
        elif action == "Z" or (action == "D" and elem.VR == "SQ"):
            elem.value = [] if elem.VR == "SQ" else (b"" if elem.VR in ("OB", "OW", "UN") else "")
        elif action == "D" and elem.VR != "UI":  # a UID is kept under Retain UIDs
            if elem.VR in _DUMMIES:
                elem.value = _DUMMIES[elem.VR]
            else:
                del dataset[tag]
        elif elem.VR == "SQ" and elem.value:
            for item in elem.value:
                _clean(item, nested=True)


# ---- PNG and JPEG originals: metadata removed, pixels untouched

#: PNG chunks kept: the critical ones and those that change how pixels read (transparency,
#: gamma, chromaticities, sRGB intent, significant bits, background, pixel size). Text
#: (tEXt, zTXt, iTXt), EXIF (eXIf), time (tIME), ICC profiles (iCCP: a named profile with
#: free-text tags; the renditions readers see never applied it), suggested palettes, APNG
#: frames and every private chunk go.
PNG_KEPT_CHUNKS = frozenset(
    {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"sBIT", b"bKGD", b"pHYs"}
)

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_ORIENTATION = 0x0112


def strip_image_metadata(data: bytes, fmt: str, *, pixels=None, max_pixels: int | None = None) -> bytes:
    """A PNG or JPEG original without its metadata, the encoded pixels kept byte for byte.

    PNG: only `PNG_KEPT_CHUNKS`, copied as they are (no re-encoding). JPEG: the segments are
    copied without re-encoding, less every APPn and COM segment (EXIF, XMP, ICC, IPTC,
    Photoshop, maker notes, comments) but the JFIF header (its thumbnail dropped) and Adobe's
    APP14 (it says how the colour components decode); anything after the end-of-image marker
    (appended previews) goes. An orientation (EXIF or XMP, as Pillow reads it) other than
    upright is written back as a one-tag EXIF, so that the original shows as its renditions do.
    The result decodes to the same display pixels as `data` (`pixels`, or `data` decoded), or
    ImageDecodeError is raised and nothing is stored; a file without metadata comes back as it is, and with
    `pixels` given it is not decoded again (the import's per-image cost: issue 13, point 6).
    """
    if fmt not in ("png", "jpeg"):
        raise ValueError(f"strip_image_metadata takes PNG or JPEG, not {fmt!r}")
    budget = max_pixels or DEFAULT_MAX_PIXELS
    try:
        orientation = _orientation(data)
        cleaned = _strip_png(data, orientation) if fmt == "png" else _strip_jpeg(data, orientation)
    except ImageDecodeError:
        raise
    except Exception as exc:
        raise ImageDecodeError(f"cannot remove the {fmt.upper()} metadata: {short_reason(exc)}") from exc
    expected = decode_image(data, max_pixels=budget).pixels if pixels is None else pixels
    if cleaned == data:  # nothing removed: the same bytes decode to the same pixels (no second decode)
        return cleaned
    if not np.array_equal(decode_image(cleaned, max_pixels=budget).pixels, expected):
        raise ImageDecodeError(f"{fmt.upper()} metadata could not be removed without changing the pixels")
    return cleaned


def _orientation(data: bytes) -> int:
    with PillowImage.open(io.BytesIO(data)) as image:
        value = image.getexif().get(_ORIENTATION, 1)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _orientation_exif(orientation: int) -> bytes:
    """b"Exif\\0\\0" + a TIFF header and one IFD holding only the orientation."""
    exif = PillowImage.Exif()
    exif[_ORIENTATION] = orientation
    return exif.tobytes()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _strip_png(data: bytes, orientation: int) -> bytes:
    if not data.startswith(_PNG_SIGNATURE):
        raise ImageDecodeError("not a PNG file (no PNG signature)")
    out = [_PNG_SIGNATURE]
    pos, orientation_written = len(_PNG_SIGNATURE), orientation == 1
    while True:
        if pos + 8 > len(data):
            raise ImageDecodeError("truncated PNG: no IEND chunk")
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data):
            raise ImageDecodeError(f"truncated PNG: chunk {kind!r} runs past the end of the file")
        if kind == b"IDAT" and not orientation_written:
            out.append(_png_chunk(b"eXIf", _orientation_exif(orientation)[6:]))
            orientation_written = True
        if kind in PNG_KEPT_CHUNKS:
            out.append(data[pos:end])
        pos = end
        if kind == b"IEND":
            return b"".join(out)


_SOI, _EOI, _SOS, _COM, _APP0, _APP14 = 0xD8, 0xD9, 0xDA, 0xFE, 0xE0, 0xEE


def _strip_jpeg(data: bytes, orientation: int) -> bytes:
    if data[:2] != b"\xff\xd8":
        raise ImageDecodeError("not a JPEG file (no start-of-image marker)")
    out = [b"\xff\xd8"]
    pos, orientation_written = 2, orientation == 1
    while True:
        marker, pos = _next_marker(data, pos)
        if marker == _EOI:
            out.append(b"\xff\xd9")
            return b"".join(out)
        if marker == _SOI or 0xD0 <= marker <= 0xD7 or marker == 0x01:  # no length field
            out.append(bytes((0xFF, marker)))
            continue
        if pos + 2 > len(data):
            raise ImageDecodeError("truncated JPEG: a segment has no length")
        (length,) = struct.unpack(">H", data[pos : pos + 2])
        end = pos + length
        if length < 2 or end > len(data):
            raise ImageDecodeError(f"truncated JPEG: segment FF{marker:02X} runs past the end of the file")
        body = data[pos + 2 : end]
        if marker == _APP0 and body.startswith(b"JFIF\x00") and len(body) >= 14:
            jfif = body[:12] + b"\x00\x00"  # version, units, density; no thumbnail
            out.append(b"\xff\xe0" + struct.pack(">H", len(jfif) + 2) + jfif)
        elif marker == _APP14 and body.startswith(b"Adobe"):
            out.append(data[pos - 2 : end])
        elif 0xE0 <= marker <= 0xEF or marker == _COM:
            pass  # metadata: EXIF, XMP, ICC, IPTC, Photoshop, maker notes, comments
        else:
            if not orientation_written:
                exif = _orientation_exif(orientation)
                out.append(b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif)
                orientation_written = True
            out.append(data[pos - 2 : end])
        pos = end
        if marker == _SOS:  # entropy-coded data up to the next marker that is not RSTn
            scan_end = _scan_end(data, pos)
            out.append(data[pos:scan_end])
            pos = scan_end


def _next_marker(data: bytes, pos: int) -> tuple[int, int]:
    """(marker byte, position after it) of the marker at `pos`, fill bytes skipped."""
    if pos >= len(data) or data[pos] != 0xFF:
        raise ImageDecodeError(f"corrupt JPEG: no marker at byte {pos}")
    while pos < len(data) and data[pos] == 0xFF:
        pos += 1
    if pos >= len(data):
        raise ImageDecodeError("truncated JPEG: no end-of-image marker")
    return data[pos], pos + 1


def _scan_end(data: bytes, pos: int) -> int:
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= len(data):
            raise ImageDecodeError("truncated JPEG: scan data without end-of-image marker")
        following = data[pos + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7 or following == 0xFF:
            pos += 1 if following == 0xFF else 2
            continue
        return pos
