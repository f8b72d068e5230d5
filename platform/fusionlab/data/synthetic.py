"""The procedural synthetic RGB-D benchmark ("synthetic-rgbd"): indoor-like scenes whose labels need both modalities.

Every scene is ray-cast through a pinhole camera (numpy only, vectorised, z-buffered) and rendered to an 8-bit RGB
image, a uint16 depth map in millimetres (0 = missing, as in NYUDv2's raw depth) and a uint8 label map.

Scene layout (camera frame: x right, y down, z forward; sizes in metres, U(a, b) uniform per scene or instance)
    * Camera: level, at height h ~ U(1.1, 1.6) above the floor, focal length 0.81·W·U(0.95, 1.05) pixels (about
      Kinect's 58° horizontal field of view), the horizon at row H·U(0.25, 0.45).
    * ``floor``: the plane y = h below the horizon; its depth h·f / (row − horizon) grows towards the horizon
      (about 2 m at the bottom row), so it has a strong vertical depth gradient and none along a row.
    * ``wall``: one unbounded back wall at U(3.5, 6.5) along its normal, yawed by U(−20°, 20°): a nearly constant,
      far depth with at most a horizontal gradient. It fills the view above (and beyond) the floor.
    * ``rug`` (1–2): a flat rectangle with half-extents U(0.6, 1.1) × U(0.5, 0.9), yawed U(−40°, 40°), lying on
      the visible floor: exactly the floor's geometry.
    * ``box`` (1–3) and ``cabinet`` (1–2): upright cuboids standing on the floor, in view (lateral centre within
      ±80% of the half field of view), front at depth U(near + 0.4, wall − 1.2), yawed U(−35°, 35°), half-extents
      U(0.2, 0.5) wide × U(0.2, 0.4) deep, height U(0.3, min(1.1, h − 0.15)). Both classes draw from the same
      size, position and pose distributions: vertical faces (constant depth down a column) plus a top face seen
      from above, sticking out of the floor plane.
    * ``poster`` (1–3): a flat rectangle on the wall, half-extents U(0.25, 0.6) × U(0.25, 0.45), centre
      U(1.1, 1.9) above the floor: exactly the wall's geometry.
    * ``shelf`` (1–3): a wall-mounted cuboid with the poster's face size and height distributions, protruding
      U(0.25, 0.5) from the wall: nearer than the wall, with depth edges and a visible top or bottom face.
    Footprints of floor objects, and of wall objects, are rejection-sampled not to overlap; occlusion is exact
    (z-buffer). Every pixel is labelled with the surface it sees; the ignore index 255 is declared but never used
    (object boundaries and depth holes keep their true class).

Which cue separates which classes
    * Colour palettes (HSV, one colour per instance, drawn independently per instance and scene):
      ``floor``: hue 15–45°, saturation 0.05–0.35, value 0.25–0.50 (wood, concrete);
      "pale" (``wall`` and ``cabinet``): any hue, saturation 0–0.15, value 0.65–0.95;
      "vivid" (``rug``, ``box``, ``poster`` and ``shelf``): any hue, saturation 0.45–0.95, value 0.30–0.90.
      All surfaces share the same shading, illumination, texture and noise, so a palette is a class's only colour
      statistic.
    * Same colour statistics, different geometry (depth separates them): ``rug`` vs ``box`` (flat on the floor vs
      standing on it), ``poster`` vs ``shelf`` (flat on the wall vs protruding), ``wall`` vs ``cabinet`` (far plane
      vs a cuboid on the floor).
    * Same geometry, different colour statistics (RGB separates them): ``floor`` vs ``rug`` (one plane), ``wall``
      vs ``poster`` (one plane), ``box`` vs ``cabinet`` (one cuboid distribution).
    Every class is ambiguous with another one in each modality alone, and each such pair is separated by the other
    modality.

Appearance model (RGB, values in [0, 1] before 8-bit rounding)
    colour = albedo · shading · illumination + texture + noise. Shading is Lambertian, 0.55 + 0.45·max(0, n·l),
    with a per-scene light direction l from above and in front, so horizontal and vertical faces differ mildly and
    by a scene-dependent amount. Illumination is a per-scene gain U(0.75, 1.15) × a per-channel white balance
    N(1, 0.05) × a linear gradient across the image of slope U(0, 0.5) per image width in a random direction × a
    vignette darkening the corners by up to U(0, 0.25). Texture is one low-frequency value-noise field (cells of
    4 pixels, amplitude ±0.04) shared by all surfaces; sensor noise is Gaussian, σ U(2, 6)/255 per scene.

Depth sensor model (structured light, Kinect-like)
    The true depth z becomes a disparity d = f·b/z (f·b = 43.5 m·px: a 7.5 cm baseline at 580 px); Gaussian noise
    of σ U(0.04, 0.08) px per scene is added to d, which is then quantised to 1/8 px, so both the noise and the
    depth step grow as z² (σ about 1.4 mm at 1 m and 35 mm at 5 m, steps of 3 mm and 72 mm); depth is rounded to
    millimetres. Missing depth (0) comes from: projector shadows (the projector sits 7.5 cm to the camera's left,
    so the far pixels just right of a near surface's right edge are unlit: pixel u is dropped when pixel u − k is
    at least k pixels of image disparity nearer), readings outside 0.5–9.5 m, low-frequency dropout blobs covering
    U(0, 4)% of the image, and 0.2% isolated pixels.

Determinism: sample k of a split is rendered from ``np.random.default_rng([seed, split_code, k])`` (train 0, val 1,
test 2), so it does not depend on the other splits' sizes; the same arguments give byte-identical shards.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from rich.progress import track

from .manifest import DatasetError, LabelSpec, Manifest, depth_mm_spec, rgb_spec
from .sample import Sample
from .writer import DatasetWriter

GENERATOR_VERSION = 1
DATASET_NAME = "synthetic-rgbd"
SYNTHETIC_CLASSES: tuple[str, ...] = ("floor", "wall", "rug", "box", "cabinet", "poster", "shelf")
IGNORE_INDEX = 255
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}

FLOOR, WALL, RUG, BOX, CABINET, POSTER, SHELF = range(len(SYNTHETIC_CLASSES))
_FB = 0.075 * 580.0  # Kinect-like focal length x baseline (m * px) of the disparity model
_BASELINE = 0.075  # m, projector to the camera's left (shadows fall right of near edges)
_MIN_RANGE, _MAX_RANGE = 0.5, 9.5  # m


class _Canvas:
    """Z-buffer over one image: nearest depth, label, albedo and surface normal per pixel."""

    def __init__(self, height: int, width: int, focal: float, horizon: float):
        self.dx = ((np.arange(width) + 0.5 - width / 2) / focal)[None, :].repeat(height, 0)
        self.dy = ((np.arange(height) + 0.5 - horizon) / focal)[:, None].repeat(width, 1)
        self.depth = np.full((height, width), np.inf)
        self.label = np.zeros((height, width), np.uint8)
        self.albedo = np.zeros((height, width, 3))
        self.normal = np.zeros((height, width, 3))

    def plane(self, normal: np.ndarray, offset: float) -> tuple[np.ndarray, np.ndarray]:
        """Depth z of the plane normal·P = offset along every pixel's ray (inf where not hit in front) and P."""
        denom = normal[0] * self.dx + normal[1] * self.dy + normal[2]
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(np.abs(denom) > 1e-9, offset / denom, np.inf)
        z = np.where(z > 1e-3, z, np.inf)
        finite = np.where(np.isfinite(z), z, 0.0)
        return z, np.stack([finite * self.dx, finite * self.dy, finite], axis=-1)

    def paint(self, z: np.ndarray, mask: np.ndarray, label: int, albedo: np.ndarray, normal: np.ndarray) -> None:
        hit = mask & (z < self.depth)
        self.depth[hit] = z[hit]
        self.label[hit] = label
        self.albedo[hit] = albedo
        self.normal[hit] = normal  # the normal on the camera's side of the face

    def cuboid(self, centre: np.ndarray, yaw: float, half: tuple[float, float], y_range: tuple[float, float],
               label: int, albedo: np.ndarray) -> None:
        """An upright cuboid: centre (x, z) of its footprint, yaw about y, half-extents (lateral, depth) and its
        vertical extent y_top < y_bottom (y points down)."""
        e1 = np.array([math.cos(yaw), 0.0, math.sin(yaw)])  # lateral axis
        e3 = np.array([-math.sin(yaw), 0.0, math.cos(yaw)])  # depth axis
        c = np.array([centre[0], 0.0, centre[1]])
        y_top, y_bottom = y_range
        faces = [(e3, e3 @ c - half[1]), (e3, e3 @ c + half[1]), (e1, e1 @ c - half[0]), (e1, e1 @ c + half[0]),
                 (np.array([0.0, 1.0, 0.0]), y_top), (np.array([0.0, 1.0, 0.0]), y_bottom)]
        eps = 1e-6
        for normal, offset in faces:
            z, p = self.plane(normal, offset)
            rel = p - c
            s, t = rel @ e1, rel @ e3
            inside = ((np.abs(s) <= half[0] + eps) & (np.abs(t) <= half[1] + eps)
                      & (p[..., 1] >= y_top - eps) & (p[..., 1] <= y_bottom + eps) & np.isfinite(z))
            seen = self._facing(normal, offset)
            self.paint(z, inside, label, albedo, seen)

    @staticmethod
    def _facing(normal: np.ndarray, offset: float) -> np.ndarray:
        """The face normal on the camera's side: the camera (the origin, n·0 = 0) is on the n·P < offset side when
        offset > 0."""
        return -normal if offset > 0 else normal


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6.0) % 6
    f = h * 6.0 - math.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])


