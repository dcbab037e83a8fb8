"""Shared pieces of the benchmarks: wrk runs (wrk.py), the empty Flask app under mayu's
gunicorn settings (empty_app.py) and process memory as PSS (memory.py)."""
