"""Search latency: exact vs HNSW on clustered synthetic vectors, and the API's image-query latency.

Part 1 (vectors). ``--n`` x ``--dim`` L2-normalised float32 vectors drawn from a mixture of
``--clusters`` clusters, each spread over its own ``--rank``-dimensional subspace plus a little
isotropic noise (see :class:`Mixture`): learned embeddings are clustered and of low intrinsic
dimension; uniform noise would make every neighbour list arbitrary. ``--rank 0`` gives isotropic
clusters, a much harder case, kept for comparison. Queries are *new* draws from
the same mixture, not stored vectors. Ground truth is exact inner-product search (FAISS IndexFlatIP,
batched). Latency is one query at a time (batch size 1, the service's case), p50 / p99 over
``--queries`` queries; recall@10 = |HNSW top-10 ∩ exact top-10| / 10. The HNSW structure is built by
lexray's own index code (:func:`lexray.index._faiss.build`), baseline = exact flat search on the same
vectors in the same run.

Part 2 (API, ``--api``). The demo dual encoder (``DualEncoderConfig()`` defaults: small CNN image tower,
SmolLM2-135M frozen report tower; untrained unless ``--model RUN`` is given) indexes ``--api-studies``
phantom radiographs and their reports; ``lexray.serve`` runs under uvicorn on 127.0.0.1 and the
script POSTs a 256x256 phantom PNG to ``/v1/search/image`` ``--api-requests`` times over HTTP (httpx),
reporting wall-clock p50 / p99 per request (upload, decode, embed, search, JSON) after 5 warm-up
requests; then the same for the real 1841x1955 chest CR DICOM ``RG1_UNCR.dcm`` (pydicom-data) when installed.

Usage: python benchmarks/search_latency.py [--n 1000000] [--dim 256] [--api] [--skip-vectors]
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
import threading
import time
from pathlib import Path

import faiss
import numpy as np

from lexray.index._faiss import build, recall_at_k
from lexray.index.config import FaissConfig


class Mixture:
    """Clustered unit vectors: ``clusters`` centres, each with its own ``rank``-dimensional subspace.

    A point is centre + ``spread`` x (a Gaussian in the cluster's subspace) + ``noise`` x (isotropic
    Gaussian in all dimensions), normalised. Learned embeddings occupy a low-dimensional manifold; with
    ``rank=0`` the within-cluster noise is isotropic in all ``dim`` dimensions (the hardest case for any
    graph index, as neighbours inside a cluster are then nearly equidistant).
    """

    def __init__(self, dim: int, clusters: int, rank: int, spread: float, noise: float, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.dim, self.rank, self.spread, self.noise = dim, rank, spread, noise
        self.centres = rng.standard_normal((clusters, dim), dtype=np.float32)
        self.centres /= np.linalg.norm(self.centres, axis=1, keepdims=True)
        # (C, D, r) orthonormal bases of the clusters' subspaces
        self.bases = (
            np.linalg.qr(rng.standard_normal((clusters, dim, rank), dtype=np.float32))[0] if rank else None
        )

    def sample(self, m: int, rng: np.random.Generator) -> np.ndarray:
        """(m, dim) unit vectors."""
        cid = rng.integers(0, len(self.centres), m)
        x = self.centres[cid].copy()  # (m, D)
        if self.rank:
            z = rng.standard_normal((m, self.rank), dtype=np.float32) * (self.spread / np.sqrt(self.rank))
            for c in np.unique(cid):
                rows = np.flatnonzero(cid == c)
                x[rows] += z[rows] @ self.bases[c].T  # (n_c, r) @ (r, D)
            x += rng.standard_normal((m, self.dim), dtype=np.float32) * (self.noise / np.sqrt(self.dim))
        else:
            x += rng.standard_normal((m, self.dim), dtype=np.float32) * (self.spread / np.sqrt(self.dim))
        return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered(mixture: Mixture, n: int, seed: int) -> np.ndarray:
    """(n, dim) float32 draws, made in chunks to bound the temporary memory."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, mixture.dim), dtype=np.float32)
    for s in range(0, n, 100_000):
        out[s : s + 100_000] = mixture.sample(min(100_000, n - s), rng)
    return out


