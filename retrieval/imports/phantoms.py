"""Synthetic demo collection: chest radiograph phantoms with known, graded findings.

Every phantom is drawn from continuous parameters, so the ground-truth similarity between
two images is known (and the binary labels are thresholds of those parameters):

* ``ctr``              cardiothoracic ratio, maximal heart width / maximal inner thorax
                       width as drawn (0.35-0.65); Cardiomegaly when > 0.5.
* ``effusion_height``  pleural fluid height as a fraction of lung height (0-0.3), with a
                       meniscus rising laterally that blunts the costophrenic angle;
                       Effusion when > 0.08.
* ``opacity``          intensity (0-1) of a patchy consolidation blob in one lung;
                       Opacity when > 0.4.

Patients have their own body habitus (thorax width, soft tissue, diaphragm height, rib
spacing, lung texture), kept across their 2-3 follow-up images, so that "same patient"
is also a visible similarity. Numpy only (no Django); 200 phantoms of 512 px take about
two seconds.

`demo_dicoms` adds a handful of pydicom's bundled sample files (and a synthetic 9-slice
CT series built from CT_small.dcm) so that the demo exercises the DICOM import path.
"""

from __future__ import annotations

import csv
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
from PIL import Image
from pydicom.uid import generate_uid

CARDIOMEGALY_CTR = 0.5
EFFUSION_HEIGHT = 0.08
OPACITY_INTENSITY = 0.4

GENERIC_COLUMNS = (
    "filename",
    "patient_id",
    "view_position",
    "ctr",
    "effusion_height",
    "opacity",
    "Cardiomegaly",
    "Effusion",
    "Opacity",
    "No Finding",
)

NIH_HEADER = (
    "Image Index",
    "Finding Labels",
    "Follow-up #",
    "Patient ID",
    "Patient Age",
    "Patient Gender",
    "View Position",
    "OriginalImage[Width",
    "Height]",
    "OriginalImagePixelSpacing[x",
    "y]",
)


@dataclass
class Phantom:
    pixels: np.ndarray  # uint8 H×W
    filename: str
    patient_id: str
    view_position: str  # "PA" or "AP"
    params: dict[str, float | int | str] = field(default_factory=dict)

    @property
    def labels(self) -> dict[str, float]:
        """Binary findings derived from the continuous parameters."""
        return phantom_labels(self.params)


def phantom_labels(params: dict) -> dict[str, float]:
    cardiomegaly = float(params["ctr"]) > CARDIOMEGALY_CTR
    effusion = float(params["effusion_height"]) > EFFUSION_HEIGHT
    opacity = float(params["opacity"]) > OPACITY_INTENSITY
    return {
        "Cardiomegaly": float(cardiomegaly),
        "Effusion": float(effusion),
        "Opacity": float(opacity),
        "No Finding": float(not (cardiomegaly or effusion or opacity)),
    }


# --------------------------------------------------------------------------- parameters


def _plain(values: dict) -> dict[str, float | int | str]:
    """numpy scalars → Python scalars, so parameters serialise as plain JSON."""
    return {k: v.item() if isinstance(v, np.generic) else v for k, v in values.items()}


def _patient_habitus(rng: np.random.Generator) -> dict[str, float | int | str]:
    return _plain(
        {
            "thorax_half_width": rng.uniform(0.60, 0.72),
            "soft_tissue": rng.uniform(0.07, 0.20),
            "apex": rng.uniform(-0.80, -0.70),
            "diaphragm": rng.uniform(0.50, 0.60),
            "right_dome_raise": rng.uniform(0.0, 0.03),
            "heart_offset": rng.uniform(0.04, 0.09),
            "heart_half_height": rng.uniform(0.18, 0.22),
            "rib_spacing": rng.uniform(0.085, 0.105),
            "rib_phase": rng.uniform(0.0, 1.0),
            "tissue_density": rng.uniform(0.48, 0.58),
            "lung_density": rng.uniform(0.14, 0.22),
            "texture_seed": int(rng.integers(0, 2**31 - 1)),
            "base_ctr": rng.uniform(0.37, 0.63),
            "effusion_prone": rng.uniform(0.2, 0.8),
            "opacity_prone": rng.uniform(0.2, 0.8),
            "age": int(rng.integers(25, 90)),
            "sex": "M" if rng.random() < 0.5 else "F",
        }
    )


