"""Shared pieces of the benchmarks: wrk runs, reference servers (nginx, an empty Flask app under
the same gunicorn as `mayu serve`), process memory (PSS) and summary statistics."""
