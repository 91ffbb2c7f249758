"""Deploy frame-fanout to Google Cloud: Cloud Run workers, Pub/Sub push with dead letters, a GCS bucket.

Usage::

    python -m deploy.gcp plan --project P --region R      # print every gcloud command, in order
    python -m deploy.gcp up   --project P --region R      # create or update (idempotent)
    python -m deploy.gcp down --project P --region R      # remove (the bucket only with --delete-data)

Modules: :mod:`deploy.gcp.options` (knobs, defaults, checks), :mod:`deploy.gcp.commands` (the pure
command-building core), :mod:`deploy.gcp.runner` (runs a plan with gcloud), :mod:`deploy.gcp.cli`.
"""