def _image_params(rng: np.random.Generator, habitus: dict) -> dict[str, float | int | str]:
    ctr = float(np.clip(habitus["base_ctr"] + rng.normal(0.0, 0.02), 0.35, 0.65))
    effusion = 0.0
    if rng.random() < habitus["effusion_prone"]:
        effusion = rng.uniform(0.02, 0.30)
    opacity = 0.0
    if rng.random() < habitus["opacity_prone"]:
        opacity = rng.uniform(0.1, 1.0)
    return _plain(
        {
            "ctr": round(ctr, 4),
            "effusion_height": round(float(effusion), 4),
            "effusion_side": str(rng.choice(["left", "right", "both"])),
            "opacity": round(float(opacity), 4),
            "opacity_side": str(rng.choice(["left", "right"])),
            "opacity_lateral": rng.uniform(0.35, 0.75),
            "opacity_vertical": rng.uniform(0.30, 0.70),
            "opacity_radius": rng.uniform(0.14, 0.22),
            "opacity_seed": int(rng.integers(0, 2**31 - 1)),
            "view_position": "PA" if rng.random() < 0.7 else "AP",
            "rotation_deg": float(np.clip(rng.normal(0.0, 1.0), -2.0, 2.0)),
            "scale": rng.uniform(0.96, 1.04),
            "shift_x": rng.normal(0.0, 0.015),
            "shift_y": rng.normal(0.0, 0.015),
            "inspiration": rng.normal(0.0, 0.015),
            "noise": rng.uniform(0.008, 0.02),
            "contrast": rng.uniform(0.9, 1.1),
            "brightness": rng.normal(0.0, 0.02),
            "noise_seed": int(rng.integers(0, 2**31 - 1)),
        }
    )


