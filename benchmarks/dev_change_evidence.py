"""Which evidence ranks change on the real cases? ROC AUC and oracle F1 per pixel and per segment.

For each case in ../shared/data/real (file grid, no co-registration, as ``dev_change_real.py``) it
computes candidate per-pixel change evidence, their means over SLIC superpixels of the stacked
BEFORE/AFTER pair (about ``--segment-m2`` square metres each, at least 4 pixels), and prints per case
ROC AUC (pixel/segment) and the best F1 any single threshold on that layer could reach (an oracle:
it looks at the truth, so it bounds what a threshold can do and must not be used to choose one).

usage: .venv/bin/python benchmarks/dev_change_evidence.py [CASES_DIR] [--segment-m2 200] [--case S]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import rasterio
from scipy import ndimage as ndi
from scipy.stats import rankdata
from skimage.segmentation import slic

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dev_change_real import DEFAULT_CASES, read_scene

from sohae_watch.change import _stack, apply_change_model, fit_change_model, visible_mean
from sohae_watch.radiometry import standardised_residuals


def _g(x: np.ndarray, s: float) -> np.ndarray:
    return np.asarray(ndi.gaussian_filter(x, s, mode="nearest"))


def _grads(img: np.ndarray, s: float) -> tuple[np.ndarray, np.ndarray]:
    gx = ndi.gaussian_filter(img, s, order=(0, 1), mode="nearest")
    gy = ndi.gaussian_filter(img, s, order=(1, 0), mode="nearest")
    return gx, gy


def evidence(before, after, win_m: float = 3.0) -> tuple[dict[str, np.ndarray], float, np.ndarray]:
    """Candidate change evidence layers (higher = more likely change), pixel size, stacked pair."""
    model = fit_change_model(before, after)
    res = apply_change_model(model, before, after)
    px, bands = model.px_m, model.bands
    b, a = _stack(before, bands), _stack(after, bands)
    z = standardised_residuals(b, a, list(model.fits))
    out: dict[str, np.ndarray] = {
        "current": np.nan_to_num(res.magnitude),  # the stage's score
        "cva_raw": np.sqrt(((a - b) ** 2).sum(0)),
        "spectral_z": np.sqrt((z**2).mean(0)),  # after normalisation
    }
    ib, ia = visible_mean(b, bands), visible_mean(a, bands)
    gs, ws = max(1.0, 1.0 / px), max(1.0, win_m / px)
    mb, ma = _g(ib, ws), _g(ia, ws)
    vb, va = _g(ib * ib, ws) - mb * mb, _g(ia * ia, ws) - ma * ma
    ncc = (_g(ib * ia, ws) - mb * ma) / np.sqrt(np.maximum(vb * va, 1e-12))
    tex = np.sqrt(np.maximum(np.maximum(vb / np.median(vb), va / np.median(va)), 0))
    out["ncc_loss"] = 1 - ncc  # local correlation of neighbourhoods (brightness free)
    out["ncc_loss_textured"] = (1 - ncc) * np.minimum(tex, 1)
    bx, by = _grads(ib, gs)
    ax, ay = _grads(ia, gs)
    den = np.sqrt(_g(ax * ax + ay * ay, ws) * _g(bx * bx + by * by, ws))
    out["gradient_corr_loss"] = 1 - _g(ax * bx + ay * by, ws) / np.maximum(den, 1e-12)

    def tensor(x: np.ndarray, y: np.ndarray, s: float):
        jxx, jxy, jyy = _g(x * x, s), _g(x * y, s), _g(y * y, s)
        return jxx - jyy, 2 * jxy, jxx + jyy

    c1, s1, t1 = tensor(bx, by, ws)
    c2, s2, t2 = tensor(ax, ay, ws)
    out["orientation_change"] = np.hypot(
        c2 / (t2 + 1e-12) - c1 / (t1 + 1e-12), s2 / (t2 + 1e-12) - s1 / (t1 + 1e-12)
    )
    ratio = np.log((t2 / np.median(t2) + 1e-3) / (t1 / np.median(t1) + 1e-3))
    out["gradient_energy_abs"] = np.abs(ratio)
    out["gradient_energy_up (signed)"] = ratio
    # coherent (straight-edge) energy: lambda1 - lambda2 of the structure tensor, 5 m window
    gs2, ws2 = max(1.0, 0.5 / px), max(1.0, 5.0 / px)
    coh = []
    for im in (ib, ia):
        x, y = _grads(im, gs2)
        c, s, t = tensor(x, y, ws2)
        coh.append(np.log1p(np.hypot(c, s) / np.median(t)))
    out["coherent_edges_abs"] = np.abs(coh[1] - coh[0])
    out["coherent_edges_up (signed)"] = coh[1] - coh[0]
    if "nir" in bands and "red" in bands:
        r, n = bands.index("red"), bands.index("nir")
        nb = (b[n] - b[r]) / (b[n] + b[r] + 1e-6)
        na = (a[n] - a[r]) / (a[n] + a[r] + 1e-6)
        out["ndvi_change"] = np.abs(na - nb)
        out["current_veg_explained"] = np.where((nb > 0.3) & (na > 0.3), 0, out["current"])
    return out, px, np.concatenate([b, a], 0)


def auc(s: np.ndarray, y: np.ndarray) -> float:
    s, y = np.nan_to_num(s.ravel()), y.ravel()
    r = rankdata(s)
    n1, n0 = int(y.sum()), int((~y).sum())
    return float((r[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def oracle_f1(s: np.ndarray, y: np.ndarray) -> float:
    s, y = np.nan_to_num(s.ravel()), y.ravel()
    tp = np.cumsum(y[np.argsort(-s)])
    return float((2 * tp / (np.arange(1, s.size + 1) + y.sum())).max())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cases_dir", nargs="?", type=Path, default=DEFAULT_CASES)
    ap.add_argument("--segment-m2", type=float, default=200.0)
    ap.add_argument("--case", default="")
    args = ap.parse_args(argv)
    table: dict[str, dict[str, list[float]]] = {}
    for c in json.loads((args.cases_dir / "cases.json").read_text()):
        d = args.cases_dir / c["case"]
        if args.case not in c["case"] or not (d / "truth.tif").exists():
            continue
        with rasterio.open(d / "truth.tif") as src:
            y = src.read(1) == 1
        layers, px, st = evidence(read_scene(d / "before.tif"), read_scene(d / "after.tif"))
        st = (st - st.mean(axis=(1, 2), keepdims=True)) / (
            st.std(axis=(1, 2), keepdims=True) + 1e-9
        )
        npx = max(4.0, args.segment_m2 / px**2)
        seg = slic(
            st.transpose(1, 2, 0),
            n_segments=int(y.size / npx),
            compactness=1.0,
            channel_axis=-1,
            start_label=1,
            convert2lab=False,
        )
        labels = np.arange(1, seg.max() + 1)
        ds = c["case"].split("-")[0]
        for name, v in layers.items():
            v = np.nan_to_num(v)
            sv = np.asarray(ndi.mean(v, seg, labels))[seg - 1]
            row = [auc(v, y), auc(sv, y), oracle_f1(v, y), oracle_f1(sv, y)]
            table.setdefault(name, {}).setdefault(ds, []).append(row[0])
            print(
                f"{c['case'][:24]:<24} {name:<28} AUC {row[0]:.2f}/{row[1]:.2f} "
                f"oracle F1 {row[2]:.3f}/{row[3]:.3f}",
                flush=True,
            )
    for name, byds in table.items():
        print(
            f"mean pixel AUC {name:<28} "
            + " ".join(f"{k}={np.mean(v):.2f}" for k, v in byds.items())
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
