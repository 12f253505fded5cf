"""Pseudonyms of imported file and folder names (pure Python, no Django).

Folder and file names carry identifiers (a folder per PatientID, `Name^Given_MRN…_DOB…`), so no name
of an imported file is stored: every path component becomes a keyed pseudonym, HMAC-SHA256 under the
dataset's secret key (`Dataset.pseudonym_key`, the key of the patient pseudonyms, in a domain of its
own), truncated to `LENGTH` base32 characters. A known extension is kept (`.dcm`, `.png`, `.jpg`…),
anything else in a name is replaced (for example; the characters depend on the key):

    77654033/CR1/6154          ->  3hq7c2mzk5ab/x2rwq6l4ke7d/fa7ttl3bq6jn
    Doe^John_MRN-123/chest.dcm ->  m6v4d3y2qx7a/q2ci2rk4k6sn.dcm

The pseudonym is deterministic within a dataset: the same folder gets the same pseudonym in every
file and every import, so images of one folder stay together, and a label table or case list that
names the original files still matches (its names are pseudonymised with the same key before they
are compared: `path_pseudonym` is the only way a name is turned into a stored one). Pseudonyms of two
datasets cannot be linked, and without the key a pseudonym cannot be turned back into the name.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import PurePosixPath

#: Characters of a component's pseudonym (base32: 5 bits each, 60 bits in all).
LENGTH = 12

#: Extensions kept after the pseudonym: they say what a file is and name nobody. Any other "extension"
#: (`Smith.John`) is part of the name and is pseudonymised with it.
KEPT_SUFFIXES = frozenset(
    {".dcm", ".dicom", ".dic", ".ima", ".png", ".jpg", ".jpeg", ".csv", ".tsv", ".txt", ".json", ".zip"}
)

_DOMAIN = b"file-name\x00"  # keeps these HMACs apart from the patient pseudonyms made with the same key


def normalise(path: str) -> str:
    """A path as label tables and archives spell it, made comparable: trimmed, `/` separators, no leading
    `./` or `/`."""
    return path.strip().replace("\\", "/").lstrip("./")


def component_pseudonym(key: str, component: str) -> str:
    """The pseudonym of one folder or file name: its stem's HMAC in base32, a known extension kept."""
    suffix = PurePosixPath(component).suffix
    if suffix.lower() not in KEPT_SUFFIXES or suffix == component:
        suffix = ""
    stem = component[: len(component) - len(suffix)]
    digest = hmac.new(key.encode(), _DOMAIN + stem.encode("utf-8", "surrogateescape"), hashlib.sha256).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:LENGTH] + suffix


def path_pseudonym(key: str, path: str) -> str:
    """The stored name of a file: every component of its (normalised) relative path pseudonymised."""
    parts = [p for p in PurePosixPath(normalise(path)).parts if p not in ("", ".", "/")]
    return "/".join(component_pseudonym(key, p) for p in parts)