# --------------------------------------------------------------------------- rendering


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1]: a cells×cells random grid upsampled bicubically."""
    grid = rng.uniform(0, 255, (cells, cells)).astype(np.uint8)
    image = Image.fromarray(grid, mode="L").resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.float32) / 127.5 - 1.0


def _step(x: np.ndarray, edge: float) -> np.ndarray:
    """Soft indicator of x > 0 with a ramp `edge` wide (anti-aliased masks)."""
    return np.clip(x / edge + 0.5, 0.0, 1.0)


def render_chest(habitus: dict, params: dict, size: int = 512) -> np.ndarray:
    """Draw one PA/AP chest radiograph phantom as uint8 size×size (bright = dense).

    The smooth anatomy is drawn at half resolution and upsampled (bicubic); the quantum
    noise is added at full resolution.
    """
    work = size // 2 if size >= 128 else size
    density = _render_density(habitus, params, work)
    if work != size:
        image = Image.fromarray(density, mode="F").resize((size, size), Image.Resampling.BICUBIC)
        density = np.asarray(image, dtype=np.float32).copy()
    image_rng = np.random.default_rng(int(params["noise_seed"]))
    density += image_rng.standard_normal(density.shape, dtype=np.float32) * np.float32(params["noise"])
    return np.clip(np.rint(density * 255.0), 0, 255).astype(np.uint8)


def _render_density(habitus: dict, params: dict, size: int) -> np.ndarray:
    f32 = np.float32
    coords = (np.arange(size, dtype=f32) + 0.5) / size * 2.0 - 1.0
    x, y = np.meshgrid(coords, coords)
    theta = math.radians(float(params["rotation_deg"]))
    scale = float(params["scale"])
    xs, ys = x - f32(params["shift_x"]), y - f32(params["shift_y"])
    u = (xs * f32(math.cos(theta)) + ys * f32(math.sin(theta))) / f32(scale)
    v = (-xs * f32(math.sin(theta)) + ys * f32(math.cos(theta))) / f32(scale)
    edge = f32(3.0 / size)

    tw = float(habitus["thorax_half_width"])
    apex = float(habitus["apex"])
    d = float(habitus["diaphragm"]) + float(params["inspiration"])
    lung_height = d - apex
    a = np.abs(u)
    right = u < 0  # the patient's right is on the image left in a PA/AP view
    t = (v - f32(apex)) / f32(lung_height)

    texture_rng = np.random.default_rng(int(habitus["texture_seed"]))
    vessels = _smooth_noise(texture_rng, size, 24)
    fine = _smooth_noise(texture_rng, size, 64)

    # Body: soft tissue (denser laterally), neck; the abdomen below the diaphragm.
    body_hw = tw + float(habitus["soft_tissue"])
    bu = u / f32(body_hw)
    bv = (v - f32(0.15)) / f32(1.25)
    bu2, bv2 = bu * bu, bv * bv
    body = _step(1.0 - bu2 * bu2 - bv2 * bv2, f32(0.05))
    neck = _step(f32(0.22) - a, edge) * _step(f32(apex + 0.05) - v, edge)
    soft = np.maximum(body, neck)
    tissue = f32(habitus["tissue_density"])
    density = f32(0.04) + (tissue - f32(0.04)) * soft
    density += f32(0.10) * body * np.minimum(bu2 * bu2 * bu2, f32(1.0))

    # Lung fields: lateral wall widening to `tw` by 55 % of the lung height, rounded
    # apex, medial border at the mediastinum, hemidiaphragm descending from medial to
    # the lateral costophrenic angle (the right one higher).
    tc = np.clip(t, 0.0, 1.0)
    mediastinum = f32(tw) * (f32(0.15) + f32(0.04) * tc)
    rise = 1.0 - np.clip(t / f32(0.55), 0.0, 1.0)
    lateral = f32(tw) * (1.0 - f32(0.5) * rise * rise)
    lung_mid = (mediastinum + lateral) / 2
    lung_half = np.maximum((lateral - mediastinum) / 2, f32(1e-3))
    cap = (a - lung_mid) / lung_half
    apex_cap = f32(0.10) * cap * cap
    d_side = np.where(right, f32(d - float(habitus["right_dome_raise"])), f32(d))
    dome_height = f32(0.06 * lung_height)
    lateral_fraction = np.clip((a - mediastinum) / (2 * lung_half), 0.0, 1.0)
    medial_fraction = 1.0 - lateral_fraction
    diaphragm = d_side - dome_height * medial_fraction * np.sqrt(medial_fraction)
    lung = (
        _step(a - mediastinum, edge)
        * _step(lateral - a, edge)
        * _step(t - apex_cap, f32(3.0 / size / lung_height))
        * _step(diaphragm - v, edge)
    )

    # Heart: ellipse whose width is ctr × thorax width (2·tw), widest 0.17 lung heights
    # above the costophrenic angle (above the top of the diaphragm), shifted to the
    # patient's left, its lower edge hidden in the diaphragm.
    heart_hw = f32(float(params["ctr"]) * tw)
    heart_hh = f32(float(habitus["heart_half_height"]) * lung_height)
    hu = (u - f32(habitus["heart_offset"])) / heart_hw
    hv = (v - f32(d - 0.17 * lung_height)) / heart_hh
    heart = _step(1.0 - hu * hu - hv * hv, f32(0.04))
    lung *= 1.0 - heart

    # Lung interior: air with vascular markings, denser towards the hila.
    hx = (a - f32(0.25 * tw)) / f32(0.22)
    hy = (v - f32(apex + 0.45 * lung_height)) / f32(0.35)
    hilum = np.exp(-(hx * hx + hy * hy))
    lung_fill = (
        f32(habitus["lung_density"])
        + f32(0.05) * vessels * (f32(0.4) + hilum)
        + f32(0.02) * fine
        + f32(0.10) * hilum
        + f32(0.05) * tc  # soft tissue overlap thickens towards the bases
    )
    density += (lung_fill - density) * lung

    # Pleural effusion: fluid filling the lung base up to a meniscus rising laterally.
    effusion = float(params["effusion_height"])
    if effusion > 0:
        side = params["effusion_side"]
        side_mask = 1.0 if side == "both" else (right if side == "right" else ~right).astype(f32)
        level = d_side - f32(effusion * lung_height) * (f32(0.6) + f32(0.8) * lateral_fraction * lateral_fraction)
        fluid = _step(v - level, f32(0.02)) * lung * side_mask
        density += (tissue - density) * f32(0.85) * fluid

    # Consolidation: patchy blob (gaussians × texture) clipped to one lung.
    opacity = float(params["opacity"])
    if opacity > 0:
        blob_rng = np.random.default_rng(int(params["opacity_seed"]))
        sign = -1.0 if params["opacity_side"] == "right" else 1.0
        oy = apex + float(params["opacity_vertical"]) * lung_height
        oa = tw * (0.15 + 0.75 * float(params["opacity_lateral"]))
        radius = float(params["opacity_radius"]) * tw
        blob = np.zeros_like(u)
        for _ in range(5):
            cx = sign * oa + blob_rng.normal(0, radius * 0.45)
            cy = oy + blob_rng.normal(0, radius * 0.45)
            r = radius * blob_rng.uniform(0.5, 0.9)
            du, dv = u - f32(cx), v - f32(cy)
            blob = np.maximum(blob, np.exp((du * du + dv * dv) * f32(-0.5 / (r * r))))
        texture = _smooth_noise(blob_rng, size, 40)
        patchy = np.clip(blob * (f32(0.75) + f32(0.35) * texture), 0.0, 1.0)
        density += f32(0.42 * opacity) * patchy * lung

    # Bones: spine, posterior ribs, clavicles; scapulae over the lungs in AP views.
    thorax = _step(f32(tw + 0.03) - a, edge) * _step(f32(d) - v, f32(0.05)) * _step(v - f32(apex - 0.05), edge)
    density += f32(0.08) * _step(f32(0.06) - a, f32(0.03)) * soft
    spacing = float(habitus["rib_spacing"])
    ar = a / f32(tw)
    phase = (v - f32(0.28) * ar * ar + f32(0.08) * ar) / f32(spacing) + f32(habitus["rib_phase"])
    rib = _step(np.cos(f32(2 * math.pi) * phase) - f32(0.45), f32(0.25))
    density += f32(0.05) * rib * thorax * _step(a - f32(0.08), f32(0.04))
    clavicle_v = f32(apex + 0.06) - f32(0.10) * ar + f32(0.22) * ar * ar
    clavicle = _step(f32(0.028) - np.abs(v - clavicle_v), edge) * _step(f32(tw * 1.05) - a, edge)
    density += f32(0.12) * clavicle * _step(a - f32(0.05), edge)
    if params["view_position"] == "AP":
        scapula = _step(f32(0.10) - np.abs(a - f32(tw * 0.92)), f32(0.06)) * _step(
            f32(apex + 0.55 * lung_height) - v, f32(0.1)
        )
        density += f32(0.07) * scapula * _step(v - f32(apex), edge)

    # Acquisition: contrast and brightness jitter, a mild vignette.
    density = density * f32(params["contrast"]) + f32(params["brightness"])
    density -= f32(0.03) * (x * x + y * y)
    return density.astype(np.float32, copy=False)


# --------------------------------------------------------------------------- collections


def generate_chest_phantoms(n: int, *, seed: int, size: int = 512) -> list[Phantom]:
    """`n` phantoms of 2-3 follow-ups per patient; the same (n, seed) gives the same
    images, and a smaller n gives a prefix of a larger one (up to the last patient)."""
    if n < 0:
        raise ValueError("n must be non-negative")
    phantoms: list[Phantom] = []
    patient = 0
    while len(phantoms) < n:
        patient += 1
        rng = np.random.default_rng([seed, patient])
        habitus = _patient_habitus(rng)
        patient_id = f"P{patient:05d}"
        follow_ups = int(rng.integers(2, 4))
        for follow_up in range(follow_ups):
            if len(phantoms) >= n:
                break
            params = _image_params(rng, habitus)
            params.update(
                follow_up=follow_up,
                age=int(habitus["age"]) + follow_up,
                sex=str(habitus["sex"]),
            )
            pixels = render_chest(habitus, params, size)
            phantoms.append(
                Phantom(
                    pixels=pixels,
                    filename=f"{patient:08d}_{follow_up:03d}.png",
                    patient_id=patient_id,
                    view_position=str(params["view_position"]),
                    params=params,
                )
            )
    return phantoms


def write_generic_csv(phantoms: list[Phantom], path: str | Path) -> Path:
    """The demo's generic label table: one row per phantom, parameters and labels."""
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(GENERIC_COLUMNS)
        for phantom in phantoms:
            labels = phantom.labels
            writer.writerow(
                [
                    phantom.filename,
                    phantom.patient_id,
                    phantom.view_position,
                    f"{float(phantom.params['ctr']):.4f}",
                    f"{float(phantom.params['effusion_height']):.4f}",
                    f"{float(phantom.params['opacity']):.4f}",
                    int(labels["Cardiomegaly"]),
                    int(labels["Effusion"]),
                    int(labels["Opacity"]),
                    int(labels["No Finding"]),
                ]
            )
    return path


