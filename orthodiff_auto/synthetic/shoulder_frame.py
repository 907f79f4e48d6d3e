"""The shoulder's rigid frames and the coordinates about the humeral head that its cuff, labrum, cartilage and
their tears are described in (``shoulder_anatomy``, ``shoulder_findings``)."""

from __future__ import annotations

import numpy as np

from orthodiff_auto.synthetic.geometry import rotation
from orthodiff_auto.synthetic.scene import Ctx, Scene
from orthodiff_auto.synthetic.shoulder import scapular_axes

LABRUM_HEIGHT = 3.5  # mm above the glenoid's face at the rim


def add_frames(sc: Scene) -> None:
    """The scapula's frame (the scapular plane) and the humerus' (turned by the humeral rotation); both turn
    about axes through the head's centre, the joint frame's origin."""
    x_s, y_s, z_s = scapular_axes(sc.anatomy)
    sc.add_frame("scapula", np.stack([x_s, y_s, z_s]), np.zeros(3))
    r_hum = rotation(2, sc.anatomy.pose["humeral_rotation"])  # humerus -> joint
    sc.add_frame("humerus", r_hum.T, np.zeros(3))


def head_coords(sc: Scene, ctx: Ctx) -> dict[str, np.ndarray] | None:
    """Spherical coordinates about the head's centre in the scapula frame (cached per chunk), or None far from
    the head: r, the unit direction (nx, ny, nz), phi (degrees about the scapular axis, 0 superior, +90
    posterior) and the glenoid's elliptic angle e (1 at its rim)."""
    if "head" in ctx.cache:
        return ctx.cache["head"]
    p = sc.anatomy.p
    reach = p["glenoid_r"] + 16.0
    if not ctx.near(-np.full(3, reach), np.full(3, reach)):
        ctx.cache["head"] = None
        return None
    x, y, z = ctx.coords("scapula")
    r = np.sqrt(x * x + y * y + z * z) + 1e-6
    nx, ny, nz = x / r, y / r, z / r
    sy, sz = (h / p["glenoid_r"] for h in p["glenoid_half"])
    out = dict(r=r, nx=nx, ny=ny, nz=nz, phi=np.degrees(np.arctan2(ny, nz)),
               e=np.sqrt((ny / sy) ** 2 + (nz / sz) ** 2))
    ctx.cache["head"] = out
    return out