def _palette(rng: np.random.Generator, name: str) -> np.ndarray:
    if name == "floor":
        return _hsv_to_rgb(rng.uniform(15, 45) / 360, rng.uniform(0.05, 0.35), rng.uniform(0.25, 0.5))
    if name == "pale":
        return _hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.0, 0.15), rng.uniform(0.65, 0.95))
    return _hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.45, 0.95), rng.uniform(0.3, 0.9))  # vivid


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cells: tuple[int, int]) -> np.ndarray:
    """Bilinearly upsampled uniform noise on a coarse grid: a cheap low-frequency field in [0, 1]."""
    grid = rng.random((cells[0] + 1, cells[1] + 1))
    ys = np.linspace(0, cells[0], height, endpoint=False) + cells[0] / height / 2
    xs = np.linspace(0, cells[1], width, endpoint=False) + cells[1] / width / 2
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    y1, x1 = np.minimum(y0 + 1, cells[0]), np.minimum(x0 + 1, cells[1])
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x1] * fx
    bottom = grid[y1][:, x0] * (1 - fx) + grid[y1][:, x1] * fx
    return top * (1 - fy) + bottom * fy


def _place(rng: np.random.Generator, placed: list[tuple[float, float, float]], sample, tries: int = 20):
    """Rejection-sample a (position, radius) that does not overlap the already placed discs; None if none fits."""
    for _ in range(tries):
        a, b, radius = sample()
        if all((a - pa) ** 2 + (b - pb) ** 2 >= (radius + pr) ** 2 for pa, pb, pr in placed):
            placed.append((a, b, radius))
            return a, b
    return None