def write_nih_style_csv(phantoms: list[Phantom], path: str | Path) -> Path:
    """A ChestX-ray14 Data_Entry_2017.csv for the same files (odd headers, trailing comma).

    The consolidation blob is reported as NIH "Consolidation" (paper 000 counts it, with
    Effusion, towards the Opacity task)."""
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as handle:
        handle.write(",".join(NIH_HEADER) + ",\n")
        writer = csv.writer(handle, lineterminator=",\n")
        for phantom in phantoms:
            labels = phantom.labels
            findings = [
                name
                for name, present in (
                    ("Cardiomegaly", labels["Cardiomegaly"]),
                    ("Consolidation", labels["Opacity"]),
                    ("Effusion", labels["Effusion"]),
                )
                if present
            ]
            height, width = phantom.pixels.shape[:2]
            writer.writerow(
                [
                    phantom.filename,
                    "|".join(findings) or "No Finding",
                    phantom.params.get("follow_up", 0),
                    phantom.patient_id,
                    phantom.params.get("age", ""),
                    phantom.params.get("sex", ""),
                    phantom.view_position,
                    width,
                    height,
                    "0.7",
                    "0.7",
                ]
            )
    return path


#: What the simulated readers of a rating table rate (paper 004's setting: several readers, 1–5 scales).
RATED_CHARACTERISTICS = ("heart_size", "effusion", "opacity")
DEMO_RATERS = ("reader A", "reader B", "reader C")


