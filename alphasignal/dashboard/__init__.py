"""Stage 07: a local, read-only Streamlit dashboard over the outputs of stages 01, 04, 05 and 06."""
