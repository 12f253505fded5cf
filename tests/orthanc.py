"""A real PACS for the DICOMweb tests: Debian's Orthanc with its DICOMweb plugin, started by the tests.

`make orthanc` (and CI, through `make install`) installs it: `apt-get install -y orthanc orthanc-dicomweb`.
When it is missing the tests fail saying so: they never skip.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

ORTHANC = os.environ.get("ORTHANC", "/usr/sbin/Orthanc")
PLUGIN_DIRS = ("/usr/share/orthanc/plugins", "/usr/lib/orthanc")
USER, PASSWORD = "cbir", "pacs-secret"
INSTALL = "install it with `make orthanc` (sudo apt-get install -y orthanc orthanc-dicomweb)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dicomweb_plugin() -> Path | None:
    for folder in PLUGIN_DIRS:
        for candidate in sorted(Path(folder).glob("libOrthancDicomWeb.so*")) if Path(folder).is_dir() else []:
            return candidate
    return None


@dataclass
class Pacs:
    url: str  # the server's root (REST API)
    log: Path
    uploaded: list[str] = field(default_factory=list)

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    def upload(self, data: bytes) -> None:
        r = requests.post(f"{self.url}/instances", data=data, auth=(USER, PASSWORD), timeout=30)
        r.raise_for_status()
        self.uploaded.append(r.json()["ID"])


def start_orthanc(folder: Path) -> tuple[subprocess.Popen, Pacs]:
    binary, plugin = shutil.which(ORTHANC) or (ORTHANC if Path(ORTHANC).is_file() else None), dicomweb_plugin()
    if binary is None or plugin is None:
        missing = "Orthanc" if binary is None else "its DICOMweb plugin (libOrthancDicomWeb.so)"
        pytest.fail(f"{missing} is not installed, and the DICOMweb tests need a real PACS: {INSTALL}.", pytrace=False)
    port = free_port()
    storage = folder / "storage"
    storage.mkdir(parents=True)
    config = {
        "Name": "cbir-test-pacs",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "HttpPort": port,
        "DicomServerEnabled": False,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {USER: PASSWORD},
        "Plugins": [str(plugin)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }
    (folder / "orthanc.json").write_text(json.dumps(config))
    log = folder / "orthanc.log"
    with log.open("wb") as out:
        process = subprocess.Popen([binary, str(folder / "orthanc.json")], stdout=out, stderr=subprocess.STDOUT)
    pacs = Pacs(url=f"http://127.0.0.1:{port}", log=log)
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(f"{pacs.url}/system", auth=(USER, PASSWORD), timeout=2).ok:
                return process, pacs
        except requests.ConnectionError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"Orthanc did not start:\n{log.read_text()[-3000:]}", pytrace=False)
        time.sleep(0.1)
