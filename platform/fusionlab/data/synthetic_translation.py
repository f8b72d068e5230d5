"""The procedural synthetic translation benchmark ("synthetic-translation"): Taskonomy-like domains -> RGB.

The CPU stand-in for Taskonomy multi-domain -> RGB translation. Every scene is ray-cast through a pinhole camera
(numpy only, vectorised, z-buffered; the floor, wall and cuboids reuse :mod:`fusionlab.data.synthetic`'s canvas) and
rendered to five input domains, named like Taskonomy's folders, and the target ``rgb``.

Scene layout (camera frame: x right, y down, z forward; sizes in metres, U(a, b) uniform per scene or object)
    * Camera: level, at height h ~ U(1.2, 1.6), focal length 0.9·W·U(0.95, 1.05) pixels, horizon at row
      H·U(0.3, 0.5).
    * ``floor``: the plane y = h; ``wall``: one back wall at U(4, 7) along its normal, yawed U(−25°, 25°).
    * 1–3 ``sphere`` of radius U(0.2, 0.5) resting on the floor and 1–3 ``box`` (upright cuboids, half-extents
      U(0.2, 0.45) × U(0.2, 0.4), height U(0.3, 1.0), yawed U(−40°, 40°)) standing on it, footprints
      rejection-sampled not to overlap, in front of the wall. Occlusion is exact (z-buffer).

Appearance (values in [0, 1])
    * Albedo = base colour × texture factor. Base colours (HSV) depend on the surface: floor hue 15–45°, saturation
      0.2–0.5, value 0.2–0.4 (dark wood); wall any hue, saturation 0–0.15, value 0.75–0.95 (pale paint); objects
      any hue, saturation 0.5–0.95, value 0.5–0.95 (vivid). Textures are solid (3D) patterns, so they wrap
      around every face: the floor always has planks or tiles (stripes or checks), the wall is plain with
      probability 0.7 (else stripes), objects get stripes, checks or nothing (1/3 each). Stripes are
      ``floor(P·d / period) mod 2`` along a random direction d, checks the parity of two such; period
      U(0.12, 0.35) m; dark cells have factor 1 − U(0.3, 0.6).
    * One white directional light l (unit, towards the light, drawn per scene from above and in front:
      (U(−1, 1), −U(0.1, 1), −U(0, 1)) normalised) plus ambient a ~ U(0.1, 0.3), no cast shadows:
      shading s = a + (1 − a)·max(0, n·l).
    * ``rgb`` = (1 − η)·albedo·s + η·haze + noise, with haze weight η = k·(1 − exp(−z / 6 m)), k ~ U(0, 0.15), a
      pale per-scene haze colour, and Gaussian sensor noise of σ U(1, 3)/255; stored as 8-bit colour.

Domains (what each carries, and lacks)
    * ``depth_zbuffer``: z-buffer depth in 1/512 m as uint16, as Taskonomy's (65535 = nothing hit; never here).
      Geometry only: no albedo, no light.
    * ``normal``: the surface normal facing the camera, stored as round((n + 1)/2 · 255) per channel in the
      OpenGL camera frame (x right, y up, z towards the camera), so faces seen head-on are bluish as in
      Taskonomy. Orientation only: no albedo; the light changes per scene, so no shading magnitudes either.
    * ``reshading``: round(255·s), the Lambertian shading above (no albedo: it lacks every colour).
    * ``edge_texture``: the Sobel gradient magnitude of the albedo's luminance (Rec. 601), ×128, clipped to 255:
      where the texture and the surface colour change, not how bright or which colour either side is, nor any shading.
    * ``edge_occlusion``: 255 on occluding contours, else 0. Pixel p is marked when a 4-neighbour q belongs to
      another surface and lies behind p's surface continued (q's depth exceeds, by 1%, the depth at which q's ray
      meets p's tangent plane; for spheres, whose silhouette tangent planes graze the ray: q is 5% farther).
      Contacts (floor/wall, objects on the floor) are creases, not occlusions.
    So no domain alone determines rgb: shading lacks colour; texture edges lack shading and colour magnitudes;
    depth and normals lack albedo and (with the light drawn per scene) the shading level. Geometry tells the
    surface (dark floor, pale wall, vivid objects: the albedo's level), reshading the light on it, so pairs such as
    normal + reshading or depth_zbuffer + reshading carry much more than either (rgb ≈ albedo × shading). A
    per-pixel quadratic least-squares regressor (each channel and its 7×7 mean) on 48 scenes of 48×48, scored on 16
    held-out scenes, over generator seeds 0-7: held-out R² of normal 0.25-0.55, depth_zbuffer 0.19-0.42, reshading
    −0.06-0.42, edge_texture −0.11-0.30; normal + reshading 0.71-0.84 (0.21-0.49 above the better single),
    depth_zbuffer + reshading 0.52-0.73 (0.13-0.40 above). Object hues are in no input domain, which caps every R².
    Texture edges add little to such a per-pixel regressor (they say where the texture changes, not which side is
    darker); they are for models with spatial context.

Specs follow the Taskonomy converter's choices, so models see the same conventions: ``rgb`` ImageNet-normalised
(:func:`rgb_spec`), 8-bit domains scaled to [0, 1] (:func:`gray_spec`, 3 channels for ``normal``), ``depth_zbuffer``
uint16 scaled by 1/65535.

Determinism: sample k of a split is rendered from ``np.random.default_rng([seed, split_code, k])`` (train 0, val 1,
test 2), so it does not depend on the other splits' sizes; the same arguments give byte-identical shards.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.progress import track

from .manifest import DatasetError, Manifest, ModalitySpec, gray_spec, rgb_spec
from .sample import Sample
from .synthetic import SPLIT_CODES, _Canvas, _hsv_to_rgb, _place, check_generator_arguments
from .writer import DatasetWriter

GENERATOR_VERSION = 1
DATASET_NAME = "synthetic-translation"
TARGET = "rgb"
DOMAINS: tuple[str, ...] = ("depth_zbuffer", "normal", "reshading", "edge_texture", "edge_occlusion")
DEPTH_UNITS_PER_M = 512  # Taskonomy's depth_zbuffer: 1/512 m per unit
EDGE_GAIN = 128.0
FLOOR, WALL = 0, 1  # surface ids; objects follow


@dataclass(frozen=True)
class Texture:
    kind: str  # "plain" | "stripes" | "checks"
    directions: np.ndarray  # [2, 3] unit vectors (the second only for checks)
    period: float
    contrast: float  # dark cells have factor 1 - contrast

    def factor(self, points: np.ndarray) -> np.ndarray:
        if self.kind == "plain":
            return np.ones(points.shape[:-1])
        cells = np.floor(points @ self.directions.T / self.period).astype(np.int64)  # [..., 2]
        parity = cells[..., 0] if self.kind == "stripes" else cells.sum(-1)
        return np.where(parity % 2 == 1, 1.0 - self.contrast, 1.0)


@dataclass
class Scene:
    """One rendered scene: the stored domains and the quantities they were made from (for tests and inspection)."""

    modalities: dict[str, np.ndarray]  # the domains and rgb, as stored
    depth: np.ndarray  # [H, W] metres
    points: np.ndarray  # [H, W, 3] the visible surface points, camera frame (x right, y down, z forward)
    normal: np.ndarray  # [H, W, 3] unit normal facing the camera, camera frame (x right, y down, z forward)
    surface: np.ndarray  # [H, W] surface id: 0 floor, 1 wall, 2.. objects
    albedo: np.ndarray  # [H, W, 3]
    shading: np.ndarray  # [H, W]
    haze: np.ndarray  # [H, W] haze weight
    haze_colour: np.ndarray  # [3]
    light: np.ndarray  # [3] unit, towards the light, camera frame
    ambient: float


def _texture(rng: np.random.Generator, kind: str, plane_normal: np.ndarray | None = None) -> Texture:
    directions = rng.normal(size=(2, 3))
    if plane_normal is not None:  # patterns of a plane run within it
        directions -= (directions @ plane_normal)[:, None] * plane_normal
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    return Texture(kind, directions, rng.uniform(0.12, 0.35), rng.uniform(0.3, 0.6))


def _sphere(canvas: _Canvas, centre: np.ndarray, radius: float, surface: int, albedo: np.ndarray) -> None:
    """Ray-sphere intersection along every pixel's ray d = (dx, dy, 1): the nearer root t is the depth z."""
    a = canvas.dx**2 + canvas.dy**2 + 1.0
    b = -2.0 * (canvas.dx * centre[0] + canvas.dy * centre[1] + centre[2])
    c = centre @ centre - radius**2
    disc = b**2 - 4 * a * c
    z = np.where(disc >= 0, (-b - np.sqrt(np.maximum(disc, 0.0))) / (2 * a), np.inf)
    hit = (disc >= 0) & (z > 1e-3) & (z < canvas.depth)
    points = np.stack([z * canvas.dx, z * canvas.dy, z], axis=-1)
    canvas.depth[hit] = z[hit]
    canvas.label[hit] = surface
    canvas.albedo[hit] = albedo
    canvas.normal[hit] = ((points - centre) / radius)[hit]


