"""Page "Dataset": stage 01 samples by split and label, with their charts and answers."""

from __future__ import annotations

import streamlit as st

from . import common, data
from .paths import PathRefused, guard


def render() -> None:
    """Draw the page."""
    st.title("Dataset")
    cfg = common.settings()
    path = common.pick_file("Datasets", ["dataset"], [".jsonl"], key="ds_file",
                            default=f"{cfg.dashboard.dataset_dir}/training_data.jsonl")
    if path is None:
        return
    if not path.is_file():
        st.info(f"no dataset at {str(path)!r} yet: run python 01_generate_dataset.py")
        return
    ds = common.dataset_frame(str(path), common.mtime(path))
    st.subheader("Label distribution per split")
    dist = data.label_distribution(ds)
    st.dataframe(dist, width="stretch")
    st.bar_chart(dist, stack=True, horizontal=True, height=200)
    c1, c2 = st.columns(2)
    splits = c1.multiselect("Split", list(dist.index), default=list(dist.index), key="ds_split")
    labels = c2.multiselect("Label", list(dist.columns), default=list(dist.columns), key="ds_label")
    sub = ds[ds["split"].isin(splits) & ds["action"].isin(labels)]
    st.caption(f"{len(sub):,} of {len(ds):,} samples")
    if sub.empty:
        st.info("no sample matches the chosen splits and labels")
        return
    n = st.number_input("Sample", min_value=1, max_value=len(sub), value=1, step=1, key="ds_index")
    row = sub.iloc[int(n) - 1]
    left, right = st.columns([3, 2])
    with left:
        try:
            img = guard(path.parent / row["image"], common.roots())
        except PathRefused as exc:
            st.error(str(exc))
        else:
            if img.is_file():
                st.image(str(img), caption=row["id"], width="stretch")
            else:
                st.warning(f"image {row['image']!r} is missing beside {path.name}: rerun python 01_generate_dataset.py")
    with right:
        st.metric("Label", row["action"])
        fr = row["forward_return"]
        st.write(f"split **{row['split']}**, {row['ticker']}, window ending {row['window_end']}"
                 + (f"; forward return {float(fr):.2%}" if fr is not None and fr == fr else ""))
        st.code(row["answer"], language="json", wrap_lines=True)
    st.dataframe(sub.drop(columns=["answer"]).head(200), hide_index=True, width="stretch")