def simulated_ratings(
    ctr: float, effusion_height: float, opacity: float, rng: np.random.Generator, n_raters: int = len(DEMO_RATERS)
) -> np.ndarray:
    """(n_raters, 3) integer ratings 1–5 of heart size, effusion and opacity from a phantom's known
    parameters; each reader is off by one on about two ratings in five, as readers disagree."""
    truth = np.array([1 + 4 * (ctr - 0.35) / 0.3, 1 + 4 * min(effusion_height / 0.3, 1.0), 1 + 4 * min(opacity, 1.0)])
    noise = rng.choice([-1, 0, 0, 0, 1], size=(n_raters, len(truth)))
    return np.clip(np.rint(truth + noise), 1, 5).astype(int)


def write_rating_csv(rows, path: str | Path, *, raters=DEMO_RATERS, seed: int = 0) -> Path:
    """A rating table (generic CSV with a `rater` column, one row per image and reader) of simulated readers.

    `rows`: (file name, ctr, effusion height, opacity) per image."""
    path = Path(path)
    rng = np.random.default_rng(seed)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filename", "rater", *RATED_CHARACTERISTICS])
        for filename, ctr, effusion_height, opacity in rows:
            ratings = simulated_ratings(float(ctr), float(effusion_height), float(opacity), rng, len(raters))
            writer.writerows([filename, rater, *values] for rater, values in zip(raters, ratings.tolist()))
    return path