def render_scene(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One procedural scene: ``(rgb uint8 [H, W, 3], depth uint16 [H, W] in mm, 0 = missing, label uint8 [H, W])``.

    The generative rules are in this module's docstring.
    """
    focal = 0.81 * width * rng.uniform(0.95, 1.05)
    horizon = height * rng.uniform(0.25, 0.45)
    cam_h = rng.uniform(1.1, 1.6)
    wall_dist = rng.uniform(3.5, 6.5)
    wall_yaw = math.radians(rng.uniform(-20, 20))
    canvas = _Canvas(height, width, focal, horizon)
    half_fov = (width / 2) / focal

    # floor and wall
    up = np.array([0.0, -1.0, 0.0])
    z, _ = canvas.plane(np.array([0.0, 1.0, 0.0]), cam_h)
    canvas.paint(z, np.isfinite(z), FLOOR, _palette(rng, "floor"), up)
    w1 = np.array([math.cos(wall_yaw), 0.0, math.sin(wall_yaw)])
    w3 = np.array([-math.sin(wall_yaw), 0.0, math.cos(wall_yaw)])
    z, _ = canvas.plane(w3, wall_dist)
    canvas.paint(z, np.isfinite(z), WALL, _palette(rng, "pale"), -w3)
    near = cam_h * focal / (height - horizon)  # floor depth at the bottom row

    def wall_depth_at(x: float) -> float:  # depth of the wall along the floor direction at lateral position x
        return (wall_dist + math.sin(wall_yaw) * x) / math.cos(wall_yaw)

    # floor objects: boxes and cabinets share every geometric distribution; rugs lie flat
    footprints: list[tuple[float, float, float]] = []
    kinds = [BOX] * int(rng.integers(1, 4)) + [CABINET] * int(rng.integers(1, 3))
    kinds = [kinds[i] for i in rng.permutation(len(kinds))]
    for kind in kinds:
        half = (rng.uniform(0.2, 0.5), rng.uniform(0.2, 0.4))
        tall = rng.uniform(0.3, min(1.1, cam_h - 0.15))
        yaw = math.radians(rng.uniform(-35, 35))
        albedo = _palette(rng, "vivid" if kind == BOX else "pale")

        def sample_floor_spot(half=half):
            zc = rng.uniform(near + 0.4, max(near + 0.5, wall_dist - 1.2)) + half[1]
            xc = rng.uniform(-0.8, 0.8) * half_fov * zc
            return xc, zc, math.hypot(*half)

        spot = _place(rng, footprints, sample_floor_spot)
        if spot is None or spot[1] + half[1] >= wall_depth_at(spot[0]) - 0.1:
            continue
        canvas.cuboid(np.array(spot), yaw, half, (cam_h - tall, cam_h), kind, albedo)

    # rugs: decals on the visible floor, in floor coordinates; `points` are the visible surface points
    points = np.stack([canvas.depth * canvas.dx, canvas.depth * canvas.dy, canvas.depth], axis=-1)
    for _ in range(int(rng.integers(1, 3))):
        half = (rng.uniform(0.6, 1.1), rng.uniform(0.5, 0.9))
        zc = rng.uniform(near + 0.3, max(near + 0.4, wall_dist - 0.8))
        xc = rng.uniform(-0.7, 0.7) * half_fov * zc
        yaw = math.radians(rng.uniform(-40, 40))
        s = (points[..., 0] - xc) * math.cos(yaw) + (points[..., 2] - zc) * math.sin(yaw)
        t = -(points[..., 0] - xc) * math.sin(yaw) + (points[..., 2] - zc) * math.cos(yaw)
        mask = (canvas.label == FLOOR) & (np.abs(s) <= half[0]) & (np.abs(t) <= half[1])
        canvas.label[mask] = RUG
        canvas.albedo[mask] = _palette(rng, "vivid")

    # wall objects: posters (decals) and shelves (cuboids protruding from the wall) share size distributions
    wall_spots: list[tuple[float, float, float]] = []
    kinds = [POSTER] * int(rng.integers(1, 4)) + [SHELF] * int(rng.integers(1, 4))
    kinds = [kinds[i] for i in rng.permutation(len(kinds))]
    lateral_extent = 0.8 * half_fov * wall_dist
    for kind in kinds:
        half = (rng.uniform(0.25, 0.6), rng.uniform(0.25, 0.45))  # (lateral, vertical)
        albedo = _palette(rng, "vivid")

        def sample_wall_spot(half=half):
            return (rng.uniform(-lateral_extent, lateral_extent), rng.uniform(1.1, 1.9), math.hypot(*half))

        spot = _place(rng, wall_spots, sample_wall_spot)
        if spot is None:
            continue
        lateral, above_floor = spot
        y_range = (cam_h - above_floor - half[1], cam_h - above_floor + half[1])
        if kind == POSTER:
            s = points @ w1  # wall pixels keep their depth: shelves only cover them
            mask = ((canvas.label == WALL) & (np.abs(s - lateral) <= half[0]) & (points[..., 1] >= y_range[0])
                    & (points[..., 1] <= y_range[1]))
            canvas.label[mask] = POSTER
            canvas.albedo[mask] = albedo
        else:
            protrude = rng.uniform(0.25, 0.5)
            centre = lateral * w1 + (wall_dist - protrude / 2) * w3
            canvas.cuboid(np.array([centre[0], centre[2]]), wall_yaw, (half[0], protrude / 2), y_range, SHELF,
                          albedo)

    rgb = _shade(rng, canvas)
    depth = _sense_depth(rng, canvas.depth, focal)
    return rgb, depth, canvas.label.copy()


def _shade(rng: np.random.Generator, canvas: _Canvas) -> np.ndarray:
    height, width = canvas.label.shape
    light = np.array([rng.uniform(-0.5, 0.5), -rng.uniform(0.4, 1.0), -rng.uniform(0.3, 1.0)])
    light /= np.linalg.norm(light)
    shading = 0.55 + 0.45 * np.clip(canvas.normal @ light, 0.0, 1.0)
    gain = rng.uniform(0.75, 1.15) * rng.normal(1.0, 0.05, size=3)
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:height, 0:width]
    u, v = (xx + 0.5) / width - 0.5, (yy + 0.5) / height - 0.5
    gradient = 1.0 + rng.uniform(0, 0.5) * (u * math.cos(angle) + v * math.sin(angle))
    vignette = 1.0 - rng.uniform(0, 0.25) * (u**2 + v**2) / 0.5
    illumination = (gradient * vignette)[..., None] * gain
    texture = (_smooth_noise(rng, height, width, (max(2, height // 4), max(2, width // 4))) - 0.5) * 0.08
    rgb = canvas.albedo * shading[..., None] * illumination + texture[..., None]
    rgb += rng.normal(0.0, rng.uniform(2, 6) / 255, size=rgb.shape)
    return np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)


def _sense_depth(rng: np.random.Generator, true_depth: np.ndarray, focal: float) -> np.ndarray:
    width = true_depth.shape[1]
    disparity = _FB / true_depth
    disparity = disparity + rng.normal(0.0, rng.uniform(0.04, 0.08), size=disparity.shape)
    disparity = np.round(disparity * 8) / 8
    with np.errstate(divide="ignore"):
        depth = np.where(disparity > 0, _FB / np.maximum(disparity, 1e-9), np.inf)
    missing = (depth < _MIN_RANGE) | (depth > _MAX_RANGE) | ~np.isfinite(true_depth)
    # projector shadows (projector to the camera's left): pixel u is hidden from the projector by a nearer pixel
    # u' = u - k when their image disparities differ by at least k pixels
    img_disp = focal * _BASELINE / true_depth
    for k in range(1, int(math.ceil(focal * _BASELINE / _MIN_RANGE)) + 1):
        if k >= width:
            break
        shifted = np.full_like(img_disp, -np.inf)
        shifted[:, k:] = img_disp[:, :-k]
        missing |= shifted - img_disp >= k
    blobs = _smooth_noise(rng, *true_depth.shape, (6, 8))
    missing |= blobs < np.quantile(blobs, rng.uniform(0, 0.04))
    missing |= rng.random(true_depth.shape) < 0.002
    depth_mm = np.clip(np.rint(np.where(missing, 0.0, depth * 1000.0)), 0, 65535)
    return depth_mm.astype(np.uint16)


def check_generator_arguments(counts: dict[str, int], size: tuple[int, int], seed: int) -> None:
    """A generator's sample counts are integers >= 0 (0 leaves the split out), its size two positive integers and
    its seed an integer >= 0; else a DatasetError naming the argument and value."""
    for split, count in counts.items():
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise DatasetError(f"{split}: a number of samples is an integer >= 0, got {count!r}")
    if not sum(counts.values()):
        raise DatasetError(f"no samples to write: train, val and test are all 0 ({counts})")
    if len(size) != 2 or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in size):
        raise DatasetError(f"size: expected (height, width), positive integers, got {size!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise DatasetError(f"seed: expected an integer >= 0, got {seed!r}")


def write_synthetic(out: Path, *, train: int = 64, val: int = 16, test: int = 16, size: tuple[int, int] = (120, 160),
                    seed: int = 0, overwrite: bool = False) -> Manifest:
    """Write the synthetic-rgbd dataset (splits train/val/test) to ``out``; returns the written manifest."""
    counts = {"train": train, "val": val, "test": test}
    check_generator_arguments(counts, tuple(size), seed)
    height, width = size
    manifest = Manifest(
        name=DATASET_NAME, task="segmentation", modalities={"rgb": rgb_spec(), "depth": depth_mm_spec()},
        label=LabelSpec(SYNTHETIC_CLASSES, ignore_index=IGNORE_INDEX),
        source={"generator": "fusionlab.data.synthetic", "version": GENERATOR_VERSION, "seed": seed,
                "size": [height, width], "samples": counts})

    def samples():
        for split, count in counts.items():
            for index in range(count):
                rng = np.random.default_rng([seed, SPLIT_CODES[split], index])
                rgb, depth, label = render_scene(rng, height, width)
                yield Sample(f"{split}-{index:05d}", split, {"rgb": rgb, "depth": depth}, label)

    with DatasetWriter(out, manifest, overwrite=overwrite) as writer:
        for sample in track(samples(), total=sum(counts.values()), description=f"generating {DATASET_NAME}",
                            transient=True):
            writer.write(sample)
    return writer.manifest
