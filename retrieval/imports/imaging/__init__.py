"""Decoding, DICOM display, de-identification and renditions of uploaded images.

Pure numpy / Pillow / pydicom code with no Django import, so the import pipeline, the
management commands and the tests can all call it on plain bytes. Each module holds one concept
and is imported by name (this package re-exports nothing):

* `errors`: `ImageDecodeError`, the one exception callers catch.
* `sniff`: the format of a byte string (DICOM, PNG, JPEG) and why other bytes are refused.
* `dicom`: the DICOM header (identity, geometry, frames, slice position), read without pixels.
* `series`: slices of CT/MR/PT volumes grouped by series, and the middle slice.
* `pixeldata`: DICOM Pixel Data: native and compressed transfer syntaxes, decoder plugins.
* `windowing`: stored values to display: modality LUT, VOI window or LUT, colour.
* `decode`: `decode_image`, DICOM/PNG/JPEG bytes to display pixels within a pixel budget.
* `deid`: de-identification of stored originals: DICOM under a pseudonym (PS3.15 Basic Profile),
  PNG/JPEG without their metadata.
* `renditions`: PNG/WEBP/JPEG renditions and thumbnails of decoded pixels.
"""
