"""Rendering a phantom: a synthetic frontal (PA) chest film drawn from a :class:`PhantomFindings` scene.

:func:`render_phantom` draws the scene over an anatomy that varies per patient (body habitus, lung
size, diaphragm height, heart position, exposure, noise), deterministically per study id. Pure numpy:
it knows nothing of reports or labels. Every image carries a "SYNTHETIC" burn-in.

Orientation (a PA film seen as the radiologist reads it): the patient faces the viewer, so the
**patient's right is on the image left** (small column index) and the patient's left on the image
right. Every ``side`` in this module is the *patient's* side; :func:`side_sign` converts it to image
columns. The heart bulges to the patient's left (image right), the right diaphragm dome sits higher.

Pixel values follow lexray's convention: float32 in [0, 1], 0 = black (air), 1 = white (bone, metal).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from lexray.phantoms.scene import SIDES, PhantomFindings

SYNTHETIC_TEXT = "SYNTHETIC"
MIN_SIZE = 32  # smallest phantom side in pixels (the anatomy and burn-in need it)


def side_sign(side: str) -> float:
    """+1 for the patient's left (image right, larger column), -1 for the patient's right."""
    if side not in SIDES:
        raise ValueError(f"side must be 'right' or 'left' (the patient's), got {side!r}")
    return 1.0 if side == "left" else -1.0


def study_seed(study_id: str) -> int:
    """A stable 64-bit seed from a study id (the same on every machine and Python run)."""
    return int.from_bytes(hashlib.blake2b(study_id.encode("utf-8"), digest_size=8).digest(), "little")


@dataclass(frozen=True)
class Anatomy:
    """Per-patient geometry in unit coordinates (x across columns, y down rows, both in [0, 1])."""

    cx: float  # midline
    body_half: float  # half width of the soft-tissue silhouette
    lung_half: float  # half width of each lung
    lung_gap: float  # distance from the midline to each lung's inner edge
    apex: float  # top of the lungs
    dome: float  # height of the right diaphragm dome (the left sits lower)
    dome_drop: float  # how much lower the left dome sits
    heart_y: float  # heart centre
    ctr: float  # cardiothoracic ratio
    exposure: float  # global gamma-like exposure factor
    rib_phase: float  # vertical phase of the rib pattern
    rib_spacing: float  # vertical rib spacing


def sample_anatomy(rng: np.random.Generator) -> Anatomy:
    """Draw a plausible adult PA anatomy."""
    return Anatomy(
        cx=0.5 + rng.normal(0, 0.01),
        body_half=rng.uniform(0.38, 0.46),
        lung_half=rng.uniform(0.165, 0.2),
        lung_gap=rng.uniform(0.05, 0.07),
        apex=rng.uniform(0.12, 0.17),
        dome=rng.uniform(0.7, 0.76),
        dome_drop=rng.uniform(0.01, 0.03),
        heart_y=rng.uniform(0.6, 0.65),
        ctr=rng.uniform(0.4, 0.48),
        exposure=rng.uniform(0.85, 1.15),
        rib_phase=rng.uniform(0, 1),
        rib_spacing=rng.uniform(0.06, 0.075),
    )


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise (size, size) in about [-1, 1]: a coarse random grid, bilinearly upsampled."""
    coarse = rng.standard_normal((cells + 1, cells + 1)).astype(np.float32)
    t = np.linspace(0, cells, size, dtype=np.float32)
    i = np.minimum(t.astype(np.int64), cells - 1)
    f = t - i
    rows = coarse[i] * (1 - f)[:, None] + coarse[i + 1] * f[:, None]  # (size, cells + 1)
    return rows[:, i] * (1 - f)[None, :] + rows[:, i + 1] * f[None, :]  # (size, size)


