"""Vectorised implicit shapes (approximate signed distances, mm) evaluated on point arrays.

Every function takes coordinates as three float32 arrays ``u, v, w`` of the same shape (one entry per
point) and returns an array of the same shape: negative inside, positive outside, roughly the distance to
the surface near it (exact for spheres, capsules and planes; a good first-order estimate for ellipsoids
and smooth unions). No Python loops over points.
"""

from __future__ import annotations

import numpy as np


def ellipsoid(u, v, w, center, radii):
    """Inigo Quilez' distance estimate for an axis-aligned ellipsoid (good near the surface)."""
    cu, cv, cw = (float(x) for x in center)  # Python floats keep float32 arrays float32
    iu, iv, iw = (1.0 / float(x) ** 2 for x in radii)
    du, dv, dw = u - cu, v - cv, w - cw
    du *= du
    dv *= dv
    dw *= dw
    k0sq = du * iu + dv * iv + dw * iw
    k1 = np.sqrt(du * (iu * iu) + dv * (iv * iv) + dw * (iw * iw))
    k0 = np.sqrt(k0sq)
    k0sq -= k0
    np.maximum(k1, 1e-6, out=k1)
    k0sq /= k1
    return k0sq


def capsule(u, v, w, a, b, radius):
    """Distance to the segment a-b minus the radius."""
    a0, a1, a2 = (float(x) for x in a)
    b0, b1, b2 = (float(x) - y for x, y in zip(b, (a0, a1, a2)))
    denom = b0 * b0 + b1 * b1 + b2 * b2
    pu, pv, pw = u - a0, v - a1, w - a2
    t = np.clip((pu * b0 + pv * b1 + pw * b2) * (1.0 / denom), 0.0, 1.0)
    return np.sqrt((pu - t * b0) ** 2 + (pv - t * b1) ** 2 + (pw - t * b2) ** 2) - float(radius)


def elliptic_cylinder_w(u, v, center_uv, radii_uv):
    """Infinite cylinder along w with an elliptic cross-section (distance estimate in the u-v plane)."""
    du = (u - float(center_uv[0])) / float(radii_uv[0])
    dv = (v - float(center_uv[1])) / float(radii_uv[1])
    return (np.sqrt(du * du + dv * dv) - 1.0) * float(min(radii_uv))


def smin(a, b, k):
    """Polynomial smooth minimum (smooth union) with blending width k (mm)."""
    h = np.maximum(k - np.abs(a - b), 0.0) / k
    return np.minimum(a, b) - h * h * k * 0.25


def smax(a, b, k):
    """Smooth maximum (smooth intersection / subtraction)."""
    return -smin(-a, -b, k)


def orthonormal_frame(axis, hint):
    """(a, b, c): a along ``axis``; b the part of ``hint`` perpendicular to a; c = a x b."""
    a = np.asarray(axis, dtype=float)
    a = a / np.linalg.norm(a)
    h = np.asarray(hint, dtype=float)
    b = h - (h @ a) * a
    n = np.linalg.norm(b)
    if n < 1e-6:  # hint parallel to the axis: pick any perpendicular
        b = np.cross(a, [0.0, 0.0, 1.0] if abs(a[2]) < 0.9 else [1.0, 0.0, 0.0])
        n = np.linalg.norm(b)
    b = b / n
    return a, b, np.cross(a, b)


