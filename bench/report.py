"""The bench's results as text (``report``); the JSON file is written by ``data.files.write_json``.

The results are the dict ``python -m refnet.bench`` builds: arch, batch, dtype, conv_cache,
conv_algo, device, blas, threads, env, process, settle_s, torch, gemm_peak_gflops,
flops_per_image, and
where measured step and forward ({refnet, torch: summary with images_per_s, gflops,
fraction_of_gemm_peak}, speedup_vs_torch), layers (``bench.layers.time_layers``' rows)
with layers_as, memory ({side: probe result}) and gpu.
"""

from __future__ import annotations

from typing import Any


def report(r: dict[str, Any]) -> str:
    """The results ``r`` as lines of text: the set-up, then each measured part."""
    lines = [
        f"bench: {r['arch']} batch {r['batch']} {r['dtype']} on {r['device']}"
        f" (conv_cache={r['conv_cache']}, conv_algo={r.get('conv_algo', 'gemm')})"
        + (f" ({r['gpu']})" if r.get("gpu") else ""),
        "BLAS: "
        + "; ".join(
            f"{b['internal_api']} {b['version']} kernel "
            f"{b['architecture']} threads {b['num_threads']}"
            for b in r["blas"]
        )
        + f"; torch {r['torch']}",
        f"process settings: {r.get('process', 'tuned')}; env: {r['env']}; "
        f"settle {1000 * r.get('settle_s', 0):.0f} ms before each timed run",
        f"GEMM peak ({r['dtype']}, 2048^3): {r['gemm_peak_gflops']:.0f} GFLOP/s",
    ]
    for part in ("step", "forward"):
        if part not in r:
            continue
        for side in ("refnet", "torch"):
            if side in r[part]:
                s = r[part][side]
                lines.append(
                    f"{part:8s} {side:7s} median {s['median_s']:.3f} s "
                    f"[{s['min_s']:.3f}, {s['max_s']:.3f}]  "
                    f"{s['images_per_s']:7.1f} img/s  {s['gflops']:6.0f} GFLOP/s "
                    f"({100 * s['fraction_of_gemm_peak']:.0f}% of GEMM peak)"
                )
        if "over_arithmetic_bound" in r[part]["refnet"]:
            products = r["flops_per_image"][f"{part}_winograd_products"]
            lines.append(
                f"{part:8s} refnet = {r[part]['refnet']['over_arithmetic_bound']:.2f}x the "
                f"time of its products at the GEMM peak ({products / 1e9:.3g} GFLOP per image "
                "with Winograd)"
            )
        if "speedup_vs_torch" in r[part]:
            lines.append(
                f"{part:8s} refnet speed / PyTorch speed = {r[part]['speedup_vs_torch']:.2f}x"
            )
    if "layers" in r:
        ours_as = (
            "as the network runs it (each column's share on its core, concurrently)"
            if r.get("layers_as", "network") == "network"
            else "as one grouped call on the BLAS threads"
        )
        lines.append(f"per layer: ours {ours_as}, PyTorch's grouped layer on its threads")
        lines.append(
            f"{'layer':8s} {'ours fwd':>9s} {'ours bwd':>9s} {'share':>6s} "
            f"{'torch fwd':>9s} {'torch bwd':>9s} {'torch/ours (fwd+bwd)':>21s}   "
            "(ms; share: of the sum of our layers)"
        )
        total = sum(row["refnet_forward"] + row["refnet_backward"] for row in r["layers"])
        for row in r["layers"]:
            ours = row["refnet_forward"] + row["refnet_backward"]
            t = [row.get("torch_forward"), row.get("torch_backward")]
            ratio = f"{(t[0] + t[1]) / ours:21.2f}" if t[0] is not None else ""
            tf = "".join(f" {1e3 * v:9.1f}" if v is not None else " " * 10 for v in t)
            lines.append(
                f"{row['layer']:8s} {1e3 * row['refnet_forward']:9.1f} "
                f"{1e3 * row['refnet_backward']:9.1f} {100 * ours / total:5.1f}%"
                f"{tf} {ratio}"
            )
        if "handoff_s" in r:
            lines.append(
                f"each of our rows includes a hand-off to the column threads and back per pass: "
                f"{1e3 * r['handoff_s']:.2f} ms here (in a step one serves a run of layers)"
            )
    if "memory" in r:
        for side, m in r["memory"].items():
            if m:
                lines.append(f"peak RSS {side:7s} {m['peak_rss_bytes'] / 2**30:.2f} GiB")
    return "\n".join(lines)