def _blob(x: np.ndarray, y: np.ndarray, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    """A soft elliptical blob, 1 at the centre falling to ~0 outside (rx, ry)."""
    return np.exp(-(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2) * 2.0)


@lru_cache(maxsize=8)
def _burn_in(size: int) -> np.ndarray:
    """The "SYNTHETIC" label as a (size, size) float mask, top-left corner (rendered once per size)."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=max(8, size // 22))
    draw.text((max(2, size // 64), max(2, size // 64)), SYNTHETIC_TEXT, fill=255, font=font)
    return np.asarray(img, dtype=np.float32) / 255.0


def render_phantom(findings: PhantomFindings, study_id: str, size: int = 256) -> np.ndarray:
    """Draw a synthetic PA chest radiograph showing ``findings``.

    Args:
        findings: what to draw (see :class:`PhantomFindings`; sides are the patient's).
        study_id: seeds the anatomy and noise, so a study always gets the same image.
        size: output side in pixels (square).

    Returns:
        float32 (size, size) in [0, 1], 0 = black, with a "SYNTHETIC" burn-in at the top left.
    """
    if size < MIN_SIZE:
        raise ValueError(f"phantom size must be at least {MIN_SIZE} pixels, got {size}")
    seed = study_seed(study_id)
    rng = np.random.default_rng(seed)  # anatomy and noise
    frng = np.random.default_rng(
        [seed, 1]
    )  # finding placement: its own stream, so noise never depends on findings
    a = sample_anatomy(rng)
    if findings.hyperinflation:  # taller lungs, lower and flatter diaphragm
        a = replace(a, dome=min(a.dome + 0.06, 0.84), apex=a.apex - 0.01, lung_half=a.lung_half + 0.01)
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size
    y, x = np.meshgrid(coords, coords, indexing="ij")  # (S, S) each; x grows to the image right
    dx = x - a.cx

    # Soft tissue silhouette (body), shoulders narrower at the top.
    shoulder = a.body_half * (0.92 + 0.08 * np.clip((y - 0.1) / 0.3, 0, 1))
    body = np.clip((shoulder - np.abs(dx)) / 0.02, 0, 1) * (y > 0.03)
    img = 0.03 + 0.42 * body

    # Lungs: each an ellipse cut off below by its diaphragm dome.
    lungs = np.zeros_like(img)
    lung_masks: dict[str, np.ndarray] = {}
    centers: dict[str, float] = {}
    domes: dict[str, np.ndarray] = {}
    for side in SIDES:
        sgn = side_sign(side)
        inner = a.cx + sgn * a.lung_gap  # mediastinal edge
        lcx = inner + sgn * a.lung_half
        centers[side] = lcx
        lat = sgn * (x - inner) / (2 * a.lung_half)  # 0 at the mediastinal edge, 1 at the chest wall
        u = (x - lcx) / a.lung_half  # -1..1 across the lung
        dome_y = a.dome + (a.dome_drop if side == "left" else 0.0)
        dome_curve = dome_y - (0.05 if not findings.hyperinflation else 0.015) * np.clip(1 - u**2, 0, 1)
        domes[side] = dome_curve
        t = np.clip((y - a.apex) / (dome_y - a.apex), 0, 1)  # 0 at the apex, 1 at the base
        width = 0.45 + 0.55 * np.sqrt(t)  # narrow rounded apex, broad base
        # Soft edges over ~1.5% of the image on every border.
        edge = np.minimum.reduce(
            [
                lat * 2 * a.lung_half / 0.015,
                (width - lat) * 2 * a.lung_half / 0.015,
                (y - a.apex) / 0.015,
                (dome_curve - y) / 0.015,
            ]
        )
        mask = np.clip(edge, 0, 1)
        lung_masks[side] = mask
        lungs = np.maximum(lungs, mask)
    lung_dark = 0.3 + (0.04 if findings.hyperinflation else 0.0)
    img = img - lung_dark * lungs

    # Vascular markings: fine texture inside the lungs, denser towards the hila (absent in a pneumothorax).
    markings = _smooth_noise(rng, size, max(8, size // 6)) * 0.035
    hilum_weight = np.exp(-(((np.abs(dx) - 0.1) / 0.12) ** 2))
    marking_field = markings * (0.5 + hilum_weight) * lungs

    # Heart: ellipse bulging to the patient's left (image right); its width sets the CTR.
    thorax_width = 2 * (a.lung_gap + 2 * a.lung_half)
    ctr = a.ctr + (0.16 if findings.cardiomegaly else 0.0)
    heart_w = ctr * thorax_width
    heart_cx = a.cx + 0.18 * heart_w  # two thirds of the heart lies left of the midline
    heart_h = 0.13 + (0.03 if findings.cardiomegaly else 0.0)
    heart = np.clip(1.2 - (((x - heart_cx) / (heart_w / 2)) ** 2 + ((y - a.heart_y) / heart_h) ** 2), 0, 1)
    heart = np.clip(heart * 4, 0, 1) * (y < a.dome + 0.04)
    # Mediastinum: a vertical band from the neck to the heart.
    med_half = 0.055 + (0.04 if findings.wide_mediastinum else 0.0)
    mediastinum = np.clip((med_half - np.abs(dx + 0.005)) / 0.01, 0, 1) * np.clip(
        (a.heart_y - y) / 0.05, 0, 1
    )
    mediastinum *= y > 0.05
    central = np.maximum(heart, mediastinum)
    img = img * (1 - central) + 0.58 * central

    # Bones: spine, ribs, clavicles.
    spine = np.clip((0.022 - np.abs(dx)) / 0.006, 0, 1) * (y > 0.04)
    vertebrae = 0.5 + 0.5 * np.cos(2 * np.pi * y / 0.035)
    img = img + 0.1 * spine * (0.7 + 0.3 * vertebrae)
    rib_y = y - 0.5 * dx**2 / 0.3 - a.rib_phase * a.rib_spacing
    ribs = np.clip((np.cos(2 * np.pi * rib_y / a.rib_spacing) - 0.55) / 0.3, 0, 1)
    rib_zone = (
        np.clip((a.body_half - 0.03 - np.abs(dx)) / 0.02, 0, 1) * (y > a.apex - 0.03) * (y < a.dome + 0.02)
    )
    rib_zone *= np.abs(dx) > 0.03
    for side in findings.fracture:  # a dark gap across one mid-zone rib, lateral
        gx = a.cx + side_sign(side) * (a.lung_gap + 1.5 * a.lung_half)
        gap = (np.abs(x - gx) < 0.015) & (np.abs(y - (a.apex + 0.3 * (a.dome - a.apex))) < a.rib_spacing)
        ribs = ribs * ~gap
    img = img + 0.09 * ribs * rib_zone
    for side in SIDES:
        sgn = side_sign(side)
        cy = 0.17 + 0.12 * (sgn * dx - 0.04) * 0.5
        clav = np.clip((0.012 - np.abs(y - cy)) / 0.004, 0, 1) * (sgn * dx > 0.03) * (sgn * dx < 0.25)
        img = img + 0.12 * clav

    # ---- findings -----------------------------------------------------------------------
    lung_h = {s: a.dome - a.apex for s in SIDES}
    zone_y = {"upper": 0.2, "middle": 0.5, "lower": 0.8}

    def zone_center(side: str, zone: str) -> tuple[float, float]:
        return centers[side] + side_sign(side) * 0.1 * a.lung_half, a.apex + zone_y[zone] * lung_h[side]

    for side in findings.pneumothorax:
        # The lung collapses medially: a lateral/apical rim of air with no markings and a pleural line.
        sgn = side_sign(side)
        u = (x - centers[side]) / a.lung_half
        rim = np.clip((sgn * u - 0.35) / 0.05, 0, 1) + np.clip((a.apex + 0.12 - y) / 0.02, 0, 1)
        rim = np.clip(rim, 0, 1) * lung_masks[side]
        marking_field = marking_field * (1 - rim)
        img = img - 0.08 * rim
        line = np.exp(-(((sgn * u - 0.35) / 0.02) ** 2)) * lung_masks[side] * (y > a.apex + 0.12)
        img = img + 0.1 * line

    img = img + marking_field

    if findings.edema:
        haze = sum(_blob(x, y, a.cx + side_sign(s) * 0.13, a.heart_y - 0.12, 0.14, 0.16) for s in SIDES)
        img = img + 0.2 * haze * lungs
        # Septal (Kerley B) lines: short horizontal lines at the lateral lung bases.
        kerley = (np.cos(2 * np.pi * y / 0.012) > 0.85) * (y > a.dome - 0.12)
        lateral = np.zeros_like(img)
        for s in SIDES:
            lateral += np.clip((side_sign(s) * (x - centers[s]) / a.lung_half - 0.6) / 0.1, 0, 1)
        img = img + 0.1 * kerley * lateral * lungs

    for kind, side, zone in sorted(findings.parenchymal):
        zx, zy = zone_center(side, zone)
        mask = lung_masks[side]
        if kind == "atelectasis":  # plate-like: a thin, slightly tilted band
            band = np.exp(-(((y - zy - 0.15 * (x - zx)) / 0.018) ** 2)) * (
                np.abs(x - zx) < 0.55 * a.lung_half
            )
            img = img + 0.3 * band * mask
        else:
            jitter = frng.uniform(-0.02, 0.02, size=(3, 2))
            patch = sum(_blob(x, y, zx + jx, zy + jy, 0.07, 0.06) for jx, jy in jitter) / 3
            strength = 0.38 if kind == "consolidation" else 0.2
            img = img + strength * np.clip(patch * 1.6, 0, 1) * mask

    for kind, side, zone in sorted(findings.lesions):
        zx, zy = zone_center(side, zone)
        zx += frng.uniform(-0.04, 0.04)
        zy += frng.uniform(-0.03, 0.03)
        # Sizes are exaggerated a little so a 64 px tower still sees a nodule (2 px) and a granuloma.
        radius, strength = {"nodule": (0.022, 0.32), "mass": (0.055, 0.38), "granuloma": (0.016, 0.6)}[kind]
        disc = np.clip((radius - np.hypot(x - zx, y - zy)) / 0.004, 0, 1)
        img = img + strength * disc

    for side, grade in findings.effusion:
        # Fluid layers from the diaphragm up with a meniscus rising laterally; it blunts the
        # costophrenic angle (small) or fills the lower half of the hemithorax (large).
        sgn = side_sign(side)
        u = (x - centers[side]) / a.lung_half
        height = (0.09 if grade == 1 else 0.3) * lung_h[side]
        level = domes[side] - height - 0.06 * np.clip(sgn * u, 0, 1) ** 2 * (2 if grade == 2 else 1)
        fluid = np.clip((y - level) / 0.02, 0, 1) * lung_masks[side]  # fluid fills the hemithorax only
        img = img * (1 - fluid) + 0.52 * fluid

    for side in findings.pleural_thickening:
        u = (x - centers[side]) / a.lung_half
        cap = np.clip((a.apex + 0.08 * u**2 + 0.045 - y) / 0.01, 0, 1) * lung_masks[side] * (np.abs(u) < 0.9)
        img = img + 0.18 * cap

    img = _draw_devices(img, x, y, a, findings.devices, frng)

    # Exposure, scatter mottle, quantum noise, then the burn-in.
    img = np.clip(img, 0, 1) ** a.exposure
    img = img + 0.02 * _smooth_noise(rng, size, 12) + rng.normal(0, 0.012, size=img.shape)
    img = np.maximum(np.clip(img, 0, 1), _burn_in(size))
    return img.astype(np.float32)


def _draw_devices(
    img: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    a: Anatomy,
    devices: Iterable[str],
    rng: np.random.Generator,
) -> np.ndarray:
    """Metal and tubing: bright, thin, at their usual places."""
    dx = x - a.cx

    def line(points: list[tuple[float, float]], width: float) -> np.ndarray:
        """A polyline's distance-based mask (S, S)."""
        out = np.zeros_like(img)
        for (x0, y0), (x1, y1) in zip(points[:-1], points[1:], strict=True):
            vx, vy = x1 - x0, y1 - y0
            t = np.clip(((x - x0) * vx + (y - y0) * vy) / (vx * vx + vy * vy), 0, 1)
            d = np.hypot(x - (x0 + t * vx), y - (y0 + t * vy))
            out = np.maximum(out, np.clip((width - d) / (width * 0.5), 0, 1))
        return out

    heart_c = (a.cx + 0.05, a.heart_y)
    for device in sorted(devices):
        if device == "pacemaker":  # generator in the patient's left chest wall, lead into the heart
            gx, gy = a.cx + 0.28, 0.2
            box = (np.abs(x - gx) < 0.045) & (np.abs(y - gy) < 0.03)
            img = np.maximum(img, 0.95 * box)
            img = np.maximum(img, 0.85 * line([(gx - 0.03, gy), (a.cx + 0.02, 0.35), heart_c], 0.005))
        elif device == "sternotomy wires":  # a column of small loops over the midline
            for k in range(6):
                cy = 0.32 + k * 0.055
                ring = np.abs(np.hypot((x - a.cx) / 0.018, (y - cy) / 0.01) - 1) < 0.35
                img = np.maximum(img, 0.9 * ring)
        elif device == "central venous catheter":  # from the right neck down to the SVC
            img = np.maximum(
                img, 0.8 * line([(a.cx - 0.12, 0.05), (a.cx - 0.07, 0.2), (a.cx - 0.03, 0.42)], 0.004)
            )
        elif device == "endotracheal tube":  # midline, tip above the carina
            img = np.maximum(img, 0.8 * line([(a.cx, 0.0), (a.cx, 0.3)], 0.006))
        elif device == "enteric tube":  # midline, through the diaphragm into the stomach (patient left)
            img = np.maximum(img, 0.75 * line([(a.cx - 0.005, 0.0), (a.cx, 0.7), (a.cx + 0.12, 0.88)], 0.004))
        elif device == "chest tube":  # into the right hemithorax towards the apex
            img = np.maximum(
                img, 0.8 * line([(a.cx - 0.42, 0.7), (a.cx - 0.3, 0.6), (a.cx - 0.2, 0.25)], 0.006)
            )
        elif device == "surgical clips":  # a few short dashes near the upper mediastinum
            for _ in range(4):
                cx, cy = a.cx + rng.uniform(-0.08, 0.08), rng.uniform(0.28, 0.42)
                img = np.maximum(img, 0.95 * ((np.abs(x - cx) < 0.008) & (np.abs(y - cy) < 0.003)))
        elif device == "stent":  # a short mesh tube over the left hilum
            mesh = (np.abs(x - (a.cx + 0.08)) < 0.012) & (np.abs(y - 0.45) < 0.035)
            mesh &= (np.cos(2 * np.pi * (x + y) / 0.008) > 0.3) | (np.cos(2 * np.pi * (x - y) / 0.008) > 0.3)
            img = np.maximum(img, 0.85 * mesh)
        elif device == "prosthetic valve":  # a ring in the heart
            ring = np.abs(np.hypot((x - heart_c[0]) / 0.03, (y - heart_c[1]) / 0.022) - 1) < 0.25
            img = np.maximum(img, 0.95 * ring)
        elif device == "hardware":  # a plate and screws along the thoracic spine
            plate = (np.abs(dx) < 0.012) & (y > 0.35) & (y < 0.6)
            screws = (
                (np.abs(np.abs(dx) - 0.02) < 0.012)
                & (np.cos(2 * np.pi * y / 0.06) > 0.9)
                & (y > 0.35)
                & (y < 0.6)
            )
            img = np.maximum(img, 0.95 * (plate | screws))
    return img