def write_demo_collection(folder: str | Path, n: int, seed: int) -> Path:
    """Write `n` phantom PNGs, ``labels.csv`` (generic), ``Data_Entry_2017.csv`` (NIH style) and
    ``ratings.csv`` (three simulated readers' 1–5 ratings, paper 004) into `folder`; returns the generic CSV's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    phantoms = generate_chest_phantoms(n, seed=seed)
    for phantom in phantoms:
        Image.fromarray(phantom.pixels, mode="L").save(folder / phantom.filename, compress_level=3)
    write_nih_style_csv(phantoms, folder / "Data_Entry_2017.csv")
    write_rating_csv(
        ((p.filename, p.params["ctr"], p.params["effusion_height"], p.params["opacity"]) for p in phantoms),
        folder / "ratings.csv",
        seed=seed,
    )
    return write_generic_csv(phantoms, folder / "labels.csv")


# --------------------------------------------------------------------------- DICOM samples

#: pydicom sample files copied by `demo_dicoms`: (bundled name, file name, what it shows).
DEMO_DICOM_SAMPLES: tuple[tuple[str, str, str], ...] = (
    ("MR_small_jp2klossless.dcm", "mr_jpeg2000_lossless.dcm", "JPEG 2000 lossless MR"),
    ("JPGExtended.dcm", "nm_jpeg_extended_12bit.dcm", "JPEG extended (12-bit) NM"),
    ("examples_ybr_color.dcm", "us_multiframe_ybr.dcm", "30-frame YBR JPEG ultrasound"),
    ("SC_rgb_rle.dcm", "sc_rgb_rle.dcm", "RLE lossless RGB secondary capture"),
)

#: A MONOCHROME1 CR (16×16 pixels, the only MONOCHROME1 sample pydicom ships).
MONOCHROME1_SAMPLE = ("dicomdirtests/77654033/CR1/6154", "cr_monochrome1.dcm")

CT_SERIES_SLICES = 9


def demo_dicoms(folder: str | Path) -> list[Path]:
    """Copy a few of pydicom's sample DICOMs into `folder` and synthesise a CT series.

    pydicom ships real CT series only at 16×16 pixels (dicomdirtests), so the series is
    made from CT_small.dcm (128×128): 9 slices 5 mm apart with new UIDs, instance numbers
    and positions, each shifted a little so the slices differ; the middle slice is the
    unshifted original. It has the soft-tissue window (W 400 / L 40) that the GE private
    tags of CT_small record, so the NLST-style "window from the file" path is shown.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for bundled, name, _ in DEMO_DICOM_SAMPLES:
        target = folder / name
        shutil.copyfile(pydicom.data.get_testdata_file(bundled), target)
        written.append(target)
    base = Path(pydicom.data.get_testdata_file("CT_small.dcm")).parent
    target = folder / MONOCHROME1_SAMPLE[1]
    shutil.copyfile(base / MONOCHROME1_SAMPLE[0], target)
    written.append(target)
    written.extend(write_ct_series(folder / "ct_series"))
    return written


def write_ct_series(folder: str | Path, slices: int = CT_SERIES_SLICES) -> list[Path]:
    """A deterministic single-frame CT series (files named out of slice order)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    source = pydicom.data.get_testdata_file("CT_small.dcm")
    template = pydicom.dcmread(source)
    base_pixels = template.pixel_array
    normal_z = float(template.ImagePositionPatient[2])
    study_uid = generate_uid(entropy_srcs=["cbir-demo", "ct-study"])
    series_uid = generate_uid(entropy_srcs=["cbir-demo", "ct-series"])
    frame_uid = generate_uid(entropy_srcs=["cbir-demo", "ct-frame-of-reference"])
    middle = slices // 2
    order = np.random.default_rng(7).permutation(slices)
    written = []
    for file_number, index in enumerate(order):
        ds = pydicom.dcmread(source)
        sop_uid = generate_uid(entropy_srcs=["cbir-demo", "ct-slice", str(index)])
        ds.SOPInstanceUID = sop_uid
        ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.SeriesNumber = 900
        ds.InstanceNumber = int(index) + 1
        position = [float(p) for p in ds.ImagePositionPatient]
        position[2] = normal_z + 5.0 * (int(index) - middle)
        ds.ImagePositionPatient = [f"{p:.6f}" for p in position]
        ds.SliceLocation = f"{position[2]:.6f}"
        ds.WindowCenter = "40"
        ds.WindowWidth = "400"
        ds.SeriesDescription = "Demo CT series (synthesised from CT_small)"
        shifted = np.roll(base_pixels, 3 * (int(index) - middle), axis=0)
        ds.PixelData = shifted.astype(base_pixels.dtype).tobytes()
        target = folder / f"ct_{file_number:02d}.dcm"
        ds.save_as(target, enforce_file_format=True)
        written.append(target)
    return written