def one_at_a_time(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-query latencies (ms) and the (Q, k) ids, searching with batch size 1."""
    times = np.empty(len(queries))
    ids = np.empty((len(queries), k), dtype=np.int64)
    for i in range(len(queries)):
        t0 = time.perf_counter()
        _, ids[i : i + 1] = index.search(queries[i : i + 1], k)
        times[i] = (time.perf_counter() - t0) * 1e3
    return times, ids


def vectors_part(args: argparse.Namespace) -> None:
    faiss.omp_set_num_threads(args.threads)
    t0 = time.perf_counter()
    mixture = Mixture(args.dim, args.clusters, args.rank, args.spread, args.noise, seed=0)
    base = clustered(mixture, args.n, seed=1)
    queries = clustered(mixture, args.queries, seed=2)  # fresh draws, not stored vectors
    shape = f"rank-{args.rank} subspaces + isotropic noise {args.noise}" if args.rank else "isotropic"
    print(f"data: {args.n:,} x {args.dim} clustered unit vectors ({args.clusters} clusters, {shape}, "
          f"spread {args.spread}), {args.queries} fresh queries; made in {time.perf_counter() - t0:.1f} s; "
          f"FAISS threads {args.threads}")  # fmt: skip

    exact = build(base, FaissConfig(kind="flat"))
    t0 = time.perf_counter()
    _, truth = exact.search(queries, 10)  # batched ground truth
    print(f"exact ground truth (batched): {time.perf_counter() - t0:.1f} s")
    exact_ms, exact_ids = one_at_a_time(exact, queries[: args.exact_queries], 10)
    rows = [("exact (IndexFlatIP)", "", exact_ms, recall_at_k(exact_ids, truth[: args.exact_queries]))]

    t0 = time.perf_counter()
    hnsw = build(
        base, FaissConfig(kind="hnsw", hnsw_m=args.hnsw_m, hnsw_ef_construction=args.ef_construction)
    )
    build_s = time.perf_counter() - t0
    print(f"HNSW build (M={args.hnsw_m}, efConstruction={args.ef_construction}): {build_s:.0f} s")
    for ef in args.ef_search:
        hnsw.hnsw.efSearch = ef
        one_at_a_time(hnsw, queries[:50], 10)  # warm caches
        ms, ids = one_at_a_time(hnsw, queries, 10)
        rows.append((f"HNSW M={args.hnsw_m}", f"efSearch={ef}", ms, recall_at_k(ids, truth)))
    del hnsw

    if args.ivfpq:
        t0 = time.perf_counter()
        cfg = FaissConfig(kind="ivfpq", ivf_nlist=args.ivf_nlist, pq_m=args.pq_m, pq_nbits=8)
        ivf = build(base, cfg)
        print(
            f"IVF-PQ build (nlist={args.ivf_nlist}, PQ {args.pq_m}x8 bit): {time.perf_counter() - t0:.0f} s"
        )
        for nprobe in args.nprobe:
            ivf.nprobe = nprobe
            one_at_a_time(ivf, queries[:50], 10)
            ms, ids = one_at_a_time(ivf, queries, 10)
            rows.append(
                (f"IVF-PQ {args.ivf_nlist}/{args.pq_m}x8", f"nprobe={nprobe}", ms, recall_at_k(ids, truth))
            )

    print()
    print("| method | search parameter | p50 ms | p99 ms | recall@10 | queries |")
    print("|---|---|---|---|---|---|")
    for name, ef, ms, rec in rows:
        print(
            f"| {name} | {ef} | {np.percentile(ms, 50):.3f} | {np.percentile(ms, 99):.3f} | {rec:.4f} | {len(ms)} |"
        )
    print()
    print("target: HNSW p50 <= 2 ms at recall@10 >= 0.95")
    print(f"load average after the run (shared machine): {os.getloadavg()[0]:.2f}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _real_dicom() -> Path | None:
    """RG1_UNCR.dcm from pydicom-data (a real PA chest CR) when installed."""
    try:
        import data_store
    except ImportError:
        return None
    path = Path(data_store.__file__).parent / "data" / "RG1_UNCR.dcm"
    return path if path.is_file() else None


def api_part(args: argparse.Namespace) -> None:
    import httpx
    import torch
    import uvicorn

    from lexray.clip import DualEncoder, DualEncoderConfig
    from lexray.data.study import Image, Study
    from lexray.index import IndexConfig, Searcher, build_index, make_ref
    from lexray.phantoms import PhantomFindings, render_phantom, save_phantom_png
    from lexray.serve import ServeConfig, create_app

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.model:
            run = Path(args.model)
            model = DualEncoder.from_pretrained(run)
            what = f"trained run {run}"
        else:
            run = DualEncoder.from_config(DualEncoderConfig()).save_pretrained(root / "demo-model")
            model = DualEncoder.from_pretrained(run)
            what = "untrained demo model (DualEncoderConfig defaults)"
        kinds = [
            ("Heart size normal. Lungs clear.", PhantomFindings()),
            ("Cardiomegaly.", PhantomFindings(cardiomegaly=True)),
            ("Small left pleural effusion.", PhantomFindings(effusion=(("left", 1),))),
            ("Right pneumothorax.", PhantomFindings(pneumothorax=("right",))),
            ("Pulmonary edema.", PhantomFindings(edema=True)),
        ]
        studies = []
        for i in range(args.api_studies):
            report, findings = kinds[i % len(kinds)]
            sid = f"ph{i}"
            png = save_phantom_png(
                root / "img" / f"{sid}.png", render_phantom(findings, sid, 256), sid, findings
            )
            studies.append(Study(sid, sid, "phantom", "test", (Image(str(png), "PA"),), findings=report))
        t0 = time.perf_counter()
        build_index(studies, model, make_ref(run), root / "index", IndexConfig(), progress=False)
        print(
            f"API: indexed {len(studies)} phantom studies with the {what} in {time.perf_counter() - t0:.0f} s"
        )
        app = create_app(Searcher.open(root / "index"), ServeConfig())
        port = _free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        queries = [("256x256 phantom PNG", "q.png", (root / "img" / "ph2.png").read_bytes(), "image/png")]
        dicom = _real_dicom()
        if dicom is not None:
            queries.append(
                ("1841x1955 real CR DICOM (RG1_UNCR.dcm)", "q.dcm", dicom.read_bytes(), "application/dicom")
            )
        rows = []
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            for label, name, data, mime in queries:
                times, embed = [], []
                for i in range(args.api_requests + 5):
                    t0 = time.perf_counter()
                    r = client.post("/v1/search/image", files={"file": (name, data, mime)}, data={"k": "5"})
                    dt = (time.perf_counter() - t0) * 1e3
                    r.raise_for_status()
                    if i >= 5:  # warm-up requests excluded
                        times.append(dt)
                        embed.append(r.json()["embed_ms"])
                rows.append((label, times, embed))
        server.should_exit = True
        thread.join(timeout=10)
    print()
    print("| POST /v1/search/image, k=5 | requests | p50 ms | p99 ms | of which embedding p50 ms |")
    print("|---|---|---|---|---|")
    for label, times, embed in rows:
        print(f"| {label} | {len(times)} | {np.percentile(times, 50):.1f} | "
              f"{np.percentile(times, 99):.1f} | {np.percentile(embed, 50):.1f} |")  # fmt: skip
    print()
    print("target: image query end to end p50 <= 300 ms on 2 cores")
    print(f"load average after the run (shared machine): {os.getloadavg()[0]:.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000, help="stored vectors")
    p.add_argument("--dim", type=int, default=256, help="vector width")
    p.add_argument("--clusters", type=int, default=1000, help="mixture components")
    p.add_argument(
        "--spread", type=float, default=1.0, help="within-cluster spread (relative to the unit centre)"
    )
    p.add_argument(
        "--rank", type=int, default=16, help="dimension of each cluster's subspace (0 = isotropic)"
    )
    p.add_argument("--noise", type=float, default=0.3, help="isotropic noise added to every point (rank > 0)")
    p.add_argument("--queries", type=int, default=1000, help="queries for HNSW latency and recall")
    p.add_argument(
        "--exact-queries", type=int, default=100, help="queries for exact latency (each scans all n)"
    )
    p.add_argument("--hnsw-m", type=int, default=32, help="HNSW neighbours per node")
    p.add_argument("--ef-construction", type=int, default=100, help="HNSW build candidate list")
    p.add_argument(
        "--ef-search", type=int, nargs="+", default=[32, 64, 128, 256, 512], help="efSearch values"
    )
    p.add_argument("--ivfpq", action="store_true", help="also build and time IVF-PQ")
    p.add_argument("--ivf-nlist", type=int, default=1024, help="IVF-PQ coarse cells")
    p.add_argument("--pq-m", type=int, default=32, help="IVF-PQ sub-quantisers")
    p.add_argument("--nprobe", type=int, nargs="+", default=[8, 32, 128], help="IVF-PQ cells visited")
    p.add_argument("--threads", type=int, default=2, help="FAISS / torch threads")
    p.add_argument("--api", action="store_true", help="also measure the HTTP image-query latency")
    p.add_argument("--skip-vectors", action="store_true", help="only the API part")
    p.add_argument(
        "--model", default="", help="a trained DualEncoder run for the API part (default: untrained demo)"
    )
    p.add_argument("--api-studies", type=int, default=100, help="phantom studies indexed for the API part")
    p.add_argument("--api-requests", type=int, default=50, help="timed API requests")
    args = p.parse_args()
    if not args.skip_vectors:
        vectors_part(args)
    if args.api:
        api_part(args)


if __name__ == "__main__":
    main()
