"""Render a scene into one scan: proton-density fat-suppressed contrast, thick-slice partial volume,
tissue texture, a smooth bias field and Rician noise.

The implicit shapes are evaluated at the scan's own voxel positions in physical space: every voxel is
supersampled along the through-plane axis (and, for coarse presets, in-plane), the tissue painted at each
sample is turned into a signal and the samples are averaged (partial volume). The label of a voxel is the
majority label among its samples. Evaluation runs in chunks (one slice by one in-plane tile) and skips
every shape whose bounding box misses the chunk; all work inside a chunk is vectorised numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from orthodiff_auto.data.image_io import ImageGeometry
from orthodiff_auto.synthetic.scene import TISSUES, Ctx, Scene
from orthodiff_auto.synthetic.spec import SiteProfile, noise_snr

# Proton-density fat-suppressed signal (3T reference, arbitrary units) and texture amplitude per tissue.
BASE_INTENSITY: dict[str, float] = {
    "air": 0.0, "skin": 200.0, "fat": 105.0, "muscle": 255.0, "fluid": 950.0, "tear_fluid": 880.0,
    "marrow": 140.0, "cortex": 15.0, "physeal_scar": 55.0, "femoral_cartilage": 440.0,
    "tibial_cartilage": 410.0, "patellar_cartilage": 470.0, "meniscus": 18.0, "ligament": 25.0,
    "acl": 70.0, "tendon": 22.0, "artery": 40.0, "vein": 420.0,
    # tissues of the ankle and shoulder: hyaline cartilage, the glenoid labrum (fibrocartilage, dark like a
    # meniscus), bone-marrow oedema, tendinosis (thickened, intermediate signal) and synovitis
    "cartilage": 430.0, "labrum": 18.0, "edema": 380.0, "tendinosis": 190.0, "synovitis": 330.0,
}
TEXTURE: dict[str, float] = {
    "air": 0.0, "skin": 0.1, "fat": 0.14, "muscle": 0.08, "fluid": 0.03, "tear_fluid": 0.05, "marrow": 0.14,
    "cortex": 0.2, "physeal_scar": 0.1, "femoral_cartilage": 0.05, "tibial_cartilage": 0.05,
    "patellar_cartilage": 0.05, "meniscus": 0.2, "ligament": 0.2, "acl": 0.25, "tendon": 0.2, "artery": 0.2,
    "vein": 0.08, "cartilage": 0.05, "labrum": 0.2, "edema": 0.15, "tendinosis": 0.25, "synovitis": 0.15,
}
# Which site contrast multiplier applies to which tissue.
CONTRAST_GROUP: dict[str, str] = {
    "fluid": "fluid", "tear_fluid": "fluid", "fat": "fat", "marrow": "marrow", "physeal_scar": "marrow",
    "muscle": "muscle", "skin": "skin", "femoral_cartilage": "cartilage", "tibial_cartilage": "cartilage",
    "patellar_cartilage": "cartilage", "cartilage": "cartilage",
}
TEXTURE_SIGMA_MM = 1.5


def tissue_table(site: SiteProfile, jitter: np.ndarray) -> np.ndarray:
    """Signal per tissue code for a site, times a per-case jitter (one factor per tissue)."""
    values = []
    for i, name in enumerate(TISSUES):
        mult = site.contrast.get(CONTRAST_GROUP.get(name, name), 1.0)
        values.append(BASE_INTENSITY[name] * mult * float(jitter[i]))
    return np.asarray(values, dtype=np.float32)


TEXTURE_TABLE = np.asarray([TEXTURE[name] for name in TISSUES], dtype=np.float32)


@dataclass
class RenderSettings:
    sub_through: int  # samples per voxel along the slice normal
    sub_inplane: int  # samples per voxel along each in-plane axis
    tile: int  # in-plane tile size (voxels)


def render_anatomy(scene: Scene, geometry: ImageGeometry, settings: RenderSettings, table: np.ndarray):
    """Noise-free signal, texture amplitude and majority labels on the scan grid.

    Returns (signal float32, texture amplitude float32, label uint8), each of ``geometry.shape``.
    """
    anatomy = scene.anatomy
    nk, nj, ni = geometry.shape
    sk, sj, si = geometry.spacing
    d = geometry.direction_matrix
    rot = anatomy.rotation  # world = center + rot @ q
    origin_q = rot.T @ (np.asarray(geometry.origin) - anatomy.center)
    e_i = rot.T @ d[:, 0] * si
    e_j = rot.T @ d[:, 1] * sj
    e_k = rot.T @ d[:, 2] * sk
    n_t, m = settings.sub_through, settings.sub_inplane
    off_t = ((np.arange(n_t) + 0.5) / n_t - 0.5).astype(np.float64)
    off_m = ((np.arange(m) + 0.5) / m - 0.5).astype(np.float64)
    signal = np.zeros(geometry.shape, dtype=np.float32)
    amp = np.zeros(geometry.shape, dtype=np.float32)
    label = np.zeros(geometry.shape, dtype=np.uint8)
    tile = settings.tile
    for k in range(nk):
        kk = k + off_t
        for j0 in range(0, nj, tile):
            j1 = min(nj, j0 + tile)
            jj = (np.arange(j0, j1)[:, None] + off_m[None, :]).reshape(-1)
            for i0 in range(0, ni, tile):
                i1 = min(ni, i0 + tile)
                ii = (np.arange(i0, i1)[:, None] + off_m[None, :]).reshape(-1)
                q = (origin_q[:, None, None, None]
                     + e_k[:, None, None, None] * kk[None, :, None, None]
                     + e_j[:, None, None, None] * jj[None, None, :, None]
                     + e_i[:, None, None, None] * ii[None, None, None, :])
                q = q.reshape(3, -1).astype(np.float32)
                tissue, lab = paint(scene, q)
                shape5 = (n_t, j1 - j0, m, i1 - i0, m)
                signal[k, j0:j1, i0:i1] = table[tissue].reshape(shape5).mean(axis=(0, 2, 4))
                amp[k, j0:j1, i0:i1] = TEXTURE_TABLE[tissue].reshape(shape5).mean(axis=(0, 2, 4))
                label[k, j0:j1, i0:i1] = majority(lab.reshape(shape5))
    return signal, amp, label


def paint(scene: Scene, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tissue and label code at each joint-frame point (3, n): layers painted in order, later ones win."""
    ctx = Ctx(scene, q)
    n = q.shape[1]
    tissue = np.zeros(n, dtype=np.uint8)
    lab = np.zeros(n, dtype=np.uint8)
    for layer in scene.layers:
        mask = layer.mask(ctx)
        if mask is None:
            continue
        tissue[mask] = layer.tissue
        lab[mask] = layer.label
    return tissue, lab


