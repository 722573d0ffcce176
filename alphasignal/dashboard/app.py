"""Streamlit entry point of the dashboard (``python 07_dashboard.py`` runs ``streamlit run`` on this file)."""

import streamlit as st

st.set_page_config(page_title="alphasignal", layout="wide")
PAGES = [st.Page("views/runs.py", title="Optimizer runs", default=True),  # the default page lives at /
         st.Page("views/sweeps.py", title="Sweeps", url_path="sweeps"),
         st.Page("views/signals.py", title="Signals", url_path="signals"),
         st.Page("views/dataset.py", title="Dataset", url_path="dataset")]
st.navigation(PAGES).run()
