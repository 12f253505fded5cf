"""The bad-input corpus of issue 15: folders, zips, single files and label tables, hostile or broken, next to
good files, with what the importer must make of each (`Source`).

Generated, never stored: `python -m tests.imports_corpus.build OUT` writes it to OUT and prints a summary;
tests/test_import_corpus.py imports every source through `manage.py import_images` and a real worker. Small
on purpose (about 4 MB on disk, a few seconds to build): what is hostile is the structure, not the size.
The corpus runs with IMPORT_MAX_ARCHIVE_BYTES=CORPUS_ARCHIVE_BYTES (`CORPUS_ENV`) so that a 30 MB bomb is one.
"""

from __future__ import annotations

import io
import os
import socket
import sys
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

CORPUS_ARCHIVE_BYTES = 20_000_000
CORPUS_ENV = {"IMPORT_MAX_ARCHIVE_BYTES": str(CORPUS_ARCHIVE_BYTES)}


@dataclass
class Source:
    """One import: a source (and/or a label table) and what must come of it."""

    name: str
    path: Path | None
    labels: Path | None = None
    status: str = "succeeded"
    error: str = ""  # part of the job's error when it fails
    good: set[str] = field(default_factory=set)  # source names that must be imported
    refused: dict[str, str] = field(default_factory=dict)  # report file name -> part of its message
    remarks: list[str] = field(default_factory=list)  # parts of messages somewhere in the report
    labelled: dict[str, dict] = field(default_factory=dict)  # source name -> labels it must carry

    @property
    def inputs(self) -> int:
        """How many corpus inputs this import holds (files, the source itself, its table)."""
        return len(self.good) + len(self.refused) + 1 + (self.labels is not None)


def png(seed: int, size: int = 48) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    PILImage.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def jpeg(seed: int, size: int = 48) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    PILImage.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def _dataset(name: str = "CT_small.dcm"):
    import pydicom
    from pydicom.data import get_testdata_file

    return pydicom.dcmread(get_testdata_file(name))


def _save(ds) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # values too long or with a NUL, on purpose
        ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def dicom(seed: int, name: str = "CT_small.dcm", **tags) -> bytes:
    """A pydicom sample with fresh UIDs (a distinct instance), tags changed as given."""
    from pydicom.uid import generate_uid

    ds = _dataset(name)
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[f"corpus-sop-{seed}"])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[f"corpus-series-{seed}"])
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[f"corpus-study-{seed}"])
    for key, value in tags.items():
        if key in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID", "Modality"):
            ds[key].value = value  # raw values, the long and the NUL ones included
        else:
            setattr(ds, key, value)
    return _save(ds)


def deep_dicom(depth: int) -> bytes:
    """CT_small with a ContentSequence nested `depth` deep (47 KB at 400: issue 15's memory exhaustion)."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = _dataset()
    item = Dataset()
    item.CodeValue = "x"
    for _ in range(depth):
        outer = Dataset()
        outer.ContentSequence = Sequence([item])
        item = outer
    ds.ContentSequence = item.ContentSequence
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20 * depth + 1000))
    try:
        return _save(ds)
    finally:
        sys.setrecursionlimit(limit)


def jpeg_dicom(cut: str) -> bytes:
    """A JPEG-compressed DICOM whose frame is cut to a third ('third') or has 40 scrambled bytes ('scrambled')."""
    from pydicom.encaps import encapsulate, generate_fragmented_frames
    from pydicom.uid import generate_uid

    ds = _dataset("SC_rgb_jpeg_dcmtk.dcm")
    frame = b"".join(next(generate_fragmented_frames(ds.PixelData, number_of_frames=1)))
    if cut == "third":
        bad = frame[: len(frame) // 3]
    elif cut == "scrambled":  # seed 0: the 40 bytes make libjpeg fail; Pillow alone would decode garbage
        noise = np.random.default_rng(0).integers(0, 256, 40, dtype=np.uint8).tobytes()
        bad = frame[: len(frame) // 2] + noise + frame[len(frame) // 2 + 40 :]
    else:  # 'scrambled silently': 40 bytes at 1490 that pylibjpeg and Pillow both decode without a warning
        bad = scrambled_silently(frame)
    ds.PixelData = encapsulate([bad])
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[f"corpus-jpeg-{cut}"])
    return _save(ds)


def scrambled_silently(frame: bytes) -> bytes:
    """The corpus frame with 40 random bytes (seed 1) at offset 1490: the Huffman decoding loses step and runs out
    before the last block, which pylibjpeg and Pillow fill in without a warning; libjpeg-turbo says "premature end
    of data segment"."""
    noise = np.random.default_rng(1).integers(0, 256, 40, dtype=np.uint8).tobytes()
    return frame[:1490] + noise + frame[1530:]