def majority(lab5: np.ndarray) -> np.ndarray:
    """Most frequent label over the sample axes (0, 2, 4) of a (t, J, m, I, m) array; ties -> lower value."""
    n_t, nj, m, ni, _ = lab5.shape
    flat = lab5.transpose(1, 3, 0, 2, 4).reshape(nj, ni, -1)
    present = np.flatnonzero(np.bincount(lab5.reshape(-1)))
    if len(present) == 1:
        return np.full((nj, ni), present[0], dtype=np.uint8)
    counts = np.stack([(flat == v).sum(axis=-1) for v in present], axis=-1)
    return present[np.argmax(counts, axis=-1)].astype(np.uint8)


def mr_effects(
    signal: np.ndarray,
    amp: np.ndarray,
    geometry: ImageGeometry,
    site: SiteProfile,
    rng: np.random.Generator,
    noise: bool = True,
    fluid_level: float = 950.0,
) -> tuple[np.ndarray, float]:
    """Texture, bias field, scanner gain and Rician noise. Random draws come in a fixed order, with the
    noise last, so a noise-free rendering of the same scan matches its noisy one in everything else.
    Returns (image float32, the Rician noise sigma of the image, whether or not noise was added)."""
    shape = geometry.shape
    # Bias field: exp of a random low-order polynomial of the position relative to the scan centre.
    coef_lin = rng.normal(0.0, site.bias_strength, size=3)
    coef_quad = rng.normal(0.0, 0.5 * site.bias_strength, size=6)
    gain = float(np.exp(rng.normal(0.0, 0.25)))
    sigma = fluid_level / noise_snr(site, geometry.spacing) * float(rng.uniform(0.9, 1.1))
    texture = rng.standard_normal(shape).astype(np.float32)
    texture = gaussian_filter(texture, sigma=[TEXTURE_SIGMA_MM / s for s in geometry.spacing], mode="reflect")
    texture /= max(float(texture.std()), 1e-6)
    img = signal * np.clip(1.0 + amp * texture, 0.2, None)
    img *= bias_field(geometry, coef_lin, coef_quad)
    img *= gain
    s = sigma * gain
    if noise:
        n1 = rng.standard_normal(shape).astype(np.float32)
        n2 = rng.standard_normal(shape).astype(np.float32)
        img = np.sqrt((img + s * n1) ** 2 + (s * n2) ** 2)
    return img.astype(np.float32, copy=False), float(s)


def bias_field(geometry: ImageGeometry, coef_lin: np.ndarray, coef_quad: np.ndarray) -> np.ndarray:
    """exp of a quadratic polynomial of the world offset from the scan centre (/80 mm). The offset is a rigid
    turn of the scan's own axes, so the polynomial is rewritten in those axes and summed from 1D and 2D
    pieces (no 3D coordinate arrays)."""
    d = geometry.direction_matrix
    nk, nj, ni = geometry.shape
    sk, sj, si = geometry.spacing
    c = [(np.arange(n) - (n - 1) / 2.0) * s / 80.0 for n, s in ((ni, si), (nj, sj), (nk, sk))]  # i, j, k
    q = coef_quad
    quad = np.array([[q[0], q[3] / 2, q[4] / 2], [q[3] / 2, q[1], q[5] / 2], [q[4] / 2, q[5] / 2, q[2]]])
    lin_s = d.T @ np.asarray(coef_lin, dtype=float)  # the polynomial in scan axes (i, j, k)
    quad_s = d.T @ quad @ d
    f = [lin_s[a] * c[a] + quad_s[a, a] * c[a] ** 2 for a in range(3)]
    ci, cj, ck = c
    plane_ji = f[0][None, :] + f[1][:, None] + 2.0 * quad_s[0, 1] * cj[:, None] * ci[None, :]
    log_b = (plane_ji[None, :, :].astype(np.float32)
             + (f[2] + 0.0)[:, None, None].astype(np.float32)
             + (2.0 * quad_s[0, 2] * ck[:, None] * ci[None, :])[:, None, :].astype(np.float32)
             + (2.0 * quad_s[1, 2] * ck[:, None] * cj[None, :])[:, :, None].astype(np.float32))
    return np.exp(log_b, out=log_b)