def _occlusion_edges(canvas: _Canvas, spheres: set[int]) -> np.ndarray:
    """Pixels on an occluding contour: a 4-neighbour of another surface lies behind this surface's continuation."""
    rays = np.stack([canvas.dx, canvas.dy, np.ones_like(canvas.dx)], axis=-1)
    points = canvas.depth[..., None] * rays
    offset = (canvas.normal * points).sum(-1)  # tangent plane n·X = n·P
    sphere = np.isin(canvas.label, list(spheres))
    edges = np.zeros(canvas.depth.shape, bool)
    height, width = canvas.depth.shape
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        p = (slice(max(0, -dy), height - max(0, dy)), slice(max(0, -dx), width - max(0, dx)))
        q = (slice(max(0, dy), height - max(0, -dy)), slice(max(0, dx), width - max(0, -dx)))
        denom = (canvas.normal[p] * rays[q]).sum(-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(np.abs(denom) > 1e-9, offset[p] / denom, np.inf)
        behind_plane = (t > 0) & (canvas.depth[q] > 1.01 * t)
        behind_sphere = sphere[p] & (canvas.depth[q] > 1.05 * canvas.depth[p])
        edges[p] |= (canvas.label[p] != canvas.label[q]) & (behind_plane | behind_sphere)
    return edges


def render_scene(rng: np.random.Generator, height: int, width: int) -> Scene:
    """One procedural scene: every domain, rgb, and the quantities behind them (see this module's docstring)."""
    focal = 0.9 * width * rng.uniform(0.95, 1.05)
    horizon = height * rng.uniform(0.3, 0.5)
    cam_h = rng.uniform(1.2, 1.6)
    wall_dist = rng.uniform(4.0, 7.0)
    wall_yaw = math.radians(rng.uniform(-25, 25))
    canvas = _Canvas(height, width, focal, horizon)
    half_fov = (width / 2) / focal

    up = np.array([0.0, -1.0, 0.0])
    z, _ = canvas.plane(np.array([0.0, 1.0, 0.0]), cam_h)
    canvas.paint(z, np.isfinite(z), FLOOR, np.zeros(3), up)
    w3 = np.array([-math.sin(wall_yaw), 0.0, math.cos(wall_yaw)])
    z, _ = canvas.plane(w3, wall_dist)
    canvas.paint(z, np.isfinite(z), WALL, np.zeros(3), -w3)
    textures = [_texture(rng, ["stripes", "checks"][rng.integers(2)], up),
                _texture(rng, "plain" if rng.random() < 0.7 else "stripes", w3)]
    colours = [_hsv_to_rgb(rng.uniform(15, 45) / 360, rng.uniform(0.2, 0.5), rng.uniform(0.2, 0.4)),
               _hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.0, 0.15), rng.uniform(0.75, 0.95))]
    near = cam_h * focal / (height - horizon)  # floor depth at the bottom row

    footprints: list[tuple[float, float, float]] = []
    kinds = ["sphere"] * int(rng.integers(1, 4)) + ["box"] * int(rng.integers(1, 4))
    spheres: set[int] = set()
    for i in rng.permutation(len(kinds)):
        kind = kinds[i]
        half = (rng.uniform(0.2, 0.5),) * 2 if kind == "sphere" else (rng.uniform(0.2, 0.45), rng.uniform(0.2, 0.4))

        def sample_spot(half=half):
            zc = rng.uniform(near + 0.3, max(near + 0.4, wall_dist - 1.5)) + half[1]
            return rng.uniform(-0.8, 0.8) * half_fov * zc, zc, math.hypot(*half)

        spot = _place(rng, footprints, sample_spot)
        far_side = (wall_dist + math.sin(wall_yaw) * spot[0]) / math.cos(wall_yaw) if spot else 0.0
        if spot is None or spot[1] + math.hypot(*half) >= far_side - 0.1:
            continue
        surface = len(colours)
        colours.append(_hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.5, 0.95), rng.uniform(0.5, 0.95)))
        textures.append(_texture(rng, ["plain", "stripes", "checks"][rng.integers(3)]))
        if kind == "sphere":
            spheres.add(surface)
            _sphere(canvas, np.array([spot[0], cam_h - half[0], spot[1]]), half[0], surface, colours[surface])
        else:
            tall = rng.uniform(0.3, 1.0)
            canvas.cuboid(np.array(spot), math.radians(rng.uniform(-40, 40)), half, (cam_h - tall, cam_h), surface,
                          colours[surface])

    # albedo: base colour x solid texture at the visible points
    points = canvas.depth[..., None] * np.stack([canvas.dx, canvas.dy, np.ones_like(canvas.dx)], axis=-1)
    albedo = np.zeros((height, width, 3))
    for surface, (colour, texture) in enumerate(zip(colours, textures, strict=True)):
        mask = canvas.label == surface
        albedo[mask] = colour * texture.factor(points[mask])[:, None]

    light = np.array([rng.uniform(-1.0, 1.0), -rng.uniform(0.1, 1.0), -rng.uniform(0.0, 1.0)])
    light /= np.linalg.norm(light)
    ambient = float(rng.uniform(0.1, 0.3))
    shading = ambient + (1 - ambient) * np.clip(canvas.normal @ light, 0.0, None)
    haze = rng.uniform(0.0, 0.15) * (1 - np.exp(-canvas.depth / 6.0))
    haze_colour = _hsv_to_rgb(rng.uniform(0.5, 0.7), rng.uniform(0.0, 0.2), rng.uniform(0.7, 0.9))
    rgb = (1 - haze[..., None]) * albedo * shading[..., None] + haze[..., None] * haze_colour
    rgb += rng.normal(0.0, rng.uniform(1, 3) / 255, size=rgb.shape)

    luminance = albedo @ np.array([0.299, 0.587, 0.114])
    gradient = np.hypot(*_sobel(luminance))
    normal_gl = canvas.normal * np.array([1.0, -1.0, -1.0])
    depth_units = np.where(np.isfinite(canvas.depth), np.rint(canvas.depth * DEPTH_UNITS_PER_M), 65535)
    modalities = {
        "depth_zbuffer": np.clip(depth_units, 0, 65535).astype(np.uint16),
        "normal": _to_uint8((normal_gl + 1) / 2),
        "reshading": _to_uint8(shading),
        "edge_texture": np.clip(np.rint(gradient * EDGE_GAIN), 0, 255).astype(np.uint8),
        "edge_occlusion": (_occlusion_edges(canvas, spheres) * 255).astype(np.uint8),
        TARGET: _to_uint8(rgb),
    }
    return Scene(modalities, canvas.depth.copy(), points, canvas.normal.copy(), canvas.label.copy(), albedo, shading,
                 haze, haze_colour, light, ambient)


