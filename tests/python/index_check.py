"""clip-retrieval's index step on an output folder of clip_engine.bulk: autofaiss builds the
image and text indexes from img_emb/ and text_emb/ (what `clip-retrieval index` calls), and
embedding-reader (what autofaiss and clip-retrieval read with) reads each part's rows beside
its Parquet metadata, which must line up. Prints one JSON line; exit status 1 when a check
fails. Run in .venv-index (scripts/python_venv.sh build index), by tests/python/test_bulk.py:

    .venv-index/bin/python tests/python/index_check.py OUT_DIR
"""
import json
import os
import sys
import tempfile

import numpy as np
from autofaiss import build_index
from embedding_reader import EmbeddingReader


def main(out):
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("img_emb", "text_emb"):
            index, _ = build_index(embeddings=os.path.join(out, kind), index_path=os.path.join(tmp, kind + ".index"),
                                   index_infos_path=os.path.join(tmp, kind + ".json"), metric_type="ip",
                                   max_index_memory_usage="1G", current_memory_available="2G", verbose=40)
            report[kind + "_ntotal"] = int(index.ntotal)
            # Row i of the folder (parts in order) finds itself first, and its metadata is row i's.
            reader = EmbeddingReader(os.path.join(out, kind), file_format="parquet_npy",
                                     metadata_folder=os.path.join(out, "metadata"),
                                     meta_columns=["image_path", "caption", "error"])
            emb, meta = next(reader(batch_size=10 ** 6, start=0, end=reader.count))
            ok = meta["error"].isna().to_numpy()
            if kind == "text_emb":
                ok &= meta["caption"].notna().to_numpy()
            q = emb[ok].astype(np.float32)
            _, ids = index.search(q, 10)
            report[kind + "_rows"] = int(reader.count)
            report[kind + "_metadata_rows"] = int(len(meta))
            report[kind + "_queries"] = int(len(q))
            # each query finds a row equal to itself (itself, or a duplicate image or caption) in
            # its top 10 (near-duplicates can outscore it by the float16 rounding of the norms)
            same = np.all(emb[ids] == emb[ok][:, None, :], axis=2)
            report[kind + "_found_itself"] = int(np.sum(np.any(same, axis=1)))
    print(json.dumps(report))
    good = all(report[k + "_ntotal"] == report[k + "_rows"] == report[k + "_metadata_rows"] and
               report[k + "_found_itself"] == report[k + "_queries"] > 0 for k in ("img_emb", "text_emb"))
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