class Band:
    """A ligament/tendon: a straight strand from ``p0`` to ``p1`` with an elliptic cross-section.

    ``width`` runs along ``width_hint`` (made perpendicular to the axis), ``thickness`` across it. The
    local coordinates (t along the axis from p0 in mm, s across the width, r across the thickness) let
    findings cut the band (a tear is a slab ``|t - t0| < gap/2``).
    """

    def __init__(self, p0, p1, width, thickness, width_hint, width1=None, thickness1=None, flat: bool = True):
        self.flat = flat
        self.p0 = np.asarray(p0, dtype=float)
        self.p1 = np.asarray(p1, dtype=float)
        self.length = float(np.linalg.norm(self.p1 - self.p0))
        self.a, self.b, self.c = orthonormal_frame(self.p1 - self.p0, width_hint)
        self.width0, self.width1 = float(width), float(width if width1 is None else width1)
        self.thick0, self.thick1 = float(thickness), float(thickness if thickness1 is None else thickness1)

    def local(self, u, v, w):
        p0, a, b, c = (tuple(float(x) for x in vec) for vec in (self.p0, self.a, self.b, self.c))
        du, dv, dw = u - p0[0], v - p0[1], w - p0[2]
        t = du * a[0] + dv * a[1] + dw * a[2]
        s = du * b[0] + dv * b[1] + dw * b[2]
        r = du * c[0] + dv * c[1] + dw * c[2]
        return t, s, r

    def distance(self, u, v, w, inflate: float = 0.0):
        t, s, r = self.local(u, v, w)
        f = np.clip(t / self.length, 0.0, 1.0)
        hw = 0.5 * (self.width0 + f * (self.width1 - self.width0)) + inflate
        ht = 0.5 * (self.thick0 + f * (self.thick1 - self.thick0)) + inflate
        a, b = (s / hw) ** 2, (r / ht) ** 2
        if self.flat:  # superellipse of order 4: a band with flat faces and rounded edges
            rho = np.sqrt(np.sqrt(a * a + b * b))
        else:
            rho = np.sqrt(a + b)
        cross = (rho - 1.0) * np.minimum(hw, ht)
        along = np.abs(t - 0.5 * self.length) - (0.5 * self.length + inflate)
        return np.maximum(cross, along)

    def bbox(self, margin: float = 0.0):
        half = 0.5 * max(self.width0, self.width1, self.thick0, self.thick1) + margin
        lo = np.minimum(self.p0, self.p1) - half
        hi = np.maximum(self.p0, self.p1) + half
        return lo, hi


class Compound:
    """A shape built from primitives by (smooth) unions and subtractions, evaluated with culling.

    Primitives whose bounding box lies farther than ``skip`` mm from the points' bounding box are left out:
    they cannot change the field where it is below ``skip - k`` (callers compare the field against
    thresholds well below that). Where every primitive is left out the field is ``far`` everywhere.
    """

    def __init__(self, skip: float = 25.0, far: float = 1e4):
        self.items: list[tuple[str, object, np.ndarray, np.ndarray, float]] = []
        self.skip = skip
        self.far = far

    def add(self, op: str, fn, lo, hi, k: float = 0.0) -> "Compound":
        assert op in ("union", "subtract")
        self.items.append((op, fn, np.asarray(lo, dtype=float), np.asarray(hi, dtype=float), float(k)))
        return self

    def ellipsoid(self, center, radii, k: float = 0.0, op: str = "union") -> "Compound":
        c, r = np.asarray(center, dtype=float), np.asarray(radii, dtype=float)
        return self.add(op, lambda u, v, w: ellipsoid(u, v, w, c, r), c - r, c + r, k)

    def capsule(self, a, b, radius: float, k: float = 0.0, op: str = "union") -> "Compound":
        a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        return self.add(op, lambda u, v, w: capsule(u, v, w, a, b, radius), np.minimum(a, b) - radius,
                        np.maximum(a, b) + radius, k)

    def bbox(self):
        los = [lo for op, _, lo, _, _ in self.items if op == "union"]
        his = [hi for op, _, _, hi, _ in self.items if op == "union"]
        return np.min(los, axis=0), np.max(his, axis=0)

    def __call__(self, u, v, w):
        plo = np.array([u.min(), v.min(), w.min()])
        phi = np.array([u.max(), v.max(), w.max()])
        d = None
        for op, fn, lo, hi, k in self.items:
            gap = np.maximum(0.0, np.maximum(lo - phi, plo - hi))
            if float(np.sqrt((gap * gap).sum())) > self.skip + k:
                continue
            x = fn(u, v, w)
            if op == "union":
                d = x if d is None else (smin(d, x, k) if k > 0 else np.minimum(d, x))
            elif d is not None:
                d = smax(d, -x, k) if k > 0 else np.maximum(d, -x)
        if d is None:
            return np.full(u.shape, self.far, dtype=np.float32)
        return d