def _sobel(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 3×3 Sobel derivatives (rows, columns) of an image, its border replicated."""
    p = np.pad(image, 1, mode="edge")
    smooth_x = p[:, :-2] + 2 * p[:, 1:-1] + p[:, 2:]  # [H + 2, W]
    smooth_y = p[:-2] + 2 * p[1:-1] + p[2:]  # [H, W + 2]
    return smooth_x[2:] - smooth_x[:-2], smooth_y[:, 2:] - smooth_y[:, :-2]


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values * 255), 0, 255).astype(np.uint8)


def domain_specs() -> dict[str, ModalitySpec]:
    """The specs the Taskonomy converter derives for the same domains (from their PNG modes)."""
    return {"depth_zbuffer": ModalitySpec("uint16", 1, scale=1 / 65535), "normal": gray_spec(channels=3),
            "reshading": gray_spec(), "edge_texture": gray_spec(), "edge_occlusion": gray_spec(), TARGET: rgb_spec()}


def write_synthetic_translation(out: Path, *, train: int = 64, val: int = 16, test: int = 16,
                                size: tuple[int, int] = (64, 64), seed: int = 0, overwrite: bool = False,
                                domains: Sequence[str] | None = None) -> Manifest:
    """Write the synthetic-translation dataset (splits train/val/test, target ``rgb``) to ``out``; returns the
    written manifest. ``domains`` picks the input domains to store (default: all of :data:`DOMAINS`)."""
    domains = tuple(domains) if domains else DOMAINS
    unknown = [d for d in domains if d not in DOMAINS]
    if unknown:
        raise DatasetError(f"unknown synthetic-translation domains {unknown}; choose from {list(DOMAINS)}")
    counts = {"train": train, "val": val, "test": test}
    check_generator_arguments(counts, tuple(size), seed)
    height, width = size
    specs = domain_specs()
    manifest = Manifest(
        name=DATASET_NAME, task="translation", target=TARGET,
        modalities={name: specs[name] for name in (*domains, TARGET)},
        source={"generator": "fusionlab.data.synthetic_translation", "version": GENERATOR_VERSION, "seed": seed,
                "size": [height, width], "samples": counts, "depth_zbuffer_units_per_m": DEPTH_UNITS_PER_M})

    def samples():
        for split, count in counts.items():
            for index in range(count):
                rng = np.random.default_rng([seed, SPLIT_CODES[split], index])
                scene = render_scene(rng, height, width)
                yield Sample(f"{split}-{index:05d}", split, {m: scene.modalities[m] for m in manifest.modalities})

    with DatasetWriter(out, manifest, overwrite=overwrite) as writer:
        for sample in track(samples(), total=sum(counts.values()), description=f"generating {DATASET_NAME}",
                            transient=True):
            writer.write(sample)
    return writer.manifest