def write(folder: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def csv_text(rows: list[list[str]]) -> bytes:
    import csv

    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    return buf.getvalue().encode()


def _bad_files() -> dict[str, tuple[bytes, str]]:
    """Refusable files that can live in a folder or a zip: name -> (bytes, part of the refusal message)."""
    good_png = png(900)
    bomb = io.BytesIO()
    PILImage.new("1", (9000, 9000)).save(bomb, format="PNG")  # 81 megapixels in a few kB
    bad: dict[str, tuple[bytes, str]] = {
        "bad/empty.png": (b"", "empty file"),
        "bad/text.png": (b"just some text, not an image\n" * 20, "not a DICOM, PNG or JPEG file"),
        "bad/zeros.dcm": (b"\0" * 4096, "not a DICOM, PNG or JPEG file"),
        "bad/tiff.png": (b"II*\x00" + b"\x01" * 400, "not a DICOM, PNG or JPEG file"),
        "bad/gif.jpg": (b"GIF89a" + b"\x02" * 400, "not a DICOM, PNG or JPEG file"),
        "bad/pdf.dcm": (b"%PDF-1.4\n" + b"x" * 400, "not a DICOM, PNG or JPEG file"),
        "bad/pixel_bomb.png": (bomb.getvalue(), "exceeds the limit of"),
        "bad/deep_sequence_400.dcm": (deep_dicom(400), "nested more than"),
        "bad/deep_sequence_40.dcm": (deep_dicom(40), "nested more than"),
        "bad/long_study_uid.dcm": (dicom(901, StudyInstanceUID="1." + "2" * 198), "StudyInstanceUID of 200"),
        "bad/long_sop_uid.dcm": (dicom(902, SOPInstanceUID="1." + "3" * 98), "SOPInstanceUID of 100"),
        "bad/long_modality.dcm": (dicom(903, Modality="M" * 40), "Modality of 40"),
        "bad/nul_in_uid.dcm": (dicom(904, SeriesInstanceUID="1.2.3\x004.5"), "control character"),
        "bad/jpeg_cut_to_a_third.dcm": (jpeg_dicom("third"), "truncated"),
        "bad/jpeg_scrambled.dcm": (jpeg_dicom("scrambled"), "corrupt pixel data"),
        "bad/jpeg_scrambled_silently.dcm": (jpeg_dicom("scrambled silently"), "premature end of data segment"),
        "bad/no_pixels.dcm": (_no_pixels(), "DICOM"),
    }
    for i, fraction in enumerate((0.1, 0.25, 0.4, 0.55, 0.7, 0.85)):
        bad[f"bad/cut_png_{i}.png"] = (good_png[: int(len(good_png) * fraction)], "PNG")
        whole = dicom(910 + i)  # each its own instance: a cut copy of one would be a duplicate
        bad[f"bad/cut_dcm_{i}.dcm"] = (whole[: int(len(whole) * (0.2 + fraction * 0.9))], "DICOM")
    for i in range(12):  # random bytes behind each format's magic
        rng = np.random.default_rng(1000 + i)
        noise = rng.integers(0, 256, 300 + 50 * i, dtype=np.uint8).tobytes()
        magic, ext = ((b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpg"), (b"\0" * 128 + b"DICM", "dcm"))[i % 3]
        bad[f"bad/noise_{i}.{ext}"] = (magic + noise, "")
    return bad


def _no_pixels() -> bytes:
    ds = _dataset()
    del ds.PixelData
    return _save(ds)


def _good_files(offset: int) -> dict[str, bytes]:
    files = {f"good/img_{i}.png": png(offset + i) for i in range(6)}
    files.update({f"good/photo_{i}.jpg": jpeg(offset + 50 + i) for i in range(2)})
    files.update({f"good/ct_{i}.dcm": dicom(offset + 100 + i) for i in range(3)})
    return files


def _zip_with_bad_names(path: Path, members: dict[str, bytes]) -> None:
    """A zip whose members include an invalid-UTF-8 name (flagged UTF-8) and two members of one name."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        zf.writestr("names/caf\u00e9.png", png(950))  # UTF-8 flagged: é is C3 A9, patched to FF FE below
        zf.writestr("names/twice.png", png(951))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zipfile warns about the duplicate name
            zf.writestr("names/twice.png", png(952))
        zf.writestr(zipfile.ZipInfo("../escape.png"), png(953))
        zf.writestr(zipfile.ZipInfo("/abs/path.png"), png(954))
        link = zipfile.ZipInfo("names/link.png")
        link.external_attr = (0o120777 << 16) | 0
        zf.writestr(link, "/etc/passwd")
        zf.writestr("names/zeros.png", b"\0" * 8_000_000)  # 8 MB of zeros: refused after 132 bytes, never inflated
    data = buf.getvalue().replace("caf\u00e9".encode(), b"caf\xff\xfe")
    path.write_bytes(data)


def build(root: Path) -> list[Source]:
    """Write the corpus under `root`; the sources in the order they are imported."""
    root.mkdir(parents=True, exist_ok=True)
    sources: list[Source] = []
    bad = _bad_files()

    # 1. A folder: good files among every kind of bad one, plus what only a folder can hold.
    folder = root / "mixed_folder"
    good = _good_files(0)
    write(folder, good | {name: data for name, (data, _) in bad.items()})
    write(folder, {"zz_dup/copy_of_img_0.png": good["good/img_0.png"]})
    long_path = "long/" + "d" * 200 + "/" + "e" * 200 + "/" + "f" * 100 + ".png"  # 511 characters
    write(folder, {long_path: png(960)})
    write(folder, {"odd/new\nline.png": png(961)})
    os.mkfifo(folder / "odd" / "a_fifo.png")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(folder / "odd" / "a_socket.png"))
        has_socket = True
    except OSError:  # a socket path is limited to 107 bytes: a deep temporary folder cannot hold one
        has_socket = False
    finally:
        sock.close()
    (folder / "odd" / "outside.png").symlink_to("/etc/hostname")
    fd = os.open(os.fsencode(folder / "odd") + b"/latin1_caf\xe9.png", os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, png(962))
    os.close(fd)
    refused = {name: msg for name, (_, msg) in bad.items()}
    refused.update(
        {
            "zz_dup/copy_of_img_0.png": "duplicate of good/img_0.png",
            long_path: "path of 511 characters",
            "odd/new\\x0aline.png": "control character",
            "odd/a_fifo.png": "not a regular file (a FIFO)",
            "odd/outside.png": "link pointing outside",
            "odd/latin1_caf\\xe9.png": "not valid UTF-8",
        }
    )
    if has_socket:
        refused["odd/a_socket.png"] = "not a regular file (a socket)"
    labels = root / "labels_for_mixed.csv"
    long_column = "a label name far longer than the hundred characters a label name may have " * 2
    # two names alike in their first 100 characters: cut to 100 they collided and the image vanished
    rows = [["filename", "grade", long_column + "one", long_column + "two"]]
    rows += [[name.split("/")[-1], str(i), "1", "2"] for i, name in enumerate(sorted(good))]
    rows.append(["img_1.png", "99", "1", "2"])  # listed twice
    rows += [[f"missing_{i}.png", "1", "1", "2"] for i in range(300)]  # 300 rows name no file
    labels.write_bytes(csv_text(rows))
    sources.append(
        Source(
            "mixed_folder",
            folder,
            labels,
            good=set(good),
            refused=refused,
            remarks=[
                "280 more label rows name no imported file",
                "is listed 2 times",
                "characters (limit 100): not imported",
            ],
            # the first row of img_1.png wins over the second (grade 99); the long column is left out
            labelled={name: {"grade": float(i)} for i, name in enumerate(sorted(good))},
        )
    )

    # 2. The same kinds of bad files in a zip, with bad member names.
    archive = root / "mixed.zip"
    good_zip = _good_files(200)
    _zip_with_bad_names(archive, good_zip | {name: data for name, (data, _) in bad.items()})
    refused = {name: msg for name, (_, msg) in bad.items()}
    refused.update(
        {
            "names/caf\u00a0\u25a0.png": "not valid UTF-8",  # FF FE read as cp437
            "names/twice.png": "same name",
            "../escape.png": "'..' in archive path refused",
            "/abs/path.png": "absolute path in archive refused",
            "names/link.png": "symbolic link in archive refused",
            "names/zeros.png": "not a DICOM, PNG or JPEG file",
        }
    )
    sources.append(Source("mixed.zip", archive, good=set(good_zip) | {"names/twice.png"}, refused=refused))

    # 3. Sources refused as a whole, each with a message naming it.
    bomb = root / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for i in range(3):
            zf.writestr(f"zeros_{i}.dcm", b"\0" * 10_000_000)
    sources.append(Source("bomb.zip", bomb, status="failed", error="bomb.zip: 30,000,000 bytes uncompressed in total"))
    corrupt = root / "corrupt.zip"
    corrupt.write_bytes(b"PK\x03\x04" + b"\0" * 200)
    sources.append(Source("corrupt.zip", corrupt, status="failed", error="corrupt.zip: not a readable zip archive"))
    empty_zip = root / "empty.zip"
    with zipfile.ZipFile(empty_zip, "w"):
        pass
    sources.append(Source("empty.zip", empty_zip, status="failed", error="empty.zip: no files to import"))
    empty = root / "empty_folder"
    (empty / ".hidden").mkdir(parents=True)
    (empty / ".hidden" / "x.png").write_bytes(png(970))
    sources.append(Source("empty_folder", empty, status="failed", error="empty_folder: no files to import"))
    all_bad = root / "all_bad"
    write(all_bad, {"a.png": b"", "b.dcm": b"nonsense", "c.jpg": jpeg(971)[:100]})
    sources.append(
        Source(
            "all_bad",
            all_bad,
            status="failed",
            error="none of its 3 files could be imported",
            refused={"a.png": "empty", "b.dcm": "not a DICOM", "c.jpg": "JPEG"},
        )
    )
    fifo_source = root / "fifo_source.png"
    os.mkfifo(fifo_source)
    sources.append(Source("fifo_source", fifo_source, status="failed", error="not a regular file (a FIFO)"))

    # 4. Label tables refused as a whole (with a small good folder that must then stay unimported).
    small = root / "small_folder"
    write(small, {"s.png": png(980)})
    tables = {
        "binary.csv": (b"\x89PNG\r\n\x1a\n\0\0\xff\xfe junk \0\x01", "binary data"),
        "workbook.csv": (b"PK\x03\x04" + b"\0" * 100, "ZIP file"),
        "bad_quotes.csv": (b'filename,grade\n"a.png,1\nb.png,"2\n', "malformed CSV"),
        "no_header.csv": (b"\n\n\n", "empty table"),
        "dup_columns.csv": (b"filename,grade,grade\ns.png,1,2\n", "duplicate column"),
    }
    for name, (data, message) in tables.items():
        (root / name).write_bytes(data)
        sources.append(Source(name, small, root / name, status="failed", error=message))
    os.mkfifo(root / "fifo_labels.csv")
    sources.append(
        Source("fifo_labels.csv", small, root / "fifo_labels.csv", status="failed", error="not a regular file")
    )
    return sources


def count_inputs(sources: list[Source]) -> int:
    return sum(s.inputs for s in sources)


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "imports_corpus")
    built = build(out)
    print(f"{len(built)} imports, {count_inputs(built)} inputs under {out}")
    for s in built:
        print(f"  {s.name:<20} {s.status:<9} {len(s.good)} good, {len(s.refused)} refused")
